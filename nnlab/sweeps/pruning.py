"""Pruning a search's hopeless trials: the workers' side and the study's.

A trial of a search runs as seed runs on the workers. With a pruner, each worker reports the
objective after every epoch (``epoch_reporter``: a line on a local worker's result channel, an
item of a Dask queue on a cluster); the runner averages the seeds of a sampled config at each
epoch (``Steps``), reports the mean to the study and asks its pruner. A trial found hopeless is
pruned: the runner asks the executor to stop its running seeds (a local worker gets
``PRUNE_SIGNAL``, a Dask task sees its key in a shared ``Variable``), which stop at a safe
point and record status ``pruned`` with the epochs they ran (``mark_pruned``); its seeds not
started yet are not run.
"""

from __future__ import annotations

import math
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nnlab.runs import CHECKPOINT, Status, read_summary, write_summary

#: what a local worker receives when the runner prunes its trial
PRUNE_SIGNAL = signal.SIGUSR1

PRUNERS = ("none", "median", "asha")


def make_pruner(name: str) -> Any:
    """Optuna's pruner for ``name``: ``median`` (MedianPruner: stop a trial whose value at an
    epoch is worse than the median of the earlier trials at that epoch, after 5 trials),
    ``asha`` (SuccessiveHalvingPruner, asynchronous successive halving), ``none``."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
    if name == "asha":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def epoch_reporter(metric: str, send: Callable[[int, float], None]) -> Callable[[dict], None]:
    """A ``report`` callback for ``lifecycle.train``: each epoch's ``metric`` (finite values
    only: a diverging run says so by itself) goes to ``send(epoch, value)``."""

    def report(row: dict) -> None:
        value = row.get(metric)
        if isinstance(value, int | float) and math.isfinite(value):
            send(int(row["epoch"]), float(value))

    return report


def mark_pruned(run_dir: str | Path) -> dict:
    """A run stopped by a prune (its summary says interrupted): record it ``pruned``, with the
    epochs it ran; the checkpoint goes (a pruned trial is final). Returns the summary."""
    run_dir = Path(run_dir)
    summary = read_summary(run_dir)
    if summary.get("status") != Status.INTERRUPTED:
        return summary  # it ended on its own before the prune reached it
    summary["status"] = Status.PRUNED
    summary.pop("signal", None)
    summary["pruned_at_epoch"] = summary.get("epochs_completed", 0)
    write_summary(run_dir, summary)
    (run_dir / CHECKPOINT).unlink(missing_ok=True)
    return summary


class Steps:
    """The per-epoch objective of one sampled config's seed runs, reported to the study as a
    mean once every seed run still running has reached that epoch (seeds that run side by
    side are averaged; a seed that ended counts with the epochs it reported)."""

    def __init__(self, told: set[int] | None = None):
        self.values: dict[int, dict[str, float]] = {}  # epoch -> run hash -> value
        self.told = set(told or ())  # epochs the study has a value for

    def add(self, run: str, epoch: int, value: float) -> None:
        if epoch not in self.told:
            self.values.setdefault(epoch, {})[run] = value

    def ready(self, running: set[str]) -> list[tuple[int, float]]:
        """(epoch, mean) for each epoch every run of ``running`` reported, in order, now told."""
        out = []
        for epoch in sorted(self.values):
            got = self.values[epoch]
            if not running <= got.keys():
                break
            out.append((epoch, sum(got.values()) / len(got)))
            self.told.add(epoch)
            del self.values[epoch]
        return out
