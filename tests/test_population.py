"""Populations: every member is the same experiment as its single run (metrics, weights,
status), whatever the optimizer, loss, model graph, data split or batching; divergence and early
stopping per member; the partition into populations; ``nnlab train --seeds``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import CONFIGS
from nnlab.cli import cli
from nnlab.config import load_config
from nnlab.lifecycle import resume, train
from nnlab.metrics import Best, best_of
from nnlab.population.engine import Population
from nnlab.population.members import build_members
from nnlab.population.partition import ALONE_BY_SHAPE, partition
from nnlab.population.record import MemberRuns
from nnlab.population.run import headline, train_population, train_seeds
from nnlab.runs import metrics_text, read_metrics, read_summary

XOR = CONFIGS / "xor.yaml"
DIGITS = CONFIGS / "digits.yaml"
SMALL_DIGITS = [  # a digits network small enough for a test: 200 samples, 16 hidden units
    "data.subset=200",
    "model.layers.0.units=16",
    "training.epochs=3",
    "training.dtype=float64",
]


def configs(path: Path, common: list[str], members: list[list[str]]) -> list[dict]:
    return [load_config(path, [*common, *m]) for m in members]


def same_run(member: Path, single: Path, rtol: float = 1e-9) -> None:
    """A member's run folder holds what its single run's holds: metrics (timing apart),
    weights, status and final metrics."""
    a, b = read_metrics(member), read_metrics(single)
    assert a.columns == b.columns
    keep = [j for j, c in enumerate(a.columns) if c != "seconds"]
    assert a.values.shape == b.values.shape
    np.testing.assert_allclose(a.values[:, keep], b.values[:, keep], rtol=rtol, atol=1e-300)
    sa, sb = read_summary(member), read_summary(single)
    for key in ("status", "epochs_completed", "diverged_at", "stopped_early", "config_hash"):
        assert sa.get(key) == sb.get(key), key
    for split in ("train", "val", "test"):
        for k, v in sb.get(split, {}).items():
            assert sa[split][k] == pytest.approx(v, rel=rtol, abs=1e-300), (split, k)
    assert sa["best"].keys() == sb["best"].keys()
    for k, v in sb["best"].items():
        assert sa["best"][k]["epoch"] == v["epoch"], k
        assert sa["best"][k]["value"] == pytest.approx(v["value"], rel=rtol, abs=1e-300), k
    if (single / "model.npz").exists():
        with np.load(member / "model.npz") as za, np.load(single / "model.npz") as zb:
            assert za.files == zb.files
            for k in za.files:
                if k.startswith("param/"):
                    np.testing.assert_allclose(za[k], zb[k], rtol=rtol, atol=1e-12)
    else:
        assert not (member / "model.npz").exists()


def check_members(cfgs: list[dict], tmp_path: Path, rtol: float = 1e-9) -> list[dict]:
    """Train the configs as one population and each alone; compare; the members' summaries."""
    assert len(partition(cfgs).groups) == 1, partition(cfgs)
    paths = [tmp_path / f"member-{i}" for i in range(len(cfgs))]
    result = train_population(cfgs, paths, handle_signals=False)
    for i, cfg in enumerate(cfgs):
        single = train(cfg, run_dir=tmp_path / f"single-{i}", handle_signals=False)
        same_run(paths[i], single.run_dir, rtol)
    return result.summaries


# ---------------------------------------------------------------- members equal single runs


def test_xor_seeds_equal_their_single_runs(tmp_path):
    cfgs = configs(XOR, ["training.epochs=300", "training.dtype=float64"],
                   [[f"training.seed={s}"] for s in range(5)])  # fmt: skip
    summaries = check_members(cfgs, tmp_path)
    assert {s["population"]["members"] for s in summaries} == {5}


OPTIMIZERS = {
    "sgd": [
        ["optimizer={name: sgd, lr: 0.5, momentum: 0.9}"],
        ["optimizer={name: sgd, lr: 1.0}"],
        ["optimizer={name: sgd, lr: 0.3, momentum: 0.5, clipnorm: 0.05}"],
        [
            "optimizer={name: sgd, lr: 0.8, momentum: 0.9, weight_decay: 0.01, l2: 0.001, "
            "clipvalue: 0.01}"
        ],
    ],
    "nesterov": [
        ["optimizer={name: sgd, lr: 0.5, momentum: 0.9, nesterov: true}"],
        ["optimizer={name: sgd, lr: 0.2, momentum: 0.5, nesterov: true, l2: 0.01}"],
    ],
    "rmsprop": [
        ["optimizer={name: rmsprop, lr: 0.01}"],
        ["optimizer={name: rmsprop, lr: 0.003, rho: 0.8, momentum: 0.5, eps: 0.001}"],
        ["optimizer={name: rmsprop, lr: 0.01, clipnorm: 0.1, weight_decay: 0.01}"],
    ],
    "rmsprop_centered": [
        ["optimizer={name: rmsprop, lr: 0.01, centered: true}"],
        ["optimizer={name: rmsprop, lr: 0.005, centered: true, momentum: 0.9}"],
    ],
    "adagrad": [
        ["optimizer={name: adagrad, lr: 0.1}"],
        ["optimizer={name: adagrad, lr: 0.05, initial_accumulator: 0.1, eps: 0.0001}"],
    ],
    "adam": [
        ["optimizer={name: adam, lr: 0.01}"],
        ["optimizer={name: adam, lr: 0.003, beta1: 0.8, beta2: 0.99, eps: 0.0001, l2: 0.01}"],
        ["optimizer={name: adam, lr: 0.02, clipvalue: 0.05}"],
    ],
    "adamw": [
        ["optimizer={name: adamw, lr: 0.01}"],
        ["optimizer={name: adamw, lr: 0.005, weight_decay: 0.1, beta2: 0.9}"],
    ],
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_with_its_hyperparameters_per_member(name, tmp_path):
    members = [[*m, f"training.seed={i}"] for i, m in enumerate(OPTIMIZERS[name])]
    cfgs = configs(DIGITS, [*SMALL_DIGITS, "optimizer.schedule={name: step, step_size: 2}"],
                   members)  # fmt: skip
    check_members(cfgs, tmp_path)


@pytest.mark.parametrize(
    "loss, activation",
    [
        ("mse", "sigmoid"),
        ("mae", "linear"),
        ("hinge", "linear"),
        ("{name: categorical_crossentropy, label_smoothing: 0.1}", "softmax"),
    ],
)
def test_every_loss(loss, activation, tmp_path):
    common = [*SMALL_DIGITS, f"loss={loss}", f"model.layers.1.activation={activation}"]
    cfgs = configs(DIGITS, common, [[f"training.seed={s}"] for s in range(3)])
    check_members(cfgs, tmp_path)


def test_dropout_masks_shuffles_schedules_and_initializers_per_member(tmp_path):
    common = [
        *SMALL_DIGITS,
        "training.epochs=4",
        "model.layers.1={type: dropout, rate: 0.5}",
        "model.layers.2={type: dense, units: 10, activation: softmax}",
    ]
    members = [
        ["training.seed=0"],
        ["training.seed=1", "model.layers.1.rate=0.0", "optimizer.schedule=cosine"],
        ["training.seed=2", "model.layers.1.rate=0.2", "optimizer.lr=0.003",
         "model.layers.0.initializer={name: random_normal, stddev: 0.2}",
         "optimizer.schedule={name: multistep, milestones: [1, 3], gamma: 0.5}"],
        ["training.seed=3", "model.layers.0.initializer=glorot_uniform",
         "model.layers.0.bias_initializer={name: constant, value: 0.1}",
         "optimizer.schedule={name: exponential, gamma: 0.8}"],
    ]  # fmt: skip
    check_members(configs(DIGITS, common, members), tmp_path)


def test_different_data_splits_per_seed_and_a_fixed_split(tmp_path):
    common = [*SMALL_DIGITS, "data.subset=null", "data.validation_split=0.2"]
    cfgs = configs(DIGITS, common, [[f"training.seed={s}"] for s in range(3)])
    data = build_members(cfgs)[1]
    assert not np.array_equal(data[0].data.train.y, data[1].data.train.y)  # different samples
    check_members(cfgs, tmp_path)
    fixed = configs(
        DIGITS, [*common, "data.split_seed=7"], [[f"training.seed={s}"] for s in (0, 1)]
    )
    members = build_members(fixed)[1]
    assert members[0].data is members[1].data  # one copy, shared
    check_members(fixed, tmp_path / "fixed")


def test_graph_model_with_a_skip_connection(tmp_path):
    path = CONFIGS / "questions" / "xor_skip.yaml"
    cfgs = configs(path, ["training.epochs=400", "training.dtype=float64"],
                   [[f"training.seed={s}"] for s in range(4)])  # fmt: skip
    check_members(cfgs, tmp_path)


def test_two_heads_with_masks_and_loss_weights_per_member(tmp_path):
    path = CONFIGS / "questions" / "semi_supervised.yaml"
    common = ["training.epochs=3", "training.dtype=float64", "data.label_fraction=0.2"]
    members = [["training.seed=0"], ["training.seed=1", "model.outputs.1.weight=0.5"],
               ["training.seed=2", "model.outputs.0.weight=2.0"]]  # fmt: skip
    check_members(configs(path, common, members), tmp_path)


def test_shuffled_batches_without_shuffling_and_full_batch(tmp_path):
    for k, extra in enumerate(
        [["training.shuffle=false"], ["training.batch_size=null"], ["training.batch_size=64"]]
    ):
        cfgs = configs(DIGITS, [*SMALL_DIGITS, *extra], [[f"training.seed={s}"] for s in range(3)])
        check_members(cfgs, tmp_path / str(k))


def test_float32_members_of_larger_networks_are_their_single_runs_bit_for_bit(tmp_path):
    """Members whose products are large enough to be per-member BLAS calls (member-first)
    make the single run's calls in its order: the same numbers to the last bit."""
    path = CONFIGS / "questions" / "semi_supervised.yaml"
    common = ["training.epochs=3", "data.subset=300"]
    cfgs = configs(path, common, [[f"training.seed={s}"] for s in range(3)])
    pop = Population(*build_members(cfgs))
    assert not pop.stack.member_last
    check_members(cfgs, tmp_path, rtol=0.0)


def test_float32_members_end_where_their_single_runs_end(tmp_path):
    """float32: the stacked sums add in another order, so only the last bits may differ."""
    cfgs = configs(XOR, ["training.epochs=1000"], [[f"training.seed={s}"] for s in range(4)])
    paths = [tmp_path / f"m{i}" for i in range(4)]
    train_population(cfgs, paths, handle_signals=False)
    for i, cfg in enumerate(cfgs):
        single = train(cfg, run_dir=tmp_path / f"s{i}", handle_signals=False).summary
        assert read_summary(paths[i])["train"]["loss"] == pytest.approx(
            single["train"]["loss"], rel=1e-4
        )


# ---------------------------------------------------------------- each member its own end


def test_a_diverging_member_does_not_stop_the_others(tmp_path):
    members = [["optimizer.lr=0.5"], ["optimizer.lr=1e100"], ["optimizer.lr=0.1"]]
    common = ["training.epochs=200", "training.dtype=float64", "model.layers.0.activation=linear"]
    cfgs = configs(XOR, common, members)
    summaries = check_members(cfgs, tmp_path)
    assert [s["status"] for s in summaries] == ["completed", "diverged", "completed"]
    assert summaries[1]["diverged_at"]["epoch"] < 200
    assert not (tmp_path / "member-1" / "model.npz").exists()


def test_early_stopping_stops_members_one_by_one(tmp_path):
    common = [
        *SMALL_DIGITS,
        "data.subset=null",
        "data.validation_split=0.2",
        "training.epochs=40",
        "training.early_stopping={monitor: val_loss, patience: 2}",
        "optimizer.lr=0.02",
    ]
    cfgs = configs(DIGITS, common, [[f"training.seed={s}"] for s in range(4)])  # fmt: skip
    summaries = check_members(cfgs, tmp_path)
    ends = [s["epochs_completed"] for s in summaries]
    assert all(s["stopped_early"] for s in summaries)
    assert len(set(ends)) > 1, ends  # they stopped at different epochs
    assert all(s["early_stopping"]["restored"] for s in summaries)


def test_log_every_writes_the_rows_the_single_run_writes(tmp_path):
    """training.log_every=7 over 30 epochs: rows 7, 14, 21, 28 and the last (30), their
    seconds those of the epochs since the row before; best and last over every epoch."""
    cfgs = configs(XOR, ["training.epochs=30", "training.dtype=float64", "training.log_every=7"],
                   [[f"training.seed={s}"] for s in range(3)])  # fmt: skip
    summaries = check_members(cfgs, tmp_path)
    metrics = read_metrics(tmp_path / "member-0")
    assert metrics.column("epoch").tolist() == [7, 14, 21, 28, 30]
    total = summaries[0]["train_seconds"]  # rounded to 0.1 ms
    assert metrics.column("seconds").sum() == pytest.approx(total, abs=1e-4)


@pytest.mark.parametrize("log_every", [1, 2])
def test_an_interrupted_member_resumes_as_a_single_run(log_every, tmp_path):
    """A signal stops every member at a safe point (interrupted, files kept); --resume then
    continues a member from its checkpoint, to the numbers of an uninterrupted run."""
    cfgs = configs(DIGITS, [*SMALL_DIGITS, "training.epochs=6", "training.checkpoint_seconds=0",
                            "optimizer={name: sgd, lr: 0.1, momentum: 0.9}",
                            f"training.log_every={log_every}"],
                   [[f"training.seed={s}"] for s in range(3)])  # fmt: skip
    template, members = build_members(cfgs)
    pop = Population(template, members)
    runs = MemberRuns(pop, [tmp_path / f"m{i}" for i in range(3)])
    runs.start()
    pop.on_epoch = lambda p: p.request_stop(2) if p.epoch == 3 else None  # as Ctrl-C would
    pop.fit()
    runs.finish()
    for i, cfg in enumerate(cfgs):
        member = tmp_path / f"m{i}"
        assert (member / "checkpoint.npz").exists()  # of epoch 2 (the third is not counted)
        summary = read_summary(member)
        assert (summary["status"], summary["signal"], summary["epochs_completed"]) == (
            "interrupted", "SIGINT", 3)  # fmt: skip
        assert resume(member, handle_signals=False).summary["status"] == "completed"
        same_run(member, train(cfg, run_dir=tmp_path / f"s{i}", handle_signals=False).run_dir)


# ---------------------------------------------------------------- which trials train together


def test_partition_groups_member_wise_differences_and_says_why_others_run_alone():
    def cfg(*overrides):
        return load_config(XOR, list(overrides))

    cfgs = [
        cfg("training.seed=1"),
        cfg("training.seed=2", "optimizer.lr=0.3", "optimizer.momentum=0.5"),
        cfg("model.layers.0.units=3"),  # another shape
        cfg("model.layers.0.units=3", "model.layers.0.initializer=he_normal"),
        cfg("training.epochs=10"),  # alone: no other trial with 10 epochs
        cfg("optimizer={name: adam}"),  # another optimizer, alone
        cfg("training.log_layers=true"),
        cfg("training.seed=3", "data.split_seed=4", "model.layers.1.bias_initializer=ones"),
    ]
    part = partition(cfgs)
    assert part.groups == [[0, 1, 7], [2, 3]]
    assert part.alone[4] == ALONE_BY_SHAPE and part.alone[5] == ALONE_BY_SHAPE
    assert "log_layers" in part.alone[6]
    for override, why in [
        ("optimizer={name: rprop}", "the optimizer rprop has no population version"),
        ("optimizer.schedule={name: plateau, monitor: loss}", "follows a metric"),
    ]:
        alone = partition([cfg(override, f"training.seed={s}") for s in (1, 2)]).alone
        assert why in alone[0] and why in alone[1]
    rnn = load_config(CONFIGS / "questions" / "lstm_sequence.yaml", ["training.seed=1"])
    part = partition([rnn, {**rnn, "training": {**rnn["training"], "seed": 2}}])
    assert not part.groups and "lstm layer" in part.alone[0]


# ---------------------------------------------------------------- nnlab train --seeds


def test_train_seeds_on_the_command_line(tmp_path):
    runs = tmp_path / "runs"
    args = ["train", str(XOR), "--seeds", "0,3,14", "--set", "training.dtype=float64",
            "--runs-dir", str(runs)]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("xor: 3 seeds in ") and "populations of 3" in lines[0]
    # seed 14 stalls at 2 of 4 (configs/xor.yaml's comment); 0 and 3 learn XOR
    assert "train accuracy 1 in 2/3 seeds; 0.8333 ± 0.29 (mean ± sd of 3)" in lines[1]
    root = Path(lines[-1])
    assert sorted(p.name for p in root.iterdir()) == ["seed-000", "seed-003", "seed-014"]
    single = train(load_config(XOR, ["training.seed=14", "training.dtype=float64"]), runs,
                   handle_signals=False)  # fmt: skip
    same_run(root / "seed-014", single.run_dir)
    bad = CliRunner().invoke(cli, ["train", str(XOR), "--seeds", "0", "--seed", "1"])
    assert bad.exit_code == 2 and "not both" in bad.output


def test_train_seeds_in_several_populations_when_memory_is_short(tmp_path, monkeypatch):
    from nnlab.population import run

    cfg = load_config(XOR, ["training.epochs=50", "training.dtype=float64"])
    per = run.member_bytes(build_members([cfg])[0], shared_data=True)
    monkeypatch.setattr(run, "available_bytes", lambda: int(2.5 * per / run.MEMORY_SHARE))
    result = train_seeds(cfg, list(range(5)), tmp_path, quiet=True)
    assert result.populations == [2, 2, 1]
    for s, path in zip(result.seeds, result.paths, strict=True):
        alone = train(load_config(XOR, ["training.epochs=50", "training.dtype=float64",
                                        f"training.seed={s}"]), tmp_path / "single")  # fmt: skip
        same_run(path, alone.run_dir)


def test_headline_counts_the_seeds_that_reach_the_best_value():
    done = [{"status": "completed", "train": {"loss": 0.1, "accuracy": a}} for a in (1, 1, 0.5)]
    assert headline([*done, {"status": "diverged"}]) == (
        "train accuracy 1 in 2/4 seeds; 0.8333 ± 0.29 (mean ± sd of 3) (1 diverged)"
    )
    reg = [{"status": "completed", "test": {"loss": v}} for v in (0.2, 0.4)]
    assert headline(reg) == "test loss 0.3 ± 0.14 (mean ± sd of 2); best 0.2"


# ---------------------------------------------------------------- helpers of runs and metrics


def test_metrics_text_writes_what_metrics_log_writes(tmp_path):
    from nnlab.runs import MetricsLog

    columns = ["epoch", "loss", "accuracy", "lr", "seconds"]
    rows = [
        {"epoch": 1, "loss": 0.6931471824645996, "accuracy": None, "lr": 0.1, "seconds": 1e-05},
        {"epoch": 2, "loss": float("nan"), "accuracy": 0.75, "lr": 0.1, "seconds": 0.25},
    ]
    log = MetricsLog(tmp_path / "metrics.csv", columns)
    for r in rows:
        log.append(r)
    log.close()
    values = np.array([[np.nan if r[c] is None else r[c] for c in columns] for r in rows])
    text = (tmp_path / "metrics.csv").read_text().split("\n", 1)[1]
    assert metrics_text(columns, values) == text


def test_best_of_many_runs_at_once_equals_best_of_each():
    rng = np.random.default_rng(0)
    columns = ["epoch", "loss", "accuracy", "val_loss", "lr", "seconds"]
    values = rng.integers(0, 4, (20, 3, len(columns))) / 4.0  # ties on purpose
    values[3, 1, 2] = np.nan
    values[:, :, 0] = np.arange(1, 21)[:, None]
    best = Best(columns, 3)
    for e in range(0, 20, 7):  # in chunks, as a population hands them over
        best.add(values[e : e + 7, :, 0][:, 0], values[e : e + 7])
    for m in range(3):
        rows = [dict(zip(columns, r, strict=True)) for r in values[:, m].tolist()]
        assert best.of(m) == best_of(rows)
        assert json.dumps(best.of(m))  # plain numbers


def test_ctrl_c_stops_every_member_at_a_safe_point(tmp_path):
    """A real process: SIGINT stops the population; every seed is recorded interrupted with its
    files, exit 130; a member then resumes as a single run from its checkpoint."""
    import signal
    import subprocess
    import sys

    from conftest import ROOT, nnlab_env, wait_for

    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "nnlab", "train", str(XOR), "--seeds", "20", "-q",
         "--set", "training.epochs=10000000", "--runs-dir", str(runs)],
        cwd=ROOT, env=nnlab_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    def checkpoints():
        return len(list(runs.glob("*/seed-*/checkpoint.npz"))) == 20

    wait_for(checkpoints, what="the members' checkpoints")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    members = sorted(runs.glob("*/seed-*"))
    assert len(members) == 20
    for m in members:
        s = read_summary(m)
        assert (s["status"], s["signal"]) == ("interrupted", "SIGINT")
        assert len(read_metrics(m)) >= s["epochs_completed"] > 0
        assert (m / "model.npz").exists() and (m / "checkpoint.npz").exists()
    assert "(20 interrupted)" in out
