"""Layers for variational autoencoders: ``sample`` (the reparameterisation trick) and ``slice``
(columns of the input, such as the one-hot label that ``data.label_input`` appends).

A conditional VAE in a config: the encoder reads the input (pixels and label) and gives
[mu, log_var] (2k units, linear), a ``sample`` layer draws z from them, a ``slice`` picks the
label out of the input, and the decoder reads [z, label]; the reconstruction is an output with
``target: inputs`` and [mu, log_var] another with the ``kl_divergence`` loss and
``target: none`` (see configs/questions/cvae.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np

from nnlab.errors import ConfigError
from nnlab.nn.layers import LAYERS, Layer
from nnlab.schema import Doc


@LAYERS.register("sample", aliases=("sampling",))
@dataclass(eq=False)
class Sample(Layer):
    """The reparameterisation trick (Kingma & Welling): reads [mu, log_var], the first and the
    second half of its input (2k values), and gives z = mu + exp(log_var / 2) * eps, eps drawn
    from N(0, 1) in training (from the run's own ``sample`` seed stream), so that the gradient
    reaches mu and log_var; in evaluation z = mu, the mean (deterministic). ``nnlab generate``
    draws z from the prior N(0, 1) instead."""

    rng_stream = "sample"

    def build(self, input_shape, rng, dtype):
        if len(input_shape) != 1 or input_shape[0] % 2:
            raise ConfigError(
                f"a sample layer reads [mu, log_var], an even number of values, but its input "
                f"has shape {input_shape} per sample: give the layer before it 2k units"
            )
        self.k = input_shape[0] // 2
        self.prior = False  # set by nnlab generate: z from N(0, 1), whatever the input
        return (self.k,)

    def forward(self, X, training=False):
        k, n = self.k, X.shape[0]
        z = self._buf("z", (n, k), X.dtype)  # (batch, k)
        if self.prior:
            self._eps = None
            return self.rng.standard_normal((n, k), dtype=X.dtype, out=z)
        if not training:
            self._eps = None
            z[...] = X[:, :k]
            return z
        eps = self._eps = self.rng.standard_normal(
            (n, k), dtype=X.dtype, out=self._buf("eps", (n, k), X.dtype)
        )
        sigma = self._sigma = np.exp(0.5 * X[:, k:])
        np.multiply(sigma, eps, out=z)
        z += X[:, :k]
        return z

    def backward(self, dY, need_dx=True):
        k = self.k
        dX = self._buf("dX", (dY.shape[0], 2 * k), dY.dtype)  # (batch, 2k)
        dX[:, :k] = dY
        if self._eps is None:  # z = mu: no dependence on log_var
            dX[:, k:] = 0.0
        else:  # dz / dlog_var = eps * sigma / 2
            np.multiply(dY, self._eps, out=dX[:, k:])
            dX[:, k:] *= self._sigma
            dX[:, k:] *= 0.5
        return dX


@LAYERS.register("slice")
@dataclass(eq=False)
class Slice(Layer):
    """Entries ``start`` to ``stop`` (stop excluded) of the last axis of its input, as Python's
    slice counts (negative: from the end); e.g. ``{type: slice, start: -10, inputs: input}``
    is the one-hot label that ``data.label_input`` appends to ten classes' inputs."""

    start: Annotated[int, Doc("the first entry (negative: counted from the end)")] = 0
    stop: Annotated[int | None, Doc("the entry after the last (null: the end)")] = None

    def build(self, input_shape, rng, dtype):
        width = input_shape[-1]
        a, b, _ = slice(self.start, self.stop).indices(width)
        if b <= a:
            raise ConfigError(
                f"slice {self.start}:{'' if self.stop is None else self.stop} of an input of "
                f"{width} values is empty"
            )
        self._range = (a, b)
        return (*input_shape[:-1], b - a)

    def forward(self, X, training=False):
        a, b = self._range
        self._shape = X.shape
        out = self._buf("out", (*X.shape[:-1], b - a), X.dtype)
        np.copyto(out, X[..., a:b])
        return out

    def backward(self, dY, need_dx=True):
        if not need_dx:
            return None
        a, b = self._range
        dX = self._buf("dX", self._shape, dY.dtype)
        dX.fill(0.0)
        dX[..., a:b] = dY
        return dX
