"""Can this data be learned? ``nnlab probe CONFIG``.

The ad hoc test that usually works: a network able to learn the data should overfit a small
training set without any regularisation, and keep fitting as the set grows, while on the same
inputs with shuffled labels (the noise baseline) it fits only what it can memorise. The probe
trains the config's network, regularisation turned off, on growing subsets of the training
split (16, 64, 256, ... up to all of it), once with the real labels and once with shuffled
ones, and reports per size the training accuracy (in evaluation mode, after training), the
accuracy on the held-out split (validation, else test) and the class balance.

Trainings run in memory: no run folders are written (``nnlab train --set data.subset=N``
reproduces any row as a run).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from nnlab.errors import ConfigError
from nnlab.experiment import Experiment, build, evaluate
from nnlab.runs import Status
from nnlab.train import Trainer

FIT = 0.99  # a training accuracy at least this counts as fitting the set
FIRST, FACTOR = 16, 4


def default_sizes(n_train: int) -> list[int]:
    """16, 64, 256, ... below the training size, then the training size itself."""
    sizes, n = [], FIRST
    while n < n_train:
        sizes.append(n)
        n *= FACTOR
    return [*sizes, n_train]


def unregularized(config: dict) -> tuple[dict, list[str]]:
    """A copy of a resolved config without regularisation (dropout rates 0, weight decay and
    L2 0, label smoothing 0, no early stopping), and what was turned off."""
    cfg = copy.deepcopy(config)
    off = []
    for i, layer in enumerate(cfg["model"]["layers"]):
        if layer.get("type") == "dropout" and layer.get("rate", 0):
            off.append(f"model.layers[{i}].rate={layer['rate']:g}")
            layer["rate"] = 0.0
    opt = cfg["optimizer"]
    if isinstance(opt, dict):
        for key in ("weight_decay", "l2"):
            if opt.get(key):
                off.append(f"optimizer.{key}={opt[key]:g}")
                opt[key] = 0.0
    losses = [("loss", cfg)] + [
        (f"model.outputs[{k}].loss", o) for k, o in enumerate(cfg["model"]["outputs"] or [])
    ]
    for where, holder in losses:
        loss = holder.get("loss")
        if isinstance(loss, dict) and loss.get("label_smoothing"):
            off.append(f"{where}.label_smoothing={loss['label_smoothing']:g}")
            loss["label_smoothing"] = 0.0
    if cfg["training"]["early_stopping"] is not None:
        off.append("training.early_stopping")
        cfg["training"]["early_stopping"] = None
    return cfg, off


@dataclass
class ProbeRow:
    samples: int
    majority: float  # share of the most frequent class in the training subset
    train: float  # training accuracy with the real labels
    held_out: float | None
    shuffled_train: float
    shuffled_held_out: float | None
    seconds: float
    status: str = Status.COMPLETED  # or diverged (of either training)


@dataclass
class ProbeResult:
    name: str
    rows: list[ProbeRow]
    held_out: str | None  # "val" or "test": the split held-out accuracy is measured on
    metric: str  # the accuracy column of the head probed (accuracy, or cls_accuracy)
    turned_off: list[str] = field(default_factory=list)
    n_classes: int = 0


def _labelled_head(exp: Experiment) -> str:
    if exp.data.task != "classification":
        raise ConfigError(
            f"the probe fits class labels, but data '{exp.data.name}' is a regression task",
            "data.name",
        )
    for head in exp.heads:
        if head.target == "labels":
            return f"{head.prefix}accuracy"
    raise ConfigError("the probe needs an output trained on the labels", "model.outputs")


def _fit(config: dict, size: int | None, shuffled: bool) -> tuple[Experiment, str]:
    cfg = copy.deepcopy(config)
    cfg["data"]["subset"] = size
    cfg["data"]["shuffle_labels"] = shuffled or config["data"]["shuffle_labels"]
    exp = build(cfg)
    status = Trainer(exp).fit()
    return exp, status


def _accuracy(exp: Experiment, split: str | None, metric: str) -> float | None:
    if split is None:
        return None
    return float(evaluate(exp, split).get(metric, np.nan))


def probe(
    config: dict,
    sizes: list[int] | None = None,
    epochs: int | None = None,
    on_row: Callable[[ProbeRow], None] | None = None,
) -> ProbeResult:
    """Train ``config``'s network without regularisation on growing training subsets, with
    the real and with shuffled labels (see the module's docstring).

    Parameters
    ----------
    config : a resolved config (``nnlab.config.load_config``).
    sizes : training-set sizes (default: 16, 64, 256, ... and the whole training split).
    epochs : epochs of every training (default: the config's).
    on_row : called with each row as it is done (progress).
    """
    base, off = unregularized(config)
    if epochs is not None:
        base["training"]["epochs"] = epochs
    full = build(base)  # checks the config and gives the training size
    metric = _labelled_head(full)
    n_train = len(full.data.train)
    if sizes is None:
        sizes = default_sizes(n_train)
    for n in sizes:
        if not 1 <= n <= n_train:
            raise ConfigError(
                f"size {n} is not between 1 and the {n_train} training samples", "--sizes"
            )
    held_out = "val" if full.data.val is not None else ("test" if full.data.test else None)
    rows = []
    for n in sorted(set(sizes)):
        t0 = time.perf_counter()
        subset = None if n == n_train else n
        real, s1 = _fit(base, subset, shuffled=False)
        noise, s2 = _fit(base, subset, shuffled=True)
        labels = real.data.labels(real.data.train)
        labels = labels[labels >= 0]
        counts = np.bincount(labels, minlength=real.data.n_classes)
        row = ProbeRow(
            samples=n,
            majority=float(counts.max() / max(counts.sum(), 1)),
            train=_accuracy(real, "train", metric),
            held_out=_accuracy(real, held_out, metric),
            shuffled_train=_accuracy(noise, "train", metric),
            shuffled_held_out=_accuracy(noise, held_out, metric),
            seconds=time.perf_counter() - t0,
            status=Status.DIVERGED if Status.DIVERGED in (s1, s2) else Status.COMPLETED,
        )
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return ProbeResult(base["name"], rows, held_out, metric, off, full.data.n_classes)


def _pct(x: float | None) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:.3f}"


def _largest_fitted(rows: list[ProbeRow], key: str) -> int | None:
    fitted = [r.samples for r in rows if getattr(r, key) >= FIT]
    return max(fitted) if fitted else None


def verdict(result: ProbeResult) -> list[str]:
    """A few lines that read the table."""
    rows = result.rows
    last = rows[-1]
    lines = []
    real_fit = _largest_fitted(rows, "train")
    noise_fit = _largest_fitted(rows, "shuffled_train")
    if rows[0].train < FIT:
        lines.append(
            f"The net does not fit even {rows[0].samples} samples with their real labels "
            f"(train accuracy {rows[0].train:.3f}): without regularisation it should; suspect "
            "the model, the learning rate, the inputs' scaling or too few epochs."
        )
    else:
        upto = "every size" if real_fit == last.samples else f"up to {real_fit} samples"
        lines.append(f"Real labels: fitted (train accuracy >= {FIT}) at {upto}.")
    if noise_fit is None:
        lines.append("Shuffled labels: not fitted at any size.")
    else:
        lines.append(
            f"Shuffled labels: memorised up to {noise_fit} samples; at {last.samples} train "
            f"accuracy {last.shuffled_train:.3f} against {last.train:.3f} with the real labels."
        )
    if result.held_out is not None and last.held_out is not None:
        chance = last.majority
        lines.append(
            f"Held-out ({result.held_out}) accuracy at {last.samples}: {last.held_out:.3f} with "
            f"the real labels, {_pct(last.shuffled_held_out)} with shuffled ones "
            f"(majority share {chance:.3f})."
        )
        learned = last.held_out > max(chance, last.shuffled_held_out or 0.0) + 0.05
        lines.append(
            "Verdict: learnable: the real labels generalise beyond the noise baseline."
            if learned
            else "Verdict: no sign of learnable structure: held-out accuracy is at the level "
            "of the noise baseline."
        )
    return lines


def format_probe(result: ProbeResult) -> str:
    """The probe's table, then the verdict lines."""
    from tabulate import tabulate

    h = result.held_out
    headers = ["samples", "majority", "train acc", *([f"{h} acc"] if h else [])]
    headers += ["shuffled: train acc", *([f"shuffled: {h} acc"] if h else []), "fits?"]
    table = []
    for r in result.rows:
        row = [str(r.samples), _pct(r.majority), _pct(r.train)]
        if h:
            row.append(_pct(r.held_out))
        row.append(_pct(r.shuffled_train))
        if h:
            row.append(_pct(r.shuffled_held_out))
        fits = "yes" if r.train >= FIT else "no"
        row.append(fits if r.status == Status.COMPLETED else f"{fits} (diverged)")
        table.append(row)
    text = tabulate(table, headers=headers, tablefmt="simple", disable_numparse=True)
    return "\n".join([text, "", *verdict(result)])
