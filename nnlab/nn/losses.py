"""Losses: value and gradient together, averaged over the samples of a batch.

``loss(out, t)`` returns ``(value, dL/dout)``. The cross-entropies are fused with their output
activation: they take the logits (the pre-activation of the last layer) and use log-sum-exp,
so neither ``log(0)`` nor ``exp`` overflow can occur; their gradient is the famous
``softmax(z) - y`` (over the batch size).

Targets are prepared once per data set by ``targets(y, n_out)``: integer class labels become
what the loss wants (kept as integers for categorical cross-entropy, a column of 0/1 for one
output, one-hot rows for several outputs, -1/+1 for hinge).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np

from nnlab.registry import Registry
from nnlab.schema import Doc, Interval

Array = np.ndarray
LOSSES = Registry("loss")


def one_hot(labels: Array, n: int, dtype) -> Array:
    out = np.zeros((labels.shape[0], n), dtype)
    out[np.arange(labels.shape[0]), labels] = 1
    return out


class Loss:
    name = ""
    #: the output activation this loss is fused with (it then receives logits), if any
    fused_activation: str | None = None
    #: for one output: predicted class 1 when the output is above this
    threshold: float = 0.5

    def targets(self, y: Array, n_out: int, dtype) -> Array:
        """Targets in the form ``__call__`` wants, from class labels (1-d ints) or values."""
        if y.ndim == 1 and y.dtype.kind in "iu":
            if n_out == 1:
                return y.astype(dtype).reshape(-1, 1)
            return one_hot(y, n_out, dtype)
        y = y.astype(dtype, copy=False)
        return y.reshape(-1, 1) if y.ndim == 1 else y

    def __call__(self, out: Array, t: Array) -> tuple[float, Array]:
        raise NotImplementedError

    def value(self, out: Array, t: Array) -> float:
        return self(out, t)[0]

    def decide(self, out: Array) -> Array:
        """Predicted class labels from outputs (logits when fused)."""
        if out.shape[-1] == 1:
            thr = 0.0 if self.fused_activation else self.threshold
            return (out[:, 0] > thr).astype(np.int64)
        return out.argmax(axis=-1)


@LOSSES.register("mse", aliases=("mean_squared_error",))
@dataclass
class MSE(Loss):
    """Mean squared error over all outputs: mean((out - t)^2)."""

    name = "mse"

    def __call__(self, out, t):
        d = out - t
        value = float(np.vdot(d, d)) / d.size
        d *= 2.0 / d.size
        return value, d


@LOSSES.register("mae", aliases=("mean_absolute_error",))
@dataclass
class MAE(Loss):
    """Mean absolute error over all outputs: mean(|out - t|)."""

    name = "mae"

    def __call__(self, out, t):
        d = out - t
        value = float(np.abs(d).sum()) / d.size
        np.sign(d, out=d)
        d *= 1.0 / d.size
        return value, d


@LOSSES.register("hinge")
@dataclass
class Hinge(Loss):
    """Hinge loss mean(max(0, 1 - t * out)) with targets in {-1, +1} (0/1 labels are mapped);
    several outputs are one-vs-rest, as in Keras. Predicts class 1 when out > 0."""

    name = "hinge"
    threshold = 0.0

    def targets(self, y, n_out, dtype):
        t = super().targets(y, n_out, dtype)
        if t.size and t.min() >= 0:  # 0/1 labels -> -1/+1
            t = 2 * t - 1
        return t

    def __call__(self, out, t):
        margin = 1.0 - t * out
        active = margin > 0
        value = float(np.sum(margin, where=active)) / out.size
        grad = np.multiply(t, active, dtype=out.dtype)
        grad *= -1.0 / out.size
        return value, grad


@LOSSES.register("binary_crossentropy", aliases=("bce", "binary_cross_entropy", "log_loss"))
@dataclass
class BinaryCrossentropy(Loss):
    """Binary cross-entropy of sigmoid outputs, fused with the sigmoid: takes the logits z and
    computes mean(max(z, 0) - z t + log(1 + exp(-|z|))). Needs a sigmoid output."""

    name = "binary_crossentropy"
    fused_activation = "sigmoid"

    def __call__(self, z, t):
        e = np.exp(-np.abs(z))  # in (0, 1]: no overflow
        value = np.maximum(z, 0) - z * t + np.log1p(e)
        # sigmoid(z) from e: 1/(1+e) for z >= 0, e/(1+e) for z < 0
        p = np.where(z >= 0, 1.0, e) / (1.0 + e)
        grad = np.subtract(p, t, out=p)
        grad *= 1.0 / z.size
        return float(value.sum()) / z.size, grad.astype(z.dtype, copy=False)


@LOSSES.register(
    "categorical_crossentropy",
    aliases=("cross_entropy", "crossentropy", "sparse_categorical_crossentropy", "nll"),
)
@dataclass
class CategoricalCrossentropy(Loss):
    """Cross-entropy of softmax outputs, fused with the softmax: takes the logits and uses
    log-sum-exp. Targets are integer labels or one-hot (or soft) rows. Needs a softmax output."""

    name = "categorical_crossentropy"
    fused_activation = "softmax"
    label_smoothing: Annotated[
        float,
        Interval(ge=0, lt=1),
        Doc("mix the one-hot targets with the uniform distribution (0 = off)"),
    ] = 0.0

    def targets(self, y, n_out, dtype):
        # one-hot rows (not label indices): the loss is then a few dense operations, cheaper
        # than fancy indexing on a batch
        t = super().targets(y, n_out, dtype)
        if self.label_smoothing:
            t = t * (1.0 - self.label_smoothing) + self.label_smoothing / n_out
        return t.astype(dtype, copy=False)

    def __call__(self, z, t):
        if t.ndim == 1:  # integer labels given directly
            t = one_hot(t, z.shape[1], z.dtype)
        n = z.shape[0]
        p = z - z.max(axis=1, keepdims=True)  # (batch, classes) shifted logits
        true_logit = float(np.vdot(t, p))  # sum over the batch of the targets' shifted logits
        np.exp(p, out=p)
        total = p.sum(axis=1, keepdims=True)
        mass = t.sum(axis=1, keepdims=True)  # 1 per labelled row, 0 for a row without a label
        value = (float(np.vdot(mass, np.log(total))) - true_logit) / n
        p /= total  # softmax
        p *= mass
        p -= t  # (softmax - t) on labelled rows, 0 on unlabelled ones
        p *= 1.0 / n
        return value, p
