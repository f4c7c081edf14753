"""The sweep section of a report: the axes (the config keys that differ between the groups of
seeds) against the objective, for a parallel-coordinates plot and a plot of the objective
against each axis, and each axis's share of the objective's variance (``nnlab.importance``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nnlab.compare.table import Run
from nnlab.errors import NnlabError
from nnlab.report.groups import Group, clean

LOG_SPREAD = 20.0  # a positive numeric axis spanning this factor or more is drawn in log
FANOVA_BOOT_GROUPS = 60  # fANOVA's bootstrap (20 forests) for up to this many configs


def sweep_data(
    runs: list[Run], groups: list[Group], recs: list[dict[str, Any]], objective: str
) -> dict | None:
    """The axes and the objective, per group (``mean`` over its runs with a value) and per run
    (``values``); None when fewer than two groups differ in anything."""
    names = list(dict.fromkeys(k for g in groups for k in g.keys))
    if len(groups) < 2 or not names:
        return None
    y = [clean(float(recs[i].get(objective, math.nan))) for i in range(len(runs))]
    means = []
    for g in groups:
        vals = [y[i] for i in g.members if y[i] is not None]
        means.append(float(np.mean(vals)) if vals else None)
    axes = [_axis(name, [g.keys.get(name, "-") for g in groups]) for name in names]
    return {
        "axes": axes,
        "mean": means,
        "n": [sum(y[i] is not None for i in g.members) for g in groups],
        "values": y,
        "importance": _importance(runs, groups, objective),
    }


def _axis(name: str, texts: list[str]) -> dict:
    """An axis's value per group: numbers (``log`` when positive and spread widely) or
    categories in the order they come."""
    try:
        numbers = [float(t) for t in texts]
    except ValueError:
        numbers = None
    if numbers is not None and all(math.isfinite(v) for v in numbers):
        positive = min(numbers) > 0
        log = positive and max(numbers) / min(numbers) >= LOG_SPREAD
        return {"name": name, "numeric": True, "log": log, "values": numbers}
    return {"name": name, "numeric": False, "values": texts, "levels": list(dict.fromkeys(texts))}


def _importance(runs: list[Run], groups: list[Group], objective: str) -> dict:
    """Each axis's share of the variance of the objective over the configs, as ``nnlab
    importance`` computes it (``nnlab.compare.axes.runs_importance``: the exact functional
    ANOVA on a complete grid, fANOVA otherwise, with its bootstrap interval over seeds); or
    the reason it cannot be computed. fANOVA refits its forest for each bootstrap draw: beyond
    ``FANOVA_BOOT_GROUPS`` configs of an incomplete grid the page goes without intervals."""
    from nnlab.compare.axes import importance_rows, runs_importance

    n_boot = {"fanova": 0} if len(groups) > FANOVA_BOOT_GROUPS else None
    try:
        imp, _ = runs_importance(runs, objective, n_boot=n_boot)
    except (NnlabError, ImportError, ValueError) as e:
        return {"error": str(e)}
    return {
        "method": imp.method,
        "objective": objective,
        "terms": [
            {k: t[k] if k == "term" else clean(t[k]) for k in ("term", "share", "low", "high")}
            for t in importance_rows(imp)
        ],
        "seed_share": clean(imp.seed_share),
        "notes": imp.notes,
    }
