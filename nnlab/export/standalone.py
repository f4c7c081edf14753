"""Reading inputs and writing predictions, with NumPy and the standard library only.

``nnlab predict`` and ``nnlab invert`` use these functions, and ``nnlab export --format numpy``
copies this module's code into the program it writes, so that the exported program reads and
writes files exactly as nnlab does. Nothing here may import nnlab or any package but NumPy.

``info`` is a plain dict that describes a model's inputs and outputs (see
``nnlab.nn.graph.model_info``): ``n_inputs``, ``n_outputs``, ``dtype``, ``task``
(classification or regression), ``classes`` (class labels as text, or None), ``threshold``
(one-output classifiers: class 1 when the output is above it) and ``probabilities`` (the outputs
are class probabilities). A model with several outputs has ``heads`` instead: a dict per output
with its ``name`` and the keys above from ``n_outputs`` on (but ``dtype``); its outputs are a
dict of arrays by name.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys

import numpy as np


class InputError(ValueError):
    """A file that cannot be used; the message names the file."""


def read_array(path: str, width: int, dtype: str = "float32", what: str = "inputs") -> np.ndarray:
    """The rows of a CSV file (numbers, with or without a header row) or a .npy file.

    Parameters
    ----------
    path : a ``.npy`` file of shape (n, width) (or (width,) for one row), or a CSV file.
    width : the number of values each row must have.
    what : what a value is, for messages ("inputs", "outputs").

    Returns
    -------
    (n, width) array of ``dtype``, all values finite.
    """
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    if path.lower().endswith(".npy"):
        X = _read_npy(path, width, dtype, what)
    else:
        X = _read_csv(path, width, dtype, what)
    if X.shape[0] == 0:
        raise InputError(f"{path}: no data rows; give a row of {width} {what} per sample")
    finite = np.isfinite(X).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        rows = "1 row has" if bad.size == 1 else f"{bad.size} rows have"
        raise InputError(
            f"{path}: {rows} NaN or infinite values (the first is row {bad[0] + 1}); "
            "remove or fill them"
        )
    return X


def _columns_error(path: str, found: int, width: int, what: str) -> InputError:
    hint = " (leave out the target column)" if found == width + 1 and what == "inputs" else ""
    return InputError(f"{path}: rows have {found} values, but the model has {width} {what}{hint}")


def _read_npy(path: str, width: int, dtype: str, what: str) -> np.ndarray:
    try:
        X = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise InputError(f"{path}: not a readable .npy file ({e})") from None
    if X.dtype.kind not in "biuf":
        raise InputError(f"{path}: holds {X.dtype} values; the {what} must be numbers")
    if X.ndim == 1 and (width == 1 or X.size == width):
        X = X.reshape(-1, width)  # one column, or one row
    elif X.ndim > 2:
        X = X.reshape(X.shape[0], -1)
    if X.ndim != 2 or X.shape[1] != width:
        found = X.shape[1] if X.ndim == 2 else X.size
        raise _columns_error(path, found, width, what)
    return X.astype(dtype, copy=False)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_csv(path: str, width: int, dtype: str, what: str) -> np.ndarray:
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a readable CSV text file ({e})") from None
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise InputError(f"{path}: the file is empty; give a row of {width} {what} per sample")
    header = not all(_is_number(c) for c in next(csv.reader([lines[first]])))
    body = "\n".join(lines[first + header :])
    if not body.strip():
        raise InputError(f"{path}: no data rows; give a row of {width} {what} per sample")
    try:
        X = np.loadtxt(io.StringIO(body), delimiter=",", dtype=dtype, ndmin=2, comments=None)
    except ValueError:
        raise _csv_problem(path, lines, first + header, what) from None
    if X.shape[1] != width:
        raise _columns_error(path, X.shape[1], width, what)
    return X


def _csv_problem(path: str, lines: list[str], start: int, what: str) -> InputError:
    """The first line that stops a CSV file from being a table of numbers."""
    width = None
    for n, row in enumerate(csv.reader(lines[start:]), start + 1):
        if not any(c.strip() for c in row):
            continue
        width = len(row) if width is None else width
        if len(row) != width:
            return InputError(f"{path}: line {n} has {len(row)} values, the first row {width}")
        for c in row:
            if not _is_number(c):
                return InputError(f"{path}: line {n}: {c.strip()!r} is not a number")
    return InputError(f"{path}: not a CSV table of numbers")


def decide(outputs: np.ndarray, info: dict) -> np.ndarray:
    """Class indices (n,) from a classifier's outputs (n, n_outputs)."""
    if outputs.shape[1] == 1:
        return (outputs[:, 0] > info["threshold"]).astype(np.int64)
    return outputs.argmax(axis=1)


def prediction_table(outputs, info: dict) -> tuple[list[str], list[np.ndarray]]:
    """Column names and columns (n,) of a prediction table.

    Classifiers: ``class`` (its label), then ``prob_<label>`` for each class when the outputs
    are probabilities (one sigmoid output gives both classes' probabilities), ``score_<label>``
    (or ``score``) otherwise. Regression: ``y`` or ``y0, y1, ...``. A model with several outputs
    (``outputs`` a dict of arrays): the columns of each in turn, prefixed by its name and ``_``
    (``cls_class, cls_prob_0, ..., recon_y0, ...``).
    """
    if "heads" not in info:
        return _head_table(outputs, info)
    names, columns = [], []
    for head in info["heads"]:
        n, c = _head_table(outputs[head["name"]], head)
        names += [f"{head['name']}_{name}" for name in n]
        columns += c
    return names, columns


def _head_table(outputs: np.ndarray, info: dict) -> tuple[list[str], list[np.ndarray]]:
    k = outputs.shape[1]
    cols = [outputs[:, j] for j in range(k)]
    if info["task"] != "classification":
        return (["y"] if k == 1 else [f"y{j}" for j in range(k)]), cols
    classes = info["classes"]
    label = np.asarray(classes, dtype=object)[decide(outputs, info)]
    if k == 1 and info["probabilities"]:
        p = outputs[:, 0]
        return ["class", *(f"prob_{c}" for c in classes)], [label, 1 - p, p]
    if k == 1:
        return ["class", "score"], [label, *cols]
    prefix = "prob_" if info["probabilities"] else "score_"
    return ["class", *(f"{prefix}{c}" for c in classes)], [label, *cols]


def csv_text(names: list[str], columns: list[np.ndarray]) -> str:
    """A CSV table: a header row, then the columns (numbers in their shortest exact form)."""
    text = [c if c.dtype == object else c.astype(str) for c in columns]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(names)
    writer.writerows(zip(*text))  # noqa: B905 (the exported program runs on Python < 3.10 too)
    return buf.getvalue()


def output_kind(path: str | None, info: dict | None = None) -> str:
    """``csv``, ``npy`` or ``npz``, from an output file's name (None: CSV on standard output);
    with ``info``, .npy is refused for a model with several outputs."""
    if path is None or path.lower().endswith((".csv", ".txt")):
        return "csv"
    if path.lower().endswith(".npz"):
        return "npz"
    if path.lower().endswith(".npy"):
        if info is not None and "heads" in info:
            names = ", ".join(h["name"] for h in info["heads"])
            raise InputError(
                f"{path}: the model has {len(info['heads'])} outputs ({names}) and a .npy file "
                "holds one array; name the file .npz (an array per output) or .csv"
            )
        return "npy"
    raise InputError(f"{path}: unknown output type; name the file .csv, .npy or .npz")


def encode(kind: str, arrays, names: list[str], columns: list[np.ndarray], name: str = "output"):
    """The bytes of a .npy file holding ``arrays`` (one array), of a .npz file holding them (a
    dict of arrays by name, or one array called ``name``), or the text of a CSV table."""
    if kind == "csv":
        return csv_text(names, columns)
    buf = io.BytesIO()
    if kind == "npz":
        np.savez(buf, **(arrays if isinstance(arrays, dict) else {name: arrays}))
    else:
        np.save(buf, arrays)
    return buf.getvalue()


def main(predict, info: dict, argv: list[str] | None = None) -> int:
    """The command line of an exported model: ``python FILE INPUT [-o OUTPUT]``."""
    parser = argparse.ArgumentParser(
        description=f"Predictions of the nnlab model '{info['name']}' (NumPy only).",
    )
    parser.add_argument(
        "input",
        help=f"CSV (header row optional) or .npy file, a row of {info['n_inputs']} raw inputs "
        "per sample",
    )
    parser.add_argument(
        "-o",
        "--output",
        help="a .csv, .npy or .npz file for the predictions (default: CSV on stdout)",
    )
    args = parser.parse_args(argv)
    try:
        kind = output_kind(args.output, info)
        outputs = predict(read_array(args.input, info["n_inputs"], info["dtype"]))
        data = encode(kind, outputs, *prediction_table(outputs, info))
        if args.output is None:
            sys.stdout.write(data)
        elif kind != "csv":
            with open(args.output, "wb") as f:
                f.write(data)
        else:
            with open(args.output, "w", encoding="utf-8", newline="") as f:
                f.write(data)
    except (InputError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
