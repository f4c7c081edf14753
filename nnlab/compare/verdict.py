"""Verdicts in a table of seed groups: every row against a reference row (the best, or one named
by its number or by ``--where``-style conditions) on one metric column, by ``nnlab.stats``.

Each row's values of the metric over its seeds are compared with the reference row's: by the
paired t-test on the per-seed differences where both rows ran the same seeds, else by Welch's
t-test; the difference of the means, its 95% interval, the p-value, a verdict (better, worse,
within noise, too few seeds) and the seeds per row that would tell the row from the reference.
Below the table: the seeds that would tell the two best rows apart. The compare table, its
CSV/JSON columns and the HTML report all come from ``add_verdicts``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nnlab.compare.query import matches
from nnlab.errors import ConfigError, did_you_mean
from nnlab.metrics import higher_is_better

if TYPE_CHECKING:
    import pandas as pd

#: the columns a verdict adds after its metric ``M`` (as ``M.diff``, ...) in csv and json
VERDICT_STATS = ("diff", "diff_low", "diff_high", "p", "p_exact", "test", "verdict", "seeds_needed")
#: what the terminal and markdown tables show of them: ``M.diff`` (± its interval), p, verdict
SHOWN_STATS = ("diff", "p", "verdict")
SEED_COLUMN = "training.seed"


@dataclass(frozen=True)
class TableVerdicts:
    """The verdicts of a table: on ``metric``, every row against row ``reference`` (0-based
    positions in the table as printed, before ``--top``); ``best`` and ``runner_up`` by mean
    and the ``seeds_needed`` per row to tell them apart; the test each row used."""

    metric: str
    higher: bool
    reference: int
    best: int
    runner_up: int | None
    seeds_needed: float
    tests: tuple[str, ...]
    seeds: int  # the most seeds any row has now

    def columns(self) -> list[str]:
        """The verdict columns a table shows after its metric."""
        return [f"{self.metric}.{s}" for s in SHOWN_STATS]


def default_objective(metrics: Sequence[str]) -> str | None:
    """The metric to rank by when none is named: the first validation accuracy, else the first
    validation metric, else the first accuracy, else the first metric (in metrics.csv's order:
    ``val_accuracy`` for a classifier, ``val_loss`` for a regression)."""
    val = [m for m in metrics if m.startswith("val_")]
    for pool in (val, metrics):
        acc = [m for m in pool if "accuracy" in m]
        if acc:
            return acc[0]
        if pool:
            return pool[0]
    return None


def check_objective(name: str, columns: Sequence[str], metrics: Sequence[str], source: str) -> str:
    """A metric column (``val_accuracy``, ``test_accuracy``, ``val_loss.best``) among
    ``columns``, or a ConfigError naming the metric columns there are."""
    if name in columns:
        return name
    raise ConfigError(
        f"no column {name!r} in these runs.{did_you_mean(name, list(columns))} Metric "
        f"columns: {', '.join(metrics)}",
        source=source,
    )


def table_objective(shown: Sequence[str], metric_columns: Sequence[str], fallback: str) -> str:
    """The metric a table's verdicts are on when none is named: the first accuracy among the
    last values shown (``val_accuracy``), else among every metric column shown
    (``test_accuracy``, ``val_accuracy.best``), else the first such column, else ``fallback``."""
    metrics = [
        c
        for c in shown
        if c in metric_columns and c not in ("epochs", "seconds") and not c.endswith("_epoch")
    ]
    plain = [c for c in metrics if "." not in c and not c.startswith("test_")]
    for pool in (plain, metrics):
        acc = [c for c in pool if "accuracy" in c]
        if acc or pool:
            return (acc or pool)[0]
    return fallback


def add_verdicts(
    frame: pd.DataFrame,
    recs: list[dict[str, Any]],
    members: list[list[int]],
    metric: str,
    against: Sequence[str] = ("best",),
    rows: Sequence[dict[str, Any]] = (),
    prefer: Sequence[str] = (),
) -> TableVerdicts:
    """Add the verdict columns of ``metric`` to a table of seed groups, in place.

    Parameters
    ----------
    frame : DataFrame, a row per group
        The table as it will be printed (sorted); its index is the group's number.
    recs : list of dict
        A record per run (``nnlab.compare.table.record``): the metric and ``training.seed``.
    members : list of list of int
        For each group (by number), its runs: indices into ``recs``.
    metric : str
        The column compared.
    against : sequence of str
        ``best``; a row number as printed (1 is the first row); or ``--where`` conditions
        (ANDed) that exactly one row satisfies.
    rows : sequence of dict
        What the conditions are read on: a dict per row of ``frame`` (column -> value).
    prefer : sequence of str
        The config keys shown (a condition's short key names one of them first).

    Adds ``M.diff``, ``M.diff_low``, ``M.diff_high`` (the row's mean minus the reference's, and
    its 95% interval), ``M.p``, ``M.p_exact`` (the exact sign-flip test, paired rows),
    ``M.test``, ``M.verdict`` and ``M.seeds_needed`` (per row, to tell it from the reference).
    """
    from nnlab import stats

    groups = [_values(recs, members[g], metric) for g in frame.index]
    higher = higher_is_better(metric)
    ref = _reference(len(frame), rows, against, prefer)
    found = stats.verdicts(groups, against=ref, higher_is_better=higher)
    ref_values, ref_seeds = groups[found.reference]
    needed = [
        math.nan
        if i == found.reference
        else stats.seeds_needed(v, ref_values, seeds=s, reference_seeds=ref_seeds)
        for i, (v, s) in enumerate(groups)
    ]
    _write(frame, metric, found.rows, needed)
    return TableVerdicts(
        metric,
        higher,
        found.reference,
        found.best,
        found.runner_up,
        found.seeds_needed,
        tuple(c.test for i, c in enumerate(found.rows) if i != found.reference),
        max((c.n for c in found.rows), default=0),
    )


def _write(frame: pd.DataFrame, metric: str, rows: list[Any], needed: list[float]) -> None:
    """The columns ``M.diff`` ... ``M.seeds_needed`` of the comparisons ``rows``."""
    import pandas as pd

    columns = {
        "diff": [c.diff for c in rows],
        "diff_low": [c.low for c in rows],
        "diff_high": [c.high for c in rows],
        "p": [c.p_value for c in rows],
        "p_exact": [c.p_exact for c in rows],
        "test": [c.test for c in rows],
        "verdict": [c.verdict for c in rows],
    }
    for stat, values in columns.items():
        frame[f"{metric}.{stat}"] = values
    whole = [int(n) if math.isfinite(n) else n for n in needed]  # a count: 26, not 26.0
    frame[f"{metric}.seeds_needed"] = pd.Series(whole, index=frame.index, dtype=object)


def _values(recs: list[dict[str, Any]], runs: list[int], metric: str) -> tuple:
    """A group's values of ``metric`` (n,) and the runs' seeds (n,)."""
    values = np.array([_number(recs[i].get(metric)) for i in runs], dtype=np.float64)
    seeds = [recs[i].get(SEED_COLUMN) for i in runs]
    whole = all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
    return values, (np.array(seeds, dtype=np.int64) if whole else None)


def _number(x: Any) -> float:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else math.nan


def _reference(
    n_rows: int, rows: Sequence[dict[str, Any]], against: Sequence[str], prefer: Sequence[str]
) -> int | str:
    """``best``, or the 0-based position of the row ``against`` names."""
    given = [a.strip() for a in against if a.strip()]
    if not given or given == ["best"]:
        return "best"
    if len(given) == 1 and re.fullmatch(r"\d+", given[0]):
        number = int(given[0])
        if not 1 <= number <= n_rows:
            raise ConfigError(
                f"no row {number}: the table has {n_rows} rows (1 to {n_rows})",
                source="--against",
            )
        return number - 1
    if "best" in given or any(re.fullmatch(r"\d+", g) for g in given):
        raise ConfigError(
            f"{' '.join(given)!r}: give best, one row number, or conditions (KEY OP VALUE, "
            "repeated to AND), not a mix",
            source="--against",
        )
    try:
        hit = [i for i, ok in enumerate(matches(list(rows), given, list(prefer))) if ok]
    except ConfigError as e:
        raise ConfigError(e.detail, source="--against") from None
    text = " and ".join(given)
    if len(hit) == 1:
        return hit[0]
    if not hit:
        raise ConfigError(f"no row matches {text!r}", source="--against")
    numbers = ", ".join(str(i + 1) for i in hit[:8]) + (", ..." if len(hit) > 8 else "")
    raise ConfigError(
        f"{text!r} matches {len(hit)} rows ({numbers}): add a condition (repeat --against) "
        "or give one row's number",
        source="--against",
    )


# ---------------------------------------------------------------- text


def p_text(p: float) -> str:
    """A p-value for reading: ``<0.001``, ``0.038``; ``-`` for none."""
    if p != p:
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def verdict_text(verdict: str) -> str:
    """``* worse``, ``≈ within noise``, ``? too few seeds``, ``reference``."""
    from nnlab.stats import MARKERS

    marker = MARKERS.get(verdict, "")
    return f"{marker} {verdict}" if marker else verdict


def verdict_notes(v: TableVerdicts) -> list[str]:
    """The lines under a table with verdicts: what the columns are, and the seeds needed."""
    from nnlab.stats import PAIRED, WELCH

    tests = set(v.tests)
    if tests <= {PAIRED}:
        how = "paired t-test on the seeds both rows ran"
    elif tests <= {WELCH}:
        how = "Welch's t-test (the rows ran different seeds)"
    else:
        how = "paired t-test where both rows ran the same seeds, else Welch's (csv: M.test)"
    ref = v.reference + 1
    which = "the best" if v.reference == v.best else f"the best is row {v.best + 1}"
    lines = [
        f"verdicts on {v.metric} against row {ref} ({which}): diff = the row's mean minus row "
        f"{ref}'s ± the half-width of its 95% t-interval; p: two-sided {how}; * a difference "
        "larger than the seed noise (p < 0.05), ≈ within noise, ? too few seeds"
    ]
    if v.runner_up is not None:
        lines.append(seeds_needed_text(v))
    return lines


def seeds_needed_text(v: TableVerdicts) -> str:
    """The line on the seeds that would tell the two best rows apart."""
    a, b = v.best + 1, v.runner_up + 1 if v.runner_up is not None else 0
    n = v.seeds_needed
    if n != n:
        return f"rows {a} and {b}, the two best: too few seeds to measure their spread"
    if math.isinf(n):
        return (
            f"rows {a} and {b}, the two best: no number of seeds would tell them apart "
            "(their means are equal, or it would take more than a million)"
        )
    return (
        f"seeds needed to tell the two best rows ({a} and {b}) apart at 95% with power 0.8: "
        f"{int(n)} per row (now {v.seeds})"
    )
