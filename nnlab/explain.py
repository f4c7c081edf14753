"""Input-gradient saliency: ``nnlab explain RUN``.

Which inputs does a trained network's output depend on? The saliency of input feature j for
a sample is ``|d score / d x_j|``, the gradient of one of the network's outputs with respect
to that input (Simonyan et al. 2013); nnlab averages it over a split of the run's data. The
score is, by default, the logit (the pre-activation of the output layer: the class score
before the softmax or sigmoid) of the class the network predicts for each sample; ``output``
explains one output unit (a class) for every sample, and ``score="output"`` differentiates the
output itself (probabilities for softmax and sigmoid outputs).

Gradients are with respect to the inputs the model sees, after the data's scaling
(``data.scale``): with ``standard`` scaling, per standard deviation of each feature, so
features of different ranges compare. Images (data with an ``image_shape``) are shown as a
heat map: a PNG, or characters in the terminal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnlab.errors import ConfigError, DataError, did_you_mean

Array = np.ndarray
BATCH = 1024
SPLITS = ("train", "val", "test")
SCORES = ("logit", "output")


@dataclass
class Saliency:
    """Mean input gradients over the samples of a split."""

    mean_abs: Array  # (*input_shape,) mean |d score / d x|
    mean: Array  # (*input_shape,) mean d score / d x (signed)
    split: str
    samples: int
    target: str  # what was differentiated, in words
    image_shape: tuple[int, ...] | None
    class_names: list[str]
    per_class: Array | None = None  # (classes, *input_shape) mean |grad| per target class
    class_counts: Array | None = None  # (classes,) samples per target class


def run_inputs(run: str | Path, split: str) -> tuple[Any, dict, Any, Array]:
    """(model, meta, data, X) of a run folder: its trained model and the inputs of a split of
    its data, as they were in training (same splits, same scaling)."""
    from nnlab.config import load_config
    from nnlab.data import load
    from nnlab.experiment import seed_streams
    from nnlab.runs import load_model

    path = Path(run)
    if not (path / "config.yaml").is_file():
        raise DataError(f"{run}: not a run folder (no config.yaml); give a run folder")
    model, meta = load_model(path)
    config = load_config(path / "config.yaml")
    rngs = seed_streams(config["training"]["seed"], config["data"].get("split_seed"))
    data = load(config["data"], rngs["data"], model.dtype)
    if split not in SPLITS:
        raise ConfigError(f"{split!r} is not a split.{did_you_mean(split, SPLITS)}", "--data")
    part = getattr(data, split)
    if part is None:
        have = [s for s in SPLITS if getattr(data, s) is not None]
        raise ConfigError(
            f"the run's data has no {split} split (it has: {', '.join(have)})", "--data"
        )
    return model, meta, data, part.X


def _decide(values: Array, logits: bool, activation: str | None, threshold: float) -> Array:
    """Predicted classes (n,) from outputs or logits (n, k)."""
    if values.shape[1] > 1:
        return values.argmax(axis=1)
    if activation == "sigmoid":
        return (values[:, 0] > (0.0 if logits else 0.5)).astype(np.int64)
    return (values[:, 0] > threshold).astype(np.int64)


def _class_index(output: str | int, classes: list[str], n_units: int) -> int:
    """A class (or output unit) given by index or by name."""
    text = str(output)
    if text in classes:
        return classes.index(text)
    try:
        k = int(text)
    except ValueError:
        raise ConfigError(
            f"{text!r} is not a class.{did_you_mean(text, classes)} Classes: {', '.join(classes)}",
            "--target",
        ) from None
    count = max(len(classes), n_units)
    if not 0 <= k < count:
        raise ConfigError(f"{k} is not an output: they are 0..{count - 1}", "--target")
    return k


def saliency(
    model: Any,
    meta: dict,
    X: Array,
    output: str | int | None = None,
    score: str = "logit",
    split: str = "test",
    image_shape: tuple[int, ...] | None = None,
) -> Saliency:
    """Mean input gradients of a score over the samples ``X`` (model inputs, scaled).

    Parameters
    ----------
    X : (n, *input_shape) inputs as the model takes them.
    output : a class (index or name) or output unit to explain for every sample; None: the
        predicted class of each sample (classifiers) or the only output (regression).
    score : ``logit`` (the output layer's pre-activation) or ``output`` (the model's output).
    """
    from nnlab.nn.graph import model_info

    if score not in SCORES:
        raise ConfigError(f"{score!r} is not a score.{did_you_mean(score, SCORES)}", "--score")
    info = model_info(model, meta)
    activation = model.output_activation
    classify = meta["task"] == "classification"
    classes = info["classes"] or []
    n_units = int(model.output_shapes[0][-1])
    logits = score == "logit" and activation not in (None, "linear")
    if output is None and not classify and n_units > 1:
        raise ConfigError(
            f"the model has {n_units} outputs: choose one with --target 0..{n_units - 1}",
            "--target",
        )
    fixed = None if output is None else _class_index(output, classes, n_units)
    threshold = info["threshold"] if info["threshold"] is not None else 0.5
    n = X.shape[0]
    if n == 0:
        raise DataError(f"the {split} split has no samples to explain")
    others = [False] * (model.n_outputs - 1)  # the outputs after the first are not explained
    flags: bool | list[bool] = [logits, *others] if others else logits
    k_classes = len(classes) if classify else 0
    sums = _Sums(model.input_shape, k_classes, per_class=classify and fixed is None)
    for start in range(0, n, BATCH):
        xb = X[start : start + BATCH]
        outs = model.forward(xb, training=False, logits=flags)
        out = outs if model.n_outputs == 1 else outs[0]  # (b, units)
        b = out.shape[0]
        if fixed is not None:
            target = np.full(b, fixed)
        elif classify:
            target = _decide(out, logits, activation, threshold)
        else:
            target = np.zeros(b, np.int64)
        d = _score_gradient(out, target, classify)
        douts = [d, *[None for _ in others]] if others else d
        sums.add(model.backward(douts, logits=flags, need_input_grad=True), target)
    what = "logit" if logits else ("probability" if info["probabilities"] else "output")
    target_text = _target_text(what, fixed, classes, classify)
    per_class = sums.per_class
    if per_class is not None:
        per_class /= np.maximum(sums.counts, 1).reshape(-1, *([1] * len(model.input_shape)))
    return Saliency(
        mean_abs=sums.abs / n,
        mean=sums.signed / n,
        split=split,
        samples=n,
        target=target_text,
        image_shape=image_shape,
        class_names=classes,
        per_class=per_class,
        class_counts=sums.counts if per_class is not None else None,
    )


class _Sums:
    """Running sums of input gradients: of their absolute values, signed, and per class."""

    def __init__(self, input_shape: tuple[int, ...], k_classes: int, per_class: bool):
        self.abs = np.zeros(input_shape, np.float64)
        self.signed = np.zeros(input_shape, np.float64)
        self.per_class = np.zeros((k_classes, *input_shape)) if per_class else None
        self.counts = np.zeros(k_classes, np.int64)
        self.k = k_classes

    def add(self, grad: Array, target: Array) -> None:
        """A batch's gradients (b, *input_shape) and the class each explains (b,)."""
        b = grad.shape[0]
        g = np.abs(grad, dtype=np.float64)
        self.abs += g.sum(axis=0)
        self.signed += grad.sum(axis=0, dtype=np.float64)
        if self.per_class is not None:
            onehot = np.eye(self.k)[target]  # (b, classes)
            self.per_class += (onehot.T @ g.reshape(b, -1)).reshape(self.per_class.shape)
        if self.k:
            self.counts += np.bincount(target, minlength=self.k)[: self.k]


def _score_gradient(out: Array, target: Array, classify: bool) -> Array:
    """d score / d out: 1 at each sample's target unit. One unit: class 1's score is the
    output, class 0's its negative."""
    d = np.zeros_like(out)
    if out.shape[1] == 1:
        d[:, 0] = np.where(target == 1, 1.0, -1.0) if classify else 1.0
    else:
        d[np.arange(out.shape[0]), target] = 1.0
    return d


def _target_text(what: str, fixed: int | None, classes: list[str], classify: bool) -> str:
    if fixed is not None:
        name = classes[fixed] if fixed < len(classes) else str(fixed)
        return f"the {what} of {'class' if classify else 'output'} {name}"
    if classify:
        return f"the {what} of the predicted class"
    return f"the {what}"


def explain(
    run: str | Path, split: str = "test", output: str | int | None = None, score: str = "logit"
) -> Saliency:
    """The saliency of a run's model over a split of its data (see ``saliency``)."""
    model, meta, data, X = run_inputs(run, split)
    return saliency(model, meta, X, output, score, split, data.image_shape)


def _feature_name(j: int, shape: tuple[int, ...], image_shape: tuple[int, ...] | None) -> str:
    if image_shape is not None and int(np.prod(image_shape)) == int(np.prod(shape)):
        r, c = np.unravel_index(j, image_shape)
        return f"x[{j}] (row {r}, col {c})"
    if len(shape) > 1:
        return "x[" + ", ".join(map(str, np.unravel_index(j, shape))) + "]"
    return f"x[{j}]"


def ranking(s: Saliency, top: int | None = 10) -> str:
    """The features ranked by mean |gradient|: a table."""
    from tabulate import tabulate

    flat = s.mean_abs.reshape(-1)
    signed = s.mean.reshape(-1)
    total = flat.sum() or 1.0
    order = np.argsort(-flat, kind="stable")[: top or None]
    rows = [
        [
            str(rank),
            _feature_name(int(j), s.mean_abs.shape, s.image_shape),
            f"{flat[j]:.4g}",
            f"{signed[j]:+.4g}",
            f"{100 * flat[j] / total:.1f}%",
        ]
        for rank, j in enumerate(order, 1)
    ]
    headers = ["rank", "feature", "mean |grad|", "mean grad", "share"]
    return tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)


SHADES = " .:-=+*#%@"


def heat_text(values: Array) -> str:
    """A 2-d array as characters, darkest for the largest values (two per cell, for a
    roughly square aspect)."""
    v = np.asarray(values, np.float64)
    top = v.max()
    levels = np.zeros(v.shape, int) if top <= 0 else np.rint(v / top * (len(SHADES) - 1))
    return "\n".join("".join(SHADES[int(x)] * 2 for x in row) for row in levels.astype(int))


def heat_map(s: Saliency, path: str | Path, title: str = "") -> None:
    """Write the saliency of an image input as a PNG heat map (one panel for all samples, and
    one per predicted class when the target was the predicted class)."""
    from nnlab.plot import pyplot, save_figure

    plt = pyplot("without -o, nnlab explain draws the map in the terminal")
    shape = s.image_shape
    panels = [("all samples", s.mean_abs.reshape(shape), s.samples)]
    if s.per_class is not None:
        for k, name in enumerate(s.class_names):
            panels.append((f"predicted {name}", s.per_class[k].reshape(shape), s.class_counts[k]))
    cols = min(len(panels), 6)
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(2.1 * cols + 1, 2.2 * rows + 0.4), squeeze=False, layout="constrained"
    )
    for ax in axes.flat:
        ax.axis("off")
    top = max(float(p[1].max()) for p in panels) or 1.0
    for ax, (label, values, count) in zip(axes.flat, panels, strict=False):
        im = ax.imshow(values, cmap="inferno", vmin=0, vmax=top, interpolation="nearest")
        ax.set_title(f"{label} (n={count})", fontsize="small")
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="mean |d score / d pixel|")
    fig.suptitle(title or f"saliency: {s.target}, {s.split} split", fontsize="medium")
    save_figure(fig, path)
