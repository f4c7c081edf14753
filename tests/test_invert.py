"""nnlab invert: the inputs back from the outputs of a square network, and why others refuse."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from conftest import CONFIGS, invoke_nnlab, train_run
from nnlab.config import resolve
from nnlab.data import DATASETS
from nnlab.invert import NotInvertibleError, check_invertible, invert, invert_file
from nnlab.nn import Model
from nnlab.predict import predict, predict_file
from nnlab.runs import load_model


@pytest.fixture(scope="module")
def twist_run(tmp_path_factory):
    """configs/invertible.yaml, trained as it is (standard input scaling: shift and scale)."""
    return train_run(CONFIGS / "invertible.yaml", tmp_path_factory.mktemp("runs"))


def points(n: int = 40, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, 2))


def test_the_twist_is_a_one_to_one_regression_with_as_many_outputs_as_inputs():
    raw = DATASETS.build(DATASETS.resolve("twist"))
    assert raw.X.shape == (512, 2) and raw.y.shape == (512, 2) and raw.task == "regression"
    np.testing.assert_allclose(np.linalg.norm(raw.y, axis=1), np.linalg.norm(raw.X, axis=1))
    np.testing.assert_array_equal(raw.X, DATASETS.build(DATASETS.resolve("twist")).X)
    bent = DATASETS.build(DATASETS.resolve({"name": "twist", "samples": 9, "angle": 0.0}))
    np.testing.assert_allclose(bent.y, bent.X)  # no twist: the identity


def test_the_invertible_config_learns_the_twist(twist_run):
    import json

    summary = json.loads((twist_run / "summary.json").read_text())
    assert summary["val"]["loss"] < 0.05  # the targets' variance is about 1/3


def test_invert_recovers_the_inputs_of_predict_through_files(twist_run, tmp_path):
    X = points()
    np.savetxt(tmp_path / "x.csv", X, delimiter=",", header="a,b", comments="")
    predict_file(twist_run, tmp_path / "x.csv", tmp_path / "y.csv")
    assert (tmp_path / "y.csv").read_text().startswith("y0,y1\n")  # read back past the header
    proc = invoke_nnlab("invert", twist_run, tmp_path / "y.csv", "-o", tmp_path / "back.npy")
    assert proc.returncode == 0, proc.stderr
    back = np.load(tmp_path / "back.npy")
    assert back.shape == X.shape and back.dtype == np.float32
    np.testing.assert_allclose(back, X, atol=1e-4)
    text = invert_file(twist_run, tmp_path / "y.csv")
    assert text.splitlines()[0] == "x0,x1" and len(text.splitlines()) == 41


@pytest.mark.parametrize(
    "activation", ["tanh", "sigmoid", "elu", "selu", "softplus", "{name: leaky_relu, alpha: 0.5}"]
)
def test_every_invertible_activation_round_trips(activation, tmp_path):
    run = train_run(
        CONFIGS / "invertible.yaml",
        tmp_path,
        f"model.layers.0.activation={activation}",
        f"model.layers.1.activation={activation}",
        "model.layers.2={type: dropout, rate: 0.5}",  # the identity at inference: fine
        "model.layers.3={type: dense, units: 2}",
        "training.epochs=3",
    )
    model, meta = load_model(run)
    X = points(seed=2)
    Y = predict(model, meta, X)
    np.testing.assert_allclose(invert(model, meta, Y), X, atol=1e-3)


def model_of(layers: str, inputs: int = 2) -> Model:
    """An untrained model from a YAML list of layers."""
    cfg = resolve(
        {
            "data": "twist",
            "model": {"layers": yaml.safe_load(layers)},
            "loss": "mse",
        }
    )
    return Model.from_spec(cfg["model"], (inputs,), np.random.default_rng(0), np.float32)


@pytest.mark.parametrize(
    "layers, inputs, message",
    [
        ("[{type: dense, units: 2}]", 4,
         "model.layers[0] (dense): not invertible: maps 4 inputs to 2 outputs, so many inputs "
         "give the same output"),
        ("[{type: dense, units: 3}]", 2,
         "model.layers[0] (dense): not invertible: maps 2 inputs to 3 outputs, so most outputs "
         "are given by no input"),
        ("[{type: dense, units: 2, activation: tanh}, {type: dense, units: 2, activation: relu}]",
         2,
         "model.layers[1] (dense): not invertible: relu maps every negative input to 0"),
        ("[{type: dense, units: 2}, {type: activation, activation: softmax}]", 2,
         "model.layers[1] (activation): not invertible: softmax gives the same output when a "
         "constant is added to all its inputs"),
        ("[{type: dense, units: 2, activation: gelu}]", 2,
         "model.layers[0] (dense): not invertible: gelu is not one-to-one"),
        ("[{type: dense, units: 2, activation: silu}]", 2,
         "model.layers[0] (dense): not invertible: silu is not one-to-one"),
        ("[{type: dense, units: 2, activation: {name: leaky_relu, alpha: 0}}]", 2,
         "model.layers[0] (dense): not invertible: leaky_relu with alpha 0 is relu"),
        ("[{type: dropout}, {type: dense, units: 2, activation: relu}, {type: dense, units: 3}]", 2,
         "model.layers[1] (dense): not invertible: relu"),  # the first one is named
    ],
)  # fmt: skip
def test_every_refusal_names_the_first_layer_and_why(layers, inputs, message):
    with pytest.raises(NotInvertibleError) as e:
        check_invertible(model_of(layers, inputs))
    assert str(e.value).startswith(message)
    assert "as many units as inputs and invertible activations" in str(e.value)


def test_a_singular_weight_matrix_is_refused():
    model = model_of("[{type: dense, units: 2, activation: tanh}, {type: dense, units: 2}]")
    model.layers[1].params["W"][...] = [[1.0, 2.0], [2.0, 4.0]]  # rank 1
    with pytest.raises(NotInvertibleError, match=r"model\.layers\[1\] \(dense\): not invertible: "
                       r"has a singular weight matrix W \(condition number"):  # fmt: skip
        check_invertible(model)


def test_outputs_outside_an_activations_range_are_counted_and_named(twist_run, tmp_path):
    model, meta = load_model(twist_run)
    Y = predict(model, meta, points(5))
    Y[1] = [50.0, -50.0]  # far beyond what the tanh of layer 0 can give
    with pytest.raises(NotInvertibleError) as e:
        invert(model, meta, Y)
    message = str(e.value)
    assert message.startswith(
        "model.layers[0] (dense): 2 values outside (-1, 1), the range of tanh"
    )
    assert "in 1 of 5 rows (the first: row 2," in message and "no input gives them" in message

    sig = model_of("[{type: dense, units: 2, activation: sigmoid}]")
    with pytest.raises(NotInvertibleError, match=r"1 value outside \(0, 1\), the range of sigmoid"):
        invert(sig, {"shift": 0.0, "scale": 1.0}, np.array([[0.5, 1.0]]))


def test_cli_refusals_are_one_line_with_exit_status_2(twist_run, tmp_path):
    (tmp_path / "y.csv").write_text("1,2,3\n")
    proc = invoke_nnlab("invert", twist_run, tmp_path / "y.csv")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr == (
        f"error: {tmp_path / 'y.csv'}: rows have 3 values, but the model has 2 outputs\n"
    )
    digits = train_run(CONFIGS / "digits.yaml", tmp_path, "training.epochs=1")
    proc = invoke_nnlab("invert", digits, tmp_path / "y.csv")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(
        "error: model.layers[0] (dense): not invertible: maps 64 inputs to 256 outputs"
    )
