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
    """One-hot rows of integer labels; a negative label (no label) gives a row of zeros."""
    out = np.zeros((labels.shape[0], n), dtype)
    rows = np.flatnonzero(labels >= 0)
    out[rows, labels[rows]] = 1
    return out


def _scale(d: Array, w: Array | None) -> float:
    """Weight the rows of an elementwise term ``d`` (batch, k) by ``w`` (batch,) and return the
    normaliser: the weighted number of entries the loss averages over."""
    if w is None:
        return float(d.size)
    d *= w[:, None]
    return max(float(w.sum()), 1.0) * d.shape[1]


class Loss:
    name = ""
    #: the output activation this loss is fused with (it then receives logits), if any
    fused_activation: str | None = None
    #: for one output: predicted class 1 when the output is above this
    threshold: float = 0.5
    #: False for a loss of the output alone (a VAE's KL term): its output has ``target: none``
    needs_target = True
    #: False for a loss whose gradient is zero wherever it exists (``zero_one``): gradient
    #: optimizers cannot descend it, evolution strategies (``es``) can
    differentiable = True

    def targets(self, y: Array, n_out: int, dtype) -> Array:
        """Targets in the form ``__call__`` wants, from class labels (1-d ints) or values."""
        if y.ndim == 1 and y.dtype.kind in "iu":
            if n_out == 1:
                return y.astype(dtype).reshape(-1, 1)
            return one_hot(y, n_out, dtype)
        y = y.astype(dtype, copy=False)
        if y.ndim == 2 and y.shape[1] == 2 and n_out == 1:  # one-hot rows of two classes
            return y[:, 1:].copy()  # for one output: the positive class's column
        return y.reshape(-1, 1) if y.ndim == 1 else y

    def __call__(self, out: Array, t: Array, w: Array | None = None) -> tuple[float, Array]:
        """(loss, dloss/dout), averaged over the samples; ``w`` (batch,) optional weights of
        the samples, >= 0: the loss is then the weighted mean, sum_i w_i l_i / sum_i w_i (a 0/1
        mask leaves out the samples without a label; pseudo-labels may weigh less)."""
        raise NotImplementedError

    def value(self, out: Array, t: Array, w: Array | None = None) -> float:
        return self(out, t, w)[0]

    def decide(self, out: Array) -> Array:
        """Predicted class labels from outputs (logits when fused)."""
        if out.shape[-1] == 1:
            thr = 0.0 if self.fused_activation else self.threshold
            return (out[:, 0] > thr).astype(np.int64)
        return out.argmax(axis=-1)

    def correct(self, out: Array, labels: Array) -> int:
        """How many of ``labels`` the outputs predict (a label of -1 is never predicted)."""
        if out.shape[-1] == 1:  # compare the boolean decision with 0/1 labels directly
            thr = 0.0 if self.fused_activation else self.threshold
            return int(np.count_nonzero((out[:, 0] > thr) == labels))
        return int(np.count_nonzero(out.argmax(axis=-1) == labels))


@LOSSES.register("mse", aliases=("mean_squared_error",))
@dataclass
class MSE(Loss):
    """Mean squared error over all outputs: mean((out - t)^2)."""

    name = "mse"

    def __call__(self, out, t, w=None):
        d = out - t
        if w is None:
            value = float(np.vdot(d, d)) / d.size
            d *= 2.0 / d.size
            return value, d
        wd = d * w[:, None]
        size = max(float(w.sum()), 1.0) * d.shape[1]
        value = float(np.vdot(wd, d)) / size
        wd *= 2.0 / size
        return value, wd


@LOSSES.register("mae", aliases=("mean_absolute_error",))
@dataclass
class MAE(Loss):
    """Mean absolute error over all outputs: mean(|out - t|)."""

    name = "mae"

    def __call__(self, out, t, w=None):
        d = out - t
        size = _scale(d, w)
        value = float(np.abs(d).sum()) / size
        np.sign(d, out=d)
        if w is not None:
            d *= w[:, None]
        d *= 1.0 / size
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

    def __call__(self, out, t, w=None):
        margin = 1.0 - t * out
        np.maximum(margin, 0.0, out=margin)
        size = _scale(margin, w)
        value = float(margin.sum()) / size
        grad = np.multiply(t, margin > 0, dtype=out.dtype)
        if w is not None:
            grad *= w[:, None]
        grad *= -1.0 / size
        return value, grad


@LOSSES.register("binary_crossentropy", aliases=("bce", "binary_cross_entropy", "log_loss"))
@dataclass
class BinaryCrossentropy(Loss):
    """Binary cross-entropy of sigmoid outputs, fused with the sigmoid: takes the logits z and
    computes mean(max(z, 0) - z t + log(1 + exp(-|z|))). Needs a sigmoid output."""

    name = "binary_crossentropy"
    fused_activation = "sigmoid"

    def __call__(self, z, t, w=None):
        e = np.exp(-np.abs(z))  # in (0, 1]: no overflow
        value = np.maximum(z, 0) - z * t + np.log1p(e)
        # sigmoid(z) from e: 1/(1+e) for z >= 0, e/(1+e) for z < 0
        p = np.where(z >= 0, 1.0, e) / (1.0 + e)
        grad = np.subtract(p, t, out=p)
        size = _scale(value, w)
        if w is not None:
            grad *= w[:, None]
        grad *= 1.0 / size
        return float(value.sum()) / size, grad.astype(z.dtype, copy=False)


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

    def __call__(self, z, t, w=None):
        # a target row of zeros contributes nothing; with weights, the mean is over their sum
        if t.ndim == 1:  # integer labels given directly
            t = one_hot(t, z.shape[1], z.dtype)
        # log-sum-exp shifted by the batch's largest logit (one reduction, where a shift per
        # row costs one per row); a row far below it, whose exponentials would vanish, makes
        # the shift row-wise after all
        if w is None:
            s = z - z.max()  # (batch, classes) shifted logits
        elif not w.any():  # no labelled sample in the batch: nothing to learn from it
            return 0.0, np.zeros_like(z)
        else:  # the shift comes from labelled rows only: masked rows change nothing at all
            s = z - z.max(initial=-np.inf, where=w[:, None] > 0)
            t = t * w[:, None]  # weighted target rows; a row of weight 0 contributes nothing
        p = np.exp(s)
        total = p @ self._ones(z)  # (batch,) sums of the rows
        if total.min() < 1e-30:
            s = z - z.max(axis=1, keepdims=True)
            np.exp(s, out=p)
            total = p @ self._ones(z)
        if w is None:  # every target row sums to one
            n = z.shape[0]
            log_total = float(np.log(total).sum())
        else:  # masked rows: their target rows are zeros, their softmax is zeroed below
            n = max(float(w.sum()), 1e-12)
            log_total = float(np.vdot(w, np.log(total)))
            p *= w[:, None]
        value = (log_total - float(np.vdot(t, s))) / n
        p /= total[:, None]  # softmax (times the mask)
        p -= t
        p *= 1.0 / n
        return value, p

    def _ones(self, z: Array) -> Array:
        ones = getattr(self, "_ones_vec", None)
        if ones is None or ones.shape[0] != z.shape[1] or ones.dtype != z.dtype:
            ones = self._ones_vec = np.ones(z.shape[1], z.dtype)
        return ones


@LOSSES.register("zero_one", aliases=("0-1", "zero_one_loss", "misclassification"))
@dataclass
class ZeroOne(Loss):
    """The 0-1 loss, 1 - accuracy: the (weighted) fraction of samples classified wrongly, as
    the accuracy decides (one output: class 1 when above 0.5; several: the largest). It is flat
    between decisions (its gradient is 0 wherever it exists): only ``es`` can train on it."""

    name = "zero_one"
    differentiable = False

    def __call__(self, out, t, w=None):
        if out.shape[1] == 1:
            wrong = (out[:, 0] > self.threshold) != (t[:, 0] > 0.5)
        else:
            wrong = out.argmax(axis=1) != t.argmax(axis=1)
        if w is None:
            value = np.count_nonzero(wrong) / wrong.shape[0]
        else:
            value = float(np.dot(w, wrong)) / max(float(w.sum()), 1.0)
        return value, np.zeros_like(out)


@LOSSES.register("kl_divergence", aliases=("kl", "kld"))
@dataclass
class KLDivergence(Loss):
    """KL divergence of N(mu, exp(log_var)) from N(0, 1), the regulariser of a variational
    autoencoder: takes the encoder's [mu, log_var] output (2k units, linear) and no target
    (``target: none``); -1/2 sum_j (1 + log_var_j - mu_j^2 - exp(log_var_j)), summed over the k
    latent units and averaged over the samples. Its output's weight balances it against a
    reconstruction loss that averages over the n inputs: 1/n gives the ELBO per input."""

    name = "kl_divergence"
    needs_target = False

    def targets(self, y, n_out, dtype):
        return np.zeros((y.shape[0], 0), dtype)

    def __call__(self, out, t, w=None):
        k = out.shape[1] // 2
        mu, log_var = out[:, :k], out[:, k:]
        e = np.exp(log_var)  # (batch, k)
        per = (mu * mu + e - log_var - 1.0).sum(axis=1)  # (batch,) twice each sample's KL
        n = out.shape[0] if w is None else max(float(w.sum()), 1.0)
        value = 0.5 * float(per.sum() if w is None else np.dot(w, per)) / n
        grad = np.empty_like(out)  # d/dmu = mu, d/dlog_var = (exp(log_var) - 1) / 2
        np.multiply(mu, 1.0 / n, out=grad[:, :k])
        np.subtract(e, 1.0, out=grad[:, k:])
        grad[:, k:] *= 0.5 / n
        if w is not None:
            grad *= w[:, None]
        return value, grad
