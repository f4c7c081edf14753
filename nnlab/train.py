"""The training loop: a resolved config in, a run folder out.

``build(config)`` loads the data and makes the model, loss and optimizer (checking that they fit
together); ``Trainer.fit`` runs the epochs; ``train(config, runs_dir)`` does both and writes the
run folder. One seed drives everything through three independent streams spawned from it
(``np.random.SeedSequence``): the data splits, the initialization, and the training-time
randomness (shuffling and dropout). The same config and seed give the same numbers, bit for bit.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import queue
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnlab import __version__, baselines, threads
from nnlab.config import config_hash, dump_yaml
from nnlab.data import Data, load
from nnlab.errors import ConfigError, NnlabError, RunError, did_you_mean
from nnlab.layerstats import LayerStats
from nnlab.nn import LOSSES, OPTIMIZERS, Model
from nnlab.nn.losses import Loss
from nnlab.nn.optimizers import Optimizer
from nnlab.progress import Progress
from nnlab.runs import (
    CHECKPOINT,
    MetricsLog,
    atomic_write,
    new_run_dir,
    read_checkpoint,
    read_metrics,
    read_summary,
    save_checkpoint,
    save_model,
    write_json,
)

Array = np.ndarray
EVAL_BATCH = 1024


def seed_streams(seed: int, split_seed: int | None = None) -> dict[str, np.random.Generator]:
    """The generators of a run: ``data`` (splits), ``init`` (weights), ``train`` (shuffle,
    dropout). ``split_seed`` fixes the splits independently of the training seed."""
    data, init, train = np.random.SeedSequence(seed).spawn(3)
    if split_seed is not None:
        data = np.random.SeedSequence(split_seed).spawn(3)[0]
    return {
        k: np.random.default_rng(s) for k, s in (("data", data), ("init", init), ("train", train))
    }


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


def build(config: dict, data: Data | None = None) -> Experiment:
    """Load data and build the model, losses and optimizer of a resolved config. ``data``, when
    given, replaces the data set the config names (arrays already split and scaled)."""
    tr = config["training"]
    dtype = np.dtype(tr["dtype"])
    rngs = seed_streams(tr["seed"], config["data"].get("split_seed"))
    if data is None:
        data = load(config["data"], rngs["data"], dtype)
    model = Model.from_spec(config["model"], data.input_shape, rngs["init"], dtype)
    model.set_rng(rngs["train"])
    heads = make_heads(config, data, model)
    optimizer = OPTIMIZERS.build(config["optimizer"])
    optimizer.setup(model.theta, model.n_decay)
    exp = Experiment(config, data, model, heads, optimizer, rngs["train"])
    for name in ("train", "val", "test"):
        split = getattr(data, name)
        if split is not None:
            exp.targets[name] = [head_targets(h, split, data, model, dtype) for h in heads]
    return exp


def head_targets(head: Head, split, data: Data, model: Model, dtype) -> Targets:
    n_out = model.shapes[head.layer][-1]
    if head.target == "inputs":
        X = split.X.reshape(len(split), -1)
        return Targets(head.loss.targets(X, n_out, dtype), None, None)
    L = data.labels(split)
    y = split.y
    W = None
    if L is not None and (L < 0).any():  # samples without a label: masked out of the loss
        W = (L >= 0).astype(dtype)
        y = np.where(L >= 0, L, 0) if y.ndim == 1 else y
    T = head.loss.targets(y, n_out, dtype)
    if W is not None and T.ndim == 2 and T.shape[1] > 1:
        T = T * W[:, None]  # rows of zeros: categorical cross-entropy then ignores them exactly
    return Targets(T, L, W)


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


def check_head(head: Head, where: str, data: Data, model: Model) -> None:
    """Check that an output fits its loss and its target."""
    j = head.layer
    layer_at = f"model.layers[{j}]"
    shape = model.shapes[j]
    loss = head.loss
    if len(shape) != 1:
        raise ConfigError(
            f"the output has shape {shape} per sample; an output layer must give a flat vector "
            "(add a flatten layer, or return_sequences: false)",
            layer_at,
        )
    n_out = shape[0]
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
    if act == "softmax" and n_out == 1:
        raise ConfigError(
            "a softmax over one unit is always 1; use sigmoid for one output, "
            "or as many units as classes",
            f"{layer_at}.activation",
        )
    if head.target == "inputs":
        want = int(np.prod(data.input_shape))
        if n_out != want:
            raise ConfigError(
                f"this output reconstructs the inputs, {want} values per sample, but has "
                f"{n_out} units: use units: {want}",
                f"{layer_at}.units",
            )
        return
    if data.task == "classification":
        k = data.n_classes
        allowed = [k] if loss.name == "categorical_crossentropy" or k != 2 else [1, 2]
        if n_out not in allowed:
            hint = " or ".join(str(a) for a in allowed)
            raise ConfigError(
                f"the layer has {n_out} units, but data '{data.name}' has {k} classes: "
                f"use units: {hint}",
                f"{layer_at}.units",
            )
    else:
        if loss.fused_activation is not None:
            raise ConfigError(
                f"{loss.name} is for classification; data '{data.name}' is a "
                "regression task (use mse or mae)",
                where,
            )
        want = 1 if data.train.y.ndim == 1 else data.train.y.shape[1]
        if n_out != want:
            raise ConfigError(
                f"the layer has {n_out} units, but the targets have {want} values per sample",
                f"{layer_at}.units",
            )


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
        count = n if W is None else float(W.sum())
        self.loss_sum += value * count
        self.count += count
        if L is not None:
            self.correct += self.correct_fn(out, L)
            self.labelled += n if W is None else int(count)

    def metrics(self, into: dict) -> float:
        """Write the loss (and accuracy) into ``into``; returns the loss."""
        loss = self.loss_sum / self.count if self.count else 0.0
        into[self.loss_key] = loss
        if self.acc_key is not None and self.labelled:
            into[self.acc_key] = self.correct / self.labelled
        return loss


def objective(exp: Experiment, targets: list[Targets]) -> Callable:
    """The training objective of an experiment on a batch: the weighted sum of its heads'
    losses (masked samples left out), as ``objective(outputs) -> (value, d/d outputs)``.
    ``targets`` holds each head's ``Targets`` for the batch."""
    heads = exp.heads
    single = len(heads) == 1

    def value_and_grad(outs):
        value, douts = 0.0, []
        for head, out, t in zip(heads, [outs] if single else outs, targets, strict=True):
            v, d = head.loss(out, t.T, t.W)
            value += head.weight * v
            douts.append(d * head.weight if head.weight != 1.0 else d)
        return value, douts[0] if single else douts

    return value_and_grad


def evaluate(
    exp: Experiment, split: str, rows: Array | None = None, batch: int = EVAL_BATCH
) -> dict[str, float]:
    """Loss (and accuracy) of the current weights on a split (or some of its ``rows``), in
    evaluation mode. With several outputs: the weighted total ``loss`` and per-output metrics."""
    X = exp.split(split).X
    tgs = exp.targets[split]
    if rows is not None:
        X = X[rows]
        tgs = [
            Targets(
                t.T[rows], None if t.L is None else t.L[rows], None if t.W is None else t.W[rows]
            )
            for t in tgs
        ]
    meters = [HeadMeter(h) for h in exp.heads]
    single = len(exp.heads) == 1
    # weights that overflow give an infinite or NaN loss, which is the result (as in training)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for start in range(0, X.shape[0], batch):
            sl = slice(start, start + batch)
            outs = exp.model.forward(X[sl], training=False, logits=exp.logit_flags)
            for head, meter, out, tg in zip(
                exp.heads, meters, [outs] if single else outs, tgs, strict=True
            ):
                L = None if tg.L is None else tg.L[sl]
                W = None if tg.W is None else tg.W[sl]
                value, _ = head.loss(out, tg.T[sl], W)
                meter.add(value, out, L, W, out.shape[0])
    metrics: dict[str, float] = {}
    total = sum(h.weight * m.metrics(metrics) for h, m in zip(exp.heads, meters, strict=True))
    if not single:
        metrics = {"loss": total, **metrics}
    return metrics


def evaluate_groups(exp: Experiment, split: str) -> dict[str, dict[str, float]]:
    """Metrics on the named groups of a split's samples (e.g. the sin steps of ``sequence``)."""
    groups = getattr(exp.split(split), "groups", None) or {}
    return {
        g: evaluate(exp, split, rows=np.flatnonzero(mask))
        for g, mask in groups.items()
        if mask.any()
    }


def higher_is_better(metric: str) -> bool:
    return "accuracy" in metric


def best_of(rows: list[dict]) -> dict[str, dict]:
    """The best value of each metric over the rows and the epoch it came in (the first on ties):
    the highest accuracy, the lowest loss."""
    best: dict[str, dict] = {}
    for row in rows:
        for k, v in row.items():
            if k in ("epoch", "lr", "seconds") or v is None or not math.isfinite(v):
                continue
            b = best.get(k)
            if b is None or (v > b["value"] if higher_is_better(k) else v < b["value"]):
                best[k] = {"value": v, "epoch": row["epoch"]}
    return best


class Batches:
    """The batches of an epoch: rows of ``arrays`` (None entries stay None) in the epoch's
    shuffled order, gathered into reused buffers; a full batch is the arrays themselves.

    ``codes`` (a split's ``codes``: small integers and their divisor) stand in for
    ``arrays[0]`` in shuffled batches: their rows are gathered and divided into the batch
    buffer, which gives the same numbers as gathering ``arrays[0]`` with a quarter of the
    memory traffic (MNIST: 100 KB of bytes per batch of 128 instead of 400 KB of float32).

    (Gathering the next batch in a helper thread while the optimizer runs was measured and
    gains nothing: OpenBLAS' threads keep the other core spinning after each product.)"""

    def __init__(
        self,
        arrays: list[Array | None],
        size: int,
        shuffle: bool,
        codes: tuple[Array, float] | None = None,
    ):
        self.arrays, self.size, self.shuffle = arrays, size, shuffle
        self.count = math.ceil(arrays[0].shape[0] / size)
        self.codes = codes if shuffle else None
        if shuffle:
            self.bufs = [
                None if a is None else np.empty((size, *a.shape[1:]), a.dtype) for a in arrays
            ]
            self.targets = list(zip(arrays[1:], self.bufs[1:], strict=True))
        if self.codes is not None:
            ints, divisor = self.codes
            self.code_buf = np.empty((size, *ints.shape[1:]), ints.dtype)
            self.divisor = arrays[0].dtype.type(divisor)
        self.perm: Array | None = None

    def start(self, perm: Array | None) -> None:
        """A new epoch, in the order ``perm`` (None: the stored order)."""
        self.perm = perm

    def get(self, b: int) -> list:
        """Batch ``b`` (0-based) of the epoch: a list like ``arrays``."""
        if self.shuffle:
            idx = self.perm[b * self.size : (b + 1) * self.size]
            k = idx.shape[0]
            out = [
                None if a is None else np.take(a, idx, axis=0, out=buf[:k])
                for a, buf in self.targets
            ]
            if self.codes is None:
                X = np.take(self.arrays[0], idx, axis=0, out=self.bufs[0][:k])
            else:
                ints = np.take(self.codes[0], idx, axis=0, out=self.code_buf[:k])
                X = self.bufs[0][:k]
                np.copyto(X, ints)  # cast, then divide in place: 20% faster than one mixed call
                np.divide(X, self.divisor, out=X)
            return [X, *out]
        if self.count == 1:
            return self.arrays
        sl = slice(b * self.size, (b + 1) * self.size)
        return [None if a is None else a[sl] for a in self.arrays]


class Trainer:
    """Runs the epochs of an experiment, writing rows to a metrics log as it goes."""

    def __init__(
        self,
        exp: Experiment,
        log: MetricsLog | None = None,
        quiet: bool = True,
        checkpoint: Callable[[Trainer], None] | None = None,
    ):
        self.exp = exp
        self.log = log
        self.quiet = quiet
        self.checkpoint = checkpoint  # called after an epoch when a checkpoint is due
        self.on_epoch: Callable[[int], None] | None = None  # called with each epoch's number
        self.epoch = 0  # epochs completed
        self.threads: int | None = None  # BLAS threads of the last fit
        self.stop_signal: int | None = None
        self.status = "running"
        self.diverged_at: dict | None = None
        self.stopped_early = False
        self.columns = metric_columns(exp)
        self.rows: list[dict] = []  # one per finished epoch, as written to metrics.csv
        es = exp.config["training"]["early_stopping"]
        if es is not None and es["monitor"] not in self.columns:
            metrics = [c for c in self.columns if c not in ("epoch", "lr", "seconds")]
            raise ConfigError(
                f"{es['monitor']!r} is not a metric of this run."
                f"{did_you_mean(es['monitor'], metrics)} Allowed: {', '.join(metrics)}",
                "training.early_stopping.monitor",
            )
        self.early_stopping = es
        self._best_theta: Array | None = None  # weights at the best epoch (restore_best)
        self._es_best: float | None = None
        self._es_epoch: int | None = None
        self._es_wait = 0

    def request_stop(self, signum: int) -> None:
        self.stop_signal = signum

    def fit(self) -> str:
        """Train all epochs; returns the status (completed, diverged or interrupted)."""
        exp = self.exp
        cfg = exp.config["training"]
        epochs = cfg["epochs"]
        X = exp.data.train.X
        heads = exp.heads
        single = len(heads) == 1
        n = X.shape[0]
        bs = min(cfg["batch_size"] or n, n)
        n_batches = math.ceil(n / bs)
        shuffle = cfg["shuffle"] and bs < n  # the order of a full batch changes nothing
        # what a batch is made of: the inputs, then each head's (T, L, W)
        arrays = [X] + [a for t in exp.targets["train"] for a in (t.T, t.L, t.W)]
        batches = Batches(arrays, bs, shuffle, exp.data.train.codes)
        model, opt = exp.model, exp.optimizer
        flags = exp.logit_flags
        theta, grad = model.theta, model.grad
        meters = [HeadMeter(h) for h in heads]
        weights = [h.weight for h in heads]
        loss0, meter0 = heads[0].loss, meters[0]
        has_val = exp.data.val is not None
        rows, log, on_epoch = self.rows, self.log, self.on_epoch
        progress = Progress(epochs, n_batches, enabled=not self.quiet)
        progress.first_epoch = self.epoch
        show = progress.tty  # live progress line
        every = cfg["checkpoint_seconds"] if self.checkpoint is not None else math.inf
        last_checkpoint = time.monotonic()
        self.status = "running"
        # a resumed run keeps the count it started with (it changes the numbers)
        requested = cfg["threads"] if cfg["threads"] is not None else self.threads
        self.threads, why = threads.decide(model, bs, requested)
        if why and not self.quiet:
            progress.stream.write(f"BLAS threads: {self.threads} ({why})\n")
        perf_counter = time.perf_counter
        try:
            with (
                threads.limited(self.threads),
                np.errstate(over="ignore", invalid="ignore", divide="ignore"),
            ):
                for epoch in range(self.epoch, epochs):
                    t0 = perf_counter()
                    lr = opt.set_epoch(epoch, epochs)
                    batches.start(exp.rng.permutation(n) if shuffle else None)
                    for m in meters:
                        m.reset()
                    for b in range(n_batches):
                        batch = batches.get(b)
                        xb = batch[0]
                        outs = model.forward(xb, training=True, logits=flags)
                        if single:
                            value, dout = loss0(outs, batch[1], batch[3])
                            meter0.add(value, outs, batch[2], batch[3], xb.shape[0])
                        else:
                            value, dout = 0.0, []
                            for k, head in enumerate(heads):
                                tb, lb, wb = batch[1 + 3 * k : 4 + 3 * k]
                                v, d = head.loss(outs[k], tb, wb)
                                meters[k].add(v, outs[k], lb, wb, xb.shape[0])
                                if weights[k] != 1.0:
                                    d *= weights[k]
                                value += weights[k] * v
                                dout.append(d)
                        if not math.isfinite(value):
                            self.status = "diverged"
                            self.diverged_at = {"epoch": epoch + 1, "batch": b + 1}
                            break
                        model.backward(dout, logits=flags)
                        opt.step(theta, grad)
                        if self.stop_signal is not None:
                            break
                        if show:
                            progress.batch(epoch, b, value)
                    if self.status == "diverged":
                        break
                    if self.stop_signal is not None and b + 1 < n_batches:
                        break  # a partial epoch is not recorded
                    row: dict = {"epoch": epoch + 1}
                    if single:
                        meter0.metrics(row)
                    else:
                        row["loss"] = 0.0  # first column: the weighted total
                        row["loss"] = sum(
                            w * m.metrics(row) for w, m in zip(weights, meters, strict=True)
                        )
                    if has_val:
                        for k, v in evaluate(exp, "val").items():
                            row[f"val_{k}"] = v
                    row["lr"] = lr
                    row["seconds"] = perf_counter() - t0
                    rows.append(row)
                    if log is not None:
                        log.append(row)
                    if on_epoch is not None:
                        on_epoch(epoch + 1)
                    if not show:
                        progress.epoch(epoch, row)
                    if has_val and not math.isfinite(row["val_loss"]):
                        self.status = "diverged"
                        self.diverged_at = {"epoch": epoch + 1, "batch": None}
                        break
                    self.epoch = epoch + 1
                    if self.early_stopping is not None:
                        self._es_wait = self._early_stop_step(row, self._es_wait)
                        if self._es_wait >= self.early_stopping["patience"]:
                            self.stopped_early = True
                            break
                    if self.stop_signal is not None:
                        break
                    if epoch + 1 < epochs and time.monotonic() - last_checkpoint >= every:
                        self.checkpoint(self)
                        last_checkpoint = time.monotonic()
        finally:
            progress.close()
        if self.status == "running":
            self.status = "interrupted" if self.stop_signal is not None else "completed"
        if self._best_theta is not None and self.status in ("completed", "interrupted"):
            theta[...] = self._best_theta
        return self.status

    def state(self) -> tuple[dict[str, Array], dict]:
        """Everything the loop needs to continue exactly where it is (at an epoch's end): the
        arrays (weights, optimizer state, best weights) and the rest (JSON-able)."""
        arrays = {"theta": self.exp.model.theta.copy()}
        opt_state = self.exp.optimizer.state_dict()
        for k, v in opt_state.items():
            if isinstance(v, np.ndarray):
                arrays[f"optimizer/{k}"] = v
        if self._best_theta is not None:
            arrays["best_theta"] = self._best_theta.copy()
        meta = {
            "epoch": self.epoch,
            "threads": self.threads,
            "optimizer": {k: v for k, v in opt_state.items() if not isinstance(v, np.ndarray)},
            "rng": self.exp.rng.bit_generator.state,
            "early_stopping": {
                "wait": self._es_wait,
                "best": self._es_best,
                "epoch": self._es_epoch,
            },
        }
        return arrays, meta

    def load_state(self, arrays: dict[str, Array], meta: dict, rows: list[dict]) -> None:
        """Continue from a ``state()``; ``rows`` are the metrics rows of the epochs before."""
        exp = self.exp
        if arrays["theta"].shape != exp.model.theta.shape:
            raise ValueError("the checkpoint's weights do not fit the model")
        exp.model.theta[...] = arrays["theta"]
        opt_state = dict(meta["optimizer"])
        opt_state.update(
            {k[len("optimizer/") :]: v for k, v in arrays.items() if k.startswith("optimizer/")}
        )
        exp.optimizer.load_state_dict(opt_state)
        exp.rng.bit_generator.state = meta["rng"]
        es = meta["early_stopping"]
        self._es_wait, self._es_best, self._es_epoch = es["wait"], es["best"], es["epoch"]
        self._best_theta = arrays["best_theta"].copy() if "best_theta" in arrays else None
        self.epoch = meta["epoch"]
        n = meta.get("threads")  # checkpoints before issue 18 have none
        self.threads = n if isinstance(n, int) and not isinstance(n, bool) and n >= 1 else None
        self.rows = rows

    def _early_stop_step(self, row: dict, wait: int) -> int:
        es = self.early_stopping
        key = es["monitor"]
        mode = es["mode"]
        if mode == "auto":
            mode = "max" if higher_is_better(key) else "min"
        value = row[key]
        best = self._es_best
        improved = best is None or (
            value > best + es["min_delta"] if mode == "max" else value < best - es["min_delta"]
        )
        if improved:
            self._es_best = value
            self._es_epoch = row["epoch"]
            if es["restore_best"]:
                if self._best_theta is None:
                    self._best_theta = self.exp.model.theta.copy()
                else:
                    self._best_theta[...] = self.exp.model.theta
            return 0
        return wait + 1


def metric_columns(exp: Experiment) -> list[str]:
    """metrics.csv's columns: epoch, the loss (the weighted total first when there are several
    outputs, then each output's), accuracies of classification outputs, the same on the
    validation split, lr, seconds."""
    names = ["loss"] if len(exp.heads) > 1 else []
    for h in exp.heads:
        names.append(f"{h.prefix}loss")
        if h.target == "labels" and exp.data.task == "classification":
            names.append(f"{h.prefix}accuracy")
    cols = ["epoch", *names]
    if exp.data.val is not None:
        cols += [f"val_{c}" for c in names]
    return [*cols, "lr", "seconds"]


def versions() -> dict[str, str]:
    return {"nnlab": __version__, "numpy": np.__version__, "python": platform.python_version()}


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


@dataclass
class RunResult:
    run_dir: Path
    summary: dict
    experiment: Experiment


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
    }


def train(
    config: dict,
    runs_dir: str | Path = "runs",
    quiet: bool = True,
    run_dir: str | Path | None = None,
    handle_signals: bool = True,
    stop: queue.SimpleQueue | None = None,
) -> RunResult:
    """Build, train and record a resolved config in a new run folder (or ``run_dir``).
    ``stop``: signal numbers put there stop the run at a safe point, as the signal itself
    would (for a run in a thread, which receives no signals: a sweep's remote worker)."""
    exp = build(config)  # config and data errors surface before any folder is made
    trainer = Trainer(exp, quiet=quiet)
    path = Path(run_dir) if run_dir is not None else new_run_dir(runs_dir, config["name"])
    path.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {
        "status": "running",
        "name": config["name"],
        "run": path.name,
        "config_hash": config_hash(config),
        "seed": config["training"]["seed"],
        "epochs_planned": config["training"]["epochs"],
        "epochs_completed": 0,
        "data": {"name": exp.data.name, **exp.data.sizes},
        "parameters": exp.model.n_params,
        "baselines": baselines.compute(exp.data) if _one_label_head(exp) else {},
        "started": _now(),
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "versions": versions(),
    }
    atomic_write(path / "config.yaml", dump_yaml(config))
    write_json(path / "summary.json", summary)
    trainer.log = MetricsLog(path / "metrics.csv", trainer.columns)
    return _execute(exp, trainer, path, summary, handle_signals, stop)


def resume(run_dir: str | Path, quiet: bool = True, handle_signals: bool = True) -> RunResult:
    """Continue a killed or interrupted run from its last checkpoint. The metrics it writes are
    those of an uninterrupted run, bit for bit (timing apart)."""
    from nnlab.config import load_config

    path = Path(run_dir)
    summary = read_summary(path)
    status = summary.get("status")
    if status in ("completed", "diverged"):
        raise RunError(f"{path}: the run is {status}; there is nothing to resume")
    if status == "running" and _alive(summary):
        raise RunError(f"{path}: the run is still running (pid {summary['pid']})")
    config = load_config(path / "config.yaml")
    config["name"] = summary.get("name", config["name"])
    exp = build(config)
    trainer = Trainer(exp, quiet=quiet)
    checkpoint = path / CHECKPOINT
    rows: list[dict] = []
    if checkpoint.is_file():
        arrays, meta = read_checkpoint(checkpoint)
        rows = [_row(r) for r in read_metrics(path)[: meta["epoch"]]]
        if len(rows) < meta["epoch"]:
            raise RunError(f"{path}: metrics.csv has fewer rows than the checkpoint's epochs")
        try:
            trainer.load_state(arrays, meta, rows)
        except (KeyError, ValueError) as e:
            raise RunError(f"{checkpoint}: does not fit this run's model ({e})") from None
    trainer.log = MetricsLog(path / "metrics.csv", trainer.columns, keep_rows=len(rows))
    summary.update(status="running", pid=os.getpid(), host=socket.gethostname())
    for key in ("error", "traceback", "signal", "finished"):
        summary.pop(key, None)
    summary.setdefault("resumed", []).append({"at_epoch": trainer.epoch, "time": _now()})
    write_json(path / "summary.json", summary)
    return _execute(exp, trainer, path, summary, handle_signals)


def _row(raw: dict[str, float]) -> dict:
    return {k: (int(v) if k == "epoch" else v) for k, v in raw.items()}


def _alive(summary: dict) -> bool:
    """Whether the process a summary names is running on this host."""
    if summary.get("host") != socket.gethostname() or not summary.get("pid"):
        return False
    try:
        os.kill(int(summary["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return int(summary["pid"]) != os.getpid()


def _execute(
    exp: Experiment,
    trainer: Trainer,
    path: Path,
    summary: dict,
    handle_signals: bool,
    stop: queue.SimpleQueue | None = None,
) -> RunResult:
    """Run the loop with checkpoints and signal handling, then record the result. Times add
    up over the sessions of a resumed run."""
    started = time.time() - float(summary.get("wall_seconds", 0.0))
    train_seconds = float(summary.get("train_seconds", 0.0))
    checkpoint = path / CHECKPOINT

    def save(tr: Trainer) -> None:
        tr.log.flush()  # the rows a checkpoint counts are on disk before it is
        save_checkpoint(checkpoint, *tr.state())

    trainer.checkpoint = save
    stats = None
    if exp.config["training"]["log_layers"]:
        resumed = bool(summary.get("resumed"))
        stats = LayerStats(exp, path / "layers.csv", keep_epochs=trainer.epoch if resumed else None)
        if trainer.epoch == 0:
            stats.record(0)
        trainer.on_epoch = stats.record
    previous = {}
    if handle_signals and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _handler(trainer))
    finished = threading.Event()
    if stop is not None:
        threading.Thread(target=_forward_stops, args=(stop, trainer, finished), daemon=True).start()
    t0 = time.perf_counter()
    try:
        status = trainer.fit()
    except BaseException as e:
        summary.update(
            status="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc()
        )
        _finish(summary, trainer, started, train_seconds + time.perf_counter() - t0)
        write_json(path / "summary.json", summary)
        raise
    finally:
        finished.set()
        trainer.log.close()
        if stats is not None:
            stats.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    train_seconds += time.perf_counter() - t0
    summary["status"] = status
    if status != "diverged":
        for split in ("train", "val", "test"):
            if split in exp.targets:
                summary[split] = evaluate(exp, split)
                groups = evaluate_groups(exp, split)
                if groups:
                    summary[f"{split}_groups"] = groups
        save_model(path / "model.npz", exp.model, model_meta(exp))
    else:
        summary["diverged_at"] = trainer.diverged_at
    if trainer.stop_signal is not None:
        summary["signal"] = signal.Signals(trainer.stop_signal).name
    if status in ("completed", "diverged"):
        checkpoint.unlink(missing_ok=True)  # nothing left to resume
    _finish(summary, trainer, started, train_seconds)
    write_json(path / "summary.json", summary)
    return RunResult(path, summary, exp)


def _one_label_head(exp: Experiment) -> bool:
    return len(exp.heads) == 1 and exp.heads[0].target == "labels"


def _finish(summary: dict, trainer: Trainer, started: float, train_seconds: float) -> None:
    """Fill in what the loop saw."""
    rows = trainer.rows
    summary["epochs_completed"] = len(rows)
    summary["threads"] = trainer.threads
    summary["stopped_early"] = trainer.stopped_early
    if trainer.early_stopping is not None and trainer._es_epoch is not None:
        summary["early_stopping"] = {
            "monitor": trainer.early_stopping["monitor"],
            "best_epoch": trainer._es_epoch,
            "restored": trainer._best_theta is not None,
        }
    summary["last"] = {k: v for k, v in rows[-1].items() if k != "seconds"} if rows else {}
    summary["best"] = best_of(rows)
    summary["finished"] = _now()
    summary["train_seconds"] = round(train_seconds, 4)
    summary["wall_seconds"] = round(time.time() - started, 4)


def _forward_stops(stop: queue.SimpleQueue, trainer: Trainer, finished: threading.Event) -> None:
    while not finished.is_set():
        try:
            trainer.request_stop(stop.get(timeout=0.1))
        except queue.Empty:
            continue


def _handler(trainer: Trainer):
    def handle(signum, frame):
        if trainer.stop_signal is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        trainer.request_stop(signum)

    return handle


EXIT_CODES = {"completed": 0, "failed": 1, "diverged": 3, "interrupted": 130}


def exit_code(result: RunResult) -> int:
    if result.summary["status"] == "interrupted":
        sig = result.summary.get("signal")
        return 143 if sig == "SIGTERM" else 130
    return EXIT_CODES.get(result.summary["status"], 1)


__all__ = ["Experiment", "NnlabError", "RunResult", "Trainer", "build", "evaluate", "train"]
