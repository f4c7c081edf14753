"""A run's metrics.csv: the log written a row per epoch (``MetricsLog``) and read back
(``read_metrics``, every row; ``read_last_metrics``, the header and the last row from the file's
two ends). Part of the run folder that ``nnlab.runs`` owns, which gives these names too; also
the text CSV files of a run (layers.csv).
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nnlab.errors import RunError
from nnlab.files import atomic_write

if TYPE_CHECKING:
    import pandas as pd


def number_text(x: Any) -> str:
    """A number as text that reads back to the same float (the shortest round trip); None as
    an empty cell."""
    if x is None:
        return ""
    if isinstance(x, int | np.integer):
        return str(int(x))
    return repr(float(x))


class MetricsLog:
    """metrics.csv: a header, then one row per epoch. A row is flushed to the file as it is
    written, except that epochs shorter than ``flush_every`` seconds (toy problems doing
    thousands of epochs a second) are flushed together at that interval."""

    def __init__(
        self, path: Path, columns: list[str], flush_every: float = 0.02, keep_rows: int = 0
    ):
        """Start a new log, or with ``keep_rows`` continue an existing one after its first
        ``keep_rows`` rows (the rest, written after the last checkpoint, are dropped)."""
        self.path = path
        self.columns = columns
        self.flush_every = flush_every
        kept = ""
        if keep_rows:
            lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
            if lines[0].strip().split(",") != columns or len(lines) - 1 < keep_rows:
                raise RunError(f"{path}: does not match the checkpoint; cannot resume")
            kept = "".join(lines[1 : keep_rows + 1])
        atomic_write(path, ",".join(columns) + "\n" + kept, durable=False)  # a log: never synced
        self._f = open(path, "a", newline="", encoding="utf-8")  # noqa: SIM115 (kept open)
        self._flushed = time.monotonic()

    def append(self, row: dict[str, Any]) -> None:
        cells = []
        for c in self.columns:
            v = row.get(c)
            cells.append(repr(v) if type(v) in (float, int) else number_text(v))
        self._f.write(",".join(cells) + "\n")
        now = time.monotonic()
        if now - self._flushed >= self.flush_every:
            self._f.flush()
            self._flushed = now

    def flush(self) -> None:
        self._f.flush()
        self._flushed = time.monotonic()

    def close(self) -> None:
        self._f.close()


def metrics_text(columns: list[str], values: np.ndarray) -> str:
    """Rows of metrics.csv as ``MetricsLog`` writes them, from a table ``values`` (rows,
    columns) of float64 (see ``metrics_texts``)."""
    return metrics_texts(columns, values[:, None, :], np.array([len(values)]))[0]


def metrics_texts(columns: list[str], values: np.ndarray, counts: np.ndarray) -> list[str]:
    """Rows of metrics.csv for many runs at once: ``values[e, m]`` is run m's row e (E, M,
    columns), its first ``counts[m]`` rows are its own. As ``MetricsLog`` writes them: the
    epoch as an integer, numbers as the shortest text that reads back to them, NaN in an
    accuracy column as an empty cell (no labelled sample: no accuracy). Values that repeat
    (epochs, learning rates, accuracies, times) are formatted once."""
    M = values.shape[1]
    cells = []
    for j, name in enumerate(columns):
        col = values[:, :, j].ravel().tolist()  # row-major: run m's rows at m, m + M, ...
        if name.endswith("loss"):
            cells.append(list(map(repr, col)))
            continue
        if name == "epoch":
            text = {v: str(int(v)) if v == v else "" for v in set(col)}
        else:
            empty = name.endswith("accuracy")
            text = {v: "" if (empty and v != v) else repr(v) for v in set(col)}
        cells.append(list(map(text.__getitem__, col)))
    rows = list(map(",".join, zip(*cells, strict=True)))  # every run's, interleaved
    return ["\n".join(rows[m : int(n) * M : M]) + "\n" if n else "" for m, n in enumerate(counts)]


@dataclass
class Metrics:
    """metrics.csv read back: ``values[i, j]`` is column ``columns[j]`` of epoch row ``i``
    (float64, NaN for an empty cell)."""

    columns: list[str]
    values: np.ndarray  # (rows, columns)

    def __len__(self) -> int:
        return self.values.shape[0]

    def rows(self) -> list[dict[str, float]]:
        """A dict per row (the epoch as an int)."""
        out = []
        for line in self.values.tolist():
            row = dict(zip(self.columns, line, strict=True))
            if "epoch" in row:
                row["epoch"] = int(row["epoch"])
            out.append(row)
        return out

    def column(self, name: str) -> np.ndarray:
        """The values of one column, (rows,)."""
        return self.values[:, self.columns.index(name)]

    def frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.values, columns=self.columns)


def complete_lines(text: str) -> list[str]:
    """The lines of a file that a writer finished (an unfinished last line, from a process
    killed mid-write, is left out)."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]
    return lines


def read_metrics(run: str | Path, missing_ok: bool = False) -> Metrics:
    """A run's metrics.csv (the one reader of it). A missing file is a RunError, or with
    ``missing_ok`` an empty table; a damaged one (not numbers, no ``epoch`` column, rows of the
    wrong length) is a RunError naming the file."""
    path = Path(run) / "metrics.csv"
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        if missing_ok:
            return Metrics([], np.empty((0, 0)))
        raise RunError(f"{run}: no metrics.csv") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RunError(f"{path}: damaged ({e})") from None
    return _parse_metrics(text[: text.rfind("\n") + 1], path)  # complete lines only


#: bytes read from each end of a metrics.csv by ``read_last_metrics``
ENDS = 1 << 16


def read_last_metrics(run: str | Path, missing_ok: bool = False) -> Metrics:
    """The header and the last complete row of a run's metrics.csv (``values``: (0 or 1,
    columns)), reading only the file's two ends: what a reader that takes a finished run's
    last and best values from its summary needs (a log of millions of epochs stays on disk).
    Missing or damaged as for ``read_metrics``."""
    path = Path(run) / "metrics.csv"
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = tail = f.read(ENDS)
            if size > ENDS:
                f.seek(size - ENDS)
                tail = f.read(ENDS)
    except FileNotFoundError:
        if missing_ok:
            return Metrics([], np.empty((0, 0)))
        raise RunError(f"{run}: no metrics.csv") from None
    except OSError as e:
        raise RunError(f"{path}: damaged ({e})") from None
    header_end, end = head.find(b"\n"), tail.rfind(b"\n")
    start = tail.rfind(b"\n", 0, max(end, 0)) + 1  # of the last complete line
    if header_end < 0 or (size > ENDS and start == 0):  # a line longer than ENDS
        whole = read_metrics(run, missing_ok)
        return Metrics(whole.columns, whole.values[-1:])
    last = tail[start : end + 1] if size > ENDS or start > header_end else b""
    try:
        text = (head[: header_end + 1] + last).decode("utf-8")
    except UnicodeDecodeError as e:
        raise RunError(f"{path}: damaged ({e})") from None
    return _parse_metrics(text, path)


def last_epoch(metrics: Metrics) -> int:
    """The epoch of the last row (0 for none): the epochs a run's log counts, also when it
    writes every k-th row (``training.log_every``)."""
    if not len(metrics) or "epoch" not in metrics.columns:
        return 0
    epoch = metrics.column("epoch")[-1]
    return int(epoch) if math.isfinite(epoch) else 0


def _parse_metrics(text: str, path: Path) -> Metrics:
    """Complete lines of a metrics.csv -> Metrics; numbers by NumPy's C parser, with the
    careful reader (which names what is wrong) for anything it does not take."""
    header, _, body = text.partition("\n")
    if not header.strip():
        return Metrics([], np.empty((0, 0)))
    columns = next(csv.reader([header]))
    if "epoch" not in columns:
        raise RunError(f"{path}: damaged (no 'epoch' column)")
    if not body.strip():
        return Metrics(columns, np.empty((0, len(columns))))
    try:
        values = np.loadtxt(
            io.StringIO(body), delimiter=",", comments=None, ndmin=2, dtype=np.float64
        )
        if values.shape[1] == len(columns):
            return Metrics(columns, values)
    except ValueError:
        pass
    return Metrics(columns, _careful_rows(body, len(columns), path))


def _careful_rows(body: str, width: int, path: Path) -> np.ndarray:
    """Rows cell by cell: empty cells are NaN, anything else not a number is a RunError."""
    try:
        rows = [
            [float(v) if v != "" else math.nan for v in r]
            for r in csv.reader(body.splitlines())
            if r
        ]
    except ValueError as e:
        raise RunError(f"{path}: damaged ({e})") from None
    if any(len(r) != width for r in rows):
        raise RunError(f"{path}: damaged (a row without {width} values)")
    return np.array(rows, dtype=np.float64).reshape(len(rows), width)


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """The complete rows of a CSV file of a run (``layers.csv``), as text."""
    return list(csv.DictReader(complete_lines(path.read_text(encoding="utf-8"))))


def rewrite_csv(path: Path, columns: list[str], rows: list[dict[str, str]]) -> None:
    """Write a CSV file atomically: a header and rows (values as they are)."""
    body = "".join(",".join(r.get(c, "") or "" for c in columns) + "\n" for r in rows)
    atomic_write(path, ",".join(columns) + "\n" + body)
