"""BLAS thread choice: one thread for small products or a busy machine, idle cores otherwise."""

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
def two_idle_cores(monkeypatch):
    monkeypatch.setattr(threads, "cores", lambda: 2)
    monkeypatch.setattr(threads, "busy_cores", lambda seconds=0.2: 0.1)
    for name in threads.ENV_LIMITS:
        monkeypatch.delenv(name, raising=False)


def unsampled(seconds=0.2):
    raise AssertionError("the load is sampled only when it decides")


def test_small_products_use_one_thread(two_idle_cores, monkeypatch):
    monkeypatch.setattr(threads, "busy_cores", unsampled)
    assert threads.largest_product(model(64, 256), 32) == 32 * 64 * 256
    assert threads.decide(model(64, 256), 32) == (1, "")


def test_large_products_use_every_core(two_idle_cores):
    assert threads.choose(model(784, 300), 128) == 2


@pytest.mark.parametrize("busy, n", [(0.0, 2), (0.25, 2), (0.3, 1), (1.0, 1), (2.0, 1)])
def test_large_products_leave_the_cores_others_use(two_idle_cores, monkeypatch, busy, n):
    # with another process on one of two cores, 2 threads made 2 epochs of MNIST 6 to 9 times
    # slower than 1 (bench/bench_busy.py); the choice says why
    monkeypatch.setattr(threads, "busy_cores", lambda seconds=0.2: busy)
    chosen, why = threads.decide(model(784, 300), 128)
    assert chosen == n
    assert f"kept {busy:.1f} of the 2 cores busy" in why and "training.threads" in why


def test_of_eight_cores_those_others_leave_idle(monkeypatch):
    monkeypatch.setattr(threads, "cores", lambda: 8)
    monkeypatch.setattr(threads, "busy_cores", lambda seconds=0.2: 2.6)
    for name in threads.ENV_LIMITS:
        monkeypatch.delenv(name, raising=False)
    assert threads.choose(model(784, 300), 128) == 5
    monkeypatch.setenv("NNLAB_THREADS", "4")
    assert threads.choose(model(784, 300), 128) == 4


def test_busy_cores_sees_a_spinning_process():
    import subprocess
    import sys

    if threads.busy_cores() is None:
        pytest.skip("no /proc/stat")
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        threads.busy_cores(0.3)  # the hog is running
        assert 0.5 <= threads.busy_cores(0.3) <= threads.cores() + 0.1
    finally:
        hog.kill()
        hog.wait()


def test_environment_limits_and_explicit_requests(two_idle_cores, monkeypatch):
    monkeypatch.setattr(threads, "busy_cores", unsampled)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    assert threads.choose(model(784, 300), 128) == 1
    assert threads.choose(model(784, 300), 128, requested=2) == 2
    assert threads.choose(model(64, 8), 4, requested=8) == 2  # never more than the cores


def test_limited_sets_the_blas_threads():
    from threadpoolctl import threadpool_info

    with threads.limited(1):
        blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
        assert blas and all(p["num_threads"] == 1 for p in blas)


def test_the_smallest_positive_environment_limit_counts(two_idle_cores, monkeypatch):
    assert threads.env_limit() is None
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    monkeypatch.setenv("MKL_NUM_THREADS", "3")
    monkeypatch.setenv("NNLAB_THREADS", "many")  # not a number: no limit
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "0")  # 0: no limit, as OpenBLAS reads it
    assert threads.env_limit() == 3
    assert threads.choose(model(784, 300), 128) == 2  # capped by the cores first


def test_a_run_uses_the_choice_and_records_it(two_idle_cores, monkeypatch, tmp_path):
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


def test_a_resumed_run_keeps_the_count_it_started_with(two_idle_cores, monkeypatch):
    from conftest import CONFIGS
    from nnlab.config import load_config
    from nnlab.experiment import build
    from nnlab.metrics import MetricsTally
    from nnlab.train import Trainer

    monkeypatch.setattr(threads, "PARALLEL_MACS", 0)  # digits decides by the load here
    cfg = load_config(CONFIGS / "digits.yaml", ["training.epochs=1"])
    first = Trainer(build(cfg), log=[])
    first.fit()
    assert first.threads == 2
    arrays, meta = first.state()
    assert meta["threads"] == 2
    monkeypatch.setattr(threads, "busy_cores", lambda seconds=0.2: 2.0)  # busy now
    cfg["training"]["epochs"] = 2
    again = Trainer(build(cfg))
    again.load_state(arrays, meta, MetricsTally.of(first.log))
    again.fit()
    assert again.threads == 2 and again.tally.count == 2
    fresh = Trainer(build(cfg))
    fresh.fit()
    assert fresh.threads == 1
