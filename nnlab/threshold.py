"""The decision threshold of a binary classifier, chosen after training (``training.threshold``).

A one-output classifier predicts class 1 when its output is above a threshold: 0.5 on the
probability of a sigmoid output (and on the score of a linear output trained with MSE), 0 for
hinge. That threshold is a decision outside the optimisation: the loss never sees it. With
``training.threshold: tune`` (or a metric's name) nnlab chooses, after training, the threshold
that maximises the validation split's accuracy (or that metric), over every cut between two
distinct outputs; ties go to the threshold nearest the default, which is kept when it is among
the best. Without a validation split the training split is used, and the summary says so: the
training accuracy at a threshold tuned on it is optimistic. A number sets the threshold outright.

The threshold is recorded in summary.json and in model.npz, and ``nnlab predict`` and every
export decide with it. Beside it, every binary one-output classifier's summary gets the ROC AUC
of each split: how well its outputs rank class 1 above class 0, whatever the threshold.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Array = np.ndarray
SPLITS = ("train", "val", "test")


def _safe(num: Array, den: Array) -> Array:
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _mcc(tp: Array, fp: Array, tn: Array, fn: Array) -> Array:
    den = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return _safe(tp * tn - fp * fn, den)


# metric name -> f(tp, fp, tn, fn) on arrays of counts (float64), one value per threshold
METRICS: dict[str, Callable[..., Array]] = {
    "accuracy": lambda tp, fp, tn, fn: (tp + tn) / (tp + fp + tn + fn),
    "balanced_accuracy": lambda tp, fp, tn, fn: (_safe(tp, tp + fn) + _safe(tn, tn + fp)) / 2,
    "f1": lambda tp, fp, tn, fn: _safe(2 * tp, 2 * tp + fp + fn),
    "mcc": _mcc,
}
CHOICES = ("tune", *METRICS)  # ``tune`` is ``accuracy``


def confusion(scores: Array, labels: Array, thresholds: Array) -> tuple[Array, ...]:
    """(tp, fp, tn, fn), each of shape (len(thresholds),): counts of the decisions
    ``scores > t`` for every threshold t, against 0/1 ``labels`` (n,)."""
    pos = np.sort(scores[labels == 1])
    neg = np.sort(scores[labels == 0])
    tp = pos.size - np.searchsorted(pos, thresholds, side="right")
    fp = neg.size - np.searchsorted(neg, thresholds, side="right")
    tp, fp = tp.astype(np.float64), fp.astype(np.float64)
    return tp, fp, neg.size - fp, pos.size - tp


def candidates(scores: Array, default: float) -> Array:
    """Every threshold that decides differently (as ``scores > t`` in the scores' dtype): one
    between each two distinct scores, one below the smallest, the largest (nothing above it),
    and ``default``; each a value of the scores' dtype, so that comparing in that dtype (as
    predict, ONNX and C do) decides as here."""
    dtype = scores.dtype
    u = np.unique(scores)  # sorted
    mid = ((u[:-1].astype(np.float64) + u[1:]) / 2).astype(dtype)
    mid = np.where(mid >= u[1:], u[:-1], mid)  # rounding up to the next score: take the lower
    below = np.nextafter(u[:1], dtype.type(-np.inf))
    return np.concatenate([below, mid, u[-1:], np.asarray([default], dtype)])


def tune(scores: Array, labels: Array, metric: str, default: float) -> tuple[float, float]:
    """The threshold that maximises ``metric`` of ``scores > t`` against ``labels``, and that
    value; among equals the one nearest ``default`` (``default`` itself when it is one)."""
    t = candidates(scores, default)
    values = METRICS[metric](*confusion(scores, labels, t))
    best = values.max()
    tied = np.flatnonzero(values >= best - 1e-12)
    pick = tied[np.argmin(np.abs(t[tied].astype(np.float64) - default))]
    return float(t[pick]), float(values[pick])


def roc_auc(scores: Array, labels: Array) -> float | None:
    """The area under the ROC curve: the probability that a random class-1 sample scores above
    a random class-0 one (ties count half); None when a class is missing."""
    n_pos = int(np.count_nonzero(labels == 1))
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="stable")
    s = scores[order]
    ranks = np.empty(s.size)
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # runs of equal scores
    ends = np.r_[starts[1:], s.size]
    for a, b in zip(starts, ends, strict=True):
        ranks[a:b] = (a + b + 1) / 2  # the mean of ranks a+1 .. b
    pos_ranks = ranks[labels[order] == 1].sum()
    return float((pos_ranks - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def binary_output(exp: Any) -> bool:
    """A single output of one unit trained on two classes: the case a threshold decides."""
    head = exp.heads[0] if len(exp.heads) == 1 else None
    return (
        head is not None
        and head.target == "labels"
        and exp.data.task == "classification"
        and exp.data.n_classes == 2
        and exp.model.shapes[head.layer] == (1,)
    )


def default_threshold(exp: Any) -> float:
    """The threshold without tuning, on the output's scale: 0.5 for a probability, the loss's
    otherwise (0.5 for MSE scores, 0 for hinge)."""
    loss = exp.heads[0].loss
    return 0.5 if loss.fused_activation else float(loss.threshold)


def split_outputs(exp: Any, split: str) -> tuple[Array, Array]:
    """The output (n,) of the labelled samples of a split, as ``nnlab predict`` gives it (in
    evaluation mode; probabilities for a sigmoid), and their 0/1 labels (n,)."""
    labels = exp.targets[split][0].L
    out = exp.model.predict(exp.split(split).X)[:, 0]
    keep = labels >= 0
    return out[keep], labels[keep]


def choose(exp: Any) -> dict | None:
    """The run's decision threshold as ``training.threshold`` asks (None: the default, not
    recorded): ``value``, ``chosen_by`` (a metric, or ``fixed``), the ``split`` it was tuned on
    (and that metric's value there), the ``default``, and a ``note`` when tuned on train."""
    spec = exp.config["training"]["threshold"]
    if spec is None or not binary_output(exp):
        return None
    default = default_threshold(exp)
    dtype = exp.model.dtype.type
    if not isinstance(spec, str):
        return {"value": float(dtype(spec)), "chosen_by": "fixed", "default": default}
    metric = "accuracy" if spec == "tune" else spec
    split = "val" if "val" in exp.targets else "train"
    value, reached = tune(*split_outputs(exp, split), metric, default)
    out = {"value": value, "chosen_by": metric, "split": split, metric: reached}
    out["default"] = default
    if split == "train":
        out["note"] = (
            "no validation split: tuned on the training split, whose accuracy at this "
            "threshold is therefore optimistic"
        )
    return out


def record(exp: Any, summary: dict) -> float | None:
    """After training: each split's ROC AUC and, when ``training.threshold`` asks for one, the
    decision threshold (``summary["threshold"]``) and each split's ``threshold_accuracy`` at it,
    into ``summary``; returns the threshold for model.npz (None: the default)."""
    if not binary_output(exp):
        return None
    decision = choose(exp)
    if decision is not None:
        summary["threshold"] = decision
    for split in SPLITS:
        if split not in exp.targets or split not in summary:
            continue
        scores, labels = split_outputs(exp, split)
        summary[split]["roc_auc"] = roc_auc(scores, labels)
        if decision is not None:
            correct = np.count_nonzero((scores > decision["value"]) == labels)
            summary[split]["threshold_accuracy"] = correct / max(labels.size, 1)
    return None if decision is None else decision["value"]
