"""What a report shows, as plain data (JSON-able): the compare tables (per run, and per group
of seeds with intervals and verdicts), each group's learning curves with seed bands for every
metric, for sweeps the axes against the objective and their importance, and each run's config
and summary. ``nnlab.report.page`` puts it in an HTML page."""

from __future__ import annotations

import datetime
from typing import Any

import numpy as np

from nnlab.compare.axes import objective_of
from nnlab.compare.keys import short_names
from nnlab.compare.render import interval_note
from nnlab.compare.table import Run, Table, build_table, metric_names, record
from nnlab.errors import ConfigError, NnlabError
from nnlab.metrics import higher_is_better
from nnlab.plot import DASHES, IMAGE_COLOURS, Curve, band_of, legend, thin
from nnlab.report.groups import Group, clean, find_groups, group_of, rounded
from nnlab.report.sweep import sweep_data
from nnlab.stats import MARKERS

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
    objective = _objective(recs, metrics, objective)
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
            "groups": _grouped(runs, groups, objective),
        },
        "curves": _curves(runs, groups, columns),
        "sweep": sweep_data(runs, groups, recs, objective),
    }


def _title(runs: list[Run]) -> str:
    parents = {r.path.parent.parent.name if r.path.parent.name == "trials" else "" for r in runs}
    name = parents.pop() if len(parents) == 1 and "" not in parents else ""
    return f"nnlab report: {name or f'{len(runs)} runs'}"


def _objective(recs: list[dict[str, Any]], metrics: list[str], asked: str | None) -> str:
    """``--objective`` (checked), else the validation metric compare ranks by."""
    try:
        return objective_of(recs, metrics, asked)
    except ConfigError as e:
        raise ConfigError(e.detail, source="--objective") from None


# ---------------------------------------------------------------- tables


def table_data(table: Table) -> dict:
    """A compare table as columns (key, header by ``short_names``, kind) and rows of raw
    values; a seed group's metric is ``[mean, low, high, n]`` (its 95% interval, else mean ±
    std). Best epochs are left to the runs' details, verdicts to ``_verdicts``."""
    names = short_names(table.config_keys, set(table.columns) - set(table.config_keys))
    verdict = table.verdict.columns() if table.verdict else []
    cols = [
        c
        for c in table.columns
        if (table.grouped or not c.endswith(".best_epoch")) and c not in verdict
    ]
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


def _grouped(runs: list[Run], groups: list[Group], objective: str) -> dict | None:
    """The table of seed groups (in the order of ``groups``) with the verdicts on the
    objective, as ``nnlab compare --group-seeds --against best`` computes them: each group
    against the best by a paired (same seeds) or Welch t-test; None when no group has two
    seeds."""
    if all(len(g.members) < 2 for g in groups):
        return None
    try:
        table = build_table(runs, group_seeds=True, against=["best"], objective=objective)
    except NnlabError as e:  # no scipy (the stats extra), or no finite value
        data = table_data(build_table(runs, group_seeds=True))
        data["verdicts"] = {"metric": objective, "error": str(e)}
        return data
    data = table_data(table)
    data["verdicts"] = _verdicts(table)
    return data


def _verdicts(table: Table) -> dict:
    """The verdict columns of a table as the page draws them: a row per group."""
    v, f = table.verdict, table.frame
    if v is None:
        return {"error": "no groups"}
    col = {s: list(f[f"{v.metric}.{s}"]) for s in ("diff", "diff_low", "diff_high", "p", "test")}
    verdicts = list(f[f"{v.metric}.verdict"])
    rows = [
        {"diff": clean(col["diff"][i]), "low": clean(col["diff_low"][i]),
         "high": clean(col["diff_high"][i]), "p": clean(col["p"][i]), "test": col["test"][i],
         "verdict": verdicts[i], "marker": MARKERS.get(verdicts[i], "")}
        for i in range(len(f))
    ]  # fmt: skip
    return {
        "metric": v.metric,
        "rows": rows,
        "best": v.best,
        "runner_up": v.runner_up,
        "seeds_needed": clean(v.seeds_needed),
    }


# ---------------------------------------------------------------- curves


def _curves(runs: list[Run], groups: list[Group], columns: list[str]) -> dict:
    """Per metric, each group's curve: the epochs (at most ``plot.MAX_POINTS`` of them, evenly
    spaced), the mean over its runs and the min-max band (5 significant digits); and the colour
    of each group: a value of the swept axis when the groups outnumber the colours, as in
    ``nnlab plot``."""
    out: dict[str, Any] = {}
    for m in columns:
        lines = []
        for g, group in enumerate(groups):
            series = [_series(runs[i], m) for i in group.members]
            series = [s for s in series if len(s[0])]
            if not series:
                continue
            epochs, mean, low, high = thin(*band_of(series))
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
