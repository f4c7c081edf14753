"""A run's metrics.csv: the log written a row per epoch (``MetricsLog``) and read back
(``read_metrics``, every row; ``read_last_metrics``, the header and the last row from the
file's two ends; ``rows_before``, the rows up to a checkpoint, in blocks, for resume). Every
reader checks what it reads: a damaged file is a RunError naming it. Part of the run folder
that ``nnlab.runs`` owns, which gives these names too; also where a resumed run continues its
other logs (layers.csv: ``log_size_before``).
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from nnlab.errors import RunError, StorageError
from nnlab.files import atomic_write, open_log, open_regular
from nnlab.metrics import MetricsTally
from nnlab.runcheck import reason

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
        self,
        path: Path,
        columns: list[str],
        flush_every: float = 0.02,
        keep_bytes: int | None = None,
    ):
        """Start a new log, or with ``keep_bytes`` continue an existing one after its first
        ``keep_bytes`` bytes, cut there in place (the header and the rows up to the last
        checkpoint, as ``rows_before`` finds them; the rest are dropped). The file is never
        opened through a symbolic link. A write that fails is a ``StorageError`` naming it."""
        self.path = path
        self.columns = columns
        self.flush_every = flush_every
        if keep_bytes is None:
            header = ",".join(columns) + "\n"
            atomic_write(path, header, durable=False)  # a log: never synced
            keep_bytes = len(header)
        self._f = open_log(path, keep_bytes)
        self._flushed = time.monotonic()
        self.size = keep_bytes  # bytes written (the text is ASCII)
        self.checkpointed = keep_bytes  # ... up to the last checkpoint saved (set by its saver)

    def append(self, row: dict[str, Any]) -> None:
        cells = []
        for c in self.columns:
            v = row.get(c)
            cells.append(repr(v) if type(v) in (float, int) else number_text(v))
        line = ",".join(cells) + "\n"
        self.size += len(line)
        try:
            self._f.write(line)
            now = time.monotonic()
            if now - self._flushed >= self.flush_every:
                self._f.flush()
                self._flushed = now
        except OSError as e:
            raise StorageError(e, self.path) from None

    def flush(self) -> None:
        try:
            self._f.flush()
        except OSError as e:
            raise StorageError(e, self.path) from None
        self._flushed = time.monotonic()

    def close(self) -> None:
        """Flush the rows and close; a failure (a full disk) is a ``StorageError``."""
        try:
            self._f.close()
        except OSError as e:
            raise StorageError(e, self.path) from None

    def abandon(self, free_space: bool = False) -> None:
        """Close without raising, after another error: rows not yet on disk may be lost (a
        resume drops them anyway, as it drops every row after its checkpoint). With
        ``free_space`` (the disk is full), the rows after the last checkpoint are cut off
        too, which makes room to record how the run ended."""
        with contextlib.suppress(OSError):
            self._f.close()
        if free_space:
            with contextlib.suppress(OSError), open_log(self.path, self.checkpointed):
                pass


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


def read_metrics(run: str | Path, missing_ok: bool = False) -> Metrics:
    """A run's metrics.csv (the one reader of it), its complete lines. A missing file is a
    RunError, or with ``missing_ok`` an empty table; a damaged one (not numbers, no ``epoch``
    column, rows of the wrong length, epochs not counting up) is a RunError naming the file.
    The text is parsed in blocks of ``BLOCK_BYTES``: what it holds is the numbers (a 100 MB
    log of 1.2 million rows takes about 150 MB, not the 700 MB of the text parsed whole)."""
    path = Path(run) / "metrics.csv"
    try:
        with open_regular(path) as f:
            header = f.readline(MAX_LINE + 1)
            if not header.endswith(b"\n") or not header.strip():
                if len(header) > MAX_LINE:
                    raise RunError(f"{path}: damaged (a line longer than {MAX_LINE} bytes)")
                return Metrics([], np.empty((0, 0)))  # no header written yet
            columns = _columns(header.decode("utf-8"), path)
            blocks = [
                parse_rows(block.decode("utf-8"), len(columns), path)
                for block in _line_blocks(f, math.inf, path)
            ]
    except FileNotFoundError:
        if missing_ok:
            return Metrics([], np.empty((0, 0)))
        raise RunError(f"{run}: no metrics.csv") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RunError(f"{path}: damaged ({reason(e)})") from None
    values = np.concatenate(blocks) if blocks else np.empty((0, len(columns)))
    _check_epochs(values[:, columns.index("epoch")], path)
    return Metrics(columns, values)


#: bytes read from each end of a metrics.csv by ``read_last_metrics``
ENDS = 1 << 16


def read_last_metrics(run: str | Path, missing_ok: bool = False) -> Metrics:
    """The header and the last complete row of a run's metrics.csv (``values``: (0 or 1,
    columns)), reading only the file's two ends: what a reader that takes a finished run's
    last and best values from its summary needs (a log of millions of epochs stays on disk).
    Missing or damaged as for ``read_metrics``."""
    path = Path(run) / "metrics.csv"
    try:
        with open_regular(path) as f:
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
        raise RunError(f"{path}: damaged ({reason(e)})") from None
    header_end, end = head.find(b"\n"), tail.rfind(b"\n")
    start = tail.rfind(b"\n", 0, max(end, 0)) + 1  # of the last complete line
    if header_end < 0 or (size > ENDS and start == 0):  # a line longer than ENDS
        whole = read_metrics(run, missing_ok)
        return Metrics(whole.columns, whole.values[-1:])
    last = tail[start : end + 1] if size > ENDS or start > header_end else b""
    try:
        text = (head[: header_end + 1] + last).decode("utf-8")
    except UnicodeDecodeError as e:
        raise RunError(f"{path}: damaged ({reason(e)})") from None
    return _parse_metrics(text, path)


def last_epoch(metrics: Metrics) -> int:
    """The epoch of the last row (0 for none): the epochs a run's log counts, also when it
    writes every k-th row (``training.log_every``)."""
    if not len(metrics) or "epoch" not in metrics.columns:
        return 0
    epoch = metrics.column("epoch")[-1]
    return int(epoch) if math.isfinite(epoch) else 0


def _parse_metrics(text: str, path: Path) -> Metrics:
    """Complete lines of a metrics.csv -> Metrics, its epochs checked: whole numbers >= 1
    counting up (every epoch's, or every k-th and the last)."""
    header, _, body = text.partition("\n")
    if not header.strip():
        return Metrics([], np.empty((0, 0)))
    columns = _columns(header, path)
    values = parse_rows(body, len(columns), path)
    _check_epochs(values[:, columns.index("epoch")], path)
    return Metrics(columns, values)


def _columns(header: str, path: Path) -> list[str]:
    columns = next(csv.reader([header]))
    if "epoch" not in columns:
        raise RunError(f"{path}: damaged (no 'epoch' column)")
    return columns


def _check_epochs(epochs: np.ndarray, path: Path) -> None:
    if len(epochs) and not (
        np.all(epochs >= 1) and np.all(epochs == np.round(epochs)) and np.all(np.diff(epochs) > 0)
    ):
        raise RunError(f"{path}: damaged (its epochs are not whole numbers counting up)")


def parse_rows(body: str, width: int, path: Path) -> np.ndarray:
    """Rows of metrics.csv (complete lines) as numbers, (rows, width): an empty cell is NaN,
    anything else not a number, or a row without ``width`` cells, a RunError naming the file.
    NumPy's C reader takes well-formed rows; the careful one below says what is wrong."""
    if not body or body.isspace():
        return np.empty((0, width))
    try:
        values = np.loadtxt(
            io.StringIO(body), delimiter=",", comments=None, ndmin=2, dtype=np.float64
        )
        if values.shape[1] == width:
            return values
    except ValueError:
        pass
    try:
        cells = (row for row in csv.reader(body.splitlines()) if row)
        rows = [[float(v) if v != "" else math.nan for v in row] for row in cells]
    except ValueError as e:
        raise RunError(f"{path}: damaged ({reason(e)})") from None
    if any(len(r) != width for r in rows):
        raise RunError(f"{path}: damaged (a row without {width} values)")
    return np.array(rows, dtype=np.float64).reshape(len(rows), width)


#: bytes of metrics.csv read at a time by ``rows_before``, and the longest line it reads
BLOCK_BYTES = 1 << 20
MAX_LINE = 1 << 16


def rows_before(
    run: str | Path, columns: list[str], epochs: int, every: int = 1
) -> tuple[int, MetricsTally]:
    """Where a resumed run continues its metrics.csv: the length in bytes of the header and
    the rows an uninterrupted run has written by the end of epoch ``epochs`` (its checkpoint's;
    every ``every``-th epoch's row, ``training.log_every``), and the tally (best and last) of
    those rows. The last row of a session that ended between two every-th epochs is not among
    them. The file is read in blocks of ``BLOCK_BYTES``: a log of millions of epochs is never
    held whole. A RunError names the file when its header is not ``columns`` or its first
    rows are not those of epochs ``every``, 2 ``every``, ... up to ``epochs``."""
    path = Path(run) / "metrics.csv"
    tally, n = MetricsTally(), epochs // every
    try:
        with open_regular(path, follow=False) as f:
            header = f.readline(MAX_LINE)
            if header.decode("utf-8", "replace").rstrip("\r\n").split(",") != columns:
                what = "it is empty" if not header else "its columns are not this run's"
                raise RunError(f"{path}: {what} ({','.join(columns)}); cannot resume")
            size = len(header)
            for block in _line_blocks(f, n, path):
                values = parse_rows(block.decode("utf-8", "replace"), len(columns), path)
                count = block.count(b"\n")
                expected = every * np.arange(tally.count + 1, tally.count + count + 1)
                if not np.array_equal(values[:, columns.index("epoch")], expected):
                    which = "1, 2, 3" if every == 1 else f"{every}, {2 * every}, {3 * every}"
                    raise RunError(f"{path}: damaged (its rows are not epochs {which}, ...)")
                tally.add_block(columns, values)
                size += len(block)
    except FileNotFoundError:
        raise RunError(f"{run}: no metrics.csv; cannot resume") from None
    except StorageError:  # a link, not to be written through
        raise
    except OSError as e:
        raise RunError(f"{path}: cannot read it ({reason(e)})") from None
    if tally.count < n:
        raise RunError(
            f"{path}: holds {tally.count} rows, fewer than the {n} the checkpoint (epoch "
            f"{epochs}) counts; cannot resume"
        )
    return size, tally


def _line_blocks(f: BinaryIO, n: float, path: Path) -> Iterator[bytes]:
    """The next ``n`` complete lines of a binary file (fewer if it ends first, all of them
    with ``math.inf``; an unfinished last line is left), in blocks of about ``BLOCK_BYTES``."""
    carry = b""
    while n > 0:
        chunk = f.read(BLOCK_BYTES)
        data = carry + chunk if carry else chunk
        end = data.rfind(b"\n") + 1
        if end == 0:
            if len(data) > MAX_LINE:
                raise RunError(f"{path}: damaged (a line longer than {MAX_LINE} bytes)")
            if not chunk:
                return
            carry = data
            continue
        block, carry = data[:end], data[end:]
        count = block.count(b"\n")
        if count > n:
            block, count = block[: _after_lines(block, int(n))], n
        n -= count
        yield block


def log_size_before(path: Path, columns: list[str], epochs: int) -> int | None:
    """Where a resumed run continues a log whose first column is the epoch and which may hold
    several rows per epoch (layers.csv): the bytes of its header and of its rows of epochs up
    to ``epochs``, read in blocks; None when there is no such file (it starts anew). A
    RunError names the file when its header is not ``columns`` or its epochs are not whole
    numbers counting up."""
    try:
        with open_regular(path, follow=False) as f:
            header = f.readline(MAX_LINE)
            if header.decode("utf-8", "replace").rstrip("\r\n").split(",") != columns:
                raise RunError(f"{path}: damaged (its columns are not nnlab's); cannot resume")
            size, last = len(header), 0
            for block in _line_blocks(f, math.inf, path):
                seen = _epochs(block, path)
                if seen[0] < last or np.any(np.diff(seen) < 0):
                    raise RunError(f"{path}: damaged (its epochs do not count up); cannot resume")
                n = int(np.searchsorted(seen, epochs, side="right"))
                if n < len(seen):  # the rows of later epochs start in this block
                    return size + _after_lines(block, n)
                size, last = size + len(block), seen[-1]
            return size
    except FileNotFoundError:
        return None
    except StorageError:  # a link, not to be written through
        raise
    except OSError as e:
        raise RunError(f"{path}: cannot read it ({reason(e)})") from None


def _after_lines(block: bytes, n: int) -> int:
    """The length in bytes of the first ``n`` lines of ``block``."""
    end = -1
    for _ in range(n):
        end = block.index(b"\n", end + 1)
    return end + 1


def _epochs(block: bytes, path: Path) -> np.ndarray:
    """The first column of complete CSV lines, as whole numbers >= 0, (lines,)."""
    try:
        text = io.StringIO(block.decode("utf-8"))
        epochs = np.loadtxt(text, delimiter=",", usecols=0, dtype=np.int64, ndmin=1, comments=None)
    except (ValueError, UnicodeDecodeError) as e:
        raise RunError(f"{path}: damaged ({reason(e)}); cannot resume") from None
    if len(epochs) != block.count(b"\n") or np.any(epochs < 0):
        raise RunError(f"{path}: damaged (a row without an epoch); cannot resume")
    return epochs
