"""``nnlab sweep --print-trials``: the trials of a sweep and what running it now would do with
each (run, resume, skip), and with populations, the population each would train in or why it
would run alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nnlab.sweeps.folder import SweepFolder, sweep_dir_for
from nnlab.sweeps.populations import runs_as
from nnlab.sweeps.runner import plan
from nnlab.sweeps.spec import Sweep


def trial_table(
    sweep: Sweep, runs_dir: str | Path, population: bool = True, jobs: int | None = None
) -> list[dict[str, Any]]:
    """The trials of a sweep and what running it now would do with each (``--print-trials``):
    with ``population``, the population each would train in (``jobs`` workers), or why alone."""
    folder = SweepFolder(sweep_dir_for(runs_dir, sweep.name))
    p = plan(sweep, folder) if folder.path.is_dir() else None
    rows = []
    todo = {t.hash for t in p.todo} if p else None
    pending, jobs = p.todo if p else sweep.trials, jobs or sweep.jobs
    slots = min(jobs, len(pending)) or 1
    unit_of = runs_as(pending, p.resume if p else set(), slots) if population else {}
    for t in sweep.trials:
        e = p.entries[t.hash] if p else {}
        action = "run" if todo is None or t.hash in todo else "skip"
        if p and t.hash in p.resume:
            action = "resume"
        rows.append(
            {
                "#": t.number,
                "hash": t.hash,
                **{k: _cell(v) for k, v in t.overrides.items()},
                "seed": t.seed,
                "status": e.get("status", "new") if p else "new",
                "action": action,
                **({"runs as": unit_of.get(t.hash, "")} if population else {}),
            }
        )
    return rows


def _cell(value: Any) -> Any:
    return json.dumps(value, separators=(",", ":")) if isinstance(value, dict | list) else value
