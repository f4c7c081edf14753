"""Runs in the tools people already use: ``nnlab export-runs DIR --to mlflow|tensorboard OUT``.

Each run goes over with its config (as parameters), its metrics per epoch, its summary, and its
files, through those projects' own libraries (the ``mlflow`` and ``tensorboard`` extras):

- **mlflow** (``mlflow-skinny``, the tracking client without the server): an MLflow tracking
  store in OUT, ``OUT/mlflow.db`` (SQLite: MLflow 3's file store is in maintenance mode and
  refuses to start without an opt-out) with the artifacts under ``OUT/artifacts``; one MLflow
  run per nnlab run in one experiment. Parameters are the flattened config keys; metrics
  every metrics.csv column per epoch (``step`` = epoch, timestamps from the run's start and
  its epoch times) and the final train/val/test metrics (``final_train_loss``, ...); tags
  the status, the run folder and the config hash; artifacts config.yaml, summary.json,
  metrics.csv and model.npz. Browse it with ``mlflow ui --backend-store-uri
  sqlite:///OUT/mlflow.db`` (the full ``mlflow`` package has the UI).
- **tensorboard**: event files in ``OUT/RUN/train`` and ``OUT/RUN/validation`` as Keras writes
  them (``epoch_loss``, ``epoch_accuracy``, ``epoch_learning_rate``, ...), the test metrics
  in ``OUT/RUN/test``; the config and summary as text and the differing keys in the HParams
  dashboard; model.npz copied into ``OUT/RUN`` (TensorBoard has no artifact store).

A run already in OUT (the same run folder and start) is skipped, so exporting again adds only
the new runs.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnlab.compare.keys import differences, fmt_config
from nnlab.compare.table import Run, load_runs
from nnlab.errors import ConfigError, NnlabError, RunError
from nnlab.runs import Status

TARGETS = ("mlflow", "tensorboard")
FILES = ("config.yaml", "summary.json", "metrics.csv", "model.npz")
MLFLOW_STATUS = {
    Status.COMPLETED: "FINISHED",
    Status.DIVERGED: "FAILED",
    Status.PRUNED: "FINISHED",
    Status.FAILED: "FAILED",
    Status.INTERRUPTED: "KILLED",
    Status.KILLED: "KILLED",
}


@dataclass
class Exported:
    """What ``export_runs`` did: runs written and skipped (already there), and where."""

    target: str
    out: Path
    written: int
    skipped: int


def export_runs(
    paths: Iterable[str | Path],
    to: str,
    out: str | Path,
    warn: Callable[[str], None] = print,
    experiment: str | None = None,
) -> Exported:
    """Export the runs among ``paths`` (folders of runs stand for their runs) to ``out`` in
    the format of ``to`` (``mlflow`` or ``tensorboard``)."""
    if to not in TARGETS:
        raise ConfigError(f"{to!r}: expected one of {', '.join(TARGETS)}", source="--to")
    writer = _mlflow if to == "mlflow" else _tensorboard
    paths = [Path(p) for p in paths]
    runs = load_runs(paths, warn)
    if not runs:
        raise RunError("no runs to export")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: not a folder", source="OUT")
    name = experiment or (paths[0].resolve().name if len(paths) == 1 else "nnlab")
    written, skipped = writer(runs, out, name)
    return Exported(to, out, written, skipped)


def run_key(run: Run) -> str:
    """The identity of a run in the exported store: its folder and start time."""
    text = f"{run.path.resolve()}|{run.summary.get('started', '')}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def epoch_times(run: Run) -> list[float]:
    """The wall time (s since 1970) at the end of each epoch: the run's start plus the
    epochs' seconds (the time of reading when the run has no start)."""
    start = _start(run)
    m = run.metrics
    if "seconds" not in m.columns or not len(m):
        return [start + i for i in range(len(m))]
    t, out = start, []
    for s in m.column("seconds").tolist():
        t += s if math.isfinite(s) else 0.0
        out.append(t)
    return out


def _start(run: Run) -> float:
    try:
        return datetime.datetime.fromisoformat(run.summary["started"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return run.path.stat().st_mtime


def _finals(run: Run) -> dict[str, float]:
    """``final_train_loss``, ``final_test_accuracy``, ...: the summary's metrics per split."""
    out = {}
    for split in ("train", "val", "test"):
        for k, v in (run.summary.get(split) or {}).items():
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                out[f"final_{split}_{k}"] = float(v)
    return out


# ---------------------------------------------------------------- MLflow


def _mlflow_client(out: Path) -> Any:
    try:
        import logging

        from mlflow.tracking import MlflowClient
    except ImportError:
        raise NnlabError("exporting to MLflow needs mlflow: pip install 'nnlab[mlflow]'") from None
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its table-creation chatter
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    out.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=f"sqlite:///{out.resolve() / 'mlflow.db'}")


def _mlflow(runs: list[Run], out: Path, name: str) -> tuple[int, int]:
    client = _mlflow_client(out)
    found = client.get_experiment_by_name(name)
    if found is None:
        artifacts = (out.resolve() / "artifacts").as_uri()
        experiment = client.create_experiment(name, artifact_location=artifacts)
    else:
        experiment = found.experiment_id
    done = {
        r.data.tags.get("nnlab.key") for r in client.search_runs([experiment], max_results=50000)
    }
    written = 0
    for run in runs:
        if run_key(run) in done:
            continue
        _mlflow_run(client, experiment, run)
        written += 1
    return written, len(runs) - written


def _mlflow_run(client: Any, experiment: str, run: Run) -> None:
    from mlflow.entities import Param, RunTag

    start = _start(run)
    tags = {
        "mlflow.runName": run.label,
        "mlflow.source.name": "nnlab",
        "nnlab.key": run_key(run),
        "nnlab.run_dir": str(run.path.resolve()),
        "nnlab.status": run.status,
        "nnlab.config_hash": str(run.summary.get("config_hash", "")),
    }
    if run.config.get("description"):
        tags["mlflow.note.content"] = str(run.config["description"])
    made = client.create_run(experiment, start_time=int(start * 1000), run_name=run.label)
    run_id = made.info.run_id
    params = [Param(k[:250], fmt_config(v)[:6000]) for k, v in run.flat.items()]
    metrics, end = _mlflow_metrics(run)
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    for i in range(0, len(params), 100):  # MLflow takes 100 params, 1000 metrics a call
        client.log_batch(run_id, params=params[i : i + 100])
    for i in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[i : i + 1000])
    for f in FILES:
        if (run.path / f).is_file():
            client.log_artifact(run_id, str(run.path / f))
    status = MLFLOW_STATUS.get(run.status)
    if status is not None:
        client.set_terminated(run_id, status, end_time=end)


def _mlflow_metrics(run: Run) -> tuple[list, int]:
    """Every metrics.csv column per epoch (step: the epoch) and the final metrics at the last
    epoch; and the end time (ms)."""
    from mlflow.entities import Metric

    times, m = epoch_times(run), run.metrics
    metrics = []
    for col in m.columns:
        if col == "epoch":
            continue
        for epoch, value, t in zip(
            m.column("epoch").tolist(), m.column(col).tolist(), times, strict=True
        ):
            if math.isfinite(value):
                metrics.append(Metric(col, value, int(t * 1000), int(epoch)))
    last_epoch = int(m.column("epoch")[-1]) if len(m) else 0
    end = int((times[-1] if times else _start(run)) * 1000)
    metrics += [Metric(k, v, end, last_epoch) for k, v in _finals(run).items()]
    return metrics, end


# ---------------------------------------------------------------- TensorBoard


def _tensorboard(runs: list[Run], out: Path, name: str) -> tuple[int, int]:
    try:
        from tensorboard.plugins.hparams import summary_v2 as hp
        from tensorboard.summary.writer.event_file_writer import EventFileWriter  # noqa: F401
    except ImportError:
        raise NnlabError(
            "exporting to TensorBoard needs tensorboard: pip install 'nnlab[tensorboard]'"
        ) from None
    diffs = differences([r.config for r in runs], [r.flat for r in runs])
    hparams = list(dict.fromkeys(k for d in diffs for k in d))
    written = 0
    for run, d in zip(runs, diffs, strict=True):
        folder = out / run.label.replace("/", "-")
        key = folder / "nnlab-run.json"
        if key.is_file() and json.loads(key.read_text()).get("key") == run_key(run):
            continue
        _tensorboard_run(run, folder, {k: _hparam(v) for k, v in d.items()})
        key.write_text(json.dumps({"key": run_key(run), "run": str(run.path.resolve())}))
        written += 1
    if written:
        groups = _splits(runs)
        metrics = [
            hp.Metric(f"epoch_{tag}", group=group) for group, tags in groups.items() for tag in tags
        ]
        with _writer(out) as w:
            w(hp.hparams_config_pb([hp.HParam(h) for h in hparams], metrics), 0, _start(runs[0]))
    return written, len(runs) - written


def _hparam(text: str) -> float | str:
    """A differing key's value for the HParams dashboard: a number where it is one."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return str(text)
    return value if math.isfinite(value) else str(text)


def split_tag(column: str) -> tuple[str, str]:
    """The folder and tag of a metrics.csv column, as Keras names them: ``val_loss`` ->
    (validation, epoch_loss), ``lr`` -> (train, epoch_learning_rate)."""
    if column.startswith("val_"):
        return "validation", f"epoch_{column[4:]}"
    return "train", "epoch_learning_rate" if column == "lr" else f"epoch_{column}"


def _splits(runs: list[Run]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in runs:
        for col in r.metrics.columns:
            if col not in ("epoch", "lr", "seconds"):
                folder, tag = split_tag(col)
                out.setdefault(folder, [])
                if tag[len("epoch_") :] not in out[folder]:
                    out[folder].append(tag[len("epoch_") :])
    return out


class _writer:
    """An event file in ``folder``: ``w(summary, step, wall_time)`` adds one summary."""

    def __init__(self, folder: Path):
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self.file = EventFileWriter(str(folder))

    def __enter__(self) -> Callable[[Any, int, float], None]:
        from tensorboard.compat.proto import event_pb2

        def add(summary: Any, step: int, wall_time: float) -> None:
            self.file.add_event(event_pb2.Event(summary=summary, step=step, wall_time=wall_time))

        return add

    def __exit__(self, *exc: object) -> None:
        self.file.close()


def _tensorboard_run(run: Run, folder: Path, hparams: dict[str, Any]) -> None:
    from tensorboard.plugins.hparams import summary_v2 as hp
    from tensorboard.plugins.scalar.summary_v2 import scalar_pb
    from tensorboard.plugins.text.summary_v2 import text_pb

    from nnlab.config import dump_yaml

    start, times, m = _start(run), epoch_times(run), run.metrics
    by_folder: dict[str, list[tuple[str, str]]] = {}
    for col in m.columns:
        if col != "epoch":
            sub, tag = split_tag(col)
            by_folder.setdefault(sub, []).append((col, tag))
    for sub, cols in by_folder.items():
        with _writer(folder / sub) as w:
            for i, (epoch, t) in enumerate(zip(m.column("epoch").tolist(), times, strict=True)):
                for col, tag in cols:
                    value = float(m.column(col)[i])
                    if math.isfinite(value):
                        w(scalar_pb(tag, value), int(epoch), t)
    last = int(m.column("epoch")[-1]) if len(m) else 0
    test = {k: v for k, v in (run.summary.get("test") or {}).items() if isinstance(v, float)}
    if test:
        with _writer(folder / "test") as w:
            for k, v in test.items():
                w(scalar_pb(f"epoch_{k}", v), last, times[-1] if times else start)
    summary = json.dumps(run.summary, indent=2, default=str)
    with _writer(folder) as w:
        w(hp.hparams_pb(hparams, trial_id=run.label, start_time_secs=start), 0, start)
        w(text_pb("config", "```\n" + dump_yaml(run.config) + "```"), 0, start)
        w(text_pb("summary", "```\n" + summary + "\n```"), last, times[-1] if times else start)
    if (run.path / "model.npz").is_file():
        shutil.copyfile(run.path / "model.npz", folder / "model.npz")
