"""How many BLAS threads a training run uses.

Measured on the 2-core machines this project runs on (bench/bench_core.py, bench/bench_busy.py
and ``python -m nnlab.threads``): two threads make MNIST-sized products (128x784 @ 784x300,
30 M multiply-adds) 2x faster, small ones (digits, 32x64 @ 64x256) at most 1.4x faster on an
idle machine, and tiny ones (XOR) not at all; but when another process is busy on the other
core, OpenBLAS' threads wait on each other: small products become tens of times slower, and a
2-epoch MNIST run 7 to 9 times slower with 2 threads than with 1 (medians, bench/bench_busy.py).

So a run uses one thread, unless its largest product per step has at least ``PARALLEL_MACS``
multiply-adds and cores are idle when it starts: then one per core that other processes leave
idle (sampled over 0.2 s from /proc/stat, less this process's own time; a core counts as taken
once they use more than ``IDLE_SLACK`` of one). Never more than the cores it may run on, or
than a limit set in the environment (``NNLAB_THREADS`` or one of ``BLAS_VARIABLES``: a sweep's
workers set these). ``training.threads``
sets the number outright.

The number of BLAS threads changes how products are summed, so the same config gives the same
numbers, bit for bit, with the same number of threads. The count a run used is recorded
(``threads`` in summary.json, and in its checkpoints, which a resumed run keeps to), and a
choice the load decided is printed: set ``training.threads`` to that count to repeat the run
exactly whatever the load (``NNLAB_THREADS`` only caps the count: the load can still lower it).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator
from typing import Any

PARALLEL_MACS = 4_000_000
IDLE_SLACK = 0.25  # of a core: other processes using less leave it idle
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


def _cpu_ticks(cpus: set[int]) -> tuple[int, int] | None:
    """(busy, total) clock ticks of ``cpus`` since boot, from /proc/stat (Linux)."""
    busy = total = 0
    try:
        with open("/proc/stat", encoding="ascii") as f:
            for line in f:
                name, *fields = line.split()
                if not name.startswith("cpu") or name == "cpu":
                    continue
                if int(name[3:]) in cpus:
                    ticks = [int(x) for x in fields[:8]]  # user nice system idle iowait irq ...
                    total += sum(ticks)
                    busy += sum(ticks) - ticks[3] - ticks[4]
    except (OSError, ValueError, IndexError):
        return None
    return (busy, total) if total else None


def busy_cores(seconds: float = 0.2) -> float | None:
    """How many of this process's cores other processes keep busy, sampled over ``seconds``
    (/proc/stat, in ticks of 10 ms: about 0.05 of a core per core of quantisation over 0.2 s,
    less this process's own CPU time); None where the system does not say."""
    try:
        cpus = os.sched_getaffinity(0)
    except AttributeError:
        return None
    before, own, t0 = _cpu_ticks(cpus), time.process_time(), time.monotonic()
    time.sleep(seconds)
    after, own_after, t1 = _cpu_ticks(cpus), time.process_time(), time.monotonic()
    if before is None or after is None or after[1] <= before[1]:
        return None
    share = (after[0] - before[0]) / (after[1] - before[1])  # of all the cores' time
    return max(0.0, share * len(cpus) - (own_after - own) / (t1 - t0))


def largest_product(model: Any, batch: int) -> int:
    """Multiply-adds of the largest matrix product in a forward pass of ``batch`` samples."""
    best = 0
    for layer in model.layers:
        macs = getattr(layer, "macs", None)  # a layer that says (a convolution's product)
        if macs is not None:
            best = max(best, macs(batch))
            continue
        for key in ("W", "U"):
            W = layer.params.get(key)
            if W is not None and W.ndim == 2:
                best = max(best, batch * W.shape[0] * W.shape[1])
    return best


def choose(model: Any, batch: int, requested: int | None = None) -> int:
    """The number of BLAS threads for training ``model`` on batches of ``batch`` samples."""
    return decide(model, batch, requested)[0]


def decide(model: Any, batch: int, requested: int | None = None) -> tuple[int, str]:
    """``choose``, with why, when the load of the moment decided it (else "")."""
    return decide_product(largest_product(model, batch), requested)


def decide_product(macs: int, requested: int | None = None) -> tuple[int, str]:
    """The BLAS threads for a training step whose largest product has ``macs`` multiply-adds
    (``requested``: ``training.threads``), with why when the load of the moment decided it."""
    if requested is not None:
        return max(1, min(requested, cores())), ""
    limit = min(cores(), env_limit() or cores())
    if limit == 1 or macs < PARALLEL_MACS:
        return 1, ""
    busy = busy_cores()
    if busy is None:  # no /proc/stat: the load average, this process's own run less
        busy = max(0.0, os.getloadavg()[0] - 1.0) if hasattr(os, "getloadavg") else 0.0
    taken = max(0, math.ceil(busy - IDLE_SLACK))
    n = max(1, min(limit, cores() - taken))
    seen = f"other processes kept {busy:.1f} of the {cores()} cores busy at the start"
    return n, f"{seen}; training.threads sets the count"


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
