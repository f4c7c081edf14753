"""Evolution strategies: OpenAI-ES (Salimans et al. 2017), an optimizer that needs no gradient.

Each step perturbs the weights ``theta`` (P,) with Gaussian noise, measures the loss of every
perturbed network, and estimates the gradient of the Gaussian-smoothed loss from those values
alone, so it trains losses and activations that have no gradient (``zero_one``, ``step``):

- **ask** (``ask``): draw ``n`` noise vectors eps_i ~ N(0, I) (P,) from the optimizer's own
  generator (the ``es`` seed stream), in float64; with ``antithetic`` (mirrored sampling)
  ``n = population / 2`` and the members are ``theta + d_i`` then ``theta - d_i``, else
  ``n = population`` and they are ``theta + d_i``, where ``d_i = sigma * eps_i`` rounded to the
  weights' dtype.
- **tell** (``tell``): the members' losses L (population,) are shaped into fitness values F:
  with ``centered_ranks`` (OpenAI-ES's fitness shaping) each loss's rank, 0 for the lowest,
  scaled to [-0.5, 0.5] (rank / (population - 1) - 0.5); tied losses share their average
  rank (OpenAI's code breaks ties by sort order; a flat loss like ``zero_one`` ties often,
  and a tie carries no information), a NaN loss ranks last. With ``none`` F = L. The
  estimate, in float64, is the paper's (Algorithm 1, with mirrored pairs):
  ``g = sum_i (F+_i - F-_i) eps_i / (population * sigma)`` (antithetic),
  ``g = sum_i F_i eps_i / (population * sigma)`` (not). With ``shaping: none`` and
  mirrored pairs this is the central-difference estimate of the gradient of
  E[L(theta + sigma eps)], which tends to the gradient as sigma -> 0.
- **step** (``Optimizer.step``): the estimate plays the gradient's part: the L2 penalty's
  gradient joins it, it is clipped, weight decay is added (OpenAI-ES's ``l2coeff`` is
  ``weight_decay``), then the ``update`` rule moves the weights: ``adam`` (as OpenAI-ES does,
  torch.optim.Adam's rule) or ``sgd`` (with ``momentum``), at ``lr`` (and its schedule).
  OpenAI's code divides the sum by the number of evaluations but not by sigma; with Adam
  (invariant to the gradient's scale) the two give the same steps.

Which networks, what loss: the training loop (``nnlab.es``) evaluates the members on each
batch in one pass of the population engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np

from nnlab.errors import ConfigError
from nnlab.nn.losses import Loss
from nnlab.nn.optimizers import OPTIMIZERS, SGD, Adam, Optimizer
from nnlab.schema import Doc, Interval

if TYPE_CHECKING:
    from nnlab.nn.model import Model

Array = np.ndarray


def check_gradients(optimizer: Optimizer, losses: list[Loss], model: Model, single: bool) -> None:
    """A gradient optimizer needs losses and activations with a gradient: ``zero_one`` and
    ``step`` have none. ``losses``: each output's (``single``: the config's top-level
    ``loss``, else ``model.outputs[k].loss``); a ConfigError names the key."""
    if not optimizer.needs_gradient:
        return
    name = OPTIMIZERS.name_of(optimizer)
    for k, loss in enumerate(losses):
        if not loss.differentiable:
            raise ConfigError(
                f"{loss.name} has no gradient (it is flat between decisions), so {name} "
                "cannot descend it: train it with optimizer: es (evolution strategies, which "
                "need no gradient), or use a loss with a gradient (binary_crossentropy, "
                "categorical_crossentropy, mse)",
                "loss" if single else f"model.outputs[{k}].loss",
            )
    for i, layer in enumerate(model.layers):
        fn = layer.activation_fn
        if fn is not None and not fn.differentiable:
            raise ConfigError(
                f"the {fn.name} activation passes no gradient back (its derivative is 0 "
                f"wherever it exists), so {name} cannot train through it: use optimizer: es "
                "(evolution strategies, which need no gradient), or a smooth activation "
                "(sigmoid, tanh)",
                f"model.layers[{i}].activation",
            )


def centered_ranks(losses: Array) -> Array:
    """OpenAI-ES's fitness shaping: each value's rank (0: the lowest) scaled to [-0.5, 0.5],
    tied values sharing their average rank, NaN ranked last. (N,) -> (N,) float64."""
    x = np.where(np.isnan(losses), np.inf, np.asarray(losses, dtype=np.float64))
    n = x.shape[0]
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    first = np.empty(n, bool)  # where a run of equal values starts
    first[0] = True
    np.not_equal(sorted_x[1:], sorted_x[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    counts = np.empty_like(starts)
    np.subtract(starts[1:], starts[:-1], out=counts[:-1])
    counts[-1] = n - starts[-1]
    ranks = np.empty(n)
    ranks[order] = np.repeat(starts + (counts - 1) / 2.0, counts)
    return ranks / max(n - 1, 1) - 0.5


@OPTIMIZERS.register("es", aliases=("openai_es", "evolution_strategies"))
@dataclass
class ES(Optimizer):
    """Evolution strategies (OpenAI-ES): the gradient estimated from the losses of randomly
    perturbed copies of the network (mirrored pairs, centered-rank fitness), applied by Adam
    or SGD. Needs no gradient: trains zero_one and step activations."""

    lr: Annotated[float, Interval(gt=0), Doc("learning rate of the update rule")] = 0.01
    population: Annotated[
        int, Interval(ge=2), Doc("perturbed networks evaluated per step (even when antithetic)")
    ] = 50
    sigma: Annotated[
        float, Interval(gt=0), Doc("standard deviation of the perturbations of the weights")
    ] = 0.1
    antithetic: Annotated[bool, Doc("mirrored sampling: pairs theta + d, theta - d")] = True
    shaping: Annotated[
        Literal["centered_ranks", "none"],
        Doc("fitness shaping: the losses' centered ranks, or the losses themselves"),
    ] = "centered_ranks"
    update: Annotated[
        Literal["adam", "sgd"], Doc("the rule that applies the estimated gradient")
    ] = "adam"
    momentum: Annotated[float, Interval(ge=0, lt=1), Doc("update sgd's momentum")] = 0.0
    beta1: Annotated[float, Interval(ge=0, lt=1), Doc("update adam's beta1")] = 0.9
    beta2: Annotated[float, Interval(ge=0, lt=1), Doc("update adam's beta2")] = 0.999
    eps: Annotated[float, Interval(gt=0), Doc("update adam's eps")] = 1e-8

    needs_gradient = False

    @staticmethod
    def __post_check__(p: dict, path: str) -> None:
        at = (lambda key: f"{path}.{key}") if path else (lambda key: key)
        if p["antithetic"] and p["population"] % 2:
            raise ConfigError(
                f"antithetic sampling evaluates pairs theta + d, theta - d: the population must "
                f"be even, got {p['population']}",
                at("population"),
            )
        if p["momentum"] and p["update"] != "sgd":
            raise ConfigError(
                f"momentum is update sgd's; this es updates with {p['update']}", at("momentum")
            )

    def __post_init__(self):
        super().__post_init__()
        self.rng: np.random.Generator | None = None  # the es seed stream (experiment.build)
        self.inner: Optimizer | None = None
        self._eps: Array | None = None

    @property
    def pairs(self) -> int:
        """Noise vectors drawn per step."""
        return self.population // 2 if self.antithetic else self.population

    def setup(self, theta: Array, n_decay: int) -> None:
        if self.update == "adam":
            self.inner = Adam(lr=self.lr, beta1=self.beta1, beta2=self.beta2, eps=self.eps)
        else:
            self.inner = SGD(lr=self.lr, momentum=self.momentum)
        self.inner.setup(theta, n_decay)
        super().setup(theta, n_decay)

    def _init_state(self, theta: Array) -> dict[str, Array]:
        return self.inner.state  # the update rule's state is the optimizer's

    def ask(self, theta: Array, out: Array) -> None:
        """Draw this step's noise and write the perturbed weights into ``out``
        (population, P): theta + d_i, then theta - d_i (antithetic)."""
        n = self.pairs
        self._eps = eps = self.rng.standard_normal((n, theta.shape[0]))  # (n, P) float64
        d = (self.sigma * eps).astype(theta.dtype)
        np.add(theta, d, out=out[:n])
        if self.antithetic:
            np.subtract(theta, d, out=out[n:])

    def tell(self, losses: Array, grad: Array) -> None:
        """The gradient estimate from the members' losses (population,), in ``ask``'s order,
        written into ``grad`` (P,)."""
        F = centered_ranks(losses) if self.shaping == "centered_ranks" else np.asarray(losses)
        n = self.pairs
        weights = F[:n] - F[n:] if self.antithetic else F
        g = weights @ self._eps  # (P,)
        g /= self.population * self.sigma
        grad[...] = g

    def _update(self, theta: Array, g: Array, s: dict[str, Array]) -> None:
        self.inner.lr = self.lr
        self.inner.step(theta, g)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["es_rng"] = self.rng.bit_generator.state
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = dict(state)
        self.rng.bit_generator.state = state.pop("es_rng")
        super().load_state_dict(state)
        self.inner.t = self.t
