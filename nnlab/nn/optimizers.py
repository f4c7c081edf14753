"""Optimizers and learning-rate schedules.

An optimizer updates the model's flat parameter vector ``theta`` in place from the flat gradient
``grad`` (which it may overwrite), in a handful of NumPy calls whatever the number of layers.
The first ``n_decay`` entries of ``theta`` are kernels: weight decay and the L2 penalty apply to
them and not to biases. The update rules follow PyTorch's documentation (``torch.optim``).

The order of a step: the L2 penalty's gradient joins the loss's (it is part of the objective,
as a Keras kernel regularizer), then that whole gradient is clipped (``clipvalue``, then
``clipnorm`` as ``torch.nn.utils.clip_grad_norm_``), then weight decay is added (inside the
optimizer, after clipping, as ``torch.optim`` does), then the update rule runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np

from nnlab.errors import ConfigError
from nnlab.registry import Registry
from nnlab.schema import Doc, Interval, Ref

Array = np.ndarray
OPTIMIZERS = Registry("optimizer")
SCHEDULES = Registry("schedule")


# ---------------------------------------------------------------- schedules


class Schedule:
    """``lr(epoch, base_lr, epochs)``: the learning rate for a (0-based) epoch.

    A schedule that follows a metric names it in ``monitor``; the training loop then gives it
    each epoch's value of that metric (``observe``) after the epoch. Its state is saved in
    checkpoints (``state_dict``)."""

    monitor: str | None = None  # the metrics.csv column a schedule follows (None: none)

    def __call__(self, epoch: int, base_lr: float, epochs: int) -> float:
        raise NotImplementedError

    def observe(self, value: float, higher_is_better: bool) -> None:
        """The monitored metric's value at the end of an epoch."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


@SCHEDULES.register("constant")
@dataclass
class Constant(Schedule):
    """The same learning rate every epoch."""

    def __call__(self, epoch, base_lr, epochs):
        return base_lr


def _power(gamma: float, n: int) -> float:
    """gamma ** n, infinite where it overflows (the run then diverges, and says so)."""
    try:
        return gamma**n
    except OverflowError:
        return math.inf


@SCHEDULES.register("step")
@dataclass
class Step(Schedule):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs."""

    step_size: Annotated[int, Interval(ge=1), Doc("epochs between decays")] = 10
    gamma: Annotated[float, Interval(gt=0), Doc("decay factor")] = 0.1

    def __call__(self, epoch, base_lr, epochs):
        return base_lr * _power(self.gamma, epoch // self.step_size)


@SCHEDULES.register("multistep")
@dataclass
class MultiStep(Schedule):
    """Multiply the learning rate by ``gamma`` at each of the given epochs."""

    milestones: Annotated[list[int], Doc("epochs (0-based) at which to decay")] = field(
        default_factory=list
    )
    gamma: Annotated[float, Interval(gt=0), Doc("decay factor")] = 0.1

    def __call__(self, epoch, base_lr, epochs):
        return base_lr * _power(self.gamma, sum(1 for m in self.milestones if epoch >= m))


@SCHEDULES.register("exponential")
@dataclass
class Exponential(Schedule):
    """Multiply the learning rate by ``gamma`` every epoch."""

    gamma: Annotated[float, Interval(gt=0), Doc("decay factor per epoch")] = 0.95

    def __call__(self, epoch, base_lr, epochs):
        return base_lr * _power(self.gamma, epoch)


@SCHEDULES.register("cosine")
@dataclass
class Cosine(Schedule):
    """Cosine annealing from the base rate to ``eta_min`` over ``t_max`` epochs, then ``eta_min``
    until the end. (PyTorch's CosineAnnealingLR rises again after t_max, along the same cosine;
    nnlab holds eta_min, as Keras' CosineDecay does: a run longer than t_max ends at eta_min.)"""

    t_max: Annotated[int | None, Interval(ge=1), Doc("length of the decay (null: all epochs)")] = (
        None
    )
    eta_min: Annotated[float, Interval(ge=0), Doc("final learning rate")] = 0.0

    def __call__(self, epoch, base_lr, epochs):
        t_max = self.t_max or epochs
        e = min(epoch, t_max)
        return self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * e / t_max)) / 2


@SCHEDULES.register("plateau", aliases=("reduce_on_plateau",))
@dataclass
class Plateau(Schedule):
    """Multiply the learning rate by ``factor`` when ``monitor`` has not improved by more than
    ``min_delta`` for ``patience`` epochs; then ignore ``cooldown`` epochs; never below
    ``min_lr``. This is PyTorch's ReduceLROnPlateau (threshold_mode abs) counted as Keras
    counts patience: nnlab's patience p reduces at the p-th epoch without improvement, as
    Keras' does and PyTorch's p - 1 (PyTorch's threshold is relative by default, nnlab's
    min_delta absolute as Keras'; Keras' cooldown c ignores c - 1 epochs, PyTorch's and
    nnlab's c)."""

    monitor: Annotated[str, Doc("the metrics.csv column to follow")] = "val_loss"
    factor: Annotated[float, Interval(gt=0, lt=1), Doc("multiplies the rate at a reduction")] = 0.1
    patience: Annotated[
        int, Interval(ge=1), Doc("epochs without improvement that make a reduction")
    ] = 10
    min_delta: Annotated[float, Interval(ge=0), Doc("smallest change that counts")] = 1e-4
    cooldown: Annotated[int, Interval(ge=0), Doc("epochs ignored after a reduction")] = 0
    min_lr: Annotated[float, Interval(ge=0), Doc("the rate's lower bound")] = 0.0
    mode: Annotated[
        Literal["auto", "min", "max"], Doc("auto: max for accuracies, min otherwise")
    ] = "auto"

    def __post_init__(self):
        self.lr: float | None = None  # the current rate (None: the base rate, not yet set)
        self.best: float | None = None
        self.wait = 0  # epochs without improvement
        self.cooldown_left = 0

    def __call__(self, epoch, base_lr, epochs):
        if self.lr is None:
            self.lr = base_lr
        return self.lr

    def observe(self, value, higher_is_better):
        best, delta = self.best, self.min_delta
        if best is None or (value > best + delta if higher_is_better else value < best - delta):
            self.best, self.wait = value, 0
        else:
            self.wait += 1
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.wait = 0
        if self.wait >= self.patience:
            if self.lr is not None and self.lr > self.min_lr:
                self.lr = max(self.lr * self.factor, self.min_lr)
            self.cooldown_left, self.wait = self.cooldown, 0

    def state_dict(self):
        return {"lr": self.lr, "best": self.best, "wait": self.wait, "cooldown": self.cooldown_left}

    def load_state_dict(self, state):
        self.lr, self.best = state["lr"], state["best"]
        self.wait, self.cooldown_left = state["wait"], state["cooldown"]


# ---------------------------------------------------------------- optimizers


@dataclass
class Optimizer:
    lr: Annotated[float, Interval(gt=0), Doc("learning rate")] = 0.01
    weight_decay: Annotated[
        float,
        Interval(ge=0),
        Doc("weight decay: adds weight_decay * w to the kernels' gradient (adamw: decoupled)"),
    ] = 0.0
    l2: Annotated[
        float, Interval(ge=0), Doc("L2 penalty: adds l2 * sum(w^2) over the kernels to the loss")
    ] = 0.0
    clipnorm: Annotated[
        float | None, Interval(gt=0), Doc("clip the gradient's global norm to this (null: off)")
    ] = None
    clipvalue: Annotated[
        float | None, Interval(gt=0), Doc("clip each gradient entry to [-v, v] (null: off)")
    ] = None
    schedule: Annotated[Any, Ref(SCHEDULES), Doc("learning-rate schedule, stepped per epoch")] = (
        "constant"
    )

    #: False for an optimizer that estimates the gradient from the loss alone (``es``)
    needs_gradient = True

    def __post_init__(self):
        self.base_lr = self.lr
        self.t = 0
        self._n_decay = 0
        self.state: dict[str, Array] = {}  # per-parameter arrays, e.g. Adam's m and v
        self.lr_schedule: Schedule = Constant()

    def setup(self, theta: Array, n_decay: int) -> None:
        """Allocate the state for a parameter vector whose first ``n_decay`` entries decay."""
        self._n_decay = n_decay
        self.lr_schedule: Schedule = SCHEDULES.build(self.schedule)
        self.state = self._init_state(theta)

    def _init_state(self, theta: Array) -> dict[str, Array]:
        return {}

    def set_epoch(self, epoch: int, epochs: int) -> float:
        """Set ``lr`` from the schedule for a 0-based epoch; returns it."""
        self.lr = self.lr_schedule(epoch, self.base_lr, epochs)
        return self.lr

    def step(self, theta: Array, grad: Array) -> None:
        """One update of ``theta`` from ``grad`` (``grad`` is used as scratch space)."""
        self.t += 1
        k = self._n_decay
        if self.l2:  # the penalty's gradient: part of the objective, so clipped with it
            grad[:k] += 2.0 * self.l2 * theta[:k]
        if self.clipvalue is not None:
            np.clip(grad, -self.clipvalue, self.clipvalue, out=grad)
        if self.clipnorm is not None:
            # as torch.nn.utils.clip_grad_norm_: scaled by max_norm / (norm + 1e-6) when below 1
            coef = self.clipnorm / (math.sqrt(float(np.dot(grad, grad))) + 1e-6)
            if coef < 1.0:
                grad *= coef
        if self.weight_decay and not self.decoupled:
            grad[:k] += self.weight_decay * theta[:k]
        if self.decoupled and self.weight_decay:
            theta[:k] *= 1.0 - self.lr * self.weight_decay
        self._update(theta, grad, self.state)

    decoupled = False

    def _update(self, theta: Array, g: Array, s: dict[str, Array]) -> None:
        """Update ``theta`` from ``g`` with the state arrays ``s`` (all views of one range)."""
        raise NotImplementedError

    # state for checkpoints: every array and counter an update reads ("tmp..." is scratch)
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"t": self.t, "lr": self.lr}
        schedule = self.lr_schedule.state_dict()
        if schedule:
            state["schedule"] = schedule
        state.update({k: v.copy() for k, v in self.state.items() if not k.startswith("tmp")})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.t = int(state["t"])
        self.lr = float(state["lr"])
        if "schedule" in state:
            self.lr_schedule.load_state_dict(state["schedule"])
        for k, v in state.items():
            if k not in ("t", "lr", "schedule"):
                self.state[k][...] = v


@OPTIMIZERS.register("sgd")
@dataclass
class SGD(Optimizer):
    """Stochastic gradient descent, with optional (Nesterov) momentum:
    ``buf = momentum * buf + g; w -= lr * (g + momentum * buf if nesterov else buf)``."""

    momentum: Annotated[float, Interval(ge=0, lt=1), Doc("momentum factor (0: plain SGD)")] = 0.0
    nesterov: Annotated[bool, Doc("Nesterov momentum")] = False

    @staticmethod
    def __post_check__(p: dict, path: str) -> None:
        if p["nesterov"] and p["momentum"] == 0:
            raise ConfigError("nesterov needs momentum > 0", f"{path}.nesterov" if path else "")

    def _init_state(self, theta):
        return {"buf": np.zeros_like(theta)} if self.momentum else {}

    def _update(self, theta, g, s):
        if self.momentum:
            buf = s["buf"]
            buf *= self.momentum
            buf += g
            if not self.nesterov:
                np.multiply(buf, self.lr, out=g)
                theta -= g
                return
            g += self.momentum * buf
        g *= self.lr
        theta -= g


@OPTIMIZERS.register("rmsprop")
@dataclass
class RMSprop(Optimizer):
    """RMSprop (Hinton): ``v = rho v + (1 - rho) g^2; w -= lr g / (sqrt(v) + eps)``, with
    optional momentum and centering (as torch.optim.RMSprop, whose ``alpha`` is ``rho``)."""

    lr: Annotated[float, Interval(gt=0), Doc("learning rate")] = 0.001
    rho: Annotated[float, Interval(ge=0, lt=1), Doc("decay of the squared-gradient average")] = 0.9
    eps: Annotated[float, Interval(gt=0), Doc("added to the denominator")] = 1e-8
    momentum: Annotated[float, Interval(ge=0, lt=1), Doc("momentum factor")] = 0.0
    centered: Annotated[bool, Doc("divide by the gradient's estimated variance")] = False

    def _init_state(self, theta):
        # v is kept as v / (1 - rho): its update is then `v = rho v + g^2`, one pass fewer
        state = {"v": np.zeros_like(theta), "tmp": np.empty_like(theta)}
        if self.centered:
            state["gavg"] = np.zeros_like(theta)
        if self.momentum:
            state["buf"] = np.zeros_like(theta)
        return state

    def _update(self, theta, g, s):
        tmp, v = s["tmp"], s["v"]
        c = math.sqrt(1.0 - self.rho)  # sqrt(v_true) = c * sqrt(v)
        np.multiply(g, g, out=tmp)
        v *= self.rho
        v += tmp
        if self.centered:
            gavg = s["gavg"]
            gavg *= self.rho
            gavg += (1.0 - self.rho) * g
            np.multiply(gavg, gavg, out=tmp)
            tmp *= -1.0 / (1.0 - self.rho)
            tmp += v  # (v_true - gavg^2) / (1 - rho)
            np.sqrt(tmp, out=tmp)
        else:
            np.sqrt(v, out=tmp)
        tmp *= c
        tmp += self.eps
        np.divide(g, tmp, out=tmp)
        if self.momentum:
            buf = s["buf"]
            buf *= self.momentum
            buf += tmp
            np.multiply(buf, self.lr, out=tmp)
        else:
            tmp *= self.lr
        theta -= tmp


@OPTIMIZERS.register("adagrad")
@dataclass
class Adagrad(Optimizer):
    """Adagrad: ``s += g^2; w -= lr g / (sqrt(s) + eps)``."""

    initial_accumulator: Annotated[
        float, Interval(ge=0), Doc("starting value of the squared-gradient sum")
    ] = 0.0
    eps: Annotated[float, Interval(gt=0), Doc("added to the denominator")] = 1e-10

    def _init_state(self, theta):
        return {"s": np.full_like(theta, self.initial_accumulator), "tmp": np.empty_like(theta)}

    def _update(self, theta, g, s):
        tmp, acc = s["tmp"], s["s"]
        np.multiply(g, g, out=tmp)
        acc += tmp
        np.sqrt(acc, out=tmp)
        tmp += self.eps
        np.divide(g, tmp, out=tmp)
        tmp *= self.lr
        theta -= tmp


@OPTIMIZERS.register("adam")
@dataclass
class Adam(Optimizer):
    """Adam (Kingma & Ba), as torch.optim.Adam: ``m = b1 m + (1-b1) g;
    v = b2 v + (1-b2) g^2; w -= lr / (1-b1^t) * m / (sqrt(v / (1-b2^t)) + eps)``."""

    lr: Annotated[float, Interval(gt=0), Doc("learning rate")] = 0.001
    beta1: Annotated[float, Interval(ge=0, lt=1), Doc("decay of the gradient average")] = 0.9
    beta2: Annotated[float, Interval(ge=0, lt=1), Doc("decay of the squared average")] = 0.999
    eps: Annotated[float, Interval(gt=0), Doc("added to the denominator")] = 1e-8

    def _init_state(self, theta):
        # The moments are kept as m / (1 - beta1) and v / (1 - beta2): their updates are then
        # `m = beta1 m + g` and `v = beta2 v + g^2`, and the constants fold into two scalars:
        # ten passes over the parameters per step instead of thirteen.
        return {"m": np.zeros_like(theta), "v": np.zeros_like(theta), "tmp": np.empty_like(theta)}

    def _update(self, theta, g, s):
        m, v, tmp = s["m"], s["v"], s["tmp"]
        b1, b2 = self.beta1, self.beta2
        bc1 = 1.0 - b1**self.t
        bc2 = 1.0 - b2**self.t
        m *= b1
        m += g
        np.multiply(g, g, out=g)
        v *= b2
        v += g
        # w -= lr/bc1 * (1-b1) m / (sqrt((1-b2) v / bc2) + eps) = step * m / (sqrt(v) + eps2)
        c = math.sqrt((1.0 - b2) / bc2)
        np.sqrt(v, out=tmp)
        tmp += self.eps / c
        np.divide(m, tmp, out=tmp)
        tmp *= self.lr * (1.0 - b1) / (bc1 * c)
        theta -= tmp


@OPTIMIZERS.register("adamw")
@dataclass
class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``w -= lr * weight_decay * w``
    before the Adam step, as torch.optim.AdamW."""

    weight_decay: Annotated[float, Interval(ge=0), Doc("decoupled weight decay of the kernels")] = (
        0.01
    )
    decoupled = True


@OPTIMIZERS.register("rprop")
@dataclass
class Rprop(Optimizer):
    """Resilient backpropagation (Riedmiller & Braun 1993), as torch.optim.Rprop: each weight
    has its own step, multiplied by ``eta_plus`` when its gradient keeps its sign and by
    ``eta_minus`` when it flips (that gradient is then zeroed for the next step), within
    [step_min, step_max]; ``w -= sign(g) * step``. Only the sign of the gradient is used.
    Rprop is a full-batch method: on mini-batches it compares the signs of consecutive batches'
    gradients, whose noise flips them, so the steps shrink (nnlab runs it step per batch, as
    PyTorch does)."""

    lr: Annotated[
        float,
        Interval(gt=0),
        Doc("the initial step of every weight (torch's lr); the steps then adapt themselves"),
    ] = 0.01
    eta_minus: Annotated[
        float, Interval(gt=0, lt=1), Doc("multiplies a step when its gradient flips sign")
    ] = 0.5
    eta_plus: Annotated[
        float, Interval(gt=1), Doc("multiplies a step when its gradient keeps its sign")
    ] = 1.2
    step_min: Annotated[float, Interval(ge=0), Doc("smallest step")] = 1e-6
    step_max: Annotated[float, Interval(gt=0), Doc("largest step")] = 50.0

    @staticmethod
    def __post_check__(p: dict, path: str) -> None:
        if p["step_min"] > p["step_max"]:
            raise ConfigError(
                f"step_min ({p['step_min']:g}) must not exceed step_max ({p['step_max']:g})",
                f"{path}.step_min" if path else "",
            )
        if p["schedule"] != "constant":
            raise ConfigError(
                "rprop adapts each weight's step itself (lr is only the first step), so a "
                "learning-rate schedule has nothing to act on: use schedule: constant",
                f"{path}.schedule" if path else "",
            )

    def _init_state(self, theta):
        return {
            "prev": np.zeros_like(theta),  # the last gradient used (0 where it flipped)
            "step": np.full_like(theta, self.lr),
            "tmp": np.empty_like(theta),
            "tmp_factor": np.empty_like(theta),
        }

    def _update(self, theta, g, s):
        prev, step, tmp, factor = s["prev"], s["step"], s["tmp"], s["tmp_factor"]
        np.multiply(g, prev, out=tmp)
        flipped = tmp < 0
        factor.fill(1.0)
        factor[tmp > 0] = self.eta_plus
        factor[flipped] = self.eta_minus
        step *= factor
        np.clip(step, self.step_min, self.step_max, out=step)
        g[flipped] = 0.0
        np.sign(g, out=tmp)
        tmp *= step
        theta -= tmp
        prev[...] = g
