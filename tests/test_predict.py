"""nnlab predict: raw inputs from CSV or .npy files, classes and probabilities out, clear errors."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import CONFIGS, invoke_nnlab, train_run
from nnlab.data.digits import digits
from nnlab.errors import DataError, RunError
from nnlab.predict import predict_file

DIGITS = digits()  # the raw 8x8 digits: X (1797, 64) in 0..16, y (1797,)
ROW = "1," * 63  # the first 63 values of a row of digits inputs


def read_csv(text: str) -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(io.StringIO(text)))
    return rows[0], rows[1:]


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def digits_run(runs_dir) -> Path:
    """The digits config with a dropout layer, trained briefly on all 1797 samples."""
    return train_run(
        CONFIGS / "digits.yaml",
        runs_dir,
        "data.test_split=0",
        "data.validation_split=0",
        "model.layers.0.units=32",
        "model.layers.1={type: dropout, rate: 0.2}",
        "model.layers.2={type: dense, units: 10, activation: softmax}",
        "training.epochs=3",
    )


def test_predicted_classes_give_the_accuracy_the_run_measured(digits_run, tmp_path):
    """Raw pixels in (0..16, as in the data set): predict applies the run's scaling (/16)."""
    path = tmp_path / "digits.csv"
    header = ",".join(f"pixel{j}" for j in range(64))
    np.savetxt(path, DIGITS.X, delimiter=",", fmt="%d", header=header, comments="")
    names, rows = read_csv(predict_file(digits_run, path))
    assert names == ["class"] + [f"prob_{k}" for k in range(10)]
    classes = np.array([int(r[0]) for r in rows])
    probs = np.array([[float(v) for v in r[1:]] for r in rows])
    accuracy = float(np.mean(classes == DIGITS.y))
    summary = json.loads((digits_run / "summary.json").read_text())
    assert accuracy == pytest.approx(summary["train"]["accuracy"], abs=1e-12)
    assert accuracy > 0.8
    np.testing.assert_array_equal(classes, probs.argmax(axis=1))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_npy_in_and_out_match_the_model_on_the_scaled_training_data(digits_run, tmp_path):
    from nnlab.config import load_config
    from nnlab.experiment import build
    from nnlab.runs import load_model

    np.save(tmp_path / "x.npy", DIGITS.X[:100])  # uint8, as the data set holds them
    assert predict_file(digits_run, tmp_path / "x.npy", tmp_path / "p.npy") is None
    out = np.load(tmp_path / "p.npy")
    exp = build(load_config(digits_run / "config.yaml"))  # the data scaled as in training
    model, _ = load_model(digits_run)
    assert out.shape == (100, 10) and out.dtype == np.float32
    np.testing.assert_allclose(out, model.predict(exp.data.train.X[:100]), rtol=0, atol=1e-6)


def test_csv_with_and_without_header_and_npy_agree(digits_run, tmp_path):
    X = DIGITS.X[:7]
    np.savetxt(tmp_path / "plain.csv", X, delimiter=",", fmt="%d")
    np.savetxt(tmp_path / "head.csv", X, delimiter=",", fmt="%d", header="a" * 5, comments="")
    np.save(tmp_path / "x.npy", X.astype(np.float64))
    texts = [predict_file(digits_run, tmp_path / f) for f in ("plain.csv", "head.csv", "x.npy")]
    assert texts[0] == texts[1] == texts[2]
    assert len(texts[0].splitlines()) == 8


def test_binary_sigmoid_classifier_gives_both_probabilities(tmp_path):
    run = train_run(CONFIGS / "xor.yaml", tmp_path, "training.epochs=3000")
    (tmp_path / "xor.csv").write_text("x1,x2\n0,0\n0,1\n1,0\n1,1\n")
    names, rows = read_csv(predict_file(run, tmp_path / "xor.csv"))
    assert names == ["class", "prob_0", "prob_1"]
    assert [r[0] for r in rows] == ["0", "1", "1", "0"]  # the seed-0 run learns XOR
    for r in rows:
        assert float(r[1]) + float(r[2]) == pytest.approx(1.0, abs=1e-6)
        assert (float(r[2]) > 0.5) == (r[0] == "1")


def test_linear_output_classifier_gives_a_score_and_the_threshold_class(tmp_path):
    run = train_run(CONFIGS / "threshold.yaml", tmp_path)
    (tmp_path / "x.csv").write_text("0\n2\n9\n")
    names, rows = read_csv(predict_file(run, tmp_path / "x.csv"))
    assert names == ["class", "score"]
    assert all(r[0] == ("1" if float(r[1]) > 0.5 else "0") for r in rows)


def csv_run(tmp_path: Path, write_config, target: list, units: int, act: str, loss: str) -> Path:
    """A run on a CSV file of the 60 rows of ``X_CSV`` and a target column."""
    rows = [f"{a},{b},{c},{t}" for (a, b, c), t in zip(X_CSV, target, strict=True)]
    (tmp_path / "data.csv").write_text("\n".join(["a,b,c,target", *rows]) + "\n")
    cfg = write_config(
        f"data: {{name: csv, path: {tmp_path / 'data.csv'}, scale: standard}}\n"
        f"model: {{layers: [{{type: dense, units: {units}, activation: {act}}}]}}\n"
        f"loss: {loss}\noptimizer: {{name: adam, lr: 0.05}}\ntraining: {{epochs: 40}}\n"
    )
    return train_run(cfg, tmp_path)


X_CSV = np.random.default_rng(0).normal(size=(60, 3))


def test_classes_are_named_as_in_the_csv_data(tmp_path, write_config):
    label = np.where(X_CSV[:, 0] > 0, "cat", "dog")
    run = csv_run(tmp_path, write_config, label, 2, "softmax", "categorical_crossentropy")
    np.savetxt(tmp_path / "x.csv", X_CSV, delimiter=",")
    names, rows = read_csv(predict_file(run, tmp_path / "x.csv"))
    assert names == ["class", "prob_cat", "prob_dog"]
    assert np.mean([r[0] for r in rows] == label) > 0.9


def test_regression_gives_the_values(tmp_path, write_config):
    value = X_CSV @ [1.0, -2.0, 0.5] + 0.25
    run = csv_run(tmp_path, write_config, value, 1, "linear", "mse")
    np.savetxt(tmp_path / "x.csv", X_CSV, delimiter=",")
    names, rows = read_csv(predict_file(run, tmp_path / "x.csv"))
    assert names == ["y"] and len(rows) == 60
    np.testing.assert_allclose([float(r[0]) for r in rows], value, atol=0.1)


@pytest.mark.parametrize(
    "name, content, words",
    [
        ("wide.csv", "1," * 64 + "3\n", ["rows have 65 values", "64 inputs", "target column"]),
        ("narrow.csv", "1,2,3\n", ["rows have 3 values", "the model has 64 inputs"]),
        ("nan.csv", f"{ROW}1\n{ROW}1\n{ROW}nan\n", ["1 row has NaN", "row 3"]),
        ("text.csv", f"a,b\n{ROW}1\n{ROW}x\n", ["line 3", "'x' is not a number"]),
        ("ragged.csv", f"{ROW}1\n1,2\n", ["line 2 has 2 values", "the first row 64"]),
        ("empty.csv", "a,b\n", ["no data rows"]),
        ("bad.npy", "not numpy", ["not a readable .npy file"]),
        ("missing.csv", None, ["no such file"]),
    ],
)  # fmt: skip
def test_bad_input_files_are_named_with_the_problem(digits_run, tmp_path, name, content, words):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError) as e:
        predict_file(digits_run, path)
    assert str(e.value).startswith(f"{path}: ")
    for w in words:
        assert w in str(e.value)


def test_npy_of_strings_and_of_the_wrong_width(digits_run, tmp_path):
    np.save(tmp_path / "s.npy", np.array(["a", "b"]))
    with pytest.raises(DataError, match=r"s\.npy: holds <U1 values; the inputs must be numbers"):
        predict_file(digits_run, tmp_path / "s.npy")
    np.save(tmp_path / "w.npy", np.zeros((3, 10)))
    with pytest.raises(DataError, match=r"w\.npy: rows have 10 values, but the model has 64"):
        predict_file(digits_run, tmp_path / "w.npy")


def test_missing_run_and_run_without_model(tmp_path):
    (tmp_path / "x.csv").write_text("1\n")
    with pytest.raises(RunError, match="nope: no such run folder or model file"):
        predict_file(tmp_path / "nope", tmp_path / "x.csv")
    (tmp_path / "run").mkdir()
    with pytest.raises(RunError, match=r"model\.npz: no such file; the run has no saved model"):
        predict_file(tmp_path / "run", tmp_path / "x.csv")


def test_cli_writes_files_and_reports_errors_in_one_line(digits_run, tmp_path):
    np.save(tmp_path / "x.npy", DIGITS.X[:5])
    proc = invoke_nnlab("predict", digits_run, tmp_path / "x.npy", "-o", tmp_path / "p.csv")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    names, rows = read_csv((tmp_path / "p.csv").read_text())
    assert names[0] == "class" and len(rows) == 5
    proc = invoke_nnlab("predict", digits_run, tmp_path / "x.npy", "-o", tmp_path / "p.json")
    assert proc.returncode == 2
    assert (
        proc.stderr
        == f"error: {tmp_path / 'p.json'}: unknown output type; name the file .csv, .npy or .npz\n"
    )
    assert not (tmp_path / "p.json").exists()
