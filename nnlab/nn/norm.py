"""Normalization layers: batchnorm (over the batch) and layernorm (over each sample's features).

Both normalize along the last axis of their input: the units of a dense layer's output
(batch, units), the channels of an image (batch, height, width, channels). Batchnorm takes the
statistics of each channel over the batch (and the image's positions) in training and its
running averages in evaluation; layernorm takes them over each position's last axis, in training
and evaluation alike. Both then scale and shift each channel by learnable gamma and beta.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np

from nnlab.nn.initializers import INITIALIZERS
from nnlab.nn.layers import LAYERS, Layer, Spec, product
from nnlab.schema import Doc, Interval, Ref

Array = np.ndarray


@dataclass(eq=False)
class _Normalization(Layer):
    eps: Annotated[float, Interval(gt=0), Doc("added to the variance before the square root")] = (
        1e-5
    )
    center: Annotated[bool, Doc("add a learnable shift beta")] = True
    scale: Annotated[bool, Doc("multiply by a learnable scale gamma")] = True
    gamma_initializer: Annotated[Spec, Ref(INITIALIZERS), Doc("initializer of gamma")] = "ones"
    beta_initializer: Annotated[Spec, Ref(INITIALIZERS), Doc("initializer of beta")] = "zeros"

    def __post_init__(self):
        self.no_decay = ("gamma", "beta")

    def build(self, input_shape, rng, dtype):
        c = self._channels = input_shape[-1]
        if self.scale:
            self.params["gamma"] = INITIALIZERS.build(self.gamma_initializer)((c,), rng, dtype)
        if self.center:
            self.params["beta"] = INITIALIZERS.build(self.beta_initializer)((c,), rng, dtype)
        return input_shape

    def _affine(self, xhat: Array, out: Array) -> Array:
        """gamma * xhat + beta into ``out``."""
        if self.scale:
            np.multiply(xhat, self.params["gamma"], out=out)
        else:
            np.copyto(out, xhat)
        if self.center:
            out += self.params["beta"]
        return out

    def _affine_grads(self, dY: Array, xhat: Array) -> None:
        """The gradients of gamma and beta: sums over the rows of (rows, channels) arrays."""
        ones = self._ones(dY.shape[0], dY.dtype)
        if self.center:
            product(ones, dY, self.grads["beta"])
        if self.scale:
            tmp = np.multiply(dY, xhat, out=self._buf("tmp", dY.shape, dY.dtype))
            product(ones, tmp, self.grads["gamma"])


@LAYERS.register("batchnorm", aliases=("batch_normalization", "batchnorm2d"))
@dataclass(eq=False)
class BatchNorm(_Normalization):
    """Batch normalization (Ioffe & Szegedy) of the last axis (a dense layer's units, an
    image's channels): in training each channel is normalized with the mean and variance of
    the batch (over samples and positions), ``gamma * (x - mean) / sqrt(var + eps) + beta``,
    and running averages of them are kept, ``r = (1 - momentum) r + momentum * batch value``
    (PyTorch's convention; the running variance takes the unbiased batch variance); in
    evaluation the running averages are used."""

    momentum: Annotated[
        float,
        Interval(ge=0, le=1),
        Doc("weight of each batch in the running averages (PyTorch's; Keras' 0.99 is 0.01)"),
    ] = 0.1

    def build(self, input_shape, rng, dtype):
        out = super().build(input_shape, rng, dtype)
        c = self._channels
        self.buffers["running_mean"] = np.zeros(c, dtype)
        self.buffers["running_var"] = np.ones(c, dtype)
        return out

    def inference_affine(self) -> tuple[Array, Array]:
        """(a, b) with the evaluation-time output ``x * a + b`` per channel, computed as the
        layer computes them (exports use them)."""
        rm, rv = self.buffers["running_mean"], self.buffers["running_var"]
        a = 1.0 / np.sqrt(rv + rv.dtype.type(self.eps))
        if self.scale:
            a = a * self.params["gamma"]
        b = -rm * a
        if self.center:
            b = b + self.params["beta"]
        return a, b

    def forward(self, X, training=False):
        self._X, self._Y = X, self._buf("out", X.shape, X.dtype)  # (kept for layerstats)
        self._training = training
        out = self._Y
        if not training:
            a, b = self.inference_affine()
            np.multiply(X, a, out=out)
            out += b
            return out
        c = self._channels
        X2 = X.reshape(-1, c)  # (rows, channels): samples and positions
        m = X2.shape[0]
        ones = self._ones(m, X.dtype)
        mean = product(ones, X2, self._buf("mean", (c,), X.dtype))
        mean /= m
        xhat = np.subtract(X2, mean, out=self._buf("xhat", X2.shape, X.dtype))
        sq = np.multiply(xhat, xhat, out=self._buf("tmp", X2.shape, X.dtype))
        var = product(ones, sq, self._buf("var", (c,), X.dtype))
        var /= m
        inv = self._inv = np.sqrt(var + X.dtype.type(self.eps))
        np.reciprocal(inv, out=inv)
        xhat *= inv
        self._xhat = xhat
        mom = X.dtype.type(self.momentum)
        rm, rv = self.buffers["running_mean"], self.buffers["running_var"]
        rm *= 1 - mom
        rm += mom * mean
        rv *= 1 - mom
        rv += (mom * m / max(m - 1, 1)) * var
        self._affine(xhat, out.reshape(-1, c))
        return out

    def backward(self, dY, need_dx=True):
        if not self._training:
            return self._backward_evaluation(dY, need_dx)
        c = self._channels
        dY2 = dY.reshape(-1, c)
        xhat, m = self._xhat, dY2.shape[0]
        self._affine_grads(dY2, xhat)
        if not need_dx:
            return None
        # dX = gamma / sqrt(var + eps) * (dY - mean(dY) - xhat * mean(dY * xhat)): the sums are
        # the gradients of beta and gamma just computed (recomputed when those are off)
        ones = self._ones(m, dY.dtype)
        g_beta = self.grads["beta"] if self.center else product(ones, dY2, np.empty(c, dY.dtype))
        if self.scale:
            g_gamma = self.grads["gamma"]
        else:
            tmp = np.multiply(dY2, xhat, out=self._buf("tmp", dY2.shape, dY.dtype))
            g_gamma = product(ones, tmp, np.empty(c, dY.dtype))
        dX = self._buf("dX", dY.shape, dY.dtype)
        dX2 = np.multiply(xhat, -g_gamma / m, out=dX.reshape(-1, c))
        dX2 += dY2
        dX2 -= g_beta / m
        k = self._inv * self.params["gamma"] if self.scale else self._inv
        dX2 *= k
        return dX

    def _backward_evaluation(self, dY: Array, need_dx: bool) -> Array | None:
        """The gradient of the evaluation-mode map x a + b (saliency, layers.csv's probe):
        the running averages are constants."""
        c = self._channels
        rm, rv = self.buffers["running_mean"], self.buffers["running_var"]
        inv = 1.0 / np.sqrt(rv + rv.dtype.type(self.eps))
        xhat = np.subtract(
            self._X.reshape(-1, c), rm, out=self._buf("xhat", (dY.size // c, c), dY.dtype)
        )
        xhat *= inv
        self._affine_grads(dY.reshape(-1, c), xhat)
        if not need_dx:
            return None
        a, _ = self.inference_affine()
        return np.multiply(dY, a, out=self._buf("dX", dY.shape, dY.dtype))


@LAYERS.register("layernorm", aliases=("layer_normalization",))
@dataclass(eq=False)
class LayerNorm(_Normalization):
    """Layer normalization (Ba et al.) of the last axis: each sample's units (or each pixel's
    channels) are normalized with their own mean and variance, ``gamma * (x - mean) /
    sqrt(var + eps) + beta``, the same in training and evaluation (Keras' default axis=-1;
    PyTorch's LayerNorm over the last dimension)."""

    def forward(self, X, training=False):
        mean = np.mean(X, axis=-1, keepdims=True)
        xhat = np.subtract(X, mean, out=self._buf("xhat", X.shape, X.dtype))
        var = np.mean(np.square(xhat), axis=-1, keepdims=True)
        inv = np.sqrt(var + X.dtype.type(self.eps))
        np.divide(xhat, inv, out=xhat)
        self._xhat, self._inv = xhat, inv
        self._X, self._Y = X, self._buf("out", X.shape, X.dtype)  # (kept for layerstats)
        return self._affine(xhat, self._Y)

    def backward(self, dY, need_dx=True):
        c = self._channels
        xhat = self._xhat
        self._affine_grads(dY.reshape(-1, c), xhat.reshape(-1, c))
        if not need_dx:
            return None
        # dX = (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) / sqrt(var + eps) per position
        dxhat = self._buf("dX", dY.shape, dY.dtype)
        if self.scale:
            np.multiply(dY, self.params["gamma"], out=dxhat)
        else:
            np.copyto(dxhat, dY)
        proj = np.mean(dxhat * xhat, axis=-1, keepdims=True)
        dxhat -= np.mean(dxhat, axis=-1, keepdims=True)
        dxhat -= xhat * proj
        dxhat /= self._inv
        return dxhat
