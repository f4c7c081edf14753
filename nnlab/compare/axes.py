"""The axes of a set of runs and each axis's share of the variance of an objective: the one call
that ``nnlab importance`` and the report's sweep section make.

The axes are the key paths of the sweep's spec (``axes`` in the sweep folder's ``sweep.yaml``)
when the runs are trials of one sweep; for any other set of runs, the config keys that differ
between them (the seed left out; a component whose name differs is one axis,
``random_normal(stddev=1.0)``). A run's value on an axis comes from its resolved config: a
component as its text, other values as they are (numbers stay numbers, so fANOVA can read a
numeric axis on its scale). ``nnlab.importance`` does the statistics.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnlab.compare.keys import SEED_KEY, collapse, components, differing_keys, short_names
from nnlab.compare.table import Run, metric_names, record
from nnlab.compare.verdict import check_objective, default_objective
from nnlab.errors import ConfigError, DataError, RunError
from nnlab.metrics import higher_is_better

if TYPE_CHECKING:
    from nnlab.importance import Importance


@dataclass
class Axes:
    """The axes of some runs: ``keys`` (dotted key paths), ``names`` (their short names, the
    importance's terms), ``values[a][i]`` the value of run i on axis a, and ``source``: where
    the axes come from (``sweep.yaml`` of a sweep folder, or the keys that differ)."""

    keys: list[str]
    names: list[str]
    values: list[list[Any]]
    source: str


def spec_axes(runs: list[Run]) -> tuple[list[str], Path] | None:
    """The axes (dotted key paths, in the spec's order) of the sweep whose trials the runs
    are, and its folder; None when the runs are not all trials of one sweep with a
    ``sweep.yaml``."""
    folders = {r.path.parent.parent if r.path.parent.name == "trials" else None for r in runs}
    if len(folders) != 1 or None in folders:
        return None
    folder = folders.pop()
    spec = folder / "sweep.yaml"
    if not spec.is_file():
        return None
    from nnlab.config import parse_yaml, split_key

    try:
        text = spec.read_text(encoding="utf-8")
    except OSError as e:
        raise RunError(f"cannot read {spec}: {e.strerror}") from None
    head = text.split("\ntrials:", 1)[0]  # the trials (thousands of lines) come last
    data = parse_yaml(head, str(spec))
    axes = data.get("axes") if isinstance(data, dict) else None
    if not isinstance(axes, dict):
        raise RunError(f"{spec}: no axes in it (is it a sweep folder's sweep.yaml?)")
    return [".".join(map(str, split_key(str(k)))) for k in axes], folder


def find_axes(runs: list[Run]) -> Axes:
    """The axes of ``runs`` (their sweep's, else the keys that differ) and each run's value."""
    if not runs:
        raise RunError("no runs")
    comps = [components(r.config) for r in runs]
    found = spec_axes(runs)
    if found is not None:
        keys, folder = found
        source = str(folder / "sweep.yaml")
    else:
        keys = differing_keys([r.flat for r in runs], skip=(SEED_KEY,))
        keys, _ = collapse(keys, comps)
        source = "the config keys that differ between the runs"
    if not keys:
        raise DataError("the runs do not differ in any config key but the seed: no axes to rank")
    values = [[_value(r, c, key) for r, c in zip(runs, comps, strict=True)] for key in keys]
    names = short_names(keys, ("seed",))
    return Axes(keys, [names[k] for k in keys], values, source)


def _value(run: Run, comps: dict[str, str], key: str) -> Any:
    """A run's value at a dotted key path: a component as its text (``he_normal``,
    ``random_normal(stddev=1.0)``), else the config's value (None where it has none)."""
    path = key.removesuffix(".name") if key.endswith(".name") else key
    if path in comps:
        return comps[path]
    if key in run.flat:
        return run.flat[key]
    node: Any = run.config
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def objective_of(recs: list[dict[str, Any]], metrics: list[str], asked: str | None) -> str:
    """The metric column to explain: ``asked`` (a metric's last value, ``M.best`` or a test
    metric, checked), else the validation metric compare ranks by (``default_objective``)."""
    tests = dict.fromkeys(k for rec in recs for k in rec if k.startswith("test_"))
    columns = [c for m in metrics for c in (m, f"{m}.best")] + list(tests)
    if asked:
        return check_objective(asked, columns, columns, "--metric")
    found = default_objective(metrics)
    if found is None:
        raise DataError("the runs have no metrics (no metrics.csv, no summary values)")
    return found


def runs_importance(
    runs: list[Run],
    objective: str | None = None,
    *,
    method: str = "auto",
    n_boot: int | dict[str, int] | None = None,
    rng_seed: int = 0,
) -> tuple[Importance, Axes]:
    """Each axis's share of the variance of ``objective`` over the runs' configs (the
    objective averaged over each config's seeds), ranked, with its bootstrap interval over
    seeds: ``nnlab.importance.importance`` on the runs' axes (``find_axes``).

    Parameters
    ----------
    runs : list of Run
        Read by ``nnlab.compare.load_runs`` (filtered by ``--where`` first, if asked).
    objective : str, optional
        A metric column of compare (``val_accuracy``, ``test_accuracy``, ``val_loss.best``);
        default the validation metric compare ranks by.
    method, n_boot, rng_seed
        As ``nnlab.importance.importance``: auto (the exact functional ANOVA of a complete
        grid, else fANOVA), the bootstrap draws (None: its default), the generator's seed.
    """
    from nnlab.importance import importance

    if method not in ("auto", "anova", "fanova"):
        raise ConfigError(f"unknown method {method!r}; one of auto, anova, fanova", "--method")
    metrics = metric_names(runs)
    recs = [record(r, metrics) for r in runs]
    name = objective_of(recs, metrics, objective)
    axes = find_axes(runs)
    column = "objective" if name in axes.names else name
    trials = [
        {
            **{n: v[i] for n, v in zip(axes.names, axes.values, strict=True)},
            column: recs[i].get(name),
            "seed": r.config.get("training", {}).get("seed"),
        }
        for i, r in enumerate(runs)
    ]
    imp = importance(trials, axes.names, column, method=method, n_boot=n_boot, rng_seed=rng_seed)
    return dataclasses.replace(imp, objective=name), axes


# ---------------------------------------------------------------- text


def percent(x: float) -> str:
    """A share for reading: ``74.2%``, ``6.1%``, ``0.041%``, ``<0.001%``, ``-`` for none."""
    if x != x:
        return "-"
    v = 100 * x
    if v == 0:
        return "0%"
    if v < 0.001:
        return "<0.001%"
    text = f"{v:.3g}" if v < 10 else f"{v:.1f}"
    return f"{text.removesuffix('.0')}%"


def importance_rows(imp: Importance) -> list[dict[str, Any]]:
    """The terms ranked: the main effects and pairs by share, the rest of the interactions
    last; each with its axes, share, 95% interval, spread over seeds and (anova, an axis)
    each value's mean objective."""
    rest = [s for s in imp.interactions if not s.axes]
    terms = sorted([*imp.axes, *(s for s in imp.interactions if s.axes)], key=lambda s: -s.share)
    return [
        {
            "term": s.term,
            "axes": list(s.axes),
            "share": s.share,
            "low": s.low,
            "high": s.high,
            "spread": s.spread,
            **({"levels": [[v, m] for v, m in s.levels]} if s.levels else {}),
        }
        for s in [*terms, *rest]
    ]


def render_importance(imp: Importance, axes: Axes, fmt: str = "table") -> str:
    """The importance as a table (terminal or markdown, with what it measured below), csv (a
    row per term: term, share, low, high, spread) or json (everything)."""
    rows = importance_rows(imp)
    if fmt == "csv":
        import pandas as pd

        frame = pd.DataFrame(rows, columns=["term", "share", "low", "high", "spread"])
        return frame.to_csv(index=False, lineterminator="\n").rstrip("\n")
    if fmt == "json":
        import json

        from nnlab.files import jsonable

        data = {
            "method": imp.method,
            "objective": imp.objective,
            "axes": dict(zip(axes.names, axes.keys, strict=True)),
            "axes_from": axes.source,
            "terms": rows,
            "seed_share": imp.seed_share,
            "variance": imp.variance,
            "configs": imp.n_configs,
            "runs": imp.n_trials,
            "dropped": imp.dropped,
            "bootstrap_draws": imp.n_boot,
            "notes": imp.notes,
        }
        return json.dumps(jsonable(data), indent=2)
    from nnlab.compare.render import Shown, aligned, markdown

    boot = imp.n_boot > 0
    headers = ["term", "share", *(["95% interval", "spread"] if boot else [])]
    cells = [
        [
            r["term"],
            percent(r["share"]),
            *(
                [f"[{percent(r['low'])}, {percent(r['high'])}]", percent(r["spread"])]
                if boot
                else []
            ),
        ]
        for r in rows
    ]
    shown = Shown(headers, cells, ["left", *["right"] * (len(headers) - 1)], ["key"] * len(headers))
    notes = importance_notes(imp, axes)
    if fmt == "markdown":
        return markdown(shown) + "\n\n" + "\n".join(f"- {n}" for n in notes)
    import textwrap

    wrapped = (textwrap.fill(n, 100, break_on_hyphens=False, subsequent_indent="  ") for n in notes)
    return aligned(shown) + "\n\n" + "\n".join(wrapped)


def importance_notes(imp: Importance, axes: Axes) -> list[str]:
    """What the importance measured, in lines under its table."""
    from nnlab.compare.keys import fmt_short
    from nnlab.compare.render import fmt_metric

    how = (
        "exact functional ANOVA of the complete grid"
        if imp.method == "anova"
        else "fANOVA (Hutter et al. 2014, Optuna's evaluator): main effects; "
        "'interactions' is the rest"
    )
    lines = [
        f"{imp.objective}, averaged over each config's seeds: {imp.n_configs} configs, "
        f"{imp.n_trials} runs; {how}; axes from {axes.source}"
    ]
    if imp.n_boot:
        lines.append(
            f"95% interval: basic bootstrap over seeds ({imp.n_boot} draws); spread: the "
            "standard deviation of the draws"
        )
    if imp.seed_share == imp.seed_share:
        lines.append(
            f"seeds: {percent(imp.seed_share)} of the runs' variance lies between the seeds "
            "of a config"
        )
    for s in imp.axes:
        if s.levels:
            sign = -1 if higher_is_better(imp.objective) else 1
            best = sorted(s.levels, key=lambda lv: sign * lv[1])
            values = ", ".join(f"{fmt_short(v)} {fmt_metric(m)}" for v, m in best)
            lines.append(f"{s.term}, mean {imp.objective} per value (best first): {values}")
    return lines + imp.notes
