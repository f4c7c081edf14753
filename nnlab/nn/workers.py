"""Independent pieces of a layer's work run at once on the cores a run may use.

A convolution's work is matrix products on blocks of samples and the NumPy work around them
(copying windows into columns, adding the columns' gradient back, pooling), which runs on one
core while OpenBLAS threads only the products, and whose threads spin between products; on a
machine that other processes keep busy, OpenBLAS' two threads wait on each other and a
product can take ten times as long as on one thread. The samples of a batch are independent,
so the image layers cut their work into as many pieces of samples as the run may use threads
(the BLAS limit in force: ``nnlab.threads`` sets it for a run) and ``run`` runs them at once
on threads of its own, each with a single-threaded BLAS. NumPy releases the GIL in its loops
and in BLAS calls, so the pieces run in parallel.

A piece's numbers do not depend on which thread runs it or when; how the work is cut depends
only on the number of threads, which a run records (as BLAS threads change how products are
summed, so do these).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

_blas: list | None = None  # threadpoolctl's controllers of the BLAS libraries, found once
_pool: ThreadPoolExecutor | None = None


def _blas_libraries() -> list:
    global _blas
    if _blas is None:
        try:
            from threadpoolctl import ThreadpoolController

            controllers = ThreadpoolController().lib_controllers
        except ImportError:  # nothing to read or set the BLAS threads with: one piece
            controllers = []
        _blas = [c for c in controllers if c.user_api == "blas"]
    return _blas


def count() -> int:
    """How many pieces to cut work into: the BLAS thread limit in force (1 without
    threadpoolctl)."""
    libraries = _blas_libraries()
    return max(1, min(lib.get_num_threads() for lib in libraries)) if libraries else 1


def pieces(n: int, parts: int, step: int = 1) -> list[tuple[int, int]]:
    """``range(n)`` cut into at most ``parts`` contiguous (start, stop) ranges, their
    boundaries multiples of ``step`` (blocks of samples stay whole), as even as possible."""
    blocks = -(-n // step)
    parts = max(1, min(parts, blocks))
    bounds = [min(n, (blocks * k // parts) * step) for k in range(parts + 1)]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def run(tasks: list[Callable[[], Any]]) -> list[Any]:
    """Run the tasks, at once when there are several (the calling thread takes the first),
    with the BLAS library single-threaded meanwhile; their results in order."""
    if len(tasks) == 1:
        return [tasks[0]()]
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="nnlab")
    libraries = _blas_libraries()
    saved = [lib.get_num_threads() for lib in libraries]
    for lib in libraries:
        lib.set_num_threads(1)
    try:
        futures = [_pool.submit(task) for task in tasks[1:]]
        first = tasks[0]()
        return [first, *(f.result() for f in futures)]
    finally:
        for lib, n in zip(libraries, saved, strict=True):
            lib.set_num_threads(n)
