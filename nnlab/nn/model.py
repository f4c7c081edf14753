"""A network built from the ``model`` section of a config: forward, backward, parameters.

All parameters live in one flat vector ``theta`` (and their gradients in ``grad``); each layer's
``params``/``grads`` are views into them. Optimizers update the flat vectors in a few NumPy calls
whatever the number of layers, and a gradient check perturbs one vector. Parameters that weight
decay applies to (kernels) come first: ``theta[:n_decay]``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from nnlab.errors import ConfigError
from nnlab.nn.layers import LAYERS, Layer

Array = np.ndarray


class Model:
    """A stack of layers with its parameters in one flat vector."""

    def __init__(
        self,
        layers: list[Layer],
        input_shape: tuple[int, ...],
        rng: np.random.Generator,
        dtype: Any = np.float32,
        spec: dict | None = None,
    ):
        if not layers:
            raise ConfigError("a model needs at least one layer", "model.layers")
        self.layers = layers
        self.input_shape = tuple(input_shape)
        self.dtype = np.dtype(dtype)
        self.spec = spec
        shape = self.input_shape
        for i, layer in enumerate(layers):
            try:
                shape = tuple(layer.build(shape, rng, self.dtype))
            except ConfigError as e:
                raise ConfigError(e.detail, e.path or f"model.layers[{i}]") from None
        self.output_shape = shape
        self._flatten()

    @classmethod
    def from_spec(
        cls, spec: dict, input_shape: tuple[int, ...], rng: np.random.Generator, dtype: Any
    ) -> Model:
        """Build from a resolved ``model`` section (see ``nnlab.config``)."""
        layers = [LAYERS.build(s) for s in spec["layers"]]
        return cls(layers, input_shape, rng, dtype, spec=spec)

    def _flatten(self) -> None:
        entries = []  # (decay?, layer index, key, array)
        for i, layer in enumerate(self.layers):
            for key, value in layer.params.items():
                entries.append((key not in layer.no_decay, i, key, value))
        entries.sort(key=lambda e: not e[0])  # stable: kernels first, in layer order
        total = sum(e[3].size for e in entries)
        self.theta = np.empty(total, self.dtype)
        self.grad = np.zeros(total, self.dtype)
        self.n_decay = sum(e[3].size for e in entries if e[0])
        self.param_names: list[str] = []
        self.param_slices: list[slice] = []
        offset = 0
        for _, i, key, value in entries:
            n = value.size
            view = self.theta[offset : offset + n].reshape(value.shape)
            view[...] = value
            layer = self.layers[i]
            layer.params[key] = view
            layer.grads[key] = self.grad[offset : offset + n].reshape(value.shape)
            self.param_names.append(f"layers.{i}.{key}")
            self.param_slices.append(slice(offset, offset + n))
            offset += n

    # ------------------------------------------------------------------ running

    def set_rng(self, rng: np.random.Generator) -> None:
        """The generator that dropout and other training-time randomness draw from."""
        for layer in self.layers:
            layer.rng = rng

    @property
    def output_activation(self) -> str | None:
        """The name of the final activation, if the last layer ends in one."""
        fn = self.layers[-1].activation_fn
        return fn.name if fn is not None else None

    def forward(self, X: Array, training: bool = False, logits: bool = False) -> Array:
        """Outputs for a batch (an array the model owns: copy it to keep it). With
        ``logits=True`` the last layer's activation is left out (for fused losses)."""
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if logits and i == last:
                return layer.forward_logits(X, training)
            X = layer.forward(X, training)
        return X

    def backward(self, dY: Array, logits: bool = False) -> None:
        """Backpropagate dL/d(output) (dL/d(logits) with ``logits=True``) into ``self.grad``."""
        last = len(self.layers) - 1
        for i in range(last, -1, -1):
            layer = self.layers[i]
            if logits and i == last:
                dY = layer.backward_logits(dY, need_dx=i > 0)
            else:
                dY = layer.backward(dY, need_dx=i > 0)

    def predict(self, X: Array, batch_size: int = 1024) -> Array:
        """Evaluation-mode outputs for any number of samples, as a new array."""
        X = np.asarray(X, dtype=self.dtype)
        out = np.empty((X.shape[0], *self.output_shape), self.dtype)
        for start in range(0, X.shape[0], batch_size):
            stop = start + batch_size
            out[start:stop] = self.forward(X[start:stop])
        return out

    # ------------------------------------------------------------------ parameters

    @property
    def n_params(self) -> int:
        return int(self.theta.size)

    def named_parameters(self) -> Iterator[tuple[str, Array, Array]]:
        """(name, value view, gradient view) for each parameter tensor."""
        for name in self.param_names:
            i, key = name.split(".")[1:]
            layer = self.layers[int(i)]
            yield name, layer.params[key], layer.grads[key]

    def state_dict(self) -> dict[str, Array]:
        return {name: value.copy() for name, value, _ in self.named_parameters()}

    def load_state_dict(self, state: dict[str, Array]) -> None:
        names = set(self.param_names)
        if set(state) != names:
            missing, extra = sorted(names - set(state)), sorted(set(state) - names)
            raise ValueError(f"parameters do not match: missing {missing}, unexpected {extra}")
        for name, value, _ in self.named_parameters():
            if state[name].shape != value.shape:
                raise ValueError(f"{name}: shape {state[name].shape}, expected {value.shape}")
            value[...] = state[name]

    def summary(self) -> str:
        lines = []
        shape = self.input_shape
        for i, layer in enumerate(self.layers):
            n = sum(p.size for p in layer.params.values())
            kind = type(layer).__name__
            act = layer.activation_fn.name if layer.activation_fn is not None else ""
            lines.append(f"  [{i}] {kind:<10} {act:<10} params {n:>9,d}")
        lines.append(f"  input {shape}, output {self.output_shape}, {self.n_params:,d} parameters")
        return "\n".join(lines)


def param_norm(x: Array) -> float:
    return math.sqrt(float(np.dot(x, x)))
