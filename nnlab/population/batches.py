"""The batches of a population's epoch: each member's rows, in its own shuffled order.

A split's arrays are shared by the members (one (n, ...) array, when their data is the same) or
their own (M, n, ...). A full batch is the arrays themselves. Shuffled batches gather each
member's rows ``perm[m, b*size:(b+1)*size]`` (its permutation of the epoch, drawn from its own
generator as its single run draws it), giving (M, size, ...) arrays; without shuffling, a batch
is the same rows for every member.
"""

from __future__ import annotations

import math

import numpy as np

from nnlab.population.stack import Stack

Array = np.ndarray


class StackedBatches:
    """``arrays``: the inputs, then each head's (T, L, W) (None entries stay None); ``shared``
    whether they are shared by the members (else each has (M, n, ...))."""

    def __init__(
        self,
        arrays: list[Array | None],
        size: int,
        shuffle: bool,
        shared: bool,
        stack: Stack,
    ):
        self.arrays, self.size, self.shuffle = arrays, size, shuffle
        self.shared, self.stack = shared, stack
        self.n = arrays[0].shape[0 if shared else 1]
        self.count = math.ceil(self.n / size)
        self.perm: Array | None = None
        self._bufs: dict = {}

    def keep(self, rows: Array) -> None:
        """Keep the members ``rows`` (the others finished)."""
        if not self.shared:
            self.arrays = [None if a is None else a[rows] for a in self.arrays]
        self._bufs.clear()

    def start(self, perm: Array | None) -> None:
        """A new epoch in the order ``perm`` (M, n): each member's permutation (None: the
        stored order)."""
        self.perm = perm

    def get(self, b: int) -> list[Array | None]:
        """Batch ``b`` of the epoch: a list like ``arrays``."""
        if self.shuffle:
            idx = self.perm[:, b * self.size : (b + 1) * self.size]  # (M, k)
            return [None if a is None else self._gather(i, a, idx) for i, a in
                    enumerate(self.arrays)]  # fmt: skip
        if self.count == 1:
            return self.arrays
        sl = slice(b * self.size, (b + 1) * self.size)
        if self.shared:
            return [None if a is None else a[sl] for a in self.arrays]
        return [None if a is None else a[:, sl] for a in self.arrays]

    def _gather(self, i: int, a: Array, idx: Array) -> Array:
        """Rows ``idx[m]`` of member m's array (M, k, ...), in a reused buffer."""
        M, k = idx.shape
        shape = (k, *a.shape[2 - self.shared :])
        buf = self._bufs.get((i, shape))
        if buf is None:
            buf = self._bufs[(i, shape)] = (
                self.stack.empty(shape, a.dtype) if i == 0 else np.empty((M, *shape), a.dtype)
            )
        if self.shared:
            rows = np.take(a, idx, axis=0)
        else:
            rows = a[np.arange(M)[:, None], idx]
        buf[...] = rows
        return buf
