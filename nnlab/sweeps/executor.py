"""Where trials run: an ``Executor`` takes trial tasks and hands back their outcomes.

The sweep runner only submits, waits, interrupts and closes, so another backend fits behind the
same four calls; a search also reads the per-epoch ``reports`` of tasks that ask for them
(``TrialTask.report``) and may ``prune`` a running task (``nnlab.sweeps.pruning``).
``LocalExecutor`` runs trials in worker processes on this machine, each worker
started with its BLAS threads limited (``blas_env``) before NumPy is imported in it, and each
writing its run folder directly. A backend whose workers share no file system (a Dask cluster)
trains in a scratch folder on the worker and returns the run folder's files in
``TrialOutcome.files``; the runner writes them where the task said (``materialize``).

A task whose ``resume`` is set names a run folder holding an unfinished attempt: the worker
continues it from its checkpoint (``worker.train_trial``; a remote backend sends the folder's
files along, ``run_files``). The runner matches outcomes to trials by ``key`` alone and records
each as it comes, and counts ``busy`` against ``slots``: an executor that trains several trials
in one unit of work (a population) takes one slot for them and may return their outcomes
together or one by one.

A population task (``TrialTask.members``) is such a unit: trials that differ only in
member-wise keys (``nnlab.population.partition``), trained together in one process by the
population engine, each into its own run folder; its outcomes come back together, one per
member, matched by their own keys.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import nnlab
from nnlab.errors import RunError
from nnlab.runs import Status
from nnlab.threads import blas_env, per_worker


@dataclass
class TrialTask:
    """A trial to run: its identity, its resolved config, and where its run folder goes.
    ``resume``: the run folder holds an unfinished attempt with a checkpoint; continue it."""

    key: str  # the trial's hash (a population's: its first member's, prefixed)
    config: dict
    run_dir: str
    resume: bool = False
    report: str | None = None  # a metric to report each epoch (a search with a pruner)
    members: list[TrialTask] = field(default_factory=list)  # a population's trials

    @property
    def keys(self) -> list[str]:
        """The keys of the trials this task runs: its members', or its own."""
        return [m.key for m in self.members] if self.members else [self.key]

    def message(self) -> dict:
        """The task as JSON-able data (what a worker process reads)."""
        if self.members:
            return {"key": self.key, "members": [m.message() for m in self.members]}
        return {"key": self.key, "config": self.config, "run_dir": self.run_dir,
                "resume": self.resume, "report": self.report}  # fmt: skip


def population_task(members: list[TrialTask]) -> TrialTask:
    """One task that trains ``members`` (fresh trials) together as a population."""
    return TrialTask(f"population-{members[0].key}", {}, "", members=list(members))


@dataclass
class TrialOutcome:
    """How a trial ended. ``status``: completed, diverged, failed or interrupted."""

    key: str
    status: str
    summary: dict | None = None  # the run's summary.json, when the run got that far
    error: str | None = None
    files: dict[str, bytes] | None = None  # a remote worker's run folder, for the client to write
    worker: str = ""  # which worker ran it
    note: str | None = None  # e.g. why a trial to resume started over
    resumed: bool = False  # continued from its checkpoint
    errno: int | None = None  # a file it could not write: a full disk, a read-only folder


class Executor(ABC):
    """Runs trial tasks, at most ``slots`` at a time."""

    slots: int

    @abstractmethod
    def submit(self, task: TrialTask) -> None:
        """Start a task; only called while ``busy < slots``."""

    @property
    @abstractmethod
    def busy(self) -> int:
        """Tasks submitted whose outcome has not been returned yet."""

    @abstractmethod
    def wait(self, timeout: float) -> list[TrialOutcome]:
        """Outcomes of tasks that ended, waiting up to ``timeout`` seconds for one."""

    @abstractmethod
    def interrupt(self, signum: int) -> None:
        """Ask running tasks to stop at a safe point (their outcome says interrupted)."""

    @abstractmethod
    def close(self, grace: float = 10.0) -> None:
        """Stop the workers, waiting up to ``grace`` seconds for running tasks to end; tasks
        still running then are lost (the runner marks them)."""

    def reports(self) -> list[tuple[str, int, float]]:
        """(task key, epoch, value) reported by running tasks since the last call."""
        return []

    def prune(self, key: str) -> None:
        """Ask a running task to stop at a safe point as pruned (an executor that cannot:
        the task runs to its end)."""
        return None


def materialize(outcome: TrialOutcome, run_dir: Path) -> None:
    """Write a remote outcome's files into ``run_dir`` (each atomically)."""
    if outcome.files:
        materialize_files(outcome.files, run_dir)


def materialize_files(files: dict[str, bytes], run_dir: Path) -> None:
    """Write a run folder's files (name -> bytes, as ``run_files`` gives) into ``run_dir``."""
    from nnlab.files import atomic_write

    run_dir.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        if Path(name).name != name or name.startswith("."):
            raise ValueError(f"a run file name must be a plain name, got {name!r}")
        atomic_write(run_dir / name, data)


def run_files(run_dir: Path) -> dict[str, bytes]:
    """The files of a run folder, name -> bytes (temporary files left out), to send to or
    from a worker without the sweep's file system."""
    return {
        p.name: p.read_bytes()
        for p in run_dir.iterdir()
        if p.is_file() and not p.is_symlink() and not p.name.startswith(".")
    }


def outcomes(msg: dict, worker: str = "") -> list[TrialOutcome]:
    """A worker's result message as outcomes: a trial's, or each member's of a population
    (``{"key": ..., "outcomes": [...]}``)."""
    return [
        TrialOutcome(
            key=m["key"],
            status=m["status"],
            summary=m.get("summary"),
            error=m.get("error"),
            files=m.get("files"),
            worker=m.get("worker") or worker,
            note=m.get("note"),
            resumed=bool(m.get("resumed")),
            errno=m.get("errno"),
        )
        for m in msg.get("outcomes", [msg])
    ]


# ---------------------------------------------------------------- local processes


def _open_log(path: Path) -> IO[bytes]:
    """A worker's log (its stderr), appended to, never through a symbolic link."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as e:
        why = "it is a symbolic link" if e.errno == errno.ELOOP else (e.strerror or str(e))
        raise RunError(f"{path}: cannot open the worker's log ({why}); remove it") from None
    return os.fdopen(fd, "ab")


@dataclass
class _Worker:
    name: str
    proc: subprocess.Popen
    log: IO[bytes] | None
    task: TrialTask | None = None
    pending: bytes = b""  # read from its result channel, not yet a whole line


class LocalExecutor(Executor):
    """Trials in ``jobs`` worker processes (``python -m nnlab.sweeps.worker``), started as
    needed and reused. Workers run in their own session: a Ctrl-C at the terminal reaches the
    sweep only, which forwards it (``interrupt``). A worker that dies (killed, out of memory)
    fails its trial and is replaced by a fresh one."""

    def __init__(self, jobs: int, log_dir: Path | None = None, threads: int | None = None):
        self.slots = max(1, jobs)
        self.threads = threads or per_worker(self.slots)
        self.log_dir = log_dir
        self._workers: list[_Worker] = []
        self._sel = selectors.DefaultSelector()
        self._count = 0
        self._stopping = False
        self._reports: list[tuple[str, int, float]] = []

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(blas_env(self.threads))
        root = str(Path(nnlab.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        return env

    def _spawn(self) -> _Worker:
        self._count += 1
        name = f"worker-{self._count}"
        log = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log = _open_log(self.log_dir / f"{name}.log")
        proc = subprocess.Popen(
            [sys.executable, "-m", "nnlab.sweeps.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log if log is not None else subprocess.DEVNULL,
            env=self._env(),
            start_new_session=True,
        )
        worker = _Worker(name, proc, log)
        self._sel.register(proc.stdout, selectors.EVENT_READ, worker)
        self._workers.append(worker)
        return worker

    @property
    def busy(self) -> int:
        return sum(w.task is not None for w in self._workers)

    def submit(self, task: TrialTask) -> None:
        if self._stopping:
            raise RuntimeError("submit after interrupt")
        for w in [w for w in self._workers if w.task is None and w.proc.poll() is not None]:
            self._reap(w)  # died while idle
        worker = next((w for w in self._workers if w.task is None), None)
        if worker is None:
            worker = self._spawn()
        worker.task = task
        line = json.dumps(task.message())
        try:
            worker.proc.stdin.write(line.encode() + b"\n")
            worker.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the worker is gone; wait() reports its trial as failed

    def wait(self, timeout: float) -> list[TrialOutcome]:
        if not self._workers:
            time.sleep(timeout)
            return []
        out: list[TrialOutcome] = []
        for sel_key, _ in self._sel.select(timeout):
            worker: _Worker = sel_key.data
            # what the pipe holds now, split in lines here (a buffered readline could keep a
            # second line back where select no longer sees it)
            data = os.read(worker.proc.stdout.fileno(), 1 << 16)
            worker.pending += data
            *lines, worker.pending = worker.pending.split(b"\n")
            alive = bool(data)
            for line in lines:
                alive = alive and self._line(worker, line, out)
            if not alive:  # end of file (or garbage): the worker has died
                out.extend(self._reap(worker))
        return out

    def _line(self, worker: _Worker, line: bytes, out: list[TrialOutcome]) -> bool:
        """A line of a worker's result channel: a report or its task's outcome (False: not a
        line of the protocol)."""
        try:
            msg = json.loads(line)
        except ValueError:
            return False
        if not isinstance(msg, dict) or worker.task is None or msg.get("key") != worker.task.key:
            return False
        if "report" in msg:
            self._reports.append((msg["key"], *msg["report"]))
            return True
        out += outcomes(msg, worker.name)  # a trial's, or each member's of a population
        worker.task = None
        if self._stopping:
            self._retire(worker)
        return True

    def _reap(self, worker: _Worker) -> list[TrialOutcome]:
        self._sel.unregister(worker.proc.stdout)
        try:
            code = worker.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            worker.proc.kill()
            code = worker.proc.wait()
        self._workers.remove(worker)
        worker.proc.stdout.close()
        if worker.proc.stdin is not None:
            with contextlib.suppress(OSError):
                worker.proc.stdin.close()
        if worker.log is not None:
            worker.log.close()
        if worker.task is None:
            return []
        how = (
            f"killed by {signal.Signals(-code).name}"
            if code < 0 and -code in signal.Signals._value2member_map_
            else f"exit status {code}"
        )
        tail = self._log_tail(worker.name)
        status = Status.INTERRUPTED if self._stopping else Status.FAILED
        error = f"the worker process died ({how})" + (f": {tail}" if tail else "")
        return [TrialOutcome(k, status, error=error, worker=worker.name) for k in worker.task.keys]

    def _log_tail(self, name: str) -> str:
        if self.log_dir is None:
            return ""
        try:
            lines = (self.log_dir / f"{name}.log").read_text(errors="replace").splitlines()
        except OSError:
            return ""
        lines = [ln for ln in lines if ln.strip()]
        return lines[-1].strip()[:300] if lines else ""

    def reports(self) -> list[tuple[str, int, float]]:
        out, self._reports = self._reports, []
        return out

    def prune(self, key: str) -> None:
        from nnlab.sweeps.pruning import PRUNE_SIGNAL

        for w in self._workers:
            if w.task is not None and w.task.key == key:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w.proc.pid, PRUNE_SIGNAL)

    def interrupt(self, signum: int) -> None:
        self._stopping = True
        for w in list(self._workers):
            if w.task is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w.proc.pid, signum)
            else:
                self._retire(w)

    def _retire(self, worker: _Worker) -> None:
        """An idle worker: close its input, so that it exits."""
        with contextlib.suppress(OSError):
            worker.proc.stdin.close()

    def close(self, grace: float = 10.0) -> None:
        for w in self._workers:
            self._retire(w)
        deadline = time.time() + grace
        for w in list(self._workers):
            try:
                w.proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(w.proc.stdout)
            w.proc.stdout.close()
            if w.log is not None:
                w.log.close()
        self._workers.clear()
        self._sel.close()
