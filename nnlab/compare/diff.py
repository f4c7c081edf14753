"""Two runs side by side: the config keys that differ, and each metric with the change."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nnlab.compare.keys import collapse, components, differing_keys, fmt_config
from nnlab.compare.render import digits_of, fmt_metric, json_value
from nnlab.compare.table import Run, metric_names, number, record


def diff(a: Run, b: Run) -> dict[str, Any]:
    """The config keys that differ between two runs, and their metrics side by side with the
    change (B - A)."""
    metrics = metric_names([a, b])
    ra, rb = record(a, metrics), record(b, metrics)
    keys, texts = collapse(
        differing_keys([a.flat, b.flat]), [components(a.config), components(b.config)]
    )
    config = {k: tuple(texts[k]) if k in texts else (a.flat.get(k), b.flat.get(k)) for k in keys}
    names = []
    for m in metrics:
        names += [m, f"{m}.best", f"{m}.best_epoch"]
    names += [k for k in dict.fromkeys((*ra, *rb)) if k.startswith("test_")]
    names += ["epochs", "seconds"]
    rows = {}
    for name in names:
        va, vb = number(ra.get(name)), number(rb.get(name))
        rows[name] = (va, vb, vb - va)
    return {
        "a": str(a.path),
        "b": str(b.path),
        "status": (a.status, b.status),
        "same_config": not keys,
        "config": config,
        "metrics": rows,
    }


def _fixed(x: float, digits: int, sign: bool = False) -> str:
    if x != x:
        return "-"
    if sign:
        return f"{x:+.{digits}f}"
    return f"{x:.0f}" if digits == 0 else fmt_metric(x, digits)


def render_diff(d: dict[str, Any], fmt: str = "table") -> str:
    """A diff as text (``table``, ``markdown``), ``csv`` (a row per config key, the status and
    each metric: ``section,name,a,b,change``) or ``json``."""
    if fmt == "csv":
        return _csv(d)
    if fmt == "json":
        return json.dumps(
            {
                **d,
                "config": {k: {"a": va, "b": vb} for k, (va, vb) in d["config"].items()},
                "metrics": {
                    k: {"a": json_value(va), "b": json_value(vb), "delta": json_value(dv)}
                    for k, (va, vb, dv) in d["metrics"].items()
                },
            },
            indent=2,
        )
    from tabulate import tabulate

    tablefmt = "github" if fmt == "markdown" else "simple"
    a, b = Path(d["a"]).name, Path(d["b"]).name
    if a == b:
        a, b = d["a"], d["b"]
    parts = []
    if d["config"]:
        rows = [[k, fmt_config(va), fmt_config(vb)] for k, (va, vb) in d["config"].items()]
        parts.append(
            tabulate(rows, headers=["key", a, b], tablefmt=tablefmt, disable_numparse=True)
        )
    else:
        parts.append("the configs are the same")
    rows = [["status", d["status"][0], d["status"][1], ""]]
    for k, (va, vb, dv) in d["metrics"].items():
        whole = k.endswith("best_epoch") or k == "epochs"
        digits = 0 if whole else digits_of(k)
        rows.append([k, _fixed(va, digits), _fixed(vb, digits), _fixed(dv, digits, sign=True)])
    parts.append(
        tabulate(
            rows,
            headers=["metric", a, b, "change"],
            tablefmt=tablefmt,
            colalign=("left", "right", "right", "right"),
            disable_numparse=True,
        )
    )
    return "\n\n".join(parts)


def _csv(d: dict[str, Any]) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["section", "name", "a", "b", "change"])
    for k, (va, vb) in d["config"].items():
        w.writerow(["config", k, fmt_config(va), fmt_config(vb), ""])
    w.writerow(["status", "status", *d["status"], ""])
    for k, (va, vb, dv) in d["metrics"].items():
        w.writerow(["metric", k, *(repr(x) if x == x else "" for x in (va, vb, dv))])
    return buf.getvalue().rstrip("\n")
