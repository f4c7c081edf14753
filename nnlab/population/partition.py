"""Which trials can train together: the partition of a list of resolved configs into
populations, and why a trial runs alone.

Trials form a population when their configs differ only in **member-wise** keys, which each
member has its own value of:

- ``training.seed`` (and the randomness it drives: splits, initial weights, shuffles, dropout
  masks) and ``data.split_seed``;
- every layer's initializers and their options (``initializer``, ``bias_initializer``, ...);
- dropout rates (``model.layers[i].rate`` of a dropout layer);
- the loss weights of several outputs (``model.outputs[k].weight``);
- the optimizer's numbers (``lr``, ``momentum``, ``beta1``, ``beta2``, ``eps``, ``rho``,
  ``weight_decay``, ``l2``, ``clipnorm``, ``clipvalue``, ``initial_accumulator``) and its
  learning-rate schedule with its parameters;
- ``name`` and ``description``.

Anything else separates them: the data set and its options, the layers and their shapes and
activations, the loss and its options, the optimizer's kind and switches (``nesterov``,
``centered``), epochs, batch size, shuffling, dtype, early stopping, threads. A trial runs alone
when a part of it has no population version (a recurrent layer, say), when it writes
layers.csv, or when no other trial has its shape.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from nnlab.nn import LAYERS, LOSSES, OPTIMIZERS
from nnlab.nn.optimizers import SCHEDULES
from nnlab.population.layers import STACKABLE
from nnlab.population.losses import LOSSES as STACKED_LOSSES
from nnlab.population.optimizers import RULES

#: optimizer options that change what the optimizer does rather than by how much
OPTIMIZER_SWITCHES = ("name", "nesterov", "centered")
ALONE_BY_SHAPE = "no other trial has its shape (only member-wise keys may differ)"


@dataclass
class Partition:
    """``groups``: lists of indices of configs that train together (two or more each);
    ``alone``: index -> why that config trains as a single run."""

    groups: list[list[int]] = field(default_factory=list)
    alone: dict[int, str] = field(default_factory=dict)


def shape_key(config: dict) -> str:
    """What must be equal for two configs to train together: the config without its
    member-wise keys, as text."""
    c = {k: v for k, v in config.items() if k not in ("name", "description")}
    c["training"] = {k: v for k, v in c["training"].items() if k != "seed"}
    c["data"] = {k: v for k, v in c["data"].items() if k != "split_seed"}
    c["model"] = dict(c["model"])
    c["model"]["layers"] = [_layer_shape(s) for s in c["model"]["layers"]]
    if c["model"].get("outputs"):
        c["model"]["outputs"] = [{k: v for k, v in o.items() if k != "weight"}
                                 for o in c["model"]["outputs"]]  # fmt: skip
    opt = c["optimizer"]
    c["optimizer"] = (
        opt if isinstance(opt, str) else {k: v for k, v in opt.items() if k in OPTIMIZER_SWITCHES}
    )
    return json.dumps(c, sort_keys=True, default=str)


def _layer_shape(spec: dict | str) -> dict | str:
    if isinstance(spec, str):
        return spec
    out = {k: v for k, v in spec.items() if not k.endswith("initializer")}
    if spec.get("type") == "dropout":
        out.pop("rate", None)
    return out


def alone_reason(config: dict) -> str | None:
    """Why a config cannot train in a population, or None."""
    for i, spec in enumerate(config["model"]["layers"]):
        entry = LAYERS.split(spec)[0]
        if entry.factory not in STACKABLE:
            return (
                f"model.layers[{i}] is a {entry.name} layer: populations cover dense, "
                "activation, dropout and flatten layers"
            )
    outputs = config["model"]["outputs"]
    specs = [config["loss"]] if outputs is None else [o["loss"] for o in outputs]
    for spec in specs:
        entry = LOSSES.split(spec)[0]
        if entry.factory not in STACKED_LOSSES:
            return f"the loss {entry.name} has no population version"
    entry, params, _ = OPTIMIZERS.split(config["optimizer"])
    if entry.factory not in RULES:
        return f"the optimizer {entry.name} has no population version"
    schedule = SCHEDULES.split(params.get("schedule", "constant"))[0]
    if getattr(schedule.factory, "monitor", None) is not None:
        return f"the schedule {schedule.name} follows a metric: single runs follow theirs"
    training = config["training"]
    if training["log_layers"]:
        return "training.log_layers: layers.csv is written by single runs"
    if training.get("pseudo_labels") is not None:
        return "training.pseudo_labels: pseudo-labelling runs in single runs"
    return None


def partition(configs: list[dict]) -> Partition:
    """Split resolved configs into populations (in order of first appearance; each keeps the
    configs' order) and trials that run alone, with the reason."""
    out = Partition()
    groups: dict[str, list[int]] = {}
    for i, config in enumerate(configs):
        reason = alone_reason(config)
        if reason is not None:
            out.alone[i] = reason
        else:
            groups.setdefault(shape_key(config), []).append(i)
    for members in groups.values():
        if len(members) > 1:
            out.groups.append(members)
        else:
            out.alone[members[0]] = ALONE_BY_SHAPE
    out.alone = dict(sorted(out.alone.items()))
    return out
