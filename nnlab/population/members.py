"""The members of a population, each set up exactly as its single run sets itself up.

A member is a resolved config. From its seed it gets the single run's three generators
(``nnlab.experiment.seed_streams``): its data splits (so members may train on different samples
of the same data), its initial weights (drawn by building its model, as the single run does) and
its training-time randomness (its shuffles and dropout masks). Members whose data comes out the
same (no split depends on the seed, or one ``data.split_seed``) share one copy of it.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field

import numpy as np

from nnlab.data import Data, load
from nnlab.experiment import Experiment, Targets, build, head_targets, seed_streams
from nnlab.memory import checked_already
from nnlab.nn import OPTIMIZERS, Model
from nnlab.nn.optimizers import Optimizer

Array = np.ndarray
SPLITS = ("train", "val", "test")


@dataclass
class Member:
    """One member: its config, generators, data, targets and initial weights."""

    config: dict
    rng: np.random.Generator  # training-time randomness: shuffles, dropout
    data: Data
    targets: dict[str, list[Targets]]
    optimizer: Optimizer  # its single run's optimizer (hyperparameters, schedule)
    theta0: Array  # (P,) initial weights
    weights: list[float]  # each head's loss weight
    rates: dict[int, float] = field(default_factory=dict)  # dropout layer -> rate

    @property
    def seed(self) -> int:
        return self.config["training"]["seed"]


def member_experiment(template: Experiment, member: Member) -> Experiment:
    """Member's single-run experiment, on the template's model (load its weights into
    ``template.model.theta`` first): its config, data, targets, loss weights and generator."""
    heads = [dataclasses.replace(h, weight=w) for h, w in zip(template.heads, member.weights,
                                                               strict=True)]  # fmt: skip
    return dataclasses.replace(
        template,
        config=member.config,
        data=member.data,
        heads=heads,
        optimizer=member.optimizer,
        rng=member.rng,
        targets=member.targets,
    )


def data_seed(config: dict) -> int:
    """The seed a config's data splits come from."""
    split = config["data"].get("split_seed")
    return config["training"]["seed"] if split is None else split


def build_members(configs: list[dict]) -> tuple[Experiment, list[Member]]:
    """The template experiment (the first config's, built and checked as a single run builds
    it) and every member. The configs must form a population (``partition``)."""
    dtype = np.dtype(configs[0]["training"]["dtype"])
    data, shared = _load_data(configs, dtype)
    template = build(configs[0], data[data_seed(configs[0])])
    members = []
    optimizers: dict[str, Optimizer] = {}
    for i, cfg in enumerate(configs):
        rngs = seed_streams(cfg["training"]["seed"], cfg["data"].get("split_seed"))
        d = data[data_seed(cfg)]
        if i == 0:
            theta0 = template.model.theta.copy()
        else:
            with checked_already():  # the template's shapes, checked when it was built
                model = Model.from_spec(cfg["model"], d.input_shape, rngs["init"], dtype)
            theta0 = model.theta
        key = json.dumps(cfg["optimizer"], sort_keys=True)
        if key not in optimizers:
            optimizers[key] = OPTIMIZERS.build(cfg["optimizer"])
        targets = template.targets if shared else _targets(template, d, dtype)
        members.append(
            Member(
                config=cfg,
                rng=rngs["train"],
                data=d,
                targets=targets,
                optimizer=optimizers[key],
                theta0=theta0,
                weights=_weights(cfg, len(template.heads)),
                rates=_rates(cfg),
            )
        )
    return template, members


def data_shared(configs: list[dict]) -> bool:
    """Whether the configs' data is one copy: one split seed, or splits that do not depend on
    the seed (loading the data draws nothing from its generator)."""
    if len({data_seed(c) for c in configs}) == 1:
        return True
    return _load_data(configs[:1], np.dtype(configs[0]["training"]["dtype"]))[1]


def _load_data(configs: list[dict], dtype) -> tuple[dict[int, Data], bool]:
    """Each member's data by the seed of its splits, and whether all members share one copy
    (the data does not depend on the seed: loading it drew nothing from the generator)."""
    first = configs[0]
    rng = seed_streams(first["training"]["seed"], first["data"].get("split_seed"))["data"]
    before = copy.deepcopy(rng.bit_generator.state)
    data = load(first["data"], rng, dtype)
    seeds = {data_seed(c) for c in configs}
    if rng.bit_generator.state == before or len(seeds) == 1:
        return dict.fromkeys(seeds, data), True
    out = {data_seed(first): data}
    for cfg in configs:
        s = data_seed(cfg)
        if s not in out:
            r = seed_streams(cfg["training"]["seed"], cfg["data"].get("split_seed"))["data"]
            out[s] = load(cfg["data"], r, dtype)
    return out, False


def _targets(template: Experiment, data: Data, dtype) -> dict[str, list[Targets]]:
    """A member's targets of its own data, as its single run prepares them."""
    out = {}
    for name in SPLITS:
        split = getattr(data, name)
        if split is not None:
            out[name] = [
                head_targets(h, split, data, template.model, dtype) for h in template.heads
            ]
    return out


def _weights(config: dict, n_heads: int) -> list[float]:
    outputs = config["model"]["outputs"]
    return [1.0] * n_heads if outputs is None else [float(o["weight"]) for o in outputs]


def _rates(config: dict) -> dict[int, float]:
    """The rate of each dropout layer (by layer index)."""
    out = {}
    for i, spec in enumerate(config["model"]["layers"]):
        if isinstance(spec, dict) and spec.get("type") == "dropout":
            out[i] = float(spec["rate"])
    return out
