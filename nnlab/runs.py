"""The run folder: written as a run goes, read back by compare, predict and export.

A run folder holds ``config.yaml`` (the resolved config), ``metrics.csv`` (a row per epoch,
flushed as it is written), ``summary.json`` (status, last/best/test metrics, timing, versions)
and ``model.npz`` (the weights with the architecture beside them). Every file but the metrics
log is written atomically: a temporary file, then a rename, so a killed run never leaves half a
file behind.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from nnlab.errors import RunError

MODEL_FORMAT = "nnlab-model/1"
RUN_FILES = ("config.yaml", "metrics.csv", "summary.json", "model.npz")
STATUSES = ("running", "completed", "diverged", "failed", "interrupted")


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write a file so that it is either the old or the whole new content, never a part."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(tmp, mode, **({} if isinstance(data, bytes) else {"encoding": "utf-8"})) as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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


def fmt_number(x: Any) -> str:
    """A metric as text that reads back to the same float (shortest round trip)."""
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
            cells.append(repr(v) if type(v) in (float, int) else fmt_number(v))
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


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """The complete rows of a CSV file (an unfinished last line is left out), as text."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]
    return list(csv.DictReader(lines))


def rewrite_csv(path: Path, columns: list[str], rows: list[dict[str, str]]) -> None:
    """Write a CSV file atomically: a header and rows (values as they are)."""
    body = "".join(",".join(r.get(c, "") or "" for c in columns) + "\n" for r in rows)
    atomic_write(path, ",".join(columns) + "\n" + body)


def write_json(path: Path, data: dict) -> None:
    atomic_write(path, json.dumps(_jsonable(data), indent=2, allow_nan=False) + "\n")


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, float | np.floating):
        x = float(x)
        return x if math.isfinite(x) else str(x)  # NaN/inf as text: JSON has no NaN
    return x


def save_model(path: Path, model: Any, meta: dict) -> None:
    """Weights and the architecture (``meta``: model spec, input shape, scaling, ...)."""
    arrays = {f"param/{k}": v for k, v in model.state_dict().items()}
    for key in ("shift", "scale"):
        arrays[f"input/{key}"] = np.asarray(meta.get(key, 0.0 if key == "shift" else 1.0))
    header = {k: v for k, v in meta.items() if k not in ("shift", "scale")}
    header["format"] = MODEL_FORMAT
    arrays["architecture"] = np.frombuffer(json.dumps(_jsonable(header)).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write(path, buf.getvalue())


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
    """Rebuild a trained model from a run folder (or a model.npz): (model, meta)."""
    from nnlab.nn import Model

    path = Path(run)
    if path.is_dir():
        path = path / "model.npz"
    meta, params = read_model_file(path)
    model = Model.from_spec(
        meta["model"], tuple(meta["input_shape"]), np.random.default_rng(0), meta["dtype"]
    )
    model.load_state_dict(params)
    return model, meta


CHECKPOINT = "checkpoint.npz"
CHECKPOINT_FORMAT = "nnlab-checkpoint/1"


def save_checkpoint(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """The training state at an epoch's end, written atomically (see ``Trainer.state``)."""
    header = {"format": CHECKPOINT_FORMAT, **meta}
    buf = io.BytesIO()
    np.savez(buf, **arrays, meta=np.frombuffer(json.dumps(_jsonable(header)).encode(), np.uint8))
    atomic_write(path, buf.getvalue())


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


def read_summary(run: str | Path) -> dict:
    path = Path(run) / "summary.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{run}: not a run folder (no summary.json)") from None
    except (OSError, ValueError) as e:
        raise RunError(f"{path}: damaged ({e})") from None


def read_metrics(run: str | Path) -> list[dict[str, float]]:
    """The rows of metrics.csv as dicts of floats (an unfinished last line is skipped)."""
    path = Path(run) / "metrics.csv"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunError(f"{run}: no metrics.csv") from None
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]  # a run killed mid-write
    rows = []
    for row in csv.DictReader(lines):
        rows.append({k: (float(v) if v not in ("", None) else math.nan) for k, v in row.items()})
    return rows
