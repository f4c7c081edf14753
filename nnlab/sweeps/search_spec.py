"""A search's spec: a sweep file's ``search:`` section, the command line's search options over
it, the objective (``metric[:min|max]``), and the rule between grids and distributions: a
search samples a list as a choice among its values, a grid refuses a distribution."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from nnlab.errors import ConfigError
from nnlab.schema import Doc, Interval, fmt
from nnlab.sweeps.axes import MAX_TRIALS, Distribution


@dataclass
class SearchSection:
    """A sweep file's ``search:``: sample the axes instead of walking their grid."""

    sampler: Annotated[
        Literal["grid", "random", "tpe", "cmaes"],
        Doc("grid: every combination (no search); random, tpe or cmaes: Optuna's samplers"),
    ] = "tpe"
    trials: Annotated[
        int, Interval(ge=1, le=MAX_TRIALS), Doc("sampled configs (each runs every seed)")
    ] = 20
    seed: Annotated[int, Interval(ge=0), Doc("the sampler's seed: the same seed, same trials")] = 0
    objective: Annotated[
        str | None,
        Doc("metric[:min|max], its last value (null: val_accuracy, else the first val_ metric)"),
    ] = None
    pruner: Annotated[
        Literal["none", "median", "asha"],
        Doc("stop hopeless trials early on their per-epoch objective (asha: successive halving)"),
    ] = "none"


@dataclass
class Search:
    """How a search samples: Optuna's ``sampler`` (random, tpe, cmaes), ``trials`` sampled
    configs, the sampler's ``seed``, the ``metric`` told to the study (None: the run's
    validation accuracy, else its first validation metric) and its ``direction`` (None: from
    the metric's name), the ``pruner`` (none, median, asha)."""

    sampler: str
    trials: int
    seed: int = 0
    metric: str | None = None
    direction: str | None = None  # "maximize" or "minimize"
    pruner: str = "none"


def search_of(given: dict | None, cli: dict[str, Any], source: str) -> Search | None:
    """The search the file's ``search:`` and the command line's options ask for (None: a
    grid). Search options without a sampler that searches are an error."""
    cli = {k: v for k, v in cli.items() if v is not None}
    opts = {**(given or {}), **cli}
    sampler = opts.get("sampler", "tpe" if given is not None else "grid")
    if sampler == "grid":
        extra = [k for k in cli if k != "sampler"]
        if extra:
            flag = {"seed": "sampler-seed"}.get(extra[0], extra[0])
            raise ConfigError(
                f"--{flag} applies to a search: add --sampler random, tpe or cmaes "
                "(or a search: section to the sweep file)",
                source=source,
            )
        return None
    defaults = SearchSection()
    where = "--objective" if "objective" in cli else "search.objective"
    metric, direction = parse_objective(opts.get("objective"), where, source)
    return Search(
        sampler=sampler,
        trials=opts.get("trials", defaults.trials),
        seed=opts.get("seed", defaults.seed),
        metric=metric,
        direction=direction,
        pruner=opts.get("pruner", defaults.pruner),
    )


def parse_objective(text: str | None, where: str, source: str) -> tuple[str | None, str | None]:
    """``val_accuracy``, ``val_loss:min`` -> (metric, "maximize"/"minimize"/None)."""
    if text is None:
        return None, None
    metric, _, way = str(text).partition(":")
    metric, way = metric.strip(), way.strip()
    if not metric or way not in ("", "min", "max"):
        raise ConfigError(
            f"expected metric[:min|max], e.g. val_accuracy or val_loss:min; got {fmt(text)}",
            where,
            source,
        )
    return metric, {"min": "minimize", "max": "maximize"}.get(way)


def search_axes(axes: list, search: Search | None, source: str) -> list:
    """A grid's axes are lists (a distribution is an error); a search samples a list (or a
    range/linspace/logspace) as a choice among its values."""
    out = []
    for axis in axes:
        where = f"-g {axis.key}" if axis.origin == "-g" else f"axes.{axis.key}"
        if isinstance(axis.values, Distribution):
            if search is None:
                raise ConfigError(
                    f"{axis.values} is a distribution, which a search samples; a grid takes a "
                    "list, range(...), linspace(...) or logspace(...): add --sampler random, "
                    "tpe or cmaes (or a search: section)",
                    where,
                    source if axis.origin != "-g" else "-g",
                )
            out.append(axis)
        elif search is not None:
            choice = Distribution("choice", choices=tuple(axis.values))
            out.append(dataclasses.replace(axis, values=choice))
        else:
            out.append(axis)
    if search is not None and not out:
        raise ConfigError("a search needs at least one axis to sample (axes: or -g)", source=source)
    return out
