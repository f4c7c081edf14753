"""The experiment a config describes: data, model, heads (outputs with their losses and
targets), optimizer and seed streams, built and checked; its objective and its evaluation.

``build(config)`` loads the data and makes the model, loss and optimizer (checking that they fit
together). ``Objective`` is the one copy of the training objective (the weighted sum of the
heads' losses, unlabelled samples masked out): the training loop, ``nnlab gradcheck`` and
``layers.csv`` all call it. ``evaluate`` measures the current weights on a split.

One seed drives everything through independent streams spawned from it
(``np.random.SeedSequence``): the data splits, the initialization, the training-time
randomness (shuffling and dropout), a VAE's sampling layers and the noise of evolution
strategies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnlab.data import Data, load
from nnlab.errors import ConfigError
from nnlab.nn import LOSSES, OPTIMIZERS, Model
from nnlab.nn.es import check_gradients
from nnlab.nn.losses import Loss
from nnlab.nn.optimizers import Optimizer

Array = np.ndarray
EVAL_BATCH = 1024


def seed_streams(seed: int, split_seed: int | None = None) -> dict[str, np.random.Generator]:
    """The generators of a run: ``data`` (splits), ``init`` (weights), ``train`` (shuffle,
    dropout), ``sample`` (a VAE's sampling layer), ``es`` (the perturbations of evolution
    strategies). ``split_seed`` fixes the splits independently of the training seed.
    (Spawning more children leaves the first ones as they were: runs from before the
    ``sample`` and ``es`` streams keep their numbers.)"""
    data, init, train, sample, es = np.random.SeedSequence(seed).spawn(5)
    if split_seed is not None:
        data = np.random.SeedSequence(split_seed).spawn(3)[0]
    streams = (("data", data), ("init", init), ("train", train), ("sample", sample), ("es", es))
    return {k: np.random.default_rng(s) for k, s in streams}


@dataclass
class Head:
    """One output of the model with its loss: what it is trained on and how it is reported."""

    name: str  # the output layer's name; "" for the single output of a plain model
    layer: int  # index of the output layer
    loss: Loss
    weight: float
    target: str  # "labels" or "inputs"
    fused: bool  # the loss takes the logits (fused with the output activation)

    @property
    def prefix(self) -> str:
        return f"{self.name}_" if self.name else ""


@dataclass
class Targets:
    """A split's targets for one head: as the loss wants them (T), as class labels for accuracy
    (L, -1 where a sample has no label), and the 0/1 mask of labelled samples (W, None when
    every sample is labelled)."""

    T: Array
    L: Array | None
    W: Array | None

    def take(self, rows: Array | slice) -> Targets:
        """The targets of some samples (an index array or a slice)."""
        return Targets(
            self.T[rows],
            None if self.L is None else self.L[rows],
            None if self.W is None else self.W[rows],
        )


@dataclass
class Experiment:
    """Everything a config describes, built and checked, ready to train."""

    config: dict
    data: Data
    model: Model
    heads: list[Head]
    optimizer: Optimizer
    rng: np.random.Generator  # training-time randomness
    targets: dict[str, list[Targets]] = field(default_factory=dict)
    sample_rng: np.random.Generator | None = None  # the sampling layers' (VAE)

    def __post_init__(self) -> None:
        self.objective = Objective(self.heads)

    def split(self, name: str):
        return getattr(self.data, name)

    @property
    def loss(self) -> Loss:  # the loss of a single-output model
        return self.heads[0].loss

    @property
    def fused(self) -> bool:
        return self.heads[0].fused

    @property
    def logit_flags(self) -> bool | list[bool]:
        if len(self.heads) == 1:
            return self.heads[0].fused
        return [h.fused for h in self.heads]

    @property
    def one_label_head(self) -> bool:
        """A single output trained on the labels (the case the baselines describe)."""
        return len(self.heads) == 1 and self.heads[0].target == "labels"


def build(config: dict, data: Data | None = None) -> Experiment:
    """Load data and build the model, losses and optimizer of a resolved config. ``data``, when
    given, replaces the data set the config names (arrays already split and scaled)."""
    tr = config["training"]
    dtype = np.dtype(tr["dtype"])
    rngs = seed_streams(tr["seed"], config["data"].get("split_seed"))
    if data is None:
        data = load(config["data"], rngs["data"], dtype)
    model = Model.from_spec(config["model"], data.input_shape, rngs["init"], dtype)
    model.set_rng(rngs)
    heads = make_heads(config, data, model)
    _check_threshold(config, heads, data, model)
    optimizer = OPTIMIZERS.build(config["optimizer"])
    check_gradients(optimizer, [h.loss for h in heads], model, config["model"]["outputs"] is None)
    if not optimizer.needs_gradient:
        optimizer.rng = rngs["es"]
    optimizer.setup(model.theta, model.n_decay)
    exp = Experiment(config, data, model, heads, optimizer, rngs["train"])
    exp.sample_rng = rngs["sample"]
    for name in ("train", "val", "test"):
        split = getattr(data, name)
        if split is not None:
            exp.targets[name] = [head_targets(h, split, data, model, dtype) for h in heads]
    return exp


def head_targets(head: Head, split, data: Data, model: Model, dtype) -> Targets:
    n_out = model.shapes[head.layer][-1]
    if head.target == "none":  # a loss of the output alone
        return Targets(np.zeros((len(split), 0), dtype), None, None)
    if head.target == "inputs":  # the inputs, without the label that data.label_input appends
        X = split.X.reshape(len(split), -1)
        if data.label_columns:
            X = X[:, : X.shape[1] - data.label_columns]
        return Targets(head.loss.targets(X, n_out, dtype), None, None)
    L = data.labels(split)
    y = split.y
    W = None
    if L is not None and (L < 0).any():  # samples without a label: masked out of the loss
        W = (L >= 0).astype(dtype)
        y = np.where(L >= 0, L, 0) if y.ndim == 1 else y
    return Targets(head.loss.targets(y, n_out, dtype), L, W)


def make_heads(config: dict, data: Data, model: Model) -> list[Head]:
    """The model's outputs with their losses, each checked against the data."""
    outputs = config["model"]["outputs"]
    if outputs is None:
        specs = [{"layer": None, "loss": config["loss"], "weight": 1.0, "target": "labels"}]
    else:
        specs = outputs
    heads = []
    for k, (spec, j) in enumerate(zip(specs, model.outputs, strict=True)):
        loss = LOSSES.build(spec["loss"])
        where = "loss" if outputs is None else f"model.outputs[{k}]"
        head = Head(
            spec["layer"] or "",
            j,
            loss,
            spec["weight"],
            spec["target"],
            loss.fused_activation is not None,
        )
        check_head(head, where, data, model)
        heads.append(head)
    return heads


def _check_threshold(config: dict, heads: list[Head], data: Data, model: Model) -> None:
    """``training.threshold`` needs one output of one unit trained on two classes."""
    spec = config["training"]["threshold"]
    if spec is None:
        return
    head = heads[0]
    if len(heads) > 1 or head.target != "labels" or data.task != "classification":
        what = f"{len(heads)} outputs" if len(heads) > 1 else f"a {data.task} output"
        raise ConfigError(
            f"a decision threshold is for a classifier with one output; this model has {what}",
            "training.threshold",
        )
    units = model.shapes[head.layer][0]
    if data.n_classes != 2 or units != 1:
        raise ConfigError(
            f"a decision threshold is for two classes and one output unit (a sigmoid); data "
            f"'{data.name}' has {data.n_classes} classes and the output {units} units, decided "
            "by the largest",
            "training.threshold",
        )


def check_head(head: Head, where: str, data: Data, model: Model) -> None:
    """Check that an output fits its loss and its target; a ConfigError names the key."""
    _check_output_layer(head, where, model)
    if not head.loss.differentiable and (head.target != "labels" or data.task != "classification"):
        raise ConfigError(
            f"{head.loss.name} counts misclassified samples: it is for a classifier's labels "
            f"(data '{data.name}' is {data.task}, this output's target {head.target})",
            where,
        )
    if (head.target == "none") == head.loss.needs_target:
        raise ConfigError(
            f"{head.loss.name} takes no target: give its output target: none"
            if head.target != "none"
            else f"{head.loss.name} needs a target: labels or inputs (target: none is for a "
            "loss of the output alone, kl_divergence)",
            f"{where}.target" if where != "loss" else "loss",
        )
    if head.target == "none":
        units = model.shapes[head.layer][0]
        if units % 2:
            raise ConfigError(
                f"{head.loss.name} reads [mu, log_var], an even number of units; the layer has "
                f"{units}",
                f"model.layers[{head.layer}].units",
            )
    elif head.target == "inputs":
        want = int(np.prod(data.input_shape)) - data.label_columns
        if model.shapes[head.layer][0] != want:
            raise ConfigError(
                f"this output reconstructs the inputs, {want} values per sample, but has "
                f"{model.shapes[head.layer][0]} units: use units: {want}",
                f"model.layers[{head.layer}].units",
            )
    elif data.task == "classification":
        _check_classes(head, data, model)
    else:
        _check_regression(head, where, data, model)


def _check_output_layer(head: Head, where: str, model: Model) -> None:
    """The output is a flat vector whose activation suits the loss."""
    j, loss = head.layer, head.loss
    layer_at = f"model.layers[{j}]"
    shape = model.shapes[j]
    if len(shape) != 1:
        raise ConfigError(
            f"the output has shape {shape} per sample; an output layer must give a flat vector "
            "(add a flatten layer, or return_sequences: false)",
            layer_at,
        )
    act = model.output_activations[model.outputs.index(j)]
    if loss.fused_activation is not None and act != loss.fused_activation:
        raise ConfigError(
            f"{loss.name} needs a {loss.fused_activation} output, but the activation of "
            f"{layer_at} is {act or 'none'}; set {layer_at}.activation: "
            f"{loss.fused_activation} (the loss is computed from the logits, fused with the "
            f"{loss.fused_activation}, which is exact and numerically stable)",
            where,
        )
    if head.fused and model.consumers[j]:
        raise ConfigError(
            f"{layer_at} is an output whose loss is fused with its {act}, so it cannot also "
            "feed other layers; give them the layer before it",
            layer_at,
        )
    if act == "softmax" and shape[0] == 1:
        raise ConfigError(
            "a softmax over one unit is always 1; use sigmoid for one output, "
            "or as many units as classes",
            f"{layer_at}.activation",
        )


def _check_classes(head: Head, data: Data, model: Model) -> None:
    n_out, k = model.shapes[head.layer][0], data.n_classes
    allowed = [k] if head.loss.name == "categorical_crossentropy" or k != 2 else [1, 2]
    if n_out not in allowed:
        hint = " or ".join(str(a) for a in allowed)
        raise ConfigError(
            f"the layer has {n_out} units, but data '{data.name}' has {k} classes: "
            f"use units: {hint}",
            f"model.layers[{head.layer}].units",
        )


def _check_regression(head: Head, where: str, data: Data, model: Model) -> None:
    if head.loss.fused_activation is not None:
        raise ConfigError(
            f"{head.loss.name} is for classification; data '{data.name}' is a "
            "regression task (use mse or mae)",
            where,
        )
    n_out = model.shapes[head.layer][0]
    want = 1 if data.train.y.ndim == 1 else data.train.y.shape[1]
    if n_out != want:
        raise ConfigError(
            f"the layer has {n_out} units, but the targets have {want} values per sample",
            f"model.layers[{head.layer}].units",
        )


# ---------------------------------------------------------------- objective and meters


class Objective:
    """The training objective: the weighted sum of the heads' losses (samples without a label
    masked out). The one copy: the training loop, gradcheck and layers.csv call it.

    ``objective(outs, T, W)`` takes the model's outputs (one array, or a list per head) and per
    head the batch's targets ``T[k]`` and masks ``W[k]`` (None: every sample labelled), and
    returns (value, d value / d outputs (an array, or a list per head), each head's loss)."""

    def __init__(self, heads: list[Head]):
        self.heads = heads
        self.single = len(heads) == 1
        self.losses = [h.loss for h in heads]
        self.weights = [h.weight for h in heads]

    def __call__(
        self, outs: Any, T: Sequence[Array], W: Sequence[Array | None]
    ) -> tuple[float, Any, list[float]]:
        if self.single:
            v, d = self.losses[0](outs, T[0], W[0])
            w = self.weights[0]
            if w != 1.0:
                return w * v, d * w, [v]
            return v, d, [v]
        value, douts, parts = 0.0, [], []
        for loss, w, out, t, m in zip(self.losses, self.weights, outs, T, W, strict=True):
            v, d = loss(out, t, m)
            if w != 1.0:
                d *= w
            value += w * v
            douts.append(d)
            parts.append(v)
        return value, douts, parts

    def of(self, targets: list[Targets]):
        """The objective on fixed targets, as ``f(outs) -> (value, d value / d outputs)`` (for
        gradient checks and statistics on a probe batch)."""
        T = [t.T for t in targets]
        W = [t.W for t in targets]

        def value_and_grad(outs):
            value, douts, _ = self(outs, T, W)
            return value, douts

        return value_and_grad


class HeadMeter:
    """Sums a head's loss and correct predictions over batches, weighted by labelled samples."""

    __slots__ = ("acc_key", "correct", "correct_fn", "count", "labelled", "loss_key", "loss_sum")

    def __init__(self, head: Head, prefix: str = ""):
        self.loss_key = f"{prefix}{head.prefix}loss"
        self.acc_key = f"{prefix}{head.prefix}accuracy" if head.target == "labels" else None
        self.correct_fn = head.loss.correct
        self.reset()

    def reset(self) -> None:
        self.loss_sum, self.count, self.correct, self.labelled = 0.0, 0.0, 0, 0

    def add(self, value: float, out: Array, L: Array | None, W: Array | None, n: int) -> None:
        count = n if W is None else float(W.sum())  # the loss is a mean weighted by W
        self.loss_sum += value * count
        self.count += count
        if L is not None:
            self.correct += self.correct_fn(out, L)
            # accuracy counts the samples with a label (pseudo-labelled ones have weight, no L)
            self.labelled += n if W is None else int(np.count_nonzero(L >= 0))

    def metrics(self, into: dict) -> float:
        """Write the loss (and accuracy) into ``into``; returns the loss."""
        loss = self.loss_sum / self.count if self.count else 0.0
        into[self.loss_key] = loss
        if self.acc_key is not None and self.labelled:
            into[self.acc_key] = self.correct / self.labelled
        return loss


class Meters:
    """The meters of every head: what an epoch (or an evaluation) reports."""

    def __init__(self, heads: list[Head]):
        self.meters = [HeadMeter(h) for h in heads]
        self.weights = [h.weight for h in heads]
        self.single = len(heads) == 1
        self.first = self.meters[0]

    def reset(self) -> None:
        for m in self.meters:
            m.reset()

    def add(self, parts: list[float], outs: Any, L: Sequence, W: Sequence, n: int) -> None:
        """A batch of ``n`` samples: each head's loss, outputs, labels and mask."""
        if self.single:
            self.first.add(parts[0], outs, L[0], W[0], n)
            return
        for m, v, out, lb, wb in zip(self.meters, parts, outs, L, W, strict=True):
            m.add(v, out, lb, wb, n)

    def write(self, row: dict) -> None:
        """The losses and accuracies into ``row``; with several heads the weighted total
        ``loss`` first, then each head's."""
        if self.single:
            self.first.metrics(row)
            return
        row["loss"] = 0.0  # first column: the weighted total
        row["loss"] = sum(
            w * m.metrics(row) for w, m in zip(self.weights, self.meters, strict=True)
        )


def evaluate(
    exp: Experiment, split: str, rows: Array | None = None, batch: int = EVAL_BATCH
) -> dict[str, float]:
    """Loss (and accuracy) of the current weights on a split (or some of its ``rows``), in
    evaluation mode. With several outputs: the weighted total ``loss`` and per-output metrics."""
    X = exp.split(split).X
    tgs = exp.targets[split]
    if rows is not None:
        X = X[rows]
        tgs = [t.take(rows) for t in tgs]
    meters = Meters(exp.heads)
    # weights that overflow give an infinite or NaN loss, which is the result (as in training)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for start in range(0, X.shape[0], batch):
            sl = slice(start, start + batch)
            part = [t.take(sl) for t in tgs]
            outs = exp.model.forward(X[sl], training=False, logits=exp.logit_flags)
            _, _, values = exp.objective(outs, [t.T for t in part], [t.W for t in part])
            n = X[sl].shape[0]
            meters.add(values, outs, [t.L for t in part], [t.W for t in part], n)
    metrics: dict[str, float] = {}
    meters.write(metrics)
    return metrics


def evaluate_groups(exp: Experiment, split: str) -> dict[str, dict[str, float]]:
    """Metrics on the named groups of a split's samples (e.g. the sin steps of ``sequence``)."""
    groups = getattr(exp.split(split), "groups", None) or {}
    return {
        g: evaluate(exp, split, rows=np.flatnonzero(mask))
        for g, mask in groups.items()
        if mask.any()
    }


def metric_columns(exp: Experiment) -> list[str]:
    """metrics.csv's columns: epoch, the loss (the weighted total first when there are several
    outputs, then each output's), accuracies of classification outputs, the same on the
    validation split, the pseudo-labels used (with training.pseudo_labels), lr, seconds."""
    names = ["loss"] if len(exp.heads) > 1 else []
    for h in exp.heads:
        names.append(f"{h.prefix}loss")
        if h.target == "labels" and exp.data.task == "classification":
            names.append(f"{h.prefix}accuracy")
    cols = ["epoch", *names]
    if exp.data.val is not None:
        cols += [f"val_{c}" for c in names]
    if exp.config["training"]["pseudo_labels"] is not None:
        cols.append("pseudo_labels")  # how many unlabelled samples had one in the epoch
    return [*cols, "lr", "seconds"]


def model_meta(exp: Experiment) -> dict:
    """What it takes to rebuild and use the model outside the training code."""
    d = exp.data
    return {
        "model": exp.config["model"],
        "input_shape": list(d.input_shape),
        "dtype": exp.model.dtype.name,
        "task": d.task,
        "n_classes": d.n_classes,
        "class_names": d.class_names,
        "loss": exp.config["loss"],
        "output_activation": exp.model.output_activation,
        "data": exp.config["data"]["name"],
        "shift": d.shift,
        "scale": d.scale,
        "label_columns": d.label_columns,
        "image_shape": list(d.image_shape) if d.image_shape else None,
    }
