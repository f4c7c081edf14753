"""The training loop: batches of an epoch and the ``Trainer`` that runs the epochs of an
experiment (``nnlab.experiment``), writing a metrics row per epoch.

Each step computes the model's outputs, the experiment's ``Objective`` (the one copy of the
training objective) and its gradient, and the optimizer's update. The loop knows nothing of run
folders: ``nnlab.lifecycle`` gives it a metrics log and a checkpoint callback, and handles
signals. The same experiment and seed give the same numbers, bit for bit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nnlab import threads
from nnlab.errors import ConfigError, did_you_mean
from nnlab.es import Perturbed
from nnlab.experiment import Experiment, Meters, evaluate, metric_columns
from nnlab.metrics import NOT_METRICS, MetricsTally, higher_is_better
from nnlab.progress import Progress
from nnlab.pseudo import PseudoLabels
from nnlab.runs import MetricsLog, Status

Array = np.ndarray


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


@dataclass
class _Fit:
    """What stays fixed during a fit: the batches, the sizes and the parts a step uses."""

    epochs: int
    n: int
    n_batches: int
    shuffle: bool
    batches: Batches
    meters: Meters
    progress: Progress
    checkpoint_every: float
    whole: tuple[list, list, list] | None  # a full batch: each head's (T, L, W), fixed


def check_monitor(key: str, columns: list[str], path: str) -> None:
    """A ConfigError naming ``path`` when ``key`` is not one of the run's metrics (``columns``:
    metrics.csv's)."""
    if key not in columns:
        metrics = [c for c in columns if c not in NOT_METRICS]
        raise ConfigError(
            f"{key!r} is not a metric of this run.{did_you_mean(key, metrics)} "
            f"Allowed: {', '.join(metrics)}",
            path,
        )


class Trainer:
    """Runs the epochs of an experiment, writing rows to a metrics log as it goes: a
    ``MetricsLog`` (metrics.csv), or a list that collects them. Of the rows it keeps only the
    best and the last (``tally``), so that its memory does not grow with the epochs."""

    def __init__(
        self,
        exp: Experiment,
        log: MetricsLog | list[dict] | None = None,
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
        self.status: str = Status.RUNNING
        self.diverged_at: dict | None = None
        self.stopped_early = False
        self.columns = metric_columns(exp)
        self.tally = MetricsTally()  # of every epoch's row: the best, the last
        # rows written to the log: every epoch's, or every k-th and the last
        self.log_every = exp.config["training"].get("log_every", 1)
        self.written = 0  # the epoch of the last row written
        self._seconds = 0.0  # of the epochs since the last row written
        es = exp.config["training"]["early_stopping"]
        if es is not None:
            check_monitor(es["monitor"], self.columns, "training.early_stopping.monitor")
        self.early_stopping = es
        schedule = exp.optimizer.lr_schedule  # a schedule that follows a metric (plateau)
        self.schedule_monitor: tuple | None = None  # (schedule, higher is better)
        if schedule.monitor is not None:
            check_monitor(schedule.monitor, self.columns, "optimizer.schedule.monitor")
            mode = getattr(schedule, "mode", "auto")
            higher = mode == "max" or (mode == "auto" and higher_is_better(schedule.monitor))
            self.schedule_monitor = (schedule, higher)
        pseudo = exp.config["training"]["pseudo_labels"]
        self.pseudo = PseudoLabels(exp, pseudo) if pseudo is not None else None
        self.perturbed: Perturbed | None = None  # evolution strategies' members
        if not exp.optimizer.needs_gradient:  # made here: a bad one is refused before training
            n = exp.data.train.X.shape[0]
            self.perturbed = Perturbed(exp, min(exp.config["training"]["batch_size"] or n, n))
        self.best_theta: Array | None = None  # weights at the best epoch (restore_best)
        self.best_buffers: Array | None = None  # and the model's buffers (running averages)
        self.es_best: float | None = None
        self.es_epoch: int | None = None
        self.es_wait = 0

    def request_stop(self, signum: int) -> None:
        self.stop_signal = signum

    def fit(self) -> str:
        """Train all epochs; returns the status (completed, diverged or interrupted)."""
        fit = self._prepare()
        opt, rng, perf_counter = self.exp.optimizer, self.exp.rng, time.perf_counter
        last_checkpoint = time.monotonic()
        try:
            with (
                threads.limited(self.threads),
                np.errstate(over="ignore", invalid="ignore", divide="ignore"),
            ):
                for epoch in range(self.epoch, fit.epochs):
                    t0 = perf_counter()
                    lr = opt.set_epoch(epoch, fit.epochs)
                    if self.pseudo is not None:
                        self.pseudo.update(epoch)
                    fit.batches.start(rng.permutation(fit.n) if fit.shuffle else None)
                    if not self._batches(fit, epoch):
                        break  # diverged, or stopped by a signal within the epoch
                    row: dict = {"epoch": epoch + 1}
                    fit.meters.write(row)
                    if self._end_epoch(fit, epoch, row, lr, perf_counter() - t0):
                        break
                    if (
                        epoch + 1 < fit.epochs
                        and time.monotonic() - last_checkpoint >= fit.checkpoint_every
                    ):
                        self.checkpoint(self)
                        last_checkpoint = time.monotonic()
        finally:
            fit.progress.close()
        last = self.tally.last
        if last is not None and self.written != last["epoch"]:
            self._write(last)  # the last epoch's row, also between every k-th
        if self.status == Status.RUNNING:
            self.status = Status.INTERRUPTED if self.stop_signal is not None else Status.COMPLETED
        if self.best_theta is not None and self.status in (Status.COMPLETED, Status.INTERRUPTED):
            self.exp.model.theta[...] = self.best_theta
            self.exp.model.buffers[...] = self.best_buffers
        return self.status

    def _prepare(self) -> _Fit:
        exp = self.exp
        cfg = exp.config["training"]
        X = exp.data.train.X
        n = X.shape[0]
        bs = min(cfg["batch_size"] or n, n)
        shuffle = cfg["shuffle"] and bs < n  # the order of a full batch changes nothing
        # what a batch is made of: the inputs, then each head's (T, L, W)
        arrays = [X] + [a for t in exp.targets["train"] for a in (t.T, t.L, t.W)]
        n_batches = math.ceil(n / bs)
        progress = Progress(cfg["epochs"], n_batches, enabled=not self.quiet)
        progress.first_epoch = self.epoch
        every = cfg["checkpoint_seconds"] if self.checkpoint is not None else math.inf
        self.status = Status.RUNNING
        # a resumed run keeps the count it started with (it changes the numbers)
        requested = cfg["threads"] if cfg["threads"] is not None else self.threads
        macs = threads.largest_product(exp.model, bs)
        if not exp.optimizer.needs_gradient:
            macs = self.perturbed.macs
        self.threads, why = threads.decide_product(macs, requested)
        if why and not self.quiet:
            progress.line.say(f"BLAS threads: {self.threads} ({why})")
        batches = Batches(arrays, bs, shuffle, exp.data.train.codes)
        whole = (arrays[1::3], arrays[2::3], arrays[3::3]) if n_batches == 1 else None
        meters = Meters(exp.heads)
        return _Fit(cfg["epochs"], n, n_batches, shuffle, batches, meters, progress, every, whole)

    def _batches(self, fit: _Fit, epoch: int) -> bool:
        """One epoch's steps; False when the epoch did not end (diverged, or stopped)."""
        model, opt, objective = self.exp.model, self.exp.optimizer, self.exp.objective
        flags, theta, grad = self.exp.logit_flags, model.theta, model.grad
        meters, batches, progress = fit.meters, fit.batches, fit.progress
        show, whole, perturbed = progress.tty, fit.whole, self.perturbed
        single = meters.first if meters.single else None  # one call less per step
        meters.reset()
        for b in range(fit.n_batches):
            batch = batches.get(b)
            xb = batch[0]
            T, L, W = whole or (batch[1::3], batch[2::3], batch[3::3])  # each head's
            outs = model.forward(xb, training=True, logits=flags)
            value, dout, parts = objective(outs, T, W)
            if single is not None:
                single.add(parts[0], outs, L[0], W[0], xb.shape[0])
            else:
                meters.add(parts, outs, L, W, xb.shape[0])
            if not math.isfinite(value):
                self.status = Status.DIVERGED
                self.diverged_at = {"epoch": epoch + 1, "batch": b + 1}
                return False
            if perturbed is None:
                model.backward(dout, logits=flags)
                opt.step(theta, grad)
            else:  # evolution strategies: no backward pass
                perturbed.step(xb, T, W)
            if self.stop_signal is not None:
                return b + 1 == fit.n_batches  # a partial epoch is not recorded
            if show:
                progress.batch(epoch, b, value)
        return True

    def _end_epoch(self, fit: _Fit, epoch: int, row: dict, lr: float, seconds: float) -> bool:
        """Record an epoch's row; True when training stops here (diverged on the validation
        split, early stopping, a signal)."""
        has_val = self.exp.data.val is not None
        if has_val:
            for k, v in evaluate(self.exp, "val").items():
                row[f"val_{k}"] = v
        if self.pseudo is not None:
            row["pseudo_labels"] = self.pseudo.count
        row["lr"] = lr
        row["seconds"] = seconds
        self.tally.add(row)
        self._seconds += seconds
        if (epoch + 1) % self.log_every == 0:
            self._write(row)
        if self.on_epoch is not None:
            self.on_epoch(epoch + 1)
        fit.progress.epoch(epoch, row)
        if has_val and not math.isfinite(row["val_loss"]):
            self.status = Status.DIVERGED
            self.diverged_at = {"epoch": epoch + 1, "batch": None}
            return True
        self.epoch = epoch + 1
        if self.schedule_monitor is not None:
            schedule, higher = self.schedule_monitor
            schedule.observe(row[schedule.monitor], higher)
        if self.early_stopping is not None:
            self.es_wait = self._early_stop_step(row, self.es_wait)
            if self.es_wait >= self.early_stopping["patience"]:
                self.stopped_early = True
                return True
        return self.stop_signal is not None

    def _write(self, row: dict) -> None:
        """A row for metrics.csv; its ``seconds`` are those of the epochs since the last row
        written (so that the column adds up to the training time with ``log_every`` too)."""
        if row["seconds"] != self._seconds:  # a copy: the epoch's own row keeps its time
            row = {**row, "seconds": self._seconds}
        self._seconds = 0.0
        self.written = row["epoch"]
        if self.log is not None:
            self.log.append(row)

    def state(self) -> tuple[dict[str, Array], dict]:
        """Everything the loop needs to continue exactly where it is (at an epoch's end): the
        arrays (weights, optimizer state, best weights) and the rest (JSON-able)."""
        arrays = {"theta": self.exp.model.theta.copy(), "buffers": self.exp.model.buffers.copy()}
        opt_state = self.exp.optimizer.state_dict()
        for k, v in opt_state.items():
            if isinstance(v, np.ndarray):
                arrays[f"optimizer/{k}"] = v
        if self.best_theta is not None:
            arrays["best_theta"] = self.best_theta.copy()
            arrays["best_buffers"] = self.best_buffers.copy()
        meta = {
            "epoch": self.epoch,
            "threads": self.threads,
            "optimizer": {k: v for k, v in opt_state.items() if not isinstance(v, np.ndarray)},
            "rng": self.exp.rng.bit_generator.state,
            "early_stopping": {
                "wait": self.es_wait,
                "best": self.es_best,
                "epoch": self.es_epoch,
            },
            # of every epoch: metrics.csv may hold every k-th row only
            "best": self.tally.best,
            "last": self.tally.last,
        }
        if self.exp.sample_rng is not None:
            meta["sample_rng"] = self.exp.sample_rng.bit_generator.state
        return arrays, meta

    def load_state(self, arrays: dict[str, Array], meta: dict, tally: MetricsTally) -> None:
        """Continue from a ``state()``; ``tally`` is that of the metrics rows written before it
        (``metrics_csv.rows_before``)."""
        exp = self.exp
        if arrays["theta"].shape != exp.model.theta.shape:
            raise ValueError("the checkpoint's weights do not fit the model")
        exp.model.theta[...] = arrays["theta"]
        buffers = arrays.get("buffers", np.empty(0))  # (checkpoints before buffers: none)
        if buffers.shape != exp.model.buffers.shape:
            raise ValueError("the checkpoint's buffers (running averages) do not fit the model")
        exp.model.buffers[...] = buffers
        opt_state = dict(meta["optimizer"])
        opt_state.update(
            {k[len("optimizer/") :]: v for k, v in arrays.items() if k.startswith("optimizer/")}
        )
        exp.optimizer.load_state_dict(opt_state)
        exp.rng.bit_generator.state = meta["rng"]
        if "sample_rng" in meta:  # (checkpoints from before the sample stream: unused then)
            exp.sample_rng.bit_generator.state = meta["sample_rng"]
        es = meta["early_stopping"]
        self.es_wait, self.es_best, self.es_epoch = es["wait"], es["best"], es["epoch"]
        self.best_theta = arrays["best_theta"].copy() if "best_theta" in arrays else None
        best_buffers = arrays.get("best_buffers")  # (none before buffers: an empty model's)
        if best_buffers is None and self.best_theta is not None:
            best_buffers = exp.model.buffers
        self.best_buffers = None if best_buffers is None else best_buffers.copy()
        self.epoch = meta["epoch"]
        n = meta.get("threads")  # checkpoints before issue 18 have none
        self.threads = n if isinstance(n, int) and not isinstance(n, bool) and n >= 1 else None
        self.written = tally.last["epoch"] if tally.last else 0
        self._seconds = 0.0
        # the best and last of every epoch; a checkpoint of an earlier nnlab has neither: its
        # rows are every epoch's then
        best, last = meta.get("best"), meta.get("last")
        if isinstance(best, dict) and isinstance(last, dict):
            tally.best, tally.last, tally.count = dict(best), dict(last), self.epoch
        self.tally = tally

    def _early_stop_step(self, row: dict, wait: int) -> int:
        es = self.early_stopping
        key = es["monitor"]
        mode = es["mode"]
        if mode == "auto":
            mode = "max" if higher_is_better(key) else "min"
        value = row[key]
        best = self.es_best
        improved = best is None or (
            value > best + es["min_delta"] if mode == "max" else value < best - es["min_delta"]
        )
        if improved:
            self.es_best = value
            self.es_epoch = row["epoch"]
            if es["restore_best"]:
                if self.best_theta is None:
                    self.best_theta = self.exp.model.theta.copy()
                    self.best_buffers = self.exp.model.buffers.copy()
                else:
                    self.best_theta[...] = self.exp.model.theta
                    self.best_buffers[...] = self.exp.model.buffers
            return 0
        return wait + 1
