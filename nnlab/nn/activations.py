"""Activation functions, by name, each with its derivative (and inverse where there is one).

``forward(Z, out)`` writes ``f(Z)`` into ``out`` and returns it; ``backward(dA, Z, A)`` returns
dL/dZ from dL/dA and may overwrite ``dA``. ``linear`` returns its input itself (no copy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import numpy as np

from nnlab.registry import Registry
from nnlab.schema import Doc, Interval

Array = np.ndarray
ACTIVATIONS = Registry("activation")
_EXP_MAX = {"f": 88.0, "d": 709.0}  # largest x with exp(x) finite, per dtype


class Activation:
    name = ""
    #: False for a function whose derivative is zero wherever it exists (``step``): gradient
    #: optimizers cannot train through it, evolution strategies (``es``) can
    differentiable = True
    #: (lo, hi) open interval of outputs for which ``inverse`` is defined, or None if not invertible
    invertible_range: tuple[float, float] | None = None

    def forward(self, Z: Array, out: Array) -> Array:
        raise NotImplementedError

    def backward(self, dA: Array, Z: Array, A: Array) -> Array:
        raise NotImplementedError

    def inverse(self, A: Array) -> Array:
        raise NotImplementedError(f"{self.name} is not invertible")

    def __call__(self, Z: Array) -> Array:
        return self.forward(Z, np.empty_like(Z))

    def _full(self, like: Array, value: float) -> Array:
        """A constant array shaped like ``like``, kept for the next call of that shape.
        ``np.maximum``/``np.minimum`` of two arrays run 3-5x faster than with a scalar (NumPy
        vectorises only the array-array loops of these two), which is worth an array's memory
        on the hot path."""
        key = (like.shape, like.dtype.char, value)
        cache = self.__dict__.setdefault("_consts", {})
        c = cache.get(key)
        if c is None:
            if len(cache) >= 8:  # shapes seen once (a prediction on all samples) are not kept
                cache.clear()
            c = cache[key] = np.full_like(like, value)  # in the layout of `like`
        return c


@ACTIVATIONS.register("linear", aliases=("identity", "none"))
@dataclass
class Linear(Activation):
    """f(z) = z."""

    name = "linear"
    invertible_range = (-math.inf, math.inf)

    def forward(self, Z, out):
        return Z

    def backward(self, dA, Z, A):
        return dA

    def inverse(self, A):
        return A


@ACTIVATIONS.register("sigmoid", aliases=("logistic",))
@dataclass
class Sigmoid(Activation):
    """f(z) = 1 / (1 + exp(-z))."""

    name = "sigmoid"
    invertible_range = (0.0, 1.0)

    def forward(self, Z, out):
        np.negative(Z, out=out)
        # f(z) < 1e-38 there: exp can't overflow
        np.minimum(out, self._full(out, _EXP_MAX[out.dtype.char]), out=out)
        np.exp(out, out=out)
        out += 1.0
        return np.reciprocal(out, out=out)

    def backward(self, dA, Z, A):
        s = A * (1.0 - A)
        return np.multiply(dA, s, out=dA)

    def inverse(self, A):
        return np.log(A) - np.log1p(-A)


@ACTIVATIONS.register("tanh")
@dataclass
class Tanh(Activation):
    """f(z) = tanh(z)."""

    name = "tanh"
    invertible_range = (-1.0, 1.0)

    def forward(self, Z, out):
        return np.tanh(Z, out=out)

    def backward(self, dA, Z, A):
        s = np.square(A)
        np.subtract(1.0, s, out=s)
        return np.multiply(dA, s, out=dA)

    def inverse(self, A):
        return np.arctanh(A)


@ACTIVATIONS.register("relu")
@dataclass
class ReLU(Activation):
    """f(z) = max(z, 0)."""

    name = "relu"

    def forward(self, Z, out):
        return np.maximum(Z, self._full(Z, 0.0), out=out)

    def backward(self, dA, Z, A):
        return np.multiply(dA, A > 0, out=dA)


@ACTIVATIONS.register("leaky_relu")
@dataclass
class LeakyReLU(Activation):
    """f(z) = z for z > 0, alpha * z otherwise."""

    alpha: Annotated[float, Interval(ge=0), Doc("slope for z < 0 (PyTorch's negative_slope)")] = (
        0.01
    )
    name = "leaky_relu"

    @property
    def invertible_range(self):  # type: ignore[override]
        return (-math.inf, math.inf) if self.alpha > 0 else None

    def forward(self, Z, out):
        np.multiply(Z, self.alpha, out=out)
        return np.maximum(Z, out, out=out) if self.alpha <= 1 else np.minimum(Z, out, out=out)

    def backward(self, dA, Z, A):
        return np.multiply(dA, np.where(Z > 0, 1.0, self.alpha).astype(dA.dtype), out=dA)

    def inverse(self, A):
        return np.where(A > 0, A, A / self.alpha)


@ACTIVATIONS.register("elu")
@dataclass
class ELU(Activation):
    """f(z) = z for z > 0, alpha * (exp(z) - 1) otherwise."""

    alpha: Annotated[float, Interval(gt=0), Doc("scale of the negative part")] = 1.0
    name = "elu"

    @property
    def invertible_range(self):  # type: ignore[override]
        return (-self.alpha, math.inf)

    def forward(self, Z, out):
        neg = np.minimum(Z, 0.0)
        np.expm1(neg, out=neg)
        neg *= self.alpha
        return _select(Z > 0, Z, neg, out)

    def backward(self, dA, Z, A):
        return np.multiply(dA, np.where(Z > 0, 1.0, A + self.alpha).astype(dA.dtype), out=dA)

    def inverse(self, A):
        return np.where(A > 0, A, np.log1p(np.maximum(A, -self.alpha) / self.alpha))


@ACTIVATIONS.register("selu")
@dataclass
class SELU(Activation):
    """Scaled ELU with the self-normalising constants of Klambauer et al. (2017)."""

    name = "selu"
    alpha = 1.6732632423543772
    scale = 1.0507009873554805
    invertible_range = (-1.6732632423543772 * 1.0507009873554805, math.inf)

    def forward(self, Z, out):
        neg = np.minimum(Z, 0.0)
        np.expm1(neg, out=neg)
        neg *= self.alpha
        _select(Z > 0, Z, neg, out)
        out *= self.scale
        return out

    def backward(self, dA, Z, A):
        d = np.where(Z > 0, self.scale, A + self.scale * self.alpha).astype(dA.dtype)
        return np.multiply(dA, d, out=dA)

    def inverse(self, A):
        a = A / self.scale
        return np.where(a > 0, a, np.log1p(np.maximum(a, -self.alpha) / self.alpha))


@ACTIVATIONS.register("softplus")
@dataclass
class Softplus(Activation):
    """f(z) = log(1 + exp(z)), computed without overflow."""

    name = "softplus"
    invertible_range = (0.0, math.inf)

    def forward(self, Z, out):
        np.abs(Z, out=out)
        np.negative(out, out=out)
        np.exp(out, out=out)
        np.log1p(out, out=out)
        out += np.maximum(Z, 0.0)
        return out

    def backward(self, dA, Z, A):
        s = -np.abs(Z)
        np.exp(s, out=s)  # e = exp(-|z|); sigmoid(z) = 1/(1+e) for z >= 0, e/(1+e) otherwise
        sig = np.where(Z >= 0, 1.0, s) / (1.0 + s)
        return np.multiply(dA, sig.astype(dA.dtype), out=dA)

    def inverse(self, A):
        return A + np.log(-np.expm1(-A))


@ACTIVATIONS.register("silu", aliases=("swish",))
@dataclass
class SiLU(Activation):
    """f(z) = z * sigmoid(z) (swish)."""

    name = "silu"

    def forward(self, Z, out):
        Sigmoid().forward(Z, out)
        return np.multiply(out, Z, out=out)

    def backward(self, dA, Z, A):
        s = Sigmoid()(Z)
        d = s * (1.0 + Z * (1.0 - s))
        return np.multiply(dA, d, out=dA)


@ACTIVATIONS.register("gelu")
@dataclass
class GELU(Activation):
    """Gaussian error linear unit, tanh approximation (as in GPT-2 and BERT)."""

    name = "gelu"
    _c = math.sqrt(2.0 / math.pi)

    # tanh(u(z)) is +-1 to the last bit beyond |z| = 10: clipping there changes no result and
    # keeps z**3 from overflowing
    _clip = 10.0

    def forward(self, Z, out):
        Zc = np.clip(Z, -self._clip, self._clip)
        np.multiply(Zc, Zc, out=out)
        out *= 0.044715
        out += 1.0
        out *= Zc
        out *= self._c
        np.tanh(out, out=out)
        out += 1.0
        out *= Z
        out *= 0.5
        return out

    def backward(self, dA, Z, A):
        Z = np.clip(Z, -self._clip, self._clip)
        u = self._c * (Z + 0.044715 * Z**3)
        t = np.tanh(u)
        du = self._c * (1.0 + 3 * 0.044715 * Z**2)
        d = 0.5 * (1.0 + t) + 0.5 * Z * (1.0 - t * t) * du
        return np.multiply(dA, d, out=dA)


@ACTIVATIONS.register("step", aliases=("heaviside",))
@dataclass
class Step(Activation):
    """The Heaviside step of the perceptron: f(z) = 1 for z > 0, else 0. Its derivative is 0
    wherever it exists, so no gradient flows through it: only ``es`` trains it."""

    name = "step"
    differentiable = False

    def forward(self, Z, out):
        return np.greater(Z, 0.0, out=out, casting="unsafe")

    def backward(self, dA, Z, A):
        dA[...] = 0.0
        return dA


@ACTIVATIONS.register("softmax")
@dataclass
class Softmax(Activation):
    """f(z)_i = exp(z_i) / sum_j exp(z_j) over the last axis (computed stably)."""

    name = "softmax"

    def forward(self, Z, out):
        np.subtract(Z, Z.max(axis=-1, keepdims=True), out=out)
        np.exp(out, out=out)
        out /= out.sum(axis=-1, keepdims=True)
        return out

    def backward(self, dA, Z, A):
        dot = np.einsum("...i,...i->...", dA, A)[..., None]
        np.subtract(dA, dot, out=dA)
        return np.multiply(dA, A, out=dA)


def _select(cond: Array, a: Array, b: Array, out: Array) -> Array:
    np.copyto(out, b)
    np.copyto(out, a, where=cond)
    return out
