"""Layers: each a dataclass whose fields are its config keys, built into arrays by ``build``.

A layer's ``forward`` caches what its ``backward`` needs and returns an array it owns (reused on
the next call: copy it to keep it). ``backward(dY)`` writes the parameter gradients into
``self.grads`` (views into the model's flat gradient vector) and returns dL/dX.

Arrays have the batch as their first axis and a layer's own axes last: (batch, features) for
dense layers, (batch, time, features) for sequences and (batch, height, width, channels) for
images (NHWC, as Keras and TensorFlow). The convolution, pooling and normalization layers are in
``nnlab.nn.conv`` and ``nnlab.nn.norm``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np

from nnlab.errors import ConfigError
from nnlab.nn.activations import ACTIVATIONS, Activation
from nnlab.nn.initializers import INITIALIZERS
from nnlab.registry import Registry
from nnlab.schema import Doc, Interval, Ref

Array = np.ndarray
Spec = Any  # a component spec: a name or a mapping
INPUT = "input"  # the name of the model's input in ``inputs:``


@dataclass
class LayerOptions:
    """Keys every layer takes: they place it in the network."""

    name: Annotated[
        str | None, Doc("the layer's name, for other layers' inputs and the outputs (null: none)")
    ] = None
    inputs: Annotated[
        str | list[str] | None,
        Doc("what the layer reads: names of earlier layers or 'input' (null: the previous layer)"),
    ] = None
    join: Annotated[
        Literal["concat", "sum"], Doc("how several inputs are combined (last axis, or added)")
    ] = "concat"


LAYERS = Registry("layer", key="type", common=LayerOptions)


@dataclass(eq=False)
class Layer:
    """Base class. Subclasses set ``params`` in ``build``; the model replaces them by views."""

    params: dict[str, Array] = field(default_factory=dict, init=False, repr=False)
    grads: dict[str, Array] = field(default_factory=dict, init=False, repr=False)
    #: names of parameters that weight decay and L2 leave alone
    no_decay: tuple[str, ...] = field(default=(), init=False, repr=False)
    #: state that is not trained by gradients but saved with the weights (batchnorm's running
    #: averages); the model replaces the arrays by views into its flat ``buffers`` vector
    buffers: dict[str, Array] = field(default_factory=dict, init=False, repr=False)
    rng: np.random.Generator | None = field(default=None, init=False, repr=False)
    _bufs: dict = field(default_factory=dict, init=False, repr=False)
    rng_stream = "train"  # the seed stream ``rng`` comes from (see Model.set_rng)

    def build(self, input_shape: tuple[int, ...], rng: np.random.Generator, dtype) -> tuple:
        """Create the parameters for inputs of ``input_shape`` (no batch axis); return the
        output shape."""
        return input_shape

    def forward(self, X: Array, training: bool = False) -> Array:
        raise NotImplementedError

    def backward(self, dY: Array, need_dx: bool = True) -> Array | None:
        raise NotImplementedError

    # A layer that ends in an activation can hand out its pre-activation (the logits), so that
    # a loss can fuse with the activation (softmax + cross-entropy).
    activation_fn: Activation | None = field(default=None, init=False, repr=False)

    def forward_logits(self, X: Array, training: bool = False) -> Array:
        raise NotImplementedError

    def backward_logits(self, dZ: Array, need_dx: bool = True) -> Array | None:
        raise NotImplementedError

    def _buf(self, key: str, shape: tuple[int, ...], dtype, fill: float | None = None) -> Array:
        """A scratch array owned by the layer, one per key: the front of a flat array that
        grows to the largest size asked for, so batches of every size (training's, the last
        smaller one, evaluation's) share one allocation. With ``fill`` the array is set to that
        value when first made, and later calls of the same shape see what was written to it
        (the borders of a padded image, which are never written, keep the fill)."""
        n = math.prod(shape)
        flat = self._bufs.get(key)
        if flat is None or flat.dtype != dtype or flat.size < n:
            flat = np.empty(n, dtype) if fill is None else np.full(n, fill, dtype)
            self._bufs[key] = flat
        return flat[:n].reshape(shape)

    def _ones(self, n: int, dtype) -> Array:
        """A vector of n ones (kept): a product with it sums rows, faster than np.sum."""
        flat = self._bufs.get("ones")
        if flat is None or flat.dtype != dtype or flat.size < n:
            flat = self._bufs["ones"] = np.ones(n, dtype)
        return flat[:n]


def product(a: Array, b: Array, out: Array) -> Array:
    """``a @ b`` into ``out``. ``np.dot`` makes the same BLAS call as ``np.matmul`` for 1-d
    and 2-d arrays (the same numbers, bit for bit) with half its overhead per call, which is
    most of a small network's step (XOR: 0.4 us against 0.8 us a product); it wants ``out``
    of the exact result type, so mixed dtypes go through ``np.matmul``."""
    if a.dtype == b.dtype == out.dtype:
        return np.dot(a, b, out=out)
    return np.matmul(a, b, out=out)


def _check_2d(layer: str, input_shape: tuple[int, ...]) -> int:
    if len(input_shape) != 1:
        raise ConfigError(
            f"a {layer} layer takes flat feature vectors, but its input has shape {input_shape} "
            "per sample: put a flatten layer before it (or return_sequences: false on a "
            "recurrent layer)"
        )
    return input_shape[0]


@LAYERS.register("dense", aliases=("fully_connected",))
@dataclass(eq=False)
class Dense(Layer):
    """Fully connected layer: ``activation(x @ W + b)``, W of shape (inputs, units)."""

    units: Annotated[int, Interval(ge=1), Doc("number of outputs")]
    activation: Annotated[Spec, Ref(ACTIVATIONS), Doc("activation function")] = "linear"
    initializer: Annotated[Spec, Ref(INITIALIZERS), Doc("initializer of W")] = "glorot_uniform"
    bias_initializer: Annotated[Spec, Ref(INITIALIZERS), Doc("initializer of b")] = "zeros"
    use_bias: Annotated[bool, Doc("add the bias b")] = True

    def __post_init__(self):
        self.no_decay = ("b",)
        self.activation_fn = ACTIVATIONS.build(self.activation)

    def build(self, input_shape, rng, dtype):
        n_in = _check_2d("dense", input_shape)
        self.params["W"] = INITIALIZERS.build(self.initializer)((n_in, self.units), rng, dtype)
        if self.use_bias:
            self.params["b"] = INITIALIZERS.build(self.bias_initializer)((self.units,), rng, dtype)
        return (self.units,)

    def forward_logits(self, X, training=False):
        self._X = X
        Z = self._buf("Z", (X.shape[0], self.units), X.dtype)  # (batch, units)
        product(X, self.params["W"], Z)
        if self.use_bias:
            Z += self.params["b"]
        self._Z = Z
        return Z

    def forward(self, X, training=False):
        Z = self.forward_logits(X, training)
        self._A = self.activation_fn.forward(Z, self._buf("A", Z.shape, Z.dtype))
        return self._A

    def backward(self, dY, need_dx=True):
        return self.backward_logits(self.activation_fn.backward(dY, self._Z, self._A), need_dx)

    def backward_logits(self, dZ, need_dx=True):
        X = self._X
        product(X.T, dZ, self.grads["W"])
        if self.use_bias:  # a matrix-vector product sums the rows faster than np.sum(axis=0)
            product(self._ones(X.shape[0], dZ.dtype), dZ, self.grads["b"])
        if not need_dx:
            return None
        dX = self._buf("dX", X.shape, dZ.dtype)  # (batch, inputs)
        return product(dZ, self.params["W"].T, dX)


@LAYERS.register("dropout")
@dataclass(eq=False)
class Dropout(Layer):
    """Inverted dropout: in training each unit is zeroed with probability ``rate`` and the kept
    ones are scaled by 1 / (1 - rate), so the expected activation equals the evaluation-time
    activation, where the layer is the identity."""

    rate: Annotated[float, Interval(ge=0, lt=1), Doc("probability of dropping a unit")] = 0.5
    scale: Annotated[
        bool, Doc("scale kept units by 1/(1-rate) (false: plain dropout, for demonstration)")
    ] = True

    def forward(self, X, training=False):
        if not training or self.rate == 0.0:
            self._keep = None
            return X
        u = self._buf("u", X.shape, X.dtype)
        self.rng.random(out=u, dtype=X.dtype)
        self._keep = keep = np.greater_equal(u, self.rate, out=self._buf("k", X.shape, bool))
        out = np.multiply(X, keep, out=self._buf("out", X.shape, X.dtype))
        if self.scale:
            out *= 1.0 / (1.0 - self.rate)
        return out

    def backward(self, dY, need_dx=True):
        if self._keep is None:
            return dY
        np.multiply(dY, self._keep, out=dY)
        if self.scale:
            dY *= 1.0 / (1.0 - self.rate)
        return dY


@LAYERS.register("activation")
@dataclass(eq=False)
class ActivationLayer(Layer):
    """An activation function on its own, applied elementwise (softmax: over the last axis)."""

    activation: Annotated[Spec, Ref(ACTIVATIONS), Doc("activation function")] = "relu"

    def __post_init__(self):
        self.activation_fn = ACTIVATIONS.build(self.activation)

    def forward_logits(self, X, training=False):
        return X

    def forward(self, X, training=False):
        self._X = X
        self._A = self.activation_fn.forward(X, self._buf("A", X.shape, X.dtype))
        return self._A

    def backward(self, dY, need_dx=True):
        return self.activation_fn.backward(dY, self._X, self._A)

    def backward_logits(self, dZ, need_dx=True):
        return dZ


@LAYERS.register("flatten")
@dataclass(eq=False)
class Flatten(Layer):
    """Flattens each sample to a vector: (batch, a, b, ...) -> (batch, a * b * ...)."""

    def build(self, input_shape, rng, dtype):
        self._shape = input_shape
        return (int(np.prod(input_shape)),)

    def forward(self, X, training=False):
        return X.reshape(X.shape[0], -1)

    def backward(self, dY, need_dx=True):
        return dY.reshape(dY.shape[0], *self._shape)


@LAYERS.register("reshape")
@dataclass(eq=False)
class Reshape(Layer):
    """Gives each sample a new shape with the same values in the same order (row-major): a row
    of 784 MNIST pixels becomes a 28x28x1 image with ``target_shape: [28, 28, 1]`` (height,
    width, channels). One entry may be -1: whatever the other entries leave."""

    target_shape: Annotated[
        list[int], Doc("the shape of a sample, without the batch axis; one entry may be -1")
    ]

    @staticmethod
    def __post_check__(p: dict, path: str) -> None:
        shape = p["target_shape"]
        where = f"{path}.target_shape"
        if not shape:
            raise ConfigError("give at least one dimension, e.g. [28, 28, 1]", where)
        if shape.count(-1) > 1 or any(d < 1 and d != -1 for d in shape):
            raise ConfigError(
                f"dimensions must be >= 1, with at most one -1 (inferred); got {shape}", where
            )

    def build(self, input_shape, rng, dtype):
        n = math.prod(input_shape)
        known = math.prod(d for d in self.target_shape if d != -1)
        shape = [n // known if d == -1 else d for d in self.target_shape]
        if math.prod(shape) != n:
            why = (
                f"the other dimensions hold {known} values, which do not divide {n}"
                if -1 in self.target_shape
                else f"that shape holds {math.prod(shape)} values"
            )
            raise ConfigError(
                f"cannot reshape an input of shape {input_shape} ({n} values per sample) to "
                f"{self.target_shape}: {why}",
                "target_shape",
            )
        self._in, self._out = tuple(input_shape), tuple(shape)
        return self._out

    def forward(self, X, training=False):
        return X.reshape(X.shape[0], *self._out)

    def backward(self, dY, need_dx=True):
        return dY.reshape(dY.shape[0], *self._in)
