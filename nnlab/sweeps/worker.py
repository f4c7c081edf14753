"""A sweep worker process: ``python -m nnlab.sweeps.worker``, started by ``LocalExecutor``.

It reads trial tasks as JSON lines on stdin, trains each with ``nnlab.lifecycle.train`` into the
task's run folder (or continues an unfinished one with ``nnlab.lifecycle.resume``; a population
task's members together with ``nnlab.population.run.train_population``), and writes one JSON
line per task on its original stdout (the result channel; a population's holds an outcome per
member; anything else it prints goes to stderr, the worker's log). End of input: it exits.

Signals: between trials, SIGINT/SIGTERM end the worker. During a trial, ``train`` handles them
itself (the run stops at a safe point and is recorded interrupted); a signal that arrives while
the trial is being built, before ``train`` has put its handler in place, is delivered again as
soon as it has. The worker exits after the trial. If the sweep process dies, the worker stops
its trial the same way (it watches its parent).

A search's trial (``task["report"]``: a metric) reports that metric after each epoch, a JSON
line ``{"key": ..., "report": [epoch, value]}`` on the result channel; ``PRUNE_SIGNAL`` (SIGUSR1)
during the trial stops it at a safe point, recorded ``pruned`` (``nnlab.sweeps.pruning``).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, TextIO

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Stop(BaseException):
    """Raised by the signal handler while the worker is idle."""


class _State:
    def __init__(self) -> None:
        self.parent = os.getppid()
        self.busy = False
        self.pending: int | None = None  # a signal to deliver again once train handles it
        self.stop = False
        self.lock = threading.Lock()
        self.prune: queue.SimpleQueue | None = None  # the running search trial's stop queue
        self.pruned = False

    def on_prune(self, signum: int, frame: Any) -> None:
        """PRUNE_SIGNAL: the runner pruned the running trial (ignored between trials)."""
        if self.busy and self.prune is not None:
            self.pruned = True
            self.prune.put(signum)

    def handle(self, signum: int, frame: Any) -> None:
        self.stop = True
        if not self.busy:
            raise _Stop
        with self.lock:
            self.pending = signum

    def watch(self) -> None:
        """Deliver a pending signal once train's handler is in place; stop if orphaned."""
        orphaned = False
        while True:
            time.sleep(0.05)
            if not orphaned and os.getppid() != self.parent:
                orphaned = True
                os.kill(os.getpid(), signal.SIGTERM)
            with self.lock:
                sig = self.pending
                if sig is None or not self.busy or signal.getsignal(sig) == self.handle:
                    continue
                self.pending = None
            os.kill(os.getpid(), sig)


def run_task(task: dict, results: TextIO | None = None, state: _State | None = None) -> dict:
    """Train one trial (or continue it, ``task["resume"]``; or a population, ``task["members"]``);
    the outcome as a JSON-able dict. A search's trial reports each epoch on ``results`` and may
    be pruned (``state``)."""
    from nnlab.errors import NnlabError, StorageError
    from nnlab.runs import Status, read_summary
    from nnlab.sweeps.pruning import epoch_reporter, mark_pruned

    if "members" in task:
        return {"key": task["key"], "outcomes": train_members(task["members"])}
    key, run_dir = task["key"], task["run_dir"]
    options: dict[str, Any] = {}
    if task.get("report") and results is not None and state is not None:
        options["report"] = epoch_reporter(task["report"], _sender(key, results))
        options["stop"] = state.prune = queue.SimpleQueue()
        state.pruned = False
    try:
        result, note, resumed = train_trial(
            task["config"], run_dir, bool(task.get("resume")), **options
        )
    except (_Stop, KeyboardInterrupt):
        return {"key": key, "status": Status.INTERRUPTED, "error": "stopped by a signal"}
    except NnlabError as e:
        errno = e.errno if isinstance(e, StorageError) else None  # a full disk stops the sweep
        failed = {"key": key, "status": Status.FAILED, "error": str(e), "errno": errno}
        return {**failed, "summary": _summary(run_dir)}
    except Exception as e:
        traceback.print_exc()
        error = f"{type(e).__name__}: {e}"
        return {"key": key, "status": Status.FAILED, "error": error, "summary": _summary(run_dir)}
    try:
        summary = read_summary(run_dir)
        if state is not None and state.pruned:
            summary = mark_pruned(run_dir)
    except NnlabError:
        summary = result.summary
    status = summary["status"]
    outcome = {"key": key, "status": status, "summary": summary, "error": None, "note": note}
    return {**outcome, "resumed": resumed}


def train_trial(config: dict, run_dir: str | Path, resume: bool, **options: Any) -> tuple:
    """Train a trial into ``run_dir``, or with ``resume`` continue the unfinished attempt that
    folder holds from its checkpoint (``nnlab.lifecycle.resume``). An attempt that cannot be
    continued (a damaged checkpoint or log) starts over in a fresh folder. Returns the
    ``RunResult``, a note saying which happened (None for a plain start) and whether the run
    continued. ``options`` go to ``train``/``resume`` (``handle_signals``, ``stop``)."""
    from nnlab.errors import NnlabError
    from nnlab.lifecycle import resume as resume_run
    from nnlab.lifecycle import train

    note = None
    if resume:
        try:
            result = resume_run(run_dir, quiet=True, **options)
        except NnlabError as e:
            note = f"could not continue the unfinished attempt ({e}); started over"
            print(f"{run_dir}: {note}", file=sys.stderr)
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            epoch = result.summary.get("resumed", [{}])[-1].get("at_epoch")
            return result, f"continued from its checkpoint at epoch {epoch}", True
    result = train(config, runs_dir=run_dir, quiet=True, run_dir=run_dir, **options)
    return result, note, False


def train_members(members: list[dict], **options: Any) -> list[dict]:
    """Train the trials ``members`` (each a task: key, config, run_dir) together as one
    population, each into its run folder; an outcome per member (as ``run_task``'s).
    ``options`` go to ``train_population`` (``handle_signals``, ``stop``)."""
    from nnlab.errors import NnlabError, StorageError
    from nnlab.files import jsonable
    from nnlab.population.run import train_population
    from nnlab.runs import Status

    configs = [m["config"] for m in members]
    paths = [Path(m["run_dir"]) for m in members]
    error, summaries, errno = None, None, None
    try:
        summaries = train_population(configs, paths, quiet=True, **options).summaries
    except (_Stop, KeyboardInterrupt):
        error = (Status.INTERRUPTED, "stopped by a signal")
    except NnlabError as e:
        error = (Status.FAILED, str(e))
        errno = e.errno if isinstance(e, StorageError) else None  # a full disk stops the sweep
    except Exception as e:
        traceback.print_exc()
        error = (Status.FAILED, f"{type(e).__name__}: {e}")
    out = []
    for i, (m, path) in enumerate(zip(members, paths, strict=True)):
        summary = jsonable(summaries[i]) if summaries else _summary(str(path))
        if error is not None and (summary is None or summary["status"] in ("running", "failed")):
            status, why = error
        else:
            status, why = (summary or {}).get("status", Status.FAILED), (summary or {}).get("error")
        out.append({"key": m["key"], "status": status, "summary": summary, "error": why,
                    "errno": errno})  # fmt: skip
    return out


def _sender(key: str, results: TextIO) -> Any:
    def send(epoch: int, value: float) -> None:
        results.write(json.dumps({"key": key, "report": [epoch, value]}) + "\n")
        results.flush()

    return send


def _summary(run_dir: str) -> dict | None:
    from nnlab.errors import NnlabError
    from nnlab.runs import read_summary

    try:
        return read_summary(run_dir)
    except NnlabError:
        return None


def serve(tasks: TextIO, results: TextIO, state: _State) -> None:
    while True:
        line = tasks.readline()  # a signal while waiting here raises _Stop
        if not line:
            return
        state.busy = True
        task = json.loads(line)
        outcome = run_task(task, results, state)
        state.prune = None
        results.write(json.dumps(outcome) + "\n")
        results.flush()
        state.busy = False
        if state.stop:
            return


def main() -> int:
    results = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # stray prints go to the log, not into the result channel
    state = _State()
    from nnlab.sweeps.pruning import PRUNE_SIGNAL

    for sig in SIGNALS:
        signal.signal(sig, state.handle)
    signal.signal(PRUNE_SIGNAL, state.on_prune)
    threading.Thread(target=state.watch, daemon=True).start()
    try:
        import nnlab.lifecycle  # noqa: F401  (imported while the first task is on its way)

        serve(sys.stdin, results, state)
    except (_Stop, BrokenPipeError):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
