"""Grad-CAM (Selvaraju et al. 2017) for ``nnlab explain --method gradcam``.

For an image model and a layer whose output is a stack of feature maps A (height, width,
channels) (by default the last conv2d layer), the class-activation map of a sample is
``relu(sum_k alpha_k A_k)``, with ``alpha_k`` the mean over the map's positions of
``d score / d A_k``: the channels weighted by how much the score depends on them, kept where
they raise it. The map (at the layer's resolution) is resized to the input image's with
bilinear interpolation over pixel centres (PyTorch's ``interpolate(mode="bilinear",
align_corners=False)``, OpenCV's ``resize``), as the paper and Keras' example do.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nnlab.errors import ConfigError, did_you_mean

Array = np.ndarray


def feature_layers(model: Any) -> list[int]:
    """The layers whose output is feature maps (height, width, channels), the outputs of the
    model excepted."""
    return [i for i, shape in enumerate(model.shapes) if len(shape) == 3 and i not in model.outputs]


def choose_layer(model: Any, layer: str | None) -> int:
    """The index of the layer to explain: ``layer`` by name or index, or the last conv2d
    layer (else the last layer of feature maps)."""
    from nnlab.nn import LAYERS

    candidates = feature_layers(model)
    if not candidates:
        raise ConfigError(
            "gradcam explains a layer of feature maps (height, width, channels), as a conv2d "
            "layer gives; this model has none: use --method gradient",
            "--method",
        )
    names = [model.names[i] for i in candidates]
    if layer is None:
        convs = [i for i in candidates if LAYERS.name_of(model.layers[i]) == "conv2d"]
        return (convs or candidates)[-1]
    text = str(layer)
    if text in model.names:
        index = model.names.index(text)
    elif text.lstrip("-").isdigit() and -len(model.layers) <= int(text) < len(model.layers):
        index = int(text) % len(model.layers)
    else:
        raise ConfigError(
            f"{text!r} is not a layer of the model.{did_you_mean(text, names)} Layers of "
            f"feature maps: {', '.join(names)}",
            "--layer",
        )
    if index not in candidates:
        raise ConfigError(
            f"layer {model.names[index]} gives {model.shapes[index]} per sample, not feature "
            f"maps (height, width, channels); choose one of: {', '.join(names)}",
            "--layer",
        )
    return index


class Tap:
    """While in use, keeps the output of a layer of the model in forward and the gradient of
    the score with respect to it in backward (``values``, ``grads``: copies)."""

    def __init__(self, layer: Any):
        self.layer = layer
        self.values: Array | None = None
        self.grads: Array | None = None

    def __enter__(self) -> Tap:
        layer, forward, backward = self.layer, self.layer.forward, self.layer.backward

        def tapped_forward(X, training=False):
            out = forward(X, training)
            self.values = np.array(out, copy=True)
            return out

        def tapped_backward(dY, need_dx=True):
            self.grads = np.array(dY, copy=True)
            return backward(dY, need_dx)

        layer.forward, layer.backward = tapped_forward, tapped_backward
        return self

    def __exit__(self, *exc) -> None:
        del self.layer.forward, self.layer.backward  # the class's methods again


def resize_bilinear(maps: Array, size: tuple[int, int]) -> Array:
    """(n, h, w) maps resized to (n, H, W) by bilinear interpolation over pixel centres
    (output pixel y samples the input at (y + 0.5) h / H - 0.5, clamped to the edges)."""
    _, h, w = maps.shape
    H, W = size
    if (h, w) == (H, W):
        return maps.copy()

    def taps(out: int, inp: int) -> tuple[Array, Array, Array]:
        src = np.clip((np.arange(out) + 0.5) * inp / out - 0.5, 0, inp - 1)
        lo = np.floor(src).astype(np.int64)
        hi = np.minimum(lo + 1, inp - 1)
        return lo, hi, src - lo

    y0, y1, fy = taps(H, h)
    x0, x1, fx = taps(W, w)
    rows = maps[:, y0] * (1 - fy)[None, :, None] + maps[:, y1] * fy[None, :, None]
    return rows[:, :, x0] * (1 - fx) + rows[:, :, x1] * fx


def cam(values: Array, grads: Array) -> Array:
    """Grad-CAM maps (n, h, w) from a layer's outputs and the score's gradient with respect
    to them, both (n, h, w, channels): relu(sum_k mean_hw(grad_k) A_k)."""
    alpha = grads.mean(axis=(1, 2), dtype=np.float64)  # (n, channels)
    maps = np.einsum("nhwk,nk->nhw", values.astype(np.float64), alpha)
    return np.maximum(maps, 0.0)


def gradcam(scorer: Any, xb: Array, index: int, size: tuple[int, int]) -> tuple[Array, Array]:
    """The Grad-CAM maps (b, H, W) of a batch at layer ``index``, resized to ``size``, and
    the class (or unit) each explains (b,). ``scorer``: see ``nnlab.explain``."""
    model = scorer.model
    with Tap(model.layers[index]) as tap:
        target = scorer.target(scorer.outputs(xb))
        scorer.gradient(xb, target)
    if tap.grads is None:  # backpropagation did not reach it: the score does not read it
        raise ConfigError(
            f"layer {model.names[index]} does not feed the explained output (the model's "
            "first): choose a layer before it",
            "--layer",
        )
    return resize_bilinear(cam(tap.values, tap.grads), size), target


def map_shape(model: Any, image_shape: tuple[int, ...] | None) -> tuple[int, int]:
    """(height, width) of the input images that the maps are drawn over."""
    if image_shape is not None and len(image_shape) >= 2:
        return int(image_shape[0]), int(image_shape[1])
    if len(model.input_shape) == 3:
        return int(model.input_shape[0]), int(model.input_shape[1])
    raise ConfigError(
        f"gradcam draws a map over input images; this run's inputs ({model.input_shape} per "
        "sample) are not images: use --method gradient",
        "--method",
    )


def describe(model: Any, index: int) -> str:
    from nnlab.nn import LAYERS

    name = model.names[index]
    return f"grad-cam of layer {name} ({LAYERS.name_of(model.layers[index])})"
