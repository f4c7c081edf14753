"""The learning-rate range test: train a config for a few hundred steps while the learning rate
grows exponentially, record the loss against the rate, and suggest a rate from the curve.

The test is Leslie Smith's (*Cyclical Learning Rates for Training Neural Networks*, WACV 2017,
section 3.3: "run your model for several epochs while letting the learning rate increase ...
between low and high LR values"), run the way fastai's ``Learner.lr_find`` runs it: the rate
goes from ``start`` to ``end`` geometrically, one step per batch; the batch loss (the training
objective before the step's update) is smoothed with an exponential moving average (beta 0.98)
corrected for its start, as fastai's ``AvgSmoothLoss``; the test stops when the smoothed loss
exceeds 4 times its minimum (the loss diverges) or is not finite. The suggestions read the
smoothed curve between the first tenth of the steps and the last five, as fastai does:

- ``valley`` (fastai's default since 2.5): the middle of the longest valley, the longest run of
  steps over which the smoothed loss keeps falling (a decreasing subsequence);
- ``steep``: the rate where the smoothed loss falls fastest per factor of rate (the most
  negative d loss / d log lr) before its minimum, the point Smith reads off the plot (fastai's
  ``steep`` looks past the minimum too, where a loss bouncing on its way up can fall fastest);
- ``minimum``: a tenth of the rate at the smoothed loss's minimum (fastai's ``minimum``: at
  the minimum itself training is already about to diverge).

Nothing is written: the weights and the optimizer live in memory and are thrown away, so later
runs of the config start from its own initialization. The same config and seed give the same
curve, bit for bit (the weights, the batches' order and dropout come from the config's seed
streams, as in training).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnlab.errors import ConfigError, DataError

METHODS = ("valley", "steep", "minimum")
BETA = 0.98  # the smoothing of fastai's AvgSmoothLoss
DIVERGE = 4.0  # stop when the smoothed loss exceeds this many times its minimum (fastai)
SKIP_END = 5  # points at the end of the curve the suggestions do not read


@dataclass
class RangeTest:
    """A range test's curve: ``lrs``, ``losses`` (the batch loss before each step) and their
    ``smoothed`` values, shape (steps,) each (fewer than asked when it stopped early); why it
    stopped; and the suggested rate of each method (``suggestions``, nan when the curve is too
    short to read), ``method`` naming the one suggested."""

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    stopped: str
    steps: int  # asked for
    start: float
    end: float
    method: str
    suggestions: dict[str, float] = field(default_factory=dict)
    config: dict = field(default_factory=dict)

    @property
    def suggested(self) -> float:
        return self.suggestions[self.method]


def range_test(
    config: dict,
    *,
    start: float = 1e-7,
    end: float = 10.0,
    steps: int = 200,
    method: str = "valley",
) -> RangeTest:
    """Run the learning-rate range test on a resolved config (``nnlab.config.load_config``).

    Parameters
    ----------
    config : dict
        The config: its data, model, loss, optimizer (its learning rate and schedule are
        replaced by the test's rates), batch size and seed.
    start, end : float
        The first and last learning rates; step i uses ``start * (end / start) ** (i / (steps
        - 1))``.
    steps : int
        Optimizer steps (batches), over as many epochs as they take.
    method : 'valley', 'steep' or 'minimum'
        Which suggestion is the suggested rate (all three are computed).
    """
    if not 0 < start < end:
        raise ConfigError(f"the rates must grow: start {start:g}, end {end:g}", source="--start")
    if steps < 20:
        raise ConfigError(f"{steps} steps are too few to read a curve: 20 at least", "--steps")
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; one of {', '.join(METHODS)}", "--method")
    lrs, losses, stopped = _run(config, start, end, steps)
    smoothed = smooth(losses)
    out = RangeTest(lrs, losses, smoothed, stopped, steps, start, end, method, config=config)
    out.suggestions = suggest(lrs, smoothed, steps)
    if math.isnan(out.suggested):
        raise DataError(
            f"the loss stopped after {len(lrs)} of {steps} steps ({stopped}), too few to read "
            f"a curve: start from a lower rate than {start:g} (--start) or take more steps"
        )
    return out


def _run(config: dict, start: float, end: float, steps: int) -> tuple[np.ndarray, ...]:
    """Train ``steps`` batches at growing rates; the rates and losses of the steps done and
    why the test stopped."""
    from nnlab import threads
    from nnlab.experiment import build
    from nnlab.train import Batches

    exp = build(config)
    if not exp.optimizer.needs_gradient:
        raise ConfigError(
            "lr-find takes gradient steps at growing rates; es estimates its steps from "
            "perturbed copies of the network: tune its lr with a sweep",
            "optimizer",
        )
    cfg = config["training"]
    X = exp.data.train.X
    n = X.shape[0]
    bs = min(cfg["batch_size"] or n, n)
    shuffle = cfg["shuffle"] and bs < n
    arrays = [X] + [a for t in exp.targets["train"] for a in (t.T, t.L, t.W)]
    batches = Batches(arrays, bs, shuffle, exp.data.train.codes)
    model, opt, objective, flags = exp.model, exp.optimizer, exp.objective, exp.logit_flags
    lrs = start * (end / start) ** (np.arange(steps) / (steps - 1))  # (steps,)
    losses = np.full(steps, np.nan)
    avg, best, done, stopped = 0.0, math.inf, steps, f"all {steps} steps done"
    with (
        threads.limited(threads.choose(model, bs, cfg["threads"])),
        np.errstate(over="ignore", invalid="ignore", divide="ignore"),
    ):
        for i in range(steps):
            b = i % batches.count
            if b == 0:
                batches.start(exp.rng.permutation(n) if shuffle else None)
            xb, *rest = batches.get(b)
            outs = model.forward(xb, training=True, logits=flags)
            value, dout, _ = objective(outs, rest[0::3], rest[2::3])
            if not math.isfinite(value):
                done, stopped = i, f"the loss was not finite at step {i + 1}, lr {lrs[i]:.3g}"
                break
            losses[i] = value
            avg = BETA * avg + (1 - BETA) * value
            best = min(best, avg / (1 - BETA ** (i + 1)))
            if avg / (1 - BETA ** (i + 1)) > DIVERGE * best:
                done = i + 1
                stopped = (
                    f"diverged at step {done}, lr {lrs[i]:.3g}: the smoothed loss > 4x its minimum"
                )
                break
            model.backward(dout, logits=flags)
            opt.lr = float(lrs[i])
            opt.step(model.theta, model.grad)
    return lrs[:done], losses[:done], stopped


def smooth(losses: np.ndarray, beta: float = BETA) -> np.ndarray:
    """The exponential moving average of ``losses`` (n,) divided by ``1 - beta**(i+1)``, which
    takes away its bias towards the starting 0 (fastai's ``AvgSmoothLoss``)."""
    out = np.empty(len(losses))
    avg = 0.0
    for i, v in enumerate(losses):
        avg = beta * avg + (1 - beta) * float(v)
        out[i] = avg / (1 - beta ** (i + 1))
    return out


def suggest(lrs: np.ndarray, smoothed: np.ndarray, steps: int) -> dict[str, float]:
    """Each method's suggestion from the smoothed curve between step ``steps // 10`` and the
    last ``SKIP_END`` points (nan for all when fewer than 10 points are left)."""
    lo, hi = steps // 10, len(lrs) - SKIP_END
    x, y = lrs[lo:hi], smoothed[lo:hi]
    if len(x) < 10:
        return dict.fromkeys(METHODS, math.nan)
    low = int(np.argmin(y))
    slopes = np.diff(y[: low + 1]) / np.diff(np.log(x[: low + 1]))  # (low,): d loss / d ln lr
    return {
        "valley": float(x[_valley(y)]),
        "steep": float(x[int(np.argmin(slopes))]) if low > 0 else math.nan,
        "minimum": float(x[low]) / 10,
    }


def _valley(y: np.ndarray) -> int:
    """The index in the middle of the longest decreasing subsequence of ``y`` (k,), as fastai's
    ``valley``: its start plus half its length."""
    k = len(y)
    length = np.ones(k, dtype=np.int64)  # (k,) the longest decreasing run ending at i
    for i in range(1, k):
        before = y[:i] > y[i]
        if before.any():
            length[i] = 1 + int(length[:i][before].max())
    end = int(np.argmax(length))  # the first longest
    begin = end - int(length[end]) + 1
    return begin + (end - begin) // 2


# ---------------------------------------------------------------- text and image

WHY = {
    "valley": "the middle of the longest stretch over which the smoothed loss keeps falling; "
    "fastai's valley, its default",
    "steep": "where the smoothed loss falls fastest per factor of learning rate, before its "
    "minimum; Smith's reading of the plot",
    "minimum": "a tenth of the rate at which the smoothed loss is lowest; fastai's minimum",
}


def summary(result: RangeTest) -> list[str]:
    """The suggested rate and why, the other methods' rates, and how the test ran."""
    cfg = result.config
    opt = cfg["optimizer"]["name"] if isinstance(cfg["optimizer"], dict) else cfg["optimizer"]
    tr = cfg["training"]
    lines = [
        f"suggested lr: {result.suggested:.3g}, by {result.method}: {WHY[result.method]}",
        *(f"  {m}: {result.suggestions[m]:.3g}, {WHY[m]}" for m in METHODS if m != result.method),
        f"range test: {opt}, batch {tr['batch_size'] or 'full'}, seed {tr['seed']}: "
        f"{len(result.lrs)} of {result.steps} steps, lr {result.start:g} to {result.end:g} "
        f"({result.stopped}); loss smoothed (beta {BETA}); nothing written",
    ]
    return lines


def as_json(result: RangeTest) -> dict[str, Any]:
    """The curve and the suggestions as plain data."""
    return {
        "suggested": result.suggested,
        "method": result.method,
        "suggestions": result.suggestions,
        "stopped": result.stopped,
        "steps": result.steps,
        "start": result.start,
        "end": result.end,
        "lr": result.lrs.tolist(),
        "loss": result.losses.tolist(),
        "smoothed": result.smoothed.tolist(),
    }


def text_curve(result: RangeTest, columns: int = 80) -> str:
    """The smoothed loss against the rate (log scale), drawn with characters, the suggested
    rates marked."""
    from nnlab.plot import Curve, text_plot

    y = result.smoothed
    low = int(np.argmin(y))
    top = 1.25 * float(np.max(y[: low + 1]))  # the diverging end would flatten the rest
    above = np.flatnonzero(y[low:] > top)
    cut = low + int(above[0]) if len(above) else len(y)  # from there on it diverges
    lines = [Curve("smoothed loss", result.lrs[:cut], y[:cut])]
    for m in METHODS:
        lr = result.suggestions[m]
        if math.isnan(lr):
            continue
        at = np.interp(math.log(lr), np.log(result.lrs), result.smoothed)
        lines.append(Curve(f"{m} {lr:.3g}", np.array([lr]), np.array([at])))
    return text_plot(lines, "loss", columns, x_name="lr", logx=True)


def plot_curve(result: RangeTest, path: str | Path) -> None:
    """The loss (raw and smoothed) against the rate on a log axis, the suggestions marked, as
    an image (PNG, or what ``path``'s extension says; the ``plot`` extra)."""
    from nnlab.plot import pyplot, save_figure

    plt = pyplot("without -o, nnlab lr-find draws the curve in the terminal")
    fig, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
    ax.plot(result.lrs, result.losses, color="0.75", linewidth=0.8, label="batch loss")
    ax.plot(result.lrs, result.smoothed, color="C0", linewidth=1.6, label="smoothed")
    for k, m in enumerate(METHODS):
        lr = result.suggestions[m]
        if math.isnan(lr):
            continue
        at = np.interp(math.log(lr), np.log(result.lrs), result.smoothed)
        style = "o" if m == result.method else "s"
        ax.plot([lr], [at], style, color=f"C{k + 1}", label=f"{m}: {lr:.3g}")
    finite = result.smoothed[np.isfinite(result.smoothed)]
    if len(finite):
        top = min(float(np.nanmax(result.losses[np.isfinite(result.losses)])), 4 * finite.min())
        ax.set_ylim(max(0.0, finite.min() - 0.1 * (top - finite.min())), top)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(f"learning-rate range test: suggested {result.suggested:.3g} ({result.method})")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="best", fontsize="small")
    save_figure(fig, path)
