"""The layers of a population: each single-run layer of ``nnlab.nn.layers`` with a member axis.

A stacked layer computes, for every member at once, what the single-run layer computes for one
network (the same formulas, in the same order; only sums may be taken in another order), over
arrays of logical shape (M, batch, ...) laid out by the population's ``Stack``. Parameters are
views into the population's (M, P) block, as the single run's are views into its flat vector.
The model input may be shared by the members (one (batch, ...) array) or their own
(M, batch, ...). Layers other than those in ``KERNELS`` keep a trial out of populations
(``nnlab.population.partition`` says so).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from nnlab.nn.activations import ACTIVATIONS
from nnlab.nn.layers import ActivationLayer, Dense, Dropout, Flatten, Layer
from nnlab.population.stack import Stack

Array = np.ndarray


class StackedLayer:
    """Base class: ``forward``/``backward`` as in ``nnlab.nn.layers.Layer``, with ``members``
    the per-member values of the layer's member-wise options (dropout rates)."""

    activation_fn = None
    shared_input = False  # takes an input shared by the members, (batch, ...), as it is
    params: dict[str, Array]
    grads: dict[str, Array]

    def __init__(self, layer: Layer, stack: Stack):
        self.stack = stack
        self.params, self.grads = {}, {}
        self._bufs: dict = {}

    def buf(self, key: str, shape: tuple[int, ...]) -> Array:
        """A scratch array of logical shape (M, *shape), kept for the next call."""
        b = self._bufs.get((key, shape))
        if b is None:
            b = self._bufs[(key, shape)] = self.stack.empty(shape)
        return b

    def forward(self, X: Array, training: bool) -> Array:
        raise NotImplementedError

    def backward(self, dY: Array, need_dx: bool) -> Array | None:
        raise NotImplementedError

    def forward_logits(self, X: Array, training: bool) -> Array:
        raise NotImplementedError

    def backward_logits(self, dZ: Array, need_dx: bool) -> Array | None:
        raise NotImplementedError

    def keep(self, rows: Array) -> None:
        """Keep only the members ``rows`` (others finished): per-member options follow."""


class StackedDense(StackedLayer):
    """``activation(x @ W + b)`` for every member."""

    def __init__(self, layer: Dense, stack: Stack):
        super().__init__(layer, stack)
        self.units = layer.units
        self.use_bias = layer.use_bias
        self.activation_fn = ACTIVATIONS.build(layer.activation)

    shared_input = True

    def forward_logits(self, X, training=False):
        self._X = X
        n = X.shape[-2]
        Z = self.buf("Z", (n, self.units))  # (M, batch, units)
        self.stack.matmul(X, self.params["W"], Z)
        if self.use_bias:
            Z += self.params["b"][:, None, :]
        self._Z = Z
        return Z

    def forward(self, X, training=False):
        Z = self.forward_logits(X, training)
        self._A = self.activation_fn.forward(Z, self.buf("A", Z.shape[1:]))
        return self._A

    def backward(self, dY, need_dx=True):
        return self.backward_logits(self.activation_fn.backward(dY, self._Z, self._A), need_dx)

    def backward_logits(self, dZ, need_dx=True):
        X, stack = self._X, self.stack
        XT = X.T if X.ndim == 2 else X.transpose(0, 2, 1)
        stack.matmul(XT, dZ, self.grads["W"])
        if self.use_bias:
            stack.sum_rows(dZ, out=self.grads["b"])
        if not need_dx:
            return None
        dX = self.buf("dX", (dZ.shape[1], X.shape[-1]))  # (M, batch, inputs)
        return stack.matmul(dZ, self.params["W"].transpose(0, 2, 1), dX)


class StackedDropout(StackedLayer):
    """Inverted dropout with each member's rate and masks; a member draws its masks from its
    own generator, as its single run does (nothing for a rate of 0)."""

    def __init__(self, layer: Dropout, stack: Stack, rates: list[float], rngs: list):
        super().__init__(layer, stack)
        self.scale = layer.scale
        self.rngs = list(rngs)
        self._set_rates(np.asarray(rates, dtype=np.float64))

    def _set_rates(self, rates: Array) -> None:
        self.rates = rates
        self.drawing = [m for m, r in enumerate(rates) if r != 0.0]
        col = rates.reshape(-1, 1, 1)
        self.rate_col = col.astype(self.stack.dtype)
        # 1 / (1 - rate) in double, then rounded to the dtype: the single run's scale factor
        self.factor = (1.0 / (1.0 - col)).astype(self.stack.dtype)

    def keep(self, rows):
        self._set_rates(self.rates[rows])
        self.rngs = [self.rngs[i] for i in rows]

    def forward(self, X, training=False):
        if not training or not self.drawing:
            self._keep = None
            return X
        shape = X.shape[1:]
        u = self.buf("u", shape)
        one = np.empty(shape, X.dtype) if self.stack.member_last else None
        for m in self.drawing:  # each member's own stream, in its single run's order
            if one is None:
                self.rngs[m].random(out=u[m], dtype=X.dtype)
            else:
                self.rngs[m].random(out=one, dtype=X.dtype)
                u[m] = one
        if len(self.drawing) < len(self.rates):
            u[self.rates == 0.0] = 1.0
        keep = np.greater_equal(u, self.rate_col, out=self.buf("k", shape))
        self._keep = keep
        out = np.multiply(X, keep, out=self.buf("out", shape))
        if self.scale:
            out *= self.factor
        return out

    def backward(self, dY, need_dx=True):
        if self._keep is None:
            return dY
        np.multiply(dY, self._keep, out=dY)
        if self.scale:
            dY *= self.factor
        return dY

    def buf(self, key, shape):
        if key != "k":
            return super().buf(key, shape)
        b = self._bufs.get((key, shape))  # the keep mask: booleans, as in the single run
        if b is None:
            b = self._bufs[(key, shape)] = self.stack.empty(shape, bool)
        return b


class StackedActivation(StackedLayer):
    """An activation function on its own."""

    def __init__(self, layer: ActivationLayer, stack: Stack):
        super().__init__(layer, stack)
        self.activation_fn = ACTIVATIONS.build(layer.activation)

    def forward_logits(self, X, training=False):
        return X

    def forward(self, X, training=False):
        self._X = X
        self._A = self.activation_fn.forward(X, self.buf("A", X.shape[1:]))
        return self._A

    def backward(self, dY, need_dx=True):
        return self.activation_fn.backward(dY, self._X, self._A)

    def backward_logits(self, dZ, need_dx=True):
        return dZ


class StackedFlatten(StackedLayer):
    """(M, batch, a, b, ...) -> (M, batch, a * b * ...)."""

    def __init__(self, layer: Flatten, stack: Stack):
        super().__init__(layer, stack)
        self._shape = layer._shape

    def forward(self, X, training=False):
        return X.reshape(*X.shape[: -len(self._shape)], -1)

    def backward(self, dY, need_dx=True):
        return dY.reshape(*dY.shape[:-1], *self._shape)


#: the single-run layer types a population covers, and how to stack each
KERNELS: dict[type, Callable[..., StackedLayer]] = {
    Dense: StackedDense,
    ActivationLayer: StackedActivation,
    Flatten: StackedFlatten,
}
STACKABLE = (*KERNELS, Dropout)
