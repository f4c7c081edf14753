"""The training step of evolution strategies (``optimizer: es``, ``nnlab.nn.es.ES``): the
perturbed copies of the network are the members of one ``StackedModel`` (the population
engine of ``nnlab.population``), evaluated on the batch in one pass.

Each step: the optimizer draws its noise and writes the perturbed weights into the members'
parameter block (``ES.ask``); every member computes the training objective on the batch (the
experiment's heads, weights and masks, in training mode: a dropout layer draws each member's
masks from the run's training generator, member after member); the optimizer turns the
members' objective values into a gradient estimate (``ES.tell``) and updates the weights with
it (``ES.step``). The loop (``nnlab.train.Trainer``) computes the unperturbed network's loss
and accuracy on the batch as for any optimizer, for metrics.csv.
"""

from __future__ import annotations

import numpy as np

from nnlab import threads
from nnlab.errors import ConfigError
from nnlab.experiment import Experiment
from nnlab.memory import check_fits
from nnlab.nn import LAYERS
from nnlab.nn.es import ES
from nnlab.nn.layers import Dropout
from nnlab.population.layers import STACKABLE
from nnlab.population.losses import LOSSES as STACKED_LOSSES
from nnlab.population.model import StackedModel
from nnlab.population.objective import StackedObjective
from nnlab.population.stack import Stack

Array = np.ndarray


def check_es(exp: Experiment) -> None:
    """The layers and losses of an ``es`` run must have population versions (the members are
    evaluated by the population engine); a ConfigError names the key otherwise."""
    for i, spec in enumerate(exp.config["model"]["layers"]):
        entry = LAYERS.split(spec)[0]
        if entry.factory not in STACKABLE:
            raise ConfigError(
                f"es evaluates its perturbed networks in one pass of the population engine, "
                f"which covers dense, activation, dropout and flatten layers, not {entry.name}",
                f"model.layers[{i}].type",
            )
    for k, head in enumerate(exp.heads):
        if type(head.loss) not in STACKED_LOSSES:
            raise ConfigError(
                f"es evaluates its perturbed networks with the population engine, which has "
                f"no version of the loss {head.loss.name}",
                "loss" if exp.config["model"]["outputs"] is None else f"model.outputs[{k}].loss",
            )


class Perturbed:
    """The ``population`` perturbed networks of an ``es`` experiment, stacked, for batches of
    at most ``batch`` samples."""

    def __init__(self, exp: Experiment, batch: int):
        check_es(exp)
        opt: ES = exp.optimizer
        model = exp.model
        N, P = opt.population, model.n_params
        itemsize = model.dtype.itemsize
        units = sum(int(np.prod(s)) for s in model.shapes)
        # the members' weights and gradients, the noise (float64) and its rounded copy, and
        # each layer's outputs, pre-activations and input gradients for the batch
        need = (2 * N * P + 3 * N * batch * units) * itemsize + opt.pairs * P * (8 + itemsize)
        check_fits(need, f"es's {N} perturbed networks", "optimizer.population")
        self.opt, self.exp = opt, exp
        self.macs = threads.largest_product(model, batch) * N
        stack = Stack.choose(N, model.dtype, threads.largest_product(model, batch))
        rates = {i: [layer.rate] * N for i, layer in enumerate(model.layers)
                 if isinstance(layer, Dropout)}  # fmt: skip
        thetas = np.broadcast_to(model.theta, (N, P))
        self.model = StackedModel(model, stack, thetas, rates, [exp.rng] * N)
        self.objective = StackedObjective(exp.heads, [np.full(N, h.weight) for h in exp.heads])
        self.flags = exp.logit_flags

    def step(self, X: Array, T: list[Array], W: list[Array | None]) -> None:
        """One es update of the experiment's weights from a batch: inputs X (batch, ...),
        each head's targets T[k] and masks W[k]."""
        opt, theta, grad = self.opt, self.exp.model.theta, self.exp.model.grad
        opt.ask(theta, self.model.theta)
        outs = self.model.forward(X, training=True, logits=self.flags)
        values, _, _ = self.objective(outs, T, W)  # (population,) float64
        opt.tell(values, grad)
        opt.step(theta, grad)
