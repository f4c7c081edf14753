"""The walk over a model's layers that every exporter, and ``nnlab invert``, is built on.

An exporter is a ``Writer`` with one method per layer type it can express,
``layer_<type>(node, x) -> Value``, one per activation, ``act_<name>(node, fn, x) -> Value``,
and one per way of joining several inputs, ``join_<concat|sum>(node, values) -> Value``.
``walk`` feeds the raw input through the input scaling and then every layer in the model's
order, each layer reading the value of the layer (or layers, joined) it reads in the model, and
returns the value of each output. A layer type or activation without a method stops the export
with an ``ExportError`` that names the layer (``model.layers[2] (lstm)``). A new layer type is
exported by adding its method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnlab.errors import NnlabError
from nnlab.nn.activations import Activation
from nnlab.nn.graph import Node, input_scaling, is_identity, nodes, output_indices, source_labels

Array = np.ndarray


class ExportError(NnlabError):
    """A model that a format cannot express (the message names the layer), or a missing
    optional package."""


def activation_text(fn: Activation) -> str:
    """``tanh``, ``leaky_relu(alpha=0.1)``: an activation with its options."""
    opts = {k: v for k, v in vars(fn).items() if not k.startswith("_")}
    args = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in opts.items())
    return f"{fn.name}({args})" if args else fn.name


def shape_text(shape: tuple[int, ...]) -> str:
    """``64`` for a vector, ``(10, 1)`` for a sequence of 10 steps of 1 feature."""
    return str(shape[0]) if len(shape) == 1 else f"({', '.join(map(str, shape))})"


@dataclass(frozen=True)
class Value:
    """What flows between layers in the exported code: its name there and its shape per sample
    ((features,), or (time, features) for a sequence)."""

    name: str
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        """Values per sample."""
        return math.prod(self.shape)


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
        """``(x - shift) / scale``; shift and scale are 0-d or of the input's shape."""
        raise NotImplementedError

    # ---------------------------------------------------------------- the walk

    def walk(self) -> list[Value]:
        """Emit the whole network; returns the value of each output, in the model's order."""
        x = self.inputs()
        shift, scale = input_scaling(self.meta, self.dtype)
        if not is_identity(shift, scale):
            x = self.scaling(x, shift, scale)
        values = {-1: x}
        for node in nodes(self.model):
            ins = [values[s] for s in node.sources]
            values[node.index] = self.layer(node, ins[0] if len(ins) == 1 else self.join(node, ins))
        return [values[j] for j in output_indices(self.model)]

    @classmethod
    def supported(cls, prefix: str) -> list[str]:
        return sorted(name[len(prefix) :] for name in dir(cls) if name.startswith(prefix))

    def _emitter(self, node: Node, prefix: str, key: str, what: str) -> Any:
        """The method ``<prefix><key>``, or an ExportError: the layer cannot ``what``."""
        emit = getattr(self, f"{prefix}{key}", None)
        if emit is None:
            raise ExportError(
                f"{node.where}: the {self.format} export cannot {what} "
                f"(it can: {', '.join(self.supported(prefix))})"
            )
        return emit

    def layer(self, node: Node, x: Value) -> Value:
        return self._emitter(node, "layer_", node.kind, f"express a {node.kind} layer")(node, x)

    def join(self, node: Node, values: list[Value]) -> Value:
        """The input of a layer that reads several: ``join_concat`` or ``join_sum``."""
        what = f"join its inputs by {node.join}"
        return self._emitter(node, "join_", node.join, what)(node, values)

    def activation(self, node: Node, x: Value) -> Value:
        fn = node.layer.activation_fn
        what = f"express the activation {fn.name}"
        return self._emitter(node, "act_", fn.name, what)(node, fn, x)

    def describe(self, node: Node, x: Value) -> str:
        """A layer in words, for comments: ``model.layers[0] (dense): 64 -> 256, relu``."""
        layer = node.layer
        head = self.named(node)
        if node.kind == "dense":
            text = f"{x.size} -> {layer.units}, {activation_text(layer.activation_fn)}"
            return f"{head}: {text}" + ("" if layer.use_bias else ", no bias")
        if node.kind in ("rnn", "lstm"):
            act = f", {activation_text(layer.activation_fn)}" if node.kind == "rnn" else ""
            out = "every step's state" if layer.return_sequences else "the last state"
            return f"{head}: {shape_text(x.shape)} -> {layer.units} units{act}, {out}"
        if node.kind == "flatten":
            return f"{head}: {shape_text(x.shape)} -> {x.size}"
        if node.kind == "dropout":
            return f"{head}: the identity at inference"
        if node.kind in IMAGE_TEXT:
            text = f"{head}: {shape_text(x.shape)} -> {shape_text(self.model.shapes[node.index])}"
            if node.kind == "conv2d":
                act = activation_text(layer.activation_fn)
                return f"{text}, {layer.filters} filters {_window_text(node)}, {act}"
            if node.kind in ("maxpool2d", "avgpool2d"):
                return f"{text}, {_window_text(node)}"
            return text
        if layer.activation_fn is not None:
            return f"{head}: {activation_text(layer.activation_fn)}"
        return head

    def named(self, node: Node) -> str:
        """``model.layers[1] (dense)``, with the layer's name if it has one."""
        return node.where if node.label == f"layers[{node.index}]" else f"{node.where} {node.label}"

    def describe_join(self, node: Node) -> str:
        """``model.layers[4] (activation) res reads sum(t, drop)``, for comments."""
        reads = ", ".join(source_labels(self.model, node))
        return f"{self.named(node)} reads {node.join}({reads})"

    # ---------------------------------------------------------------- shared layers

    def layer_dropout(self, node: Node, x: Value) -> Value:
        return x  # dropout is the identity at inference

    def layer_activation(self, node: Node, x: Value) -> Value:
        return self.activation(node, x)


def concat_shape(values: list[Value]) -> tuple[int, ...]:
    """The shape of values joined along their last axis."""
    return (*values[0].shape[:-1], sum(v.shape[-1] for v in values))


def recurrent_shapes(node: Node, x: Value) -> tuple[int, int, int, tuple[int, ...]]:
    """(time steps, features, units, output shape) of an rnn or lstm layer reading ``x``."""
    steps, features = x.shape
    units = node.layer.units
    return steps, features, units, ((steps, units) if node.layer.return_sequences else (units,))


IMAGE_TEXT = (
    "conv2d", "maxpool2d", "avgpool2d", "global_avgpool2d", "upsample2d", "reshape", "batchnorm",
    "layernorm",
)  # fmt: skip


def _window_text(node: Node) -> str:
    """``5x5 same``, ``3x3 stride 2x2 valid``, ``3x3 dilation 2x2 same``: a convolution's or
    pooling layer's windows (a pooling stride equal to the window is not named)."""
    g = node.layer._g
    text = f"{g.kh}x{g.kw}"
    usual = (1, 1) if node.kind == "conv2d" else (g.kh, g.kw)
    if (g.sh, g.sw) != usual:
        text += f" stride {g.sh}x{g.sw}"
    if (g.dh, g.dw) != (1, 1):
        text += f" dilation {g.dh}x{g.dw}"
    return f"{text} {node.layer.padding}"


def layer_text(node: Node) -> str:
    """A layer in a few words: ``dense 256 relu``, ``lstm 32``, ``flatten``, ``conv2d 16 5x5
    same relu``, ``maxpool2d 2x2 valid``."""
    layer = node.layer
    if node.kind == "dense":
        return f"dense {layer.units} {activation_text(layer.activation_fn)}"
    if node.kind == "conv2d":
        act = activation_text(layer.activation_fn)
        return f"conv2d {layer.filters} {_window_text(node)} {act}"
    if node.kind in ("maxpool2d", "avgpool2d"):
        return f"{node.kind} {_window_text(node)}"
    if node.kind == "reshape":
        return f"reshape {shape_text(layer._out)}"
    if node.kind == "upsample2d":
        return f"upsample2d {layer._size[0]}x{layer._size[1]}"
    if node.kind == "activation":
        return activation_text(layer.activation_fn)
    if node.kind in ("rnn", "lstm"):
        act = f" {activation_text(layer.activation_fn)}" if node.kind == "rnn" else ""
        return f"{node.kind} {layer.units}{act}" + (" (sequences)" * layer.return_sequences)
    return node.kind


def network_text(model: Any) -> str:
    """The network on one line: ``64 inputs -> dense 256 relu -> dropout -> dense 10 softmax``;
    for a graph, each layer with its name and, where it does not read the layer before, what
    it reads: ``2 inputs -> hidden: dense 1 sigmoid -> dense 1 sigmoid (reads concat(input,
    hidden))``, and the outputs when there are several."""
    shape = tuple(model.input_shape)
    parts = [f"{shape_text(shape)} inputs" if len(shape) == 1 else f"{shape_text(shape)} input"]
    chain = getattr(model, "chain", True)
    for node in nodes(model):
        text = layer_text(node)
        if chain:
            parts.append(text)
            continue
        if node.label != f"layers[{node.index}]":
            text = f"{node.label}: {text}"
        if node.sources != [node.index - 1]:
            reads = ", ".join(source_labels(model, node))
            text += (
                f" (reads {node.join}({reads}))" if len(node.sources) > 1 else f" (reads {reads})"
            )
        parts.append(text)
    text = " -> ".join(parts)
    if len(output_indices(model)) > 1:
        labels = {n.index: n.label for n in nodes(model)}
        text += "; outputs: " + ", ".join(labels[j] for j in output_indices(model))
    return text


def outputs_text(info: dict, above: str = "above", classes: str | None = None) -> str:
    """What one output of a model gives, in words, for the documentation of exported code.

    Parameters
    ----------
    info : ``nnlab.nn.graph.model_info`` of a model with one output, or one of its ``heads``.
    above : how a one-output classifier's decision reads: "above" (its threshold), "out[0] >".
    classes : how the classes of a classifier with several outputs are named (default: listed).
    """
    labels = info["classes"]
    if info["task"] != "classification":
        return "the predicted values"
    if info["n_outputs"] == 1:
        what = "the probability of" if info["probabilities"] else "a score for"
        return (
            f"{what} class {labels[1]} (predicted when {above} {info['threshold']}, "
            f"else {labels[0]})"
        )
    kind = "probabilities" if info["probabilities"] else "scores"
    return f"the {kind} of the classes {classes or ', '.join(labels)} (predicted: the largest)"


def check_finite(model: Any) -> None:
    """Exported code holds the weights as literals: they must be finite numbers."""
    for name, value, _ in model.named_parameters():
        if not np.isfinite(value).all():
            raise ExportError(f"model parameter {name} has NaN or infinite values")
