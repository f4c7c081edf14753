"""Pseudo-labelling (training.pseudo_labels): which unlabelled samples get a target, with
which class and weight, how many each epoch (metrics.csv), and the errors."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import CONFIGS
from nnlab.config import load_config
from nnlab.errors import ConfigError
from nnlab.experiment import build
from nnlab.lifecycle import train
from nnlab.pseudo import PseudoLabels
from nnlab.runs import read_metrics
from nnlab.train import Trainer

PSEUDO = "training.pseudo_labels={start: 3, confidence: 0.9, weight: 0.5, ramp: 2}"


def classifier(*overrides: str) -> dict:
    """The classifier of classifier_alone.yaml, keeping the 95% unlabelled digits."""
    return load_config(
        CONFIGS / "questions/classifier_alone.yaml",
        ["data.unlabelled=keep", "training.epochs=8", *overrides],
    )


def test_confident_predictions_become_targets_with_their_weight():
    exp = build(classifier(PSEUDO))
    trainer = Trainer(exp, log=[])  # a list collects the rows
    thetas = {}  # the weights at the end of each epoch: the start of the next
    trainer.on_epoch = lambda e: thetas.__setitem__(e, exp.model.theta.copy())
    trainer.fit()
    t = exp.targets["train"][0]
    labelled = exp.data.train.y >= 0
    unlabelled = np.flatnonzero(~labelled)
    final = exp.model.theta.copy()
    for row in trainer.log:
        e = row["epoch"]
        if e < 3:
            assert row["pseudo_labels"] == 0
            continue
        exp.model.theta[...] = thetas[e - 1]
        probs = exp.model.predict(exp.data.train.X[unlabelled])
        assert row["pseudo_labels"] == np.count_nonzero(probs.max(axis=1) >= 0.9)
    # the targets in place now are those of the last epoch, made from epoch 7's weights
    exp.model.theta[...] = thetas[7]
    probs = exp.model.predict(exp.data.train.X[unlabelled])
    sure = probs.max(axis=1) >= 0.9
    assert sure.sum() == trainer.log[-1]["pseudo_labels"] > 0
    assert np.all(t.W[unlabelled[sure]] == 0.5)  # ramp 2: full weight from the 2nd epoch on
    assert np.all(t.W[unlabelled[~sure]] == 0)
    np.testing.assert_array_equal(t.T[unlabelled[sure]].argmax(axis=1), probs[sure].argmax(axis=1))
    assert np.all(t.W[labelled] == 1) and np.all(t.L[unlabelled] == -1)
    exp.model.theta[...] = final


def test_the_weight_ramps_up_and_the_accuracy_counts_labelled_samples_only():
    exp = build(classifier("training.pseudo_labels={start: 3, weight: 2.0, ramp: 4}"))
    pl = PseudoLabels(exp, exp.config["training"]["pseudo_labels"])
    assert [pl.weight(e) for e in range(8)] == [0, 0, 0.5, 1.0, 1.5, 2.0, 2.0, 2.0]
    trainer = Trainer(exp, log=[])  # a list collects the rows
    trainer.fit()
    # training accuracy over the labelled samples (5% of 1438: 72), a multiple of 1/72
    n = int(np.count_nonzero(exp.data.train.y >= 0))
    acc = trainer.log[-1]["accuracy"]
    assert n == 72 and round(acc * n) == pytest.approx(acc * n, abs=1e-9)


def test_pseudo_labels_are_a_metrics_column_not_a_metric(runs):
    result = train(classifier(PSEUDO), runs, handle_signals=False)
    m = read_metrics(result.run_dir)
    assert m.columns[-3:] == ["pseudo_labels", "lr", "seconds"]
    assert "pseudo_labels" not in result.summary["best"]


def test_two_runs_make_the_same_pseudo_labels():
    rows = []
    for _ in range(2):
        trainer = Trainer(build(classifier(PSEUDO)), log=[])
        trainer.fit()
        rows.append([{k: v for k, v in r.items() if k != "seconds"} for r in trainer.log])
    assert rows[0] == rows[1]


@pytest.mark.parametrize(
    "config, overrides, words",
    [
        ("digits.yaml", [PSEUDO], "data.label_fraction below 1"),
        ("questions/classifier_alone.yaml", [PSEUDO], "data.label_fraction below 1"),
        (
            "questions/semi_supervised.yaml",
            ["training.pseudo_labels={output: recon}"],
            "not an output trained on labels",
        ),
    ],
)
def test_configs_pseudo_labels_cannot_serve_are_refused(config, overrides, words):
    with pytest.raises(ConfigError, match=words) as info:
        Trainer(build(load_config(CONFIGS / config, overrides)))
    assert info.value.path.startswith("training.pseudo_labels")


def test_the_two_headed_model_takes_pseudo_labels_on_its_classifier():
    cfg = load_config(
        CONFIGS / "questions/semi_supervised.yaml",
        ["training.epochs=6", "training.pseudo_labels={start: 2, confidence: 0.5, output: cls}"],
    )
    trainer = Trainer(build(cfg))
    trainer.fit()
    assert trainer.tally.last["pseudo_labels"] > 0
