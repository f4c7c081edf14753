"""Search in nnlab sweep: distributions on axes, the search: section and flags, Optuna's study
in the sweep folder (told the mean over seeds), pruning through the workers, resume after a
SIGKILL with every trial exactly once."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import CONFIGS, invoke_nnlab, nnlab_env, wait_for
from nnlab.errors import ConfigError
from nnlab.sweeps import Executor, TrialOutcome, TrialTask, load_sweep, run_sweep
from nnlab.sweeps.axes import Distribution, distribution, parse_axis
from nnlab.sweeps.pruning import Steps, epoch_reporter
from nnlab.sweeps.search import from_optuna, load_study, to_optuna

optuna = pytest.importorskip("optuna")

DIGITS = (CONFIGS / "digits.yaml").read_text()
AXES = [
    "optimizer.lr=loguniform(1e-4, 1e-1)",
    "model.layers.0.units=int(8, 64, log)",
    "model.layers.0.initializer=choice(he_normal, glorot_uniform)",
]


def study_of(sweep_dir: Path, name: str = "digits"):
    return load_study(sweep_dir, name)


def runs_of(sweep_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("trials/*/summary.json"))]


# ---------------------------------------------------------------- distributions and specs


def test_distributions_parse_to_what_optuna_samples():
    assert parse_axis("optimizer.lr=loguniform(1e-4, 0.1)") == (
        "optimizer.lr",
        Distribution("loguniform", 1e-4, 0.1, log=True),
    )
    assert distribution("int(16, 512, log)", "k") == Distribution("int", 16, 512, log=True)
    assert distribution("int(1, 3)", "k") == Distribution("int", 1, 3)
    assert distribution("uniform(0, 0.5)", "k") == Distribution("uniform", 0.0, 0.5)
    init = distribution("choice(he_normal, {name: random_normal, stddev: 1})", "k")
    assert init.choices == ("he_normal", {"name": "random_normal", "stddev": 1})
    assert distribution("0.1,0.01", "k") is None  # a list, for a grid
    d = to_optuna(init)  # a mapping goes through as its JSON text, and comes back whole
    assert from_optuna(init, d.choices[1]) == {"name": "random_normal", "stddev": 1}
    assert to_optuna(distribution("int(16, 512, log)", "k")) == (
        optuna.distributions.IntDistribution(16, 512, log=True)
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("loguniform(0, 1)", "needs a > 0"),
        ("uniform(1, 1)", "needs a < b"),
        ("int(1.5, 4)", "integer bounds"),
        ("int(1, 4, lin)", "the third argument is log"),
        ("uniform(1)", "takes two finite numbers"),
        ("uniform(0, .inf)", "takes two finite numbers"),
        ("choice()", "empty argument"),
    ],
)
def test_a_bad_distribution_is_a_one_line_error_naming_the_key(text, message):
    with pytest.raises(ConfigError) as e:
        parse_axis(f"optimizer.lr={text}")
    assert message in str(e.value) and "optimizer.lr" in str(e.value)
    assert "\n" not in str(e.value)


def test_a_distribution_on_a_grid_exits_2_naming_the_key_path(tmp_path, write_config):
    path = write_config(DIGITS, "digits.yaml")
    out = invoke_nnlab("sweep", path, "-g", "optimizer.lr=loguniform(1e-4, 1e-1)", cwd=tmp_path)
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()
    assert "-g optimizer.lr" in line and "a grid takes a list" in line and "--sampler" in line
    spec = tmp_path / "s.yaml"
    spec.write_text("base: digits.yaml\naxes:\n  optimizer.lr: uniform(0.001, 0.1)\n")
    out = invoke_nnlab("sweep", spec, cwd=tmp_path)
    assert out.returncode == 2 and "axes.optimizer.lr" in out.stderr


def test_search_options_without_a_search_are_an_error(tmp_path, write_config):
    path = write_config(DIGITS, "digits.yaml")
    out = invoke_nnlab("sweep", path, "-g", "optimizer.lr=0.1,0.01", "--trials", "5", cwd=tmp_path)
    assert out.returncode == 2 and "--trials applies to a search" in out.stderr


def test_a_search_samples_a_list_as_a_choice(write_config):
    path = write_config(DIGITS, "digits.yaml")
    sweep = load_sweep(path, ["optimizer.lr=0.1,0.01"], search={"sampler": "random"})
    (axis,) = sweep.axes
    assert axis.values == Distribution("choice", choices=(0.1, 0.01))
    grid = load_sweep(path, ["optimizer.lr=0.1,0.01"])
    assert grid.search is None and len(grid.trials) == 2  # today's grid, unchanged


def test_the_search_section_and_the_command_line(tmp_path, write_config):
    write_config(DIGITS, "digits.yaml")
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "base: digits.yaml\nseeds: 3\n"
        "axes: {optimizer.lr: 'loguniform(1e-4, 1e-1)'}\n"
        "search: {trials: 40, pruner: median, objective: 'val_loss:min'}\n"
    )
    sweep = load_sweep(spec, search={"trials": 7})
    s = sweep.search
    assert (s.sampler, s.trials, s.pruner, s.seed) == ("tpe", 7, "median", 0)
    assert (s.metric, s.direction) == ("val_loss", "minimize")
    assert sweep.size == 21 and sweep.trials == []  # sampled as it runs
    with pytest.raises(ConfigError, match="a grid takes a list"):  # --sampler grid: no search
        load_sweep(spec, search={"sampler": "grid"})
    spec.write_text("base: digits.yaml\naxes: {optimizer.lr: [0.1]}\nsearch: {pruner: often}\n")
    with pytest.raises(ConfigError, match=r"search\.pruner"):
        load_sweep(spec)


def test_the_objective_must_be_a_metric_of_the_runs(tmp_path, write_config):
    path = write_config(DIGITS, "digits.yaml")
    out = invoke_nnlab(
        "sweep", path, "--sampler", "random", "-g", AXES[0], "--objective", "val_acc",
        cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 2
    assert "--objective" in out.stderr and "val_accuracy" in out.stderr


# ---------------------------------------------------------------- the study


def test_every_seed_runs_and_the_study_is_told_their_mean(tmp_path, write_config):
    path = write_config(DIGITS, "digits.yaml")
    sweep = load_sweep(
        path, AXES, ["training.epochs=3"], seeds="2", search={"sampler": "random", "trials": 3}
    )
    result = run_sweep(sweep, tmp_path / "runs", jobs=2, quiet=True)
    assert result.exit_code == 0 and result.counts == {"completed": 6}
    study = study_of(result.sweep_dir)
    trials = study.get_trials()
    assert len(trials) == 3 and all(t.state.name == "COMPLETE" for t in trials)
    runs = runs_of(result.sweep_dir)
    assert len(runs) == 6 and len({r["config_hash"] for r in runs}) == 6
    index = json.loads((result.sweep_dir / "index.json").read_text())["trials"]
    for t in trials:
        values = []
        for e in index:
            if e["search_trial"] == t.number:
                summary = json.loads((result.sweep_dir / e["run"] / "summary.json").read_text())
                values.append(summary["last"]["val_accuracy"])
                assert e["overrides"]["optimizer.lr"] == t.params["optimizer.lr"]
        assert sorted(e["seed"] for e in index if e["search_trial"] == t.number) == [0, 1]
        assert t.value == pytest.approx(np.mean(values))
    # the same command again: nothing to ask, nothing to run
    again = run_sweep(sweep, tmp_path / "runs", jobs=2, quiet=True)
    assert again.ran == 0 and len(study_of(result.sweep_dir).get_trials()) == 3


def test_a_search_continues_up_to_its_trials_and_refuses_another_spec(tmp_path, write_config):
    path = write_config(DIGITS, "digits.yaml")
    small = {"sampler": "tpe", "trials": 2}
    run_sweep(load_sweep(path, AXES, ["training.epochs=2"], search=small), tmp_path, quiet=True)
    more = load_sweep(path, AXES, ["training.epochs=2"], search={**small, "trials": 4})
    result = run_sweep(more, tmp_path, quiet=True)
    assert result.ran == 2 and result.skipped == 2
    trials = study_of(result.sweep_dir).get_trials()
    assert [t.number for t in trials] == [0, 1, 2, 3]
    params = {json.dumps(t.params, sort_keys=True) for t in trials}
    assert len(params) == 4  # the continued sampler does not draw its first trials again
    other = load_sweep(path, AXES[:1], ["training.epochs=2"], search=small)
    with pytest.raises(Exception, match="another name"):
        run_sweep(other, tmp_path, quiet=True)


def test_a_killed_write_left_in_the_journal_is_repaired(tmp_path, write_config):
    path = write_config(DIGITS, "digits.yaml")
    sweep = load_sweep(
        path, AXES[:1], ["training.epochs=2"], search={"sampler": "tpe", "trials": 2}
    )
    result = run_sweep(sweep, tmp_path, quiet=True)
    journal = result.sweep_dir / "study.journal"
    with open(journal, "ab") as f:
        f.write(b'{"op_code": 4, "worker_id": "x", "trial_id": 0, "para')  # cut by a kill
    (result.sweep_dir / "study.journal.lock").write_text("")  # and Optuna's lock, left
    sweep = load_sweep(
        path, AXES[:1], ["training.epochs=2"], search={"sampler": "tpe", "trials": 3}
    )
    again = run_sweep(sweep, tmp_path, quiet=True)
    assert again.exit_code == 0 and len(study_of(again.sweep_dir).get_trials()) == 3


def test_the_sweep_file_digits_search_is_the_issue_s_search():
    sweep = load_sweep(CONFIGS / "sweeps" / "digits_search.yaml")
    s = sweep.search
    assert (s.sampler, s.trials, len(sweep.seeds)) == ("tpe", 40, 3)
    keys = {a.key for a in sweep.axes}
    assert keys == {
        "optimizer.lr",
        "model.layers.0.units",
        "model.layers.0.initializer",
        "model.layers.1.rate",
    }


# ---------------------------------------------------------------- pruning


def test_steps_average_the_seeds_that_run_side_by_side():
    steps = Steps()
    steps.add("a", 1, 0.5)
    assert steps.ready({"a", "b"}) == []  # b has not reached epoch 1
    steps.add("b", 1, 0.7)
    steps.add("a", 2, 0.9)
    assert steps.ready({"a", "b"}) == [(1, pytest.approx(0.6))]
    assert steps.ready({"a"}) == [(2, 0.9)]  # b ended: a alone
    steps.add("b", 2, 0.1)  # told already: ignored
    assert steps.ready(set()) == []


def test_the_reporter_sends_finite_values_only():
    sent = []
    report = epoch_reporter("val_loss", lambda e, v: sent.append((e, v)))
    report({"epoch": 1, "val_loss": 0.5})
    report({"epoch": 2, "val_loss": float("nan")})
    report({"epoch": 3, "loss": 0.1})
    assert sent == [(1, 0.5)]


def test_the_median_pruner_stops_hopeless_trials_which_end_pruned(tmp_path, write_config):
    path = write_config(DIGITS, "digits.yaml")
    sweep = load_sweep(
        path,
        ["optimizer.lr=loguniform(1e-6, 1e-1)"],
        ["training.epochs=40"],
        search={"sampler": "random", "trials": 14, "pruner": "median"},
    )
    result = run_sweep(sweep, tmp_path, jobs=2, quiet=True)
    assert result.exit_code == 0
    pruned = [r for r in runs_of(result.sweep_dir) if r["status"] == "pruned"]
    assert pruned, result.counts
    assert result.counts["pruned"] == len(pruned)
    for r in pruned:
        assert r["epochs_completed"] < 40 and r["pruned_at_epoch"] == r["epochs_completed"]
        assert "signal" not in r
    states = [t.state.name for t in study_of(result.sweep_dir).get_trials()]
    assert states.count("PRUNED") == len(pruned) and "RUNNING" not in states
    # compare shows them as results
    out = invoke_nnlab("compare", result.sweep_dir, "--format", "csv", cwd=tmp_path)
    assert out.returncode == 0 and "pruned" in out.stdout


# ---------------------------------------------------------------- a real SIGKILL


def test_a_search_killed_with_sigkill_and_rerun_runs_every_trial_once(tmp_path, write_config):
    """The sweep process is killed (SIGKILL) in the middle; its workers notice and stop; the
    same command again finishes the study: 4 trials, each told once, 2 seed runs each, no
    run folder twice."""
    path = write_config(DIGITS, "digits.yaml")
    args = [
        sys.executable, "-m", "nnlab", "sweep", str(path), "--sampler", "tpe", "--trials", "4",
        "--seeds", "2", "--jobs", "2", "--runs-dir", str(tmp_path / "runs"), "--set",
        "training.epochs=150", "--set", "training.checkpoint_seconds=0.2",
    ]  # fmt: skip
    args += [word for axis in AXES for word in ("-g", axis)]
    sweep_dir = tmp_path / "runs" / "sweeps" / "digits"
    proc = subprocess.Popen(args, env=nnlab_env(), cwd=tmp_path, stderr=subprocess.PIPE)
    try:

        def some_done() -> bool:
            done = [r for r in runs_of(sweep_dir) if r.get("status") == "completed"]
            return len(done) >= 1 and len(list(sweep_dir.glob("trials/*"))) >= 3

        wait_for(some_done, timeout=120, what="a first trial run done")
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = study_of(sweep_dir).get_trials()
    assert 1 <= len(before) < 4
    assert any(t.state.name == "RUNNING" for t in before)  # asked, not told: killed
    time.sleep(0.5)
    again = subprocess.run(args, env=nnlab_env(), cwd=tmp_path, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    trials = study_of(sweep_dir).get_trials()
    assert len(trials) == 4 and all(t.state.name == "COMPLETE" for t in trials)
    assert [t.number for t in trials] == list(range(4))
    runs = runs_of(sweep_dir)
    assert len(runs) == 8 and len({r["config_hash"] for r in runs}) == 8
    assert all(r["status"] == "completed" for r in runs)
    index = json.loads((sweep_dir / "index.json").read_text())["trials"]
    per_trial = {}
    for e in index:
        per_trial.setdefault(e["search_trial"], []).append(e["seed"])
    assert {k: sorted(v) for k, v in per_trial.items()} == {n: [0, 1] for n in range(4)}


@pytest.mark.slow
def test_a_search_on_a_dask_cluster_prunes_and_tells(tmp_path, write_config):
    distributed = pytest.importorskip("distributed")
    from nnlab.sweeps.dask_executor import DaskExecutor

    path = write_config(DIGITS, "digits.yaml")
    sweep = load_sweep(
        path,
        ["optimizer.lr=loguniform(1e-6, 1e-1)"],
        ["training.epochs=150"],
        search={"sampler": "random", "trials": 10, "pruner": "median"},
    )
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        ex = DaskExecutor(cluster.scheduler_address)
        try:
            result = run_sweep(sweep, tmp_path, quiet=True, executor=ex)
        finally:
            ex.close()
    assert result.exit_code == 0
    states = [t.state.name for t in study_of(result.sweep_dir).get_trials()]
    assert len(states) == 10 and "RUNNING" not in states and "PRUNED" in states
    runs = runs_of(result.sweep_dir)  # written here from the workers' files
    assert [r["status"] for r in runs].count("pruned") == states.count("PRUNED")
    assert all(r["epochs_completed"] < 150 for r in runs if r["status"] == "pruned")


def test_a_value_of_the_space_that_cannot_run_exits_2_before_anything_runs(tmp_path, write_config):
    path = write_config(DIGITS, "digits.yaml")
    out = invoke_nnlab(
        "sweep", path, "--sampler", "tpe", "-g", "model.layers.0.units=int(0, 8)", cwd=tmp_path
    )
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()
    assert "-g model.layers.0.units: 0 cannot run" in line and "expected an integer >= 1" in line
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("sampler, pruner", [("cmaes", "asha"), ("random", "none")])
def test_every_sampler_and_pruner_runs_a_search(tmp_path, write_config, sampler, pruner):
    pytest.importorskip("cmaes")
    path = write_config(DIGITS, "digits.yaml")
    out = invoke_nnlab(
        "sweep", path, "--sampler", sampler, "--pruner", pruner, "--trials", "3", "--set",
        "training.epochs=2", "-g", AXES[0], "-g", AXES[1], "-g", AXES[2], "--runs-dir",
        tmp_path / "runs", cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert f"search {sampler}: " in out.stdout and "of 3 trials" in out.stdout
    sweep_dir = tmp_path / "runs" / "sweeps" / "digits"
    assert len(study_of(sweep_dir).get_trials()) == 3
    written = yaml.safe_load((sweep_dir / "sweep.yaml").read_text())["search"]
    assert (written["sampler"], written["pruner"]) == (sampler, pruner)


class FailSecond(Executor):
    """Trains tasks in this process; the second task submitted fails (a worker out of memory),
    or ends with ``status``."""

    def __init__(self, status: str = "failed") -> None:
        self.slots, self.count, self._done, self.status = 1, 0, [], status

    @property
    def busy(self) -> int:
        return len(self._done)

    def submit(self, task: TrialTask) -> None:
        from nnlab.lifecycle import train

        self.count += 1
        if self.count == 2:
            self._done.append(TrialOutcome(task.key, self.status, error="MemoryError: boom"))
            return
        result = train(task.config, run_dir=task.run_dir, quiet=True, handle_signals=False)
        self._done.append(TrialOutcome(task.key, result.summary["status"], result.summary))

    def wait(self, timeout: float) -> list[TrialOutcome]:
        done, self._done = self._done, []
        return done

    def interrupt(self, signum: int) -> None:
        pass

    def close(self, grace: float = 10.0) -> None:
        pass


def test_a_failed_seed_keeps_its_trial_open_until_a_rerun_tells_it(tmp_path, write_config):
    path = write_config(DIGITS, "digits.yaml")
    sweep = load_sweep(
        path, AXES, ["training.epochs=2"], seeds="2", search={"sampler": "random", "trials": 3}
    )
    first = run_sweep(sweep, tmp_path, quiet=True, executor=FailSecond())
    assert first.exit_code == 1 and first.counts == {"completed": 5, "failed": 1}
    states = [t.state.name for t in study_of(first.sweep_dir).get_trials()]
    assert states == ["RUNNING", "COMPLETE", "COMPLETE"]  # trial 0's second seed failed
    again = run_sweep(sweep, tmp_path, quiet=True)
    assert again.exit_code == 0 and again.ran == 1 and again.skipped == 5
    trials = study_of(first.sweep_dir).get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    failed = [e for e in json.loads((first.sweep_dir / "index.json").read_text())["trials"]
              if e["attempts"] == 2]  # fmt: skip
    assert len(failed) == 1 and failed[0]["search_trial"] == 0


def test_a_trial_killed_while_being_asked_is_abandoned_and_not_counted(tmp_path, write_config):
    path = write_config(DIGITS, "digits.yaml")
    args = (path, AXES[:1], ["training.epochs=2"])
    result = run_sweep(load_sweep(*args, search={"sampler": "tpe", "trials": 1}), tmp_path)
    study = study_of(result.sweep_dir)
    study.ask()  # asked, no parameter yet: what a kill inside study.ask leaves
    again = run_sweep(load_sweep(*args, search={"sampler": "tpe", "trials": 3}), tmp_path)
    assert again.exit_code == 0 and again.ran == 2
    trials = study_of(result.sweep_dir).get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert trials[1].user_attrs == {"nnlab_abandoned": True}


def test_a_search_file_s_folder_keeps_its_distributions_as_written(tmp_path, write_config):
    write_config(DIGITS, "digits.yaml")
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "base: digits.yaml\nset: {training.epochs: 1}\n"
        "axes: {optimizer.lr: 'loguniform(1e-4, 1e-1)', model.layers.0.units: [16, 32]}\n"
        "search: {sampler: random, trials: 2}\n"
    )
    result = run_sweep(load_sweep(spec), tmp_path / "runs", quiet=True)
    written = yaml.safe_load((result.sweep_dir / "sweep.yaml").read_text())
    assert written["spec"]["axes"]["optimizer.lr"] == "loguniform(1e-4, 1e-1)"
    assert written["axes"]["model.layers.0.units"] == "choice(16, 32)"  # a list, sampled
    assert written["search"]["trials"] == 2 and len(written["trials"]) == 2


def test_a_prune_decided_before_a_kill_holds_after_it(tmp_path, write_config):
    """The runner pruned a config, and was killed while its seed stopped: the next run records
    that seed pruned (not run again) and tells the trial pruned."""
    path = write_config(DIGITS, "digits.yaml")
    args = (path, AXES, ["training.epochs=2"], "2")
    search = {"sampler": "random", "trials": 2, "pruner": "median"}
    first = run_sweep(
        load_sweep(*args, search=search), tmp_path, executor=FailSecond("interrupted")
    )
    study = study_of(first.sweep_dir)
    open_trial = optuna.trial.Trial(study, study.get_trials()[0]._trial_id)
    open_trial.report(0.5, 1)
    open_trial.set_user_attr("nnlab_pruned_at", 1)  # what the killed runner had decided
    again = run_sweep(load_sweep(*args, search=search), tmp_path, quiet=True)
    assert again.exit_code == 0 and again.ran == 0
    assert [t.state.name for t in study_of(first.sweep_dir).get_trials()] == [
        "PRUNED",
        "COMPLETE",
    ]
    statuses = sorted(
        e["status"] for e in json.loads((first.sweep_dir / "index.json").read_text())["trials"]
    )
    assert statuses == ["completed", "completed", "completed", "pruned"]


def test_a_search_runs_on_as_many_workers_as_jobs(tmp_path, write_config):
    path = write_config(DIGITS, "digits.yaml")
    sweep = load_sweep(
        path, AXES, ["training.epochs=2"], seeds="2", search={"sampler": "random", "trials": 2}
    )
    result = run_sweep(sweep, tmp_path, jobs=2, quiet=True)
    workers = {
        e["worker"] for e in json.loads((result.sweep_dir / "index.json").read_text())["trials"]
    }
    assert workers == {"worker-1", "worker-2"}
