"""BLAS thread choice: one thread for small products, all cores for large ones, capped by the
environment; a run uses and records it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import CONFIGS, train_run
from nnlab import threads
from nnlab.nn import Model
from nnlab.nn.layers import Dense


def model(n_in: int, units: int) -> Model:
    return Model([Dense(units=units), Dense(units=10)], (n_in,), np.random.default_rng(0))


@pytest.fixture
def two_cores(monkeypatch):
    monkeypatch.setattr(threads, "cores", lambda: 2)
    for name in threads.ENV_LIMITS:
        monkeypatch.delenv(name, raising=False)


def test_small_products_use_one_thread(two_cores):
    assert threads.largest_product(model(64, 256), 32) == 32 * 64 * 256
    assert threads.choose(model(64, 256), 32) == 1


def test_large_products_use_every_core(two_cores):
    assert threads.choose(model(784, 300), 128) == 2


def test_environment_limits_and_explicit_requests(two_cores, monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    assert threads.choose(model(784, 300), 128) == 1
    assert threads.choose(model(784, 300), 128, requested=2) == 2
    assert threads.choose(model(64, 8), 4, requested=8) == 2  # never more than the cores


def test_limited_sets_the_blas_threads():
    from threadpoolctl import threadpool_info

    with threads.limited(1):
        blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
        assert blas and all(p["num_threads"] == 1 for p in blas)


def test_the_smallest_positive_environment_limit_counts(two_cores, monkeypatch):
    assert threads.env_limit() is None
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    monkeypatch.setenv("MKL_NUM_THREADS", "3")
    monkeypatch.setenv("NNLAB_THREADS", "many")  # not a number: no limit
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "0")  # 0: no limit, as OpenBLAS reads it
    assert threads.env_limit() == 3
    assert threads.choose(model(784, 300), 128) == 2  # capped by the cores first


def test_a_run_uses_the_choice_and_records_it(two_cores, monkeypatch, tmp_path):
    """The thread count changes how products are summed, so a run's is a function of its
    config and the environment, recorded in summary.json (README: Reproducibility)."""

    def threads_of(*overrides: str) -> int:
        run = train_run(CONFIGS / "digits.yaml", tmp_path, "training.epochs=1", *overrides)
        return json.loads((run / "summary.json").read_text())["threads"]

    wide = ["model.layers.0.units=512", "training.batch_size=128"]  # 128 x 64 x 512 = 4.2 M
    assert threads_of() == 1  # 32 x 64 x 256 = 0.5 M multiply-adds
    assert threads_of(*wide) == 2
    assert threads_of(*wide, "training.threads=1") == 1
    monkeypatch.setenv("NNLAB_THREADS", "1")
    assert threads_of(*wide) == 1
