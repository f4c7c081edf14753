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

from typing import Any

import numpy as np

Array = np.ndarray
#: the largest product (batch x inputs x units multiply-adds per member) of a member-last stack
MEMBER_LAST_MACS = 200


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
        return np.moveaxis(np.empty((*shape, self.members), dtype), -1, 0)

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

    def matmul(self, A: Array, B: Array, out: Array) -> Array:
        """``out[m] = A[m] @ B[m]`` for every member: A (M, r, c), or (r, c) shared by the
        members; B (M, c, s); out (M, r, s)."""
        if not self.member_last:
            return np.matmul(A, B, out=out)
        if A.ndim == 2:
            flat = _member_major(B), _member_major(out)
            if flat[0] is not None and flat[1] is not None:
                # a shared left matrix: one product with every member's columns side by side
                r, c = A.shape
                Bm, Om = flat
                np.dot(A, Bm.reshape(c, -1), out=Om.reshape(r, -1))
                return out
            A = np.broadcast_to(A, (self.members, *A.shape))
        r, c, s = A.shape[1], A.shape[2], B.shape[2]
        prod = self.temp("matmul", (r, c, s))  # (M, r, c, s)
        np.multiply(A[:, :, :, None], B[:, None, :, :], out=prod)
        return np.sum(prod, axis=2, out=out)


def _member_major(a: Array) -> Array | None:
    """The memory of a member-last array as a C-contiguous (..., M) array, or None."""
    m = np.moveaxis(a, 0, -1)
    return m if m.flags.c_contiguous else None
