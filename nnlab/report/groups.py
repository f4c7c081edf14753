"""The runs of a report by config (seeds together), and values made ready for JSON."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnlab.compare.keys import SEED_KEY, differences, group_key
from nnlab.compare.table import Run


@dataclass
class Group:
    """Runs whose configs differ only by their seed."""

    label: str
    keys: dict[str, str]  # the keys that differ between groups (short names): values as text
    members: list[int]  # indices into the runs


def find_groups(runs: list[Run]) -> list[Group]:
    """The runs by config, seeds together, in the order they first come; each named by the
    keys that differ between the groups (a run's name when nothing does)."""
    order: dict[str, list[int]] = {}
    for i, r in enumerate(runs):
        order.setdefault(group_key(r.config), []).append(i)
    firsts = [runs[m[0]] for m in order.values()]
    diffs = differences([r.config for r in firsts], [r.flat for r in firsts], (SEED_KEY,))
    out = []
    for d, members, first in zip(diffs, order.values(), firsts, strict=True):
        label = " ".join(f"{k}={v}" for k, v in d.items()) or first.label
        out.append(Group(label, d, members))
    return out


def group_of(groups: list[Group], n: int) -> list[int]:
    """The group of each of ``n`` runs."""
    out = [0] * n
    for g, group in enumerate(groups):
        for i in group.members:
            out[i] = g
    return out


def clean(x: Any) -> Any:
    """A value for JSON: Python scalars, None for NaN and infinities, other values as text."""
    if hasattr(x, "item") and not isinstance(x, str):
        x = x.item()
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if x is None or isinstance(x, bool | int | str):
        return x
    return str(x)


def rounded(values: np.ndarray, digits: int = 5) -> list:
    """Values with ``digits`` significant digits (None for NaN): the curves' JSON stays small."""
    return [
        float(f"{v:.{digits}g}") if math.isfinite(v) else None
        for v in np.asarray(values, dtype=float).tolist()
    ]
