"""Training a population: the epochs of every member in one pass, as ``nnlab.train.Trainer``
runs them for one network.

Each step computes every member's outputs, objective, gradient and update in a few NumPy calls
over the member axis. A member is the same experiment as its single run: the same initial
weights, data, batch order and dropout masks, the same learning-rate schedule, the same metrics
(each epoch's row), divergence (a NaN loss ends that member, recorded diverged; the others go
on) and early stopping (per member). A finished member leaves the arrays at the end of its
epoch, so the others no longer compute it. The loop knows nothing of files: the rows and the
members' states are handed to ``record`` (``nnlab.population.record`` writes the run folders).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnlab import threads
from nnlab.experiment import Experiment, metric_columns
from nnlab.metrics import higher_is_better
from nnlab.nn.optimizers import SCHEDULES, Constant
from nnlab.population.batches import StackedBatches
from nnlab.population.members import Member
from nnlab.population.model import StackedModel
from nnlab.population.objective import StackedMeters, StackedObjective, evaluate
from nnlab.population.optimizers import StackedOptimizer
from nnlab.population.stack import Stack
from nnlab.runs import Status
from nnlab.train import check_monitor

Array = np.ndarray
#: metrics values kept before they are handed to ``record`` (at most 64 MB)
ROWS_IN_MEMORY = 8_000_000
#: checkpoints (metrics rows and members' states written) take at most 1/SYNC_SHARE of the time
SYNC_SHARE = 20


@dataclass
class Rows:
    """Metrics rows of some epochs: ``values[e, m]`` is the row of member ``ids[m]`` at
    ``epochs[e]`` (NaN rows where a member had none), columns as metrics.csv's."""

    epochs: Array  # (E,)
    ids: Array  # (M,) member indices
    values: Array  # (E, M, columns)


@dataclass
class Outcome:
    """How a member's training ended: what the single run's Trainer would hold."""

    status: str = Status.RUNNING
    epochs: int = 0  # rows recorded
    diverged_at: dict | None = None
    stopped_early: bool = False
    es_wait: int = 0
    es_best: float | None = None
    es_epoch: int | None = None
    theta: Array | None = None  # final weights (best ones when restored)
    restored: bool = False
    extra: dict = field(default_factory=dict)


class Population:
    """The members of one population (``nnlab.population.members.build_members``) and the loop
    that trains them. ``record(rows, population)``, when set, is called with new rows at least
    at every checkpoint and at the end."""

    def __init__(self, template: Experiment, members: list[Member]):
        self.template, self.members = template, members
        cfg = template.config["training"]
        self.epochs = cfg["epochs"]
        self.columns = metric_columns(template)
        self.early_stopping = cfg["early_stopping"]
        if self.early_stopping is not None:
            check_monitor(
                self.early_stopping["monitor"], self.columns, "training.early_stopping.monitor"
            )
        M, n = len(members), template.data.train.X.shape[0]
        self.batch = min(cfg["batch_size"] or n, n)
        self.shuffle = cfg["shuffle"] and self.batch < n  # a full batch's order changes nothing
        self.stack = Stack.choose(
            M, template.model.dtype, threads.largest_product(template.model, self.batch)
        )
        self.shared = all(m.data is template.data for m in members)
        rates = {i: [m.rates[i] for m in members] for i in members[0].rates}
        thetas = np.stack([m.theta0 for m in members])
        self.model = StackedModel(
            template.model, self.stack, thetas, rates, [m.rng for m in members]
        )
        self.optimizer = StackedOptimizer(
            [m.optimizer for m in members], self.stack, template.model.n_decay, thetas.shape[1]
        )
        self.objective = StackedObjective(
            template.heads,
            [np.array([m.weights[k] for m in members]) for k in range(len(template.heads))],
        )
        self.flags = template.logit_flags
        self.classification = template.data.task == "classification"
        self.batches = StackedBatches(self._split_arrays("train"), self.batch, self.shuffle,
                                      self.shared, self.stack, self._codes())  # fmt: skip
        self.val = self._split_arrays("val") if template.data.val is not None else None
        self.ids = np.arange(M)  # the members in the arrays, by index
        self.outcomes = [Outcome() for _ in members]
        self.member_seconds = np.zeros(M)  # each member's share of the training time
        self.share = 0.0  # the share of a member that trained in every epoch so far
        self._schedule_groups(members)
        if self.early_stopping is not None:
            self.es_best = np.full(M, np.nan)
            self.es_has = np.zeros(M, bool)
            self.es_wait = np.zeros(M, np.int64)
            self.es_epoch = np.zeros(M, np.int64)
        self.epoch = 0
        largest = threads.largest_product(template.model, self.batch)
        self.threads, self.threads_why = threads.decide_product(
            largest * (M if self.stack.member_last else 1), cfg["threads"]
        )
        self.stop_signal: int | None = None
        self.record: Callable[[Rows, Population], None] | None = None
        self.checkpoint: Callable[[Population], None] | None = None
        self.on_epoch: Callable[[Population], None] | None = None
        self.checkpoint_every = cfg["checkpoint_seconds"]
        self.checkpoint_cost = 0.0  # seconds one checkpoint is expected to take (``record``)
        self._rows: list[tuple[int, Array, Array]] = []
        self._pending = 0  # metrics values in _rows
        self.best_theta: Array | None = None
        self.train_seconds = 0.0

    # ------------------------------------------------------------------ data

    def _schedule_groups(self, members: list[Member]) -> None:
        """Each member's base learning rate and schedule (one object per distinct spec)."""
        self.base_lr = np.array([m.optimizer.base_lr for m in members], dtype=np.float64)
        specs: dict[str, int] = {}
        self.schedules = []
        of = []
        for m in members:
            spec = m.config["optimizer"]
            spec = spec.get("schedule", "constant") if isinstance(spec, dict) else "constant"
            key = json.dumps(spec, sort_keys=True)
            if key not in specs:
                specs[key] = len(self.schedules)
                self.schedules.append(SCHEDULES.build(spec))
            of.append(specs[key])
        self.schedule_of = np.array(of)
        self.constant_lr = all(type(s) is Constant for s in self.schedules)

    def _split_arrays(self, name: str) -> list[Array | None]:
        """A split's inputs, then each head's (T, L, W): shared, or stacked (M, n, ...)."""
        if self.shared:
            tgs = self.template.targets[name]
            return [getattr(self.template.data, name).X] + [a for t in tgs for a in (t.T, t.L, t.W)]
        parts = [[getattr(m.data, name).X] + [a for t in m.targets[name] for a in (t.T, t.L, t.W)]
                 for m in self.members]  # fmt: skip
        return [None if col[0] is None else np.stack(col) for col in zip(*parts, strict=True)]

    def _codes(self) -> tuple[Array, float] | None:
        """The training inputs' codes (``Split.codes``): shared, or stacked when every member
        has them with one divisor."""
        codes = [m.data.train.codes for m in self.members]
        if any(c is None for c in codes) or len({c[1] for c in codes}) > 1:
            return None
        if self.shared:
            return codes[0]
        return np.stack([c[0] for c in codes]), codes[0][1]

    # ------------------------------------------------------------------ the loop

    def request_stop(self, signum: int) -> None:
        self.stop_signal = signum

    @property
    def size(self) -> int:
        """Members still training."""
        return len(self.ids)

    def fit(self) -> None:
        """Train every member to its end: completed, diverged, stopped early, or interrupted
        (a signal); each member's ``Outcome`` says which."""
        last_checkpoint = time.monotonic()
        every = self._checkpoint_interval(self.checkpoint_cost)
        with (
            threads.limited(self.threads),
            np.errstate(over="ignore", invalid="ignore", divide="ignore"),
        ):
            for epoch in range(self.epoch, self.epochs):
                t0 = time.perf_counter()
                if epoch == 0 or not self.constant_lr:
                    self.optimizer.set_lr(self._lr(epoch))
                if self.shuffle:
                    n = self.batches.n
                    self.batches.start(np.stack([self.members[i].rng.permutation(n)
                                                 for i in self.ids]))  # fmt: skip
                meters = self._meters
                meters.reset()
                ended, diverged = self._steps(epoch, meters)
                seconds = time.perf_counter() - t0
                self.train_seconds += seconds
                if not ended:  # stopped by a signal within the epoch (not recorded)
                    self._diverged_in(diverged, epoch)
                    break
                self._end_epoch(epoch, meters, diverged, seconds)
                if self.on_epoch is not None:
                    self.on_epoch(self)
                if self.stop_signal is not None or not self.size:
                    break
                if self._pending > ROWS_IN_MEMORY:
                    self.flush()
                due = time.monotonic() - last_checkpoint >= every
                if due and epoch + 1 < self.epochs:
                    t1 = time.monotonic()
                    self.flush()
                    if self.checkpoint is not None:
                        self.checkpoint(self)
                    last_checkpoint = time.monotonic()
                    every = self._checkpoint_interval(last_checkpoint - t1)
        self._finish()
        self.flush()

    def _checkpoint_interval(self, cost: float) -> float:
        """Seconds between checkpoints: ``training.checkpoint_seconds``, but a thousand
        members' files take a while, and checkpoints may take at most 1/SYNC_SHARE of the time
        (``cost``: what one takes); 0 asks for one after every epoch."""
        if not self.checkpoint_every:
            return 0.0
        return max(self.checkpoint_every, cost * SYNC_SHARE)

    def _lr(self, epoch: int) -> Array:
        """Each member's learning rate for the epoch, from its schedule (one call per distinct
        schedule, over the base rates of its members)."""
        lr = np.empty(self.size)
        for schedule, rows in self._schedules():
            lr[rows] = schedule(epoch, self.base_lr[self.ids[rows]], self.epochs)
        return lr

    def _schedules(self) -> list[tuple[Any, Array]]:
        """The distinct schedules of the members in the arrays, with their rows."""
        if getattr(self, "_groups_of", None) is not self.ids:
            groups: dict[int, list[int]] = {}
            for j, g in enumerate(self.schedule_of[self.ids]):
                groups.setdefault(int(g), []).append(j)
            self._groups = [(self.schedules[g], np.array(rows)) for g, rows in groups.items()]
            self._groups_of = self.ids
        return self._groups

    @property
    def _meters(self) -> StackedMeters:
        m = getattr(self, "_meters_obj", None)
        if m is None or m.members != self.size:
            m = self._meters_obj = StackedMeters(
                self.template.heads, self.objective.weights, self.size, self.classification
            )
        return m

    def _steps(self, epoch: int, meters: StackedMeters) -> tuple[bool, Array | None]:
        """An epoch's steps: (whether the epoch ended, each member's divergence in it as
        bools (M,), None when none diverged). A signal ends an epoch before its end."""
        model, opt, objective, batches = self.model, self.optimizer, self.objective, self.batches
        flags, theta, grad = self.flags, model.theta, model.grad
        diverged = None
        for b in range(batches.count):
            batch = batches.get(b)
            xb = batch[0]
            T, L, W = batch[1::3], batch[2::3], batch[3::3]
            outs = model.forward(xb, training=True, logits=flags)
            value, dout, parts = objective(outs, T, W)
            meters.add(parts, outs, L, W, self._count(xb))
            if not np.isfinite(value).all():
                diverged = self._diverge(value, diverged, epoch, b)
                if diverged.all():
                    return True, diverged
            model.backward(dout, logits=flags)
            opt.step(theta, grad)
            if self.stop_signal is not None and b + 1 < batches.count:
                return False, diverged  # a partial epoch is not recorded
        return True, diverged

    def _diverge(self, value: Array, diverged: Array | None, epoch: int, b: int) -> Array:
        """Members whose loss is not finite diverged here (unless they did before)."""
        bad = ~np.isfinite(value)
        new = bad if diverged is None else bad & ~diverged
        for j in np.flatnonzero(new):
            self.outcomes[self.ids[j]].diverged_at = {"epoch": epoch + 1, "batch": b + 1}
        return bad if diverged is None else diverged | bad

    def _count(self, xb: Array) -> int:
        """Samples in a batch of inputs, shared (n, ...) or per member (M, n, ...)."""
        return xb.shape[0] if xb.ndim == len(self.model.input_shape) + 1 else xb.shape[1]

    def _end_epoch(
        self, epoch: int, meters: StackedMeters, diverged: Array | None, seconds: float
    ) -> None:
        """Record the epoch's rows (of members that did not diverge in it), then end the
        members that diverged, diverged on the validation split or stop early here."""
        size = self.size
        values = np.empty((len(self.columns), size))  # this epoch's row of every member
        row = {c: values[j] for j, c in enumerate(self.columns)}
        meters.write(row)
        if self.val is not None:
            X, *rest = self.val
            targets = [tuple(rest[k : k + 3]) for k in range(0, len(rest), 3)]
            val = evaluate(self.model, self.objective, X, targets, self.flags, self.classification)
            for k, v in val.items():
                row[f"val_{k}"][...] = v
        row["epoch"][...] = epoch + 1
        row["lr"][...] = self.optimizer.lr
        row["seconds"][...] = seconds / size
        self.share += seconds / size
        self.epoch = epoch + 1
        if diverged is None and self.val is None and self.early_stopping is None:
            self._rows.append((epoch + 1, self.ids, values))  # the common case, in short
            self._pending += values.size
            return
        done = np.zeros(size, bool) if diverged is None else diverged.copy()
        kept = ~done
        self._rows.append((epoch + 1, self.ids[kept], values[:, kept]))
        self._pending += values.size
        self._diverged_in(diverged, epoch)
        if self.val is not None:
            bad = kept & ~np.isfinite(row["val_loss"])
            for j in np.flatnonzero(bad):
                o = self.outcomes[self.ids[j]]
                o.status, o.diverged_at = Status.DIVERGED, {"epoch": epoch + 1, "batch": None}
            done |= bad
        if self.early_stopping is not None:
            done |= self._early_stop(row, ~done)
        if done.any():
            self._leave(done)

    def _diverged_in(self, diverged: Array | None, epoch: int) -> None:
        """Members that diverged within ``epoch``: their rows end before it."""
        if diverged is None:
            return
        for j in np.flatnonzero(diverged):
            o = self.outcomes[self.ids[j]]
            o.status, o.epochs = Status.DIVERGED, epoch

    def _early_stop(self, row: dict[str, Array], active: Array) -> Array:
        """Each member's early-stopping step (as ``Trainer``'s); True where it stops here."""
        es = self.early_stopping
        key = es["monitor"]
        mode = es["mode"] if es["mode"] != "auto" else ("max" if higher_is_better(key) else "min")
        ids = self.ids[active]
        value = row[key][active]
        best = self.es_best[ids]
        better = value > best + es["min_delta"] if mode == "max" else value < best - es["min_delta"]
        improved = ~self.es_has[ids] | better
        won = ids[improved]
        self.es_best[won], self.es_epoch[won], self.es_wait[won] = value[improved], self.epoch, 0
        self.es_has[won] = True
        self.es_wait[ids[~improved]] += 1
        if es["restore_best"] and improved.any():
            self._keep_best(np.flatnonzero(active)[improved])
        stop = np.zeros(self.size, bool)
        stop[np.flatnonzero(active)] = self.es_wait[ids] >= es["patience"]
        return stop

    def early_stopping_state(self, i: int) -> dict:
        """Member i's early-stopping state as the single run's checkpoint holds it."""
        if self.early_stopping is None or not self.es_has[i]:
            return {"wait": 0, "best": None, "epoch": None}
        return {
            "wait": int(self.es_wait[i]),
            "best": float(self.es_best[i]),
            "epoch": int(self.es_epoch[i]),
        }

    def _keep_best(self, rows: Array) -> None:
        """The weights of ``rows`` are their best so far (early stopping restores them)."""
        if self.best_theta is None:
            self.best_theta = np.full_like(self.model.theta, np.nan)
            self.best_rows = np.zeros(self.size, bool)
        self.best_theta[rows] = self.model.theta[rows]
        self.best_rows[rows] = True

    def _leave(self, done: Array) -> None:
        """The members ``done`` end here: keep their weights, and drop them from the arrays."""
        for j in np.flatnonzero(done):
            o = self.outcomes[self.ids[j]]
            if o.status == Status.RUNNING:
                o.status = Status.COMPLETED
                o.stopped_early = self.early_stopping is not None
            self._final_weights(j, o)
        keep = np.flatnonzero(~done)
        self.ids = self.ids[keep]
        if not len(keep):
            return
        self.model.keep(keep)
        self.optimizer.keep(keep)
        self.batches.keep(keep)
        self.objective.keep([w[keep] for w in self.objective.weights])
        if self.val is not None and not self.shared:
            self.val = [None if a is None else a[keep] for a in self.val]
        if self.best_theta is not None:
            self.best_theta, self.best_rows = self.best_theta[keep], self.best_rows[keep]

    def _final_weights(self, j: int, o: Outcome) -> None:
        """Member j's weights at its end (the best epoch's when early stopping restores them),
        and what its loop saw."""
        i = self.ids[j]
        if o.status != Status.DIVERGED or o.diverged_at["batch"] is None:
            o.epochs = self.epoch  # its rows end with the last epoch recorded
        self.member_seconds[i] = self.share
        if self.early_stopping is not None and self.es_has[i]:
            o.es_best, o.es_epoch = float(self.es_best[i]), int(self.es_epoch[i])
            o.es_wait = int(self.es_wait[i])
        o.theta = np.array(self.model.theta[j])
        ends = o.status in (Status.COMPLETED, Status.INTERRUPTED)
        if ends and self.best_theta is not None and self.best_rows[j]:
            o.theta = np.array(self.best_theta[j])
            o.restored = True

    def _finish(self) -> None:
        """Members still in the arrays: completed, or interrupted by a signal."""
        status = Status.INTERRUPTED if self.stop_signal is not None else Status.COMPLETED
        for j, i in enumerate(self.ids):
            o = self.outcomes[i]
            o.status = status
            self._final_weights(j, o)

    def flush(self) -> None:
        """Hand the rows recorded since the last call to ``record``."""
        if not self._rows or self.record is None:
            self._rows.clear()
            self._pending = 0
            return
        self._pending = 0
        epochs = np.array([e for e, _, _ in self._rows])
        values = np.full((len(epochs), len(self.members), len(self.columns)), np.nan)
        for k, (_, ids, v) in enumerate(self._rows):
            values[k, ids] = v.T
        self._rows.clear()
        present = np.flatnonzero(~np.isnan(values[:, :, 0]).all(axis=0))
        self.record(Rows(epochs, present, values[:, present]), self)
