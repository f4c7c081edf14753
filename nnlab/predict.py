"""Predictions of a trained model on new inputs: ``nnlab predict RUN INPUT``.

Inputs are raw, like the training data: the model's input scaling ``(x - shift) / scale``
(stored with the weights) is applied here, as in every exported program. Files are read and
written by ``nnlab.export.standalone``, the code that exported programs carry too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nnlab.errors import DataError
from nnlab.export import standalone
from nnlab.files import atomic_write
from nnlab.nn.graph import head_names, input_scaling, is_identity, model_info
from nnlab.runs import load_model

Array = np.ndarray


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
    model, meta = load_model(run)
    info = model_info(model, meta)
    output_kind(output, info)  # .npy holds the output of a model with one
    X = read_input(input_path, info["n_inputs"], model.dtype)
    outputs = predict(model, meta, X)
    return write_table(output, outputs, *standalone.prediction_table(outputs, info))
