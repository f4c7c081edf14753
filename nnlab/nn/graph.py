"""The model as a graph and as a program sees it: its layers in the order they run with what
each reads (``nodes``), its outputs, its input scaling and what its outputs mean (``model_info``).
Exporters, ``nnlab invert``, ``nnlab predict`` and ``nnlab explain`` are built on this view.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnlab.nn.layers import INPUT, LAYERS, Layer

Array = np.ndarray


@dataclass
class Node:
    """One layer of a model, as exporters see it: what it is and what it reads."""

    index: int
    kind: str  # the registered layer type, e.g. "dense"
    layer: Layer
    sources: list[int] = field(default_factory=list)  # the layers it reads; -1: the model input
    join: str = "concat"  # how several sources are combined: "concat" (last axis) or "sum"
    label: str = ""  # its name in the config, or layers[i]

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
    """The layers of a model in the order they run. A chain (``model.chain``) reads each
    layer's input from the layer before, whatever its list of layers holds."""
    chain = getattr(model, "chain", True)
    names = getattr(model, "names", [])
    out = []
    for i, layer in enumerate(model.layers):
        sources = [i - 1] if chain else list(model.sources[i])
        join = "concat" if chain else model.joins[i]
        label = names[i] if i < len(names) else f"layers[{i}]"
        out.append(Node(i, layer_kind(layer), layer, sources, join, label))
    return out


def output_indices(model: Any) -> list[int]:
    """The indices of the output layers, in the order of ``model.outputs``."""
    return [len(model.layers) - 1] if getattr(model, "chain", True) else list(model.outputs)


def source_labels(model: Any, node: Node) -> list[str]:
    """The names of what a layer reads: ``input`` or the layers' names."""
    labels = {n.index: n.label for n in nodes(model)}
    return [INPUT if s < 0 else labels[s] for s in node.sources]


def head_names(model: Any) -> list[str]:
    """The names of a model's outputs (its output layers' names), in the model's order."""
    return [model.names[j] for j in model.outputs]


def model_info(model: Any, meta: dict) -> dict:
    """What a program needs to read a model's inputs and label its outputs (JSON-able).

    A model with one output gets ``name``, ``n_inputs``, ``n_outputs``, ``dtype``, ``task``,
    ``classes``, ``threshold`` and ``probabilities`` (see ``nnlab.export.standalone``). A model
    with several gets ``name``, ``n_inputs``, ``dtype`` and ``heads``: per output, in order, a
    dict of its ``name`` (the output layer's) and the keys above from ``n_outputs`` on but
    ``dtype``; a head trained on the inputs (reconstruction) gives values, as regression does.
    """
    name = meta.get("run") or "model"
    n_inputs = int(np.prod(model.input_shape))
    heads = [_head_info(model, meta, k) for k in range(model.n_outputs)]
    if len(heads) == 1:
        head = heads[0]
        return {"name": name, "n_inputs": n_inputs, "n_outputs": head.pop("n_outputs"),
                "dtype": model.dtype.name, **head}  # fmt: skip
    heads = [{"name": label, **h} for label, h in zip(head_names(model), heads, strict=True)]
    return {"name": name, "n_inputs": n_inputs, "dtype": model.dtype.name, "heads": heads}


def _head_info(model: Any, meta: dict, k: int) -> dict:
    from nnlab.nn.losses import LOSSES

    outputs = meta["model"].get("outputs")
    spec = outputs[k] if outputs else {"loss": meta["loss"], "target": "labels"}
    n_out = int(np.prod(model.output_shapes[k]))
    task = meta["task"] if spec["target"] == "labels" else "regression"
    classes = threshold = None
    if task == "classification":
        names = meta.get("class_names")
        classes = [str(c) for c in (names or range(meta["n_classes"]))]
        if n_out == 1 and meta.get("threshold") is not None:  # the run's (training.threshold)
            threshold = float(meta["threshold"])
        elif n_out == 1:
            loss = LOSSES.build(spec["loss"])
            # a fused loss compares its logits with 0: the same as the probability with 0.5
            threshold = 0.5 if loss.fused_activation else float(loss.threshold)
    return {
        "n_outputs": n_out,
        "task": task,
        "classes": classes,
        "threshold": threshold,
        "probabilities": task == "classification"
        and model.output_activations[k] in ("softmax", "sigmoid"),
    }


def input_scaling(meta: dict, dtype: Any) -> tuple[Array, Array]:
    """(shift, scale) in the model's dtype: the model takes ``(x - shift) / scale``. Each is a
    scalar (0-d) or has the input's shape."""
    return np.asarray(meta["shift"], dtype), np.asarray(meta["scale"], dtype)


def is_identity(shift: Array, scale: Array) -> bool:
    return not shift.any() and bool((scale == 1).all())
