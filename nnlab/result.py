"""Text a user reads after a run."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from nnlab.runs import Status


def _num(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.4f}" if abs(x) < 1e4 else f"{x:.4g}"
    return str(x)


def format_result(summary: dict, run_dir: str | Path | None = None) -> str:
    """The result of a run, as a few lines; an interrupted run says how to resume it."""
    s = summary
    status = s["status"]
    head = f"{s['name']}: {status}, {s['epochs_completed']}/{s['epochs_planned']} epochs"
    head += f" in {s.get('train_seconds', 0):.2f} s ({s.get('parameters', 0):,d} parameters)"
    lines = [head]
    if status == Status.DIVERGED:
        at = s.get("diverged_at") or {}
        where = f"epoch {at.get('epoch')}" + (f", batch {at['batch']}" if at.get("batch") else "")
        lines.append(
            f"  the loss became NaN or infinite at {where}: try a smaller optimizer.lr, "
            "scaled inputs (data.scale) or gradient clipping (optimizer.clipnorm)"
        )
    if s.get("stopped_early"):
        es = s.get("early_stopping", {})
        lines.append(
            f"  stopped early: {es.get('monitor')} best at epoch {es.get('best_epoch')}"
            + (" (weights restored)" if es.get("restored") else "")
        )
    rows = []
    for split in ("train", "val", "test"):
        if split in s:
            rows.append((split, s[split]))
            # named groups of the split's samples (e.g. the sin steps of `sequence`)
            rows += [(f"{split} {g}", m) for g, m in (s.get(f"{split}_groups") or {}).items()]
    if rows:
        metrics = [k for k in ("loss", "accuracy", "roc_auc") if any(k in m for _, m in rows)]
        width = max(8, *(len(label) + 1 for label, _ in rows))
        lines.append("  " + " " * width + "".join(f"{m:>12}" for m in metrics))
        for label, m in rows:
            lines.append(f"  {label:<{width}}" + "".join(f"{_num(m.get(k)):>12}" for k in metrics))
    if s.get("threshold"):
        lines += threshold_lines(s)
    if s.get("baselines"):
        from nnlab.baselines import describe

        lines += ["  " + line for line in describe(s["baselines"])]
    if status == Status.PRUNED:
        lines.append(
            f"  pruned by the search after epoch {s['epochs_completed']}: hopeless next to the "
            "other trials at that epoch"
        )
    if status == Status.FAILED and s.get("error"):
        lines.append(f"  error: {s['error']}")
    if status == Status.INTERRUPTED and run_dir is not None:
        lines.append(
            f"  interrupted after epoch {s['epochs_completed']}; continue it with: "
            f"nnlab train --resume {shlex.quote(str(run_dir))}"
        )
    return "\n".join(lines)


def threshold_lines(s: dict) -> list[str]:
    """The run's decision threshold and each split's accuracy at it (``accuracy`` above is at
    the default threshold)."""
    t = s["threshold"]
    how = "fixed" if t["chosen_by"] == "fixed" else f"tuned for {t['chosen_by']} on {t['split']}"
    accs = ", ".join(
        f"{split} {s[split]['threshold_accuracy']:.4f}"
        for split in ("train", "val", "test")
        if "threshold_accuracy" in s.get(split, {})
    )
    lines = [f"  decision threshold {t['value']:.6g} ({how}; default {t['default']:g}): "
             f"accuracy {accs}"]  # fmt: skip
    if t.get("note"):
        lines.append(f"  ({t['note']})")
    return lines
