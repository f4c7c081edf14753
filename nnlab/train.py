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
import signal
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnlab import __version__, baselines
from nnlab.config import config_hash, dump_yaml
from nnlab.data import Data, load
from nnlab.errors import ConfigError, NnlabError, did_you_mean
from nnlab.nn import LOSSES, OPTIMIZERS, Model
from nnlab.nn.losses import Loss
from nnlab.nn.optimizers import Optimizer
from nnlab.progress import Progress
from nnlab.runs import MetricsLog, atomic_write, new_run_dir, save_model, write_json

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
class Experiment:
    """Everything a config describes, built and checked, ready to train."""

    config: dict
    data: Data
    model: Model
    loss: Loss
    optimizer: Optimizer
    rng: np.random.Generator  # training-time randomness
    fused: bool  # the loss takes the logits (fused with the output activation)
    targets: dict[str, tuple[Array, Array | None]] = field(default_factory=dict)

    def split(self, name: str):
        return getattr(self.data, name)


def build(config: dict, data: Data | None = None) -> Experiment:
    """Load data and build the model, loss and optimizer of a resolved config. ``data``, when
    given, replaces the data set the config names (arrays already split and scaled)."""
    tr = config["training"]
    dtype = np.dtype(tr["dtype"])
    rngs = seed_streams(tr["seed"], config["data"].get("split_seed"))
    if data is None:
        data = load(config["data"], rngs["data"], dtype)
    model = Model.from_spec(config["model"], data.input_shape, rngs["init"], dtype)
    model.set_rng(rngs["train"])
    loss = LOSSES.build(config["loss"])
    fused = check_compatible(config, data, model, loss)
    optimizer = OPTIMIZERS.build(config["optimizer"])
    optimizer.setup(model.theta, model.n_decay)
    exp = Experiment(config, data, model, loss, optimizer, rngs["train"], fused)
    n_out = model.output_shape[-1]
    for name in ("train", "val", "test"):
        split = getattr(data, name)
        if split is not None:
            exp.targets[name] = (loss.targets(split.y, n_out, dtype), data.labels(split))
    return exp


def check_compatible(config: dict, data: Data, model: Model, loss: Loss) -> bool:
    """Check that the model's output fits the data and the loss; True if the loss is fused."""
    last = len(config["model"]["layers"]) - 1
    where = f"model.layers[{last}]"
    if len(model.output_shape) != 1:
        raise ConfigError(
            f"the model's output has shape {model.output_shape}; "
            "the last layer must give a flat vector per sample",
            where,
        )
    n_out = model.output_shape[0]
    act = model.output_activation
    if loss.fused_activation is not None and act != loss.fused_activation:
        raise ConfigError(
            f"{loss.name} needs a {loss.fused_activation} output, but the last layer's "
            f"activation is {act or 'none'}; set {where}.activation: "
            f"{loss.fused_activation} (the loss is computed from the logits, fused with the "
            f"{loss.fused_activation}, which is exact and numerically stable)",
            "loss",
        )
    if act == "softmax" and n_out == 1:
        raise ConfigError(
            "a softmax over one unit is always 1; use sigmoid for one output, "
            "or as many units as classes",
            f"{where}.activation",
        )
    if data.task == "classification":
        k = data.n_classes
        if loss.name == "categorical_crossentropy":
            allowed = [k]
        elif k == 2:
            allowed = [1, 2]
        else:
            allowed = [k]
        if n_out not in allowed:
            hint = " or ".join(str(a) for a in allowed)
            raise ConfigError(
                f"the last layer has {n_out} units, but data '{data.name}' has {k} classes: "
                f"use units: {hint}",
                f"{where}.units",
            )
    else:
        if loss.fused_activation is not None:
            raise ConfigError(
                f"{loss.name} is for classification; data '{data.name}' is a "
                "regression task (use mse or mae)",
                "loss",
            )
        want = 1 if data.train.y.ndim == 1 else data.train.y.shape[1]
        if n_out != want:
            raise ConfigError(
                f"the last layer has {n_out} units, but the targets have {want} values per sample",
                f"{where}.units",
            )
    return loss.fused_activation is not None


def evaluate(exp: Experiment, split: str, batch: int = EVAL_BATCH) -> dict[str, float]:
    """Loss (and accuracy) of the current weights on a split, in evaluation mode."""
    X = exp.split(split).X
    T, L = exp.targets[split]
    total, correct = 0.0, 0
    for start in range(0, X.shape[0], batch):
        stop = start + batch
        out = exp.model.forward(X[start:stop], training=False, logits=exp.fused)
        value, _ = exp.loss(out, T[start:stop])
        total += value * out.shape[0]
        if L is not None:
            correct += int(np.count_nonzero(exp.loss.decide(out) == L[start:stop]))
    n = X.shape[0]
    metrics = {"loss": total / n}
    if L is not None:
        metrics["accuracy"] = correct / n
    return metrics


class StopRequested(Exception):
    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


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


class Trainer:
    """Runs the epochs of an experiment, writing rows to a metrics log as it goes."""

    def __init__(self, exp: Experiment, log: MetricsLog | None = None, quiet: bool = True):
        self.exp = exp
        self.log = log
        self.quiet = quiet
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

    def request_stop(self, signum: int) -> None:
        self.stop_signal = signum

    def fit(self) -> str:
        """Train all epochs; returns the status (completed, diverged or interrupted)."""
        exp = self.exp
        cfg = exp.config["training"]
        epochs = cfg["epochs"]
        X = exp.data.train.X
        T, L = exp.targets["train"]
        n = X.shape[0]
        bs = min(cfg["batch_size"] or n, n)
        n_batches = math.ceil(n / bs)
        full = bs >= n
        shuffle = cfg["shuffle"] and not full  # the order of a full batch changes nothing
        if shuffle:  # batch buffers, filled by np.take
            xbuf = np.empty((bs, *X.shape[1:]), X.dtype)
            tbuf = np.empty((bs, *T.shape[1:]), T.dtype)
            lbuf = np.empty(bs, L.dtype) if L is not None else None
        model, loss, opt, fused = exp.model, exp.loss, exp.optimizer, exp.fused
        theta, grad = model.theta, model.grad
        has_val = exp.data.val is not None
        rows, log = self.rows, self.log
        progress = Progress(epochs, n_batches, enabled=not self.quiet)
        wait = 0
        self.status = "running"
        xb, tb, lb = X, T, L
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                for epoch in range(epochs):
                    t0 = time.perf_counter()
                    lr = opt.set_epoch(epoch, epochs)
                    perm = exp.rng.permutation(n) if shuffle else None
                    loss_sum, correct = 0.0, 0
                    for b in range(n_batches):
                        if shuffle:
                            idx = perm[b * bs : (b + 1) * bs]
                            m = idx.shape[0]
                            xb = np.take(X, idx, axis=0, out=xbuf[:m])
                            tb = np.take(T, idx, axis=0, out=tbuf[:m])
                            if L is not None:
                                lb = np.take(L, idx, out=lbuf[:m])
                        elif not full:
                            sl = slice(b * bs, (b + 1) * bs)
                            xb, tb = X[sl], T[sl]
                            lb = L[sl] if L is not None else None
                        out = model.forward(xb, training=True, logits=fused)
                        value, dout = loss(out, tb)
                        if not math.isfinite(value):
                            self.status = "diverged"
                            self.diverged_at = {"epoch": epoch + 1, "batch": b + 1}
                            break
                        loss_sum += value * xb.shape[0]
                        if lb is not None:
                            correct += int(np.count_nonzero(loss.decide(out) == lb))
                        model.backward(dout, logits=fused)
                        opt.step(theta, grad)
                        if self.stop_signal is not None:
                            break
                        progress.batch(epoch, b, value)
                    if self.status == "diverged":
                        break
                    if self.stop_signal is not None and b + 1 < n_batches:
                        break  # a partial epoch is not recorded
                    row = {"epoch": epoch + 1, "loss": loss_sum / n}
                    if L is not None:
                        row["accuracy"] = correct / n
                    if has_val:
                        for k, v in evaluate(exp, "val").items():
                            row[f"val_{k}"] = v
                    row["lr"] = lr
                    row["seconds"] = time.perf_counter() - t0
                    rows.append(row)
                    if log is not None:
                        log.append(row)
                    progress.epoch(epoch, row)
                    if has_val and not math.isfinite(row["val_loss"]):
                        self.status = "diverged"
                        self.diverged_at = {"epoch": epoch + 1, "batch": None}
                        break
                    if self.early_stopping is not None:
                        wait = self._early_stop_step(row, wait)
                        if wait >= self.early_stopping["patience"]:
                            self.stopped_early = True
                            break
                    if self.stop_signal is not None:
                        break
        finally:
            progress.close()
        if self.status == "running":
            self.status = "interrupted" if self.stop_signal is not None else "completed"
        if self._best_theta is not None and self.status in ("completed", "interrupted"):
            theta[...] = self._best_theta
        return self.status

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
    cls = exp.data.task == "classification"
    cols = ["epoch", "loss"] + (["accuracy"] if cls else [])
    if exp.data.val is not None:
        cols += ["val_loss"] + (["val_accuracy"] if cls else [])
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
) -> RunResult:
    """Build, train and record a resolved config in a new run folder (or ``run_dir``)."""
    exp = build(config)  # config and data errors surface before any folder is made
    trainer = Trainer(exp, quiet=quiet)
    started = time.time()
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
        "baselines": baselines.compute(exp.data),
        "started": _now(),
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "versions": versions(),
    }
    atomic_write(path / "config.yaml", dump_yaml(config))
    write_json(path / "summary.json", summary)
    log = MetricsLog(path / "metrics.csv", trainer.columns)
    trainer.log = log

    previous = {}
    if handle_signals and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _handler(trainer))
    t0 = time.perf_counter()
    try:
        status = trainer.fit()
    except BaseException as e:
        summary.update(
            status="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc()
        )
        _finish(summary, trainer, started, time.perf_counter() - t0)
        write_json(path / "summary.json", summary)
        raise
    finally:
        log.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    train_seconds = time.perf_counter() - t0
    summary["status"] = status
    if status != "diverged":
        for split in ("train", "val", "test"):
            if split in exp.targets:
                summary[split] = evaluate(exp, split)
        save_model(path / "model.npz", exp.model, model_meta(exp))
    else:
        summary["diverged_at"] = trainer.diverged_at
    if trainer.stop_signal is not None:
        summary["signal"] = signal.Signals(trainer.stop_signal).name
    _finish(summary, trainer, started, train_seconds)
    write_json(path / "summary.json", summary)
    return RunResult(path, summary, exp)


def _finish(summary: dict, trainer: Trainer, started: float, train_seconds: float) -> None:
    rows = trainer.rows
    summary["epochs_completed"] = len(rows)
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
