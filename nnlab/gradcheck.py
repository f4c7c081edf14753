"""Central-difference gradient checks, in float64, in the spirit of torch.autograd.gradcheck.

An analytic gradient ``a`` passes against the numerical ``n`` when every entry satisfies
``|a - n| <= atol + rtol * |n|``. Randomness (dropout) is frozen: every evaluation replays the
same generator states (dropout's masks, a sampling layer's noise), so the network is one fixed
function while it is being differentiated.

An entry that fails is looked at once more: if the loss has a kink there (a ReLU input or a
max pooling tie exactly at the point, as zero biases on the blank border of an image give),
its one-sided derivatives differ, no derivative exists, and the entry passes when the analytic
gradient lies between them (it is then one of the loss's subgradients); ``Check.kinks`` counts
those entries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnlab.errors import ConfigError

Array = np.ndarray
EPS, ATOL, RTOL = 1e-6, 1e-5, 1e-3


def numerical_gradient(
    f: Callable[[], float], x: Array, eps: float = EPS, indices: Array | None = None
) -> Array:
    """d f / d x by central differences, perturbing ``x`` in place (restored after).

    Returns the gradient with the shape of ``x``, or with ``indices`` (flat positions in
    ``x``) only the derivatives at those entries, shape (len(indices),).
    """
    flat = x.reshape(-1)
    where = np.arange(flat.size) if indices is None else np.asarray(indices)
    grad = np.zeros(where.size, dtype=np.float64)
    for k, i in enumerate(where):
        old = flat[i]
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        grad[k] = (up - down) / (2 * eps)
    return grad.reshape(x.shape) if indices is None else grad


@dataclass
class Check:
    """The result for one parameter tensor: ``checked`` of its ``size`` entries compared."""

    name: str
    size: int
    max_abs_error: float
    max_rel_error: float
    passed: bool
    checked: int | None = None  # None: every entry
    shape: tuple[int, ...] = ()
    kinks: int = 0  # entries at a kink of the loss, passed between its one-sided derivatives


def compare(
    name: str, analytic: Array, numeric: Array, atol=ATOL, rtol=RTOL, kinks: Array | None = None
) -> Check:
    """Entries pass when ``|a - n| <= atol + rtol * |n|``. The relative error is the error
    over the larger of |a|, |n| and ``atol``: gradients that are 0 up to rounding do not show
    a relative error of 1. ``kinks`` (a boolean per entry) marks entries passed at a kink
    (see ``one_sided``); they are left out of the errors."""
    a, n = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    smooth = np.ones(a.shape, bool) if kinks is None else ~kinks
    err = np.abs(a - n)[smooth]
    rel = err / np.maximum(np.maximum(np.abs(a), np.abs(n))[smooth], atol)
    ok = bool(np.all(err <= atol + rtol * np.abs(n[smooth])))
    check = Check(name, int(a.size), float(err.max(initial=0)), float(rel.max(initial=0)), ok)
    check.kinks = int(a.size - smooth.sum())
    return check


def one_sided(f: Callable[[], float], x: Array, i: int, eps: float = EPS) -> tuple[float, float]:
    """The left and right derivatives of f at entry i of x: (f(x) - f(x - eps)) / eps and
    (f(x + eps) - f(x)) / eps."""
    flat = x.reshape(-1)
    old = flat[i]
    mid = f()
    flat[i] = old + eps
    up = f()
    flat[i] = old - eps
    down = f()
    flat[i] = old
    return (mid - down) / eps, (up - mid) / eps


def at_kinks(
    f: Callable[[], float],
    x: Array,
    indices: Array,
    analytic: Array,
    numeric: Array,
    eps: float = EPS,
    atol: float = ATOL,
    rtol: float = RTOL,
) -> Array:
    """Which of the failing entries are at a kink of f, with the analytic derivative between
    the one-sided ones: (len(indices),) booleans. A smooth f has one-sided derivatives that
    differ by about eps |f''|; at a kink they differ by the jump of f'."""
    kink = np.zeros(len(indices), bool)
    failing = np.abs(analytic - numeric) > atol + rtol * np.abs(numeric)
    for k in np.flatnonzero(failing):
        left, right = one_sided(f, x, int(indices[k]), eps)
        lo, hi = min(left, right), max(left, right)
        jump = hi - lo > 10 * (atol + rtol * max(abs(left), abs(right)))
        kink[k] = jump and lo - atol <= analytic[k] <= hi + atol
    return kink


class FrozenRandomness:
    """Replays a generator's state at every ``reset`` so random masks repeat exactly."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.state = rng.bit_generator.state

    def reset(self) -> None:
        self.rng.bit_generator.state = self.state


def check_model(
    model,
    objective: Callable,
    X: Array,
    logits: bool | list[bool] = False,
    training: bool = True,
    eps: float = EPS,
    atol: float = ATOL,
    rtol: float = RTOL,
    entries: int | None = None,
    rng: np.random.Generator | None = None,
) -> list[Check]:
    """Check every parameter tensor's gradient of ``objective(model(X))``, where
    ``objective(outputs) -> (value, d value / d outputs)`` (per output for several outputs).
    The model should be float64; with ``training`` dropout is on (with frozen masks). With
    ``entries``, a tensor with more entries has that many of them checked, drawn from ``rng``
    (every entry of smaller tensors)."""
    rngs = {id(layer.rng): layer.rng for layer in model.layers if layer.rng is not None}
    frozen = [FrozenRandomness(r) for r in rngs.values()]  # dropout's, the sampling's

    def value() -> float:
        for f in frozen:
            f.reset()
        return objective(model.forward(X, training=training, logits=logits))[0]

    for f in frozen:
        f.reset()
    _, dout = objective(model.forward(X, training=training, logits=logits))
    model.backward(dout, logits=logits)
    analytic = model.grad.copy()
    shapes = {name: p.shape for name, p, _ in model.named_parameters()}
    rng = rng if rng is not None else np.random.default_rng(0)
    checks = []
    for name, sl in zip(model.param_names, model.param_slices, strict=True):
        size = sl.stop - sl.start
        if entries is None or size <= entries:
            idx = np.arange(sl.start, sl.stop)
        else:
            idx = sl.start + np.sort(rng.choice(size, entries, replace=False))
        numeric = numerical_gradient(value, model.theta, eps, indices=idx)
        kinks = at_kinks(value, model.theta, idx, analytic[idx], numeric, eps, atol, rtol)
        check = compare(name, analytic[idx], numeric, atol, rtol, kinks)
        check.size, check.checked, check.shape = size, idx.size, shapes[name]
        checks.append(check)
    for f in frozen:
        f.reset()
    return checks


def loss_objective(loss, T: Array, W: Array | None = None) -> Callable:
    """The objective of a single-output model trained with ``loss`` on targets ``T``."""
    return lambda out: loss(out, T, W)


def batch_rows(exp: Any, samples: int) -> Array:
    """The training rows a check uses: the first ``samples``, or, when some samples have no
    label, half labelled and half unlabelled ones, so the masks are checked too."""
    n = len(exp.data.train)
    masks = [t.W for t in exp.targets["train"] if t.W is not None]
    if not masks:
        return np.arange(min(samples, n))
    labelled = np.flatnonzero(masks[0] > 0)
    unlabelled = np.flatnonzero(masks[0] == 0)
    k = min(len(labelled), max(1, (samples + 1) // 2))
    rows = np.concatenate([labelled[:k], unlabelled[: samples - k]])
    if rows.size < samples:  # too few of one kind: fill with the others
        rest = np.setdiff1d(np.arange(n), rows)[: samples - rows.size]
        rows = np.concatenate([rows, rest])
    return np.sort(rows)


def check_experiment(
    exp: Any,
    samples: int = 8,
    entries: int | None = 1000,
    eps: float = EPS,
    atol: float = ATOL,
    rtol: float = RTOL,
    seed: int = 0,
) -> list[Check]:
    """Check the gradient of every parameter tensor of a built experiment (``experiment.build``
    of a config with ``training.dtype: float64``) through its real losses (every head, its
    weight and its mask of unlabelled samples; fused outputs from their logits) on a batch of
    ``samples`` training samples, in training mode with dropout masks frozen. ``entries``: at
    most this many entries checked per tensor, drawn with ``seed`` (None: all).

    The L2 penalty and weight decay are added by the optimizer, not by backpropagation, and are
    not part of the check.
    """
    if exp.model.dtype != np.float64:
        raise ConfigError(
            f"a gradient check needs float64, the model is {exp.model.dtype.name}",
            "training.dtype",
        )
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    _check_differentiable(exp)
    rows = batch_rows(exp, samples)
    X = exp.data.train.X[rows]
    targets = [t.take(rows) for t in exp.targets["train"]]
    return check_model(
        exp.model,
        exp.objective.of(targets),
        X,
        logits=exp.logit_flags,
        training=True,
        eps=eps,
        atol=atol,
        rtol=rtol,
        entries=entries,
        rng=np.random.default_rng(seed),
    )


def _check_differentiable(exp: Any) -> None:
    """A loss or activation without a gradient (zero_one, step) has nothing to check."""
    single = exp.config["model"]["outputs"] is None
    for k, head in enumerate(exp.heads):
        if not head.loss.differentiable:
            raise ConfigError(
                f"{head.loss.name} has no gradient to check (it is flat between decisions)",
                "loss" if single else f"model.outputs[{k}].loss",
            )
    for i, layer in enumerate(exp.model.layers):
        fn = layer.activation_fn
        if fn is not None and not fn.differentiable:
            raise ConfigError(
                f"the {fn.name} activation has no gradient to check (its derivative is 0 "
                "wherever it exists)",
                f"model.layers[{i}].activation",
            )


def report(checks: list[Check], model: Any) -> str:
    """The checks as a table: a row per parameter tensor, then a verdict line."""
    from tabulate import tabulate

    from nnlab.nn import LAYERS

    rows = []
    for c in checks:
        i = int(c.name.split(".")[1])
        layer = model.layers[i]
        checked = c.size if c.checked is None else c.checked
        rows.append(
            [
                c.name,
                f"{model.names[i]} ({LAYERS.name_of(layer)})",
                "x".join(map(str, c.shape)) or "-",
                (f"{checked}/{c.size}" if checked < c.size else str(c.size))
                + (f" ({c.kinks} at kinks)" if c.kinks else ""),
                f"{c.max_abs_error:.2e}",
                f"{c.max_rel_error:.2e}",
                "pass" if c.passed else "FAIL",
            ]
        )
    headers = ["tensor", "layer", "shape", "entries", "max abs err", "max rel err", "result"]
    table = tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)
    failed = [c.name for c in checks if not c.passed]
    if failed:
        verdict = f"FAIL: {len(failed)} of {len(checks)} tensors: {', '.join(failed)}"
    else:
        verdict = f"pass: all {len(checks)} tensors"
    return f"{table}\n{verdict}"
