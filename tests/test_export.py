"""nnlab export: each format, run where nnlab is not, gives the outputs of nnlab predict.

The models come from the configs (digits with a dropout layer, xor, threshold, invertible) and
from a config with every activation (float32 and float64), trained briefly. The numpy export runs
in a separate Python that cannot import nnlab; the ONNX model runs under onnxruntime; the C
header is compiled with the machine's C compiler into a program that reads inputs and prints
outputs.
"""

from __future__ import annotations

import ast
import csv
import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import (
    CONFIGS,
    c_compiler,
    invoke_nnlab,
    run_c_header,
    run_without_nnlab,
    train_run,
)
from nnlab.data.digits import digits
from nnlab.export import export
from nnlab.export.base import ExportError
from nnlab.export.standalone import decide
from nnlab.nn.graph import model_info
from nnlab.predict import predict_file
from nnlab.runs import load_model

ACTIVATIONS = """
data: {name: digits, scale: standard, test_split: 0}
model:
  layers:
    - {type: dense, units: 12, activation: sigmoid}
    - {type: dense, units: 12, activation: tanh}
    - {type: dense, units: 12, activation: relu}
    - {type: dense, units: 12, activation: {name: leaky_relu, alpha: 0.1}}
    - {type: dropout, rate: 0.3}
    - {type: dense, units: 12, activation: {name: elu, alpha: 0.5}}
    - {type: dense, units: 12, activation: selu}
    - {type: dense, units: 12, activation: softplus}
    - {type: dense, units: 12, activation: silu}
    - {type: dense, units: 12, activation: gelu, use_bias: false}
    - {type: activation, activation: tanh}
    - {type: dense, units: 10}
    - {type: activation, activation: softmax}
loss: categorical_crossentropy
optimizer: {name: adam, lr: 0.01}
training: {epochs: 2, seed: 4}
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, tuple[Path, np.ndarray]]:
    """name -> (run folder, raw inputs to predict)."""
    tmp = tmp_path_factory.mktemp("export")
    raw = digits().X[:150].astype(np.float64)
    points = np.random.default_rng(5).uniform(-1.2, 1.2, (50, 2))
    (tmp / "activations.yaml").write_text(ACTIVATIONS)
    digits_overrides = [
        "model.layers.0.units=32",
        "model.layers.1={type: dropout, rate: 0.2}",
        "model.layers.2={type: dense, units: 10, activation: softmax}",
        "training.epochs=3",
    ]
    return {
        "digits": (train_run(CONFIGS / "digits.yaml", tmp, *digits_overrides), raw),
        "xor": (train_run(CONFIGS / "xor.yaml", tmp), np.array([[0, 0], [0, 1], [1, 0], [1, 1]])),
        "threshold": (
            train_run(CONFIGS / "threshold.yaml", tmp, "training.epochs=200"),
            np.array([[0.0], [2], [9], [1.5], [-3]]),
        ),
        "invertible": (train_run(CONFIGS / "invertible.yaml", tmp, "training.epochs=5"), points),
        "perceptron": (  # a step activation (trained by es)
            train_run(CONFIGS / "questions/perceptron_es.yaml", tmp, "training.epochs=50"),
            np.array([[0.0], [2], [9], [1.5], [-3]]),
        ),
        "activations": (train_run(tmp / "activations.yaml", tmp), raw),
        "float64": (
            train_run(tmp / "activations.yaml", tmp, "training.dtype=float64", "name=float64"),
            raw,
        ),
    }


MODELS = ["digits", "xor", "threshold", "invertible", "perceptron", "activations", "float64"]


def reference(run: Path, X: np.ndarray, tmp_path: Path) -> tuple[Path, np.ndarray]:
    """The input as a .npy file, and what nnlab predict gives for it."""
    np.save(tmp_path / "x.npy", X)
    predict_file(run, tmp_path / "x.npy", tmp_path / "ref.npy")
    return tmp_path / "x.npy", np.load(tmp_path / "ref.npy")


# ---------------------------------------------------------------- numpy


@pytest.mark.parametrize("name", MODELS)
def test_numpy_export_runs_without_nnlab_and_matches_predict(models, name, tmp_path):
    run, X = models[name]
    x_file, ref = reference(run, X, tmp_path)
    (program,) = export(run, "numpy", tmp_path / "predict.py")
    proc = run_without_nnlab(program, str(x_file), "-o", "out.npy", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = np.load(tmp_path / "out.npy")
    assert out.dtype == ref.dtype and out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)


def test_numpy_export_imports_only_numpy_and_the_standard_library(models, tmp_path):
    (program,) = export(models["activations"][0], "numpy", tmp_path / "predict.py")
    tree = ast.parse(program.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert "numpy" in imported
    assert imported - {"numpy"} <= set(sys.stdlib_module_names)


def test_numpy_export_csv_output_is_nnlab_predicts(models, tmp_path):
    run, X = models["digits"]
    np.savetxt(tmp_path / "x.csv", X[:20], delimiter=",", fmt="%d")
    (program,) = export(run, "numpy", tmp_path / "p.py")
    proc = run_without_nnlab(program, "x.csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    mine = list(csv.reader(io.StringIO(proc.stdout)))
    theirs = list(csv.reader(io.StringIO(predict_file(run, tmp_path / "x.csv"))))
    assert mine[0] == theirs[0] and [r[0] for r in mine] == [r[0] for r in theirs]
    np.testing.assert_allclose(
        np.array([r[1:] for r in mine[1:]], float),
        np.array([r[1:] for r in theirs[1:]], float),
        atol=1e-6,
    )


def test_numpy_export_with_weights_in_a_side_npz(models, tmp_path):
    run, X = models["digits"]
    x_file, ref = reference(run, X, tmp_path)
    files = export(run, "numpy", tmp_path / "model.py", weights="npz")
    assert files == [tmp_path / "model.py", tmp_path / "model.npz"]
    assert len(files[0].read_text()) < 20_000  # the weights are not inlined
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()  # the program finds its weights beside itself, from any folder
    proc = run_without_nnlab(files[0], str(x_file), "-o", "out.npy", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(np.load(elsewhere / "out.npy"), ref, rtol=1e-6, atol=1e-6)


def test_numpy_export_predict_function_and_its_errors(models, tmp_path):
    run, X = models["activations"]
    _, ref = reference(run, X, tmp_path)
    (program,) = export(run, "numpy", tmp_path / "mymodel.py")
    spec = importlib.util.spec_from_file_location("mymodel", program)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    np.testing.assert_allclose(mod.predict(X), ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(mod.predict(X[3]), ref[3:4], rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match=r"rows of 64 inputs, got shape \(2, 63\)"):
        mod.predict(X[:2, :63])
    proc = run_without_nnlab(program, "missing.csv", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr == "error: missing.csv: no such file\n"


# ---------------------------------------------------------------- onnx


@pytest.mark.parametrize("name", MODELS)
def test_onnx_export_matches_predict_under_onnxruntime(models, name, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from nnlab.export.onnx_export import OPSET

    run, X = models[name]
    _, ref = reference(run, X, tmp_path)
    (path,) = export(run, "onnx", tmp_path / "model.onnx")
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert [o.version for o in model.opset_import] == [OPSET]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    results = session.run(None, {"input": X.astype(ref.dtype)})
    np.testing.assert_allclose(results[0], ref, rtol=1e-5, atol=1e-5)
    info = model_info(*load_model(run))
    if info["task"] == "classification":
        np.testing.assert_array_equal(results[1], decide(ref, info))
        props = {p.key: p.value for p in model.metadata_props}
        assert props["classes"] == str(info["classes"]).replace("'", '"')
    else:
        assert len(results) == 1


def test_onnx_export_without_the_onnx_package_says_how_to_install_it(models, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now fails
    with pytest.raises(ExportError, match=r"pip install 'nnlab\[onnx\]'"):
        export(models["xor"][0], "onnx", tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


# ---------------------------------------------------------------- c


@pytest.mark.parametrize("name", MODELS)
def test_c_header_compiles_and_matches_predict(models, name, tmp_path):
    run, X = models[name]
    _, ref = reference(run, X, tmp_path)
    export(run, "c", tmp_path / "model.h")
    lines = run_c_header(tmp_path, X.astype(ref.dtype), ref.dtype == np.float64)
    info = model_info(*load_model(run))
    if info["task"] == "classification":
        assert lines.pop(0).split(",") == info["classes"]
    out = np.loadtxt(lines, ndmin=2)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_c_header_holds_static_const_weights_and_a_predict_function(models, tmp_path):
    (path,) = export(models["digits"][0], "c", tmp_path / "net.h")
    text = path.read_text()
    assert "static const float nnlab_W0[2048] = {" in text  # 64 x 32
    assert "static inline void predict(const float *x, float *out)" in text
    assert "#define N_INPUTS 64" in text and "#define N_OUTPUTS 10" in text
    assert "#ifndef NNLAB_NET_H" in text and "#include" in text.split("#include <math.h>")[0]
    assert "h[i] = x[i] / 16.0f" in text  # the input scaling of the digits


# ---------------------------------------------------------------- refusals and the command


class Square:
    """A layer type that no exporter knows."""

    activation_fn = None


class Cube:
    """An activation that no exporter knows."""

    name = "cube"


@pytest.mark.parametrize("fmt", ["numpy", "onnx", "c"])
def test_a_layer_or_activation_a_format_cannot_express_is_named(models, tmp_path, fmt):
    import importlib

    from nnlab.export import FORMATS

    if fmt == "onnx":
        pytest.importorskip("onnx")
    module = importlib.import_module(f"nnlab.export.{FORMATS[fmt].module}")
    model, meta = load_model(models["xor"][0])
    info = model_info(model, meta)
    model.layers.insert(1, Square())
    with pytest.raises(ExportError) as e:
        module.write(model, meta, info, tmp_path / "out")
    assert str(e.value) == (
        f"model.layers[1] (Square): the {fmt} export cannot express a Square layer "
        "(it can: activation, avgpool2d, batchnorm, conv2d, dense, dropout, flatten, "
        "global_avgpool2d, layernorm, lstm, maxpool2d, reshape, rnn, upsample2d)"
    )
    del model.layers[1]
    model.layers[0].activation_fn = Cube()
    with pytest.raises(ExportError) as e:
        module.write(model, meta, info, tmp_path / "out")
    assert str(e.value).startswith(
        f"model.layers[0] (dense): the {fmt} export cannot express the activation cube "
        "(it can: elu, gelu, leaky_relu, linear, relu, selu, sigmoid, silu, softmax, softplus, "
    )


def test_export_refuses_bad_requests_with_clear_messages(models, tmp_path):
    run = models["xor"][0]
    with pytest.raises(ExportError, match=r"model\.pt: cannot tell the format from the suffix"):
        export(run, None, tmp_path / "model.pt")
    with pytest.raises(
        ExportError, match=r"unknown export format 'tflite'\. Allowed: numpy, onnx, c"
    ):
        export(run, "tflite", tmp_path / "m")
    with pytest.raises(ExportError, match="option 'weights' does not apply to the c format"):
        export(run, "c", tmp_path / "m.h", weights="npz")
    with pytest.raises(ExportError, match=r"the folder .*nowhere does not exist"):
        export(run, "c", tmp_path / "nowhere" / "m.h")
    with pytest.raises(ExportError, match="is a folder"):
        export(run, "c", tmp_path)
    with pytest.raises(ExportError, match=r"m\.npz: the program and its weights would be one"):
        export(run, "numpy", tmp_path / "m.npz", weights="npz")
    assert list(tmp_path.iterdir()) == []  # no refusal wrote a file


def test_export_refuses_weights_that_are_not_finite(models, tmp_path):
    from nnlab.runs import load_model, save_model

    model, meta = load_model(models["xor"][0])
    model.layers[1].params["W"][0, 0] = np.inf
    save_model(tmp_path / "model.npz", model, meta)
    with pytest.raises(ExportError, match=r"layers\.1\.W has NaN or infinite values"):
        export(tmp_path / "model.npz", "numpy", tmp_path / "p.py")


def test_cli_export_infers_the_format_and_prints_the_file(models, tmp_path):
    pytest.importorskip("onnx")
    run = models["threshold"][0]
    proc = invoke_nnlab("export", run, "-o", tmp_path / "t.onnx")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{tmp_path / 't.onnx'}\n"
    assert (tmp_path / "t.onnx").read_bytes()[:2] == b"\x08\x08"  # ir_version 8, protobuf
    proc = invoke_nnlab("export", run, "-o", tmp_path / "t.tflite")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "cannot tell the format from the suffix" in proc.stderr
    proc = invoke_nnlab("export", run, cwd=tmp_path)
    assert proc.returncode == 0 and (tmp_path / "predict.py").is_file()


def test_class_names_with_quotes_backslashes_and_comment_ends_survive_every_format(
    tmp_path, write_config
):
    """Class names come from the user's CSV: the exported code must quote them, not break."""
    names = ['a"""b\\', "x*/y ??=", "été, ok"]
    X = np.random.default_rng(3).normal(size=(30, 2))
    with open(tmp_path / "odd.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(
            [["p", "q", "label"]] + [[*x, names[i % 3]] for i, x in enumerate(X)]
        )
    cfg = write_config(
        f"data: {{name: csv, path: {tmp_path / 'odd.csv'}}}\n"
        "model: {layers: [{type: dense, units: 3, activation: softmax}]}\n"
        "loss: categorical_crossentropy\ntraining: {epochs: 1}\n"
    )
    run = train_run(cfg, tmp_path)
    info = model_info(*load_model(run))
    assert sorted(info["classes"]) == sorted(names)
    np.savetxt(tmp_path / "x.csv", X, delimiter=",")

    (program,) = export(run, "numpy", tmp_path / "odd.py")
    proc = run_without_nnlab(program, "x.csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    mine = list(csv.reader(io.StringIO(proc.stdout)))
    theirs = list(csv.reader(io.StringIO(predict_file(run, tmp_path / "x.csv"))))
    assert mine[0] == theirs[0] == ["class"] + [f"prob_{c}" for c in info["classes"]]
    assert [r[0] for r in mine] == [r[0] for r in theirs]
    assert {r[0] for r in mine[1:]} <= set(names)

    export(run, "c", tmp_path / "model.h")
    (tmp_path / "names.c").write_text(
        '#include <stdio.h>\n#include "model.h"\n'
        "int main(void) { for (int k = 0; k < N_CLASSES; k++) puts(CLASS_NAMES[k]); return 0; }\n"
    )
    cc = c_compiler()
    flags = ["-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Werror"]
    build = subprocess.run(
        [cc, *flags, "names.c", "-o", "names", "-lm"], cwd=tmp_path, capture_output=True, text=True
    )
    assert build.returncode == 0, build.stderr
    proc = subprocess.run([str(tmp_path / "names")], capture_output=True)
    assert proc.stdout.decode("utf-8").splitlines() == info["classes"]

    onnx = pytest.importorskip("onnx")
    (path,) = export(run, "onnx", tmp_path / "odd.onnx")
    props = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert json.loads(props["classes"]) == info["classes"]


@pytest.mark.parametrize("command", ["predict", "export", "invert"])
def test_help_shows_an_example(command):
    proc = invoke_nnlab(command, "--help")
    assert proc.returncode == 0
    assert "Examples:" in proc.stdout and f"nnlab {command} runs/" in proc.stdout
