"""The experiment: one objective for training, gradcheck and layers.csv."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from nnlab.config import load_config
from nnlab.experiment import build
from nnlab.gradcheck import numerical_gradient
from nnlab.lifecycle import train
from nnlab.runs import load_model, read_metrics

# two heads with unequal weights; the classifier sees 30% of the labels (the rest masked)
TWO_HEADS = """
data: {name: digits, scale: unit, subset: 48, label_fraction: 0.3}
model:
  layers:
    - {name: trunk, type: dense, units: 12, activation: tanh}
    - {name: cls, type: dense, units: 10, activation: softmax, inputs: trunk}
    - {name: recon, type: dense, units: 64, activation: sigmoid, inputs: trunk}
  outputs:
    - {layer: cls, loss: categorical_crossentropy, weight: 0.3, target: labels}
    - {layer: recon, loss: mse, weight: 2.0, target: inputs}
optimizer: {name: sgd, lr: 0.5}
training: {epochs: 1, batch_size: null, seed: 4, dtype: float64, log_layers: true}
"""


def test_training_gradcheck_and_layers_csv_use_one_objective(write_config, runs):
    """One full-batch SGD step: the loss training records, the step it takes and the gradient
    norms of layers.csv are those of the objective gradcheck differentiates. A second copy of
    the weighted loss sum anywhere (weights or masks handled differently) fails this."""
    config = load_config(write_config(TWO_HEADS))
    exp = build(config)
    model, flags = exp.model, exp.logit_flags
    X = exp.data.train.X
    objective = exp.objective.of(exp.targets["train"])  # what nnlab gradcheck differentiates
    theta0 = model.theta.copy()
    value0 = objective(model.forward(X, training=True, logits=flags))[0]
    numeric = numerical_gradient(
        lambda: objective(model.forward(X, training=True, logits=flags))[0], model.theta
    )
    assert exp.heads[0].weight != exp.heads[1].weight and exp.targets["train"][0].W is not None

    run = train(config, runs, handle_signals=False).run_dir
    (row,) = read_metrics(run).rows()
    assert row["loss"] == pytest.approx(value0, rel=1e-12)  # the weighted total, masks applied
    theta1 = load_model(run)[0].theta
    np.testing.assert_allclose((theta0 - theta1) / 0.5, numeric, rtol=1e-5, atol=1e-7)

    with open(run / "layers.csv") as f:
        norms = {r["name"]: float(r["grad_norm"]) for r in csv.DictReader(f) if r["epoch"] == "0"}
    for name, sl in zip(model.param_names, model.param_slices, strict=True):
        _, index, key = name.split(".")
        if key == "W":
            label = model.names[int(index)]
            assert norms[label] == pytest.approx(np.linalg.norm(numeric[sl]), rel=1e-6), name
