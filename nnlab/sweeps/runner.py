"""Running a sweep: its folder, its index, resume, progress and signals.

The sweep folder ``RUNS/sweeps/NAME/`` holds ``sweep.yaml`` (the spec as given, the base config
and the trial list), the index (``index.json`` and ``index.log``: one entry per trial, its
number, hash, overrides, seed, run folder, status, error, times and attempts; see
``nnlab.sweeps.index``), ``trials/`` (a run folder per trial, ``NNN-HASH``) and ``logs/`` (the
workers' stderr).

A trial's identity is the hash of its resolved config (the seed inside). Running a sweep again
skips the trials whose run folder says completed, and diverged ones too: the same config and
seed diverge again, bit for bit (``rerun=("diverged",)`` reruns them, ``("all",)`` everything).
An unfinished trial (interrupted, killed, its worker dead) whose run folder holds a checkpoint
continues from it (``nnlab.lifecycle.resume``); failed and never-started trials run again, in a
fresh run folder. Trials of an earlier, different spec of the same name stay in the folder and
the index.

A trial that finds the disk full (or the folder read-only, or not writable) stops the sweep
from starting more, which would fail the same way: the sweep ends with that trial's error on one
line (exit status 2), and the same command continues once there is room.

Trials that differ only in member-wise keys (seeds, initializers, learning rates...) train
together as populations, one task each (``nnlab.sweeps.populations``); ``population=False``
runs every trial in its own task, as does a search (its trials report each epoch).

SIGINT/SIGTERM: no new trial starts; the signal is forwarded to the running trials, which stop
at a safe point and are recorded interrupted; the sweep exits 130/143. A second signal stops
them at once, a third stops waiting for them.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from nnlab.errors import RunError
from nnlab.runs import CHECKPOINT, DONE, Status, alive, mark_ended, now, read_summary
from nnlab.sweeps.display import SweepProgress
from nnlab.sweeps.executor import (
    Executor,
    LocalExecutor,
    TrialOutcome,
    TrialTask,
    materialize,
    population_task,
)
from nnlab.sweeps.folder import SweepFolder, sweep_dir_for
from nnlab.sweeps.index import IndexWriter, read_index
from nnlab.sweeps.populations import Unit, record_unit, units_to_run
from nnlab.sweeps.spec import Sweep, Trial
from nnlab.threads import per_worker

#: a trial's file could not be written for one of these: the next trials would fail the same way
STOPPING_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES)

ORPHAN_WAIT = 30.0  # seconds to wait for a trial still trained by a killed sweep's worker


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
    bookkeeping: float = 0.0  # seconds of the sweep's own work: planning, index, folders
    resumed: int = 0  # unfinished trials continued from their checkpoint

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


class Stopwatch:
    """Adds up the seconds spent inside ``with`` blocks."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._t0 = 0.0

    def __enter__(self) -> Stopwatch:
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds += time.perf_counter() - self._t0


# ---------------------------------------------------------------- planning


@dataclass
class Plan:
    entries: dict[str, dict]  # hash -> index entry, every trial the folder holds
    todo: list[Trial]
    skipped: list[Trial]
    resume: set[str] = field(default_factory=set)  # hashes of todo trials with a checkpoint


def plan(
    sweep: Sweep,
    folder: SweepFolder,
    rerun: tuple[str, ...] = (),
    found: dict[str, tuple[str, dict]] | None = None,
) -> Plan:
    """Which trials of the grid to run: those without a completed (or diverged) run folder;
    unfinished ones whose folder holds a checkpoint of the same config continue from it.
    ``found``: the folder's trials (``SweepFolder.scan``), if read already."""
    entries, warnings = read_index(folder.path)
    folder.warnings += warnings
    found = folder.scan() if found is None else found
    for h, (run, summary) in found.items():
        e = entries.setdefault(h, {"hash": h, "overrides": {}, "seed": summary.get("seed")})
        e["run"] = run
        e["status"] = summary.get("status", Status.FAILED)
        for key in ("started", "finished"):  # an index rebuilt from the folders keeps them
            e.setdefault(key, summary.get(key))
        e.setdefault("attempts", 1)
    _number(entries)
    next_number = max((e["number"] for e in entries.values()), default=0) + 1
    width = max(3, len(str(next_number + len(sweep.trials))))
    p = Plan(entries, [], [])
    for trial in sweep.trials:
        e = entries.get(trial.hash)
        if e is None:
            e = entries[trial.hash] = {"number": next_number, "hash": trial.hash}
            e["run"] = f"trials/{next_number:0{width}d}-{trial.hash}"
            e["status"] = "pending"
            next_number += 1
        e["overrides"], e["seed"] = trial.overrides, trial.seed
        status = found[trial.hash][1].get("status") if trial.hash in found else None
        keep = (status in (Status.COMPLETED, Status.PRUNED) and "all" not in rerun) or (
            status == Status.DIVERGED and not set(rerun) & {"diverged", "all"}
        )
        if keep:
            e["status"] = status
            p.skipped.append(trial)
            continue
        if e.get("status") in DONE:  # rerun on request
            e["status"] = "pending"
        p.todo.append(trial)
        unfinished = status is not None and status not in DONE
        if unfinished and (folder.path / e["run"] / CHECKPOINT).is_file():
            p.resume.add(trial.hash)
    return p


def _number(entries: dict[str, dict]) -> None:
    """Give every entry without a number one: from its folder's name if free, else the next."""
    numbers = {e["number"] for e in entries.values() if _is_number(e.get("number"))}
    for e in entries.values():
        if not _is_number(e.get("number")):
            head = Path(str(e.get("run", ""))).name.split("-", 1)[0]
            n = int(head) if head.isdigit() and int(head) not in numbers else None
            e["number"] = n if n is not None else max(numbers, default=0) + 1
            numbers.add(e["number"])


def _is_number(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def wait_for_orphans(
    folder: SweepFolder, found: dict[str, tuple[str, dict]], timeout: float = ORPHAN_WAIT
) -> bool:
    """Trials (of ``found``) still trained by the worker of a killed sweep (it notices and
    stops at a safe point within an epoch): wait for them, so that no two processes write one
    run folder. Returns whether there were any (then the folder is to be read again)."""
    here = socket.gethostname()  # another host's process cannot be asked; we hold the lock
    busy = [(rel, s) for rel, s in found.values() if s.get("host") == here and alive(s)]
    waited = bool(busy)
    deadline = time.monotonic() + timeout
    while busy:
        if time.monotonic() > deadline:
            rel, s = busy[0]
            raise RunError(
                f"{folder.path / rel}: still trained by process {s.get('pid')} (a worker of a "
                "sweep that was killed?); stop it, or wait for it, and run the command again"
            )
        time.sleep(0.2)
        busy = [(rel, s) for rel, s in busy if alive(_summary(folder.path / rel))]
    return waited


def _summary(run: Path) -> dict:
    try:
        return read_summary(run)
    except RunError:
        return {}


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
    population: bool = True,
) -> SweepResult:
    """Run the trials of ``sweep`` that are not done yet (see the module docstring) in ``jobs``
    worker processes (default: the sweep's), each with ``threads`` BLAS threads (default:
    cores // jobs), or with ``executor``; ``population``: trials that can train together do."""
    folder = SweepFolder(sweep_dir_for(runs_dir, sweep.name))
    started = time.perf_counter()
    clock = Stopwatch()
    with folder.locked():
        with clock:
            folder.prepare()
            found = folder.scan(clean=True)
            if wait_for_orphans(folder, found):
                found = folder.scan()
            search, p = _plan(sweep, folder, tuple(rerun), found)
            folder.write_spec(sweep)
            index = IndexWriter(folder.path, sweep.name)
            index.open(p.entries)
        progress = SweepProgress(
            sweep.name, len(sweep.trials), len(p.skipped), len(p.todo), stream or sys.stderr, quiet
        )
        progress.announce(folder.warnings + sweep.notes)
        stop: int | None = None
        resumed, storage, left = 0, None, 0
        try:
            if p.todo or (search is not None and search.more()):
                jobs = jobs or sweep.jobs
                # BLAS threads follow the jobs asked for, also when fewer trials are left
                threads = threads or per_worker(jobs)
                workers = _workers(jobs, p, search)
                ex = executor or LocalExecutor(workers, log_dir=folder.logs_dir, threads=threads)
                loop = _Loop(folder, index, p, ex, progress, clock, search, population)
                stop = loop.run(handle_signals)
                resumed, storage, left = loop.resumed, loop.storage, len(loop.queue)
        finally:
            with clock:
                index.close()
        progress.close()
        if storage is not None:
            raise RunError(
                f"{storage}; sweep {sweep.name} stopped with {left} trials not started: run "
                "the same command again once the disk has room"
            )
        seconds = time.perf_counter() - started
        return _result(sweep, folder, p, progress, stop, seconds, clock, resumed)


def _plan(sweep: Sweep, folder: SweepFolder, rerun: tuple, found: dict) -> tuple[Any, Plan]:
    """The plan, and a search's driver (``nnlab.sweeps.search``: its study opened, the trials
    it sampled before in the plan; None for a grid)."""
    if sweep.search is None:
        return None, plan(sweep, folder, rerun, found)
    from nnlab.sweeps.search import SearchDriver

    search = SearchDriver(sweep, folder.path)
    p = plan(sweep, folder, rerun, found)
    search.adopt(p)
    return search, p


def _workers(jobs: int, p: Plan, search: Any) -> int:
    """The jobs asked for, at most one per run to do (a search's runs not sampled yet count)."""
    return max(1, min(jobs, len(p.todo) + (search.runs_left() if search is not None else 0)))


def _result(
    sweep: Sweep,
    folder: SweepFolder,
    p: Plan,
    progress: SweepProgress,
    stop: int | None,
    seconds: float,
    clock: Stopwatch,
    resumed: int,
) -> SweepResult:
    grid = [p.entries[t.hash] for t in sweep.trials]
    counts: dict[str, int] = {}
    for e in grid:
        counts[e["status"]] = counts.get(e["status"], 0) + 1
    unfinished = (Status.FAILED,) if stop else (Status.FAILED, Status.INTERRUPTED, "pending")
    return SweepResult(
        folder.path,
        total=len(grid),
        counts=counts,
        skipped=len(p.skipped),
        ran=progress.finished,
        failures=[e for e in grid if e["status"] in unfinished],
        signal=stop,
        seconds=seconds,
        bookkeeping=clock.seconds,
        resumed=resumed,
    )


class _Loop:
    """Submit, wait, record: the trials of one invocation of a sweep."""

    def __init__(
        self,
        folder: SweepFolder,
        index: IndexWriter,
        p: Plan,
        ex: Executor,
        progress: SweepProgress,
        clock: Stopwatch,
        search: Any = None,
        population: bool = True,
    ):
        self.folder, self.index, self.entries, self.resume = folder, index, p.entries, p.resume
        self.search = search  # a search's driver: asks, tells and prunes trials (None: grid)
        self.ex, self.progress, self.clock = ex, progress, clock
        with clock:  # trials that train together (a search's report each epoch: alone)
            units, notes = units_to_run(p.todo, p.resume, ex.slots, population and not search)
        for note in notes:
            progress.say(f"note: {note}")
        self.unit_of = {t.hash: u for u in units for t in u.trials}
        self.queue = deque(t for u in units for t in u.trials)  # a population's in a row
        self.running: dict[str, tuple[Trial, float]] = {}
        self.signals: list[int] = []
        self.forwarded = 0
        self.resumed = 0  # trials that continued from their checkpoint
        self.storage: str | None = None  # the error of a trial that found the disk full

    def run(self, handle_signals: bool) -> int | None:
        """Until every trial ended (or a signal stopped the sweep); returns that signal."""
        previous = {}
        if handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, lambda signum, _: self.signals.append(signum))
        try:
            while (
                self.running
                or (self.queue and not self.signals and self.storage is None)
                or self._searching()
            ):
                if self._forward_signals():
                    break
                if self.search is not None:
                    self.search.tick(self)
                self._start()
                self.progress.running = len(self.running)
                for outcome in self.ex.wait(0.2):
                    self._end(outcome)
                self.progress.tick()
        finally:
            self._close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.signals[0] if self.signals else None

    def _searching(self) -> bool:
        return self.search is not None and self.storage is None and self.search.more(self)

    def _forward_signals(self) -> bool:
        """Pass a new signal on to the running trials; True at the third: stop waiting."""
        if len(self.signals) <= self.forwarded:
            return False
        self.forwarded = len(self.signals)
        if self.forwarded == 1:
            self.progress.say(
                f"{signal.Signals(self.signals[0]).name}: stopping; the running trials stop "
                "at a safe point (again: at once)"
            )
        if self.forwarded >= 3:
            return True
        self.ex.interrupt(self.signals[-1])
        return False

    def _start(self) -> None:
        """Submit trials while the executor has free slots."""
        while (
            not self.signals
            and self.storage is None
            and self.queue
            and self.ex.busy < self.ex.slots
        ):
            unit = self.unit_of.get(self.queue[0].hash)
            trials = [self.queue.popleft() for _ in (unit.trials if unit else [None])]
            tasks = [self._task(trial, unit) for trial in trials]
            self.ex.submit(tasks[0] if len(tasks) == 1 else population_task(tasks))
            if unit is not None and unit.number is not None:
                self.progress.say(f"population {unit.number}: {len(tasks)} trials")

    def _task(self, trial: Trial, unit: Unit | None) -> TrialTask:
        """A trial starts: its index entry and run folder made ready; its task."""
        resume = trial.hash in self.resume
        with self.clock:
            e = self.entries[trial.hash]
            run_dir = self.folder.path / e["run"]
            if not resume and os.path.lexists(run_dir):
                shutil.rmtree(run_dir)  # an unfinished or replaced attempt
            e.update(status=Status.RUNNING, error=None, started=now(), finished=None)
            e["attempts"] = e.get("attempts", 0) + 1
            if unit is not None:
                record_unit(e, unit)
            self.index.record(e)
        self.running[trial.hash] = (trial, time.perf_counter())
        report = self.search.report if self.search is not None else None
        return TrialTask(trial.hash, trial.config, str(run_dir), resume, report)

    def _end(self, outcome: TrialOutcome) -> None:
        if outcome.key not in self.running:
            return
        trial, t0 = self.running.pop(outcome.key)
        e = self.entries[trial.hash]
        with self.clock:
            _record(self.folder, e, outcome, time.perf_counter() - t0, self.signals)
            self.index.record(e)
        self.progress.running = len(self.running)
        self.resumed += outcome.resumed
        if self.search is not None:
            self.search.ended(self, trial, e)
        if outcome.errno in STOPPING_ERRNOS and self.storage is None:
            self.storage = outcome.error or "a trial found the disk full"
        if outcome.note:
            self.progress.say(f"note: {trial.label}: {outcome.note}")
        metric = headline(outcome.summary)
        self.progress.trial(trial.label, e["status"], metric, e.get("seconds"), e.get("error"))

    def _close(self) -> None:
        """Stop the executor; trials it did not finish are recorded as stopped."""
        self.ex.close(grace=1.0 if len(self.signals) >= 3 else 10.0)
        with self.clock:
            for key in self.running:
                e = self.entries[key]
                e.update(
                    status=Status.INTERRUPTED if self.signals else Status.FAILED, finished=now()
                )
                e["error"] = "the sweep stopped before the trial ended"
                mark_ended(self.folder.path / e["run"], e["status"], e["error"])
                self.index.record(e)
            for trial in self.queue:
                self.entries[trial.hash]["status"] = "pending"


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
