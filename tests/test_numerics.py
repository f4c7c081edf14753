"""Numerics at the edges: huge learning rates, zero-variance inputs, log(0) in cross-entropy,
overflow in exp. No RuntimeWarning (each test turns them into errors), no crash; a run whose
loss becomes NaN or infinite is recorded as diverged."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from conftest import CONFIGS, invoke_nnlab
from nnlab.config import load_config
from nnlab.lifecycle import train
from nnlab.nn import ACTIVATIONS, LOSSES
from nnlab.runs import read_metrics

EXTREMES = [-1e30, -1e4, -100.0, -1.0, 0.0, 1.0, 100.0, 1e4, 1e30]


@pytest.fixture(autouse=True)
def runtime_warnings_are_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        yield


def train_quietly(config, runs, *overrides):
    cfg = load_config(CONFIGS / config, list(overrides))
    return train(cfg, runs, handle_signals=False)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_every_activation_is_finite_at_extreme_inputs(name, dtype):
    act = ACTIVATIONS.create(name)
    Z = np.array([EXTREMES, [-3.0, -2, -1, -0.5, 0, 0.5, 1, 2, 3]], dtype)  # (2, 9)
    A = act(Z)
    dZ = act.backward(np.ones_like(Z), Z, A)
    assert A.dtype == dtype and np.isfinite(A).all() and np.isfinite(dZ).all(), (A, dZ)
    top, bottom = float(A[0, -1]), float(A[0, 0])  # at +1e30 and -1e30
    if name == "sigmoid":
        assert top == 1.0 and 0.0 <= bottom < 1e-30
    elif name in ("relu", "elu", "selu", "gelu", "silu", "softplus", "leaky_relu", "linear"):
        # far from 0 each is its asymptote, computed without overflow
        assert top == pytest.approx(1e30 * (1.0507009873554805 if name == "selu" else 1.0))
        assert -2.0 <= bottom <= 0.0 or name in ("leaky_relu", "linear")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_of_saturated_logits_has_no_log_of_zero(dtype):
    # softmax(z) is exactly (1, 0) in floating point: log(p) of the true class would be -inf
    cce = LOSSES.create("categorical_crossentropy")
    z = np.array([[1e4, -1e4], [-50.0, 50.0]], dtype)
    value, grad = cce(z, cce.targets(np.array([1, 1]), 2, dtype))
    assert value == pytest.approx((2e4 + 0.0) / 2)  # -log softmax = 2e4 for the first row
    np.testing.assert_allclose(grad, [[0.5, -0.5], [0.0, 0.0]], atol=1e-12)
    bce = LOSSES.create("binary_crossentropy")
    z = np.array([[800.0], [-800.0], [0.0]], dtype)  # sigmoid is 1 and 0 exactly
    value, grad = bce(z, bce.targets(np.array([0, 1, 1]), 1, dtype))
    assert value == pytest.approx((800 + 800 + np.log(2)) / 3, rel=1e-6)
    np.testing.assert_allclose(grad[:, 0], [1 / 3, -1 / 3, -0.5 / 3], rtol=1e-6)


def test_a_huge_learning_rate_diverges_and_is_recorded(runs):
    result = train_quietly("threshold.yaml", runs, "optimizer.lr=1e300", "training.epochs=50")
    summary = result.summary
    assert summary["status"] == "diverged" and summary["diverged_at"] == {"epoch": 2, "batch": 1}
    assert len(read_metrics(result.run_dir)) == 1  # the epoch before
    assert not (result.run_dir / "model.npz").exists()


def test_overflowing_weights_diverge_instead_of_crashing(runs):
    # a constant beyond float32's range becomes inf; then every loss is NaN from the first batch
    result = train_quietly(
        "xor.yaml", runs, "model.layers.0.initializer={name: constant, value: 1e300}"
    )
    assert result.summary["status"] == "diverged"
    assert result.summary["diverged_at"] == {"epoch": 1, "batch": 1}
    # a schedule whose rate overflows: gamma ** epoch beyond the floats
    result = train_quietly(
        "threshold.yaml",
        runs,
        "optimizer.schedule={name: exponential, gamma: 1e300}",
        "training.epochs=20",
    )
    assert result.summary["status"] == "diverged"


def test_huge_initial_weights_through_every_saturating_activation(runs):
    for act in ("gelu", "softplus", "silu", "elu", "selu", "sigmoid", "tanh"):
        result = train_quietly(
            "digits.yaml",
            runs,
            f"model.layers.0.activation={act}",
            "model.layers.0.initializer={name: random_normal, stddev: 1e20}",
            "training.epochs=2",
            "data.subset=200",
        )
        assert result.summary["status"] in ("completed", "diverged"), act


def test_zero_variance_features_are_left_unscaled(runs, tmp_path, write_config):
    # column 0 is the constant 0.1 in every row: its computed std is rounding noise (1e-15);
    # dividing by it would turn any other value (here in the test rows) into 1e13
    rng = np.random.default_rng(0)
    x1 = rng.normal(5.0, 2.0, 200)
    rows = [f"0.1,{a:.6f},{int(a > 5)}" for a in x1]
    (tmp_path / "c.csv").write_text("const,x,y\n" + "\n".join(rows) + "\n")
    config = write_config(
        f"data: {{name: csv, path: {tmp_path / 'c.csv'}, scale: standard, test_split: 0.2}}\n"
        "model: {layers: [{type: dense, units: 2, activation: softmax}]}\n"
        "loss: categorical_crossentropy\n"
        "optimizer: {name: adam, lr: 0.05}\n"
        "training: {epochs: 50}\n"
    )
    result = train(load_config(config), runs, handle_signals=False)
    data = result.experiment.data
    assert data.scale[0] == 1.0 and data.scale[1] == pytest.approx(x1.std(), rel=0.2)
    assert np.abs(data.train.X[:, 0]).max() < 1e-6
    assert abs((0.1000001 - data.shift[0]) / data.scale[0]) < 1e-6  # a new sample stays small
    assert result.summary["status"] == "completed" and result.summary["test"]["accuracy"] > 0.9


def test_the_command_line_warns_nothing_and_exits_3_on_divergence(runs):
    proc = invoke_nnlab(
        "train",
        CONFIGS / "digits.yaml",
        "--set",
        "optimizer={name: sgd, lr: 1e30}",
        "--set",
        "training.epochs=3",
        "--runs-dir",
        runs,
        PYTHONWARNINGS="error::RuntimeWarning",
    )
    assert proc.returncode == 3, proc.stderr
    assert "Warning" not in proc.stderr
    (run,) = runs.iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged_at"]["epoch"] == 1
