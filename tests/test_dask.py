"""Sweeps on a Dask cluster: a real scheduler and two workers on 127.0.0.1 (``dask scheduler``,
``dask worker`` processes, each in a folder of its own), a sweep through them with one worker
killed in the middle, Ctrl-C, and the errors for a cluster that cannot be reached or a missing
dask."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest import CONFIGS, invoke_nnlab, nnlab_env, run_nnlab, wait_for
from nnlab.config import load_config
from nnlab.errors import ConfigError
from nnlab.lifecycle import train
from nnlab.runs import RUN_FILES, read_metrics
from nnlab.sweeps.index import read_index

distributed = pytest.importorskip("distributed")

# the `dask` command beside this Python (python -m dask is the same command line)
_SCRIPT = Path(sys.executable).parent / "dask"
DASK = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "dask"]
TRIAL_EPOCHS = 40000  # the threshold toy: about a second per trial


class Cluster:
    """A scheduler and workers as subprocesses, each in its own session and folder."""

    def __init__(self, root: Path):
        self.root = root
        self.env = nnlab_env(
            OMP_NUM_THREADS="1",
            OPENBLAS_NUM_THREADS="1",
            DASK_TEMPORARY_DIRECTORY=str(root),  # the scheduler's scratch space, not /tmp's
        )
        self.procs: list[subprocess.Popen] = []
        file = root / "scheduler.json"
        args = ["--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file"]
        self._start(["scheduler", *args, str(file)], "scheduler")
        self.address = wait_for(
            lambda: file.exists() and json.loads(file.read_text() or "{}").get("address"),
            what="the scheduler",
        )
        for i in range(2):
            self._worker(f"w{i}")
        self.client = distributed.Client(self.address, timeout=30, set_as_default=False)
        self.client.wait_for_workers(2, timeout=60)
        self.pids = self.client.run(os.getpid)  # worker address -> its process id
        workers = self.client.scheduler_info()["workers"]
        self.names = {address: w["name"] for address, w in workers.items()}

    def _start(self, args: list[str], name: str, cwd: Path | None = None) -> subprocess.Popen:
        with open(self.root / f"{name}.log", "wb") as log:  # the process keeps its own copy
            proc = subprocess.Popen(
                [*DASK, *args],
                stdout=log,
                stderr=log,
                env=self.env,
                cwd=cwd or self.root,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def _worker(self, name: str) -> subprocess.Popen:
        folder = self.root / name  # a worker's own folder: nothing is shared through it
        folder.mkdir()
        options = ["--nthreads", "1", "--no-nanny", "--no-dashboard", "--name", name]
        args = ["worker", self.address, *options, "--local-directory", str(folder)]
        return self._start(args, name, cwd=folder)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close(timeout=5)
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def cluster(tmp_path) -> Iterator[Cluster]:
    root = tmp_path / "cluster"
    root.mkdir()
    c = Cluster(root)
    try:
        yield c
    finally:
        c.close()


def start_sweep(runs: Path, cluster: Cluster, *args: str) -> subprocess.Popen:
    command = ["sweep", str(CONFIGS / "threshold.yaml"), "--runs-dir", str(runs)]
    command += ["--set", f"training.epochs={TRIAL_EPOCHS}", "--cluster", cluster.address]
    return subprocess.Popen(
        [sys.executable, "-m", "nnlab", *command, *args],
        env=nnlab_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def index_of(sweep_dir: Path) -> list[dict]:
    """The sweep's index as it is now: the snapshot and the events logged since."""
    entries, _ = read_index(sweep_dir)
    return sorted(entries.values(), key=lambda e: e["number"])


def test_a_sweep_survives_a_killed_worker_with_every_trial_once(cluster, runs, tmp_path):
    sweep_dir = runs / "sweeps" / "threshold"
    grid = ["-g", "optimizer.lr=0.01,0.02,0.03", "--seeds", "2", "--population", "off"]
    proc = start_sweep(runs, cluster, *grid, "-q")
    try:
        # mid-sweep: a trial has completed, and a worker is training another one
        wait_for(lambda: any(e["status"] == "completed" for e in index_of(sweep_dir)))
        victim = wait_for(
            lambda: next((w for w, keys in cluster.client.processing().items() if keys), None)
        )
        os.kill(cluster.pids[victim], signal.SIGKILL)  # no goodbye: as a machine that dies
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "sweep threshold: 6 trials: 6 completed" in out
    entries = index_of(sweep_dir)
    assert len(entries) == 6 and len({e["hash"] for e in entries}) == 6
    assert all(e["status"] == "completed" and e["attempts"] == 1 for e in entries)
    (survivor,) = set(cluster.pids) - {victim}
    assert sum(e["worker"] == survivor for e in entries) >= 4  # it ran the killed one's trial
    trials = sorted((sweep_dir / "trials").iterdir())
    assert [t.name for t in trials] == sorted(Path(e["run"]).name for e in entries)
    for trial, e in zip(trials, sorted(entries, key=lambda e: e["run"]), strict=True):
        assert sorted(p.name for p in trial.iterdir()) == sorted(RUN_FILES)
        summary = json.loads((trial / "summary.json").read_text())
        assert summary["config_hash"] == e["hash"] and summary["run"] == trial.name
        assert summary["epochs_completed"] == TRIAL_EPOCHS
    # the workers trained in scratch folders of their own, and cleaned them up
    assert not list((tmp_path / "cluster" / cluster.names[survivor]).rglob("*.npz"))
    # the numbers are those of a local run, bit for bit (timing apart)
    local = train(load_config(trials[0] / "config.yaml"), tmp_path / "local", handle_signals=False)
    strip = lambda p: [r.rsplit(",", 1)[0] for r in p.read_text().splitlines()]  # noqa: E731
    assert strip(local.run_dir / "metrics.csv") == strip(trials[0] / "metrics.csv")
    table = invoke_nnlab("compare", sweep_dir, "--format", "csv", "--group-seeds")
    assert table.returncode == 0 and len(table.stdout.strip().splitlines()) == 1 + 3


def test_ctrl_c_stops_the_cluster_trials_at_a_safe_point(cluster, runs):
    sweep_dir = runs / "sweeps" / "threshold"
    args = ["--seeds", "3", "--set", f"training.epochs={TRIAL_EPOCHS * 50}"]
    proc = start_sweep(runs, cluster, *args, "--population", "off")
    try:
        wait_for(lambda: sum(map(len, cluster.client.processing().values())) == 2)
        time.sleep(0.5)  # into their epochs
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    entries = index_of(sweep_dir)
    assert sorted(e["status"] for e in entries) == ["interrupted", "interrupted", "pending"]
    for e in entries[:2]:
        run = sweep_dir / e["run"]
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "interrupted" and summary["signal"] == "SIGINT"
        rows = (run / "metrics.csv").read_text().splitlines()
        assert len(rows) - 1 == summary["epochs_completed"] > 0
    # the workers are free again: the trials stopped, they were not left running there
    wait_for(lambda: not any(cluster.client.processing().values()), timeout=10)


def test_populations_on_the_cluster_come_back_as_a_run_folder_per_trial(cluster, runs, tmp_path):
    """Two populations (one per worker thread), each one Dask task trained on a worker in its
    scratch folder; every member's run folder is written here, its numbers its single run's."""
    sweep_dir = runs / "sweeps" / "threshold"
    args = ["--seeds", "6", "--set", "training.dtype=float64", "-q"]
    out, err = start_sweep(runs, cluster, *args).communicate(timeout=120)
    assert "sweep threshold: 6 trials: 6 completed" in out, err
    entries = index_of(sweep_dir)
    assert sorted(e["population"]["number"] for e in entries) == [1, 1, 1, 2, 2, 2]
    assert len({e["worker"] for e in entries}) == 2  # a population on each worker
    for e in entries:
        run = sweep_dir / e["run"]
        assert sorted(p.name for p in run.iterdir()) == sorted(RUN_FILES)
        assert json.loads((run / "summary.json").read_text())["population"]["members"] == 3
    run = sweep_dir / entries[4]["run"]
    local = train(load_config(run / "config.yaml"), tmp_path / "local", handle_signals=False)
    a, b = read_metrics(run), read_metrics(local.run_dir)
    keep = [j for j, c in enumerate(a.columns) if c != "seconds"]
    np.testing.assert_allclose(a.values[:, keep], b.values[:, keep], rtol=1e-9)
    assert not list((tmp_path / "cluster").rglob("*.npz"))  # the scratch folders are gone


def test_an_unreachable_scheduler_is_one_line_and_nothing_is_written(runs):
    # a real process: Dask reads its settings (this connect timeout) from the environment when
    # it is first imported
    args = ["--runs-dir", runs, "--cluster", "tcp://127.0.0.1:9"]
    out = run_nnlab(
        "sweep", CONFIGS / "threshold.yaml", *args, DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="1s"
    )
    assert out.returncode == 2
    assert out.stderr.startswith("error: --cluster tcp://127.0.0.1:9: cannot reach a Dask")
    assert out.stderr.count("\n") == 1 and list(runs.iterdir()) == []


def test_without_dask_the_error_says_what_to_install(monkeypatch):
    from nnlab.sweeps.dask_executor import DaskExecutor

    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails
    with pytest.raises(ConfigError) as info:
        DaskExecutor("tcp://127.0.0.1:8786")
    assert "pip install 'nnlab[dask]'" in str(info.value)
    assert str(info.value).startswith("--cluster tcp://127.0.0.1:8786: ")


def test_an_interrupted_cluster_trial_continues_from_its_checkpoint(cluster, runs, tmp_path):
    """Interrupted on the cluster, the trial's files come back; the rerun sends them to a
    worker, which continues from the checkpoint: the log is the uninterrupted one."""
    sweep_dir = runs / "sweeps" / "threshold"
    epochs = ["--set", f"training.epochs={TRIAL_EPOCHS * 3}"]
    args = [*epochs, "--set", "training.checkpoint_seconds=0.1"]
    proc = start_sweep(runs, cluster, *args)
    try:
        wait_for(lambda: sum(map(len, cluster.client.processing().values())) == 1)
        time.sleep(0.8)  # a few checkpoints on the worker
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    (run,) = sweep_dir.glob("trials/*")
    assert (run / "checkpoint.npz").is_file()
    again = start_sweep(runs, cluster, *args)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert "1 continued from a checkpoint" in out and "continued from its checkpoint" in err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["resumed"][0]["at_epoch"] > 0
    local = train(load_config(run / "config.yaml"), tmp_path / "local", handle_signals=False)
    strip = lambda p: [r.rsplit(",", 1)[0] for r in p.read_text().splitlines()]  # noqa: E731
    assert strip(local.run_dir / "metrics.csv") == strip(run / "metrics.csv")
