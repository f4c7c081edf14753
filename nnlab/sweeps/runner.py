"""Running a sweep: its folder, its index, resume, progress and signals.

The sweep folder ``RUNS/sweeps/NAME/`` holds ``sweep.yaml`` (the spec as given, the base config
and the trial list), ``index.json`` (one entry per trial: number, hash, overrides, seed, run
folder, status, error, times; rewritten atomically as trials start and end), ``trials/`` (a run
folder per trial, ``NNN-HASH``) and ``logs/`` (the workers' stderr).

A trial's identity is the hash of its resolved config (the seed inside). Running a sweep again
skips the trials whose run folder says completed, and diverged ones too: the same config and
seed diverge again, bit for bit (``rerun=("diverged",)`` reruns them, ``("all",)`` everything).
Failed, interrupted and never-started trials run again, in a fresh run folder. Trials of an
earlier, different spec of the same name stay in the folder and the index.

SIGINT/SIGTERM: no new trial starts; the signal is forwarded to the running trials, which stop
at a safe point and are recorded interrupted; the sweep exits 130/143. A second signal stops
them at once, a third stops waiting for them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from nnlab.config import dump_yaml
from nnlab.errors import RunError
from nnlab.files import atomic_write, write_json
from nnlab.runs import DONE, Status, make_dir, mark_ended, now, read_summary, safe_name
from nnlab.sweeps.display import SweepProgress
from nnlab.sweeps.executor import (
    Executor,
    LocalExecutor,
    TrialOutcome,
    TrialTask,
    materialize,
)
from nnlab.sweeps.spec import Sweep, Trial
from nnlab.threads import per_worker

INDEX_FORMAT = "nnlab-sweep-index/1"


def sweep_dir_for(runs_dir: str | Path, name: str) -> Path:
    return Path(runs_dir) / "sweeps" / safe_name(name)


@dataclass
class SweepResult:
    """How a sweep ended, over the trials of its grid."""

    sweep_dir: Path
    total: int
    counts: dict[str, int]
    skipped: int  # done before this invocation
    ran: int  # finished in this invocation
    failures: list[dict] = field(default_factory=list)  # index entries of failed trials
    signal: int | None = None
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def exit_code(self) -> int:
        """130/143 interrupted; else the number of failed trials (101: more than 100), as
        GNU parallel; 0 when every trial completed or diverged."""
        if self.signal is not None:
            return 143 if self.signal == signal.SIGTERM else 130
        return self.failed if self.failed <= 100 else 101


class SweepFolder:
    """The files of a sweep folder."""

    def __init__(self, path: Path):
        self.path = path
        self.index_path = path / "index.json"
        self.trials_dir = path / "trials"
        self.warnings: list[str] = []

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the sweep's lock: one process at a time runs a sweep folder."""
        make_dir(self.path, "the sweep folder")
        with open(self.path / ".lock", "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "another process"
                raise RunError(
                    f"{self.path}: this sweep is running already ({holder}); wait for it or "
                    "stop it first"
                ) from None
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()}")
            f.flush()
            try:
                yield
            finally:
                f.truncate(0)
                fcntl.flock(f, fcntl.LOCK_UN)

    def read_index(self) -> list[dict]:
        if not self.index_path.exists():
            return []
        try:
            data = json.loads(self.index_path.read_text(encoding="utf-8"))
            trials = data["trials"]
            if not all(isinstance(e, dict) and "hash" in e and "run" in e for e in trials):
                raise ValueError("an entry without hash or run")
        except (OSError, ValueError, KeyError, TypeError) as e:
            self.warnings.append(
                f"{self.index_path}: damaged ({e}); rebuilt from the trial folders"
            )
            return []
        kept = [e for e in trials if _trial_folder(e["run"]) and isinstance(e["hash"], str)]
        if len(kept) < len(trials):
            self.warnings.append(
                f"{self.index_path}: {len(trials) - len(kept)} entries name a folder outside "
                "trials/ (or no hash); ignored"
            )
        return kept

    def scan(self) -> dict[str, tuple[str, dict]]:
        """Trial run folders with a readable summary: hash -> (folder relative path, summary)."""
        found: dict[str, tuple[str, dict]] = {}
        if not self.trials_dir.is_dir():
            return found
        for run in sorted(self.trials_dir.iterdir()):
            try:
                summary = read_summary(run)
            except RunError:
                continue
            h = summary.get("config_hash")
            if not isinstance(h, str):
                continue
            rel = str(run.relative_to(self.path))
            old = found.get(h)
            if old is None or (summary.get("status") in DONE and old[1].get("status") not in DONE):
                found[h] = (rel, summary)
        return found

    def write_index(self, name: str, entries: list[dict]) -> None:
        data = {
            "format": INDEX_FORMAT,
            "name": name,
            "updated": now(),
            "trials": sorted(entries, key=lambda e: e["number"]),
        }
        write_json(self.index_path, data)

    def write_spec(self, sweep: Sweep) -> None:
        data = {
            "name": sweep.name,
            "description": sweep.description,
            "command": " ".join(["nnlab", *sys.argv[1:]]) if _cli() else None,
            "spec": sweep.spec,
            "base": sweep.base,
            "axes": {a.key: a.values for a in sweep.axes},
            "seeds": sweep.seeds,
            "trials": [
                {"number": t.number, "hash": t.hash, "seed": t.seed, "overrides": t.overrides}
                for t in sweep.trials
            ],
        }
        atomic_write(self.path / "sweep.yaml", dump_yaml(data))


def _trial_folder(run: object) -> bool:
    """Whether an index entry's run folder is a folder of trials/ (index.json is a file anyone
    may edit: a path like ``../../x`` must never be removed or written)."""
    return isinstance(run, str) and bool(re.fullmatch(r"trials/[\w+=-][\w.+=-]*", run, re.A))


def _cli() -> bool:
    return Path(sys.argv[0]).name in ("nnlab", "__main__.py")


# ---------------------------------------------------------------- planning


@dataclass
class Plan:
    entries: dict[str, dict]  # hash -> index entry, every trial the folder holds
    todo: list[Trial]
    skipped: list[Trial]


def plan(sweep: Sweep, folder: SweepFolder, rerun: tuple[str, ...] = ()) -> Plan:
    """Which trials of the grid to run: those without a completed (or diverged) run folder."""
    entries: dict[str, dict] = {}
    for e in folder.read_index():
        entries[e["hash"]] = dict(e)
    found = folder.scan()
    for h, (run, summary) in found.items():
        e = entries.setdefault(h, {"hash": h, "overrides": {}, "seed": summary.get("seed")})
        e["run"] = run
        e["status"] = summary.get("status", Status.FAILED)
    numbers = [e.get("number") for e in entries.values() if isinstance(e.get("number"), int)]
    for e in entries.values():
        if not isinstance(e.get("number"), int):
            e["number"] = _number_of(e.get("run", ""), numbers)
            numbers.append(e["number"])
    next_number = max(numbers, default=0) + 1
    width = max(3, len(str(next_number + len(sweep.trials))))
    todo, skipped = [], []
    for trial in sweep.trials:
        e = entries.get(trial.hash)
        if e is None:
            e = entries[trial.hash] = {"number": next_number, "hash": trial.hash}
            e["run"] = f"trials/{next_number:0{width}d}-{trial.hash}"
            e["status"] = "pending"
            next_number += 1
        e["overrides"], e["seed"] = trial.overrides, trial.seed
        status = found[trial.hash][1].get("status") if trial.hash in found else None
        keep = (status == Status.COMPLETED and "all" not in rerun) or (
            status == Status.DIVERGED and not set(rerun) & {"diverged", "all"}
        )
        if keep:
            e["status"] = status
            skipped.append(trial)
        else:
            if e.get("status") in DONE:  # rerun on request
                e["status"] = "pending"
            todo.append(trial)
    return Plan(entries, todo, skipped)


def _number_of(run: str, taken: list[int]) -> int:
    head = Path(run).name.split("-", 1)[0]
    if head.isdigit() and int(head) not in taken:
        return int(head)
    return max(taken, default=0) + 1


# ---------------------------------------------------------------- progress


def headline(summary: dict | None) -> tuple[str, float] | None:
    """The metric a trial's line shows: the last val_accuracy, accuracy, val_loss or loss."""
    last = (summary or {}).get("last") or {}
    for key in ("val_accuracy", "accuracy", "val_loss", "loss"):
        value = last.get(key)
        if isinstance(value, int | float):
            return key, float(value)
    return None


# ---------------------------------------------------------------- running


def run_sweep(
    sweep: Sweep,
    runs_dir: str | Path = "runs",
    jobs: int | None = None,
    rerun: tuple[str, ...] = (),
    threads: int | None = None,
    quiet: bool = False,
    stream: TextIO | None = None,
    executor: Executor | None = None,
    handle_signals: bool = True,
) -> SweepResult:
    """Run the trials of ``sweep`` that are not done yet (see the module docstring) in ``jobs``
    worker processes (default: the sweep's), each with ``threads`` BLAS threads (default:
    cores // jobs), or with ``executor``."""
    stream = stream or sys.stderr
    folder = SweepFolder(sweep_dir_for(runs_dir, sweep.name))
    started = time.perf_counter()
    with folder.locked():
        p = plan(sweep, folder, tuple(rerun))
        folder.write_spec(sweep)
        entries = p.entries
        folder.write_index(sweep.name, list(entries.values()))
        progress = SweepProgress(
            sweep.name, len(sweep.trials), len(p.skipped), len(p.todo), stream, quiet
        )
        for w in folder.warnings + sweep.notes:
            progress.say(f"note: {w}")
        if p.skipped:
            progress.say(
                f"sweep {sweep.name}: {len(p.skipped)} of {len(sweep.trials)} trials done "
                f"already (skipped), {len(p.todo)} to run"
            )
        stop: int | None = None
        if p.todo:
            jobs = jobs or sweep.jobs
            # BLAS threads follow the jobs asked for, also when fewer trials are left
            threads = threads or per_worker(jobs)
            workers = max(1, min(jobs, len(p.todo)))
            ex = executor or LocalExecutor(workers, log_dir=folder.path / "logs", threads=threads)
            stop = _loop(sweep, folder, entries, p.todo, ex, progress, handle_signals)
        progress.close()
        grid = [entries[t.hash] for t in sweep.trials]
        counts: dict[str, int] = {}
        for e in grid:
            counts[e["status"]] = counts.get(e["status"], 0) + 1
        unfinished = (Status.FAILED, Status.INTERRUPTED, "pending")
        failures = [e for e in grid if e["status"] in unfinished]
        return SweepResult(
            folder.path,
            total=len(grid),
            counts=counts,
            skipped=len(p.skipped),
            ran=progress.finished,
            failures=failures
            if stop is None
            else [e for e in grid if e["status"] == Status.FAILED],
            signal=stop,
            seconds=time.perf_counter() - started,
        )


def _loop(
    sweep: Sweep,
    folder: SweepFolder,
    entries: dict[str, dict],
    todo: list[Trial],
    ex: Executor,
    progress: SweepProgress,
    handle_signals: bool,
) -> int | None:
    """Submit, wait, record; returns the signal that stopped the sweep, if any."""
    queue = deque(todo)
    running: dict[str, tuple[Trial, float]] = {}
    signals: list[int] = []
    previous = {}
    if handle_signals and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda signum, frame: signals.append(signum))
    forwarded = 0

    def save() -> None:
        folder.write_index(sweep.name, list(entries.values()))

    try:
        while running or (queue and not signals):
            if len(signals) > forwarded:
                forwarded = len(signals)
                if forwarded == 1:
                    progress.say(
                        f"{signal.Signals(signals[0]).name}: stopping; the running trials stop "
                        "at a safe point (again: at once)"
                    )
                if forwarded >= 3:
                    break
                ex.interrupt(signals[-1])
            if not signals and queue and ex.busy < ex.slots:
                while queue and ex.busy < ex.slots:
                    trial = queue.popleft()
                    e = entries[trial.hash]
                    run_dir = folder.path / e["run"]
                    if run_dir.exists():
                        shutil.rmtree(run_dir)  # an unfinished or replaced attempt
                    run_dir.parent.mkdir(parents=True, exist_ok=True)
                    e.update(status=Status.RUNNING, error=None, started=now(), finished=None)
                    e["attempts"] = e.get("attempts", 0) + 1
                    ex.submit(TrialTask(trial.hash, trial.config, str(run_dir)))
                    running[trial.hash] = (trial, time.perf_counter())
                save()
            progress.running = len(running)
            for outcome in ex.wait(0.2):
                if outcome.key not in running:
                    continue
                trial, t0 = running.pop(outcome.key)
                _record(folder, entries[trial.hash], outcome, time.perf_counter() - t0, signals)
                save()
                progress.running = len(running)
                _report(progress, trial, entries[trial.hash], _summary_of(folder, entries, trial))
            progress.tick()
    finally:
        ex.close(grace=1.0 if len(signals) >= 3 else 10.0)
        for key in running:
            e = entries[key]
            e.update(status=Status.INTERRUPTED if signals else Status.FAILED, finished=now())
            e["error"] = "the sweep stopped before the trial ended"
            mark_ended(folder.path / e["run"], e["status"], e["error"])
        for trial in queue:
            entries[trial.hash]["status"] = "pending"
        save()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return signals[0] if signals else None


def _record(
    folder: SweepFolder, e: dict, outcome: TrialOutcome, seconds: float, signals: list[int]
) -> None:
    run_dir = folder.path / e["run"]
    materialize(outcome, run_dir)
    ended = (*DONE, Status.FAILED, Status.INTERRUPTED)
    status = outcome.status if outcome.status in ended else Status.FAILED
    if signals and status == Status.FAILED:
        status = Status.INTERRUPTED  # stopped at once by a repeated signal
    e.update(status=status, error=outcome.error, finished=now(), seconds=round(seconds, 3))
    e["worker"] = outcome.worker or None
    if status in (Status.FAILED, Status.INTERRUPTED):
        mark_ended(run_dir, status, outcome.error)


def _report(progress: SweepProgress, trial: Trial, e: dict, summary: dict | None) -> None:
    progress.trial(trial.label, e["status"], headline(summary), e.get("seconds"), e.get("error"))


def _summary_of(folder: SweepFolder, entries: dict[str, dict], trial: Trial) -> dict | None:
    try:
        return read_summary(folder.path / entries[trial.hash]["run"])
    except RunError:
        return None


def trial_table(sweep: Sweep, runs_dir: str | Path) -> list[dict[str, Any]]:
    """The trials of a sweep and what running it now would do with each (``--print-trials``)."""
    folder = SweepFolder(sweep_dir_for(runs_dir, sweep.name))
    p = plan(sweep, folder) if folder.path.is_dir() else None
    rows = []
    todo = {t.hash for t in p.todo} if p else None
    for t in sweep.trials:
        e = p.entries[t.hash] if p else {}
        action = "run" if todo is None or t.hash in todo else "skip"
        rows.append(
            {
                "#": t.number,
                "hash": t.hash,
                **{k: _cell(v) for k, v in t.overrides.items()},
                "seed": t.seed,
                "status": e.get("status", "new") if p else "new",
                "action": action,
            }
        )
    return rows


def _cell(value: Any) -> Any:
    return json.dumps(value, separators=(",", ":")) if isinstance(value, dict | list) else value
