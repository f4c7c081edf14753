"""BLAS thread choice: one thread for small products or a busy machine, all cores otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from nnlab import threads
from nnlab.nn import Model
from nnlab.nn.layers import Dense


def model(n_in: int, units: int) -> Model:
    return Model([Dense(units=units), Dense(units=10)], (n_in,), np.random.default_rng(0))


@pytest.fixture
def two_idle_cores(monkeypatch):
    monkeypatch.setattr(threads, "cores", lambda: 2)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (0.2, 0.2, 0.2))
    for name in threads.ENV_LIMITS:
        monkeypatch.delenv(name, raising=False)


def test_small_products_use_one_thread(two_idle_cores):
    assert threads.largest_product(model(64, 256), 32) == 32 * 64 * 256
    assert threads.choose(model(64, 256), 32) == 1


def test_large_products_use_every_core(two_idle_cores):
    assert threads.choose(model(784, 300), 128) == 2


def test_the_choice_ignores_the_load_of_the_moment(two_idle_cores, monkeypatch):
    # the thread count changes how products are summed: it must not depend on the load, or
    # the same config would not give the same numbers run after run
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (5.0, 5.0, 5.0))
    assert threads.choose(model(784, 300), 128) == 2


def test_environment_limits_and_explicit_requests(two_idle_cores, monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    assert threads.choose(model(784, 300), 128) == 1
    assert threads.choose(model(784, 300), 128, requested=2) == 2
    assert threads.choose(model(64, 8), 4, requested=8) == 2  # never more than the cores


def test_limited_sets_the_blas_threads():
    from threadpoolctl import threadpool_info

    with threads.limited(1):
        blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
        assert blas and all(p["num_threads"] == 1 for p in blas)
