"""Convolutional and normalization layers (issue 14): what each computes, against a direct
definition (loops over pixels) and PyTorch; their errors; batchnorm's running averages in
evaluation, in model.npz and in checkpoints (resume is bit for bit); the exports of convolutional
networks with batchnorm (NumPy bit for bit, ONNX under onnxruntime, C compiled with -Werror);
invert's refusals; layers.csv; the layers in ``nnlab list`` and the schema.

Gradients are checked in test_gradients.py (every layer, every option), the accuracy on MNIST
in test_mnist_training.py (slow).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import run_c_header, run_nnlab, run_without_nnlab, train_run
from nnlab.config import load_config, resolve
from nnlab.data.digits import digits
from nnlab.errors import ConfigError
from nnlab.experiment import build
from nnlab.export import export
from nnlab.metrics import MetricsTally
from nnlab.nn import LAYERS, Model
from nnlab.predict import predict_file
from nnlab.runs import load_model as load_run
from nnlab.runs import read_checkpoint, save_checkpoint
from nnlab.train import Trainer

RNG = np.random.default_rng(14)

CNN = """
data: {name: digits, scale: unit, test_split: 0.2, validation_split: 0.1}
model:
  layers:
    - {type: reshape, target_shape: [8, 8, 1]}
    - {type: conv2d, filters: 6, kernel_size: 3, padding: same, use_bias: false}
    - {type: batchnorm}
    - {type: activation, activation: relu}
    - {type: maxpool2d, pool_size: 3, strides: 2, padding: same}
    - {type: conv2d, filters: 8, kernel_size: [3, 2], activation: elu}
    - {type: avgpool2d, pool_size: 2, strides: 1, padding: same}
    - {type: layernorm}
    - {type: upsample2d, size: [2, 1]}
    - {type: conv2d, filters: 5, kernel_size: 3, dilation: 2, strides: [2, 1], padding: same,
       activation: tanh}
    - {type: batchnorm, center: false, momentum: 0.3}
    - {type: conv2d, filters: 4, kernel_size: 1, strides: 1}
    - {type: flatten}
    - {type: dense, units: 16, activation: relu}
    - {type: batchnorm}
    - {type: dense, units: 10, activation: softmax}
loss: categorical_crossentropy
optimizer: {name: adam, lr: 0.01}
training: {epochs: 3, seed: 1, batch_size: 64}
"""

# two convolution branches joined on the channels, a residual sum, a classifier and an
# upsampling decoder that reconstructs the input: a graph model with two outputs
GRAPH = """
data: {name: digits, scale: unit, test_split: 0.2, label_fraction: 0.5}
model:
  layers:
    - {name: image, type: reshape, target_shape: [8, 8, 1]}
    - {name: a, type: conv2d, filters: 4, kernel_size: 3, padding: same, activation: relu}
    - {name: b, type: conv2d, filters: 4, kernel_size: 5, padding: same, activation: relu,
       inputs: image}
    - {name: ab, type: batchnorm, inputs: [a, b]}
    - {name: pool, type: maxpool2d}
    - {name: c, type: conv2d, filters: 8, kernel_size: 3, padding: same, activation: relu}
    - {name: res, type: conv2d, filters: 8, kernel_size: 1, inputs: [c, pool], join: sum}
    - {name: gap, type: global_avgpool2d}
    - {name: cls, type: dense, units: 10, activation: softmax}
    - {name: up, type: upsample2d, inputs: res}
    - {name: dec, type: conv2d, filters: 1, kernel_size: 3, padding: same, activation: sigmoid}
    - {name: recon, type: flatten}
  outputs:
    - {layer: cls, loss: categorical_crossentropy}
    - {layer: recon, loss: mse, target: inputs}
optimizer: {name: adam, lr: 0.01}
training: {epochs: 2, seed: 3, batch_size: 32}
"""


def _cfg(text: str, tmp_path: Path, *overrides: str) -> dict:
    path = tmp_path / "cnn.yaml"
    path.write_text(text)
    return load_config(path, list(overrides))


def _model(specs: list[dict], shape: tuple[int, ...], dtype=np.float64) -> Model:
    layers = [LAYERS.create(s) for s in specs]
    return Model(layers, shape, np.random.default_rng(0), dtype)


# ---------------------------------------------------------------- direct definitions


def _same_pads(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def _windows_loop(X, k, s, d, padding, fill):
    """Every window of X (n, H, W, C), by loops: {(oy, ox): list of (i, j, values (n, C))}."""
    _n, H, W, _C = X.shape
    (kh, kw), (sh, sw), (dh, dw) = k, s, d
    if padding == "same":
        (pt, _), (pl, _) = _same_pads(H, kh, sh, dh), _same_pads(W, kw, sw, dw)
        Ho, Wo = -(-H // sh), -(-W // sw)
    else:
        pt = pl = 0
        Ho, Wo = (H - (kh - 1) * dh - 1) // sh + 1, (W - (kw - 1) * dw - 1) // sw + 1
    out = {}
    for oy in range(Ho):
        for ox in range(Wo):
            taps = []
            for i in range(kh):
                for j in range(kw):
                    y, x = oy * sh - pt + i * dh, ox * sw - pl + j * dw
                    inside = 0 <= y < H and 0 <= x < W
                    taps.append((i, j, X[:, y, x] if inside else None))
            out[oy, ox] = taps
    return out, Ho, Wo


@pytest.mark.parametrize(
    "opts",
    [
        {"kernel_size": 3},
        {"kernel_size": [3, 2], "padding": "same"},
        {"kernel_size": 3, "strides": 2, "padding": "same"},
        {"kernel_size": [2, 3], "strides": [1, 2]},
        {"kernel_size": 3, "dilation": 2, "padding": "same"},
        {"kernel_size": 2, "strides": 2, "dilation": 2},
        {"kernel_size": [2, 3], "strides": [2, 1], "dilation": [1, 2], "padding": "same"},
        {"kernel_size": 2, "padding": "same"},
        {"kernel_size": 1},
    ],
    ids=str,
)
@pytest.mark.parametrize("channels", [1, 3])
def test_conv2d_is_the_sum_over_each_window_of_x_times_w(opts, channels):
    spec = {"type": "conv2d", "filters": 4, "bias_initializer": "random_normal", **opts}
    model = _model([spec], (7, 6, channels))
    conv = model.layers[0]
    X = RNG.normal(size=(3, 7, 6, channels))
    W, b = conv.params["W"], conv.params["b"]
    g = conv._g
    taps, Ho, Wo = _windows_loop(X, (g.kh, g.kw), (g.sh, g.sw), (g.dh, g.dw), conv.padding, 0)
    want = np.zeros((3, Ho, Wo, 4))
    for (oy, ox), window in taps.items():
        want[:, oy, ox] = b + sum(v @ W[i, j] for i, j, v in window if v is not None)
    np.testing.assert_allclose(model.predict(X), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "opts",
    [
        {},
        {"pool_size": 3, "strides": 2, "padding": "same"},
        {"pool_size": [2, 3], "strides": 1},
        {"pool_size": 3, "strides": [1, 2], "padding": "same"},
    ],
    ids=str,
)
@pytest.mark.parametrize("kind", ["maxpool2d", "avgpool2d"])
def test_pooling_is_the_max_or_mean_of_each_window_inside_the_image(kind, opts):
    """Keras' semantics: padding: same leaves the padding out of the max and of the mean."""
    model = _model([{"type": kind, **opts}], (7, 6, 2))
    X = RNG.normal(size=(3, 7, 6, 2))
    g = model.layers[0]._g
    taps, Ho, Wo = _windows_loop(X, (g.kh, g.kw), (g.sh, g.sw), (1, 1), g_padding(model), 0)
    want = np.zeros((3, Ho, Wo, 2))
    for (oy, ox), window in taps.items():
        inside = np.stack([v for _, _, v in window if v is not None])
        want[:, oy, ox] = inside.max(axis=0) if kind == "maxpool2d" else inside.mean(axis=0)
    for training in (False, True):  # the training path (which keeps the argmax) agrees
        np.testing.assert_allclose(model.forward(X, training), want, rtol=1e-12, atol=1e-12)


def g_padding(model: Model) -> str:
    return model.layers[0].padding


def test_max_pooling_sends_the_gradient_to_one_element_of_each_window_on_ties():
    model = _model([{"type": "maxpool2d"}], (4, 4, 1))
    X = np.zeros((1, 4, 4, 1))
    X[0, :2, :2, 0] = 1.0  # a window of four equal maxima
    X[0, 2:, 2:, 0] = [[2.0, 5.0], [5.0, 5.0]]
    model.forward(X, training=True)
    dX = model.layers[0].backward(np.ones((1, 2, 2, 1)))
    windows = dX[0, :, :, 0].reshape(2, 2, 2, 2).transpose(0, 2, 1, 3).reshape(4, 4)
    assert (windows.sum(axis=1) == 1).all() and ((windows == 0) | (windows == 1)).all()
    assert dX[0, 2, 2, 0] == 0.0  # not the smaller element


def test_upsample_repeats_pixels_and_global_pooling_averages_them():
    model = _model(
        [{"type": "upsample2d", "size": [2, 3]}, {"type": "global_avgpool2d"}], (2, 2, 3)
    )
    X = RNG.normal(size=(4, 2, 2, 3))
    up = model.layer_outputs(X)[0]
    assert up.shape == (4, 4, 6, 3)
    np.testing.assert_array_equal(up, X.repeat(2, axis=1).repeat(3, axis=2))
    np.testing.assert_allclose(model.predict(X), X.mean(axis=(1, 2)), rtol=1e-12)


def test_batchnorm_and_layernorm_against_pytorch():
    """Training mode normalizes with the batch's statistics and moves the running averages
    by momentum (unbiased variance), evaluation uses the running averages: as
    torch.nn.BatchNorm2d; layernorm is torch.nn.LayerNorm over the last axis."""
    torch = pytest.importorskip("torch")
    X = RNG.normal(2.0, 3.0, size=(5, 4, 3, 6))
    spec = {"type": "batchnorm", "momentum": 0.2, "eps": 1e-3, "gamma_initializer": "random_normal",
            "beta_initializer": "random_normal"}  # fmt: skip
    model = _model([spec], (4, 3, 6))
    bn = model.layers[0]
    ref = torch.nn.BatchNorm2d(6, eps=1e-3, momentum=0.2, dtype=torch.float64)
    with torch.no_grad():
        ref.weight[:] = torch.from_numpy(bn.params["gamma"])
        ref.bias[:] = torch.from_numpy(bn.params["beta"])
    Xt = torch.from_numpy(X.transpose(0, 3, 1, 2))
    for _ in range(3):  # three training steps, then evaluation
        ref.train()
        want = ref(Xt).detach().numpy().transpose(0, 2, 3, 1)
        np.testing.assert_allclose(model.forward(X, training=True), want, atol=1e-12)
    np.testing.assert_allclose(bn.buffers["running_mean"], ref.running_mean.numpy(), atol=1e-12)
    np.testing.assert_allclose(bn.buffers["running_var"], ref.running_var.numpy(), atol=1e-12)
    ref.eval()
    want = ref(Xt).detach().numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(model.forward(X, training=False), want, atol=1e-12)

    ln = _model([{"type": "layernorm", "gamma_initializer": "random_normal"}], (4, 3, 6))
    ref = torch.nn.LayerNorm(6, dtype=torch.float64)
    with torch.no_grad():
        ref.weight[:] = torch.from_numpy(ln.layers[0].params["gamma"])
    want = ref(torch.from_numpy(X)).detach().numpy()
    np.testing.assert_allclose(ln.forward(X, training=True), want, atol=1e-12)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "layers, path, words",
    [
        (
            [{"type": "conv2d", "filters": 4, "kernel_size": 3}],
            "model.layers[0]",
            "takes images of shape (height, width, channels) per sample, but its input has "
            "shape (64,): add a reshape layer before it ({type: reshape, target_shape: [8, 8, "
            "1]} makes rows of 64 pixels 8x8 images)",
        ),
        (
            [{"type": "reshape", "target_shape": [8, 9, 1]}],
            "model.layers[0].target_shape",
            "cannot reshape an input of shape (64,) (64 values per sample) to [8, 9, 1]",
        ),
        (
            [{"type": "reshape", "target_shape": [-1, 3]}],
            "model.layers[0].target_shape",
            "the other dimensions hold 3 values, which do not divide 64",
        ),
        (
            [{"type": "reshape", "target_shape": [-1, -1]}],
            "model.layers[0].target_shape",
            "with at most one -1",
        ),
        (
            [
                {"type": "reshape", "target_shape": [8, 8, 1]},
                {"type": "conv2d", "filters": 2, "kernel_size": 9},
            ],
            "model.layers[1]",
            "the 9x9 window (kernel with dilation) is larger than the 8x8 input with padding: "
            "valid; use a smaller kernel, or padding: same",
        ),
        (
            [
                {"type": "reshape", "target_shape": [8, 8, 1]},
                {"type": "conv2d", "filters": 2, "kernel_size": [3, 3, 3]},
            ],
            "model.layers[1].kernel_size",
            "expected an integer >= 1 or a list of two (height, width), got [3, 3, 3]",
        ),
        (
            [{"type": "reshape", "target_shape": [8, 8, 1]}, {"type": "maxpool2d", "strides": 0}],
            "model.layers[1].strides",
            "expected an integer >= 1",
        ),
        (
            [
                {"type": "reshape", "target_shape": [8, 8, 1]},
                {"type": "dense", "units": 10, "activation": "softmax"},
            ],
            "model.layers[1]",
            "put a flatten layer before it",
        ),
        (
            [{"type": "batchnorm", "momentum": 1.5}],
            "model.layers[0].momentum",
            "expected a number >= 0 and <= 1, got 1.5",
        ),
    ],
    ids=lambda v: str(v)[:40],
)
def test_a_layer_that_does_not_fit_its_input_is_a_clear_error(layers, path, words):
    raw = {"data": {"name": "digits"}, "model": {"layers": layers}, "loss": "mse"}
    with pytest.raises(ConfigError) as e:
        build(resolve(raw))
    assert e.value.path == path and words in e.value.detail, (e.value.path, e.value.detail)


def test_the_cli_says_in_one_line_that_a_conv2d_on_rows_needs_a_reshape(tmp_path):
    (tmp_path / "c.yaml").write_text(
        "data: {name: digits}\nmodel:\n  layers:\n"
        "    - {type: conv2d, filters: 4, kernel_size: 3}\n"
        "    - {type: flatten}\n    - {type: dense, units: 10, activation: softmax}\n"
        "loss: categorical_crossentropy\n"
    )
    proc = run_nnlab("train", tmp_path / "c.yaml", "--runs-dir", tmp_path / "runs")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "model.layers[0]" in proc.stderr and "add a reshape layer before it" in proc.stderr


def test_the_new_layers_are_listed_and_in_the_schema():
    proc = run_nnlab("list", "layers")
    assert proc.returncode == 0
    for name in ("conv2d", "maxpool2d", "avgpool2d", "global_avgpool2d", "upsample2d",
                 "reshape", "batchnorm", "layernorm"):  # fmt: skip
        assert name in proc.stdout
    schema = json.loads(run_nnlab("config", "--schema").stdout)
    layer_types = json.dumps(schema["properties"]["model"])
    assert '"conv2d"' in layer_types and '"kernel_size"' in layer_types
    assert '"momentum"' in layer_types and '"target_shape"' in layer_types


def test_threads_count_a_convolutions_product():
    from nnlab import threads

    model = _model(
        [{"type": "conv2d", "filters": 32, "kernel_size": 5, "padding": "same"}],
        (14, 14, 16),
        np.float32,
    )
    conv = model.layers[0]
    block = conv._g.block(4)
    assert threads.largest_product(model, 128) == block * 14 * 14 * 5 * 5 * 16 * 32


# ---------------------------------------------------------------- runs, checkpoints, resume


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("cnn")
    (tmp / "cnn.yaml").write_text(CNN)
    (tmp / "graph.yaml").write_text(GRAPH)
    return {
        "cnn": train_run(tmp / "cnn.yaml", tmp),
        "cnn64": train_run(
            tmp / "cnn.yaml", tmp, "training.dtype=float64", "name=cnn64", "training.epochs=1"
        ),
        "graph": train_run(tmp / "graph.yaml", tmp),
    }


def test_running_averages_are_saved_with_the_weights_and_used_after_reload(trained):
    run = trained["cnn"]
    with np.load(run / "model.npz") as z:
        stored = {k: z[k] for k in z.files if "running" in k}
    assert set(stored) == {
        f"param/layers.{i}.running_{s}" for i in (2, 10, 14) for s in ("mean", "var")
    }
    assert all(not np.all(v == (0 if "mean" in k else 1)) for k, v in stored.items())
    model, _meta = load_run(run)
    assert np.array_equal(model.layers[2].buffers["running_mean"],
                          stored["param/layers.2.running_mean"])  # fmt: skip
    X = digits().X[:50] / 16.0
    out = model.predict(X.astype(np.float32))
    model.buffers[...] = 0.0  # other running averages, other outputs: they are used
    assert not np.allclose(model.predict(X.astype(np.float32)), out)


def test_resume_with_batchnorm_continues_bit_for_bit(tmp_path):
    """Interrupted after 2 of 5 epochs, checkpointed to disk, resumed in a new experiment:
    the metrics, weights and running averages of an uninterrupted run, bit for bit."""
    cfg = _cfg(CNN, tmp_path, "training.epochs=5", "model.layers.3={type: dropout, rate: 0.2}")
    full = Trainer(build(cfg), log=[])  # a list collects the rows
    assert full.fit() == "completed"

    first = Trainer(build(cfg), log=[])
    first.on_epoch = lambda epoch: first.request_stop(2) if epoch == 2 else None
    assert first.fit() == "interrupted" and first.epoch == 2
    save_checkpoint(tmp_path / "checkpoint.npz", *first.state())
    arrays, meta = read_checkpoint(tmp_path / "checkpoint.npz")
    assert arrays["buffers"].size == 2 * (6 + 5 + 16)
    resumed = Trainer(build(cfg), log=list(first.log))
    resumed.load_state(arrays, meta, MetricsTally.of(first.log))
    assert resumed.fit() == "completed"

    strip = [
        [{k: v for k, v in r.items() if k != "seconds"} for r in t.log] for t in (full, resumed)
    ]
    assert strip[0] == strip[1] and len(strip[0]) == 5
    np.testing.assert_array_equal(resumed.exp.model.theta, full.exp.model.theta)
    np.testing.assert_array_equal(resumed.exp.model.buffers, full.exp.model.buffers)


def test_early_stopping_restores_the_running_averages_of_the_best_epoch(tmp_path):
    cfg = _cfg(CNN, tmp_path, "training.epochs=6",
               "training.early_stopping={monitor: val_loss, patience: 100}")  # fmt: skip
    trainer = Trainer(build(cfg))
    best_epoch, snapshots = None, {}

    def remember(epoch: int) -> None:
        snapshots[epoch] = trainer.exp.model.buffers.copy()

    trainer.on_epoch = remember
    trainer.fit()
    best_epoch = trainer.es_epoch
    np.testing.assert_array_equal(trainer.exp.model.buffers, snapshots[best_epoch])


def test_activations_command_leaves_the_running_averages_alone(trained, tmp_path):
    from nnlab.layerstats import mode_means

    model, _ = load_run(trained["cnn"])
    before = model.buffers.copy()
    rows = mode_means(model, (digits().X[:100] / 16.0).astype(np.float32), passes=2)
    np.testing.assert_array_equal(model.buffers, before)
    bn = rows[2]
    assert bn["type"] == "batchnorm" and np.isfinite(bn["train_mean"])


def test_layers_csv_reports_convolutions_and_batchnorm(tmp_path):
    from nnlab.lifecycle import train

    cfg = _cfg(CNN, tmp_path, "training.log_layers=true", "training.epochs=1")
    run = train(cfg, tmp_path / "runs").run_dir
    import csv

    rows = [r for r in csv.DictReader((run / "layers.csv").open()) if r["epoch"] == "1"]
    by_layer = {int(r["layer"]): r for r in rows}
    conv, bn = by_layer[9], by_layer[2]
    assert conv["type"] == "conv2d" and conv["activation"] == "tanh"
    assert float(conv["w_norm"]) > 0 and float(conv["grad_norm"]) > 0
    assert 0 <= float(conv["saturated"]) <= 1
    assert bn["type"] == "batchnorm" and float(bn["w_norm"]) > 0  # the norm of gamma
    assert float(bn["a_std"]) > 0 and bn["z_std"] != bn["a_std"]  # its input, its output
    assert 4 not in by_layer  # pooling: nothing of its own


def test_gradcheck_command_passes_on_a_cnn_with_batchnorm(tmp_path):
    (tmp_path / "cnn.yaml").write_text(CNN)
    proc = run_nnlab("gradcheck", tmp_path / "cnn.yaml", "--samples", "4", "--entries", "40")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1].startswith("pass: all")
    assert "(conv2d)" in proc.stdout and "(batchnorm)" in proc.stdout


# ---------------------------------------------------------------- exports


def _reference(run: Path, X: np.ndarray, tmp_path: Path, out: str = "ref.npz") -> dict:
    np.save(tmp_path / "x.npy", X)
    predict_file(run, tmp_path / "x.npy", tmp_path / out)
    with np.load(tmp_path / out) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("name", ["cnn", "cnn64", "graph"])
def test_numpy_export_of_a_cnn_equals_predict_bit_for_bit(trained, name, tmp_path):
    run = trained[name]
    X = np.concatenate([digits().X, digits().X[:400]]).astype(np.float64)  # > 2 batches
    ref = _reference(run, X, tmp_path)
    (program,) = export(run, "numpy", tmp_path / "predict.py")
    proc = run_without_nnlab(program, "x.npy", "-o", "out.npz", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with np.load(tmp_path / "out.npz") as z:
        assert set(z.files) == set(ref)
        for k in ref:
            np.testing.assert_array_equal(z[k], ref[k])


@pytest.mark.parametrize("name", ["cnn", "cnn64", "graph"])
def test_onnx_export_of_a_cnn_runs_in_onnxruntime(trained, name, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    run = trained[name]
    X = digits().X[:300].astype(np.float64)
    ref = _reference(run, X, tmp_path)
    (path,) = export(run, "onnx", tmp_path / "m.onnx")
    ops = {n.op_type for n in onnx.load(path).graph.node}
    session = ort.InferenceSession(str(path))
    dtype = np.float64 if name == "cnn64" else np.float32
    got = dict(zip([o.name for o in session.get_outputs()],
                   session.run(None, {"input": X.astype(dtype)}), strict=True))  # fmt: skip
    keys = {"cnn": ["output"], "cnn64": ["output"], "graph": ["cls", "recon"]}[name]
    refs = [ref["output"]] if "output" in ref else [ref[k] for k in keys]
    worst = max(np.abs(got[k] - r).max() for k, r in zip(keys, refs, strict=True))
    assert worst <= (1e-5 if dtype == np.float32 else 1e-9), worst
    if name == "cnn":
        assert {"Conv", "MaxPool", "AveragePool", "BatchNormalization", "LayerNormalization",
                "Resize", "Reshape"} <= ops  # fmt: skip
        assert sum(op == "Transpose" for op in (n.op_type for n in onnx.load(path).graph.node)) <= 4
    if name == "graph":
        assert {"GlobalAveragePool", "Concat", "Add"} <= ops


@pytest.mark.parametrize("name", ["cnn", "cnn64"])
def test_c_export_of_a_cnn_compiles_with_werror_and_equals_predict(trained, name, tmp_path):
    run = trained[name]
    X = digits().X[:200].astype(np.float64)
    ref = _reference(run, X, tmp_path)["output"]
    export(run, "c", tmp_path / "model.h")
    double = name == "cnn64"
    names, *lines = run_c_header(tmp_path, X, double)  # a classifier: its class names first
    assert names.split(",") == [str(k) for k in range(10)]
    out = np.loadtxt(lines, ndmin=2)
    assert np.abs(out - ref).max() <= (1e-5 if not double else 1e-12)


# ---------------------------------------------------------------- invert


def test_invert_names_why_it_cannot_undo_image_layers(trained, tmp_path):
    from nnlab.invert import NotInvertibleError, check_invertible

    model, _ = load_run(trained["cnn"])
    with pytest.raises(NotInvertibleError) as e:
        check_invertible(model)
    assert str(e.value).startswith(
        "model.layers[1] (conv2d): not invertible: maps 64 values (8x8x1) to 384 values "
        "(8x8x6), so most outputs are given by no input"
    )
    reasons = {}
    for spec, shape in [
        ({"type": "maxpool2d"}, (4, 4, 2)),
        ({"type": "avgpool2d"}, (4, 4, 2)),
        ({"type": "global_avgpool2d"}, (4, 4, 2)),
        ({"type": "upsample2d"}, (4, 4, 2)),
        ({"type": "layernorm"}, (4, 4, 2)),
        ({"type": "conv2d", "filters": 2, "kernel_size": 3, "padding": "same"}, (4, 4, 2)),
    ]:
        m = _model([{"type": "reshape", "target_shape": list(shape)}, spec], (int(np.prod(shape)),))
        with pytest.raises(NotInvertibleError) as e:
            check_invertible(m)
        reasons[spec["type"]] = str(e.value)
    assert "keeping the largest of each window: the others are lost" in reasons["maxpool2d"]
    assert "maps 32 values (4x4x2) to 8 values (2x2x2), so many inputs" in reasons["avgpool2d"]
    assert "to 2 values, so many inputs give the same output" in reasons["global_avgpool2d"]
    assert "each repeated: most outputs" in reasons["upsample2d"]
    assert "removes each position's mean and spread" in reasons["layernorm"]
    assert "a linear map that nnlab does not solve" in reasons["conv2d"]


def test_invert_undoes_batchnorm_and_reshape(tmp_path):
    from nnlab.invert import invert

    text = """
data: {name: twist}
model:
  layers:
    - {type: dense, units: 2, activation: tanh}
    - {type: batchnorm}
    - {type: reshape, target_shape: [1, 2]}
    - {type: flatten}
    - {type: dense, units: 2, activation: {name: leaky_relu, alpha: 0.2}}
    - {type: dense, units: 2}
loss: mse
training: {epochs: 3, seed: 0}
"""
    (tmp_path / "inv.yaml").write_text(text)
    run = train_run(tmp_path / "inv.yaml", tmp_path)
    model, meta = load_run(run)
    X = RNG.uniform(-0.8, 0.8, (20, 2)).astype(np.float32)
    Y = model.predict(X)
    np.testing.assert_allclose(invert(model, meta, Y), X, atol=2e-4)


def test_pieces_on_threads_give_the_numbers_of_one_thread(monkeypatch):
    """With two threads a batch is cut into pieces of samples run at once (workers.py): the
    outputs, gradients and input gradient are those of one thread (float64, to rounding)."""
    from threadpoolctl import threadpool_limits

    import nnlab.nn.conv as conv

    monkeypatch.setattr(conv, "BLOCK_BYTES", 4096)  # many blocks: several pieces
    specs = [
        {"type": "conv2d", "filters": 6, "kernel_size": 3, "padding": "same", "activation": "tanh"},
        {"type": "maxpool2d", "pool_size": 3, "strides": 2, "padding": "same"},
        {"type": "conv2d", "filters": 4, "kernel_size": [3, 2], "strides": 2, "activation": "elu"},
        {"type": "avgpool2d", "padding": "same"},
        {"type": "conv2d", "filters": 3, "kernel_size": 1},
        {"type": "flatten"},
        {"type": "dense", "units": 2},
    ]
    X, T = RNG.normal(size=(37, 11, 9, 2)), RNG.normal(size=(37, 2))
    results = []
    for threads in (1, 2):
        model = _model(specs, (11, 9, 2))
        with threadpool_limits(threads):
            out = model.forward(X, training=True).copy()
            dX = model.backward((out - T) / len(X), need_input_grad=True).copy()
        results.append((out, model.grad.copy(), dX))
    for one, two in zip(*results, strict=True):
        np.testing.assert_allclose(two, one, rtol=1e-12, atol=1e-14)


def test_populations_say_that_convolutional_networks_train_as_single_runs():
    """The population engine (many networks in one pass) covers dense networks: a CNN's
    seeds or trials run one at a time, and the reason names the first image layer."""
    from nnlab.config import load_config
    from nnlab.population.partition import alone_reason, partition

    root = Path(__file__).resolve().parents[1]
    cnn = load_config(root / "configs" / "mnist_cnn.yaml")
    assert alone_reason(cnn) == (
        "model.layers[0] is a reshape layer: populations cover dense, activation, dropout and "
        "flatten layers"
    )
    parts = partition([cnn, cnn])
    assert parts.groups == [] and set(parts.alone) == {0, 1}
