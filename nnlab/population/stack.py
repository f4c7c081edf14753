"""The member axis of a population: how its arrays lie in memory, and its matrix products.

Every array of a population has the members on a leading axis: weights (M, inputs, units),
activations (M, batch, units), the parameter block (M, P). That is the logical shape the
engine's code sees. In memory the member axis goes first ("member-first": each member's matrix
is contiguous, and a product is one BLAS call per member through ``np.matmul``) or last
("member-last": element ``[m, i, j]`` at ``(i, j, m)``, so that every elementwise operation,
bias and reduction runs over M contiguous numbers).

Which is faster depends on the size of the products (measured with M = 100 and 1000, float32,
forward + both gradient products of a dense layer, ns per member):

==================  ============  ===========
batch x in x out    member-first  member-last
==================  ============  ===========
4 x 2 x 2 (XOR)     187           20
4 x 8 x 8           335           216
32 x 4 x 4          442           548
32 x 64 x 32        5,784         141,111
==================  ============  ===========

Tiny products are a few multiply-adds per member, for which a BLAS call per member (or NumPy's
loop over 2x2 matrices) costs far more than the arithmetic: member-last computes them as
broadcast products summed over the inner axis. Beyond ``MEMBER_LAST_MACS`` multiply-adds per
member and product, BLAS wins and the layout is member-first.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

Array = np.ndarray
#: the largest product (batch x inputs x units multiply-adds per member) of a member-last stack
MEMBER_LAST_MACS = 200
#: sums over an axis this short are additions (see ``Stack.sum``)
SHORT = 8


class Stack:
    """The member axis of a population: ``members`` networks, in ``dtype``, laid out
    member-last or member-first (see the module docstring)."""

    def __init__(self, members: int, dtype: Any, member_last: bool):
        self.members = members
        self.dtype = np.dtype(dtype)
        self.member_last = member_last
        self._temps: dict = {}

    @classmethod
    def choose(cls, members: int, dtype: Any, largest_macs: int) -> Stack:
        """The layout for products of at most ``largest_macs`` multiply-adds per member."""
        return cls(members, dtype, members > 1 and largest_macs <= MEMBER_LAST_MACS)

    def resize(self, members: int) -> None:
        """Change the number of members (arrays made before keep their size)."""
        self.members = members
        self._temps.clear()

    def empty(self, shape: tuple[int, ...], dtype: Any = None) -> Array:
        """A new array of logical shape (M, *shape) in the stack's layout."""
        dtype = self.dtype if dtype is None else dtype
        if not self.member_last:
            return np.empty((self.members, *shape), dtype)
        n = len(shape) + 1
        return np.empty((*shape, self.members), dtype).transpose(n - 1, *range(n - 1))

    def zeros(self, shape: tuple[int, ...], dtype: Any = None) -> Array:
        out = self.empty(shape, dtype)
        out[...] = 0
        return out

    def column(self, values: Any, dtype: Any = None) -> Array:
        """Per-member values (M,) as a column (M, 1) that broadcasts over an (M, P) block."""
        return np.asarray(values, dtype=dtype or self.dtype).reshape(self.members, 1)

    def temp(self, key: str, shape: tuple[int, ...]) -> Array:
        """A scratch array owned by the stack, one per (key, shape)."""
        out = self._temps.get((key, shape))
        if out is None:
            out = self._temps[(key, shape)] = self.empty(shape)
        return out

    def sum_rows(self, a: Array, out: Array) -> Array:
        """Each member's sum over the rows of ``a`` (M, n, k) -> (M, k), as the single run
        takes it (a product with a vector of ones: the same BLAS call per member, the same
        numbers); member-last, as additions."""
        if self.member_last:
            return self.sum(a, axis=1, out=out)
        return np.matmul(ones(a.shape[1], a.dtype), a, out=out)

    def sum(self, a: Array, axis: int, out: Array | None = None, dtype: Any = None) -> Array:
        """``a.sum(axis)``. Over a short axis of a member-last array, a chain of additions
        (each over M contiguous numbers): NumPy's reduction machinery costs several times
        more than the arithmetic on such arrays (5 us against 0.6 us an addition, M = 1000)."""
        n = a.shape[axis]
        if not self.member_last or n > SHORT or n < 2:
            return np.add.reduce(a, axis=axis, out=out, dtype=dtype)
        head = (slice(None),) * (axis % a.ndim)
        out = np.add(a[(*head, 0)], a[(*head, 1)], out=out, dtype=dtype)
        for i in range(2, n):
            np.add(out, a[(*head, i)], out=out)
        return out

    def matmul(self, A: Array, B: Array, out: Array) -> Array:
        """``out[m] = A[m] @ B[m]`` for every member: A (M, r, c), or (r, c) shared by the
        members; B (M, c, s); out (M, r, s)."""
        if not self.member_last:
            return np.matmul(A, B, out=out)
        r, c, s = A.shape[-2], A.shape[-1], B.shape[2]
        if A.ndim == 2:
            flat = _member_major(B), _member_major(out)
            if flat[0] is not None and flat[1] is not None:
                # a shared left matrix: one product with every member's columns side by side
                np.dot(A, flat[0].reshape(c, -1), out=flat[1].reshape(r, -1))
                return out
            A = np.broadcast_to(A, (self.members, r, c))
        if c <= SHORT:  # out = sum over i of A[:, :, i] (outer) B[:, i, :]
            np.multiply(A[:, :, 0, None], B[:, None, 0, :], out=out)
            term = self.temp("term", (r, s))
            for i in range(1, c):
                np.multiply(A[:, :, i, None], B[:, None, i, :], out=term)
                out += term
            return out
        prod = self.temp("matmul", (r, c, s))  # (M, r, c, s)
        np.multiply(A[:, :, :, None], B[:, None, :, :], out=prod)
        return np.add.reduce(prod, axis=2, out=out)


@functools.cache
def _ones(n: int, dtype: np.dtype) -> Array:
    out = np.ones(n, dtype)
    out.flags.writeable = False
    return out


def ones(n: int, dtype: Any) -> Array:
    """A read-only vector of ``n`` ones (kept per size and dtype)."""
    return _ones(n, np.dtype(dtype))


def total(a: Array) -> Array:
    """Each member's sum of an (M, ...) array, added in its dtype (as the single run's
    ``a.sum()``), as (M,) float64."""
    if a.ndim == 1:
        return a.astype(np.float64)
    mem = _member_major(a) if a.shape[0] > 1 else None
    if mem is None:
        acc = np.int64 if a.dtype == bool else None
        return a.sum(axis=tuple(range(1, a.ndim)), dtype=acc).astype(np.float64)
    rows = mem.reshape(-1, a.shape[0])  # (entries, M)
    acc = np.int64 if a.dtype == bool else a.dtype  # booleans are counted
    if rows.shape[0] > SHORT:
        return np.add.reduce(rows, axis=0, dtype=acc).astype(np.float64)
    if rows.shape[0] == 1:
        return rows[0].astype(np.float64)
    out = np.add(rows[0], rows[1], dtype=acc)
    for i in range(2, rows.shape[0]):
        out += rows[i]
    return out.astype(np.float64, copy=False)


def dots(a: Array, b: Array) -> Array:
    """Each member's dot product of two (M, ...) arrays (either may be shared: no member
    axis), (M,) float64: for contiguous members (member-first) as the single run's
    ``np.vdot`` (the same BLAS call, the same numbers), else a sum of the products."""
    M = max(a.shape[0] if a.ndim == b.ndim else 1, b.shape[0] if b.ndim >= a.ndim else 1)
    if a.flags.c_contiguous and b.flags.c_contiguous:
        a2 = a.reshape(M if a.ndim >= b.ndim else 1, -1)
        b2 = b.reshape(M if b.ndim >= a.ndim else 1, -1)
        return np.vecdot(a2, b2).astype(np.float64)
    return total(a * b)


def _member_major(a: Array) -> Array | None:
    """The memory of a member-last array as a C-contiguous (..., M) array, or None."""
    m = a.transpose(_ROLL[a.ndim])
    return m if m.flags.c_contiguous else None


_ROLL = {n: (*range(1, n), 0) for n in range(1, 8)}  # the member axis last
