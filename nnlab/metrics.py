"""What a metric's name says about it: which way is better, and the best value over epochs.

One copy for the training loop (early stopping, summary.json's ``best``), compare and plot.
``MetricsTally`` keeps the best and the last of a stream of epoch rows in constant memory: a
run of millions of epochs keeps its rows in metrics.csv only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

#: columns of metrics.csv that are not metrics
NOT_METRICS = ("epoch", "lr", "seconds", "pseudo_labels")


def higher_is_better(metric: str) -> bool:
    """Accuracies (and ROC AUCs) are better high; losses (everything else) low."""
    return "accuracy" in metric or metric.endswith("roc_auc")


def better(metric: str, value: float, than: float) -> bool:
    """Whether ``value`` is strictly better than ``than`` for ``metric``."""
    return value > than if higher_is_better(metric) else value < than


class Best:
    """The best finite value of each metric and the epoch it came in (the first on ties: the
    highest accuracy, the lowest loss), kept as rows of metrics arrive, for ``members`` runs at
    once. ``columns`` are metrics.csv's; those in ``NOT_METRICS`` are left out."""

    def __init__(self, columns: list[str], members: int = 1):
        self.names = [c for c in columns if c not in NOT_METRICS]
        self.index = [columns.index(c) for c in self.names]
        self.sign = np.array([1.0 if higher_is_better(c) else -1.0 for c in self.names])
        self.value = np.full((members, len(self.names)), math.nan)
        self.epoch = np.zeros((members, len(self.names)), np.int64)

    def add(self, epochs: np.ndarray, values: np.ndarray, rows: np.ndarray | None = None) -> None:
        """Rows of metrics: ``values`` (E, M, columns) of the epochs ``epochs`` (E,), in order,
        for the members ``rows`` (M,) (None: all)."""
        v = values[..., self.index]
        score = np.where(np.isfinite(v), v * self.sign, -math.inf)
        first = score.argmax(axis=0)  # (M, metrics): the first best row of each
        top = np.take_along_axis(score, first[None], axis=0)[0]
        sel = slice(None) if rows is None else rows
        held = self.value[sel] * self.sign
        wins = np.isfinite(top) & ~(held >= top)  # strictly better, or nothing held yet
        self.value[sel] = np.where(wins, top * self.sign, self.value[sel])
        self.epoch[sel] = np.where(wins, np.asarray(epochs)[first], self.epoch[sel])

    def of(self, member: int = 0) -> dict[str, dict]:
        """A member's best values: metric -> {"value", "epoch"}, finite ones only."""
        out = {}
        for j, name in enumerate(self.names):
            v = self.value[member, j]
            if math.isfinite(v):
                out[name] = {"value": float(v), "epoch": int(self.epoch[member, j])}
        return out


def best_of(rows: Iterable[dict]) -> dict[str, dict]:
    """The best finite value of each metric over the rows and the epoch it came in (the first
    on ties): the highest accuracy, the lowest loss. (``Best`` keeps the same for many runs.)"""
    best: dict[str, dict] = {}
    for row in rows:
        update_best(best, row)
    return best


def update_best(best: dict[str, dict], row: dict) -> None:
    """``best`` (as ``best_of`` gives) with one more row, of a later epoch, counted in."""
    for k, v in row.items():
        if k in NOT_METRICS or v is None or not math.isfinite(v):
            continue
        b = best.get(k)
        if b is None or better(k, v, b["value"]):
            best[k] = {"value": v, "epoch": row["epoch"]}


class MetricsTally:
    """The epoch rows of a run as they come, in constant memory: the last row, the best value
    of each metric with its epoch (``best_of`` over every row so far) and how many rows came.

    The training loop keeps one and writes the rows to metrics.csv; resume rebuilds it from
    the file in blocks (``add_block``); a loop over several models can keep one for each."""

    def __init__(self) -> None:
        self.best: dict[str, dict] = {}
        self.last: dict | None = None
        self.count = 0

    @classmethod
    def of(cls, rows: Iterable[dict]) -> MetricsTally:
        """The tally of ``rows``, in epoch order."""
        tally = cls()
        for row in rows:
            tally.add(row)
        return tally

    def add(self, row: dict) -> None:
        """One more row (a dict with its ``epoch``), of a later epoch than those before."""
        update_best(self.best, row)
        self.last = row
        self.count += 1

    def add_block(self, columns: list[str], values: np.ndarray) -> None:
        """Rows as metrics.csv holds them, ``values`` (rows, columns) with an ``epoch`` column
        (NaN for an empty cell), of later epochs than those before: the same tally as adding
        them one by one, in a few NumPy calls per column."""
        if not len(values):
            return
        epochs = values[:, columns.index("epoch")]
        for j, name in enumerate(columns):
            if name in NOT_METRICS:
                continue
            col = values[:, j]
            finite = np.flatnonzero(np.isfinite(col))
            if len(finite):
                pick = np.argmax if higher_is_better(name) else np.argmin  # the first on ties
                i = finite[pick(col[finite])]
                update_best(self.best, {"epoch": int(epochs[i]), name: float(col[i])})
        last = dict(zip(columns, values[-1].tolist(), strict=True))
        last["epoch"] = int(last["epoch"])
        self.last = last
        self.count += len(values)
