"""Run folders read for comparison: ``load_runs`` finds the runs among paths (a folder holding
runs stands for all of them, ``nnlab.runs.find_runs``) and reads each (``read_run``): a run
with a damaged file is reported through ``warn`` and skipped. Made for thousands of runs: a
finished run's last and best values come from its summary and its metrics.csv is read at its
two ends; its config is the summary's copy while config.yaml is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnlab.compare.keys import flatten_configs
from nnlab.errors import RunError
from nnlab.runs import (
    Metrics,
    Status,
    find_runs,
    read_config,
    read_last_metrics,
    read_metrics,
    read_summary,
    run_status,
)

Warn = Callable[[str], None]


@dataclass
class Run:
    """A run folder, read."""

    path: Path
    config: dict
    summary: dict
    metrics: Metrics  # the rows of metrics.csv (read without curves: see ``read_run``)
    status: str  # the summary's, or 'killed' for a run whose process is gone
    label: str = ""
    flat: dict[str, Any] = field(default_factory=dict)
    final: bool = False  # the summary holds the final last and best values (``is_final``)


def is_final(summary: dict, status: str) -> bool:
    """Whether a summary holds its run's final last and best values (exact also when
    metrics.csv has every k-th row only): the run ended and recorded how."""
    ended = status not in (Status.RUNNING, Status.KILLED)
    have = all(isinstance(summary.get(k), dict) for k in ("last", "best"))
    return ended and have and isinstance(summary.get("epochs_completed"), int)


def read_run(path: Path, curves: bool = True) -> Run:
    """Read a run folder; a RunError names the file that is missing or damaged. Without
    ``curves``, a finished run's metrics.csv is read at its two ends only (its header and
    last row: the table takes the last and best values from the summary), which keeps
    reading thousands of runs, or runs of millions of epochs, fast."""
    summary = read_summary(path)
    config = read_config(path, summary)
    status = run_status(summary)
    final = is_final(summary, status)
    if curves or not final:
        metrics = read_metrics(path, missing_ok=True)
    else:
        metrics = read_last_metrics(path, missing_ok=True)
    return Run(path, config, summary, metrics, status, final=final)


def load_runs(paths: Iterable[str | Path], warn: Warn, curves: bool = True) -> list[Run]:
    """Read every run among ``paths``; damaged ones are reported through ``warn`` and skipped.
    ``curves``: every row of each metrics.csv (plots), not only what the table needs."""
    runs = []
    for path in find_runs(paths, warn):
        try:
            runs.append(read_run(path, curves))
        except RunError as e:
            warn(f"{e}; skipped")
    labels = run_labels([r.path for r in runs])
    for r, label, flat in zip(runs, labels, flatten_configs([r.config for r in runs]), strict=True):
        r.label = label
        r.flat = flat
    return runs


def run_labels(paths: list[Path]) -> list[str]:
    """Short unique names for run folders: a sweep's trial ``sweeps/NAME/trials/003-4fb9...``
    is ``NAME/003``, another run its folder's name; the paths themselves when those clash."""
    names = []
    for path in paths:
        if path.parent.name == "trials" and (path.parent.parent / "index.json").is_file():
            names.append(f"{path.parent.parent.name}/{path.name.split('-')[0]}")
        else:
            names.append(path.name)
    return names if len(set(names)) == len(names) else [str(p) for p in paths]
