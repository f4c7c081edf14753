"""Beyond a stack of layers: skip connections, several outputs with masked labels, recurrent
layers on the sequence question. The seed questions' claims, and the errors of bad wiring."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from conftest import CONFIGS
from nnlab.config import load_config
from nnlab.errors import ConfigError
from nnlab.experiment import build, evaluate, evaluate_groups
from nnlab.lifecycle import train
from nnlab.train import Trainer

QUESTIONS = CONFIGS / "questions"


def _train_accuracy(config: str, seed: int) -> float:
    exp = build(load_config(QUESTIONS / config, [f"training.seed={seed}"]))
    Trainer(exp).fit()
    return evaluate(exp, "train")["accuracy"]


def test_xor_with_one_hidden_unit_needs_the_skip_connection():
    plain = [_train_accuracy("xor_2_1_1.yaml", s) for s in range(20)]
    skip = [_train_accuracy("xor_skip.yaml", s) for s in range(20)]
    assert max(plain) <= 0.75  # a 2-1-1 net never gets more than 3 of 4
    assert sum(a == 1.0 for a in skip) >= 15  # with the skip, most seeds learn XOR


def test_skip_connection_widens_the_output_layer_input():
    exp = build(load_config(QUESTIONS / "xor_skip.yaml"))
    assert exp.model.layers[1].params["W"].shape == (3, 1)  # x1, x2, hidden
    assert not exp.model.chain


def test_two_headed_semi_supervised_run_writes_per_head_columns(runs):
    cfg = load_config(
        QUESTIONS / "semi_supervised.yaml", ["training.epochs=3", "data.validation_split=0.1"]
    )
    result = train(cfg, runs)
    header = next(csv.reader((result.run_dir / "metrics.csv").open()))
    assert header == [
        "epoch",
        "loss",
        "cls_loss",
        "cls_accuracy",
        "recon_loss",
        "val_loss",
        "val_cls_loss",
        "val_cls_accuracy",
        "val_recon_loss",
        "lr",
        "seconds",
    ]
    s = result.summary
    assert set(s["test"]) == {"loss", "cls_loss", "cls_accuracy", "recon_loss"}
    assert s["test"]["loss"] == pytest.approx(s["test"]["cls_loss"] + s["test"]["recon_loss"])
    # 5% of the 1258 training samples keep a label
    labels = result.experiment.data.train.y
    assert np.count_nonzero(labels >= 0) == 63 and len(labels) == 1258


def test_training_accuracy_counts_labelled_samples_only():
    cfg = load_config(QUESTIONS / "classifier_alone.yaml", ["training.epochs=60"])
    exp = build(cfg)
    assert len(exp.data.train) == 72  # unlabelled: drop
    trainer = Trainer(exp)
    trainer.fit()
    assert trainer.tally.last["accuracy"] == 1.0  # 72 samples are easy to fit
    semi = build(load_config(QUESTIONS / "semi_supervised.yaml", ["training.epochs=60"]))
    t2 = Trainer(semi)
    t2.fit()
    # the same 72 labelled samples (same seed, same split): fitted as well, though the
    # training split has 1438 samples
    assert t2.tally.last["cls_accuracy"] == 1.0
    np.testing.assert_array_equal(
        np.sort(semi.data.train.y[semi.data.train.y >= 0]), np.sort(exp.data.train.y)
    )


def test_lstm_learns_both_steps_of_the_sequence():
    """The +1 steps and the sin steps: test MSE on each under 0.01 (RMSE 0.1, on targets of
    magnitude 0.5 to 11), where a dense net seeing only the previous element fails the sin
    steps."""
    exp = build(load_config(QUESTIONS / "lstm_sequence.yaml"))
    Trainer(exp).fit()
    groups = evaluate_groups(exp, "test")
    assert groups["sin"]["loss"] < 0.01 and groups["plus_one"]["loss"] < 0.01
    base = build(load_config(QUESTIONS / "dense_previous.yaml"))
    Trainer(base).fit()
    assert evaluate_groups(base, "test")["sin"]["loss"] > 10 * groups["sin"]["loss"]


def test_sequence_groups_are_reported_in_the_summary(runs):
    result = train(load_config(QUESTIONS / "lstm_sequence.yaml", ["training.epochs=1"]), runs)
    groups = result.summary["test_groups"]
    assert set(groups) == {"sin", "plus_one"}
    n_sin = int(result.experiment.data.test.groups["sin"].sum())
    assert 30 < n_sin < 120  # about 1 step in 12 is a sin step


BASE = """
data: {name: xor}
model:
  layers:
    - {name: h, type: dense, units: 3, activation: tanh}
    - {type: dense, units: 1, activation: sigmoid, inputs: [input, h]}
loss: binary_crossentropy
"""


@pytest.mark.parametrize(
    "override, path, words",
    [
        ("model.layers.1.inputs=[input, hh]", "model.layers[1].inputs", "'hh' is not the name"),
        ("model.layers.0.inputs=h", "model.layers[0].inputs", "later layer"),
        ("model.layers.0.name=input", "model.layers[0].name", "reserved"),
        ("model.layers.1.join=sum", "model.layers[1].inputs", "one shape"),
        ("model.layers.1.inputs=[input]", "model.layers[0]", "goes nowhere"),
    ],
)
def test_bad_wiring_names_the_layer(write_config, override, path, words):
    cfg = load_config(write_config(BASE), [override])
    with pytest.raises(ConfigError) as info:
        build(cfg)
    assert info.value.path == path and words in str(info.value)


def test_outputs_and_loss_rules(write_config):
    text = BASE.replace("inputs: [input, h]}", "inputs: [input, h], name: out}")
    with pytest.raises(ConfigError) as info:  # a top-level loss and per-output losses
        load_config(write_config(text), ["model.outputs=[{layer: out, loss: mse}]"])
    assert info.value.path == "loss" and "model.outputs" in str(info.value)
    no_loss = text.replace("loss: binary_crossentropy\n", "")
    with pytest.raises(ConfigError) as info:
        load_config(write_config(no_loss))
    assert info.value.path == "loss" and "required" in str(info.value)
    cfg = load_config(
        write_config(no_loss), ["model.outputs=[{layer: out, loss: binary_crossentropy}]"]
    )
    assert build(cfg).heads[0].name == "out"
    with pytest.raises(ConfigError) as info:
        build(load_config(write_config(no_loss), ["model.outputs=[{layer: outt, loss: mse}]"]))
    assert info.value.path == "model.outputs[0].layer"


def test_a_fused_output_cannot_feed_another_layer(write_config):
    text = """
data: {name: digits}
model:
  layers:
    - {name: p, type: dense, units: 10, activation: softmax}
    - {name: q, type: dense, units: 10, activation: softmax, inputs: p}
  outputs:
    - {layer: p, loss: categorical_crossentropy}
    - {layer: q, loss: categorical_crossentropy}
"""
    with pytest.raises(ConfigError, match="cannot also feed other layers"):
        build(load_config(write_config(text)))


def test_dense_after_a_sequence_asks_for_flatten(write_config):
    text = """
data: {name: sequence, n_samples: 50, length: 4}
model:
  layers:
    - {type: lstm, units: 3, return_sequences: true}
    - {type: dense, units: 1}
loss: mse
"""
    with pytest.raises(ConfigError) as info:
        build(load_config(write_config(text)))
    assert info.value.path == "model.layers[1]" and "flatten" in str(info.value)
