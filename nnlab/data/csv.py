"""Your own data from a CSV file: numeric feature columns and one target column."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated, Any, Literal, TextIO

import numpy as np

from nnlab.data.base import DATASETS, Raw
from nnlab.errors import ConfigError, DataError
from nnlab.memory import check_fits, human_bytes
from nnlab.schema import Doc, fmt

_PARSED_BYTES = 25  # memory per byte of a CSV file while it is read (measured: 10 to 23)


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
    dtype: Any = np.float64,
) -> Raw:
    """A CSV file of numeric features and one target column (text or numbers); the numbers must
    fit training.dtype (float32: magnitudes up to 3.4e38)."""
    file = Path(path)
    if len(delimiter) != 1 or delimiter in '"\r\n':
        raise ConfigError(
            f"expected one character other than a quote or a line break, got {delimiter!r}",
            "data.delimiter",
        )
    rows = _read_rows(file, delimiter)
    if header is None:
        header = bool(rows) and not all(_is_number(c) for c in rows[0])
    names = [c.strip() for c in rows[0]] if header and rows else None
    body = rows[1:] if header else rows
    first = 1 + bool(header)  # the line number of body[0] (blank lines aside)
    width = _check_shape(file, rows, body, first)
    t = _target_column(file, target, names, width)
    cols = [j for j in range(width) if j != t]
    X = _numbers(file, body, cols, names, first, dtype)
    targets = [r[t].strip() for r in body]
    numeric = all(_is_number(v) for v in targets)
    if task == "auto":
        task = _guess_task(targets, numeric)
    if task == "regression":
        if not numeric:
            raise DataError(f"{file}: regression needs a numeric target column")
        y = _numbers(file, body, [t], names, first, dtype)[:, 0]
        return Raw(
            X, y, task="regression", description=f"{file.name}, {len(y)} rows", source=str(file)
        )
    y, keys = _classes(file, targets, numeric, _column(t, names), first)
    return Raw(
        X,
        y,
        n_classes=len(keys),
        class_names=keys,
        description=f"{file.name}, {len(y)} rows",
        source=str(file),
    )


def _check_shape(file: Path, rows: list[list[str]], body: list[list[str]], first: int) -> int:
    """The number of columns every data row has; a DataError for a ragged or empty file."""
    if not body:
        raise DataError(
            f"{file}: the file has no data rows"
            + (" (only a header)" if rows else " (it is empty)")
            + "; it needs a row per sample: features, then the target"
        )
    width = len(body[0])
    for i, r in enumerate(body):
        if len(r) != width:
            raise DataError(
                f"{file}: row {i + first} has {len(r)} fields, the first has {width}; "
                "every row needs the same columns"
            )
    if width < 2:
        raise DataError(f"{file}: need at least one feature column and a target column")
    return width


def _target_column(file: Path, target: str | int, names: list[str] | None, width: int) -> int:
    """The index of the target column given by name or (negative) index."""
    if isinstance(target, str):
        if names is None or target not in names:
            raise DataError(
                f"{file}: no column named {target!r}; columns: {', '.join(names or [])}"
                if names
                else f"{file}: has no header row, so give data.target as a column index"
            )
        return names.index(target)
    if not -width <= target < width:
        raise DataError(f"{file}: target column {target} out of range for {width} columns")
    return target % width


def _guess_task(targets: list[str], numeric: bool) -> str:
    """classification for text targets or few distinct integers, else regression."""
    if not numeric:
        return "classification"
    values = np.array([float(v) for v in targets])
    few = len(set(targets)) <= max(2, min(50, len(targets) // 5))
    return "classification" if few and np.all(values == np.round(values)) else "regression"


def _classes(
    file: Path, targets: list[str], numeric: bool, column: str, first: int
) -> tuple[np.ndarray, list[str]]:
    """Class indices (n,) of the target texts and the sorted class names."""
    if any(v == "" for v in targets):
        i = targets.index("")
        raise DataError(
            f"{file}: row {i + first} has no target (column {column}); "
            "give every row its class, or remove the row"
        )
    keys = sorted(set(targets), key=lambda v: (float(v) if numeric else 0.0, v))
    if len(keys) < 2:
        raise DataError(
            f"{file}: every row has the class {keys[0]!r} (column {column}); a "
            "classifier needs at least two classes (or set data.task: regression)"
        )
    index = {v: i for i, v in enumerate(keys)}
    return np.array([index[v] for v in targets]), keys


def _read_rows(file: Path, delimiter: str) -> list[list[str]]:
    """The non-blank rows of a CSV file; a DataError naming the file for anything unreadable."""
    if not file.is_file():
        if file.is_dir():
            raise DataError(f"{file}: is a folder; give data.path as a CSV file's path")
        where = file.parent
        if not where.is_dir():
            raise DataError(
                f"{file}: no such file: the folder {where} does not exist; give data.path as "
                "a CSV file's path (relative to the working folder)"
            )
        raise DataError(f"{file}: no such file; give data.path as a CSV file's path")
    try:
        size = file.stat().st_size
        # parsed into Python strings, then a NumPy array of them: 10 to 23 times the file
        check_fits(size * _PARSED_BYTES, f"reading {file} ({human_bytes(size)})", "data.path")
        with file.open(newline="", encoding="utf-8-sig") as f:
            return _rows(f, delimiter, file)
    except UnicodeDecodeError as e:
        raise DataError(
            f"{file}: not a text file (byte {e.start + 1} is not UTF-8); save it as a UTF-8 CSV"
        ) from None
    except csv.Error as e:
        raise DataError(f"{file}: not a readable CSV file ({e})") from None
    except OSError as e:
        raise DataError(f"{file}: cannot read the file ({e.strerror or e})") from None


def _rows(f: TextIO, delimiter: str, file: Path) -> list[list[str]]:
    """The non-blank rows; a quote left open at the end of the file is an error naming the
    line it opens on (the csv module would read the rest of the file as one field)."""
    reader = csv.reader(f, delimiter=delimiter, strict=True)
    rows: list[list[str]] = []
    line = 0  # the last line of the rows read so far
    try:
        for r in reader:
            line = reader.line_num
            if any(c.strip() for c in r):
                rows.append(r)
    except csv.Error as e:
        if "unexpected end of data" not in str(e):  # a stray quote: read as the csv module does
            f.seek(0)
            return [r for r in csv.reader(f, delimiter=delimiter) if any(c.strip() for c in r)]
        raise DataError(
            f"{file}: the row that starts on line {line + 1} opens a quote that is never "
            "closed (the rest of the file would be one value); close it, or remove it"
        ) from None
    return rows


def _column(j: int, names: list[str] | None) -> str:
    return f"{j + 1} ({names[j]!r})" if names else str(j + 1)


def _numbers(
    file: Path,
    body: list[list[str]],
    cols: list[int],
    names: list[str] | None,
    first: int,
    dtype: Any,
) -> np.ndarray:
    """The given columns as a float array (rows, columns); a DataError naming the row and the
    column of the first cell that is not a finite number within the range of ``dtype``."""
    cells = np.array([[r[j].strip() for j in cols] for r in body], dtype=str)
    limit = float(np.finfo(dtype).max)
    remedy = "the features and a regression target must be numbers: fill in or remove the row"
    try:
        values = cells.astype(np.float64)
    except ValueError:
        values = None
    if values is not None:
        with np.errstate(invalid="ignore"):
            bad = ~(np.abs(values) <= limit)  # NaN and infinities too
        if not bad.any():
            return values
        i, k = np.argwhere(bad)[0]
        problem = f"{fmt(str(cells[i, k]))} is not a finite number (a missing or infinite value)"
        if np.isfinite(values[i, k]):
            problem = (
                f"{fmt(str(cells[i, k]))} is beyond the range of {np.dtype(dtype).name} "
                f"(magnitudes up to {limit:.3g}), which training uses"
            )
            remedy = "scale the column down" + (
                ", or set training.dtype: float64" if np.dtype(dtype) != np.float64 else ""
            )
    else:
        i, k = next(
            (i, k) for i, row in enumerate(cells) for k, c in enumerate(row) if not _is_number(c)
        )
        problem = "is empty" if cells[i, k] == "" else f"{fmt(str(cells[i, k]))} is not a number"
    raise DataError(
        f"{file}: row {i + first}, column {_column(cols[k], names)}: {problem}; {remedy}"
    )
