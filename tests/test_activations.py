"""Mean layer outputs in training vs evaluation mode (nnlab activations), and the dropout
question: why inverted dropout scales the kept units by 1/keep_prob."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import CONFIGS, invoke_nnlab, train_run
from nnlab.layerstats import mode_means
from nnlab.nn import LAYERS, Model
from nnlab.nn.layers import Dense

DROPOUT = CONFIGS / "questions" / "dropout.yaml"


def _model(scale: bool) -> Model:
    layers = [
        Dense(units=50, activation="relu"),
        LAYERS.create({"type": "dropout", "rate": 0.5, "scale": scale}),
        Dense(units=3, activation="linear"),
    ]
    model = Model(layers, (8,), np.random.default_rng(0), np.float64)
    model.set_rng(np.random.default_rng(1))
    return model


@pytest.mark.parametrize("scale, ratio", [(True, 1.0), (False, 0.5)])
def test_dropout_train_mean_is_keep_prob_times_eval_mean_without_scaling(scale, ratio):
    model = _model(scale)
    X = np.random.default_rng(2).normal(size=(400, 8))
    state = model.layers[1].rng.bit_generator.state
    rows = mode_means(model, X, passes=20)
    assert [r["type"] for r in rows] == ["dense", "dropout", "dense"]
    assert rows[0]["ratio"] == pytest.approx(1.0, abs=1e-12)  # no dropout before it
    assert rows[1]["eval_mean"] == pytest.approx(rows[0]["eval_mean"])  # identity at eval
    assert rows[1]["ratio"] == pytest.approx(ratio, abs=0.01)
    np.testing.assert_allclose(rows[2]["eval_mean"], model.predict(X).mean())
    assert model.layers[1].rng.bit_generator.state == state  # the run's generator untouched


def test_the_means_are_the_same_in_batches():
    model = _model(True)
    X = np.random.default_rng(3).normal(size=(300, 8))
    whole = mode_means(model, X, passes=3, batch=1024)
    parts = mode_means(model, X, passes=3, batch=7)
    for a, b in zip(whole, parts, strict=True):
        assert a["eval_mean"] == pytest.approx(b["eval_mean"], rel=1e-9)


def test_the_dropout_question(tmp_path):
    """The gallery's claim on configs/questions/dropout.yaml: with inverted dropout each layer's
    training-mode mean equals its evaluation-mode mean (within 10%: a ReLU after dropout
    averages a little higher); with plain dropout the first dropout layer's ratio is keep_prob
    (0.5) and the second compounds it (about 0.25), and the test loss is higher."""
    scaled = train_run(DROPOUT, tmp_path / "a")
    plain = train_run(
        DROPOUT, tmp_path / "b", "model.layers.1.scale=false", "model.layers.3.scale=false"
    )
    ratios = {}
    for name, run in (("scaled", scaled), ("plain", plain)):
        r = invoke_nnlab("activations", run, "--passes", "10")
        assert r.returncode == 0, r.stderr
        rows = [line.split() for line in r.stdout.splitlines() if line[:1].isdigit()]
        ratios[name] = {int(row[0]): float(row[-1]) for row in rows}
    assert all(abs(v - 1) < 0.1 for v in ratios["scaled"].values()), ratios
    assert ratios["plain"][1] == pytest.approx(0.5, abs=0.02)
    assert ratios["plain"][3] < 0.35

    def test_loss(run):
        return json.loads((run / "summary.json").read_text())["test"]["loss"]

    assert test_loss(plain) > 1.5 * test_loss(scaled)
    same = [invoke_nnlab("activations", plain, "--passes", "3", "--mask-seed", "7") for _ in "ab"]
    assert same[0].stdout == same[1].stdout  # the masks' seed repeats the numbers
    other = invoke_nnlab("activations", plain, "--passes", "3", "--mask-seed", "8")
    assert other.stdout != same[0].stdout
    old = invoke_nnlab("activations", plain, "--seed", "7")  # --seed is the training seed
    assert old.returncode == 2 and "now --mask-seed" in old.stderr
