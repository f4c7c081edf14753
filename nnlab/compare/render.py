"""A compare table as text: a terminal table (fitted to a width), markdown, csv or json."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from nnlab.compare.keys import fmt_config, short_names
from nnlab.compare.table import GROUP_STATS, Table
from nnlab.compare.verdict import VERDICT_STATS, p_text, verdict_notes, verdict_text

FORMATS = ("table", "markdown", "csv", "json")
LONGEST_CELL = 40  # a fitted table cuts longer cells to this many characters
INTERVAL_NOTE = "mean ± half-width of the 95% t-interval of the mean (runs with a value)"
STD_NOTE = (
    "mean ± sample standard deviation (runs with a value); pip install 'nnlab[stats]' "
    "shows 95% intervals"
)


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
    return 2 if col == "seconds" else 0 if col in ("epochs", "runs") else 4


def py(x: Any) -> Any:
    """A NumPy scalar as the Python value."""
    return x.item() if hasattr(x, "item") and not isinstance(x, str) else x


def json_value(x: Any) -> Any:
    """A cell for JSON: NaN as null, infinities as text."""
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else str(x)
    return x


def mean_std(mean: float, std: float, n: int, digits: int) -> str:
    """``0.9712 ± 0.0040 (3)``: the spread (a standard deviation or an interval's half-width)
    with as many decimals as the mean."""
    if n == 0 or mean != mean:
        return "-"
    text = fmt_metric(float(mean), digits) if digits else f"{mean:.1f}"
    if std == std:
        fixed = "e" not in text and "inf" not in text
        places = digits or 1
        text += f" ± {f'{std:.{places}f}' if fixed else fmt_metric(float(std), places)}"
    return f"{text} ({int(n)})"


@dataclass
class Shown:
    """A table as cells of text: what the terminal and markdown formats print."""

    headers: list[str]
    rows: list[list[str]]
    align: list[str]
    kinds: list[str]  # per column: run, key, headline, metric, test, best, status, timing,
    # diff (a verdict's difference and p), verdict
    note: str = ""  # what ± means in a seed-grouped table (and the verdicts, below it)
    left_out: list[str] | None = None  # columns a fitted table did not show


def render(table: Table, fmt: str = "table", width: int | None = None) -> str:
    """The table as text: ``table`` (terminal; fitted to ``width`` columns when given, with a
    last line naming what was left out), ``markdown``, ``csv`` or ``json``. Below a table of
    seed groups, a line says what ``±`` is."""
    if fmt in ("table", "markdown"):
        shown = display(table)
        if fmt == "table" and width:
            shown = fit(shown, width)
        text = aligned(shown) if fmt == "table" else markdown(shown)
        wrap = width if fmt == "table" else None
        notes = [shown.note, *_verdict_lines(table, wrap), left_out_note(shown, width)]
        return text + "".join(f"\n\n{n}" for n in notes if n)
    frame = table.frame[_raw_columns(table)]
    if fmt == "csv":
        return frame.to_csv(index=False, lineterminator="\n").rstrip("\n")
    if fmt == "json":
        records = [
            {k: json_value(py(v)) for k, v in row.items()} for row in frame.to_dict("records")
        ]
        return json.dumps(records, indent=2)
    raise ValueError(f"unknown format {fmt!r}")


def aligned(shown: Shown) -> str:
    """Columns of text two spaces apart under a dashed rule, each as wide as its widest cell."""
    widths = _widths(shown.headers, shown.rows)

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if a == "right" else c.ljust(w)
            for c, w, a in zip(cells, widths, shown.align, strict=True)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(shown.headers), rule, *(line(r) for r in shown.rows)])


def _widths(headers: list[str], rows: list[list[str]]) -> list[int]:
    return [max([len(h), *(len(r[j]) for r in rows)]) for j, h in enumerate(headers)]


def markdown(shown: Shown) -> str:
    """Cells of text as a GitHub markdown table."""
    from tabulate import tabulate

    return tabulate(
        shown.rows,
        headers=shown.headers,
        tablefmt="github",
        colalign=shown.align,
        disable_numparse=True,
    )


def display(table: Table) -> Shown:
    """Headers, cells and alignments: config keys by their short names (``short_names``), a
    metric's best value with its epoch in one cell, seed groups as mean ± interval (n)."""
    taken = set(table.columns) - set(table.config_keys)  # metric and status columns
    names = short_names(table.config_keys, taken)
    headline = table.verdict.metric if table.verdict else _headline(table)
    shown = Shown([], [], [], [])
    cells: list[list[str]] = []
    if table.verdict is not None:  # the rows' numbers, which --against N names
        shown.headers.append("#")
        cells.append([str(i) for i in table.frame["row"]])
        shown.align.append("right")
        shown.kinds.append("run")
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
        shown.headers.append(header)
        cells.append(cell)
        shown.align.append(side)
        shown.kinds.append(_kind(table, col, headline))
        i += 1
    shown.rows = [list(r) for r in zip(*cells, strict=True)] if cells else []
    shown.note = interval_note(table)
    return shown


def interval_note(table: Table) -> str:
    """What ``±`` means in a table of seed groups (empty for a table of runs)."""
    if not (table.grouped and table.aggregated & set(table.columns)):
        return ""
    return INTERVAL_NOTE if _has_intervals(table) else STD_NOTE


def _headline(table: Table) -> str | None:
    """The metric a fitted table keeps: the first accuracy shown, else the first metric."""
    metrics = [
        c
        for c in table.columns
        if c not in table.config_keys
        and c not in ("run", "runs", "status", "epochs", "seconds", "seeds")
        and "." not in c
        and not c.startswith("test_")
    ]
    return next((m for m in metrics if "accuracy" in m), metrics[0] if metrics else None)


def _kind(table: Table, col: str, headline: str | None) -> str:
    if col in ("run", "runs"):
        return "run"
    if table.verdict is not None and col in table.verdict.columns():
        return "verdict" if col.endswith(".verdict") else "diff"
    if col in table.config_keys:
        return "key"
    if col == headline:
        return "headline"
    if col in ("status", "epochs", "seconds", "seeds"):
        return "status" if col == "status" else "timing"
    if col.startswith("test_"):
        return "test"
    return "best" if ".best" in col else "metric"


def _has_intervals(table: Table) -> bool:
    f = table.frame
    return any(f"{c}.low" in f.columns and f[f"{c}.low"].notna().any() for c in table.aggregated)


# ---------------------------------------------------------------- fitting a width

#: which columns a fitted table leaves out first (kinds not listed are always kept)
DROP_ORDER = ("timing", "best", "test", "metric", "diff", "key")


def fit(shown: Shown, width: int) -> Shown:
    """The columns that fit in ``width`` characters: the run, the headline metric and the
    status always; config keys (the differing keys, first) before metrics. Left out first,
    right to left: timing, best values, test metrics, other metrics, then the config keys
    with the fewest distinct values. Cells longer than ``LONGEST_CELL`` are cut (``…``)."""
    rows = [[_cut(c) for c in row] for row in shown.rows]
    widths = _widths(shown.headers, rows)
    keep = list(range(len(shown.headers)))
    left_out = []
    for kind in DROP_ORDER:
        order = [j for j in reversed(keep) if shown.kinds[j] == kind]
        if kind == "key":  # the least telling first: fewest distinct values
            order.sort(key=lambda j: len({r[j] for r in rows}))
        for j in order:
            if sum(widths[k] for k in keep) + 2 * (len(keep) - 1) <= width:
                break
            keep.remove(j)
            left_out.append(shown.headers[j])
    return Shown(
        [shown.headers[j] for j in keep],
        [[r[j] for j in keep] for r in rows],
        [shown.align[j] for j in keep],
        [shown.kinds[j] for j in keep],
        shown.note,
        [h for h in shown.headers if h in left_out],
    )


def _cut(text: str) -> str:
    return text if len(text) <= LONGEST_CELL else text[: LONGEST_CELL - 1] + "…"


def left_out_note(shown: Shown, width: int | None) -> str:
    """``left out to fit 120 columns: seconds, epochs (...)``; empty when nothing was."""
    if not shown.left_out:
        return ""
    import textwrap

    names = ", ".join(h.removesuffix(" (epoch)") for h in shown.left_out)
    text = (
        f"left out to fit {width} columns: {names}. --width 0 shows every column, -c picks "
        "columns, --format csv has them all"
    )
    return textwrap.fill(text, width or 100, break_on_hyphens=False)


# ---------------------------------------------------------------- columns


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
        return col, _aggregated(f, col), "right"
    if table.verdict is not None and col in table.verdict.columns():
        return _verdict_column(table, col)
    if col not in f.columns:
        return names.get(col, col), ["-"] * len(f), "left"
    values = list(f[col])
    if col in table.config_keys:
        return names.get(col, col), [fmt_config(py(v)) for v in values], "left"
    if col in ("run", "runs", "status", "seeds"):
        return col, [fmt_config(py(v)) for v in values], "right" if col == "runs" else "left"
    if col in ("epochs", "best_epoch") or col.endswith(".best_epoch"):
        values = [int(v) if isinstance(v, float) and v.is_integer() else v for v in values]
    return col, [fmt_metric(py(v), digits_of(col)) for v in values], "right"


def _aggregated(f: Any, col: str) -> list[str]:
    """``mean ± half-width (n)`` of the 95% interval, or ``mean ± std (n)`` without one."""
    d = digits_of(col)
    mean, std, n = f[f"{col}.mean"], f[f"{col}.std"], f[f"{col}.n"]
    low = f[f"{col}.high"] - mean if f"{col}.high" in f.columns else None
    out = []
    for i, (m, s, k) in enumerate(zip(mean, std, n, strict=True)):
        half = low.iloc[i] if low is not None else math.nan
        out.append(mean_std(m, half if half == half else s, k, d))
    return out


def _raw_columns(table: Table) -> list[str]:
    out = []
    for col in table.columns:
        if col in table.aggregated:
            out += [f"{col}.{s}" for s in GROUP_STATS if f"{col}.{s}" in table.frame.columns]
        elif table.verdict is not None and col == f"{table.verdict.metric}.diff":
            out += [f"{table.verdict.metric}.{s}" for s in VERDICT_STATS]
        elif col in table.frame.columns and col not in out:
            out.append(col)
    if table.grouped and "seeds" in table.frame.columns and "seeds" not in out:
        out.insert(1, "seeds")
    if table.verdict is not None:
        out.insert(0, "row")
    return out


# ---------------------------------------------------------------- verdicts


def _verdict_column(table: Table, col: str) -> tuple[str, list[str], str]:
    """``diff``: the difference to the reference ± the half-width of its 95% interval; ``p``;
    ``verdict``: ``* worse``, ``≈ within noise``, ..."""
    f, metric = table.frame, table.verdict.metric
    verdicts = list(f[f"{metric}.verdict"])
    if col.endswith(".verdict"):
        return "verdict", [verdict_text(v) for v in verdicts], "left"
    if col.endswith(".p"):
        return "p", [p_text(float(p)) for p in f[col]], "right"
    d = digits_of(metric)
    cells = []
    for diff, high, verdict in zip(f[col], f[f"{metric}.diff_high"], verdicts, strict=True):
        if verdict == "reference" or diff != diff:
            cells.append("-")
        else:
            sign = "+" if diff >= 0 else "-"
            half = f" ± {high - diff:.{d}f}" if high == high else ""
            cells.append(f"{sign}{abs(diff):.{d}f}{half}")
    return "diff", cells, "right"


def _verdict_lines(table: Table, width: int | None) -> list[str]:
    """What the verdict columns are, and the seeds needed, wrapped to the table's width."""
    if table.verdict is None:
        return []
    import textwrap

    notes = verdict_notes(table.verdict)
    return [textwrap.fill(n, width, break_on_hyphens=False) for n in notes] if width else notes
