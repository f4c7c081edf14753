"""nnlab explain --method gradcam: the class-activation maps of a convolutional layer, checked
against an independent computation (the layer's maps from the layers below it, the gradient of
the score with respect to them by central differences through the layers above it, the
weighting and the bilinear resizing written out with loops); the choice of layer; the errors."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import invoke_nnlab, train_run
from nnlab.errors import ConfigError
from nnlab.explain import Method, explain, run_inputs, saliency
from nnlab.gradcam import resize_bilinear

CNN = """
data: {name: digits, scale: unit, test_split: 0.2}
model:
  layers:
    - {type: reshape, target_shape: [8, 8, 1]}
    - {type: conv2d, filters: 4, kernel_size: 3, padding: same, activation: elu}
    - {type: maxpool2d}
    - {name: top, type: conv2d, filters: 6, kernel_size: 3, padding: same, activation: tanh}
    - {type: batchnorm}
    - {type: flatten}
    - {type: dense, units: 10, activation: softmax}
loss: categorical_crossentropy
optimizer: {name: adam, lr: 0.01}
training: {epochs: 3, seed: 2, batch_size: 64, dtype: float64}
"""


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gradcam")
    (tmp / "cnn.yaml").write_text(CNN)
    return train_run(tmp / "cnn.yaml", tmp)


def _bilinear_loops(m: np.ndarray, H: int, W: int) -> np.ndarray:
    """One (h, w) map resized to (H, W), pixel by pixel: output pixel centre (y + 0.5) maps to
    input coordinate (y + 0.5) h / H - 0.5, clamped into the map, between its two
    neighbours."""
    h, w = m.shape
    out = np.zeros((H, W))
    for y in range(H):
        sy = min(max((y + 0.5) * h / H - 0.5, 0.0), h - 1.0)
        y0 = int(np.floor(sy))
        y1, fy = min(y0 + 1, h - 1), sy - y0
        for x in range(W):
            sx = min(max((x + 0.5) * w / W - 0.5, 0.0), w - 1.0)
            x0 = int(np.floor(sx))
            x1, fx = min(x0 + 1, w - 1), sx - x0
            top = m[y0, x0] * (1 - fx) + m[y0, x1] * fx
            bottom = m[y1, x0] * (1 - fx) + m[y1, x1] * fx
            out[y, x] = top * (1 - fy) + bottom * fy
    return out


def _independent_maps(model, X: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM maps (n, 8, 8) at layer ``index`` of a chain and the predicted classes,
    computed without backpropagation: the score (the predicted class's logit) as a function
    of the layer's output, differentiated by central differences, one map entry of every
    sample at a time (the samples do not mix in evaluation)."""
    A = X
    for layer in model.layers[: index + 1]:
        A = layer.forward(A, False).copy()

    def logits(maps: np.ndarray) -> np.ndarray:
        Z = maps
        for layer in model.layers[index + 1 : -1]:
            Z = layer.forward(Z, False)
        return model.layers[-1].forward_logits(Z, False).copy()

    pred = logits(A).argmax(axis=1)
    rows = np.arange(len(X))
    grad = np.zeros_like(A)
    eps = 1e-6
    for pos in np.ndindex(*A.shape[1:]):
        up, down = A.copy(), A.copy()
        up[(slice(None), *pos)] += eps
        down[(slice(None), *pos)] -= eps
        grad[(slice(None), *pos)] = (logits(up)[rows, pred] - logits(down)[rows, pred]) / (2 * eps)
    maps = np.zeros((len(X), A.shape[1], A.shape[2]))
    for n in range(len(X)):
        for k in range(A.shape[3]):
            maps[n] += grad[n, :, :, k].mean() * A[n, :, :, k]
    maps = np.maximum(maps, 0.0)
    return np.stack([_bilinear_loops(m, 8, 8) for m in maps]), pred


def test_gradcam_equals_the_maps_computed_by_hand(cnn_run):
    model, _, _, X = run_inputs(cnn_run, "test")
    s = explain(cnn_run, method=Method("gradcam"))
    maps, pred = _independent_maps(model, X, index=3)  # the last conv2d layer, by default
    assert s.unit == "cam" and s.image_shape == (8, 8) and "layer top (conv2d)" in s.method
    np.testing.assert_allclose(s.mean_abs, maps.mean(axis=0), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(s.mean, maps.mean(axis=0), rtol=1e-6, atol=1e-9)
    for k in range(10):  # the per-class panels: the samples predicted k
        if (pred == k).any():
            np.testing.assert_allclose(
                s.per_class[k], maps[pred == k].mean(axis=0), rtol=1e-6, atol=1e-9
            )
    assert maps.max() > 0  # something to compare


def test_gradcam_of_a_chosen_layer_and_class(cnn_run):
    """--layer by index (the first convolution, already 8x8: no resizing) and --target."""
    model, meta, _, X = run_inputs(cnn_run, "test")
    # noise on the blank background: no ties in the max pooling above the layer, where the
    # derivative has no single value that differences could check
    X = X + np.random.default_rng(0).normal(0, 0.01, X.shape)
    s = saliency(model, meta, X, 3, image_shape=(8, 8), method=Method("gradcam", layer="1"))
    A = model.layers[1].forward(model.layers[0].forward(X, False), False).copy()
    # the score is the logit of class 3 for every sample

    def score(maps: np.ndarray) -> np.ndarray:
        Z = maps
        for layer in model.layers[2:-1]:
            Z = layer.forward(Z, False)
        return model.layers[-1].forward_logits(Z, False)[:, 3].copy()

    grad = np.zeros_like(A)
    for pos in np.ndindex(*A.shape[1:]):
        up, down = A.copy(), A.copy()
        up[(slice(None), *pos)] += 1e-6
        down[(slice(None), *pos)] -= 1e-6
        grad[(slice(None), *pos)] = (score(up) - score(down)) / 2e-6
    maps = np.maximum(np.einsum("nhwk,nk->nhw", A, grad.mean(axis=(1, 2))), 0)
    np.testing.assert_allclose(s.mean_abs, maps.mean(axis=0), rtol=1e-6, atol=1e-9)
    assert s.per_class is None and "class 3" in s.target


def test_bilinear_resizing_is_pytorchs():
    torch = pytest.importorskip("torch")
    maps = np.random.default_rng(0).normal(size=(3, 4, 5))
    for size in [(8, 10), (7, 13), (4, 5), (2, 3)]:
        want = torch.nn.functional.interpolate(
            torch.from_numpy(maps)[:, None], size=size, mode="bilinear", align_corners=False
        )[:, 0].numpy()
        np.testing.assert_allclose(resize_bilinear(maps, size), want, rtol=1e-12, atol=1e-12)


def test_gradcam_layer_errors(cnn_run, tmp_path):
    with pytest.raises(ConfigError, match="not feature maps") as e:
        explain(cnn_run, method=Method("gradcam", layer="6"))
    assert e.value.path == "--layer"
    with pytest.raises(ConfigError, match=r"'tpo' is not a layer.*top"):
        explain(cnn_run, method=Method("gradcam", layer="tpo"))


def test_gradcam_cli_draws_the_map_and_refuses_models_without_feature_maps(cnn_run, tmp_path):
    out = invoke_nnlab("explain", str(cnn_run), "--method", "gradcam", "--layer", "top")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "grad-cam of layer top (conv2d)" in out.stdout
    assert "mean Grad-CAM map per pixel" in out.stdout
    png = tmp_path / "cam.png"
    out = invoke_nnlab("explain", str(cnn_run), "--method", "gradcam", "-o", str(png))
    assert out.returncode == 0, out.stdout + out.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dense = tmp_path / "dense.yaml"
    dense.write_text(CNN.split("model:")[0] + DENSE)
    run = train_run(dense, tmp_path)
    out = invoke_nnlab("explain", str(run), "--method", "gradcam")
    assert out.returncode == 2
    assert "gradcam explains a layer of feature maps" in out.stderr
    assert "--method gradient" in out.stderr and "Traceback" not in out.stderr


DENSE = """model:
  layers:
    - {type: dense, units: 8, activation: relu}
    - {type: dense, units: 10, activation: softmax}
loss: categorical_crossentropy
training: {epochs: 1, seed: 0}
"""
