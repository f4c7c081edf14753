"""Sweeps through populations: trials that differ only in member-wise keys train together, one
task per population, each trial into its ordinary run folder with the numbers of its single
run; the index says which population a trial ran in or why it ran alone; ``--population off``
keeps one task per trial; a population sweep killed with SIGKILL resumes with every trial
exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import CONFIGS, ROOT, invoke_nnlab, nnlab_env, wait_for
from nnlab.config import load_config
from nnlab.lifecycle import train
from nnlab.runs import RUN_FILES, read_metrics, read_summary
from nnlab.sweeps.index import read_index
from nnlab.sweeps.populations import OFF

XOR = CONFIGS / "xor.yaml"


def index_of(sweep_dir: Path) -> list[dict]:
    entries, _ = read_index(sweep_dir)
    return sorted(entries.values(), key=lambda e: e["number"])


def same_numbers(a: Path, b: Path, rtol: float = 1e-9) -> None:
    """Two run folders hold the same metrics (timing apart), status and final metrics."""
    ma, mb = read_metrics(a), read_metrics(b)
    assert ma.columns == mb.columns and ma.values.shape == mb.values.shape
    keep = [j for j, c in enumerate(ma.columns) if c != "seconds"]
    np.testing.assert_allclose(ma.values[:, keep], mb.values[:, keep], rtol=rtol, atol=1e-300)
    sa, sb = read_summary(a), read_summary(b)
    assert (sa["status"], sa["epochs_completed"]) == (sb["status"], sb["epochs_completed"])
    for k, v in sb["train"].items():
        assert sa["train"][k] == pytest.approx(v, rel=rtol, abs=1e-300)


def test_seeds_and_learning_rates_train_as_populations_with_their_single_runs_numbers(runs):
    args = [XOR, "--seeds", "4", "-g", "optimizer.lr=0.5,1", "--jobs", "2",
            "-s", "training.epochs=300", "-s", "training.dtype=float64"]  # fmt: skip
    on = invoke_nnlab("sweep", *args, "--runs-dir", runs / "on")
    assert on.returncode == 0, on.stderr
    assert "8 completed" in on.stdout
    assert "population 1: 4 trials" in on.stderr and "population 2: 4 trials" in on.stderr
    off = invoke_nnlab("sweep", *args, "--runs-dir", runs / "off", "--population", "off")
    assert off.returncode == 0, off.stderr
    assert "population 1" not in off.stderr
    on_dir, off_dir = runs / "on" / "sweeps" / "xor", runs / "off" / "sweeps" / "xor"
    entries = index_of(on_dir)
    assert len(entries) == 8
    # the work is split so that each of the two workers gets a population
    assert sorted(e["population"]["number"] for e in entries) == [1] * 4 + [2] * 4
    assert all(e["population"]["members"] == 4 and "alone" not in e for e in entries)
    assert {e["worker"] for e in entries} == {"worker-1", "worker-2"}
    assert all(e.get("alone") == OFF for e in index_of(off_dir))
    for e, f in zip(entries, index_of(off_dir), strict=True):
        assert e["hash"] == f["hash"]  # the same trials, in the same run folders
        assert sorted(p.name for p in (on_dir / e["run"]).iterdir()) == sorted(RUN_FILES)
        same_numbers(on_dir / e["run"], off_dir / f["run"])
        assert read_summary(on_dir / e["run"])["population"]["members"] == 4
    table = invoke_nnlab("compare", on_dir, "--group-seeds", "--format", "csv")
    assert table.returncode == 0 and len(table.stdout.strip().splitlines()) == 1 + 2


def test_trials_that_cannot_train_together_run_alone_and_the_index_says_why(runs):
    out = invoke_nnlab("sweep", XOR, "-g", "model.layers.0.units=2,3,4", "--seeds", "0,1",
                       "-g", "training.log_layers=false,true",
                       "-s", "training.epochs=20", "--runs-dir", runs)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "note: 6 trial(s) run alone" in out.stderr and "log_layers" in out.stderr
    entries = index_of(runs / "sweeps" / "xor")
    assert len(entries) == 12 and all(e["status"] == "completed" for e in entries)
    for e in entries:
        if e["overrides"]["training.log_layers"]:
            assert "layers.csv is written by single runs" in e["alone"]
            assert "population" not in e
        else:  # the two seeds of one width
            assert e["population"]["members"] == 2 and "alone" not in e
    # one seed of each width: no other trial has its shape
    printed = invoke_nnlab("sweep", XOR, "-g", "model.layers.0.units=2,3", "--seeds", "1",
                           "--runs-dir", runs, "--print-trials")  # fmt: skip
    assert printed.returncode == 0
    assert printed.stdout.count("alone: no other trial has its shape") == 2
    assert "in 0 population(s) and 2 alone" in printed.stdout


def test_a_killed_population_sweep_resumes_with_every_trial_exactly_once(runs, tmp_path):
    """SIGKILL to the sweep process while its populations train (their members have
    checkpoints): its workers notice and stop; the rerun waits for them, skips nothing twice,
    trains the unfinished members again in their populations, and every trial ends with one
    complete log and the numbers of its single run."""
    epochs = 30000
    args = [sys.executable, "-m", "nnlab", "sweep", str(XOR), "--seeds", "8", "--jobs", "2",
            "-s", f"training.epochs={epochs}", "-s", "training.log_every=100",
            "-s", "training.checkpoint_seconds=0.2", "-s", "training.dtype=float64",
            "--runs-dir", str(runs)]  # fmt: skip
    sweep_dir = runs / "sweeps" / "xor"
    first = subprocess.Popen(args, cwd=ROOT, env=nnlab_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for(lambda: len(list(sweep_dir.glob("trials/*/checkpoint.npz"))) == 8, 120)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == -signal.SIGKILL
    assert not any(e["status"] == "completed" for e in index_of(sweep_dir))
    again = subprocess.run(args, cwd=ROOT, env=nnlab_env(), capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "8 trials: 8 completed" in again.stdout
    assert "8 unfinished trial(s) train again from the start" in again.stderr
    entries = index_of(sweep_dir)
    assert len(entries) == 8 and all(e["status"] == "completed" for e in entries)
    assert all(e["attempts"] == 2 and e["population"]["members"] == 4 for e in entries)
    trials = sorted((sweep_dir / "trials").iterdir())
    assert [t.name for t in trials] == sorted(Path(e["run"]).name for e in entries)
    for run in trials:
        assert sorted(p.name for p in run.iterdir()) == sorted(RUN_FILES)  # no checkpoint left
        epochs_logged = read_metrics(run).column("epoch").tolist()
        assert epochs_logged == list(range(100, epochs + 1, 100))  # each row once
        summary = read_summary(run)
        assert summary["status"] == "completed" and summary["epochs_completed"] == epochs
    single = train(load_config(trials[0] / "config.yaml"), tmp_path / "single",
                   handle_signals=False)  # fmt: skip
    same_numbers(trials[0], single.run_dir)
    assert json.loads((sweep_dir / "index.json").read_text())["trials"]


def test_ctrl_c_stops_a_population_sweep_at_a_safe_point(runs):
    """SIGINT: the worker's population stops at the end of a step, every member recorded
    interrupted with its files; the sweep exits 130."""
    args = [sys.executable, "-m", "nnlab", "sweep", str(XOR), "--seeds", "6",
            "-s", "training.epochs=1000000", "-s", "training.log_every=1000",
            "--runs-dir", str(runs)]  # fmt: skip
    sweep_dir = runs / "sweeps" / "xor"
    proc = subprocess.Popen(args, cwd=ROOT, env=nnlab_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for(lambda: len(list(sweep_dir.glob("trials/*/metrics.csv"))) == 6, 120)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    entries = index_of(sweep_dir)
    assert [e["status"] for e in entries] == ["interrupted"] * 6
    for e in entries:
        summary = read_summary(sweep_dir / e["run"])
        assert summary["status"] == "interrupted" and summary["signal"] == "SIGINT"
        assert summary["population"]["members"] == 6
        assert (sweep_dir / e["run"] / "model.npz").exists()
