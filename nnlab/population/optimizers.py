"""The optimizers of ``nnlab.nn.optimizers`` over a population, with each member's
hyperparameters.

``StackedOptimizer`` updates the (M, P) parameter block as each member's single-run optimizer
updates its flat vector: the same rule, the same order of operations, the same state (Adam's
moments kept pre-scaled, RMSprop's average too), so that a member's state is its single run's
and can be checkpointed as one. Hyperparameters are per member: scalars computed in double
precision (as the single run's Python floats) and rounded to the dtype where they meet an array,
as NumPy rounds a Python float there. A member whose option is off (no momentum, no clipping,
no weight decay) gets the value that changes nothing (momentum 0, a clip at infinity, decay 0),
which gives its single run's numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from nnlab.nn.optimizers import SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop
from nnlab.population.stack import Stack, dots

Array = np.ndarray


class StackedOptimizer:
    """Each member's ``Optimizer`` (``opts[m]``, built from its config) over one block."""

    def __init__(self, opts: Sequence[Optimizer], stack: Stack, n_decay: int, n_params: int):
        self.kind = type(opts[0])
        self.rule = RULES[self.kind]
        self.stack = stack
        self.n_decay = n_decay
        self.t = 0
        self.decoupled = self.kind.decoupled
        self.flags = {
            k: getattr(opts[0], k) for k in ("nesterov", "centered") if hasattr(opts[0], k)
        }
        names = [k for k in _NUMBERS if hasattr(opts[0], k)]
        self.h = {k: np.array([_number(getattr(o, k)) for o in opts]) for k in names}  # (M,)
        self.lr = self.h["lr"].copy()
        self.state = {k: stack.zeros((n_params,)) for k in self._state_keys()}
        if "s" in self.state:
            self.state["s"][...] = self.col(self.h["initial_accumulator"])
        self.tmp = stack.empty((n_params,))
        self._refresh()

    def _state_keys(self) -> list[str]:
        """The state arrays some member's update reads (as each single optimizer keeps them)."""
        keys = {SGD: ["buf"], RMSprop: ["v", "gavg", "buf"], Adagrad: ["s"]}.get(
            self.kind, ["m", "v"]
        )
        if "momentum" in self.h and not self.h["momentum"].any():
            keys.remove("buf")
        if not self.flags.get("centered", True):
            keys.remove("gavg")
        return keys

    def _refresh(self) -> None:
        """What the per-member hyperparameters give for every step."""
        h = self.h
        self.momentum = self.col(h["momentum"]) if "momentum" in h else None
        self.any_momentum = "momentum" in h and bool(h["momentum"].any())
        clip = h["clipvalue"]
        self.clipvalue = self.col(clip) if np.isfinite(clip).any() else None
        self.clipnorm = h["clipnorm"] if np.isfinite(h["clipnorm"]).any() else None
        self.l2 = self.col(2.0 * h["l2"]) if h["l2"].any() else None
        decay = h["weight_decay"]
        self.coupled = self.col(decay) if decay.any() and not self.decoupled else None
        self.set_lr(self.lr)

    def col(self, values: Array) -> Array:
        """Per-member doubles as a column in the dtype: the single run's rounding."""
        return self.stack.column(values)

    def set_lr(self, lr: Array) -> None:
        """Each member's learning rate for the epoch (its schedule's), (M,) doubles."""
        self.lr = np.asarray(lr, dtype=np.float64)
        self.lr_col = self.col(self.lr)

    def keep(self, rows: Array) -> None:
        """Keep the members ``rows`` (the stack has been resized to them already)."""
        self.h = {k: v[rows] for k, v in self.h.items()}
        for k, v in self.state.items():
            kept = v[rows]
            self.state[k] = self.stack.empty(kept.shape[1:])
            self.state[k][...] = kept
        self.tmp = self.stack.empty(self.tmp.shape[1:])
        self.lr = self.lr[rows]
        self._refresh()

    def step(self, theta: Array, grad: Array) -> None:
        """One update of every member (``grad`` is scratch space), as ``Optimizer.step``: the L2
        penalty's gradient, clipping, weight decay, then the rule."""
        self.t += 1
        k = self.n_decay
        if self.l2 is not None:
            grad[:, :k] += self.l2 * theta[:, :k]
        if self.clipvalue is not None:
            np.clip(grad, -self.clipvalue, self.clipvalue, out=grad)
        if self.clipnorm is not None:
            # as torch.nn.utils.clip_grad_norm_: scaled by max_norm / (norm + 1e-6) below 1
            coef = self.clipnorm / (np.sqrt(dots(grad, grad)) + 1e-6)
            under = coef < 1.0
            if under.any():
                grad *= self.col(np.where(under, coef, 1.0))
        if self.coupled is not None:
            grad[:, :k] += self.coupled * theta[:, :k]
        if self.decoupled and self.h["weight_decay"].any():
            theta[:, :k] *= self.col(1.0 - self.lr * self.h["weight_decay"])
        self.rule(self, theta, grad)

    def member_state(self, m: int, keys: Sequence[str]) -> dict:
        """Member m's state as its single run's ``Optimizer.state_dict()`` (with ``keys``, the
        state arrays that optimizer has)."""
        state: dict = {"t": self.t, "lr": float(self.lr[m])}
        state.update({k: self.state[k][m].copy() for k in keys})
        return state


def _number(x: float | None) -> float:
    """An option as a number: an unset clipping bound is infinite (clips nothing)."""
    return math.inf if x is None else float(x)


_NUMBERS = (
    "lr", "weight_decay", "l2", "clipnorm", "clipvalue", "momentum", "rho", "eps",
    "initial_accumulator", "beta1", "beta2",
)  # fmt: skip


def _sgd(o: StackedOptimizer, theta: Array, g: Array) -> None:
    if o.any_momentum:
        buf = o.state["buf"]
        buf *= o.momentum
        buf += g
        if not o.flags["nesterov"]:
            np.multiply(buf, o.lr_col, out=g)
            theta -= g
            return
        g += o.momentum * buf
    g *= o.lr_col
    theta -= g


def _rmsprop(o: StackedOptimizer, theta: Array, g: Array) -> None:
    s, tmp, rho = o.state, o.tmp, o.h["rho"]
    np.multiply(g, g, out=tmp)
    v = s["v"]
    v *= o.col(rho)
    v += tmp
    if o.flags["centered"]:
        gavg = s["gavg"]
        gavg *= o.col(rho)
        gavg += o.col(1.0 - rho) * g
        np.multiply(gavg, gavg, out=tmp)
        tmp *= o.col(-1.0 / (1.0 - rho))
        tmp += v
        np.sqrt(tmp, out=tmp)
    else:
        np.sqrt(v, out=tmp)
    tmp *= o.col(np.sqrt(1.0 - rho))
    tmp += o.col(o.h["eps"])
    np.divide(g, tmp, out=tmp)
    if o.any_momentum:
        buf = s["buf"]
        buf *= o.momentum
        buf += tmp
        np.multiply(buf, o.lr_col, out=tmp)
    else:
        tmp *= o.lr_col
    theta -= tmp


def _adagrad(o: StackedOptimizer, theta: Array, g: Array) -> None:
    tmp, acc = o.tmp, o.state["s"]
    np.multiply(g, g, out=tmp)
    acc += tmp
    np.sqrt(acc, out=tmp)
    tmp += o.col(o.h["eps"])
    np.divide(g, tmp, out=tmp)
    tmp *= o.lr_col
    theta -= tmp


def _power(base: Array, t: int) -> Array:
    """base ** t per member, as Python computes it for each (one call per distinct base)."""
    first = float(base[0])
    if (base == first).all():
        return np.full(base.shape, first**t)
    return np.array([float(b) ** t for b in base])


def _adam(o: StackedOptimizer, theta: Array, g: Array) -> None:
    m, v, tmp = o.state["m"], o.state["v"], o.tmp
    b1, b2 = o.h["beta1"], o.h["beta2"]
    bc1 = 1.0 - _power(b1, o.t)
    bc2 = 1.0 - _power(b2, o.t)
    m *= o.col(b1)
    m += g
    np.multiply(g, g, out=g)
    v *= o.col(b2)
    v += g
    c = np.sqrt((1.0 - b2) / bc2)
    np.sqrt(v, out=tmp)
    tmp += o.col(o.h["eps"] / c)
    np.divide(m, tmp, out=tmp)
    tmp *= o.col(o.lr * (1.0 - b1) / (bc1 * c))
    theta -= tmp


#: the single-run optimizers a population covers: update rule and state arrays
RULES: dict[type, Callable[[StackedOptimizer, Array, Array], None]] = {
    SGD: _sgd,
    RMSprop: _rmsprop,
    Adagrad: _adagrad,
    Adam: _adam,
    AdamW: _adam,
}
