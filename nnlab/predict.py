"""Predictions of a trained model on new inputs: ``nnlab predict RUN INPUT``.

Inputs are raw, like the training data: the model's input scaling ``(x - shift) / scale``
(stored with the weights) is applied here, as in every exported program. Files are read and
written by ``nnlab.export.standalone``, the code that exported programs carry too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nnlab.errors import DataError, RunError
from nnlab.export import standalone
from nnlab.files import atomic_write
from nnlab.runs import load_model

Array = np.ndarray


def load_run(run: str | Path) -> tuple[Any, dict]:
    """(model, meta) of a run folder or a model.npz, with an error naming a missing one."""
    path = Path(run)
    if not path.exists():
        raise RunError(f"{run}: no such run folder or model file")
    model, meta = load_model(path)
    meta["run"] = (path if path.is_dir() else path.parent).resolve().name
    return model, meta


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
    from nnlab.nn import LOSSES

    outputs = meta["model"].get("outputs")
    spec = outputs[k] if outputs else {"loss": meta["loss"], "target": "labels"}
    n_out = int(np.prod(model.output_shapes[k]))
    task = meta["task"] if spec["target"] == "labels" else "regression"
    classes = threshold = None
    if task == "classification":
        names = meta.get("class_names")
        classes = [str(c) for c in (names or range(meta["n_classes"]))]
        if n_out == 1:
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


def predict(model: Any, meta: dict, X: Array) -> Array | dict[str, Array]:
    """Evaluation-mode outputs for raw inputs.

    Parameters
    ----------
    X : (n, n_inputs) raw inputs, like the training data before scaling (or (n, *input_shape),
        e.g. (n, time, features) for a sequence model).

    Returns
    -------
    (n, n_outputs) outputs: class probabilities for softmax and sigmoid outputs. A model with
    several outputs gives a dict of them, by output name, in the model's order.
    """
    shift, scale = input_scaling(meta, model.dtype)
    X = np.asarray(X, dtype=model.dtype).reshape(-1, *model.input_shape)
    if not is_identity(shift, scale):
        X = X - shift  # the same operations, in the same dtype, as the training data's scaling
        X /= scale
    outputs = model.predict(X)
    if model.n_outputs == 1:
        return outputs.reshape(X.shape[0], -1)
    return {
        name: out.reshape(X.shape[0], -1)
        for name, out in zip(head_names(model), outputs, strict=True)
    }


def read_input(path: str | Path, width: int, dtype: Any, what: str = "inputs") -> Array:
    """``standalone.read_array`` with nnlab's error type."""
    try:
        return standalone.read_array(str(path), width, np.dtype(dtype).name, what)
    except standalone.InputError as e:
        raise DataError(str(e)) from None


def output_kind(path: str | Path | None, info: dict | None = None) -> str:
    """``standalone.output_kind`` with nnlab's error type."""
    try:
        return standalone.output_kind(None if path is None else str(path), info)
    except standalone.InputError as e:
        raise DataError(str(e)) from None


def write_table(
    path: str | Path | None,
    arrays: Array | dict[str, Array],
    names: list[str],
    columns: list[Array],
    name: str = "output",
) -> str | None:
    """Write ``arrays`` (.npy: one array; .npz: an array per output, or one called ``name``)
    or the table (CSV) to ``path`` atomically; with no path, return the CSV text."""
    data = standalone.encode(output_kind(path), arrays, names, columns, name)
    if path is None:
        return data
    try:
        atomic_write(Path(path), data)
    except OSError as e:
        raise DataError(f"{path}: cannot write the file ({e.strerror or e})") from None
    return None


def predict_file(
    run: str | Path, input_path: str | Path, output: str | Path | None = None
) -> str | None:
    """Predict the rows of a CSV or .npy file; write them to ``output`` (.csv, .npy, or .npz
    with an array per output), or return the CSV text when ``output`` is None."""
    output_kind(output)  # a bad output name fails before any work
    model, meta = load_run(run)
    info = model_info(model, meta)
    output_kind(output, info)  # .npy holds the output of a model with one
    X = read_input(input_path, info["n_inputs"], model.dtype)
    outputs = predict(model, meta, X)
    return write_table(output, outputs, *standalone.prediction_table(outputs, info))
