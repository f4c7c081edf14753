"""The run folder: its one owner. Everything that writes or reads a run's files goes through here.

A run folder holds ``config.yaml`` (the resolved config), ``metrics.csv`` (a row per epoch,
flushed as it is written), ``summary.json`` (status, last/best/test metrics, timing, versions),
``model.npz`` (the weights with the architecture beside them) and, while training,
``checkpoint.npz``. Every file but the metrics log is written atomically (``files.atomic_write``),
so a killed run never leaves half a file behind.

A run's status is one of ``Status``; a run whose summary says running but whose process is gone
is ``killed`` (``run_status``), and that is the only place liveness is decided.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import math
import os
import re
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nnlab.errors import ConfigError, RunError
from nnlab.files import atomic_write, atomic_write_many, json_text, jsonable

if TYPE_CHECKING:
    import pandas as pd

MODEL_FORMAT = "nnlab-model/1"
CHECKPOINT = "checkpoint.npz"
CHECKPOINT_FORMAT = "nnlab-checkpoint/1"
RUN_FILES = ("config.yaml", "metrics.csv", "summary.json", "model.npz")


class Status(StrEnum):
    """How a run stands. A run's summary.json holds one of the first five; ``killed`` is what a
    reader concludes when a run says running and its process is gone."""

    RUNNING = "running"
    COMPLETED = "completed"
    DIVERGED = "diverged"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    KILLED = "killed"


STATUSES = tuple(s.value for s in Status if s is not Status.KILLED)
#: a run that ended this way ends the same way again: nothing to resume or rerun
DONE = (Status.COMPLETED, Status.DIVERGED)


def now() -> str:
    """The local time as ISO 8601 with its offset, to the second (the times summaries hold)."""
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


# ---------------------------------------------------------------- folders


def safe_name(name: str) -> str:
    """A run name usable as one folder name: no separators, no '..', nothing hidden."""
    cleaned = re.sub(r"[^A-Za-z0-9_.+=-]+", "-", name).strip(".-") or "run"
    return re.sub(r"\.{2,}", ".", cleaned)[:80]


def make_dir(path: Path, what: str) -> None:
    """``mkdir -p``, or a RunError naming the folder and why it cannot be made."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"{path}: cannot create {what} ({e.strerror or e})") from None


def new_run_dir(runs_dir: str | Path, name: str) -> Path:
    """Create ``runs_dir/<name>-<timestamp>[-n]``, never reusing a folder."""
    root = Path(runs_dir)
    make_dir(root, "the runs folder")
    stem = f"{safe_name(name)}-{time.strftime('%Y%m%d-%H%M%S')}"
    for n in range(1000):
        path = root / (stem if n == 0 else f"{stem}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        except OSError as e:
            raise RunError(f"{path}: cannot create the run folder ({e.strerror or e})") from None
        return path
    raise RunError(f"{root}: could not create a new run folder named {stem}")


def is_run(path: Path) -> bool:
    return (path / "summary.json").is_file()


def _natural(path: Path) -> list:
    """Sort key: ``trials/999-x`` before ``trials/1000-y``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _damaged_run(path: Path) -> bool:
    """A folder with a run's files but no summary.json."""
    return (path / "config.yaml").exists() or (path / "metrics.csv").exists()


def runs_under(folder: Path, warn: Callable[[str], None] | None = None) -> list[Path]:
    """The run folders under ``folder`` (any depth: sweeps, their trials, folders of sweeps),
    in natural order of their names; hidden folders are not searched. Folders with a run's
    files but no summary.json are reported through ``warn``."""
    out: list[Path] = []
    try:
        children = sorted((c for c in folder.iterdir() if c.is_dir()), key=_natural)
    except OSError:
        return out
    for child in children:
        if child.name.startswith(".") or child.is_symlink():
            continue
        if is_run(child):
            out.append(child)
        elif _damaged_run(child):
            if warn is not None:
                warn(f"{child}: damaged run (no summary.json); skipped")
        else:
            out += runs_under(child, warn)
    return out


def find_runs(paths: Iterable[str | Path], warn: Callable[[str], None]) -> list[Path]:
    """The run folders among ``paths``: a run folder itself, or every run under a folder (a
    sweep, a folder of sweeps, the whole runs folder); what holds none is reported through
    ``warn``. Each run once, in the order given."""
    out: list[Path] = []
    for given in paths:
        p = Path(given)
        if is_run(p):
            out.append(p)
        elif not p.exists():
            warn(f"{p}: no such file or folder; skipped")
        elif not p.is_dir():
            warn(f"{p}: not a run folder; skipped")
        elif _damaged_run(p):
            warn(f"{p}: damaged run (no summary.json); skipped")
        elif found := runs_under(p, warn):
            out += found
        else:
            warn(f"{p}: not a run folder, and no run folders under it; skipped")
    seen: set[Path] = set()
    unique = []
    for p in out:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


# ---------------------------------------------------------------- config and summary


def config_text(config: dict) -> str:
    """config.yaml's text."""
    from nnlab.config import dump_yaml

    return dump_yaml(config)


def write_config(run: Path, config: dict) -> None:
    atomic_write(Path(run) / "config.yaml", config_text(config))


def read_config(run: str | Path) -> dict:
    """The config a run folder holds, as written (not validated again)."""
    from nnlab.config import parse_yaml

    path = Path(run) / "config.yaml"
    try:
        config = parse_yaml(path.read_text(encoding="utf-8"), str(path))
    except FileNotFoundError:
        raise RunError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, ConfigError) as e:
        reason = e.detail if isinstance(e, ConfigError) else e
        raise RunError(f"{path}: damaged ({reason})") from None
    if not isinstance(config, dict):
        raise RunError(f"{path}: damaged (not a mapping)")
    return config


def summary_text(summary: dict) -> str:
    """summary.json's text."""
    return json_text(summary) + "\n"


def write_summary(run: Path, summary: dict) -> None:
    atomic_write(Path(run) / "summary.json", summary_text(summary))


def write_run_files(files: dict[Path, str | bytes]) -> None:
    """Write files of many runs at once (path -> text or bytes), each atomically, with one
    flush to disk for all of them (``files.atomic_write_many``)."""
    atomic_write_many(files.items())


def read_summary(run: str | Path) -> dict:
    """A run's summary.json; a RunError when it is missing, unreadable or not a summary."""
    path = Path(run) / "summary.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{run}: not a run folder (no summary.json)") from None
    except (OSError, ValueError, RecursionError) as e:
        raise RunError(f"{path}: damaged ({e})") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("status"), str):
        raise RunError(f"{path}: damaged (not an nnlab summary)")
    return summary


def run_status(summary: dict) -> str:
    """The summary's status; a run that says running but whose process on this host is gone
    (or whose pid now belongs to a process that started after the run) was killed: SIGKILL,
    out of memory, a power cut."""
    status = str(summary.get("status", "unknown"))
    if status != Status.RUNNING or summary.get("host") != socket.gethostname():
        return status
    pid = summary.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool):
        return status
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return Status.KILLED
    except (PermissionError, OverflowError, ValueError):
        return status
    began, started = process_start(pid), summary.get("started")
    if began is not None and isinstance(started, str):
        try:
            if began > _dt.datetime.fromisoformat(started).timestamp() + 2:
                return Status.KILLED
        except ValueError:
            pass
    return status


def alive(summary: dict) -> bool:
    """Whether the run a summary describes is being trained by a live process right now."""
    return summary.get("status") == Status.RUNNING and run_status(summary) == Status.RUNNING


def process_start(pid: int) -> float | None:
    """When a process started (seconds since the epoch), from /proc on Linux; else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat[stat.rindex(")") + 2 :].split()[19])  # field 22, starttime
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def mark_ended(run: Path, status: str, error: str | None) -> None:
    """Record how a run whose process died ended (its summary still says running): the status,
    the epochs its metrics log holds, the error. Nothing happens to a run that is not running
    or cannot be read."""
    try:
        summary = read_summary(run)
    except RunError:
        return
    if summary.get("status") != Status.RUNNING:
        return
    try:
        epochs = len(read_metrics(run))
    except RunError:
        epochs = 0
    summary.update(status=status, epochs_completed=epochs, finished=now())
    if error:
        summary["error"] = error
    write_summary(run, summary)


# ---------------------------------------------------------------- metrics.csv


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
        atomic_write(path, ",".join(columns) + "\n" + kept)
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
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if missing_ok:
            return Metrics([], np.empty((0, 0)))
        raise RunError(f"{run}: no metrics.csv") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RunError(f"{path}: damaged ({e})") from None
    lines = complete_lines(text)
    if not lines or not lines[0].strip():
        return Metrics([], np.empty((0, 0)))
    reader = csv.reader(lines)
    columns = next(reader)
    if "epoch" not in columns:
        raise RunError(f"{path}: damaged (no 'epoch' column)")
    try:
        rows = [[float(v) if v != "" else math.nan for v in row] for row in reader if row]
    except ValueError as e:
        raise RunError(f"{path}: damaged ({e})") from None
    if any(len(r) != len(columns) for r in rows):
        raise RunError(f"{path}: damaged (a row without {len(columns)} values)")
    values = np.array(rows, dtype=np.float64).reshape(len(rows), len(columns))
    return Metrics(columns, values)


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """The complete rows of a CSV file of a run (``layers.csv``), as text."""
    return list(csv.DictReader(complete_lines(path.read_text(encoding="utf-8"))))


def rewrite_csv(path: Path, columns: list[str], rows: list[dict[str, str]]) -> None:
    """Write a CSV file atomically: a header and rows (values as they are)."""
    body = "".join(",".join(r.get(c, "") or "" for c in columns) + "\n" for r in rows)
    atomic_write(path, ",".join(columns) + "\n" + body)


# ---------------------------------------------------------------- model and checkpoint


def _json_bytes(header: dict) -> np.ndarray:
    return np.frombuffer(json.dumps(jsonable(header)).encode(), dtype=np.uint8)


def save_model(path: Path, model: Any, meta: dict) -> None:
    """Weights and the architecture (``meta``: model spec, input shape, scaling, ...)."""
    atomic_write(path, model_bytes(model, meta))


def model_bytes(model: Any, meta: dict) -> bytes:
    """model.npz's bytes (see ``save_model``)."""
    arrays = {f"param/{k}": v for k, v in model.state_dict().items()}
    for key in ("shift", "scale"):
        arrays[f"input/{key}"] = np.asarray(meta.get(key, 0.0 if key == "shift" else 1.0))
    header = {k: v for k, v in meta.items() if k not in ("shift", "scale")}
    header["format"] = MODEL_FORMAT
    arrays["architecture"] = _json_bytes(header)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def read_model_file(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, params) from a model.npz."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["architecture"]).decode())
            params = {k[len("param/") :]: z[k] for k in z.files if k.startswith("param/")}
            meta["shift"] = z["input/shift"]
            meta["scale"] = z["input/scale"]
    except FileNotFoundError:
        raise RunError(f"{path}: no such file; the run has no saved model") from None
    except (OSError, ValueError, KeyError) as e:
        raise RunError(f"{path}: not a readable nnlab model ({e})") from None
    if meta.get("format") != MODEL_FORMAT:
        raise RunError(f"{path}: unknown model format {meta.get('format')!r}")
    return meta, params


def load_model(run: str | Path) -> tuple[Any, dict]:
    """Rebuild a trained model from a run folder (or a model.npz): (model, meta), with the run
    folder's name as ``meta["run"]``."""
    from nnlab.nn import Model

    path = Path(run)
    if not path.exists():
        raise RunError(f"{run}: no such run folder or model file")
    meta, params = read_model_file(path / "model.npz" if path.is_dir() else path)
    meta["run"] = (path if path.is_dir() else path.parent).resolve().name
    model = Model.from_spec(
        meta["model"], tuple(meta["input_shape"]), np.random.default_rng(0), meta["dtype"]
    )
    model.load_state_dict(params)
    return model, meta


def save_checkpoint(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """The training state at an epoch's end, written atomically (see ``Trainer.state``)."""
    atomic_write(path, checkpoint_bytes(arrays, meta))


def checkpoint_bytes(arrays: dict[str, np.ndarray], meta: dict) -> bytes:
    """checkpoint.npz's bytes (see ``save_checkpoint``)."""
    header = {"format": CHECKPOINT_FORMAT, **meta}
    buf = io.BytesIO()
    np.savez(buf, **arrays, meta=_json_bytes(header))
    return buf.getvalue()


def read_checkpoint(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            arrays = {k: z[k] for k in z.files if k != "meta"}
    except (OSError, ValueError, KeyError) as e:
        raise RunError(f"{path}: not a readable checkpoint ({e})") from None
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise RunError(f"{path}: unknown checkpoint format {meta.get('format')!r}")
    return arrays, meta
