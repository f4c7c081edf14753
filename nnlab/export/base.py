"""The walk over a model's layers that every exporter, and ``nnlab invert``, is built on.

An exporter is a ``Writer`` with one method per layer type it can express,
``layer_<type>(node, x) -> Value``, and one per activation, ``act_<name>(node, fn, x) ->
Value``. ``walk`` feeds the raw input through the input scaling and every layer in turn; a layer
type or activation without a method stops the export with an ``ExportError`` that names the
layer (``model.layers[2] (lstm)``). A new layer type is exported by adding its method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nnlab.errors import NnlabError
from nnlab.nn.activations import Activation
from nnlab.nn.layers import LAYERS, Layer
from nnlab.predict import input_scaling, is_identity

Array = np.ndarray


class ExportError(NnlabError):
    """A model that a format cannot express (the message names the layer), or a missing
    optional package."""


@dataclass
class Node:
    """One layer of a model, as exporters see it."""

    index: int
    kind: str  # the registered layer type, e.g. "dense"
    layer: Layer

    @property
    def where(self) -> str:
        return f"model.layers[{self.index}] ({self.kind})"


def layer_kind(layer: Layer) -> str:
    """The registered type name of a layer (its class name if it is not registered)."""
    for entry in LAYERS.entries():
        if entry.factory is type(layer):
            return entry.name
    return type(layer).__name__


def nodes(model: Any) -> list[Node]:
    """The layers of a model from input to output."""
    return [Node(i, layer_kind(layer), layer) for i, layer in enumerate(model.layers)]


def activation_text(fn: Activation) -> str:
    """``tanh``, ``leaky_relu(alpha=0.1)``: an activation with its options."""
    opts = {k: v for k, v in vars(fn).items() if not k.startswith("_")}
    args = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in opts.items())
    return f"{fn.name}({args})" if args else fn.name


@dataclass(frozen=True)
class Value:
    """What flows between layers in the exported code: its name there and its size."""

    name: str
    size: int  # values per sample


class Writer:
    """Base of the exporters: the walk, the dispatch, and the layers that need no code."""

    format = ""

    def __init__(self, model: Any, meta: dict, info: dict):
        self.model = model
        self.meta = meta
        self.info = info
        self.dtype = np.dtype(model.dtype)

    # ---------------------------------------------------------------- to override

    def inputs(self) -> Value:
        raise NotImplementedError

    def scaling(self, x: Value, shift: Array, scale: Array) -> Value:
        """``(x - shift) / scale``; shift and scale are 0-d or of shape (x.size,)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- the walk

    def walk(self) -> Value:
        """Emit the whole network; returns the output value."""
        x = self.inputs()
        shift, scale = input_scaling(self.meta, self.dtype)
        if not is_identity(shift, scale):
            x = self.scaling(x, shift, scale)
        for node in nodes(self.model):
            x = self.layer(node, x)
        return x

    @classmethod
    def supported(cls, prefix: str) -> list[str]:
        return sorted(name[len(prefix) :] for name in dir(cls) if name.startswith(prefix))

    def layer(self, node: Node, x: Value) -> Value:
        emit = getattr(self, f"layer_{node.kind}", None)
        if emit is None:
            raise ExportError(
                f"{node.where}: the {self.format} export cannot express a {node.kind} layer "
                f"(it can: {', '.join(self.supported('layer_'))})"
            )
        return emit(node, x)

    def activation(self, node: Node, x: Value) -> Value:
        fn = node.layer.activation_fn
        emit = getattr(self, f"act_{fn.name}", None)
        if emit is None:
            raise ExportError(
                f"{node.where}: the {self.format} export cannot express the activation "
                f"{fn.name} (it can: {', '.join(self.supported('act_'))})"
            )
        return emit(node, fn, x)

    def describe(self, node: Node, x: Value) -> str:
        """A layer in words, for comments: ``model.layers[0] (dense): 64 -> 256, relu``."""
        layer = node.layer
        if node.kind == "dense":
            text = f"{x.size} -> {layer.units}, {activation_text(layer.activation_fn)}"
            return f"{node.where}: {text}" + ("" if layer.use_bias else ", no bias")
        if node.kind == "dropout":
            return f"{node.where}: the identity at inference"
        if layer.activation_fn is not None:
            return f"{node.where}: {activation_text(layer.activation_fn)}"
        return node.where

    # ---------------------------------------------------------------- shared layers

    def layer_dropout(self, node: Node, x: Value) -> Value:
        return x  # dropout is the identity at inference

    def layer_activation(self, node: Node, x: Value) -> Value:
        return self.activation(node, x)


def network_text(model: Any) -> str:
    """The network on one line: ``64 inputs -> dense 256 relu -> dropout -> dense 10 softmax``."""
    parts = [f"{int(np.prod(model.input_shape))} inputs"]
    for node in nodes(model):
        layer = node.layer
        if node.kind == "dense":
            parts.append(f"dense {layer.units} {activation_text(layer.activation_fn)}")
        elif node.kind == "activation":
            parts.append(activation_text(layer.activation_fn))
        else:
            parts.append(node.kind)
    return " -> ".join(parts)


def check_finite(model: Any) -> None:
    """Exported code holds the weights as literals: they must be finite numbers."""
    for name, value, _ in model.named_parameters():
        if not np.isfinite(value).all():
            raise ExportError(f"model parameter {name} has NaN or infinite values")
