"""What a metric's name says about it: which way is better, and the best value over epochs.

One copy for the training loop (early stopping, summary.json's ``best``), compare and plot.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

#: columns of metrics.csv that are not metrics
NOT_METRICS = ("epoch", "lr", "seconds", "pseudo_labels")


def higher_is_better(metric: str) -> bool:
    """Accuracies (and ROC AUCs) are better high; losses (everything else) low."""
    return "accuracy" in metric or metric.endswith("roc_auc")


def better(metric: str, value: float, than: float) -> bool:
    """Whether ``value`` is strictly better than ``than`` for ``metric``."""
    return value > than if higher_is_better(metric) else value < than


def best_of(rows: Iterable[dict]) -> dict[str, dict]:
    """The best finite value of each metric over the rows and the epoch it came in (the first
    on ties): the highest accuracy, the lowest loss."""
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
