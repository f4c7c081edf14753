"""A population's objective and meters: ``nnlab.experiment``'s ``Objective`` and ``Meters``
for every member at once.

The heads (outputs with their losses) are the template experiment's; each member has its own
loss weights. Values are per member, (M,) float64; metrics are written as columns of per-member
values, with NaN where the single run would leave a cell empty (an accuracy without labels).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nnlab.experiment import EVAL_BATCH, Head
from nnlab.population.losses import LOSSES, correct, factor
from nnlab.population.stack import total

Array = np.ndarray


class StackedObjective:
    """The weighted sum of the heads' losses, per member. ``weights[k]``: head k's weight of
    each member, (M,)."""

    def __init__(self, heads: list[Head], weights: list[Array]):
        self.heads = heads
        self.fns = [LOSSES[type(h.loss)] for h in heads]
        self.single = len(heads) == 1
        self.keep(weights)

    def keep(self, weights: list[Array]) -> None:
        self.weights = [np.asarray(w, dtype=np.float64) for w in weights]
        self.unit = [bool((w == 1.0).all()) for w in self.weights]

    def __call__(
        self, outs: Any, T: Sequence[Array], W: Sequence[Array | None]
    ) -> tuple[Array, Any, list[Array]]:
        """(value (M,), d value / d outputs, each head's loss (M,)), as ``Objective``."""
        if self.single:
            h = self.heads[0]
            v, d = self.fns[0](h.loss, outs, T[0], W[0])
            if self.unit[0]:
                return v, d, [v]
            w = self.weights[0]
            return w * v, d * factor(w, d), [v]
        value: Any = 0.0
        douts, parts = [], []
        for k, h in enumerate(self.heads):
            v, d = self.fns[k](h.loss, outs[k], T[k], W[k])
            w = self.weights[k]
            if not self.unit[k]:
                d *= factor(w, d)
            value = value + w * v
            douts.append(d)
            parts.append(v)
        return value, douts, parts


class StackedMeters:
    """Each member's running loss and accuracy per head over the batches of an epoch (or an
    evaluation), as ``Meters``."""

    def __init__(
        self,
        heads: list[Head],
        weights: list[Array],
        members: int,
        classification: bool,
        prefix: str = "",
    ):
        self.heads = heads
        self.weights = weights
        self.members = members
        acc = [classification and h.target == "labels" for h in heads]  # metric_columns'
        self.keys = [(f"{prefix}{h.prefix}loss", f"{prefix}{h.prefix}accuracy" if a else None)
                     for h, a in zip(heads, acc, strict=True)]  # fmt: skip
        self.reset()

    def reset(self) -> None:
        sums = getattr(self, "_sums", None)
        if sums is None:
            sums = self._sums = np.zeros((4, len(self.heads), self.members))
        else:
            sums.fill(0.0)
        # each head's loss sum, samples, correct ones and labelled ones (counts exact in doubles)
        self.loss_sum, self.count, self.correct, self.labelled = sums

    def add(self, parts: list[Array], outs: Any, L: Sequence, W: Sequence, n: int) -> None:
        """A batch of ``n`` samples: each head's loss (M,), outputs, labels and mask."""
        outs = [outs] if len(self.heads) == 1 else outs
        for k, h in enumerate(self.heads):
            w = W[k]
            count = n if w is None else w.sum(axis=-1).astype(np.float64)
            self.loss_sum[k] += parts[k] * count
            self.count[k] += count
            if L[k] is not None:
                self.correct[k] += correct(h.loss, outs[k], L[k])
                # the samples with a label (pseudo-labelled ones have a weight, no label)
                self.labelled[k] += n if w is None else total(L[k] >= 0)

    def write(self, row: dict[str, Array]) -> None:
        """Each member's losses and accuracies into the arrays of ``row`` (column -> (M,)
        array to fill); with several heads the weighted total ``loss`` too."""
        total: Any = 0.0
        for k, (loss_key, acc_key) in enumerate(self.keys):
            count = self.count[k]
            loss = row[loss_key]
            np.divide(self.loss_sum[k], np.where(count > 0, count, 1.0), out=loss)
            if acc_key is not None:
                lab = self.labelled[k]
                np.divide(self.correct[k], np.where(lab > 0, lab, 1.0), out=row[acc_key])
                row[acc_key][lab == 0] = np.nan  # no labelled sample: no accuracy
            if len(self.heads) > 1:
                total = total + self.weights[k] * loss
        if len(self.heads) > 1:
            row["loss"][...] = total


def evaluate(
    model: Any,
    objective: StackedObjective,
    X: Array,
    targets: list[tuple[Array, Array | None, Array | None]],
    flags: Any,
    classification: bool,
    prefix: str = "",
) -> dict[str, Array]:
    """Each member's loss (and accuracy) on a split, in evaluation mode, in batches of
    ``EVAL_BATCH`` samples as ``nnlab.experiment.evaluate``: X (n, ...) shared or
    (M, n, ...); ``targets`` each head's (T, L, W) likewise."""
    meters = StackedMeters(objective.heads, objective.weights, model.members, classification,
                           prefix)  # fmt: skip
    n = X.shape[-len(model.input_shape) - 1]
    shared = X.ndim == len(model.input_shape) + 1
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for start in range(0, n, EVAL_BATCH):
            sl = slice(start, start + EVAL_BATCH)
            part = [tuple(_rows(a, sl, shared) for a in t) for t in targets]
            outs = model.forward(_rows(X, sl, shared), training=False, logits=flags)
            _, _, values = objective(outs, [t[0] for t in part], [t[2] for t in part])
            size = min(n, start + EVAL_BATCH) - start
            meters.add(values, outs, [t[1] for t in part], [t[2] for t in part], size)
    metrics = {key: np.empty(model.members) for pair in meters.keys for key in pair if key}
    if len(objective.heads) > 1:
        metrics = {f"{prefix}loss": np.empty(model.members), **metrics}
    meters.write(metrics)
    return {k[len(prefix) :]: v for k, v in metrics.items()}


def _rows(a: Array | None, sl: slice, shared: bool) -> Array | None:
    """Rows ``sl`` of a split's array, shared (n, ...) or per member (M, n, ...)."""
    if a is None:
        return None
    return a[sl] if shared else a[:, sl]
