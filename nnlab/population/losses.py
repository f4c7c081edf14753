"""The losses of ``nnlab.nn.losses`` over a population: each member's value and gradient.

``LOSSES[type(loss)](loss, out, t, w)`` takes the outputs (M, batch, k) of every member, the
targets (batch, k) shared by the members or (M, batch, k) of their own, and the 0/1 mask of
labelled samples (None, (batch,) or (M, batch)), and returns each member's loss value (M,)
(float64, as the single run's Python float) and the gradient (M, batch, k). The formulas are the
single run's, in its order; a sum over a batch may be taken in another order, which changes a
float32 result in its last bits at most.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from nnlab.nn.losses import (
    MAE,
    MSE,
    BinaryCrossentropy,
    CategoricalCrossentropy,
    Hinge,
    Loss,
    ZeroOne,
)
from nnlab.population.stack import dots, ones, total

Array = np.ndarray


def factor(x: Any, like: Array) -> Any:
    """A float64 per-member factor (a number, or (M,)) as the single run applies it to an
    array of ``like``'s dtype: a number stays a Python float; (M,) values are rounded to the
    dtype and shaped to broadcast over (M, batch, ...)."""
    if np.ndim(x) == 0:
        return float(x)
    return np.asarray(x, dtype=like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def _weigh(d: Array, w: Array | None) -> Any:
    """Weight the rows of an elementwise term ``d`` (M, batch, k) by ``w`` and return the
    normaliser: the weighted number of entries each member's loss averages over (a number, or
    (M,)), as the single run's ``_scale``."""
    if w is None:
        return float(d.shape[-2] * d.shape[-1])
    d *= w[..., None]
    return np.maximum(w.sum(axis=-1).astype(np.float64), 1.0) * d.shape[-1]


def mse(loss: MSE, out: Array, t: Array, w: Array | None) -> tuple[Array, Array]:
    d = out - t
    if w is None:
        size = float(d.shape[-2] * d.shape[-1])
        value = dots(d, d) / size
        d *= 2.0 / size
        return value, d
    wd = d * w[..., None]
    size = np.maximum(w.sum(axis=-1).astype(np.float64), 1.0) * d.shape[-1]
    value = dots(wd, d) / size
    wd *= factor(2.0 / size, wd)
    return value, wd


def mae(loss: MAE, out: Array, t: Array, w: Array | None) -> tuple[Array, Array]:
    d = out - t
    size = _weigh(d, w)
    value = total(np.abs(d)) / size
    np.sign(d, out=d)
    if w is not None:
        d *= w[..., None]
    d *= factor(1.0 / size, d)
    return value, d


def hinge(loss: Hinge, out: Array, t: Array, w: Array | None) -> tuple[Array, Array]:
    margin = 1.0 - t * out
    np.maximum(margin, 0.0, out=margin)
    size = _weigh(margin, w)
    value = total(margin) / size
    grad = np.multiply(t, margin > 0, dtype=out.dtype)
    if w is not None:
        grad *= w[..., None]
    grad *= factor(-1.0 / size, grad)
    return value, grad


def binary_crossentropy(
    loss: BinaryCrossentropy, z: Array, t: Array, w: Array | None
) -> tuple[Array, Array]:
    e = np.exp(-np.abs(z))  # in (0, 1]: no overflow
    value = np.maximum(z, 0) - z * t + np.log1p(e)
    p = np.where(z >= 0, 1.0, e) / (1.0 + e)  # sigmoid(z)
    grad = np.subtract(p, t, out=p)
    size = _weigh(value, w)
    if w is not None:
        grad *= w[..., None]
    grad *= factor(1.0 / size, grad)
    return total(value) / size, grad.astype(z.dtype, copy=False)


def categorical_crossentropy(
    loss: CategoricalCrossentropy, z: Array, t: Array, w: Array | None
) -> tuple[Array, Array]:
    M = z.shape[0]
    none = None  # members without a labelled sample in the batch: nothing to learn from it
    if w is None:
        top = z.max(axis=(1, 2), keepdims=True)
    else:
        labelled = np.broadcast_to(w, z.shape[:2]) > 0  # (M, batch)
        top = z.max(axis=(1, 2), keepdims=True, initial=-np.inf, where=labelled[..., None])
        none = ~labelled.any(axis=1)
        if none.any():
            top[none] = 0.0
        t = t * w[..., None]  # weighted target rows; a row of weight 0 contributes nothing
    s = z - top  # (M, batch, classes): each member's logits shifted by its largest one
    p = np.exp(s)
    sums = _row_sums(p)  # (M, batch)
    low = sums.min(axis=1) < 1e-30
    if low.any():  # a row far below the largest logit: shift those members row by row
        s[low] = z[low] - z[low].max(axis=2, keepdims=True)
        p[low] = np.exp(s[low])
        sums[low] = _row_sums(p[low])
    if w is None:
        n: Any = float(z.shape[1])
        log_total = total(np.log(sums))
    else:
        n = np.maximum(np.broadcast_to(w, (M, z.shape[1])).sum(axis=1).astype(np.float64), 1e-12)
        log_total = dots(w, np.log(sums))
        p *= w[..., None]
    value = (log_total - dots(t, s)) / n
    p /= sums[..., None]  # softmax (times the mask)
    p -= t
    p *= factor(1.0 / n, p)
    if none is not None and none.any():
        value[none] = 0.0
        p[none] = 0.0
    return value, p


def _row_sums(p: Array) -> Array:
    """The sums of the rows of each member's p (M, batch, classes), as the single run takes
    them (a product with ones: the same BLAS call, the same numbers) when the members' arrays
    are contiguous (member-first), else with a sum."""
    if p.flags.c_contiguous:
        return np.matmul(p, ones(p.shape[-1], p.dtype))
    return p.sum(axis=-1)


def zero_one(loss: ZeroOne, out: Array, t: Array, w: Array | None) -> tuple[Array, Array]:
    """1 - accuracy per member, as ``ZeroOne``; its gradient is 0 (evolution strategies read
    the value alone)."""
    if out.shape[-1] == 1:
        wrong = (out[..., 0] > loss.threshold) != (t[..., 0] > 0.5)  # (M, batch)
    else:
        wrong = out.argmax(axis=-1) != t.argmax(axis=-1)
    if w is None:
        value = total(wrong) / wrong.shape[-1]
    else:
        value = total(wrong * w) / np.maximum(w.sum(axis=-1).astype(np.float64), 1.0)
    return value, np.zeros_like(out)


#: the single-run losses a population covers
LOSSES: dict[type, Callable[..., tuple[Array, Array]]] = {
    MSE: mse,
    MAE: mae,
    Hinge: hinge,
    BinaryCrossentropy: binary_crossentropy,
    CategoricalCrossentropy: categorical_crossentropy,
    ZeroOne: zero_one,
}


def correct(loss: Loss, out: Array, labels: Array) -> Array:
    """How many of ``labels`` ((batch,) or (M, batch); -1: no label) each member's outputs
    predict, (M,): ``Loss.correct`` per member."""
    if out.shape[-1] == 1:
        thr = 0.0 if loss.fused_activation else loss.threshold
        return total((out[..., 0] > thr) == labels)
    return total(out.argmax(axis=-1) == labels)
