"""The qualitative claims of the gallery (configs/questions/, docs/questions.md), each tested
on the shipped config. The initializer claims are in test_layerstats.py, the learnability
probe's in test_probe.py, the dropout ones in test_activations.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import CONFIGS, MNIST_DIR, NO_MNIST, run_nnlab
from nnlab.config import load_config
from nnlab.experiment import Experiment, build, evaluate
from nnlab.gradcheck import check_experiment
from nnlab.train import Trainer

QUESTIONS = CONFIGS / "questions"
NO_OUTLIER = "data={name: csv, path: %s}" % (QUESTIONS / "threshold_no_outlier.csv")


def _fit(config: Path, *overrides: str) -> Experiment:
    """Train a config in memory (no run folder)."""
    exp = build(load_config(config, list(overrides)))
    assert Trainer(exp).fit() == "completed"
    return exp


def _accuracy(exp: Experiment, split: str = "train") -> float:
    return evaluate(exp, split)["accuracy"]


def _start(w: float, b: float) -> list[str]:
    return [
        f"model.layers.0.initializer={{name: constant, value: {w}}}",
        f"model.layers.0.bias_initializer={{name: constant, value: {b}}}",
    ]


# ---------------------------------------------------------------- the threshold toy


def test_sigmoid_mse_reproduces_the_answer_to_four_digits():
    """The answer's TensorFlow run printed, after 10000 steps from w = 0.7565, b = -0.9745:
    cost 0.20618653, w = 2.42539024, b = -2.1028473, and 4/5 right."""
    exp = _fit(QUESTIONS / "threshold_sigmoid_mse.yaml")
    w, b = exp.model.theta
    assert w == pytest.approx(2.42539024, abs=2e-4)
    assert b == pytest.approx(-2.1028473, abs=2e-4)
    assert evaluate(exp, "train")["loss"] == pytest.approx(0.2062, abs=1e-4)
    assert _accuracy(exp) == 0.8


@pytest.mark.parametrize(
    "w, b, accuracy", [(-1, 2, 0.6), (0, -2, 0.6), (0.5, 2, 0.8), (2, -2, 0.8)]
)
def test_sigmoid_mse_ends_where_its_start_decides(w, b, accuracy):
    """Not convex: started with w <= 0 it settles at 3/5 (w about -0.07, b about -0.2: every
    point predicted 0), with w >= 0.5 at 4/5 (the threshold), whatever the bias."""
    exp = _fit(QUESTIONS / "threshold_sigmoid_mse.yaml", *_start(w, b))
    assert _accuracy(exp) == accuracy


@pytest.mark.parametrize("config", ["threshold.yaml", "questions/threshold_bce.yaml"])
def test_convex_losses_end_at_three_of_five_from_every_start(config):
    ends = []
    for w, b in [(-2, -2), (0.7565, -0.9745), (2, 2)]:
        exp = _fit(CONFIGS / config, *_start(w, b))
        assert _accuracy(exp) == 0.6
        ends.append(exp.model.theta.copy())
    if "bce" in config:  # logistic regression: one minimum, w slightly negative
        w_end = np.array(ends)[:, 0]
        assert np.all((w_end < 0) & (w_end > -0.2))


@pytest.mark.parametrize(
    "config",
    ["threshold.yaml", "questions/threshold_sigmoid_mse.yaml", "questions/threshold_bce.yaml"],
)
def test_without_the_outlier_every_loss_gets_all_points_right(config):
    assert _accuracy(_fit(CONFIGS / config, NO_OUTLIER)) == 1.0


# ---------------------------------------------------------------- XOR


def _xor_accuracies(config: Path, seeds: int, tmp_path: Path, *overrides: str) -> list[float]:
    """Each seed's final training accuracy, the seeds trained together (``--seeds``)."""
    from nnlab.population.run import train_seeds

    result = train_seeds(load_config(config, list(overrides)), list(range(seeds)), tmp_path)
    assert result.populations == [seeds]  # one population, no seed alone
    return [s["train"]["accuracy"] for s in result.summaries]


def test_xor_success_rates_over_20_seeds(tmp_path):
    """The gallery's claims on 20 seeds: 2-1-1 never (always 3 of 4), 2-2-1 mostly, the skip
    connection nearly always."""
    one = _xor_accuracies(QUESTIONS / "xor_2_1_1.yaml", 20, tmp_path / "1")
    assert set(one) == {0.75}
    assert _xor_accuracies(CONFIGS / "xor.yaml", 20, tmp_path / "2").count(1.0) >= 17
    assert _xor_accuracies(QUESTIONS / "xor_skip.yaml", 20, tmp_path / "s").count(1.0) >= 18


@pytest.mark.slow
def test_xor_success_rates_over_1000_seeds(tmp_path):
    """The gallery's 1000 seeds: 2-1-1 at most 3 of 4 points, 2-2-1 in 60-90% of the seeds
    (the others stall on a plateau), the skip connection in 98% or more."""
    one = _xor_accuracies(QUESTIONS / "xor_2_1_1.yaml", 1000, tmp_path / "1")
    assert max(one) == 0.75 and one.count(0.75) >= 990
    assert 600 <= _xor_accuracies(CONFIGS / "xor.yaml", 1000, tmp_path / "2").count(1.0) <= 900
    assert _xor_accuracies(QUESTIONS / "xor_skip.yaml", 1000, tmp_path / "s").count(1.0) >= 980


# ---------------------------------------------------------------- gradient check


def test_the_users_mnist_network_passes_the_gradient_check():
    """The MNIST question's network (sigmoid units, MSE) on the digits, which need no download:
    the same layers and loss, 64 inputs instead of 784."""
    exp = build(
        load_config(
            QUESTIONS / "mnist_mse.yaml",
            ["data={name: digits, scale: unit}", "training.dtype=float64"],
        )
    )
    checks = check_experiment(exp, samples=8, entries=300)
    assert len(checks) == 4 and all(c.passed for c in checks), checks


# ---------------------------------------------------------------- MNIST: MSE vs cross-entropy


def _mnist(runs: Path, *overrides: str) -> dict:
    args = [f"--set={o}" for o in overrides]
    proc = run_nnlab(
        "train", QUESTIONS / "mnist_mse.yaml", "--runs-dir", runs, "-q", *args,
        timeout=1800, NNLAB_DATA_DIR=str(MNIST_DIR), OPENBLAS_NUM_THREADS="1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    run = Path(proc.stdout.strip().splitlines()[-1])
    return json.loads((run / "summary.json").read_text())


@pytest.mark.slow
@pytest.mark.skipif(MNIST_DIR is None, reason=NO_MNIST)
def test_mnist_table_l2_matters_most_and_cross_entropy_resists_it(runs):
    """The user's table at lr 0.001, lambda as in the question (l2 = lambda / 10 for MSE,
    lambda / 2 for cross-entropy): the smaller lambda gives the lower test error for both
    losses; at lambda 0.001 cross-entropy is far better; at 0.000002 the two tie."""
    ce = ["loss=categorical_crossentropy", "model.layers.1.activation=softmax"]
    error = {}
    for lam in (0.001, 0.000002):
        mse = _mnist(runs, f"optimizer.l2={lam / 10}")
        error["mse", lam] = 1 - mse["test"]["accuracy"]
        error["ce", lam] = 1 - _mnist(runs, f"optimizer.l2={lam / 2}", *ce)["test"]["accuracy"]
    assert error["mse", 0.000002] < error["mse", 0.001]
    assert error["ce", 0.000002] < error["ce", 0.001]
    assert error["ce", 0.001] < error["mse", 0.001] - 0.02
    assert abs(error["ce", 0.000002] - error["mse", 0.000002]) < 0.005


# ---------------------------------------------------------------- semi-supervised


def test_the_reconstruction_head_helps_the_classifier_over_seeds():
    """Paired by seed (the same labelled samples): the two-headed model beats the classifier
    alone on at least 4 of 5 seeds and on average."""
    gains = []
    for seed in range(5):
        semi = _fit(QUESTIONS / "semi_supervised.yaml", f"training.seed={seed}")
        alone = _fit(QUESTIONS / "classifier_alone.yaml", f"training.seed={seed}")
        gains.append(evaluate(semi, "test")["cls_accuracy"] - _accuracy(alone, "test"))
    assert sum(g > 0 for g in gains) >= 4 and np.mean(gains) > 0, gains


# ---------------------------------------------------------------- the LSTM question


def test_the_printed_result_shows_each_group_of_samples():
    """The sin and +1 steps of `sequence` are reported apart (summary.json's test_groups), so
    `nnlab train` prints them too."""
    from nnlab.result import format_result

    summary = {
        "name": "lstm_sequence", "status": "completed", "epochs_completed": 1,
        "epochs_planned": 1, "train_seconds": 1.0, "parameters": 10,
        "train": {"loss": 0.5}, "test": {"loss": 0.25},
        "test_groups": {"sin": {"loss": 0.125}, "plus_one": {"loss": 0.0625}},
    }  # fmt: skip
    lines = format_result(summary).splitlines()
    assert [line.split() for line in lines[2:]] == [
        ["train", "0.5000"],
        ["test", "0.2500"],
        ["test", "sin", "0.1250"],
        ["test", "plus_one", "0.0625"],
    ]


# ---------------------------------------------------------------- batchnorm and initialization


def _every_layer(init: str, indices: range) -> list[str]:
    return [f"model.layers.{i}.initializer={init}" for i in indices]


NORMAL_1 = "{name: random_normal, stddev: 1.0}"


def test_batchnorm_lets_a_relu_net_with_normal_1_weights_train():
    """Without batchnorm the deep ReLU net started from N(0, 1) diverges or stays poor; with
    it, every batchnorm output has a spread near 1 and the net reaches 90% on the test set."""
    plain = build(load_config(QUESTIONS / "init_deep.yaml", _every_layer(NORMAL_1, range(7))))
    status = Trainer(plain).fit()
    assert status == "diverged" or evaluate(plain, "test")["accuracy"] < 0.9
    exp = _fit(QUESTIONS / "init_batchnorm.yaml", *_every_layer(NORMAL_1, range(0, 19, 3)))
    assert evaluate(exp, "test")["accuracy"] > 0.9
    outs = exp.model.layer_outputs(exp.data.train.X[:256])
    for i in range(1, 18, 3):  # the batchnorm layers, with the running averages
        assert 0.7 < float(outs[i].std()) < 1.3, (i, outs[i].std())


def test_batchnorm_cannot_break_the_symmetry_of_zeros():
    """Every unit of a hidden layer stays a copy of the others, and the net predicts the
    majority class, with batchnorm as without it."""
    exp = _fit(QUESTIONS / "init_batchnorm.yaml", *_every_layer("zeros", range(0, 19, 3)))
    outs = exp.model.layer_outputs(exp.data.test.X)
    for out in outs[:18]:
        assert np.all(out.std(axis=1) == 0.0)
    majority = np.bincount(exp.data.train.y).argmax()
    assert _accuracy(exp, "test") == np.mean(exp.data.test.y == majority)


# ---------------------------------------------------------------- a convolutional trunk


def test_a_convolutional_trunk_learns_more_from_few_labels_than_a_dense_one():
    """The classifiers alone on the 5% labelled digits, paired by seed."""
    wins = 0
    for seed in range(5):
        conv = _fit(QUESTIONS / "classifier_alone_conv.yaml", f"training.seed={seed}")
        dense = _fit(QUESTIONS / "classifier_alone.yaml", f"training.seed={seed}")
        wins += _accuracy(conv, "test") > _accuracy(dense, "test")
    assert wins >= 4


@pytest.mark.slow
def test_the_decoder_adds_less_to_a_convolutional_trunk_than_to_a_dense_one():
    """The gallery's question 14 over 5 seeds: the conv semi-supervised model beats the dense
    one on 4 or more seeds; the gain from the decoder is smaller with the conv trunk, and
    within the spread of the conv classifier alone."""
    acc: dict[str, list[float]] = {}
    for seed in range(5):
        for name in ("semi_supervised_conv", "classifier_alone_conv", "semi_supervised",
                     "classifier_alone"):  # fmt: skip
            exp = _fit(QUESTIONS / f"{name}.yaml", f"training.seed={seed}")
            key = "cls_accuracy" if "semi" in name else "accuracy"
            acc.setdefault(name, []).append(evaluate(exp, "test")[key])
    a = {k: np.array(v) for k, v in acc.items()}
    assert (a["semi_supervised_conv"] > a["semi_supervised"]).sum() >= 4
    gain_conv = np.mean(a["semi_supervised_conv"] - a["classifier_alone_conv"])
    gain_dense = np.mean(a["semi_supervised"] - a["classifier_alone"])
    assert gain_conv < gain_dense and abs(gain_conv) < np.std(a["classifier_alone_conv"], ddof=1)
