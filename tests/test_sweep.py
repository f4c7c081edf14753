"""Sweeps: grid expansion (command line and YAML), validation before anything runs, the runner's
resume and failure handling, and the real command line: parallel workers with limited BLAS
threads, a SIGTERM in the middle and a rerun, a worker killed with SIGKILL, Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import CONFIGS, ROOT, invoke_nnlab, nnlab_env, wait_for
from nnlab.config import parse_yaml
from nnlab.errors import ConfigError, RunError
from nnlab.sweeps import Executor, TrialOutcome, TrialTask, load_sweep, run_sweep
from nnlab.sweeps.folder import SweepFolder, sweep_dir_for
from nnlab.sweeps.runner import SweepResult
from nnlab.sweeps.spec import check_trials, parse_axis
from nnlab.threads import blas_env, per_worker

# A fast config: the threshold toy, 50 full-batch epochs (lr 1.0 diverges within a few).
THRESHOLD = (CONFIGS / "threshold.yaml").read_text().replace("epochs: 10000", "epochs: 50")
DIGITS = (CONFIGS / "digits.yaml").read_text()


def index_of(sweep_dir: Path) -> list[dict]:
    return json.loads((sweep_dir / "index.json").read_text())["trials"]


# ---------------------------------------------------------------- the grid


def test_grid_is_the_product_of_the_axes_times_the_seeds(write_config):
    path = write_config(DIGITS, "digits.yaml")
    sweep = load_sweep(
        path,
        grid=[
            "model.layers.0.initializer=he_normal,{name: random_normal, stddev: 1},zeros",
            "model.layers[0].units=16,32",
        ],
        sets=["training.epochs=3"],
        seeds="2",
    )
    trials = sweep.trials
    assert len(trials) == 3 * 2 * 2 == sweep.size
    assert [t.number for t in trials] == list(range(1, 13))
    # seeds innermost, then the last axis
    assert [(t.overrides["model.layers[0].units"], t.seed) for t in trials[:4]] == [
        (16, 0),
        (16, 1),
        (32, 0),
        (32, 1),
    ]
    t = trials[6]  # random_normal, 32 units, seed 0
    layer = t.config["model"]["layers"][0]
    assert layer["initializer"] == {"name": "random_normal", "mean": 0.0, "stddev": 1.0}
    assert layer["units"] == 32 and t.config["training"]["seed"] == 0
    assert t.config["training"]["epochs"] == 3  # the fixed override
    assert t.config["name"] == "digits"
    assert len({t.hash for t in trials}) == 12
    assert t.label == (
        'model.layers.0.initializer={"name":"random_normal","stddev":1} '
        "model.layers[0].units=32 seed=0"
    )


def test_yaml_axes_give_the_same_trials_as_the_command_line(tmp_path, write_config):
    write_config(DIGITS, "digits.yaml")
    (tmp_path / "sweeps").mkdir()
    spec = tmp_path / "sweeps" / "lr.yaml"
    spec.write_text(
        """
name: lr_sweep
base: ../digits.yaml
set: {training.epochs: 3}
axes:
  model.layers.0.initializer: [he_normal, {name: random_normal, stddev: 1}]
  optimizer.lr: logspace(-3, -1, 3)
seeds: [4, 7]
jobs: 2
"""
    )
    from_yaml = load_sweep(spec)
    from_cli = load_sweep(
        tmp_path / "digits.yaml",
        grid=[
            "model.layers.0.initializer=he_normal,{name: random_normal, stddev: 1}",
            "optimizer.lr=0.001,0.01,0.1",
        ],
        sets=["training.epochs=3"],
        seeds="4,7",
    )
    assert from_yaml.name == "lr_sweep" and from_yaml.jobs == 2
    assert [t.hash for t in from_yaml.trials] == [t.hash for t in from_cli.trials]
    assert len(from_yaml.trials) == 2 * 3 * 2
    assert [t.seed for t in from_yaml.trials[:2]] == [4, 7]
    # the command line adds to or replaces the file's axes
    wider = load_sweep(spec, grid=["optimizer.lr=0.5"], seeds="1")
    assert len(wider.trials) == 2 and {t.config["optimizer"]["lr"] for t in wider.trials} == {0.5}


@pytest.mark.parametrize(
    "text, values",
    [
        ("k=a,b", ["a", "b"]),
        (
            "k={name: random_normal, stddev: 1},he_normal",
            [{"name": "random_normal", "stddev": 1}, "he_normal"],
        ),
        ("k=[10, 20],[30]", [[10, 20], [30]]),
        ("k='a,b',c", ["a,b", "c"]),
        ("k=0.1, 1e-3 ,null,true", [0.1, 0.001, None, True]),
        ("k=range(3)", [0, 1, 2]),
        ("k=range(2, 8, 3)", [2, 5]),
        ("k=range(0.1, 0.4, 0.1)", [0.1, 0.2, 0.3]),
        ("k=linspace(0, 1, 5)", [0.0, 0.25, 0.5, 0.75, 1.0]),
        ("k=logspace(-3, -1, 3)", [0.001, 0.01, 0.1]),
    ],
)
def test_axis_values(text, values):
    assert parse_axis(text) == ("k", values)


@pytest.mark.parametrize(
    "text, words",
    [
        ("optimizer.lr", ["expected KEY=V1,V2"]),
        ("optimizer.lr=0.1,,0.2", ["empty value"]),
        ("optimizer.lr=range(1, 1)", ["no values"]),
        ("optimizer.lr=logspace(-3, -1)", ["logspace takes (start, stop, count)"]),
    ],
)
def test_bad_axes_are_errors(text, words):
    with pytest.raises(ConfigError) as info:
        parse_axis(text)
    for w in words:
        assert w in str(info.value)


@pytest.mark.parametrize(
    "body, words",
    [
        ("base: ../x.yaml\naxis: {optimizer.lr: [0.1]}", ["axis", "Did you mean 'axes'?"]),
        ("base: ../x.yaml\naxes: {optimizer.lr: 0.1}", ["axes.optimizer.lr", "non-empty list"]),
        ("base: ../x.yaml\naxes: {optimizer.lr: []}", ["axes.optimizer.lr", "non-empty list"]),
        ("base: ../x.yaml\nseeds: 0", ["seeds", ">= 1"]),
        ("base: ../x.yaml\nseeds: [1, 1]", ["seeds", "repeated"]),
        ("base: ../x.yaml\njobs: 0", ["jobs", ">= 1"]),
        ("base: ../nothing.yaml", ["nothing.yaml", "no such config file"]),
        ("base: ../x.yaml\naxes: {optimizer..lr: [1]}", ["axes.optimizer..lr", "key path"]),
        ("base: ../x.yaml\naxes: {optimizer.lrr: [1]}", ["optimizer.lrr (from axes", "'lr'?"]),
        ("base: ../x.yaml\nset: {training.epochs: lots}", ["training.epochs (from set", "'lots'"]),
        ("base: ../x.yaml\nseeds: 2\naxes: {training.seed: [1, 2]}", ["seeds are given twice"]),
    ],
)
def test_sweep_file_errors_name_the_key_path(tmp_path, write_config, body, words):
    write_config(THRESHOLD, "x.yaml")
    (tmp_path / "s").mkdir()
    spec = tmp_path / "s" / "sweep.yaml"
    spec.write_text(body)
    with pytest.raises(ConfigError) as info:
        load_sweep(spec).trials  # noqa: B018 (expanding validates every trial)
    for w in words:
        assert w in str(info.value), str(info.value)


def test_a_combination_that_cannot_train_names_its_trial(write_config):
    path = write_config(THRESHOLD)
    sweep = load_sweep(path, grid=["loss=mse,categorical_crossentropy"])
    with pytest.raises(ConfigError) as info:
        check_trials(sweep.trials)
    msg = str(info.value)
    assert msg.startswith("trial 2 of 2 (loss=categorical_crossentropy seed=1)")
    assert "softmax" in msg


def test_duplicate_grid_points_run_once(write_config):
    sweep = load_sweep(write_config(THRESHOLD), grid=["optimizer.lr=0.01,1e-2,0.02"])
    assert len(sweep.trials) == 2 and "same config as trial 1" in sweep.notes[0]


# ---------------------------------------------------------------- the runner, in process


class InProcess(Executor):
    """Trains each task at once in this process (a population task's members one by one).
    With ``remote``, as a worker without the sweep's file system would: in a scratch folder,
    returning the files in the outcome."""

    def __init__(self, scratch: Path, fail: tuple[str, ...] = (), remote: bool = False):
        self.slots = 2
        self.scratch, self.fail, self.remote = scratch, set(fail), remote
        self.submitted: list[str] = []
        self._done: list[TrialOutcome] = []

    @property
    def busy(self) -> int:
        return len(self._done)

    def submit(self, task: TrialTask) -> None:
        for one in task.members or [task]:
            self._train(one)

    def _train(self, task: TrialTask) -> None:
        from nnlab.lifecycle import train

        self.submitted.append(task.key)
        if task.key in self.fail:
            self._done.append(TrialOutcome(task.key, "failed", error="MemoryError: boom"))
            return
        target = self.scratch / task.key if self.remote else Path(task.run_dir)
        result = train(task.config, run_dir=target, quiet=True, handle_signals=False)
        files = {p.name: p.read_bytes() for p in target.iterdir()} if self.remote else None
        status = result.summary["status"]
        self._done.append(TrialOutcome(task.key, status, summary=result.summary, files=files))

    def wait(self, timeout: float) -> list[TrialOutcome]:
        done, self._done = self._done, []
        return done

    def interrupt(self, signum: int) -> None:
        pass

    def close(self, grace: float = 10.0) -> None:
        pass


def sweep_of(write_config, *grid: str, seeds: str | None = None):
    return load_sweep(write_config(THRESHOLD, "thr.yaml"), grid=list(grid), seeds=seeds)


def test_resume_skips_completed_trials_and_reruns_failed_ones(tmp_path, runs, write_config):
    sweep = sweep_of(write_config, "optimizer.lr=0.01,0.02,0.03")
    keys = [t.hash for t in sweep.trials]
    first = InProcess(tmp_path, fail=(keys[1],))
    result = run_sweep(sweep, runs, quiet=True, executor=first, handle_signals=False)
    assert first.submitted == keys
    assert result.exit_code == 1 and result.counts == {"completed": 2, "failed": 1}
    folder = sweep_dir_for(runs, "thr")
    entries = index_of(folder)
    assert [e["status"] for e in entries] == ["completed", "failed", "completed"]
    assert entries[1]["error"] == "MemoryError: boom"
    done = (folder / entries[0]["run"] / "summary.json").read_bytes()

    again = InProcess(tmp_path)
    result = run_sweep(sweep, runs, quiet=True, executor=again, handle_signals=False)
    assert again.submitted == [keys[1]]  # only the failed one
    assert result.exit_code == 0 and result.skipped == 2 and result.ran == 1
    assert [e["status"] for e in index_of(folder)] == ["completed"] * 3
    assert index_of(folder)[1]["attempts"] == 2
    assert (folder / entries[0]["run"] / "summary.json").read_bytes() == done

    nothing = InProcess(tmp_path)
    run_sweep(sweep, runs, quiet=True, executor=nothing, handle_signals=False)
    assert nothing.submitted == []
    spec = parse_yaml((folder / "sweep.yaml").read_text(), "sweep.yaml")  # YAML, trials as JSON
    assert [(t["hash"], t["overrides"]) for t in spec["trials"]] == [
        (t.hash, t.overrides) for t in sweep.trials
    ]
    assert spec["seeds"] is None and spec["axes"] == {"optimizer.lr": [0.01, 0.02, 0.03]}


def test_diverged_trials_are_results_and_rerun_only_when_asked(tmp_path, runs, write_config):
    sweep = sweep_of(write_config, "optimizer.lr=0.01,1.0")
    result = run_sweep(sweep, runs, quiet=True, executor=InProcess(tmp_path), handle_signals=False)
    assert result.counts == {"completed": 1, "diverged": 1} and result.exit_code == 0
    ex = InProcess(tmp_path)
    run_sweep(sweep, runs, quiet=True, executor=ex, handle_signals=False)
    assert ex.submitted == []
    ex = InProcess(tmp_path)
    run_sweep(sweep, runs, rerun=("diverged",), quiet=True, executor=ex, handle_signals=False)
    assert ex.submitted == [sweep.trials[1].hash]
    ex = InProcess(tmp_path)
    run_sweep(sweep, runs, rerun=("all",), quiet=True, executor=ex, handle_signals=False)
    assert len(ex.submitted) == 2


def test_a_remote_outcome_is_written_into_the_trial_folder(tmp_path, runs, write_config):
    sweep = sweep_of(write_config, seeds="2")
    ex = InProcess(tmp_path / "scratch", remote=True)
    result = run_sweep(sweep, runs, quiet=True, executor=ex, handle_signals=False)
    assert result.exit_code == 0
    for e in index_of(result.sweep_dir):
        run = result.sweep_dir / e["run"]
        assert sorted(p.name for p in run.iterdir()) == [
            "config.yaml",
            "metrics.csv",
            "model.npz",
            "summary.json",
        ]
        assert json.loads((run / "summary.json").read_text())["config_hash"] == e["hash"]


def test_a_damaged_index_is_rebuilt_from_the_trial_folders(tmp_path, runs, write_config):
    sweep = sweep_of(write_config, seeds="2")
    run_sweep(sweep, runs, quiet=True, executor=InProcess(tmp_path), handle_signals=False)
    folder = sweep_dir_for(runs, "thr")
    (folder / "index.json").write_text('{"trials": [')
    ex = InProcess(tmp_path)
    result = run_sweep(sweep, runs, quiet=True, executor=ex, handle_signals=False)
    assert ex.submitted == [] and result.skipped == 2
    assert [e["status"] for e in index_of(folder)] == ["completed", "completed"]


def test_one_process_at_a_time_runs_a_sweep_folder(tmp_path, runs, write_config):
    sweep = sweep_of(write_config)
    folder = SweepFolder(sweep_dir_for(runs, "thr"))
    with folder.locked(), pytest.raises(RunError, match="running already"):
        run_sweep(sweep, runs, quiet=True, executor=InProcess(tmp_path), handle_signals=False)


def test_exit_status_counts_the_failed_trials():
    def result(n: int, sig: int | None = None) -> SweepResult:
        return SweepResult(Path("x"), 200, {}, 0, 0, [{}] * n, sig)

    assert [result(n).exit_code for n in (0, 1, 7, 100, 101, 150)] == [0, 1, 7, 100, 101, 101]
    assert result(3, signal.SIGTERM).exit_code == 143
    assert result(0, signal.SIGINT).exit_code == 130


def test_blas_threads_share_the_cores():
    assert [per_worker(j, n_cores=8) for j in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]
    env = blas_env(2)
    assert env["OPENBLAS_NUM_THREADS"] == env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "2"


# ---------------------------------------------------------------- the command line


def test_bad_sweeps_exit_2_before_anything_runs(runs):
    for grid, words in [
        ("loss=mse,categorical_crossentropy", ["trial 2 of 2", "softmax output"]),
        ("optimizer.lr=0.1,fast", ["trial 2 of 2", "optimizer.lr (from -g)", "'fast'"]),
    ]:
        proc = invoke_nnlab("sweep", CONFIGS / "threshold.yaml", "-g", grid, "--runs-dir", runs)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
        for w in words:
            assert w in proc.stderr
        assert not any(runs.iterdir())


def test_print_trials_lists_the_grid_and_runs_nothing(runs):
    proc = invoke_nnlab(
        "sweep", CONFIGS / "threshold.yaml", "-g", "optimizer.lr=0.1,0.01,0.001",
        "-g", "model.layers.0.activation=linear,sigmoid", "--seeds", "2",
        "--runs-dir", runs, "--print-trials",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert "optimizer.lr" in lines[0] and "model.layers.0.activation" in lines[0]
    assert len(lines) == 2 + 12 + 1
    # the learning rates and seeds of an activation train together (one population each)
    assert lines[-1] == (
        "12 trials (3 x 2 x 2 seeds); 12 to run, 0 done; in 2 population(s) and 0 alone"
    )
    runs_as = [line.split("run ", 1)[1].strip() for line in lines[2:-1]]
    assert sorted(set(runs_as)) == ["population 1 (6 trials)", "population 2 (6 trials)"]
    assert not any(runs.iterdir())


@contextlib.contextmanager
def sweep_process(runs: Path, *args: str) -> Iterator[subprocess.Popen]:
    """``nnlab sweep ARGS`` as a real process, stopped (SIGTERM) if a test leaves it running."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "nnlab", "sweep", *args, "--runs-dir", str(runs)],
        cwd=ROOT,
        env=nnlab_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.communicate(timeout=60)


def running(sweep_dir: Path, epochs: int, min_rows: int = 1) -> list[dict]:
    """Summaries of the trials of ``epochs`` planned epochs that are training, with at least
    ``min_rows`` epochs on disk."""
    out = []
    for s in sweep_dir.glob("trials/*/summary.json"):
        try:
            summary = json.loads(s.read_text())
            rows = len((s.parent / "metrics.csv").read_text().splitlines()) - 1
        except (OSError, ValueError):
            continue
        if summary["status"] == "running" and summary["epochs_planned"] == epochs >= 1:
            out += [summary] if rows >= min_rows else []
    return out


def test_sigterm_then_rerun_completes_the_sweep_without_repeating_trials(runs):
    args = [str(CONFIGS / "digits.yaml"), "-g", "training.epochs=2,3,300,301", "--jobs", "2"]
    sweep_dir = runs / "sweeps" / "digits"
    with sweep_process(runs, *args) as proc:

        def both_long_trials() -> list[dict]:
            trials = running(sweep_dir, 300) + running(sweep_dir, 301)
            return trials if len(trials) == 2 else []

        trials = wait_for(both_long_trials)
        # the workers run with their BLAS threads limited to cores // jobs
        threads = per_worker(2, len(os.sched_getaffinity(0)))
        for s in trials:
            env = Path(f"/proc/{s['pid']}/environ").read_bytes().split(b"\0")
            assert f"OPENBLAS_NUM_THREADS={threads}".encode() in env
            assert f"OMP_NUM_THREADS={threads}".encode() in env
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert out.strip().splitlines()[-1] == str(sweep_dir)
    entries = index_of(sweep_dir)
    statuses = ["completed", "completed", "interrupted", "interrupted"]
    assert [e["status"] for e in entries] == statuses
    for e in entries[2:]:  # every unfinished run is intact and says how it ended
        run = sweep_dir / e["run"]
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "interrupted" and summary["signal"] == "SIGTERM"
        rows = (run / "metrics.csv").read_text().splitlines()
        assert len(rows) - 1 == summary["epochs_completed"] >= 1
    finished = {e["run"]: (sweep_dir / e["run"] / "summary.json").read_bytes() for e in entries[:2]}

    proc = invoke_nnlab("sweep", *args, "--runs-dir", runs)
    assert proc.returncode == 0, proc.stderr
    assert "2 of 4 trials done already (skipped), 2 to run" in proc.stderr
    # progress: a line per finished trial, with the trials done of the total and the time left
    assert "[4/4] training.epochs=" in proc.stderr and "left)" in proc.stderr
    for run, data in finished.items():  # not run again
        assert (sweep_dir / run / "summary.json").read_bytes() == data
    table = invoke_nnlab("compare", sweep_dir, "--format", "json")
    rows = json.loads(table.stdout)
    assert [(r["training.epochs"], r["status"]) for r in rows] == [
        (2, "completed"),
        (3, "completed"),
        (300, "completed"),
        (301, "completed"),
    ]


def test_a_killed_worker_fails_its_trial_and_the_sweep_goes_on(runs):
    args = [str(CONFIGS / "threshold.yaml"), "-g", "training.epochs=5,100000000,6", "-q"]
    sweep_dir = runs / "sweeps" / "threshold"
    with sweep_process(runs, *args, "--threads", "3") as proc:
        (summary,) = wait_for(lambda: running(sweep_dir, 100000000))
        env = Path(f"/proc/{summary['pid']}/environ").read_bytes().split(b"\0")
        assert b"OPENBLAS_NUM_THREADS=3" in env and b"MKL_NUM_THREADS=3" in env
        os.kill(summary["pid"], signal.SIGKILL)  # as the out-of-memory killer would
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err  # one trial failed
    assert "3 trials: 2 completed, 1 failed" in out
    entries = index_of(sweep_dir)
    assert [e["status"] for e in entries] == ["completed", "failed", "completed"]
    assert "worker process died (killed by SIGKILL)" in entries[1]["error"]
    assert "killed by SIGKILL" in err
    run = json.loads((sweep_dir / entries[1]["run"] / "summary.json").read_text())
    assert run["status"] == "failed"


def test_ctrl_c_interrupts_the_sweep(runs):
    sweep_dir = runs / "sweeps" / "threshold"
    args = [str(CONFIGS / "threshold.yaml"), "--set", "training.epochs=100000000"]
    with sweep_process(runs, *args) as proc:
        wait_for(lambda: running(sweep_dir, 100000000, min_rows=2))
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    (entry,) = index_of(sweep_dir)
    summary = json.loads((sweep_dir / entry["run"] / "summary.json").read_text())
    assert entry["status"] == "interrupted" and summary["signal"] == "SIGINT"
    assert "run the same command again to resume" in err


def test_readme_documents_every_sweep_file_key():
    from nnlab.schema import fields_of
    from nnlab.sweeps.spec import SweepFile

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Sweeps") : readme.index("## Comparing runs")]
    for f in fields_of(SweepFile):
        assert f"| `{f.name}` |" in section, f.name


# ---------------------------------------------------------------- the sweep folder, hostile


def test_a_symlinked_lock_is_not_followed(tmp_path, runs, write_config):
    sweep = sweep_of(write_config)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    folder = sweep_dir_for(runs, "thr")
    folder.mkdir(parents=True)
    (folder / ".lock").symlink_to(victim)
    with pytest.raises(RunError, match="symbolic link"):
        run_sweep(sweep, runs, quiet=True, executor=InProcess(tmp_path), handle_signals=False)
    assert victim.read_text() == "keep me"
    (folder / ".lock").unlink()
    os.link(victim, folder / ".lock")  # a hard link would be truncated through too
    proc = invoke_nnlab("sweep", write_config(THRESHOLD, "thr.yaml"), "--runs-dir", runs)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "lock is a hard link; remove it" in proc.stderr
    assert victim.read_text() == "keep me" and not (folder / "trials").exists()


def test_a_trial_folder_that_is_a_symlink_is_refused(tmp_path, runs, write_config):
    config = write_config(THRESHOLD, "thr.yaml")
    assert invoke_nnlab("sweep", config, "--seeds", "2", "--runs-dir", runs, "-q").returncode == 0
    folder = sweep_dir_for(runs, "thr")
    entries = index_of(folder)
    outside = tmp_path / "outside"
    (folder / entries[0]["run"]).rename(outside)
    (folder / entries[0]["run"]).symlink_to(outside, target_is_directory=True)
    before = sorted(p.name for p in outside.iterdir())
    proc = invoke_nnlab("sweep", config, "--seeds", "2", "--runs-dir", runs, "-q")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "a trial folder that is a symbolic link" in proc.stderr
    assert entries[0]["run"] in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in outside.iterdir()) == before


def test_temporary_files_of_killed_writers_are_removed_at_the_next_start(
    tmp_path, runs, write_config
):
    sweep = sweep_of(write_config, seeds="2")
    run_sweep(sweep, runs, quiet=True, executor=InProcess(tmp_path), handle_signals=False)
    folder = sweep_dir_for(runs, "thr")
    trial = folder / index_of(folder)[0]["run"]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], text=True,
                          capture_output=True).stdout.strip()  # fmt: skip
    stale = [
        folder / f".index.json.tmp-{os.getpid()}",  # the sweep folder: only its owner writes
        folder / f".sweep.yaml.tmp-{dead}",
        trial / f".summary.json.tmp-{dead}",  # a trial folder: its writer is gone
        trial / f".checkpoint.npz.tmp-{dead}",
    ]
    alive = trial / f".model.npz.tmp-{os.getpid()}"  # its writer may still be at work
    for p in [*stale, alive]:
        p.write_text("half a file")
    run_sweep(sweep, runs, quiet=True, executor=InProcess(tmp_path), handle_signals=False)
    assert [p.exists() for p in stale] == [False] * len(stale) and alive.exists()
    os.utime(alive, (0, 0))  # ten minutes old is stale, whoever holds the pid now
    run_sweep(sweep, runs, quiet=True, executor=InProcess(tmp_path), handle_signals=False)
    assert not alive.exists()


def test_an_index_of_an_earlier_nnlab_is_migrated(tmp_path, runs, write_config):
    """A sweep folder whose index.json an earlier nnlab wrote (one file, rewritten whole at
    every event): read once, its fields kept, and rewritten as a snapshot with a log."""
    sweep = sweep_of(write_config, "optimizer.lr=0.01,0.02,0.03")
    keys = [t.hash for t in sweep.trials]
    run_sweep(sweep, runs, quiet=True, executor=InProcess(tmp_path, fail=(keys[1],)),
              handle_signals=False)  # fmt: skip
    folder = sweep_dir_for(runs, "thr")
    entries = index_of(folder)
    for e in entries:
        e["attempts"] = 3  # what the earlier sweeps recorded
    old = {"format": "nnlab-sweep-index/1", "name": "thr", "updated": "x", "trials": entries}
    (folder / "index.json").write_text(json.dumps(old, indent=2))
    (folder / "index.log").unlink()
    ex = InProcess(tmp_path)
    result = run_sweep(sweep, runs, quiet=True, executor=ex, handle_signals=False)
    assert ex.submitted == [keys[1]] and result.exit_code == 0
    data = json.loads((folder / "index.json").read_text())
    assert data["format"] == "nnlab-sweep-index/2" and data["seq"] == 2  # start and end of one
    assert [e["attempts"] for e in data["trials"]] == [3, 4, 3]
    assert [e["started"] for e in data["trials"]][::2] == [e["started"] for e in entries][::2]
    assert (folder / "index.log").read_bytes() == b""


def test_an_interrupted_trial_continues_from_its_checkpoint(runs, tmp_path):
    """A real sweep whose parent and worker are killed with SIGKILL in the middle of a trial:
    the rerun continues the trial from its checkpoint, and its metrics.csv is then the one an
    uninterrupted run writes (timing apart)."""
    from nnlab.config import load_config
    from nnlab.lifecycle import train

    epochs = 120_000
    sets = ["--set", f"training.epochs={epochs}", "--set", "training.checkpoint_seconds=0.1"]
    args = [str(CONFIGS / "threshold.yaml"), *sets]
    sweep_dir = runs / "sweeps" / "threshold"
    with sweep_process(runs, *args, "-q") as proc:

        def checkpointed() -> list[dict]:
            trials = running(sweep_dir, epochs, min_rows=2000)
            return [s for s in trials if list(sweep_dir.glob("trials/*/checkpoint.npz"))]

        (summary,) = wait_for(checkpointed)
        os.kill(proc.pid, signal.SIGKILL)  # the sweep, then its worker: nothing says goodbye
        os.kill(summary["pid"], signal.SIGKILL)
        proc.wait(timeout=30)
    (run,) = sweep_dir.glob("trials/*")
    before = len((run / "metrics.csv").read_text().splitlines()) - 1
    # running, as a SIGKILL leaves it (on a busy machine the worker may notice the dead sweep
    # between the two kills, and stop at a safe point first: interrupted)
    assert json.loads((run / "summary.json").read_text())["status"] in ("running", "interrupted")
    assert 2000 <= before < epochs
    proc = invoke_nnlab("sweep", *args, "--runs-dir", runs)
    assert proc.returncode == 0, proc.stderr
    assert "1 continued from a checkpoint" in proc.stdout
    assert "continued from its checkpoint at epoch" in proc.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["resumed"][0]["at_epoch"] >= 1000
    assert index_of(sweep_dir)[0]["attempts"] == 2
    config = load_config(run / "config.yaml")
    whole = train(config, tmp_path / "whole", handle_signals=False).run_dir
    strip = lambda p: [r.rsplit(",", 1)[0] for r in p.read_text().splitlines()]  # noqa: E731
    assert strip(run / "metrics.csv") == strip(whole / "metrics.csv")
