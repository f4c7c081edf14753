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
    whether they are shared by the members (else each has (M, n, ...)). ``codes``: the small
    integers the inputs come from and their divisor (as ``Split.codes``, stacked like the
    arrays): shuffled batches are gathered from them, as the single run gathers its batches."""

    def __init__(
        self,
        arrays: list[Array | None],
        size: int,
        shuffle: bool,
        shared: bool,
        stack: Stack,
        codes: tuple[Array, float] | None = None,
    ):
        self.arrays, self.size, self.shuffle = arrays, size, shuffle
        self.shared, self.stack = shared, stack
        self.codes = codes if shuffle else None
        self.n = arrays[0].shape[0 if shared else 1]
        self.count = math.ceil(self.n / size)
        self.perm: Array | None = None
        self._bufs: dict = {}

    def keep(self, rows: Array) -> None:
        """Keep the members ``rows`` (the others finished)."""
        if not self.shared:
            self.arrays = [None if a is None else a[rows] for a in self.arrays]
            if self.codes is not None:
                self.codes = (self.codes[0][rows], self.codes[1])
        self._bufs.clear()

    def start(self, perm: Array | None) -> None:
        """A new epoch in the order ``perm`` (M, n): each member's permutation (None: the
        stored order)."""
        self.perm = perm

    def get(self, b: int) -> list[Array | None]:
        """Batch ``b`` of the epoch: a list like ``arrays``."""
        if self.shuffle:
            idx = self.perm[:, b * self.size : (b + 1) * self.size]  # (M, k)
            if not self.shared:  # rows of the members' arrays laid end to end
                idx = idx + (np.arange(idx.shape[0]) * self.n)[:, None]
            out = [None if a is None else self._gather(i, a, idx) for i, a in
                   enumerate(self.arrays)]  # fmt: skip
            if self.codes is not None:
                ints = self._gather(-1, self.codes[0], idx)
                X = self._buf(0, ints.shape[1:], self.arrays[0].dtype, stacked=True)
                np.copyto(X, ints)  # cast, then divide in place: as the single run
                np.divide(X, X.dtype.type(self.codes[1]), out=X)
                out[0] = X
            return out
        if self.count == 1:
            return self.arrays
        sl = slice(b * self.size, (b + 1) * self.size)
        if self.shared:
            return [None if a is None else a[sl] for a in self.arrays]
        return [None if a is None else a[:, sl] for a in self.arrays]

    def _buf(self, i: int, shape: tuple, dtype, stacked: bool) -> Array:
        buf = self._bufs.get((i, shape))
        if buf is None:
            M = self.perm.shape[0]
            buf = self._bufs[(i, shape)] = (
                self.stack.empty(shape, dtype) if stacked else np.empty((M, *shape), dtype)
            )
        return buf

    def _gather(self, i: int, a: Array, idx: Array) -> Array | None:
        """Rows ``idx[m]`` of member m's array, (M, k, ...), in a reused buffer (shared
        arrays: rows of the one array; else rows of the members' arrays laid end to end)."""
        if i == 0 and self.codes is not None:
            return None  # the inputs come from the codes
        M, k = idx.shape
        flat = a if self.shared else a.reshape(-1, *a.shape[2:])
        buf = self._buf(i, (k, *flat.shape[1:]), a.dtype, stacked=i == 0)
        if buf.flags.c_contiguous:
            np.take(flat, idx.reshape(-1), axis=0, out=buf.reshape(M * k, *flat.shape[1:]))
        else:
            buf[...] = np.take(flat, idx, axis=0)
        return buf
