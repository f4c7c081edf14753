"""What a report shows, as plain data (JSON-able): the compare tables (per run, and per group
of seeds with intervals and verdicts), each group's learning curves with seed bands for every
metric, for sweeps the axes against the objective and their importance, and each run's config
and summary. ``nnlab.report.page`` puts it in an HTML page."""

from __future__ import annotations

import datetime
import math
from typing import Any

import numpy as np

from nnlab.compare.keys import short_names
from nnlab.compare.render import interval_note
from nnlab.compare.table import Run, Table, build_table, metric_names, record
from nnlab.errors import ConfigError, NnlabError, did_you_mean
from nnlab.metrics import higher_is_better
from nnlab.plot import DASHES, IMAGE_COLOURS, Curve, band_of, legend
from nnlab.report.groups import Group, clean, find_groups, group_of, rounded
from nnlab.report.sweep import sweep_data

OBJECTIVES = ("val_accuracy", "accuracy", "val_loss", "loss")  # as a sweep's trial lines
SUMMARY_LEFT_OUT = ("versions", "pid", "host", "last", "run")  # in the table, or noise


def report_data(runs: list[Run], objective: str | None = None, title: str = "") -> dict:
    """Everything the report page shows, for ``runs`` (read by ``nnlab.compare.load_runs``).

    ``objective``: the column the sweep section and the verdicts rank by (any metric column of
    the compare table: ``val_accuracy``, ``test_accuracy``, ``val_loss.best``); by default the
    last ``val_accuracy``, else ``accuracy``, ``val_loss`` or ``loss``, as a sweep's lines.
    """
    if not runs:
        raise NnlabError("no runs to report")
    metrics = metric_names(runs)
    recs = [record(r, metrics) for r in runs]
    columns = list(dict.fromkeys(c for r in runs for c in r.metrics.columns if c != "epoch"))
    objective = _objective(recs, objective)
    groups = find_groups(runs)
    shared, own = _configs(runs)
    belongs = group_of(groups, len(runs))
    return {
        "title": title or _title(runs),
        "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "objective": {"name": objective, "higher": higher_is_better(objective)},
        "metrics": columns,
        "runs": [_run(r, own[i], belongs[i]) for i, r in enumerate(runs)],
        "shared": shared,
        "groups": [{"label": g.label, "keys": g.keys, "runs": g.members} for g in groups],
        "tables": {
            "runs": table_data(build_table(runs)),
            "groups": _grouped(runs, groups, recs, objective),
        },
        "curves": _curves(runs, groups, columns),
        "sweep": sweep_data(runs, groups, recs, objective),
    }


def _title(runs: list[Run]) -> str:
    parents = {r.path.parent.parent.name if r.path.parent.name == "trials" else "" for r in runs}
    name = parents.pop() if len(parents) == 1 and "" not in parents else ""
    return f"nnlab report: {name or f'{len(runs)} runs'}"


def _objective(recs: list[dict[str, Any]], asked: str | None) -> str:
    columns = list(dict.fromkeys(k for rec in recs for k in rec))
    numeric = [c for c in columns if isinstance(recs[0].get(c), float) or c.startswith("test_")]
    if asked is not None:
        if asked not in columns:
            raise ConfigError(
                f"no column {asked!r} in these runs.{did_you_mean(asked, columns)} Metric "
                f"columns: {', '.join(c for c in numeric if c != 'seconds')}",
                source="--objective",
            )
        return asked
    have = {k for rec in recs for k, v in rec.items() if isinstance(v, float) and v == v}
    return next((m for m in OBJECTIVES if m in have), "loss")


# ---------------------------------------------------------------- tables


def table_data(table: Table) -> dict:
    """A compare table as columns (key, header by ``short_names``, kind) and rows of raw
    values; a seed group's metric is ``[mean, low, high, n]`` (its 95% interval, else mean ±
    std). Best epochs are left to the runs' details."""
    names = short_names(table.config_keys, set(table.columns) - set(table.config_keys))
    cols = [c for c in table.columns if table.grouped or not c.endswith(".best_epoch")]
    columns = [{"key": c, "header": names.get(c, c), "kind": _kind(table, c)} for c in cols]
    cells = [_cells(table, c) for c in cols]
    rows = [list(r) for r in zip(*cells, strict=True)] if cells else []
    return {"columns": columns, "rows": rows, "note": interval_note(table)}


def _kind(table: Table, col: str) -> str:
    if col in ("run", "runs"):
        return "run"
    if col in table.config_keys:
        return "key"
    if col in table.aggregated:
        return "interval"
    if col in ("status", "seeds"):
        return "text"
    return "number"


def _cells(table: Table, col: str) -> list:
    f = table.frame
    if col in table.aggregated:
        parts = [f[f"{col}.{s}"] for s in ("mean", "low", "high", "n")]
        std = f[f"{col}.std"]
        return [
            [clean(m), clean(lo if lo == lo else m - s), clean(hi if hi == hi else m + s), int(n)]
            for m, lo, hi, n, s in zip(*parts, std, strict=True)
        ]
    if col not in f.columns:
        return [None] * len(f)
    return [clean(v) for v in f[col]]


def _grouped(
    runs: list[Run], groups: list[Group], recs: list[dict[str, Any]], objective: str
) -> dict | None:
    """The table of seed groups with the verdicts of ``nnlab.stats`` on the objective: each
    group against the best by a paired (same seeds) or Welch t-test; None when no group has
    two seeds."""
    if all(len(g.members) < 2 for g in groups):
        return None
    data = table_data(build_table(runs, group_seeds=True))
    data["verdicts"] = _verdicts(runs, groups, recs, objective)
    return data


def _verdicts(
    runs: list[Run], groups: list[Group], recs: list[dict[str, Any]], objective: str
) -> dict:
    from nnlab.stats import verdicts

    values = [np.array([recs[i].get(objective, math.nan) for i in g.members]) for g in groups]
    seeds = [np.array([runs[i].config["training"]["seed"] for i in g.members]) for g in groups]
    try:
        v = verdicts(
            list(zip(values, seeds, strict=True)), higher_is_better=higher_is_better(objective)
        )
    except NnlabError as e:  # no scipy (the stats extra), or no finite value
        return {"metric": objective, "error": str(e)}
    rows = [
        {"diff": clean(c.diff), "low": clean(c.low), "high": clean(c.high), "p": clean(c.p_value),
         "test": c.test, "verdict": c.verdict, "marker": c.marker}
        for c in v.rows
    ]  # fmt: skip
    return {
        "metric": objective,
        "rows": rows,
        "best": v.best,
        "runner_up": v.runner_up,
        "seeds_needed": clean(v.seeds_needed),
    }


# ---------------------------------------------------------------- curves


def _curves(runs: list[Run], groups: list[Group], columns: list[str]) -> dict:
    """Per metric, each group's curve: the epochs, the mean over its runs and the min-max band
    (5 significant digits); and the colour of each group: a value of the swept axis when the
    groups outnumber the colours, as in ``nnlab plot``."""
    out: dict[str, Any] = {}
    for m in columns:
        lines = []
        for g, group in enumerate(groups):
            series = [_series(runs[i], m) for i in group.members]
            series = [s for s in series if len(s[0])]
            if not series:
                continue
            epochs, mean, low, high = band_of(series)
            band = len(series) > 1
            lines.append(
                {"group": g, "epochs": epochs.astype(int).tolist(), "mean": rounded(mean),
                 **({"low": rounded(low), "high": rounded(high)} if band else {})}
            )  # fmt: skip
        if lines:
            out[m] = lines
    stand_ins = [Curve(g.label, np.zeros(0), np.zeros(0), keys=g.keys) for g in groups]
    styles = legend(stand_ins, IMAGE_COLOURS, len(DASHES))
    return {
        "lines": out,
        "colour": styles.colour,
        "entries": styles.entries,
        "dash": styles.dash,
        "dash_entries": styles.dash_entries,
        "grouped": styles.grouped,
    }


def _series(run: Run, metric: str) -> tuple[np.ndarray, np.ndarray]:
    m = run.metrics
    if metric not in m.columns or not len(m):
        return np.zeros(0), np.zeros(0)
    y = m.column(metric).astype(float)
    return m.column("epoch"), np.where(np.isfinite(y), y, np.nan)


# ---------------------------------------------------------------- runs


def _configs(runs: list[Run]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The flattened config keys every run shares (one copy), and each run's own."""
    keys = dict.fromkeys(k for r in runs for k in r.flat)
    first = runs[0].flat
    shared = {
        k: clean(first[k])
        for k in keys
        if k in first and all(k in r.flat and r.flat[k] == first[k] for r in runs)
    }
    own = [{k: clean(v) for k, v in r.flat.items() if k not in shared} for r in runs]
    return shared, own


def _run(run: Run, own: dict[str, Any], group: int) -> dict:
    summary = {k: v for k, v in run.summary.items() if k not in SUMMARY_LEFT_OUT}
    return {
        "label": run.label,
        "path": str(run.path),
        "status": run.status,
        "group": group,
        "config": own,
        "summary": summary,
    }
