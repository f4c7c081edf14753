"""Central-difference gradient checks, in float64, in the spirit of torch.autograd.gradcheck.

An analytic gradient ``a`` passes against the numerical ``n`` when every entry satisfies
``|a - n| <= atol + rtol * |n|``. Randomness (dropout) is frozen: every evaluation replays the
same generator state, so the network is one fixed function while it is being differentiated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Array = np.ndarray
EPS, ATOL, RTOL = 1e-6, 1e-5, 1e-3


def numerical_gradient(f: Callable[[], float], x: Array, eps: float = EPS) -> Array:
    """d f / d x by central differences, perturbing ``x`` in place (restored after)."""
    grad = np.zeros(x.shape, dtype=np.float64)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return grad


@dataclass
class Check:
    name: str
    size: int
    max_abs_error: float
    max_rel_error: float
    passed: bool


def compare(name: str, analytic: Array, numeric: Array, atol=ATOL, rtol=RTOL) -> Check:
    a, n = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    err = np.abs(a - n)
    rel = err / np.maximum(np.maximum(np.abs(a), np.abs(n)), 1e-12)
    ok = bool(np.all(err <= atol + rtol * np.abs(n)))
    return Check(name, int(a.size), float(err.max(initial=0)), float(rel.max(initial=0)), ok)


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
) -> list[Check]:
    """Check every parameter tensor's gradient of ``objective(model(X))``, where
    ``objective(outputs) -> (value, d value / d outputs)`` (per output for several outputs).
    The model should be float64; with ``training`` dropout is on (with frozen masks)."""
    rng = next((layer.rng for layer in model.layers if layer.rng is not None), None)
    frozen = FrozenRandomness(rng) if rng is not None else None

    def value() -> float:
        if frozen:
            frozen.reset()
        return objective(model.forward(X, training=training, logits=logits))[0]

    if frozen:
        frozen.reset()
    _, dout = objective(model.forward(X, training=training, logits=logits))
    model.backward(dout, logits=logits)
    analytic = model.grad.copy()
    numeric = numerical_gradient(value, model.theta, eps)
    if frozen:
        frozen.reset()
    return [
        compare(name, analytic[sl], numeric[sl], atol, rtol)
        for name, sl in zip(model.param_names, model.param_slices, strict=True)
    ]


def loss_objective(loss, T: Array, W: Array | None = None) -> Callable:
    """The objective of a single-output model trained with ``loss`` on targets ``T``."""
    return lambda out: loss(out, T, W)
