"""Input attributions: ``nnlab explain RUN [--method gradient|integrated_gradients|smoothgrad|
gradcam]``.

Which inputs does a trained network's output depend on? The saliency of input feature j for
a sample is ``|d score / d x_j|``, the gradient of one of the network's outputs with respect
to that input (Simonyan et al. 2013); nnlab averages it over a split of the run's data.
Integrated gradients and SmoothGrad (``Method``) are attributions built from the same
gradients: along a path from a baseline, or averaged over noisy copies of the input; Grad-CAM
(``nnlab.gradcam``) maps where a convolutional layer's feature maps raise the score. The
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
from nnlab.gradcam import choose_layer, gradcam, map_shape
from nnlab.gradcam import describe as describe_cam

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
    unit: str = "grad"  # what is averaged: input gradients, "attr" (attributions), "cam" maps
    method: str = "saliency"  # how, in words (``Method.describe``)


def run_inputs(run: str | Path, split: str) -> tuple[Any, dict, Any, Array]:
    """(model, meta, data, X) of a run folder: its trained model and the inputs of a split of
    its data, as they were in training (same splits, same scaling)."""
    from nnlab.data import load
    from nnlab.experiment import seed_streams
    from nnlab.runs import load_model, load_run_config

    path = Path(run)
    if not (path / "config.yaml").is_file():
        raise DataError(f"{run}: not a run folder (no config.yaml); give a run folder")
    model, meta = load_model(path)
    config = load_run_config(path)
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


@dataclass(frozen=True)
class Method:
    """How an input's attribution is computed.

    ``gradient``: d score / d x at the input (Simonyan et al.). ``integrated_gradients``
    (Sundararajan et al.): (x - baseline) times the mean gradient at ``steps`` points evenly
    along the straight path from the baseline to x (the midpoint rule); the attributions of a
    sample add up to score(x) - score(baseline). The baseline is ``zeros`` (the model input 0:
    black pixels under unit scaling), ``mean`` (the split's mean input) or a number.
    ``smoothgrad`` (Smilkov et al.): the gradient averaged over ``samples`` copies of x with
    Gaussian noise of standard deviation ``noise`` times the inputs' range (max - min over the
    split), drawn from ``seed``. ``gradcam`` (Selvaraju et al.): the class-activation map of
    a layer of feature maps, ``layer`` (name or index; None: the last conv2d layer), resized
    to the input image (``nnlab.gradcam``)."""

    name: str = "gradient"
    baseline: str | float = "zeros"
    steps: int = 50
    noise: float = 0.15
    samples: int = 50
    seed: int = 0
    layer: str | None = None

    def describe(self) -> str:
        if self.name == "integrated_gradients":
            base = self.baseline if isinstance(self.baseline, str) else f"{self.baseline:g}"
            return f"integrated gradients ({self.steps} steps from a {base} baseline)"
        if self.name == "smoothgrad":
            return f"smoothgrad ({self.samples} samples, noise {self.noise:g} of the range)"
        return "saliency"


METHODS = ("gradient", "integrated_gradients", "smoothgrad", "gradcam")


def _decide(values: Array, logits: bool, activation: str | None, threshold: float) -> Array:
    """Predicted classes (n,) from outputs or logits (n, k), one output deciding at
    ``threshold`` (on the output; on its logit for a sigmoid given its logits)."""
    if values.shape[1] > 1:
        return values.argmax(axis=1)
    if activation == "sigmoid" and logits:
        with np.errstate(divide="ignore"):
            threshold = float(np.log(threshold) - np.log1p(-threshold))  # the logit
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


@dataclass
class _Scorer:
    """The score of a model's first output to explain, and its gradient with respect to the
    inputs: ``target`` picks each sample's class (or unit) from its outputs."""

    model: Any
    flags: bool | list[bool]  # the logits flag of each output (only the first is explained)
    fixed: int | None  # a class/unit for every sample, or None: each sample's prediction
    classify: bool
    activation: str | None
    threshold: float

    def outputs(self, xb: Array) -> Array:
        outs = self.model.forward(xb, training=False, logits=self.flags)
        return outs if self.model.n_outputs == 1 else outs[0]  # (b, units)

    def target(self, out: Array) -> Array:
        logits = bool(self.flags[0] if isinstance(self.flags, list) else self.flags)
        if self.fixed is not None:
            return np.full(out.shape[0], self.fixed)
        if self.classify:
            return _decide(out, logits, self.activation, self.threshold)
        return np.zeros(out.shape[0], np.int64)

    def gradient(self, xb: Array, target: Array) -> Array:
        """d score / d x (b, *input_shape) at the inputs ``xb`` for the classes ``target`` (an
        array the model owns: use it before the next call)."""
        d = _score_gradient(self.outputs(xb), target, self.classify)
        others = self.model.n_outputs - 1  # the outputs after the first are not explained
        douts = [d, *[None] * others] if others else d
        return self.model.backward(douts, logits=self.flags, need_input_grad=True)


def _scorer(model: Any, meta: dict, output: str | int | None, score: str) -> tuple[_Scorer, dict]:
    """The scorer for a model and request, and the model's info (``model_info``)."""
    from nnlab.nn.graph import model_info

    if score not in SCORES:
        raise ConfigError(f"{score!r} is not a score.{did_you_mean(score, SCORES)}", "--score")
    info = model_info(model, meta)
    activation = model.output_activation
    classify = meta["task"] == "classification"
    n_units = int(model.output_shapes[0][-1])
    if output is None and not classify and n_units > 1:
        raise ConfigError(
            f"the model has {n_units} outputs: choose one with --target 0..{n_units - 1}",
            "--target",
        )
    fixed = None if output is None else _class_index(output, info["classes"] or [], n_units)
    logits = score == "logit" and activation not in (None, "linear")
    others = [False] * (model.n_outputs - 1)
    flags: bool | list[bool] = [logits, *others] if others else logits
    threshold = info["threshold"] if info["threshold"] is not None else 0.5
    return _Scorer(model, flags, fixed, classify, activation, threshold), info


def attributions(scorer: _Scorer, xb: Array, method: Method, context: dict) -> tuple[Array, Array]:
    """The attributions (b, *input_shape) of a batch by ``method``, and the class (or unit)
    each explains (b,). ``context``: the split's ``baseline`` input and noise ``sigma``."""
    if method.name == "gradcam":
        return gradcam(scorer, xb, context["layer"], context["size"])
    target = scorer.target(scorer.outputs(xb))
    if method.name == "gradient":
        return scorer.gradient(xb, target), target
    if method.name == "integrated_gradients":
        base = context["baseline"]
        delta = xb - base
        total = np.zeros(xb.shape)
        for k in range(method.steps):
            total += scorer.gradient(base + delta * ((k + 0.5) / method.steps), target)
        return total / method.steps * delta, target
    rng = context["rng"]  # smoothgrad
    total = np.zeros(xb.shape)
    for _ in range(method.samples):
        noisy = xb + rng.normal(0.0, context["sigma"], xb.shape).astype(xb.dtype)
        total += scorer.gradient(noisy, target)
    return total / method.samples, target


def _context(X: Array, method: Method) -> dict:
    """What a method needs from the whole split: the baseline, the noise's scale and draws."""
    if method.name not in METHODS:
        raise ConfigError(
            f"{method.name!r} is not a method.{did_you_mean(method.name, METHODS)} "
            f"Allowed: {', '.join(METHODS)}",
            "--method",
        )
    base = method.baseline
    if base == "mean":
        base = X.mean(axis=0)
    elif base == "zeros":
        base = 0.0
    elif isinstance(base, str):
        raise ConfigError(f"{base!r}: a baseline is zeros, mean or a number", "--baseline")
    spread = float(X.max() - X.min()) if X.size else 0.0
    return {
        "baseline": np.asarray(base, X.dtype),
        "sigma": method.noise * spread,
        "rng": np.random.default_rng(method.seed),
    }


def saliency(
    model: Any,
    meta: dict,
    X: Array,
    output: str | int | None = None,
    score: str = "logit",
    split: str = "test",
    image_shape: tuple[int, ...] | None = None,
    method: Method = Method(),
) -> Saliency:
    """Mean attributions (by ``method``: input gradients by default) of a score over the
    samples ``X`` (model inputs, scaled).

    Parameters
    ----------
    X : (n, *input_shape) inputs as the model takes them.
    output : a class (index or name) or output unit to explain for every sample; None: the
        predicted class of each sample (classifiers) or the only output (regression).
    score : ``logit`` (the output layer's pre-activation) or ``output`` (the model's output).
    """
    scorer, info = _scorer(model, meta, output, score)
    context = _context(X, method)
    shape = model.input_shape
    if method.name == "gradcam":  # maps over the input image, of a layer's feature maps
        shape = image_shape = map_shape(model, image_shape)
        context.update(layer=choose_layer(model, method.layer), size=shape)
    n = X.shape[0]
    if n == 0:
        raise DataError(f"the {split} split has no samples to explain")
    classes = info["classes"] or []
    k_classes = len(classes) if scorer.classify else 0
    sums = _Sums(shape, k_classes, per_class=scorer.classify and scorer.fixed is None)
    for start in range(0, n, BATCH):
        sums.add(*attributions(scorer, X[start : start + BATCH], method, context))
    logits = scorer.flags[0] if isinstance(scorer.flags, list) else scorer.flags
    what = "logit" if logits else ("probability" if info["probabilities"] else "output")
    target = _target_text(what, scorer.fixed, classes, scorer.classify)
    result = sums.result(n, split, target, image_shape, classes)
    result.unit = {"integrated_gradients": "attr", "gradcam": "cam"}.get(method.name, "grad")
    result.method = method.describe()
    if method.name == "gradcam":
        result.method = describe_cam(model, context["layer"])
    return result


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

    def result(
        self, n: int, split: str, target: str, image_shape: tuple[int, ...] | None, classes: list
    ) -> Saliency:
        """The means over ``n`` samples."""
        per_class = self.per_class
        if per_class is not None:
            per_class /= np.maximum(self.counts, 1).reshape(-1, *([1] * (self.abs.ndim)))
        return Saliency(
            mean_abs=self.abs / n,
            mean=self.signed / n,
            split=split,
            samples=n,
            target=target,
            image_shape=image_shape,
            class_names=classes,
            per_class=per_class,
            class_counts=self.counts if per_class is not None else None,
        )


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
    run: str | Path,
    split: str = "test",
    output: str | int | None = None,
    score: str = "logit",
    method: Method = Method(),
) -> Saliency:
    """The attributions of a run's model over a split of its data (see ``saliency``)."""
    model, meta, data, X = run_inputs(run, split)
    return saliency(model, meta, X, output, score, split, data.image_shape, method)


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
    headers = ["rank", "feature", f"mean |{s.unit}|", f"mean {s.unit}", "share"]
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
    label = {"grad": "mean |d score / d pixel|", "cam": "mean Grad-CAM map"}.get(
        s.unit, "mean |attribution|"
    )
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label=label)
    fig.suptitle(title or f"{s.method}: {s.target}, {s.split} split", fontsize="medium")
    save_figure(fig, path)
