"""The values of a sweep's axes: ``KEY=V1,V2,...`` from the command line (each value YAML,
split at commas outside brackets and quotes) and ``range(...)``, ``linspace(...)``,
``logspace(...)`` expressions, bounded by the trials a sweep may have."""

from __future__ import annotations

import math
import re

from nnlab.config import parse_yaml
from nnlab.errors import ConfigError
from nnlab.schema import fmt

MAX_TRIALS = 10_000  # grid points times seeds, checked before the grid is built

_EXPRESSION = re.compile(r"^\s*(range|linspace|logspace)\s*\((.*)\)\s*$", re.S)


def split_values(text: str) -> list[str]:
    """``a,b,c`` -> ['a', 'b', 'c'], splitting only at commas outside brackets and quotes, so
    that ``{name: random_normal, stddev: 1},he_normal`` is two values."""
    parts: list[str] = []
    depth, quote, start = 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def _clean(x: float) -> float | int:
    """Round away float noise (0.30000000000000004 -> 0.3)."""
    return float(f"{x:.12g}") if isinstance(x, float) else x


def expression(text: str, where: str, source: str | None = None) -> list | None:
    """The values of ``range(start, stop[, step])`` (stop excluded, as in Python and Hydra),
    ``linspace(a, b, n)`` or ``logspace(a, b, n)`` (10**a .. 10**b); None if ``text`` is not
    one of them."""
    m = _EXPRESSION.match(text)
    if m is None:
        return None
    fn = m.group(1)
    args = [parse_yaml(a, source=source or where) for a in split_values(m.group(2))]
    if not all(isinstance(a, int | float) and not isinstance(a, bool) for a in args):
        raise ConfigError(f"{fn}(...) takes numbers, got {fmt(text.strip())}", where, source)
    if fn == "range":
        if not 1 <= len(args) <= 3:
            raise ConfigError(
                "range takes (stop), (start, stop) or (start, stop, step)", where, source
            )
        start, stop, step = ([0, *args, 1] if len(args) == 1 else [*args, 1])[:3]
        if step == 0:
            raise ConfigError("range: the step must not be 0", where, source)
        exact = all(isinstance(a, int) for a in (start, stop, step))
        try:  # the count first, in integers when they are (len(range) stops at 2**63)
            n = -((start - stop) // step) if exact else (stop - start) / step - 1e-9
        except OverflowError:  # an integer beyond the floats
            n = math.inf
        n = max(0, math.ceil(n)) if math.isfinite(n) else n
        _check_count(fn, n, where, source)
    else:
        if len(args) != 3 or not isinstance(args[2], int) or args[2] < 1:
            raise ConfigError(
                f"{fn} takes (start, stop, count) with an integer count >= 1", where, source
            )
        a, b, n = args
        _check_count(fn, n, where, source)
    try:
        if fn != "range":
            points = [a + (b - a) * i / (n - 1) if n > 1 else a for i in range(n)]
            values = [_clean(10.0**p if fn == "logspace" else float(p)) for p in points]
        elif exact:
            values = list(range(start, stop, step))
        else:
            values = [_clean(start + i * step) for i in range(n)]
    except OverflowError:
        raise ConfigError(
            f"{fn}(...) gives numbers beyond the floating-point range (1.8e308)", where, source
        ) from None
    if not values:
        raise ConfigError(f"{text.strip()} gives no values", where, source)
    return values


def _check_count(fn: str, n: float, where: str, source: str | None) -> None:
    """An axis of more values than a sweep may have trials is refused before it is built."""
    if not n <= MAX_TRIALS:  # NaN too (a step of inf)
        count = f"{n:,}" if isinstance(n, int) else "infinitely many"
        raise ConfigError(
            f"{fn}(...) gives {count} values, more than the {MAX_TRIALS:,} trials a sweep may have",
            where,
            source,
        )


def parse_axis(text: str) -> tuple[str, list]:
    """``KEY=V1,V2,...`` (each value YAML) or ``KEY=range(...)`` -> (key, values)."""
    if "=" not in text:
        raise ConfigError(
            f"{fmt(text)}: expected KEY=V1,V2,..., e.g. optimizer.lr=0.1,0.01", source="-g"
        )
    key, _, rest = text.partition("=")
    key = key.strip()
    where = f"-g {key}"
    values = expression(rest, key, source="-g")
    if values is None:
        items = split_values(rest)
        if any(item == "" for item in items):
            raise ConfigError(f"an empty value in {fmt(rest)}", key, "-g")
        values = [parse_yaml(item, source=where) for item in items]
    return key, values
