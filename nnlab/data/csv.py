"""Your own data from a CSV file: numeric feature columns and one target column."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated, Literal

import numpy as np

from nnlab.data.base import DATASETS, Raw
from nnlab.errors import DataError
from nnlab.schema import Doc


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@DATASETS.register("csv")
def csv_file(
    path: Annotated[str, Doc("the CSV file (relative to the working folder)")],
    target: Annotated[
        str | int, Doc("the target column: its header name or index (-1: the last)")
    ] = -1,
    header: Annotated[bool | None, Doc("the first row names the columns (null: detect)")] = None,
    delimiter: Annotated[str, Doc("the field separator")] = ",",
    task: Annotated[
        Literal["auto", "classification", "regression"],
        Doc("auto: classification when the target is text or has few distinct integers"),
    ] = "auto",
) -> Raw:
    """A CSV file of numeric features and one target column (text or numbers)."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{file}: no such file; give data.path as a CSV file's path")
    with file.open(newline="", encoding="utf-8-sig") as f:
        rows = [r for r in csv.reader(f, delimiter=delimiter) if any(c.strip() for c in r)]
    if header is None:
        header = bool(rows) and not all(_is_number(c) for c in rows[0])
    names = [c.strip() for c in rows[0]] if header and rows else None
    body = rows[1:] if header else rows
    if not body:
        raise DataError(f"{file}: the file has no data rows; it needs a row per sample")
    width = len(body[0])
    for i, r in enumerate(body):
        if len(r) != width:
            raise DataError(
                f"{file}: row {i + 1 + bool(header)} has {len(r)} fields, the first has {width}"
            )
    if width < 2:
        raise DataError(f"{file}: need at least one feature column and a target column")
    if isinstance(target, str):
        if names is None or target not in names:
            raise DataError(
                f"{file}: no column named {target!r}; columns: {', '.join(names or [])}"
                if names
                else f"{file}: has no header row, so give data.target as a column index"
            )
        t = names.index(target)
    else:
        if not -width <= target < width:
            raise DataError(f"{file}: target column {target} out of range for {width} columns")
        t = target % width
    cols = [j for j in range(width) if j != t]
    try:
        X = np.array([[float(r[j]) for j in cols] for r in body])
    except ValueError as e:
        raise DataError(
            f"{file}: a feature is not a number ({e}); features must be numeric"
        ) from None
    targets = [r[t].strip() for r in body]
    numeric = all(_is_number(v) for v in targets)
    if task == "auto":
        if not numeric:
            task = "classification"
        else:
            values = np.array([float(v) for v in targets])
            few = len(set(targets)) <= max(2, min(50, len(targets) // 5))
            task = "classification" if few and np.all(values == np.round(values)) else "regression"
    if task == "regression":
        if not numeric:
            raise DataError(f"{file}: regression needs a numeric target column")
        y = np.array([float(v) for v in targets])
        return Raw(X, y, task="regression", description=f"{file.name}, {len(y)} rows")
    keys = sorted(set(targets), key=lambda v: (float(v) if numeric else 0.0, v))
    index = {v: i for i, v in enumerate(keys)}
    y = np.array([index[v] for v in targets])
    return Raw(
        X, y, n_classes=len(keys), class_names=keys, description=f"{file.name}, {len(y)} rows"
    )
