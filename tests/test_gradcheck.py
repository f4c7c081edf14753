"""nnlab gradcheck: the model of a real config against central differences, and a broken
backward caught."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import CONFIGS, invoke_nnlab
from nnlab.config import load_config
from nnlab.errors import ConfigError
from nnlab.experiment import build
from nnlab.gradcheck import batch_rows, check_experiment, report
from nnlab.nn.layers import Dense

SEMI = CONFIGS / "questions" / "semi_supervised.yaml"


def _exp(path, *overrides):
    return build(load_config(path, [*overrides, "training.dtype=float64"]))


def _drop_bias_term(monkeypatch):
    """A dense backward that forgets the bias gradient (a missing term)."""
    original = Dense.backward_logits

    def broken(self, dZ, need_dx=True):
        dX = original(self, dZ, need_dx)
        if "b" in self.grads:
            self.grads["b"][...] = 0.0
        return dX

    monkeypatch.setattr(Dense, "backward_logits", broken)


def test_every_tensor_of_a_two_headed_masked_model_passes():
    exp = _exp(SEMI)
    checks = check_experiment(exp, samples=6, entries=50)
    assert [c.name for c in checks] == exp.model.param_names
    assert all(c.passed for c in checks), checks
    assert checks[0].checked == 50 and checks[0].size == 64 * 64  # a sample of a big tensor
    cls_bias = checks[exp.model.param_names.index("layers.1.b")]
    assert cls_bias.checked == cls_bias.size == 10  # every entry of a small one


def test_the_batch_holds_labelled_and_unlabelled_samples():
    exp = _exp(SEMI)
    rows = batch_rows(exp, 8)
    labelled = exp.targets["train"][0].W[rows] > 0
    assert len(rows) == 8 and labelled.sum() == 4


def test_dropout_is_on_with_frozen_masks():
    exp = _exp(
        CONFIGS / "digits.yaml",
        "model.layers[1]={type: dropout, rate: 0.5}",
        "model.layers[2]={type: dense, units: 10, activation: softmax}",
    )
    checks = check_experiment(exp, samples=4, entries=30)
    assert all(c.passed for c in checks), checks


def test_a_wrong_sign_fails_its_tensor_only(monkeypatch):
    original = Dense.backward_logits

    def wrong_sign(self, dZ, need_dx=True):
        dX = original(self, dZ, need_dx)
        if self.units == 2:  # the hidden layer of xor.yaml
            self.grads["W"] *= -1.0
        return dX

    monkeypatch.setattr(Dense, "backward_logits", wrong_sign)
    checks = {c.name: c for c in check_experiment(_exp(CONFIGS / "xor.yaml"))}
    assert not checks["layers.0.W"].passed
    assert checks["layers.0.W"].max_rel_error > 0.5
    assert all(c.passed for name, c in checks.items() if name != "layers.0.W")


def test_a_missing_term_fails_the_command_with_exit_1(monkeypatch):
    _drop_bias_term(monkeypatch)
    result = invoke_nnlab("gradcheck", CONFIGS / "digits.yaml")
    assert result.returncode == 1, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if "layers." in line}
    assert rows["layers.0.b"].endswith("FAIL") and rows["layers.1.b"].endswith("FAIL")
    assert rows["layers.0.W"].endswith("pass")
    assert "FAIL: 2 of 4 tensors: layers.0.b, layers.1.b" in result.stdout


def test_the_command_passes_a_real_config_with_exit_0():
    r = invoke_nnlab("gradcheck", CONFIGS / "questions" / "lstm_sequence.yaml", "--entries", "200")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "float64" in lines[0] and lines[-1] == "pass: all 5 tensors"
    assert "layers.0.U" in r.stdout and "200/4096" in r.stdout


def test_seed_is_the_training_seed_and_entries_seed_the_draw():
    """--seed means what it means in nnlab train (the weights and data drawn), --entries-seed
    which entries of a large tensor are checked."""
    config = CONFIGS / "digits.yaml"
    runs = {
        args: invoke_nnlab("gradcheck", config, "--entries", "20", *args).stdout
        for args in [(), ("--seed", "0"), ("--seed", "5"), ("--entries-seed", "3")]
    }
    assert runs[()] == runs[("--seed", "0")]  # digits.yaml's own seed is 0
    errors = {a: [line.split()[5] for line in t.splitlines()[3:-1]] for a, t in runs.items()}
    assert errors[("--seed", "5")] != errors[()]  # other weights, other errors
    assert errors[("--entries-seed", "3")] != errors[()]  # other entries


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    r = invoke_nnlab("gradcheck", CONFIGS / "digits.yaml", "--set", "optimizer.lr=-1")
    assert r.returncode == 2 and "optimizer.lr" in r.stderr and "Traceback" not in r.stderr
    r = invoke_nnlab("gradcheck", CONFIGS / "digits.yaml", "--entries", "some")
    assert r.returncode == 2 and "'all'" in r.stderr


def test_a_float32_model_is_refused():
    exp = build(load_config(CONFIGS / "xor.yaml"))
    with pytest.raises(ConfigError, match="float64"):
        check_experiment(exp)


def test_report_names_the_layer_and_shape():
    exp = _exp(SEMI)
    text = report(check_experiment(exp, samples=2, entries=5), exp.model)
    assert "trunk (dense)" in text and "64x64" in text and "5/4096" in text
    assert text.splitlines()[-1] == "pass: all 6 tensors"
    assert np.isfinite(exp.model.theta).all()


def test_a_kink_at_the_point_passes_between_the_one_sided_derivatives():
    """Zero biases and blank inputs put a ReLU exactly at its kink, where central differences
    give half a slope and no derivative exists: the entry passes when the backpropagated value
    lies between the one-sided derivatives, and still fails outside them."""
    from nnlab.gradcheck import check_model, loss_objective
    from nnlab.nn import LOSSES, Model
    from nnlab.nn.layers import Dense

    def model() -> Model:
        layers = [Dense(units=3, activation="relu"), Dense(units=2)]
        return Model(layers, (4,), np.random.default_rng(1), np.float64)

    X = np.zeros((5, 4))  # every pre-activation of the first layer is its bias: 0
    X[:2] = np.random.default_rng(2).normal(size=(2, 4))
    T = np.random.default_rng(3).normal(size=(5, 2))
    mse = loss_objective(LOSSES.create("mse"), T)
    checks = {c.name: c for c in check_model(model(), mse, X)}
    assert all(c.passed for c in checks.values())
    assert checks["layers.0.b"].kinks == 3 and checks["layers.0.W"].kinks == 0

    broken = model()
    backward = broken.layers[0].backward_logits

    def wrong(dZ, need_dx=True):
        out = backward(dZ, need_dx)
        broken.layers[0].grads["b"] += 1.0  # outside any one-sided derivative
        return out

    broken.layers[0].backward_logits = wrong
    assert not {c.name: c for c in check_model(broken, mse, X)}["layers.0.b"].passed
