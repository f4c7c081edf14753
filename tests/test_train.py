"""Training: the seed questions' claims, determinism, divergence, early stopping, the run folder."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from conftest import CONFIGS, invoke_nnlab
from nnlab.config import load_config
from nnlab.experiment import build, evaluate
from nnlab.lifecycle import train
from nnlab.metrics import MetricsTally
from nnlab.nn import LAYERS
from nnlab.runs import load_model, read_metrics
from nnlab.train import Batches, Trainer

# The seed question's starting point and its printed trajectory (TensorFlow, float32).
SEED_W, SEED_B = 0.75648874, -0.9745011329650879
TF_FIRST_LOSS, TF_LAST_LOSS = 0.28319069743156433, 0.20618653297424316
TF_LAST_W, TF_LAST_B = 2.42539024, -2.1028473377227783


def threshold_run(activation: str, w: float, b: float, **kw):
    cfg = load_config(
        CONFIGS / "threshold.yaml",
        [
            f"model.layers.0.activation={activation}",
            f"model.layers.0.initializer={{name: constant, value: {w}}}",
            f"model.layers.0.bias_initializer={{name: constant, value: {b}}}",
            *[f"{k}={v}" for k, v in kw.items()],
        ],
    )
    exp = build(cfg)
    trainer = Trainer(exp, log=[])  # a list collects the rows
    trainer.fit()
    return exp, trainer


@pytest.mark.parametrize("w, b", [(SEED_W, SEED_B), (-1.0, 0.0), (3.0, -2.0), (0.0, 5.0)])
def test_linear_output_with_mse_ends_at_three_fifths_whatever_the_start(w, b):
    exp, _ = threshold_run("linear", w, b)
    assert evaluate(exp, "train")["accuracy"] == pytest.approx(0.6)
    # gradient descent on a convex loss: it ends at the least-squares line
    X = np.c_[exp.data.train.X[:, 0], np.ones(5)]
    lsq = np.linalg.lstsq(X, exp.data.train.y.astype(float), rcond=None)[0]
    W = exp.model.layers[0].params
    np.testing.assert_allclose([W["W"][0, 0], W["b"][0]], lsq, atol=2e-3)


def test_sigmoid_output_with_mse_from_the_seed_start_reaches_four_fifths():
    exp, trainer = threshold_run("sigmoid", SEED_W, SEED_B)
    assert evaluate(exp, "train")["accuracy"] == pytest.approx(0.8)
    rows = trainer.log
    # the same trajectory the user printed: loss before the first and the last update
    assert rows[0]["loss"] == pytest.approx(TF_FIRST_LOSS, rel=1e-6)
    assert rows[-1]["loss"] == pytest.approx(TF_LAST_LOSS, rel=1e-6)
    W = exp.model.layers[0].params
    assert W["W"][0, 0] == pytest.approx(TF_LAST_W, rel=1e-3)
    assert W["b"][0] == pytest.approx(TF_LAST_B, rel=1e-3)


@pytest.mark.parametrize("w, b", [(-1.0, 0.0), (0.0, 0.0), (0.5, -4.0)])
def test_sigmoid_output_with_mse_from_other_starts_stops_at_three_fifths(w, b):
    exp, _ = threshold_run("sigmoid", w, b)
    assert evaluate(exp, "train")["accuracy"] == pytest.approx(0.6)


def test_threshold_baseline_beside_the_result(runs):
    result = train(load_config(CONFIGS / "threshold.yaml"), runs)
    rule = result.summary["baselines"]["threshold"]
    assert (rule["feature"], rule["op"], rule["threshold"], rule["train"]) == (0, ">", 1.0, 0.8)
    assert result.summary["train"]["accuracy"] == pytest.approx(0.6)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_xor_2_2_1_reaches_full_accuracy(activation, runs):
    overrides = [f"model.layers.0.activation={activation}"]
    if activation == "tanh":
        overrides += ["training.seed=1"]
    result = train(load_config(CONFIGS / "xor.yaml", overrides), runs)
    assert result.summary["status"] == "completed"
    assert result.summary["train"]["accuracy"] == 1.0


def test_digits_config_reaches_97_percent(runs):
    # its time (goal: under a minute) is measured by bench/bench_cli.py
    proc = invoke_nnlab("train", CONFIGS / "digits.yaml", "--runs-dir", runs, "--quiet")
    assert proc.returncode == 0, proc.stderr
    run_dir = proc.stdout.strip().splitlines()[-1]
    summary = json.loads((runs / run_dir.split("/")[-1] / "summary.json").read_text())
    assert summary["test"]["accuracy"] >= 0.97


def _metrics_without_timing(path):
    rows = list(csv.reader(io.StringIO(path.read_text())))
    col = rows[0].index("seconds")
    return [r[:col] + r[col + 1 :] for r in rows]


def test_same_config_and_seed_give_byte_identical_metrics(runs, write_config):
    cfg = write_config((CONFIGS / "digits.yaml").read_text())
    args = [
        "--set",
        "training.epochs=4",
        "--set",
        "model.layers.1={type: dropout, rate: 0.3}",
        "--set",
        "model.layers.2={type: dense, units: 10, activation: softmax}",
    ]
    dirs = []
    for _ in range(2):
        proc = invoke_nnlab("train", cfg, "--runs-dir", runs, "-q", *args)
        assert proc.returncode == 0, proc.stderr
        dirs.append(runs / proc.stdout.strip().splitlines()[-1].split("/")[-1])
    a, b = (_metrics_without_timing(d / "metrics.csv") for d in dirs)
    assert len(a) == 5 and a == b
    assert (dirs[0] / "config.yaml").read_bytes() == (dirs[1] / "config.yaml").read_bytes()
    wa, wb = np.load(dirs[0] / "model.npz"), np.load(dirs[1] / "model.npz")
    for k in wa.files:
        np.testing.assert_array_equal(wa[k], wb[k])
    # and a different seed gives different numbers
    proc = invoke_nnlab("train", cfg, "--runs-dir", runs, "-q", "--seed", "1", *args)
    c = _metrics_without_timing(
        runs / proc.stdout.strip().splitlines()[-1].split("/")[-1] / "metrics.csv"
    )
    assert c != a


def test_a_diverging_run_is_recorded_as_diverged(runs):
    # least squares with x up to 9: gradient descent with lr 1 overshoots by x34 a step
    proc = invoke_nnlab(
        "train", CONFIGS / "threshold.yaml", "--runs-dir", runs, "-q", "--set", "optimizer.lr=1.0"
    )
    assert proc.returncode == 3
    assert "Traceback" not in proc.stderr and "diverged" in proc.stdout
    run_dir = runs / proc.stdout.strip().splitlines()[-1].split("/")[-1]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged_at"]["epoch"] >= 1
    assert len(read_metrics(run_dir)) == summary["epochs_completed"]


def test_early_stopping_restores_the_best_weights(runs):
    cfg = load_config(
        CONFIGS / "digits.yaml",
        [
            "training.epochs=200",
            "training.early_stopping={monitor: val_loss, patience: 3}",
            "optimizer.lr=0.01",
        ],
    )
    result = train(cfg, runs)
    s = result.summary
    assert s["stopped_early"] and s["epochs_completed"] < 200
    best = s["best"]["val_loss"]
    assert s["early_stopping"]["best_epoch"] == best["epoch"]
    assert s["epochs_completed"] == best["epoch"] + 3
    assert s["val"]["loss"] == pytest.approx(best["value"], rel=1e-5)  # restored


def test_early_stopping_monitor_must_be_a_metric(runs):
    from nnlab.errors import ConfigError

    cfg = load_config(CONFIGS / "digits.yaml", ["training.early_stopping.monitor=val_los"])
    with pytest.raises(ConfigError, match="Did you mean 'val_loss'"):
        train(cfg, runs)
    cfg = load_config(CONFIGS / "xor.yaml", ["training.early_stopping.monitor=val_loss"])
    with pytest.raises(ConfigError, match=r"Allowed: loss, accuracy$"):
        train(cfg, runs)
    assert not any(runs.iterdir())  # no half-made run folder


def test_run_folder_files_and_model_reload(runs):
    result = train(load_config(CONFIGS / "digits.yaml", ["training.epochs=3"]), runs)
    d = result.run_dir
    assert {p.name for p in d.iterdir()} == {
        "config.yaml",
        "metrics.csv",
        "summary.json",
        "model.npz",
    }
    rows = read_metrics(d).rows()
    header = (d / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    s = result.summary
    assert s["status"] == "completed" and s["seed"] == 0
    assert s["last"]["epoch"] == 3 and s["best"]["val_accuracy"]["epoch"] in (1, 2, 3)
    assert set(s["versions"]) >= {"nnlab", "numpy", "python"}
    model, meta = load_model(d)
    X = result.experiment.data.test.X
    np.testing.assert_array_equal(model.predict(X), result.experiment.model.predict(X))
    assert meta["n_classes"] == 10 and meta["output_activation"] == "softmax"


def test_float64_training(runs):
    result = train(load_config(CONFIGS / "xor.yaml", ["training.dtype=float64"]), runs)
    assert result.experiment.model.theta.dtype == np.float64
    assert result.summary["train"]["accuracy"] == 1.0


def test_inverted_dropout_keeps_the_expected_activation():
    layer = LAYERS.create({"type": "dropout", "rate": 0.4})
    layer.rng = np.random.default_rng(0)
    X = np.ones((2000, 50), np.float32)
    out = layer.forward(X, training=True)
    assert np.mean(out == 0) == pytest.approx(0.4, abs=0.01)
    assert set(np.unique(out)) == {0.0, np.float32(1 / 0.6)}
    assert out.mean() == pytest.approx(1.0, abs=0.01)  # same as evaluation
    assert layer.forward(X, training=False) is X
    plain = LAYERS.create({"type": "dropout", "rate": 0.4, "scale": False})
    plain.rng = np.random.default_rng(0)
    assert plain.forward(X, training=True).mean() == pytest.approx(0.6, abs=0.01)


def test_mismatched_output_units_name_the_layer(runs):
    from nnlab.errors import ConfigError

    cfg = load_config(CONFIGS / "digits.yaml", ["model.layers.1.units=3"])
    with pytest.raises(ConfigError) as info:
        train(cfg, runs)
    assert info.value.path == "model.layers[1].units" and "10 classes" in str(info.value)


def test_cross_entropy_needs_its_output_activation(runs):
    from nnlab.errors import ConfigError

    cfg = load_config(CONFIGS / "digits.yaml", ["model.layers.1.activation=linear"])
    with pytest.raises(ConfigError, match="needs a softmax output"):
        train(cfg, runs)


@pytest.mark.parametrize(
    "loss, act, units",
    [
        ("mse", "sigmoid", 10),
        ("mae", "linear", 10),
        ("hinge", "linear", 10),
        ("binary_crossentropy", "sigmoid", 10),
        ("categorical_crossentropy", "softmax", 10),
    ],
)
def test_every_loss_trains_digits(loss, act, units, runs):
    cfg = load_config(
        CONFIGS / "digits.yaml",
        [
            f"loss={loss}",
            f"model.layers.1.activation={act}",
            f"model.layers.1.units={units}",
            "training.epochs=8",
        ],
    )
    result = train(cfg, runs)
    assert result.summary["test"]["accuracy"] > 0.85, loss


def test_batches_gathered_from_bytes_equal_the_float_batches():
    rng = np.random.default_rng(0)
    ints = rng.integers(0, 256, (1000, 20), dtype=np.uint8)
    X = ints / np.float32(255)
    y = rng.integers(0, 10, 1000)
    plain = Batches([X, y], 128, shuffle=True)
    compact = Batches([X, y], 128, shuffle=True, codes=(ints, 255.0))
    perm = rng.permutation(1000)
    plain.start(perm)
    compact.start(perm)
    for b in range(plain.count):  # the last batch is a partial one
        want, got = plain.get(b), compact.get(b)
        assert got[0].dtype == np.float32
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    assert got[0].shape[0] == 1000 - 7 * 128


def test_training_from_the_bytes_gives_the_numbers_of_the_float_inputs():
    # digits are bytes 0..16 scaled by 16: training gathers its batches from the bytes
    cfg = load_config(CONFIGS / "digits.yaml", ["training.epochs=3"])
    results = []
    for codes in ("kept", "dropped", "wrong divisor"):
        exp = build(cfg)
        assert exp.data.train.codes is not None and exp.data.train.codes[0].dtype == np.uint8
        assert exp.data.test.codes is None  # only the training split draws shuffled batches
        if codes == "dropped":
            exp.data.train.codes = None
        elif codes == "wrong divisor":  # shows that training reads the bytes
            exp.data.train.codes = (exp.data.train.codes[0], 8.0)
        trainer = Trainer(exp, log=[])
        trainer.fit()
        results.append((trainer.log, exp.model.theta.copy()))
    (rows_a, theta_a), (rows_b, theta_b), (_, theta_c) = results
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in rows_a]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in rows_b]
    np.testing.assert_array_equal(theta_a, theta_b)
    assert not np.array_equal(theta_a, theta_c)


def test_inputs_that_are_not_bytes_scaled_by_one_number_keep_no_codes():
    standard = build(load_config(CONFIGS / "digits.yaml", ["data.scale=standard"]))
    assert standard.data.train.codes is None  # a shift and a scale per feature
    xor = build(load_config(CONFIGS / "xor.yaml"))
    assert xor.data.train.codes is None  # float inputs


# ---------------------------------------------------------------- resume, in this process

RESUMABLE = {
    "plateau": (
        "digits.yaml",
        [
            "training.epochs=14",
            "optimizer.lr=0.01",
            "optimizer.schedule={name: plateau, monitor: val_accuracy, patience: 2, factor: 0.5}",
        ],
    ),
    "cvae": ("questions/cvae.yaml", ["training.epochs=10"]),  # the sample layer's noise
    "pseudo_labels": (
        "questions/semi_supervised.yaml",
        [
            "training.epochs=12",
            "data.label_fraction=0.1",
            "training.pseudo_labels={start: 4, confidence: 0.6, weight: 0.5, ramp: 3}",
        ],
    ),
}


def _state_through_files(trainer, path):
    """What a checkpoint file gives back: the loop's state written and read as resume does."""
    from nnlab.runs import read_checkpoint, save_checkpoint

    save_checkpoint(path, *trainer.state())
    return read_checkpoint(path)


@pytest.mark.parametrize("case", sorted(RESUMABLE))
def test_resume_from_a_checkpoint_gives_the_uninterrupted_run(case, tmp_path):
    """The state a checkpoint holds (the plateau schedule's, the pseudo-labels', ...) is all
    the loop needs: continuing from any epoch gives the uninterrupted run's rows and weights,
    bit for bit."""
    config, overrides = RESUMABLE[case]
    cfg = load_config(CONFIGS / config, [*overrides, "training.checkpoint_seconds=0"])
    exp = build(cfg)
    full = Trainer(exp, log=[])  # a list collects the rows
    states = []
    full.checkpoint = lambda tr: states.append(_state_through_files(tr, tmp_path / "c.npz"))
    full.fit()
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in full.log]
    for arrays, meta in (states[2], states[len(states) // 2 + 1]):
        again = build(cfg)
        before = full.log[: meta["epoch"]]
        trainer = Trainer(again, log=list(before))
        trainer.load_state(arrays, meta, MetricsTally.of(before))
        trainer.fit()
        assert [{k: v for k, v in r.items() if k != "seconds"} for r in trainer.log] == strip
        assert trainer.tally.best == full.tally.best and trainer.tally.count == len(full.log)
        np.testing.assert_array_equal(again.model.theta, exp.model.theta)
    if case == "plateau":
        assert len({r["lr"] for r in full.log}) >= 2  # the schedule did reduce the rate
    elif case == "pseudo_labels":
        assert full.log[2]["pseudo_labels"] == 0 < full.log[-1]["pseudo_labels"]


def test_plateau_follows_a_metric_of_the_run(runs):
    from nnlab.errors import ConfigError

    cfg = load_config(CONFIGS / "xor.yaml", ["optimizer.schedule={name: plateau}"])
    with pytest.raises(ConfigError, match="'val_loss' is not a metric") as info:
        train(cfg, runs)
    assert info.value.path == "optimizer.schedule.monitor"
    assert not any(runs.iterdir())
