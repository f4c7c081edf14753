"""How many BLAS threads a training run uses.

Measured on the 2-core machines this project runs on (bench/bench_core.py and
``python -m nnlab.threads``): two threads make MNIST-sized products (128x784 @ 784x300, 30 M
multiply-adds) 2x faster, small ones (digits, 32x64 @ 64x256) at most 1.4x faster on an idle
machine, and tiny ones (XOR) not at all; but when another process is busy on the other core,
OpenBLAS' threads wait on each other and small products become tens of times slower. So a run
uses one thread unless its largest product per step has at least ``PARALLEL_MACS``
multiply-adds, and never more than the cores it may run on, or than a limit set in the
environment (``NNLAB_THREADS`` or one of ``BLAS_VARIABLES``: a sweep's workers set these).
``training.threads`` sets the number explicitly; on a machine that is busy with other work, 1
is the safe choice.

The choice depends only on the model, the batch size, the cores and the environment, never on
the load of the moment: the number of BLAS threads changes how products are summed, so the same
config gives the same numbers, bit for bit, only with the same number of threads (recorded as
``threads`` in summary.json).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

PARALLEL_MACS = 4_000_000
#: the environment variables that cap the threads of OpenBLAS, OpenMP, MKL, BLIS, ...
BLAS_VARIABLES = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
ENV_LIMITS = ("NNLAB_THREADS", *BLAS_VARIABLES)


def cores() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def per_worker(jobs: int, n_cores: int | None = None) -> int:
    """BLAS threads per worker so that ``jobs`` workers do not oversubscribe the cores."""
    return max(1, (n_cores or cores()) // max(1, jobs))


def blas_env(n: int) -> dict[str, str]:
    """The environment that caps a new process's BLAS libraries at ``n`` threads (set before
    NumPy is imported in it)."""
    return {name: str(n) for name in BLAS_VARIABLES}


def env_limit() -> int | None:
    """The smallest positive thread limit set in the environment, if any."""
    limits = []
    for name in ENV_LIMITS:
        try:
            n = int(os.environ.get(name, ""))
        except ValueError:
            continue
        if n > 0:
            limits.append(n)
    return min(limits) if limits else None


def largest_product(model: Any, batch: int) -> int:
    """Multiply-adds of the largest matrix product in a forward pass of ``batch`` samples."""
    best = 0
    for layer in model.layers:
        for key in ("W", "U"):
            W = layer.params.get(key)
            if W is not None and W.ndim == 2:
                best = max(best, batch * W.shape[0] * W.shape[1])
    return best


def choose(model: Any, batch: int, requested: int | None = None) -> int:
    """The number of BLAS threads for training ``model`` on batches of ``batch`` samples."""
    return for_product(largest_product(model, batch), requested)


def for_product(macs: int, requested: int | None = None) -> int:
    """The number of BLAS threads for a training step whose largest product has ``macs``
    multiply-adds (``requested``: ``training.threads``)."""
    if requested is not None:
        return max(1, min(requested, cores()))
    limit = min(cores(), env_limit() or cores())
    return limit if macs >= PARALLEL_MACS else 1


@contextlib.contextmanager
def limited(n: int) -> Iterator[None]:
    """Run the body with ``n`` BLAS threads (as threadpoolctl sets them), then restore."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # nothing to limit with: run as is
        yield
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield


def _measure() -> None:  # pragma: no cover - a measurement tool, run by hand
    """Time forward+backward products of typical sizes with 1 and with all threads."""
    import time

    import numpy as np

    rng = np.random.default_rng(0)
    n_all = cores()
    print(f"{n_all} cores; products (batch x inputs x outputs), forward + weight gradient:")
    for n, i, o in [(4, 2, 2), (32, 64, 256), (128, 64, 128), (128, 256, 256), (128, 784, 300)]:
        X = rng.random((n, i), dtype=np.float32)
        W = rng.random((i, o), dtype=np.float32)
        dZ = rng.random((n, o), dtype=np.float32)
        times = []
        for th in (1, n_all):
            with limited(th):
                best = float("inf")
                for _ in range(5):
                    t = time.perf_counter()
                    for _ in range(20):
                        np.matmul(X, W)
                        np.matmul(X.T, dZ)
                    best = min(best, (time.perf_counter() - t) / 20)
                times.append(best)
        print(
            f"  {n}x{i}x{o} ({n * i * o / 1e6:.2f} M): 1 thread {times[0] * 1e6:.0f} us, "
            f"{n_all} threads {times[1] * 1e6:.0f} us ({times[0] / times[1]:.2f}x)"
        )


if __name__ == "__main__":
    _measure()
