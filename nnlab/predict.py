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
from nnlab.runs import atomic_write, load_model

Array = np.ndarray


def load_run(run: str | Path) -> tuple[Any, dict]:
    """(model, meta) of a run folder or a model.npz, with an error naming a missing one."""
    path = Path(run)
    if not path.exists():
        raise RunError(f"{run}: no such run folder or model file")
    model, meta = load_model(path)
    meta["run"] = (path if path.is_dir() else path.parent).resolve().name
    return model, meta


def model_info(model: Any, meta: dict) -> dict:
    """What a program needs to read a model's inputs and label its outputs (JSON-able)."""
    from nnlab.nn import LOSSES

    n_out = int(np.prod(model.output_shape))
    classes = threshold = None
    task = meta["task"]
    if task == "classification":
        names = meta.get("class_names")
        classes = [str(c) for c in (names or range(meta["n_classes"]))]
        if n_out == 1:
            loss = LOSSES.build(meta["loss"])
            # a fused loss compares its logits with 0: the same as the probability with 0.5
            threshold = 0.5 if loss.fused_activation else float(loss.threshold)
    return {
        "name": meta.get("run") or "model",
        "n_inputs": int(np.prod(model.input_shape)),
        "n_outputs": n_out,
        "dtype": model.dtype.name,
        "task": task,
        "classes": classes,
        "threshold": threshold,
        "probabilities": task == "classification"
        and model.output_activation in ("softmax", "sigmoid"),
    }


def input_scaling(meta: dict, dtype: Any) -> tuple[Array, Array]:
    """(shift, scale) in the model's dtype: the model takes ``(x - shift) / scale``. Each is a
    scalar (0-d) or has the input's shape."""
    return np.asarray(meta["shift"], dtype), np.asarray(meta["scale"], dtype)


def is_identity(shift: Array, scale: Array) -> bool:
    return not shift.any() and bool((scale == 1).all())


def predict(model: Any, meta: dict, X: Array) -> Array:
    """Evaluation-mode outputs for raw inputs.

    Parameters
    ----------
    X : (n, n_inputs) raw inputs, like the training data before scaling.

    Returns
    -------
    (n, n_outputs) outputs: class probabilities for softmax and sigmoid outputs.
    """
    shift, scale = input_scaling(meta, model.dtype)
    X = np.asarray(X, dtype=model.dtype).reshape(-1, *model.input_shape)
    if not is_identity(shift, scale):
        X = X - shift  # the same operations, in the same dtype, as the training data's scaling
        X /= scale
    return model.predict(X).reshape(X.shape[0], -1)


def read_input(path: str | Path, width: int, dtype: Any, what: str = "inputs") -> Array:
    """``standalone.read_array`` with nnlab's error type."""
    try:
        return standalone.read_array(str(path), width, np.dtype(dtype).name, what)
    except standalone.InputError as e:
        raise DataError(str(e)) from None


def output_kind(path: str | Path | None) -> str:
    try:
        return standalone.output_kind(None if path is None else str(path))
    except standalone.InputError as e:
        raise DataError(str(e)) from None


def write_table(
    path: str | Path | None, array: Array, names: list[str], columns: list[Array]
) -> str | None:
    """Write ``array`` (.npy) or the table (CSV) to ``path`` atomically; with no path, return
    the CSV text."""
    data = standalone.encode(output_kind(path), array, names, columns)
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
    """Predict the rows of a CSV or .npy file; write them to ``output`` (.csv or .npy), or
    return the CSV text when ``output`` is None."""
    output_kind(output)  # a bad output name fails before any work
    model, meta = load_run(run)
    info = model_info(model, meta)
    X = read_input(input_path, info["n_inputs"], model.dtype)
    outputs = predict(model, meta, X)
    return write_table(output, outputs, *standalone.prediction_table(outputs, info))
