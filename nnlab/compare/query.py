"""The column names and the ``--where`` language of compare and plot: ``optimizer.lr<0.1``,
``status==completed``, ``val_accuracy>=0.9``; a column by its full dotted key or a unique
suffix of it."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from nnlab.config import parse_yaml
from nnlab.errors import ConfigError, did_you_mean


def resolve_column(name: str, columns: list[str], what: str, prefer: list[str] = ()) -> str:
    """A column by its exact name, with ``[i]`` for ``.i``, without its ``.name``, or by a
    unique dotted suffix (``lr`` for ``optimizer.lr``); among several suffix matches, the one
    in ``prefer`` (the keys that differ, which the table shows by that suffix)."""
    name = re.sub(r"\[(-?\d+)\]", r".\1", name.strip())
    if name in columns:
        return name
    for sub in ("name", "type"):
        if f"{name}.{sub}" in columns:
            return f"{name}.{sub}"
    matches = [
        c
        for c in columns
        if c.endswith("." + name) or c.endswith(f".{name}.name") or c.endswith(f".{name}.type")
    ]
    preferred = [m for m in matches if m in prefer]
    if len(matches) == 1 or len(preferred) == 1:
        return matches[0] if len(matches) == 1 else preferred[0]
    if len(matches) > 1:
        raise ConfigError(f"{name!r} is ambiguous: {', '.join(matches)}", source=what)
    shown = [c for c in columns if "." not in c or c.split(".")[-1].startswith("best")]
    raise ConfigError(
        f"no column {name!r}.{did_you_mean(name, columns)} Columns: the config keys, "
        + ", ".join(shown),
        source=what,
    )


_WHERE = re.compile(r"^\s*([^\s<>=!]+)\s*(==|!=|<=|>=|=|<|>)\s*(.*?)\s*$")


def is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


@dataclass
class Condition:
    """``KEY OP VALUE`` of ``--where``."""

    text: str
    key: str
    op: str
    value: Any

    def test(self, cell: Any) -> bool:
        missing = cell is None or (isinstance(cell, float) and math.isnan(cell))
        if self.op in ("==", "!="):
            equal = self._equal(cell, missing)
            return equal if self.op == "==" else not equal
        if missing:
            return False
        if not is_number(cell):
            raise ConfigError(
                f"{self.text!r}: {self.key} holds {cell!r}, not a number; "
                f"{self.op} compares numbers (use == or !=)",
                source="--where",
            )
        return {
            "<": cell < self.value,
            "<=": cell <= self.value,
            ">": cell > self.value,
            ">=": cell >= self.value,
        }[self.op]

    def _equal(self, cell: Any, missing: bool) -> bool:
        if self.value is None:
            return missing
        if missing:
            return False
        if isinstance(cell, str) or isinstance(self.value, str):
            return str(cell) == str(self.value)
        return cell == self.value and isinstance(cell, bool) == isinstance(self.value, bool)


def parse_where(text: str, columns: list[str], prefer: list[str] = ()) -> Condition:
    """``optimizer.lr<0.1``, ``status==completed``, ``val_accuracy>=0.9``: the value is YAML."""
    m = _WHERE.match(text)
    if m is None or not m.group(3):
        raise ConfigError(
            f"{text!r}: expected KEY OP VALUE with OP one of == != < <= > >=, "
            "e.g. 'optimizer.lr<0.1' or 'status==completed'",
            source="--where",
        )
    key = resolve_column(m.group(1), columns, "--where", prefer)
    op = "==" if m.group(2) == "=" else m.group(2)
    value = parse_yaml(m.group(3), "--where")
    if op not in ("==", "!=") and not is_number(value):
        raise ConfigError(f"{text!r}: {op} compares numbers, got {value!r}", source="--where")
    return Condition(text, key, op, value)


def matches(recs: list[dict[str, Any]], where: Iterable[str], prefer: list[str] = ()) -> list[bool]:
    """Which records satisfy every ``--where`` condition."""
    columns: dict[str, None] = {}
    for rec in recs:
        columns.update(dict.fromkeys(rec))
    conditions = [parse_where(w, list(columns), prefer) for w in where]
    return [all(c.test(rec.get(c.key)) for c in conditions) for rec in recs]
