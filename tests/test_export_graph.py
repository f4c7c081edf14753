"""Export, predict and invert beyond a chain of dense layers: skip (concat) and sum joins,
several outputs, flatten, rnn and lstm layers, in float32 and float64.

Every format must give what nnlab predict gives: the numpy export to 1e-6, run by a Python that
cannot import nnlab; the ONNX model to 1e-5 under onnxruntime, after ``onnx.checker``; the C
header to 1e-5, compiled with ``-std=c99 -Wall -Wextra -Wpedantic -Werror``. Each round trip
prints its largest difference: ``pytest tests/test_export_graph.py -k matches -rP`` lists them.
"""

from __future__ import annotations

import csv
import io
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import CONFIGS, c_compiler, invoke_nnlab, run_without_nnlab, train_run
from nnlab.data.digits import digits
from nnlab.data.sequence import sequence
from nnlab.errors import DataError
from nnlab.export import FORMATS, export
from nnlab.export.base import ExportError
from nnlab.export.standalone import decide
from nnlab.invert import NotInvertibleError, check_invertible, invert
from nnlab.nn.graph import model_info
from nnlab.predict import predict, predict_file
from nnlab.runs import load_model

QUESTIONS = CONFIGS / "questions"

# A residual-style sum join of an activation layer and a dropout, then a concat with the raw
# input; layer "a" feeds two layers, one of them an activation layer (which must not change "a").
SUM_JOIN = """
data: {name: digits, scale: unit, test_split: 0}
model:
  layers:
    - {name: a, type: dense, units: 16}
    - {name: t, type: activation, activation: tanh, inputs: a}
    - {type: dense, units: 16, activation: relu, inputs: a}
    - {name: drop, type: dropout, rate: 0.2}
    - {name: res, type: activation, activation: {name: elu, alpha: 0.5}, inputs: [t, drop],
       join: sum}
    - {type: dense, units: 10, activation: softmax, inputs: [res, input]}
loss: categorical_crossentropy
optimizer: {name: adam, lr: 0.01}
training: {epochs: 2, seed: 1}
"""

# An rnn returning every step's state, joined with the input sequence (concat over features:
# a (time, 9) value), then an rnn returning its last state.
RNN = """
data: {name: sequence, length: 6, n_samples: 300, scale: standard}
model:
  layers:
    - {name: r1, type: rnn, units: 8, return_sequences: true}
    - {type: rnn, units: 5, activation: {name: leaky_relu, alpha: 0.1}, inputs: [r1, input]}
    - {type: dense, units: 1}
loss: mse
training: {epochs: 2, seed: 2}
"""

# An lstm returning every step's state, flattened for a dense layer.
LSTM_SEQUENCES = """
data: {name: sequence, length: 5, n_samples: 300, scale: standard}
model:
  layers:
    - {type: lstm, units: 6, return_sequences: true}
    - {type: flatten}
    - {type: dropout, rate: 0.1}
    - {type: dense, units: 1}
loss: mse
training: {epochs: 2, seed: 3}
"""

F64 = "training.dtype=float64"
LSTM_QUESTION = ["training.epochs=1", "data.n_samples=400"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, tuple[Path, np.ndarray]]:
    """name -> (run folder, raw inputs to predict, a row per sample)."""
    tmp = tmp_path_factory.mktemp("export_graph")
    for name, text in (("sum_join", SUM_JOIN), ("rnn", RNN), ("lstm_sequences", LSTM_SEQUENCES)):
        (tmp / f"{name}.yaml").write_text(text)
    pixels = digits().X[:60].astype(np.float64)

    def windows(length: int) -> np.ndarray:
        return sequence(40, length, rng=np.random.default_rng(7)).X.reshape(40, length)

    def run(config: Path, name: str, *overrides: str) -> Path:
        return train_run(config, tmp, f"name={name}", *overrides)

    return {
        "xor_skip": (
            run(QUESTIONS / "xor_skip.yaml", "xor_skip", "training.epochs=300"),
            np.array([[0.0, 0], [0, 1], [1, 0], [1, 1]]),
        ),
        "sum_join": (run(tmp / "sum_join.yaml", "sum_join"), pixels),
        "sum_join_f64": (run(tmp / "sum_join.yaml", "sum_join_f64", F64), pixels),
        "semi_supervised": (
            run(QUESTIONS / "semi_supervised.yaml", "semi_supervised", "training.epochs=2"),
            pixels,
        ),
        "lstm_sequence": (
            run(QUESTIONS / "lstm_sequence.yaml", "lstm_sequence", *LSTM_QUESTION),
            windows(10),
        ),
        "lstm_sequence_f64": (
            run(QUESTIONS / "lstm_sequence.yaml", "lstm_sequence_f64", *LSTM_QUESTION, F64),
            windows(10),
        ),
        "rnn": (run(tmp / "rnn.yaml", "rnn"), windows(6)),
        "rnn_f64": (run(tmp / "rnn.yaml", "rnn_f64", F64), windows(6)),
        "rnn_selu_gelu": (  # activations the ONNX RNN operator does not offer
            run(
                tmp / "rnn.yaml",
                "rnn_selu_gelu",
                "model.layers.0.activation=selu",
                "model.layers.1.activation=gelu",
            ),
            windows(6),
        ),
        "lstm_sequences": (run(tmp / "lstm_sequences.yaml", "lstm_sequences"), windows(5)),
        "lstm_sequences_f64": (
            run(tmp / "lstm_sequences.yaml", "lstm_sequences_f64", F64),
            windows(5),
        ),
    }


MODELS = [
    "xor_skip",
    "sum_join",
    "sum_join_f64",
    "semi_supervised",
    "lstm_sequence",
    "lstm_sequence_f64",
    "rnn",
    "rnn_f64",
    "rnn_selu_gelu",
    "lstm_sequences",
    "lstm_sequences_f64",
]


def reference(run: Path, X: np.ndarray, tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """The inputs as a .npy file, and what nnlab predict gives for them: an array per output
    (``output`` for a model with one)."""
    np.save(tmp_path / "x.npy", X)
    predict_file(run, tmp_path / "x.npy", tmp_path / "ref.npz")
    with np.load(tmp_path / "ref.npz") as z:
        return tmp_path / "x.npy", {k: z[k] for k in z.files}


def largest_difference(
    got: dict[str, np.ndarray], ref: dict[str, np.ndarray], tol: float, what: str
) -> float:
    """Check every output against nnlab's (same names, shapes and dtype, within ``tol``)."""
    assert list(got) == list(ref)
    for name in ref:
        assert got[name].shape == ref[name].shape and got[name].dtype == ref[name].dtype, name
        np.testing.assert_allclose(got[name], ref[name], rtol=tol, atol=tol, err_msg=name)
    diff = max(float(np.abs(got[k].astype(np.float64) - ref[k]).max()) for k in ref)
    print(f"max |difference| {what}: {diff:.3g}")
    return diff


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", MODELS)
def test_numpy_export_matches_predict(models, name, tmp_path):
    run, X = models[name]
    x_file, ref = reference(run, X, tmp_path)
    (program,) = export(run, "numpy", tmp_path / "predict.py")
    proc = run_without_nnlab(program, str(x_file), "-o", "out.npz", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with np.load(tmp_path / "out.npz") as z:
        got = {k: z[k] for k in z.files}
    largest_difference(got, ref, 1e-6, f"numpy {name}")


@pytest.mark.parametrize("name", MODELS)
def test_onnx_export_matches_predict(models, name, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from nnlab.export.onnx_export import OPSET

    run, X = models[name]
    _, ref = reference(run, X, tmp_path)
    (path,) = export(run, "onnx", tmp_path / "model.onnx")
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    assert [o.version for o in proto.opset_import] == [OPSET]
    model, meta = load_model(run)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = X.reshape(-1, *model.input_shape).astype(model.dtype)  # (N, time, features) for rnns
    results = dict(
        zip(
            [o.name for o in session.get_outputs()],
            session.run(None, {"input": inputs}),
            strict=True,
        )
    )
    largest_difference({k: results[k] for k in ref}, ref, 1e-5, f"onnx {name}")
    info = model_info(model, meta)
    for head in info.get("heads", [{**info, "name": "output"}]):
        if head["task"] == "classification":
            cls = "class" if "heads" not in info else f"{head['name']}_class"
            np.testing.assert_array_equal(results[cls], decide(ref[head["name"]], head))


def main_c(info: dict, double: bool) -> str:
    """A C program that reads rows of inputs and prints every output of a row on one line."""
    from nnlab.export.c_export import output_names

    names = output_names(info)
    real, scan, fmt = ("double", "%lf", "%.17g") if double else ("float", "%f", "%.9g")
    prints = "\n".join(
        f'        for (int j = 0; j < {size}; j++) printf("{fmt} ", {arg}[j]);'
        for _, arg, size in names
    )
    return f"""#include <stdio.h>
#include "model.h"

int main(void)
{{
    {real} x[N_INPUTS], {", ".join(f"{arg}[{size}]" for _, arg, size in names)};
    for (;;) {{
        for (int i = 0; i < N_INPUTS; i++)
            if (scanf("{scan}", &x[i]) != 1) return 0;
        predict(x, {", ".join(arg for _, arg, _ in names)});
{prints}
        printf("\\n");
    }}
}}
"""


def compile_c(tmp_path: Path, source: str) -> Path:
    (tmp_path / "main.c").write_text(source)
    flags = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Wpedantic", "-Werror"]
    build = subprocess.run(
        [c_compiler(), *flags, "main.c", "-o", "model", "-lm"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    return tmp_path / "model"


@pytest.mark.parametrize("name", MODELS)
def test_c_header_matches_predict(models, name, tmp_path):
    run, X = models[name]
    _, ref = reference(run, X, tmp_path)
    export(run, "c", tmp_path / "model.h")
    model, meta = load_model(run)
    double = model.dtype == np.float64
    program = compile_c(tmp_path, main_c(model_info(model, meta), double))
    text = "\n".join(" ".join(repr(float(v)) for v in row) for row in X.astype(model.dtype))
    proc = subprocess.run([program], input=text, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = np.loadtxt(proc.stdout.splitlines(), ndmin=2, dtype=model.dtype)
    widths = np.cumsum([r.shape[1] for r in ref.values()])[:-1]
    got = dict(zip(ref, np.split(out, widths, axis=1), strict=True))
    largest_difference(got, ref, 1e-5, f"c {name}")


# ---------------------------------------------------------------- how each format does it


def test_onnx_uses_the_recurrent_operators_where_onnxruntime_runs_them(models, tmp_path):
    """float32: the LSTM and RNN operators; float64 (onnxruntime has no double kernels for
    them) and rnn activations the RNN operator lacks: the recurrence unrolled."""
    onnx = pytest.importorskip("onnx")

    def ops(name: str) -> set[str]:
        (path,) = export(models[name][0], "onnx", tmp_path / f"{name}.onnx")
        return {n.op_type for n in onnx.load(path).graph.node}

    assert {"LSTM", "Transpose", "Squeeze"} <= ops("lstm_sequence")
    assert "LSTM" in ops("lstm_sequences") and "Flatten" in ops("lstm_sequences")
    assert "RNN" in ops("rnn") and "Concat" in ops("rnn")
    for name in ("lstm_sequence_f64", "rnn_f64", "rnn_selu_gelu"):
        assert not {"LSTM", "RNN"} & ops(name) and "Gather" in ops(name), name


def test_onnx_lstm_weights_are_in_the_operators_gate_order(models, tmp_path):
    """nnlab's gates are i, f, o, g; the LSTM operator's W is i, o, f, c, with R-bias 0."""
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    run = models["lstm_sequence"][0]
    (path,) = export(run, "onnx", tmp_path / "m.onnx")
    weights = {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}
    layer = load_model(run)[0].layers[0]
    u = layer.units
    i, f, o, g = np.split(layer.params["W"], 4, axis=1)
    np.testing.assert_array_equal(weights["layers.0.W"][0], np.concatenate([i, o, f, g], 1).T)
    bi, bf, bo, bg = np.split(layer.params["b"], 4)
    np.testing.assert_array_equal(
        weights["layers.0.B"][0, : 4 * u], np.concatenate([bi, bo, bf, bg])
    )
    assert not weights["layers.0.B"][0, 4 * u :].any()


def test_numpy_export_takes_sequences_as_rows_or_as_arrays(models, tmp_path):
    run, X = models["lstm_sequence"]
    (program,) = export(run, "numpy", tmp_path / "seq.py")
    namespace: dict = {}
    exec(compile(program.read_text(), str(program), "exec"), namespace)
    ref = predict(*load_model(run), X)
    np.testing.assert_array_equal(namespace["predict"](X), ref)
    np.testing.assert_array_equal(namespace["predict"](X.reshape(40, 10, 1)), ref)
    one = namespace["predict"](X[0].reshape(10, 1))  # a batch of 1: other BLAS rounding
    np.testing.assert_allclose(one, ref[:1], rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match=r"rows of 10 inputs or arrays of shape \(10, 1\) per "
                       r"sample, got shape \(40, 9\)"):  # fmt: skip
        namespace["predict"](X[:, :9])


# ---------------------------------------------------------------- several outputs


def test_predict_writes_every_output(models, tmp_path):
    run, X = models["semi_supervised"]
    np.savetxt(tmp_path / "x.csv", X[:5], delimiter=",", fmt="%d")
    rows = list(csv.reader(io.StringIO(predict_file(run, tmp_path / "x.csv"))))
    assert rows[0] == (
        ["cls_class", *(f"cls_prob_{k}" for k in range(10)), *(f"recon_y{j}" for j in range(64))]
    )
    outputs = predict(*load_model(run), X[:5])
    assert list(outputs) == ["cls", "recon"]
    assert [int(r[0]) for r in rows[1:]] == list(outputs["cls"].argmax(axis=1))
    np.testing.assert_allclose(np.array(rows[1:], float)[:, 11:], outputs["recon"], rtol=1e-6)

    assert predict_file(run, tmp_path / "x.csv", tmp_path / "p.npz") is None
    with np.load(tmp_path / "p.npz") as z:
        assert z.files == ["cls", "recon"]
        np.testing.assert_array_equal(z["recon"], outputs["recon"])
    message = (
        f"{tmp_path / 'p.npy'}: the model has 2 outputs (cls, recon) and a .npy file holds one "
        "array; name the file .npz (an array per output) or .csv"
    )
    with pytest.raises(DataError) as e:
        predict_file(run, tmp_path / "x.csv", tmp_path / "p.npy")
    assert str(e.value) == message and not (tmp_path / "p.npy").exists()
    proc = invoke_nnlab("predict", run, tmp_path / "x.csv", "-o", tmp_path / "p.npy")
    assert proc.returncode == 2 and proc.stderr == f"error: {message}\n"


def test_numpy_export_of_several_outputs(models, tmp_path):
    run, X = models["semi_supervised"]
    np.savetxt(tmp_path / "x.csv", X[:8], delimiter=",", fmt="%d")
    (program,) = export(run, "numpy", tmp_path / "semi.py")
    namespace: dict = {}
    exec(compile(program.read_text(), str(program), "exec"), namespace)
    got = namespace["predict"](X)
    assert isinstance(got, dict) and list(got) == ["cls", "recon"]
    proc = run_without_nnlab(program, "x.csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == predict_file(run, tmp_path / "x.csv")  # the same table, to the digit
    proc = run_without_nnlab(program, "x.csv", "-o", "x.npy", cwd=tmp_path)
    assert proc.returncode == 2 and "has 2 outputs (cls, recon)" in proc.stderr


def test_onnx_and_c_name_each_output_after_its_layer(models, tmp_path):
    onnx = pytest.importorskip("onnx")
    run = models["semi_supervised"][0]
    (path,) = export(run, "onnx", tmp_path / "semi.onnx")
    graph = onnx.load(path).graph
    assert [o.name for o in graph.output] == ["cls", "cls_class", "recon"]
    (header,) = export(run, "c", tmp_path / "semi.h")
    text = header.read_text()
    assert "static inline void predict(const float *x, float *out_cls, float *out_recon)" in text
    assert "#define N_OUTPUTS_CLS 10\n#define N_OUTPUTS_RECON 64\n#define N_CLASSES 10" in text


def test_output_names_that_would_clash_are_refused():
    from nnlab.export.c_export import output_names as c_names
    from nnlab.export.onnx_export import output_names as onnx_names

    head = {"n_outputs": 2, "task": "regression", "classes": None, "threshold": None}
    info = {"heads": [{"name": "out-1", **head}, {"name": "out_1", **head}]}
    with pytest.raises(ExportError) as e:
        c_names(info)
    assert str(e.value) == (
        "the outputs 'out-1' and 'out_1' would have the same names in C (N_OUTPUTS_OUT_1); "
        "rename one of these layers"
    )
    info = {"heads": [{"name": "a", **head, "task": "classification"}, {"name": "a_class", **head}]}
    with pytest.raises(ExportError) as e:
        onnx_names(info)
    assert str(e.value) == (
        "the onnx export would give two graph outputs the name 'a_class' (the outputs 'a' and "
        "'a_class'); rename one of these layers"
    )


# ---------------------------------------------------------------- refusals


class Cube:
    """An activation that no exporter knows."""

    name = "cube"


def refusal(fmt: str, run: Path, change, tmp_path: Path) -> str:
    """The ExportError message of the ``fmt`` exporter for the model of ``run`` once
    ``change(model)`` has made it inexpressible."""
    import importlib

    if fmt == "onnx":
        pytest.importorskip("onnx")
    module = importlib.import_module(f"nnlab.export.{FORMATS[fmt].module}")
    model, meta = load_model(run)
    info = model_info(model, meta)
    change(model)
    with pytest.raises(ExportError) as e:
        module.write(model, meta, info, tmp_path / "out")
    return str(e.value)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_an_rnn_activation_a_format_cannot_express_is_named(models, tmp_path, fmt):
    def change(model):
        model.layers[1].activation_fn = Cube()

    assert refusal(fmt, models["rnn"][0], change, tmp_path).startswith(
        f"model.layers[1] (rnn): the {fmt} export cannot express the activation cube (it can: "
    )


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_a_join_a_format_cannot_express_is_named(models, tmp_path, fmt):
    def change(model):
        model.joins[1] = "max"

    assert refusal(fmt, models["xor_skip"][0], change, tmp_path) == (
        f"model.layers[1] (dense): the {fmt} export cannot join its inputs by max "
        "(it can: concat, sum)"
    )


HINT = " (an invertible network is a chain of dense layers with as many units as inputs"


@pytest.mark.parametrize(
    "name, message",
    [
        ("xor_skip", "model.layers[1] (dense): not invertible: reads several layers (input, "
         "hidden), joined by concat: nnlab inverts a chain, in which each layer reads the one "
         "before"),
        ("sum_join", "model.layers[4] (activation): not invertible: reads several layers (t, "
         "drop), joined by sum"),
        ("semi_supervised", "model.layers[1] (dense): not invertible: is one of the model's 2 "
         "outputs (cls, recon): nnlab inverts a model with one output"),
        ("lstm_sequence", "model.layers[0] (lstm): not invertible: is not a one-to-one map: its "
         "output is a state summarising the sequence (its last state), not the sequence"),
        ("lstm_sequences", "model.layers[0] (lstm): not invertible: is not a one-to-one map "
         "nnlab can undo: each state h_t = o_t * tanh(c_t) mixes the step's input with a "
         "memory c_t that the output does not hold"),
        ("rnn", "model.layers[1] (rnn): not invertible: reads several layers (r1, input), "
         "joined by concat"),
    ],
)  # fmt: skip
def test_invert_refuses_graphs_and_recurrent_layers_naming_the_first(models, name, message):
    model, _ = load_model(models[name][0])
    with pytest.raises(NotInvertibleError) as e:
        check_invertible(model)
    assert str(e.value).startswith(message) and HINT in str(e.value)


def sequence_model(layers: list[dict], dtype=np.float64):
    """An untrained model from a list of layers, on sequences of 2 steps of 1 feature."""
    from nnlab.config import resolve
    from nnlab.nn import Model

    spec = resolve({"data": "sequence", "model": {"layers": layers}, "loss": "mse"})["model"]
    return Model.from_spec(spec, (2, 1), np.random.default_rng(0), dtype)


def test_invert_refuses_an_rnn_returning_sequences():
    model = sequence_model(
        [{"type": "rnn", "units": 1, "return_sequences": True}, {"type": "flatten"}]
    )
    with pytest.raises(NotInvertibleError) as e:
        check_invertible(model)
    assert str(e.value).startswith(
        "model.layers[0] (rnn): not invertible: nnlab does not undo recurrent layers: "
        "each state h_t = act(x_t W + h_{t-1} U + b) depends on the state before" + HINT
    )


def test_invert_undoes_a_flatten_of_sequences():
    """A flatten is a reshape: a square network behind one inverts, back to (time, features),
    through an input scaling of that shape."""
    model = sequence_model(
        [
            {"type": "flatten"},
            {"type": "dense", "units": 2, "activation": "tanh"},
            {"type": "dense", "units": 2},
        ]
    )
    check_invertible(model)
    meta = {"shift": np.array([[1.0], [2.0]]), "scale": np.array([[2.0], [4.0]])}
    X = np.random.default_rng(1).normal(size=(20, 2, 1))
    back = invert(model, meta, predict(model, meta, X))
    assert back.shape == (20, 2, 1)
    np.testing.assert_allclose(back, X, atol=1e-9)
