"""Trials on an existing Dask cluster (``nnlab sweep ... --cluster tcp://HOST:PORT``).

``DaskExecutor`` connects a ``distributed.Client`` to the cluster's scheduler and submits one
task per trial. A worker trains the trial in a scratch folder of its own (its Dask local
directory) and returns the run folder's files with the outcome; the runner writes them into the
sweep folder (``materialize``), so the workers need no file system in common with this machine,
and ``nnlab compare`` reads the result as it reads a local sweep. A population task is one Dask
task: its members train together on one worker and come back with a run folder each. A worker
that dies (killed, out of memory, its machine gone) is noticed by the scheduler, which runs its
trials again on another worker: each trial's outcome still arrives once. Ctrl-C/SIGTERM set a
Dask ``Variable`` that every running trial watches: each stops at a safe point and returns its
files, recorded interrupted. A search's trial with a pruner puts its per-epoch objective on a
Dask ``Queue`` that the runner reads (``reports``), and watches a ``Variable`` holding the keys
the runner pruned (``prune``): its trial then stops at a safe point, recorded pruned. Every
worker needs nnlab (the same version) and its dependencies installed.
"""

from __future__ import annotations

import contextlib
import queue
import shutil
import tempfile
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

import nnlab
from nnlab.errors import ConfigError
from nnlab.runs import Status
from nnlab.sweeps.executor import (
    Executor,
    TrialOutcome,
    TrialTask,
    materialize_files,
    outcomes,
    run_files,
)

INSTALL = "pip install 'nnlab[dask]'"


class DaskExecutor(Executor):
    """Trials as tasks of a Dask cluster, as many at a time as its workers have threads."""

    def __init__(self, address: str, timeout: float | None = None):
        """Connect to the scheduler at ``address``; ``timeout`` in seconds (default: Dask's
        ``distributed.comm.timeouts.connect``, 30 s), also to wait for a first worker."""
        where = f"--cluster {address}"
        try:
            import dask
            import distributed
        except ImportError as e:
            raise ConfigError(
                f"running trials on a Dask cluster needs dask.distributed ({e}): {INSTALL}",
                source=where,
            ) from None
        if timeout is None:
            timeout = dask.utils.parse_timedelta(
                dask.config.get("distributed.comm.timeouts.connect"), "s"
            )
        self.address = address
        self.notes: list[str] = []
        try:
            self.client = distributed.Client(address, timeout=timeout, set_as_default=False)
        except (OSError, ValueError, TimeoutError) as e:
            raise ConfigError(
                f"cannot reach a Dask scheduler there ({' '.join(str(e).split())}); start one "
                "(dask scheduler) and its workers (dask worker ADDRESS), or check the address",
                source=where,
            ) from None
        try:
            self.client.wait_for_workers(1, timeout=timeout)
        except TimeoutError:
            self.client.close()
            raise ConfigError(
                f"the cluster has no worker after {timeout:g} s; start some with "
                f"dask worker {address}",
                source=where,
            ) from None
        self._check_workers(where)
        tag = uuid.uuid4().hex
        self._stop = distributed.Variable(f"nnlab-stop-{tag}", client=self.client)
        self._pruned_var = distributed.Variable(f"nnlab-prune-{tag}", client=self.client)
        self._reports_queue = distributed.Queue(f"nnlab-reports-{tag}", client=self.client)
        self._pruned: list[str] = []
        self._futures: dict[str, Any] = {}  # trial key -> its Dask future
        self._members: dict[str, list[str]] = {}  # a population task's key -> its trials'
        self._slots = 1
        self._slots_at = 0.0
        self._interrupts = 0

    def _check_workers(self, where: str) -> None:
        """Every worker must run nnlab; a different version is worth a note."""
        found = self.client.run(_worker_versions, on_error="return")
        broken = {w: v for w, v in found.items() if isinstance(v, BaseException)}
        if broken:
            worker, error = next(iter(broken.items()))
            self.client.close()
            raise ConfigError(
                f"{len(broken)} of {len(found)} workers cannot run nnlab ({worker}: "
                f"{type(error).__name__}: {error}); install nnlab {nnlab.__version__} on every "
                "worker (pip install nnlab, or the same checkout)",
                source=where,
            )
        for worker, version in found.items():
            if version != nnlab.__version__:
                self.notes.append(
                    f"worker {worker} runs nnlab {version}, this machine {nnlab.__version__}"
                )

    @property
    def slots(self) -> int:
        """The threads of the cluster's workers now (at least 1), checked once a second."""
        now = time.monotonic()
        if now - self._slots_at > 1.0:
            with contextlib.suppress(Exception):  # keep the last count if the scheduler is busy
                self._slots = max(1, sum(self.client.nthreads().values()))
            self._slots_at = now
        return self._slots

    @property
    def busy(self) -> int:
        return len(self._futures)

    def submit(self, task: TrialTask) -> None:
        payload: dict[str, Any] = {
            "key": task.key,
            "config": task.config,
            "run": Path(task.run_dir).name,
        }
        if task.members:
            payload["members"] = [
                {"key": m.key, "config": m.config, "run": Path(m.run_dir).name}
                for m in task.members
            ]
            self._members[task.key] = task.keys
        if task.resume:  # the unfinished attempt travels to the worker, which continues it
            payload["files"] = run_files(Path(task.run_dir))
        if task.report:
            payload["report"] = task.report
            payload["channels"] = [self._reports_queue.name, self._pruned_var.name]
        self._futures[task.key] = self.client.submit(
            run_trial,
            payload,
            self._stop.name,
            key=f"nnlab-trial-{task.key}-{uuid.uuid4().hex[:8]}",
            pure=False,
        )

    def wait(self, timeout: float) -> list[TrialOutcome]:
        if not self._futures:
            time.sleep(timeout)
            return []
        deadline = time.monotonic() + timeout
        while True:  # f.done() is local state, updated by the client's thread
            done = [k for k, f in self._futures.items() if f.done()]
            if done or time.monotonic() >= deadline:
                return [o for k in done for o in self._outcomes(k, self._futures.pop(k))]
            time.sleep(0.02)

    def _outcomes(self, key: str, future: Any) -> list[TrialOutcome]:
        """The outcomes of a task that ended: its trial's, or each member's."""
        keys = self._members.pop(key, [key])
        if future.status == "finished":
            try:
                return outcomes(future.result())
            except Exception as e:  # the result could not be fetched (the scheduler went away)
                return [TrialOutcome(k, Status.FAILED, error=f"{type(e).__name__}: {e}")
                        for k in keys]  # fmt: skip
        status = Status.INTERRUPTED if self._interrupts else Status.FAILED
        if self.client.status != "running":  # cancelled because the scheduler went away
            error = f"lost the Dask scheduler at {self.address}"
        elif future.status == "cancelled":
            error = "the trial was cancelled on the cluster"
        else:
            e = future.exception()
            error = f"{type(e).__name__}: {e}"
            if type(e).__name__ == "KilledWorker":
                error = f"every worker that ran it died ({e})"
        return [TrialOutcome(k, status, error=error) for k in keys]

    def reports(self) -> list[tuple[str, int, float]]:
        out = []
        with contextlib.suppress(Exception):  # nothing queued (or the scheduler is busy)
            if self._reports_queue.qsize():
                out = [tuple(r) for r in self._reports_queue.get(batch=True)]
        return out

    def prune(self, key: str) -> None:
        if key in self._futures:
            self._pruned.append(key)
            self._pruned_var.set(list(self._pruned))

    def interrupt(self, signum: int) -> None:
        """The first call asks every trial to stop at a safe point; a second cancels them."""
        self._interrupts += 1
        if self._interrupts == 1:
            self._stop.set(int(signum))
        else:
            self.client.cancel(list(self._futures.values()), force=True)

    def close(self, grace: float = 10.0) -> None:
        with contextlib.suppress(Exception):
            if self._futures:
                self._stop.set(2)  # trials still running stop and let their worker go
                self.client.cancel(list(self._futures.values()), force=True)
            self._stop.delete()
            self._pruned_var.delete()
            self._reports_queue.close()
        self._futures.clear()
        self._members.clear()
        with contextlib.suppress(Exception):
            self.client.close(timeout=grace)


def _worker_versions() -> str:
    return nnlab.__version__


def _members(members: list[dict], scratch: Path, signals: queue.SimpleQueue, worker) -> list:
    """On a worker: a population task's members trained together in ``scratch``; an outcome
    per member with its run folder's files."""
    from nnlab.sweeps.worker import train_members

    tasks = [{**m, "run_dir": str(scratch / m["run"])} for m in members]
    out = train_members(tasks, handle_signals=False, stop=signals)
    for o, t in zip(out, tasks, strict=True):
        o["worker"] = worker.address
        if Path(t["run_dir"]).is_dir():
            o["files"] = run_files(Path(t["run_dir"]))
    return out


def _stopped_first(task: dict, outcome: dict) -> dict:
    """The outcome of a task (a trial, or each member of a population) that the sweep stopped
    before it started."""
    first = {"status": Status.INTERRUPTED, "error": "the sweep stopped first"}
    if "members" in task:
        return {**outcome, "outcomes": [{"key": m["key"], **first} for m in task["members"]]}
    return {**outcome, **first}


def run_trial(task: dict, stop_name: str) -> dict:
    """On a worker: train one trial in a scratch folder; the outcome with the folder's files.

    ``task`` holds the trial's key, resolved config and run folder name; ``stop_name`` names
    the Variable that a stopping sweep sets to its signal number."""
    import distributed

    from nnlab.errors import NnlabError
    from nnlab.runs import read_summary
    from nnlab.sweeps.pruning import mark_pruned
    from nnlab.sweeps.worker import train_trial

    worker = distributed.get_worker()
    stop = distributed.Variable(stop_name, client=distributed.get_client())
    outcome: dict[str, Any] = {"key": task["key"], "worker": worker.address}
    signals: queue.SimpleQueue = queue.SimpleQueue()
    finished = threading.Event()

    def watch() -> None:  # the Variable, polled, to the run's stop queue
        while not finished.is_set():
            try:
                signals.put(int(stop.get(timeout=0.5)))
                return
            except TimeoutError:
                continue
            except Exception:  # the scheduler is gone: so is this trial's result
                return

    with contextlib.suppress(TimeoutError):
        stop.get(timeout=0.01)  # set already: the sweep stopped while the trial was queued
        return _stopped_first(task, outcome)
    scratch = Path(tempfile.mkdtemp(prefix="nnlab-trial-", dir=worker.local_directory))
    run_dir = scratch / task["run"]
    if task.get("files"):
        materialize_files(task["files"], run_dir)
    threading.Thread(target=watch, daemon=True).start()
    options, pruned = _search_channels(task, signals, finished)
    try:
        if "members" in task:  # a population: its members' outcomes, each with its files
            return {**outcome, "outcomes": _members(task["members"], scratch, signals, worker)}
        try:
            resume = bool(task.get("files"))
            result, note, resumed = train_trial(
                task["config"], run_dir, resume, handle_signals=False, stop=signals, **options
            )
            summary = mark_pruned(run_dir) if pruned.is_set() else result.summary
            outcome.update(status=summary["status"], error=None, note=note, resumed=resumed)
        except NnlabError as e:
            outcome.update(status=Status.FAILED, error=str(e))
        except Exception as e:
            traceback.print_exc()  # the worker's log
            outcome.update(status=Status.FAILED, error=f"{type(e).__name__}: {e}")
        if run_dir.is_dir():
            with contextlib.suppress(NnlabError):
                outcome["summary"] = read_summary(run_dir)
            outcome["files"] = run_files(run_dir)
    finally:
        finished.set()
        shutil.rmtree(scratch, ignore_errors=True)
    return outcome


def _search_channels(
    task: dict, signals: queue.SimpleQueue, finished: threading.Event
) -> tuple[dict[str, Any], threading.Event]:
    """On a worker, for a search's trial with a pruner: the ``report`` option that puts each
    epoch's objective on the runner's queue, and a thread that watches the pruned keys (a
    prune stops the run as a signal would, and sets the event returned)."""
    pruned = threading.Event()
    if not task.get("report"):
        return {}, pruned
    import distributed

    from nnlab.sweeps.pruning import PRUNE_SIGNAL, epoch_reporter

    client = distributed.get_client()
    queue_name, prune_name = task["channels"]
    reports = distributed.Queue(queue_name, client=client)
    prunes = distributed.Variable(prune_name, client=client)
    key = task["key"]

    def watch() -> None:
        while not finished.is_set():
            try:
                keys = prunes.get(timeout=0.5)
            except TimeoutError:
                continue
            except Exception:  # the scheduler is gone
                return
            if key in keys:
                pruned.set()
                signals.put(int(PRUNE_SIGNAL))
                return
            time.sleep(0.2)

    threading.Thread(target=watch, daemon=True).start()
    send = epoch_reporter(task["report"], lambda e, v: reports.put([key, e, v]))
    return {"report": send}, pruned
