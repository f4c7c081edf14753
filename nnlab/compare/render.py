"""A compare table as text: a terminal table, markdown, csv or json."""

from __future__ import annotations

import json
import math
from typing import Any

from nnlab.compare.keys import fmt_config, short_names
from nnlab.compare.table import Table

FORMATS = ("table", "markdown", "csv", "json")


def fmt_metric(x: Any, digits: int = 4) -> str:
    """A metric for reading: ``digits`` decimals, or significant digits for very large or
    very small values; ``-`` for none."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        if x != 0 and (abs(x) >= 1e5 or abs(x) < 10 ** -(digits - 1)):
            return f"{x:.{digits}g}"
        return f"{x:.{digits}f}"
    return str(x)


def digits_of(col: str) -> int:
    """Decimals a column is shown with."""
    return 2 if col == "seconds" else 1 if col == "epochs" else 4


def py(x: Any) -> Any:
    """A NumPy scalar as the Python value."""
    return x.item() if hasattr(x, "item") and not isinstance(x, str) else x


def json_value(x: Any) -> Any:
    """A cell for JSON: NaN as null, infinities as text."""
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else str(x)
    return x


def mean_std(mean: float, std: float, n: int, digits: int) -> str:
    """``0.9712 ± 0.0040 (3)``: the std with as many decimals as the mean."""
    if n == 0 or mean != mean:
        return "-"
    text = fmt_metric(float(mean), digits)
    if std == std:
        fixed = "e" not in text and "inf" not in text
        text += f" ± {f'{std:.{digits}f}' if fixed else fmt_metric(float(std), digits)}"
    return f"{text} ({int(n)})"


def render(table: Table, fmt: str = "table") -> str:
    """The table as text: ``table`` (terminal), ``markdown``, ``csv`` or ``json``."""
    if fmt in ("table", "markdown"):
        from tabulate import tabulate

        headers, rows, align = _display(table)
        tablefmt = "github" if fmt == "markdown" else "simple"
        return tabulate(
            rows, headers=headers, tablefmt=tablefmt, colalign=align, disable_numparse=True
        )
    frame = table.frame[_raw_columns(table)]
    if fmt == "csv":
        return frame.to_csv(index=False, lineterminator="\n").rstrip("\n")
    if fmt == "json":
        records = [
            {k: json_value(py(v)) for k, v in row.items()} for row in frame.to_dict("records")
        ]
        return json.dumps(records, indent=2)
    raise ValueError(f"unknown format {fmt!r}")


def _display(table: Table) -> tuple[list[str], list[list[str]], list[str]]:
    """Headers, rows of text and alignments for the terminal and markdown: config keys by their
    short names, a metric's best value with its epoch in one cell, seed groups as mean ± std."""
    names = short_names(table.config_keys)
    taken = set(table.columns) - set(table.config_keys)  # metric and status columns
    names = {k: (k if v in taken else v) for k, v in names.items()}  # config "loss" != metric
    headers, cells, align = [], [], []
    cols = list(table.columns)
    i = 0
    while i < len(cols):
        col = cols[i]
        nxt = cols[i + 1] if i + 1 < len(cols) else None
        if not table.grouped and col.endswith(".best") and nxt == f"{col}_epoch":
            header, cell, side = _best_with_epoch(table, col, nxt)
            i += 1
        else:
            header, cell, side = _column(table, col, names)
        headers.append(header)
        cells.append(cell)
        align.append(side)
        i += 1
    rows = [list(r) for r in zip(*cells, strict=True)] if cells else []
    return headers, rows, align


def _best_with_epoch(table: Table, col: str, epoch_col: str) -> tuple[str, list[str], str]:
    f = table.frame
    cells = [
        f"{fmt_metric(v)} ({fmt_metric(int(e) if e == e else e)})" if v == v else "-"
        for v, e in zip(f[col], f[epoch_col], strict=True)
    ]
    return f"{col} (epoch)", cells, "right"


def _column(table: Table, col: str, names: dict[str, str]) -> tuple[str, list[str], str]:
    f = table.frame
    if col in table.aggregated:
        d = digits_of(col)
        mean, std, n = f[f"{col}.mean"], f[f"{col}.std"], f[f"{col}.n"]
        return col, [mean_std(m, s, k, d) for m, s, k in zip(mean, std, n, strict=True)], "right"
    if col not in f.columns:
        return names.get(col, col), ["-"] * len(f), "left"
    values = list(f[col])
    if col in table.config_keys:
        return names.get(col, col), [fmt_config(py(v)) for v in values], "left"
    if col in ("run", "runs", "status", "seeds"):
        return col, [fmt_config(py(v)) for v in values], "right" if col == "runs" else "left"
    return col, [fmt_metric(py(v), digits_of(col)) for v in values], "right"


def _raw_columns(table: Table) -> list[str]:
    out = []
    for col in table.columns:
        if col in table.aggregated:
            out += [f"{col}.mean", f"{col}.std", f"{col}.n"]
        elif col in table.frame.columns:
            out.append(col)
    if table.grouped and "seeds" in table.frame.columns and "seeds" not in out:
        out.insert(1, "seeds")
    return out
