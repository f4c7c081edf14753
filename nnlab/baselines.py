"""Baselines printed beside a classification result, so a user sees at once when the net does
worse than something trivial: the majority class, and (for data with few features) the best
single-feature threshold, the seed question's "hand-coded threshold"."""

from __future__ import annotations

import numpy as np

from nnlab.data import Data

Array = np.ndarray
MAX_THRESHOLD_FEATURES = 32


def majority(train_labels: Array, n_classes: int) -> int:
    return int(np.bincount(train_labels, minlength=n_classes).argmax())


def best_threshold(X: Array, y: Array) -> tuple[int, float, str, float]:
    """The rule ``x[j] > t`` (or ``x[j] <= t``) -> class 1 with the best training accuracy on
    binary labels ``y``: (feature j, threshold t, '>' or '<=', accuracy). Thresholds are
    midpoints between consecutive distinct values; ties go to the first feature."""
    n = y.shape[0]
    best = (0, float("nan"), ">", -1.0)
    pos_total = int(y.sum())
    for j in range(X.shape[1]):
        order = np.argsort(X[:, j], kind="stable")
        xs, ys = X[order, j], y[order]
        # predicting 1 for the samples above a cut after position i (i = -1..n-1):
        ones_below = np.concatenate([[0], np.cumsum(ys)])  # (n+1,)
        i = np.arange(n + 1)
        correct_gt = (i - ones_below) + (pos_total - ones_below)  # zeros below + ones above
        valid = np.concatenate([[True], xs[1:] != xs[:-1], [True]])  # cuts between distinct x
        for correct, op in ((correct_gt, ">"), (n - correct_gt, "<=")):
            c = np.where(valid, correct, -1)
            k = int(c.argmax())
            acc = c[k] / n
            if acc > best[3]:
                lo = xs[k - 1] if k > 0 else xs[0] - 1.0
                hi = xs[k] if k < n else xs[-1] + 1.0
                best = (j, float((lo + hi) / 2), op, float(acc))
    return best


def compute(data: Data) -> dict:
    """Baselines of a classification data set (empty for regression)."""
    if data.task != "classification":
        return {}
    train_y = data.labels(data.train)
    labelled = train_y >= 0  # samples without a label (data.label_fraction) do not count
    train_y = train_y[labelled]
    cls = majority(train_y, data.n_classes)
    out: dict = {"majority": {"class": cls, "train": float(np.mean(train_y == cls))}}
    if data.test is not None:
        out["majority"]["test"] = float(np.mean(data.labels(data.test) == cls))
    X = data.train.X.reshape(len(data.train), -1)[labelled]
    width = X.shape[1:]
    X = X[:, : X.shape[1] - data.label_columns]  # not the label that data.label_input appends
    if data.n_classes == 2 and X.shape[1] <= MAX_THRESHOLD_FEATURES:
        j, t, op, acc = best_threshold(X.astype(np.float64), train_y)
        shift = np.broadcast_to(np.asarray(data.shift, np.float64), width)[j]
        scale = np.broadcast_to(np.asarray(data.scale, np.float64), width)[j]
        rule = {"feature": j, "op": op, "threshold": float(t * scale + shift), "train": acc}
        if data.test is not None:
            Xt = data.test.X.reshape(len(data.test), -1)[:, j]
            pred = Xt > t if op == ">" else Xt <= t
            rule["test"] = float(np.mean(pred.astype(int) == data.labels(data.test)))
        out["threshold"] = rule
    return out


def describe(baselines: dict) -> list[str]:
    lines = []
    if "majority" in baselines:
        m = baselines["majority"]
        test = f", test {m['test']:.4f}" if "test" in m else ""
        lines.append(f"baseline: majority class {m['class']}: train {m['train']:.4f}{test}")
    if "threshold" in baselines:
        r = baselines["threshold"]
        test = f", test {r['test']:.4f}" if "test" in r else ""
        lines.append(
            f"baseline: threshold x[{r['feature']}] {r['op']} {r['threshold']:.4g}: "
            f"train {r['train']:.4f}{test}"
        )
    return lines
