"""The run folder: its one owner. Everything that writes or reads a run's files goes through here.

A run folder holds ``config.yaml`` (the resolved config), ``metrics.csv`` (a row per epoch,
flushed as it is written), ``summary.json`` (status, last/best/test metrics, timing, versions),
``model.npz`` (the weights with the architecture beside them) and, while training,
``checkpoint.npz``. Every file but the metrics log is written atomically (``files.atomic_write``),
so a killed run never leaves half a file behind. The metrics log's own code is in
``nnlab.metrics_csv``; its names are given here too. What each file must hold is checked as it
is read (``nnlab.runcheck``).

A run's status is one of ``Status``; a run whose summary says running but whose process is gone
is ``killed`` (``run_status``), and that is the only place liveness is decided.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import re
import socket
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from nnlab.errors import ConfigError, RunError, StorageError
from nnlab.files import (
    atomic_write,
    atomic_write_many,
    json_text,
    jsonable,
    open_regular,
    write_json,
)
from nnlab.metrics_csv import ENDS as ENDS
from nnlab.metrics_csv import Metrics as Metrics
from nnlab.metrics_csv import MetricsLog as MetricsLog
from nnlab.metrics_csv import last_epoch as last_epoch
from nnlab.metrics_csv import log_size_before as log_size_before
from nnlab.metrics_csv import metrics_text as metrics_text
from nnlab.metrics_csv import metrics_texts as metrics_texts
from nnlab.metrics_csv import number_text as number_text
from nnlab.metrics_csv import read_last_metrics as read_last_metrics
from nnlab.metrics_csv import read_metrics as read_metrics
from nnlab.metrics_csv import rows_before as rows_before
from nnlab.runcheck import (
    check_arrays,
    check_checkpoint,
    check_heads,
    check_input_scaling,
    check_model_meta,
    check_summary,
    reason,
)

MODEL_FORMAT = "nnlab-model/1"
CHECKPOINT = "checkpoint.npz"
CHECKPOINT_FORMAT = "nnlab-checkpoint/1"
RUN_FILES = ("config.yaml", "metrics.csv", "summary.json", "model.npz")
#: larger than any summary.json or config.yaml nnlab writes (a few kilobytes): not read
MAX_TEXT_FILE = 8 << 20
#: what reading a damaged .npz can raise (zip, npy and JSON parts, a header that claims more
#: memory than there is)
NPZ_ERRORS = (
    OSError,
    ValueError,
    KeyError,
    EOFError,
    zipfile.BadZipFile,
    zlib.error,
    RecursionError,
    MemoryError,
)


class Status(StrEnum):
    """How a run stands. A run's summary.json holds one of the first six; ``killed`` is what a
    reader concludes when a run says running and its process is gone. ``pruned``: a search
    stopped the run early as hopeless (a result, with the epochs it ran)."""

    RUNNING = "running"
    COMPLETED = "completed"
    DIVERGED = "diverged"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    PRUNED = "pruned"
    KILLED = "killed"


STATUSES = tuple(s.value for s in Status if s is not Status.KILLED)
#: a run that ended this way ends the same way again: nothing to resume or rerun
DONE = (Status.COMPLETED, Status.DIVERGED, Status.PRUNED)


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
        raise StorageError(e, path, f"create {what}") from None


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
            raise StorageError(e, path, "create the run folder") from None
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
        with os.scandir(folder) as entries:
            names = [
                e.name
                for e in entries
                if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)
            ]
    except OSError:
        return out
    for child in sorted((folder / n for n in names), key=_natural):
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
    paths = list(paths)
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
    if len(paths) == 1:
        return out  # the runs under one folder are each there once (links are not followed)
    seen: set[Path] = set()
    unique = []
    for p in out:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


# ---------------------------------------------------------------- reading


def read_small_file(path: Path, limit: int = MAX_TEXT_FILE) -> bytes:
    """A run's small file (summary.json, config.yaml), at most ``limit`` bytes; missing:
    FileNotFoundError; larger or unreadable: a RunError naming it."""
    with open_regular(path) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise RunError(f"{path}: damaged (larger than {limit >> 20} MB; nnlab writes kilobytes)")
    return data


# ---------------------------------------------------------------- config and summary


def config_text(config: dict) -> tuple[bytes, dict[str, Any]]:
    """config.yaml's bytes, and what summary.json keeps of it: a copy of the config and the
    digest of the file's text, so that a reader of thousands of runs can take the copy
    instead of parsing YAML, as long as the file is unchanged (``read_config``)."""
    from nnlab.config import dump_yaml

    data = dump_yaml(config).encode("utf-8")
    return data, {"config_digest": _digest(data), "config": config}


def write_config(run: Path, config: dict) -> dict[str, Any]:
    """Write config.yaml. Returns what summary.json keeps of it (see ``config_text``)."""
    data, kept = config_text(config)
    atomic_write(Path(run) / "config.yaml", data, durable=False)  # the summary keeps a copy
    return kept


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def read_config(run: str | Path, summary: dict | None = None) -> dict:
    """The config a run folder holds, as written (not validated again). With the run's
    ``summary``: the copy it keeps when config.yaml is the file it was written with (its
    digest matches; parsing YAML is 50-300 times slower), else the file parsed."""
    from nnlab.config import parse_yaml

    path = Path(run) / "config.yaml"
    try:
        data = read_small_file(path)
    except FileNotFoundError:
        raise RunError(f"{path}: missing") from None
    copy = (summary or {}).get("config")
    if isinstance(copy, dict) and summary.get("config_digest") == _digest(data):
        return copy
    try:
        config = parse_yaml(data.decode("utf-8"), str(path))
    except UnicodeDecodeError as e:
        raise RunError(f"{path}: damaged (not UTF-8 text at byte {e.start})") from None
    except (ConfigError, RecursionError) as e:
        raise RunError(f"{path}: damaged ({getattr(e, 'detail', None) or reason(e)})") from None
    if not isinstance(config, dict):
        raise RunError(f"{path}: damaged (not a mapping)")
    return config


def summary_text(summary: dict) -> str:
    """summary.json's text."""
    return json_text(summary) + "\n"


def load_run_config(run: str | Path) -> dict:
    """A run's config.yaml validated as a config file is (to rebuild its experiment); a
    damaged or invalid one is an error naming the file."""
    from nnlab.config import resolve

    config = resolve(read_config(run), source=str(Path(run) / "config.yaml"))
    if config["name"] is None:
        config["name"] = Path(run).name
    return config


def write_summary(run: Path, summary: dict, durable: bool = True) -> None:
    """summary.json, atomically (``durable``: see ``files.atomic_write``)."""
    write_json(Path(run) / "summary.json", summary, durable)


def write_run_files(files: dict[Path, str | bytes], durable: bool = True) -> None:
    """Write files of many runs at once (path -> text or bytes), each atomically, with one
    flush to disk for all of them (``durable``; ``files.atomic_write_many``)."""
    atomic_write_many(files.items(), durable)


def read_summary(run: str | Path) -> dict:
    """A run's summary.json; a RunError when it is missing, unreadable, not a summary or a
    field nnlab reads has the wrong type (``runcheck.SUMMARY_FIELDS``)."""
    path = Path(run) / "summary.json"
    try:
        summary = json.loads(read_small_file(path))
    except FileNotFoundError:
        raise RunError(f"{run}: not a run folder (no summary.json)") from None
    except (ValueError, RecursionError) as e:
        raise RunError(f"{path}: damaged ({reason(e)})") from None
    return check_summary(summary, path, STATUSES)


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
        epochs = last_epoch(read_last_metrics(run))
    except RunError:
        epochs = 0
    summary.update(status=status, epochs_completed=epochs, finished=now())
    if error:
        summary["error"] = error
    write_summary(run, summary)


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
    """(meta, params) from a model.npz; a RunError names the file when it is missing or
    damaged: not an .npz, an architecture that is not an nnlab model's
    (``runcheck.check_model_meta``), parameters that are not numbers, an input scaling that
    is not finite numbers of the input's shape."""
    try:
        with open_regular(path) as f, np.load(f, allow_pickle=False) as z:
            meta = json.loads(bytes(z["architecture"]).decode())
            params = {k[len("param/") :]: z[k] for k in z.files if k.startswith("param/")}
            if isinstance(meta, dict):
                meta["shift"] = z["input/shift"]
                meta["scale"] = z["input/scale"]
    except FileNotFoundError:
        raise RunError(f"{path}: no such file; the run has no saved model") from None
    except NPZ_ERRORS as e:
        raise RunError(f"{path}: not a readable nnlab model ({reason(e)})") from None
    if isinstance(meta, dict) and meta.get("format") != MODEL_FORMAT:
        raise RunError(f"{path}: unknown model format {str(meta.get('format'))[:40]!r}")
    check_model_meta(meta, path)
    check_arrays(params, path)
    check_input_scaling(meta, path)
    return meta, params


def load_model(run: str | Path) -> tuple[Any, dict]:
    """Rebuild a trained model from a run folder (or a model.npz): (model, meta), with the run
    folder's name as ``meta["run"]``. Every parameter the architecture has must be in the
    file with its shape, and nothing else."""
    from nnlab.nn import Model

    path = Path(run)
    if not path.exists():
        raise RunError(f"{run}: no such run folder or model file")
    file = path / "model.npz" if path.is_dir() else path
    meta, params = read_model_file(file)
    meta["run"] = (path if path.is_dir() else path.parent).resolve().name
    try:
        stored = sum(p.size for p in params.values())  # an edited architecture built no larger
        model = Model.from_spec(
            meta["model"],
            tuple(meta["input_shape"]),
            np.random.default_rng(0),
            meta["dtype"],
            max_params=stored,
        )
        model.load_state_dict(params)
    except ConfigError as e:
        raise RunError(f"{file}: damaged (its architecture: {e})") from None
    except ValueError as e:
        raise RunError(f"{file}: damaged ({reason(e)})") from None
    check_heads(model, meta, file)
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
    """(arrays, meta) of a checkpoint.npz; a RunError names the file when it is damaged: not
    an .npz, no state with a count of epochs, arrays that are not numbers. Whether the state
    fits the run is for the run to check (``runcheck.check_state``)."""
    try:
        with open_regular(path) as f, np.load(f, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            arrays = {k: z[k] for k in z.files if k != "meta"}
    except FileNotFoundError:
        raise RunError(f"{path}: no such file") from None
    except NPZ_ERRORS as e:
        raise RunError(f"{path}: not a readable checkpoint ({reason(e)})") from None
    if isinstance(meta, dict) and meta.get("format") != CHECKPOINT_FORMAT:
        raise RunError(f"{path}: unknown checkpoint format {str(meta.get('format'))[:40]!r}")
    check_checkpoint(arrays, meta, path)
    return arrays, meta
