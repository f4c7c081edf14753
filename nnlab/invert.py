"""Recover inputs from outputs: ``nnlab invert RUN OUTPUTS``.

A dense layer ``y = f(x W + b)`` can be undone when ``f`` is invertible and W is square and
non-singular: ``x = solve(W^T, f^-1(y) - b)``; a batchnorm layer (in evaluation, ``x a + b``
per channel) when no channel's scale is 0; dropout (the identity at inference), flatten and
reshape need nothing. ``check_invertible`` checks every layer first, in the model's order,
and names the first one that cannot be undone, and why: a layer that reads several layers (a
skip join), one of several outputs, a recurrent layer, a dense layer that is not square, an
activation that is not one-to-one, a convolution, pooling, upsampling or layernorm layer.
``invert`` then solves layer by layer from the output back (in float64), checking that each
activation's values lie in its range, and undoes the input scaling, so the recovered inputs are
raw, like the training data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nnlab.errors import NnlabError
from nnlab.export.base import activation_text
from nnlab.nn.graph import Node, nodes, output_indices, source_labels
from nnlab.predict import output_kind, read_input, write_table
from nnlab.runs import load_model

Array = np.ndarray

# Why an activation without an inverse has none.
NOT_ONE_TO_ONE = {
    "relu": "relu maps every negative input to 0",
    "softmax": (
        "softmax gives the same output when a constant is added to all its inputs "
        "(its outputs sum to 1)"
    ),
    "gelu": (
        "gelu is not one-to-one: it falls to about -0.17 at z = -0.75 and rises again, "
        "so two inputs give each output between -0.17 and 0"
    ),
    "silu": (
        "silu is not one-to-one: it falls to about -0.28 at z = -1.28 and rises again, "
        "so two inputs give each output between -0.28 and 0"
    ),
    "leaky_relu": "leaky_relu with alpha 0 is relu: it maps every negative input to 0",
}
INVERTIBLE_LAYERS = ("activation", "batchnorm", "dense", "dropout", "flatten", "reshape")
IMAGE_LAYERS = ("conv2d", "maxpool2d", "avgpool2d", "global_avgpool2d", "upsample2d", "layernorm")


class NotInvertibleError(NnlabError):
    """A network that cannot be inverted, or outputs that no input gives; the message names
    the layer."""


def _activation_problem(fn: Any) -> str | None:
    if fn is None or fn.invertible_range is not None:
        return None
    return NOT_ONE_TO_ONE.get(fn.name, f"{fn.name} has no inverse")


def _recurrent_problem(node: Node) -> str:
    if not node.layer.return_sequences:
        return (
            "is not a one-to-one map: its output is a state summarising the sequence (its last "
            "state), not the sequence"
        )
    if node.kind == "lstm":
        return (
            "is not a one-to-one map nnlab can undo: each state h_t = o_t * tanh(c_t) mixes the "
            "step's input with a memory c_t that the output does not hold"
        )
    return (
        "nnlab does not undo recurrent layers: each state h_t = act(x_t W + h_{t-1} U + b) "
        "depends on the state before"
    )


def _count(shape: tuple[int, ...]) -> str:
    n = int(np.prod(shape))
    return f"{n} values" if len(shape) == 1 else f"{n} values ({'x'.join(map(str, shape))})"


def _image_problem(model: Any, node: Node) -> str:
    """Why nnlab does not undo a layer over images, or layernorm."""
    shapes = [model.input_shape if s < 0 else model.shapes[s] for s in node.sources]
    n_in, n_out = int(np.prod(shapes[0])), int(np.prod(model.shapes[node.index]))
    sizes = f"maps {_count(shapes[0])} to {_count(model.shapes[node.index])}"
    if node.kind == "layernorm":
        return "removes each position's mean and spread: x and a x + c (a > 0) give the same output"
    if node.kind == "maxpool2d":
        return f"{sizes}, keeping the largest of each window: the others are lost"
    if node.kind == "upsample2d":
        return f"{sizes}, each repeated: most outputs (copies that differ) are given by no input"
    if n_out < n_in:
        return f"{sizes}, so many inputs give the same output"
    if n_out > n_in:
        return f"{sizes}, so most outputs are given by no input"
    return (
        f"{sizes}: a linear map that nnlab does not solve (it inverts dense layers, not "
        f"{node.kind} layers)"
    )


def wiring_problem(model: Any, node: Node) -> str | None:
    """Why a layer's place in a graph model stops nnlab from inverting it, or None."""
    if len(node.sources) > 1:
        reads = ", ".join(source_labels(model, node))
        return (
            f"reads several layers ({reads}), joined by {node.join}: nnlab inverts a chain, in "
            "which each layer reads the one before"
        )
    outputs = output_indices(model)
    if len(outputs) > 1 and node.index in outputs:
        labels = {n.index: n.label for n in nodes(model)}
        names = ", ".join(labels[j] for j in outputs)
        return (
            f"is one of the model's {len(outputs)} outputs ({names}): nnlab inverts a model "
            "with one output"
        )
    return None


def why_not_invertible(node: Node, dtype: Any, model: Any = None) -> str | None:
    """Why a layer cannot be undone, or None if it can (its place in a graph aside: see
    ``wiring_problem``). ``model`` gives the shapes named in the reasons."""
    layer = node.layer
    if node.kind in ("rnn", "lstm"):
        return _recurrent_problem(node)
    if model is not None and node.kind in IMAGE_LAYERS:
        return _image_problem(model, node)
    if node.kind not in INVERTIBLE_LAYERS:
        return f"nnlab cannot invert a {node.kind} layer"
    if node.kind == "batchnorm":
        a, _ = layer.inference_affine()
        if not np.all(np.isfinite(a)) or (a == 0).any():
            k = int(np.flatnonzero(~np.isfinite(a) | (a == 0))[0])
            return (
                f"channel {k} has a scale gamma / sqrt(var + eps) of {a[k]:g}: every input "
                "gives the same output there"
            )
    if node.kind == "dense":
        n_in, n_out = layer.params["W"].shape
        if n_in > n_out:
            return f"maps {n_in} inputs to {n_out} outputs, so many inputs give the same output"
        if n_in < n_out:
            return f"maps {n_in} inputs to {n_out} outputs, so most outputs are given by no input"
        cond = np.linalg.cond(layer.params["W"].astype(np.float64))
        if not np.isfinite(cond) or cond * np.finfo(dtype).eps >= 1:
            return (
                f"has a singular weight matrix W (condition number {cond:.3g}): "
                "different inputs give the same output"
            )
    return _activation_problem(layer.activation_fn)


def check_invertible(model: Any) -> None:
    """Raise ``NotInvertibleError`` naming the first layer that cannot be undone, and why. A
    graph that is not a chain is refused at its first join (or its first output, for several)
    before any layer is looked at: no change to its layers would make it invertible."""
    wiring = [(node, wiring_problem(model, node)) for node in nodes(model)]
    layers = [(node, why_not_invertible(node, model.dtype, model)) for node in nodes(model)]
    for node, why in wiring + layers:
        if why is not None:
            hint = (
                " (an invertible network is a chain of dense layers with as many units as inputs "
                "and invertible activations: tanh, sigmoid, leaky_relu, elu, selu, softplus, "
                "linear; batchnorm, dropout, flatten and reshape layers may sit between them)"
            )
            raise NotInvertibleError(f"{node.where}: not invertible: {why}{hint}")


def _undo_activation(node: Node, z: Array) -> Array:
    fn = node.layer.activation_fn
    lo, hi = fn.invertible_range
    outside = ~((z > lo) & (z < hi))
    if outside.any():
        rows = np.flatnonzero(outside.any(axis=1))
        value = z[outside][0]
        count = int(outside.sum())
        raise NotInvertibleError(
            f"{node.where}: {count} value{'s' if count > 1 else ''} outside ({lo:g}, {hi:g}), "
            f"the range of {activation_text(fn)}, in {rows.size} of {z.shape[0]} rows (the "
            f"first: row {rows[0] + 1}, {value:.6g}): no input gives them"
        )
    return fn.inverse(z)


def invert(model: Any, meta: dict, Y: Array) -> Array:
    """The raw inputs that give the outputs ``Y``.

    Parameters
    ----------
    Y : (n, n_outputs) outputs of the model.

    Returns
    -------
    (n, n_inputs) inputs in the model's dtype (solved in float64), with the input scaling
    undone: ``predict(model, meta, invert(model, meta, Y))`` is ``Y`` to rounding.
    """
    check_invertible(model)
    z = np.array(Y, dtype=np.float64).reshape(Y.shape[0], -1)
    with np.errstate(divide="ignore", over="ignore"):
        for node in reversed(nodes(model)):
            layer = node.layer
            if layer.activation_fn is not None:
                z = _undo_activation(node, z)
            if node.kind == "dense":
                if layer.use_bias:
                    z -= layer.params["b"]
                z = np.linalg.solve(layer.params["W"].T.astype(np.float64), z.T).T
            elif node.kind == "batchnorm":  # y = x a + b per channel (the last axis)
                a, b = (v.astype(np.float64) for v in layer.inference_affine())
                z = ((z.reshape(z.shape[0], -1, a.size) - b) / a).reshape(z.shape[0], -1)
    z = z.reshape(-1, *model.input_shape)  # flatten undone; the scaling has the input's shape
    z *= np.asarray(meta["scale"], np.float64)
    z += np.asarray(meta["shift"], np.float64)
    return z.astype(model.dtype)


def invert_file(
    run: str | Path, outputs_path: str | Path, output: str | Path | None = None
) -> str | None:
    """Invert the rows of a CSV or .npy file of outputs; write the inputs to ``output`` (.csv,
    .npy, or .npz with one array ``inputs``), or return the CSV text when ``output`` is None."""
    output_kind(output)  # a bad output name fails before any work
    model, meta = load_model(run)
    check_invertible(model)
    Y = read_input(outputs_path, int(np.prod(model.output_shape)), model.dtype, "outputs")
    X = invert(model, meta, Y).reshape(Y.shape[0], -1)
    names = [f"x{j}" for j in range(X.shape[1])]
    return write_table(output, X, names, [X[:, j] for j in range(X.shape[1])], name="inputs")


__all__ = ["NotInvertibleError", "check_invertible", "invert", "invert_file", "wiring_problem"]
