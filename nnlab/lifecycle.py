"""A run's life: ``train(config)`` makes a run folder and trains into it, ``resume(run)``
continues a killed or interrupted one from its checkpoint. Checkpoints, signals (SIGINT/SIGTERM
stop at a safe point), the summary's fields and the exit codes live here; the files themselves
are written through ``nnlab.runs``, the owner of the run folder.
"""

from __future__ import annotations

import contextlib
import errno
import os
import platform
import queue
import shlex
import shutil
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnlab import __version__, baselines, threshold
from nnlab.config import config_hash
from nnlab.errors import NnlabError, RunError, StorageError
from nnlab.experiment import Experiment, build, evaluate, evaluate_groups, model_meta
from nnlab.layerstats import COLUMNS as LAYER_COLUMNS
from nnlab.layerstats import LayerStats
from nnlab.runcheck import check_state
from nnlab.runs import (
    CHECKPOINT,
    DONE,
    MetricsLog,
    Status,
    alive,
    load_run_config,
    log_size_before,
    new_run_dir,
    now,
    read_checkpoint,
    read_summary,
    rows_before,
    save_checkpoint,
    save_model,
    write_config,
    write_summary,
)
from nnlab.train import Trainer

EXIT_CODES = {Status.COMPLETED: 0, Status.FAILED: 1, Status.DIVERGED: 3, Status.INTERRUPTED: 130}


@dataclass
class RunResult:
    run_dir: Path
    summary: dict
    experiment: Experiment


def versions() -> dict[str, str]:
    return {"nnlab": __version__, "numpy": np.__version__, "python": platform.python_version()}


def train(
    config: dict,
    runs_dir: str | Path = "runs",
    quiet: bool = True,
    run_dir: str | Path | None = None,
    handle_signals: bool = True,
    stop: queue.SimpleQueue | None = None,
    report: Callable[[dict], None] | None = None,
) -> RunResult:
    """Build, train and record a resolved config in a new run folder (or ``run_dir``).
    ``stop``: signal numbers put there stop the run at a safe point, as the signal itself
    would (for a run in a thread, which receives no signals: a sweep's remote worker).
    ``report``: called with each epoch's metrics row (a search's pruner follows them)."""
    exp = build(config)  # config and data errors surface before any folder is made
    trainer = Trainer(exp, quiet=quiet)
    path = Path(run_dir) if run_dir is not None else new_run_dir(runs_dir, config["name"])
    path.mkdir(parents=True, exist_ok=True)
    summary = start_summary(config, exp, path)
    try:
        summary.update(write_config(path, config))  # a copy of the config, for fast readers
        write_summary(path, summary, durable=False)  # the final one is
        trainer.log = MetricsLog(path / "metrics.csv", trainer.columns)
    except StorageError:
        if run_dir is None:  # a folder of this run's own, with nothing in it worth keeping
            shutil.rmtree(path, ignore_errors=True)
        raise
    return _execute(exp, trainer, path, summary, handle_signals, stop, report=report)


def start_summary(
    config: dict, exp: Experiment, path: Path, baseline: dict | None = None
) -> dict[str, Any]:
    """A run's summary.json as training starts (``baseline``: the baselines of its data, when
    they are known already)."""
    if baseline is None:
        baseline = baselines.compute(exp.data) if exp.one_label_head else {}
    return {
        "status": Status.RUNNING,
        "name": config["name"],
        "run": path.name,
        "config_hash": config_hash(config),
        "seed": config["training"]["seed"],
        "epochs_planned": config["training"]["epochs"],
        "epochs_completed": 0,
        "data": {"name": exp.data.name, **exp.data.sizes},
        "parameters": exp.model.n_params,
        "baselines": baseline,
        "started": now(),
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "versions": versions(),
    }


def resume(
    run_dir: str | Path,
    quiet: bool = True,
    handle_signals: bool = True,
    stop: queue.SimpleQueue | None = None,
    report: Callable[[dict], None] | None = None,
) -> RunResult:
    """Continue a killed, interrupted or failed run from its last checkpoint. The metrics it
    writes are those of an uninterrupted run, bit for bit (timing apart). ``stop`` and
    ``report`` as for ``train``.

    Every file is read and checked before any is changed (the summary, the config, the
    checkpoint against the run's model and optimizer, metrics.csv's rows up to the
    checkpoint, read in blocks); a damaged one is a RunError naming it, and the run is left
    as it was."""
    path = Path(run_dir)
    summary = read_summary(path)
    status = summary["status"]
    if status in DONE:
        raise RunError(f"{path}: the run is {status}; there is nothing to resume")
    if alive(summary):
        raise RunError(f"{path}: the run is still running (pid {summary['pid']})")
    config = load_run_config(path)
    config["name"] = summary.get("name", config["name"])
    exp = build(config)
    trainer = Trainer(exp, quiet=quiet)
    keep = _restore(trainer, path)
    layers = None  # layers.csv: the bytes to keep, or None to start it anew
    if keep is not None and config["training"]["log_layers"]:
        layers = log_size_before(path / "layers.csv", LAYER_COLUMNS, trainer.epoch)
    _remove_stale_temporaries(path)
    trainer.log = MetricsLog(path / "metrics.csv", trainer.columns, keep_bytes=keep)
    summary.update(status=Status.RUNNING, pid=os.getpid(), host=socket.gethostname())
    for key in ("error", "traceback", "signal", "finished"):
        summary.pop(key, None)
    summary.setdefault("resumed", []).append({"at_epoch": trainer.epoch, "time": now()})
    try:
        write_summary(path, summary)
    except StorageError:
        trainer.log.abandon()
        raise
    return _execute(exp, trainer, path, summary, handle_signals, stop, layers, report)


def _restore(trainer: Trainer, path: Path) -> int | None:
    """Load the run's checkpoint into ``trainer`` once it is known to fit, with the tally of
    the metrics rows before it; returns the bytes of metrics.csv to keep (None without a
    checkpoint: the run starts over)."""
    checkpoint = path / CHECKPOINT
    if not checkpoint.is_file() and not checkpoint.is_symlink():
        return None
    arrays, meta = read_checkpoint(checkpoint)
    epochs = trainer.exp.config["training"]["epochs"]
    if meta["epoch"] > epochs:
        raise RunError(
            f"{checkpoint}: damaged (epoch {meta['epoch']}, beyond the run's {epochs} epochs)"
        )
    check_state(trainer.state(), (arrays, meta), checkpoint)
    keep, tally = rows_before(path, trainer.columns, meta["epoch"], trainer.log_every)
    try:
        trainer.load_state(arrays, meta, tally)
    except (KeyError, ValueError, TypeError, IndexError) as e:
        raise RunError(f"{checkpoint}: does not fit this run ({e!s:.160})") from None
    return keep


def _remove_stale_temporaries(path: Path) -> None:
    """The temporary files of atomic writes that a killed process left in a run folder (no
    process but this one works in it now): they may be large, and keep a full disk full."""
    for tmp in path.glob(".*.tmp-*"):
        with contextlib.suppress(OSError):
            tmp.unlink()


def _execute(
    exp: Experiment,
    trainer: Trainer,
    path: Path,
    summary: dict,
    handle_signals: bool,
    stop: queue.SimpleQueue | None = None,
    layers: int | None = None,
    report: Callable[[dict], None] | None = None,
) -> RunResult:
    """Run the loop with checkpoints and signal handling, then record the result. Times add
    up over the sessions of a resumed run. ``layers``: the bytes of layers.csv a resumed run
    keeps (None: it starts anew)."""
    started = time.time() - float(summary.get("wall_seconds", 0.0))
    train_seconds = float(summary.get("train_seconds", 0.0))
    checkpoint = path / CHECKPOINT

    def save(tr: Trainer) -> None:
        tr.log.flush()  # the rows a checkpoint counts are on disk before it is
        save_checkpoint(checkpoint, *tr.state())
        tr.log.checkpointed = tr.log.size

    trainer.checkpoint = save
    t0 = time.perf_counter()
    fit_seconds, stats = None, None
    try:
        stats = _layer_stats(exp, trainer, path, layers)
        if report is not None:
            _follow(trainer, report)
        with stops(trainer, handle_signals, stop):
            status = trainer.fit()
        fit_seconds = time.perf_counter() - t0
        trainer.log.close()  # the last rows reach the disk (or a full disk shows) here
        if stats is not None:
            stats.close()
        _record(exp, trainer, path, summary, status)
        _finish(summary, trainer, started, train_seconds + fit_seconds)
        write_summary(path, summary)
    except BaseException as e:
        seconds = fit_seconds if fit_seconds is not None else time.perf_counter() - t0
        marked = _fail(summary, trainer, stats, path, e, started, train_seconds + seconds)
        if isinstance(e, StorageError):
            raise e.with_hint(_resume_hint(path, marked)) from None
        raise
    if status in DONE:  # nothing left to resume, now that the summary says so
        (path / CHECKPOINT).unlink(missing_ok=True)
    return RunResult(path, summary, exp)


def _fail(
    summary: dict,
    trainer: Trainer,
    stats: Any,
    path: Path,
    error: BaseException,
    started: float,
    train_seconds: float,
) -> bool:
    """Record a run that stopped on ``error`` as failed, where its summary can still be
    written (a full disk may refuse even that); its logs are closed without raising.
    Returns whether the summary was written."""
    full = isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)
    trainer.log.abandon(free_space=full)
    if stats is not None:
        with contextlib.suppress(OSError):
            stats.close()
    known = isinstance(error, NnlabError)
    text = str(error) if known else f"{type(error).__name__}: {error}"
    summary.update(status=Status.FAILED, error=text)
    if not known:
        summary["traceback"] = traceback.format_exc()
    _finish(summary, trainer, started, train_seconds)
    try:
        write_summary(path, summary)
    except StorageError:
        return False
    return True


def _resume_hint(path: Path, marked: bool) -> str:
    """What a run stopped by a full disk or a read-only folder can do next."""
    state = "the run is marked failed" if marked else "the run could not be marked failed"
    return (
        f"{state}; once the disk has room, nnlab train --resume {shlex.quote(str(path))} "
        "continues it from its last checkpoint"
    )


def _layer_stats(exp: Experiment, trainer: Trainer, path: Path, keep: int | None):
    """layers.csv, when the config asks for it: a row per layer at epoch 0 and each epoch
    (``keep``: the bytes a resumed run keeps of it)."""
    if not exp.config["training"]["log_layers"]:
        return None
    stats = LayerStats(exp, path / "layers.csv", keep_bytes=keep)
    if keep is None:
        stats.record(0)
    trainer.on_epoch = stats.record
    return stats


def _follow(trainer: Trainer, report: Callable[[dict], None]) -> None:
    """Call ``report`` with each epoch's row, after what ``trainer.on_epoch`` did already."""
    before = trainer.on_epoch

    def on_epoch(epoch: int) -> None:
        if before is not None:
            before(epoch)
        report(trainer.tally.last)

    trainer.on_epoch = on_epoch


class stops:
    """While training: SIGINT/SIGTERM (in the main thread) and signal numbers put on ``stop``
    (a run in a thread) ask the trainer to stop at a safe point; a second Ctrl-C stops now.
    ``trainer``: anything with ``request_stop(signum)`` and ``stop_signal`` (a ``Trainer``, a
    population)."""

    def __init__(self, trainer: Any, handle_signals: bool, stop: queue.SimpleQueue | None):
        self.trainer, self.stop = trainer, stop
        self.handle = handle_signals and threading.current_thread() is threading.main_thread()
        self.previous: dict = {}
        self.finished = threading.Event()

    def __enter__(self) -> None:
        if self.handle:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._on_signal)
        if self.stop is not None:
            threading.Thread(target=self._forward, daemon=True).start()

    def __exit__(self, *exc) -> None:
        self.finished.set()
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum, frame) -> None:
        if self.trainer.stop_signal is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.trainer.request_stop(signum)

    def _forward(self) -> None:
        while not self.finished.is_set():
            try:
                self.trainer.request_stop(self.stop.get(timeout=0.1))
            except queue.Empty:
                continue


def _record(exp: Experiment, trainer: Trainer, path: Path, summary: dict, status: str) -> None:
    """What a run that ended leaves: final metrics per split and the model (or where it
    diverged)."""
    decision = end_summary(exp, summary, status, trainer.diverged_at, trainer.stop_signal)
    if status != Status.DIVERGED:
        save_model(path / "model.npz", exp.model, saved_meta(exp, decision))


def saved_meta(exp: Experiment, decision: dict | None) -> dict:
    """What model.npz holds beside the weights: ``model_meta`` and the decision threshold
    (``end_summary``'s), if any."""
    return model_meta(exp) | ({} if decision is None else {"threshold": decision})


def end_summary(
    exp: Experiment, summary: dict, status: str, diverged_at: dict | None, stop: int | None
) -> dict | None:
    """How a run ended, into its summary: the status, the final metrics of the model's
    current weights on each split (or where it diverged), the signal that stopped it. Returns
    the decision threshold ``training.threshold`` asks for (for model.npz), or None."""
    summary["status"] = status
    decision = None
    if status != Status.DIVERGED:
        for split in ("train", "val", "test"):
            if split in exp.targets:
                summary[split] = evaluate(exp, split)
                groups = evaluate_groups(exp, split)
                if groups:
                    summary[f"{split}_groups"] = groups
        decision = threshold.record(exp, summary)  # ROC AUC; the threshold training.threshold asks
    else:
        summary["diverged_at"] = diverged_at
    if stop is not None:
        summary["signal"] = signal.Signals(stop).name
    return decision


def _finish(summary: dict, trainer: Trainer, started: float, train_seconds: float) -> None:
    """Fill in what the loop saw."""
    last = trainer.tally.last
    es = None
    if trainer.early_stopping is not None and trainer.es_epoch is not None:
        es = (trainer.early_stopping["monitor"], trainer.es_epoch, trainer.best_theta is not None)
    epochs = last["epoch"] if last else 0
    last = {k: v for k, v in last.items() if k != "seconds"} if last else {}
    loop_summary(summary, epochs, last, trainer.tally.best, trainer.threads,
                 trainer.stopped_early, es)  # fmt: skip
    summary["train_seconds"] = round(train_seconds, 4)
    summary["wall_seconds"] = round(time.time() - started, 4)


def loop_summary(
    summary: dict,
    epochs: int,
    last: dict,
    best: dict,
    threads: int | None,
    stopped_early: bool,
    early_stopping: tuple[str, int, bool] | None,
) -> None:
    """What the training loop saw, into a run's summary: epochs completed, the last row of
    metrics (without seconds) and the best values, BLAS threads, early stopping as
    (monitor, best epoch, weights restored)."""
    summary["epochs_completed"] = epochs
    summary["threads"] = threads
    summary["stopped_early"] = stopped_early
    if early_stopping is not None:
        monitor, epoch, restored = early_stopping
        summary["early_stopping"] = {"monitor": monitor, "best_epoch": epoch, "restored": restored}
    summary["last"] = last
    summary["best"] = best
    summary["finished"] = now()


def exit_code(result: RunResult) -> int:
    """The process exit status for how a run ended (see the README)."""
    if result.summary["status"] == Status.INTERRUPTED:
        return 143 if result.summary.get("signal") == "SIGTERM" else 130
    return EXIT_CODES.get(result.summary["status"], 1)
