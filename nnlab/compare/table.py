"""Runs -> one table: the config keys that differ between the runs, and how each run did.

``load_runs`` reads run folders (``nnlab.compare.load``, whose names are given here too; a
folder holding runs stands for all of them); a run with a damaged file is reported through
``warn`` and skipped. ``record`` gives a row per run with every config key flattened
(``model.layers.0.units``) and the metric columns: ``M`` (last value), ``M.best``,
``M.best_epoch`` for each metric of metrics.csv, ``test_M`` from the summary, ``status``,
``epochs``, ``seconds``. ``build_table`` filters (``--where``), groups
seeds, sorts and picks the columns; ``nnlab.compare.render`` writes it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from nnlab.compare.keys import (
    SEED_KEY,
    collapse,
    components,
    differing_keys,
    group_key,
)
from nnlab.compare.load import Run as Run
from nnlab.compare.load import is_final as is_final
from nnlab.compare.load import load_runs as load_runs
from nnlab.compare.load import read_run as read_run
from nnlab.compare.load import run_labels as run_labels
from nnlab.compare.query import matches, resolve_column
from nnlab.compare.verdict import (
    TableVerdicts,
    add_verdicts,
    check_objective,
    default_objective,
    table_objective,
)
from nnlab.errors import ConfigError, did_you_mean
from nnlab.metrics import NOT_METRICS, higher_is_better
from nnlab.runs import Status, last_epoch

if TYPE_CHECKING:
    import pandas as pd

META = ("status", "epochs", "seconds")
GROUP_STATS = ("mean", "std", "n", "low", "high")  # the columns of a metric over seeds


# ---------------------------------------------------------------- records


def number(x: Any) -> float:
    """A summary's value as a float (NaN for anything else; non-finite numbers are text)."""
    if isinstance(x, bool) or x is None:
        return math.nan
    if isinstance(x, int | float):
        return float(x)
    if isinstance(x, str):
        try:
            return float(x)
        except ValueError:
            return math.nan
    return math.nan


def metric_names(runs: list[Run]) -> list[str]:
    """The metrics of metrics.csv over all runs, in file order."""
    names: dict[str, None] = {}
    for r in runs:
        cols = list(r.metrics.columns) or list((r.summary.get("last") or {}).keys())
        names.update(dict.fromkeys(c for c in cols if c not in NOT_METRICS))
    return list(names)


def _metric(rec: dict, run: Run, name: str) -> None:
    """A metric's last value, best value and the epoch of the best: from the summary of a
    run that ended, else from metrics.csv (a run still going, or killed), else whatever the
    summary has."""
    m = run.metrics
    if not run.final and name in m.columns and len(m):
        col = m.column(name)
        rec[name] = float(col[-1])
        finite = np.flatnonzero(np.isfinite(col))
        if len(finite):
            i = finite[np.argmax(col[finite]) if higher_is_better(name) else np.argmin(col[finite])]
            rec[f"{name}.best"] = float(col[i])
            rec[f"{name}.best_epoch"] = int(m.column("epoch")[i])
        else:
            rec[f"{name}.best"] = rec[f"{name}.best_epoch"] = math.nan
        return
    rec[name] = number((run.summary.get("last") or {}).get(name))
    best = (run.summary.get("best") or {}).get(name) or {}
    rec[f"{name}.best"] = number(best.get("value") if isinstance(best, dict) else None)
    rec[f"{name}.best_epoch"] = number(best.get("epoch") if isinstance(best, dict) else None)


def record(run: Run, metrics: list[str]) -> dict[str, Any]:
    """A run as one row: its flattened config and its metric columns."""
    rec: dict[str, Any] = {"run": run.label, **run.flat}
    for name in metrics:
        _metric(rec, run, name)
    test = run.summary.get("test")
    for key, value in test.items() if isinstance(test, dict) else ():
        rec[f"test_{key}"] = number(value)
    rec["status"] = run.status
    epochs = run.summary.get("epochs_completed")
    unfinished = run.status in (Status.RUNNING, Status.KILLED)  # the summary is written last
    whole = isinstance(epochs, int) and not unfinished
    rec["epochs"] = epochs if whole else last_epoch(run.metrics)
    seconds = run.summary.get("train_seconds")
    if not isinstance(seconds, int | float):
        m = run.metrics
        seconds = float(m.column("seconds").sum()) if "seconds" in m.columns else math.nan
    rec["seconds"] = float(seconds)
    return rec


def filter_runs(runs: list[Run], where: Iterable[str]) -> list[Run]:
    """The runs that satisfy every ``--where`` condition."""
    where = list(where)
    if not where:
        return runs
    metrics = metric_names(runs)
    keep = matches(
        [record(r, metrics) for r in runs], where, differing_keys([r.flat for r in runs])
    )
    return [r for r, k in zip(runs, keep, strict=True) if k]


# ---------------------------------------------------------------- the table


@dataclass
class Table:
    """What ``render`` prints: a frame and how to show it."""

    frame: pd.DataFrame
    columns: list[str]  # shown, in order (grouped: the base names of the mean/std/n columns)
    config_keys: list[str]  # which of the columns are config keys
    grouped: bool
    aggregated: set[str] = field(default_factory=set)  # grouped: columns shown as mean ± std (n)
    verdict: TableVerdicts | None = None  # grouped, with --against: each row against one


def build_table(
    runs: list[Run],
    metrics: Iterable[str] = (),
    columns: Iterable[str] = (),
    where: Iterable[str] = (),
    sort: str | None = None,
    reverse: bool = False,
    top: int | None = None,
    group_seeds: bool = False,
    against: Iterable[str] = (),
    objective: str | None = None,
) -> Table:
    """One row per run (or per group of seeds), filtered, sorted and cut to ``top`` rows.

    The columns are those of the runs that pass ``where``: the config keys that differ among
    them, their metrics, and no column that is empty in every row (unless asked for).
    ``against`` (seed groups): ``best``, a row number as printed or ``--where`` conditions
    naming one row; every row is then compared with that row on ``objective`` (default: the
    first accuracy shown, ``nnlab.compare.verdict.table_objective``), before ``top`` cuts."""
    import pandas as pd

    all_metrics = metric_names(runs)
    recs = [record(r, all_metrics) for r in runs]
    keep = matches(recs, where, differing_keys([r.flat for r in runs]))
    names = list(dict.fromkeys(k for rec in recs for k in rec)) or ["run", *META]
    runs = [r for r, k in zip(runs, keep, strict=True) if k]
    recs = [rec for rec, k in zip(recs, keep, strict=True) if k]
    chosen = _choose_metrics(list(metrics), all_metrics, metric_names(runs))
    frame = _frame(recs, names, all_metrics)
    cols = list(frame.columns)
    prefer = differing_keys([r.flat for r in runs])
    numeric = [c for c in cols if _is_metric_column(c, all_metrics)]
    members: list[list[int]] | None = None
    if group_seeds:
        frame, firsts, members = _group(frame, runs, numeric)
        config_keys = differing_keys([r.flat for r in firsts], skip=(SEED_KEY,))
    else:
        firsts = runs
        config_keys = prefer  # the runs kept
    comps = [components(r.config) for r in firsts]
    config_keys, texts = collapse(config_keys, comps, taken=[c for c in cols if c not in prefer])
    for path, values in texts.items():
        frame[path] = pd.Series(values, index=frame.index, dtype=object)
    if columns:
        shown = _asked_columns(frame, columns, cols, comps, config_keys, prefer, group_seeds)
    else:
        shown = _default_columns(config_keys, chosen, cols, group_seeds)
        if len(frame):
            shown = [c for c in shown if not _empty(frame, c, group_seeds and c in numeric)]
    shown = ["runs" if group_seeds else "run", *shown]
    frame = _sort(frame, sort, reverse, cols, numeric, prefer, group_seeds)
    verdict = None
    if objective or any(a.strip() for a in against):
        metric = _objective(objective, shown, numeric, chosen or all_metrics)
        verdict = _verdicts(frame, recs, members, metric, against, config_keys)
        shown = _with_verdicts(shown, verdict)
    frame = frame.head(top) if top is not None else frame
    config_keys = [c for c in shown if c in config_keys or (c not in numeric and "." in c)]
    aggregated = set(numeric) if group_seeds else set()
    return Table(frame.reset_index(drop=True), shown, config_keys, group_seeds, aggregated, verdict)


def _verdicts(
    frame: pd.DataFrame,
    recs: list[dict[str, Any]],
    members: list[list[int]] | None,
    metric: str,
    against: Iterable[str],
    prefer: list[str],
) -> TableVerdicts | None:
    """Every row of a table of seed groups (``members``: each group's runs) against the row
    ``against`` names (``--objective`` alone: against the best), and the column of the rows'
    numbers. ``--against`` conditions are read on the rows as shown: config keys by their
    short names (a component as its text), a metric as its mean."""
    if members is None:
        raise ConfigError("the verdicts compare groups of seeds: add --group-seeds", "--against")
    given = [a for a in against if a.strip()] or ["best"]
    found = None
    if len(frame):
        rows = [
            {c[: -len(".mean")] if c.endswith(".mean") else c: v for c, v in row.items()}
            for row in frame.to_dict("records")
        ]
        found = add_verdicts(frame, recs, members, metric, given, rows, prefer)
    frame.insert(0, "row", range(1, len(frame) + 1))  # the numbers --against N names
    return found


def _objective(asked: str | None, shown: list[str], numeric: list[str], metrics: list[str]) -> str:
    """The column the verdicts are on: ``--objective``, else the first accuracy shown."""
    if asked:
        names = [c for c in numeric if c not in META]
        return check_objective(asked, names, names, "--objective")
    return table_objective(shown, numeric, default_objective(metrics) or "loss")


def _with_verdicts(shown: list[str], verdict: TableVerdicts | None) -> list[str]:
    """The verdict columns right after their metric's column (which is shown if it was not)."""
    if verdict is None:
        return shown
    shown = list(shown)
    if verdict.metric not in shown:
        at = next((i for i, c in enumerate(shown) if c in META), len(shown))
        shown.insert(at, verdict.metric)
    at = shown.index(verdict.metric) + 1
    return shown[:at] + verdict.columns() + shown[at:]


def _frame(recs: list[dict[str, Any]], names: list[str], metrics: list[str]) -> pd.DataFrame:
    """The records as a frame with the columns ``names``: metric columns as numbers, config
    values as they are (an integer stays an integer where another run lacks the key)."""
    import pandas as pd

    if not recs:
        return pd.DataFrame(columns=names)
    frame = pd.DataFrame.from_records(recs, columns=names)
    for col in frame.columns:
        if not _is_metric_column(col, metrics):
            frame[col] = pd.Series([r.get(col) for r in recs], index=frame.index, dtype=object)
    return frame


def _empty(frame: pd.DataFrame, col: str, aggregated: bool) -> bool:
    """A column with no value in any row (a metric no run has, a key set to null everywhere)."""
    if aggregated:
        col = f"{col}.n"
        return col not in frame.columns or not (frame[col] > 0).any()
    if col not in frame.columns:
        return True
    return all(v is None or (isinstance(v, float) and v != v) for v in frame[col])


def _asked_columns(
    frame: pd.DataFrame,
    columns: Iterable[str],
    cols: list[str],
    comps: list[dict[str, str]],
    config_keys: list[str],
    prefer: list[str],
    group_seeds: bool,
) -> list[str]:
    """The columns ``--columns`` names; a component asked for by its path shows its options."""
    names = cols + (["runs", "seeds"] if group_seeds else [])
    shown = []
    for given in _split(columns):
        col = resolve_column(given, names, "--columns", prefer)
        path = col.removesuffix(".name")
        if col.endswith(".name") and not given.endswith(".name") and any(path in c for c in comps):
            frame[path] = [c.get(path) for c in comps]  # the component with its options
            config_keys.append(path)
            col = path
        if col not in ("run", "runs"):
            shown.append(col)
    return shown


def _default_columns(
    config_keys: list[str], chosen: list[str], cols: list[str], group_seeds: bool
) -> list[str]:
    shown = list(config_keys)
    for name in chosen:
        shown += [name, f"{name}.best"] + ([] if group_seeds else [f"{name}.best_epoch"])
    shown += [c for c in cols if c.startswith("test_")]
    return shown + list(META)


def _sort(
    frame: pd.DataFrame,
    sort: str | None,
    reverse: bool,
    cols: list[str],
    numeric: list[str],
    prefer: list[str],
    group_seeds: bool,
) -> pd.DataFrame:
    """``--sort`` (best first for metrics) and ``--reverse``; the rows keep their index."""
    if sort:
        key = resolve_column(sort, cols, "--sort", prefer)
        by = f"{key}.mean" if group_seeds and key in numeric else key
        if by not in frame.columns:
            raise ConfigError(f"cannot sort by {key!r} here", source="--sort")
        ascending = not higher_is_better(key) if key in numeric else True
        if reverse:
            ascending = not ascending
        frame = frame.sort_values(by, ascending=ascending, na_position="last", kind="stable")
    elif reverse:
        frame = frame.iloc[::-1]
    return frame


def _split(items: Iterable[str]) -> list[str]:
    return [c.strip() for item in items for c in item.split(",") if c.strip()]


def _choose_metrics(asked: list[str], available: list[str], here: list[str]) -> list[str]:
    """``--metric`` names (``all``: every one) among the ``available`` metrics; by default the
    validation metrics of the runs shown (``here``) if they have them, else the training
    metrics."""
    asked = _split(asked)
    if not asked:
        val = [m for m in here if m.startswith("val_")]
        return val or here
    if asked == ["all"]:
        return available
    out = []
    for name in asked:
        if name not in available:
            raise ConfigError(
                f"no metric {name!r} in these runs.{did_you_mean(name, available)} "
                f"Metrics: {', '.join(available) or 'none'} (or all)",
                source="--metric",
            )
        out.append(name)
    return out


def _is_metric_column(col: str, metrics: list[str]) -> bool:
    """A metric's last value, ``NAME.best`` or ``NAME.best_epoch``, a test metric, or timing
    (not a config key such as ``loss.name``)."""
    base, _, rest = col.partition(".")
    return (
        (base in metrics and rest in ("", "best", "best_epoch"))
        or col.startswith("test_")
        or col in ("epochs", "seconds")
    )


def _group(
    frame: pd.DataFrame, runs: list[Run], numeric: list[str]
) -> tuple[pd.DataFrame, list[Run], list[list[int]]]:
    """Mean, sample standard deviation (ddof=1), count and the 95% t-interval of the mean
    (``nnlab.stats.summarize``) of the finite values of each numeric column, over the runs of
    each group; config columns from the group's first run. Returns the frame (a row per
    group, indexed by its number), each group's first run and its runs (indices)."""
    import pandas as pd

    columns = ["runs"]
    for col in frame.columns:
        if col in numeric:
            columns += [f"{col}.{s}" for s in GROUP_STATS]
        elif col != "run":
            columns.append("seeds" if col == SEED_KEY else col)
    order: dict[str, list[int]] = {}
    for i, r in enumerate(runs):
        order.setdefault(group_key(r.config), []).append(i)
    rows, firsts = [], []
    for idx in order.values():
        rows.append(_group_row(frame.iloc[idx], numeric))
        firsts.append(runs[idx[0]])
    return pd.DataFrame.from_records(rows, columns=columns), firsts, list(order.values())


def _group_row(part: pd.DataFrame, numeric: list[str]) -> dict[str, Any]:
    import pandas as pd

    row: dict[str, Any] = {"runs": len(part)}
    for col in part.columns:
        if col in numeric:
            values = pd.to_numeric(part[col], errors="coerce").to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            row[f"{col}.mean"] = float(values.mean()) if len(values) else math.nan
            row[f"{col}.std"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
            row[f"{col}.n"] = len(values)
            row[f"{col}.low"], row[f"{col}.high"] = _interval(values)
        elif col == "status":
            counts = part["status"].value_counts(sort=False)
            row["status"] = ", ".join(f"{n} {s}" for s, n in counts.items())
        elif col == SEED_KEY:
            row["seeds"] = ",".join(str(s) for s in part[col])
        elif col != "run":
            row[col] = part[col].iloc[0]
    return row


def _interval(values: np.ndarray) -> tuple[float, float]:
    """The 95% t-interval of the mean of ``values`` (n,); NaN for fewer than two values, or
    without SciPy (the ``stats`` extra: the table then shows the standard deviation)."""
    from nnlab.errors import NnlabError
    from nnlab.stats import summarize

    if len(values) < 2:
        return math.nan, math.nan
    try:
        s = summarize(values)
    except NnlabError:
        return math.nan, math.nan
    return s.low, s.high
