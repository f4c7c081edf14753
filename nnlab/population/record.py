"""The run folders of a population's members: each the folder its single run would write.

Before training every member's folder gets config.yaml, summary.json (running) and the header
of metrics.csv; rows are appended as the population hands them over; at a checkpoint each
member still training gets its checkpoint.npz in the single run's format (so ``nnlab train
--resume`` continues a member as a single run); at the end its summary.json and model.npz,
and the checkpoint goes. Files are written through ``nnlab.runs``, many at a time with one
flush to disk (``runs.write_run_files``): a thousand folders cost one flush, not a thousand.

A member's ``train_seconds`` is its share of the population's training time (each epoch's
time divided among the members training in it), so that the seconds of all members add up
to the population's; summary.json's ``population`` says how many trained together.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from nnlab import baselines, threads
from nnlab.lifecycle import end_summary, loop_summary, saved_meta, start_summary
from nnlab.metrics import Best
from nnlab.nn import OPTIMIZERS
from nnlab.population.engine import Population, Rows
from nnlab.population.members import Member, member_experiment
from nnlab.runs import (
    CHECKPOINT,
    DONE,
    Status,
    checkpoint_bytes,
    config_text,
    metrics_texts,
    model_bytes,
    summary_text,
    write_run_files,
)

Array = np.ndarray


class MemberRuns:
    """The members' run folders ``paths`` (one per member, in order), fed by ``pop``."""

    def __init__(self, pop: Population, paths: list[Path]):
        self.pop = pop
        self.paths = [Path(p) for p in paths]
        M, C = len(pop.members), len(pop.columns)
        self.best = Best(pop.columns, M)
        self.last = np.full((M, C), np.nan)
        self.summaries: list[dict] = []
        self.started = time.time()
        self._state_keys: dict[str, list[str]] = {}
        pop.record = self.rows
        pop.checkpoint = self.checkpoint

    def start(self) -> None:
        """Each member's folder as its single run starts it. What that took says what a
        checkpoint of the members will take (a file each instead of three)."""
        t0 = time.perf_counter()
        pop = self.pop
        files: dict[Path, Any] = {}
        known: dict[int, dict] = {}  # baselines per data set
        header = ",".join(pop.columns) + "\n"
        for i, (member, path) in enumerate(zip(pop.members, self.paths, strict=True)):
            path.mkdir(parents=True, exist_ok=True)
            exp = member_experiment(pop.template, member)
            if id(member.data) not in known:
                known[id(member.data)] = (
                    baselines.compute(member.data) if exp.one_label_head else {}
                )
            summary = start_summary(member.config, exp, path, known[id(member.data)])
            summary["population"] = {"members": len(pop.members), "member": i}
            self.summaries.append(summary)
            files[path / "config.yaml"] = config_text(member.config)
            files[path / "summary.json"] = summary_text(summary)
            files[path / "metrics.csv"] = header
        write_run_files(files)
        pop.checkpoint_cost = (time.perf_counter() - t0) / 3

    def rows(self, rows: Rows, pop: Population) -> None:
        """Append new rows to the members' metrics.csv."""
        self.best.add(rows.epochs, rows.values, rows.ids)
        counts = np.count_nonzero(~np.isnan(rows.values[:, :, 0]), axis=0)  # a prefix each
        texts = metrics_texts(pop.columns, rows.values, counts)
        for m, i in enumerate(rows.ids):
            if counts[m]:
                self.last[i] = rows.values[counts[m] - 1, m]
                with open(self.paths[i] / "metrics.csv", "a", encoding="utf-8") as f:
                    f.write(texts[m])

    def checkpoint(self, pop: Population) -> None:
        """Each training member's state at the epoch's end, as its single run's checkpoint
        (``Trainer.state``); its metrics rows are on disk before (``Population.flush``)."""
        files = {}
        for j, i in enumerate(pop.ids):
            member = pop.members[i]
            arrays = {"theta": np.array(pop.model.theta[j])}
            state = pop.optimizer.member_state(j, self._keys(member))
            arrays.update({f"optimizer/{k}": v for k, v in state.items() if isinstance(v, Array)})
            if pop.best_theta is not None and pop.best_rows[j]:
                arrays["best_theta"] = np.array(pop.best_theta[j])
            meta = {
                "epoch": pop.epoch,
                "optimizer": {k: v for k, v in state.items() if not isinstance(v, Array)},
                "rng": member.rng.bit_generator.state,
                "early_stopping": pop.early_stopping_state(i),
            }
            files[self.paths[i] / CHECKPOINT] = checkpoint_bytes(arrays, meta)
        write_run_files(files)

    def _keys(self, member: Member) -> list[str]:
        """The state arrays of the member's single-run optimizer (its checkpoint's)."""
        key = json.dumps(member.config["optimizer"], sort_keys=True)
        if key not in self._state_keys:
            probe = OPTIMIZERS.build(member.config["optimizer"])
            probe.setup(np.zeros(1, self.pop.stack.dtype), 0)
            state = probe.state_dict()
            self._state_keys[key] = [k for k, v in state.items() if isinstance(v, Array)]
        return self._state_keys[key]

    def finish(self) -> list[dict]:
        """Each member's final summary.json and model.npz (as its single run's); returns the
        summaries."""
        pop = self.pop
        files: dict[Path, Any] = {}
        wall = time.time() - self.started
        total = max(pop.train_seconds, 1e-12)
        with threads.limited(pop.threads):  # the final evaluations, as in training
            for i, (member, path) in enumerate(zip(pop.members, self.paths, strict=True)):
                files.update(self._end(i, member, path, wall, total))
        write_run_files(files)
        for i, path in enumerate(self.paths):
            if pop.outcomes[i].status in DONE:
                (path / CHECKPOINT).unlink(missing_ok=True)
        return self.summaries

    def _end(self, i: int, member: Member, path: Path, wall: float, total: float) -> dict:
        """Member i's final summary.json and model.npz (path -> content)."""
        pop, model, es = self.pop, self.pop.template.model, self.pop.early_stopping
        files: dict[Path, Any] = {}
        o = pop.outcomes[i]
        exp = member_experiment(pop.template, member)
        if o.status != Status.DIVERGED:
            model.theta[...] = o.theta
        summary = self.summaries[i]
        stop = pop.stop_signal if o.status == Status.INTERRUPTED else None
        decision = end_summary(exp, summary, o.status, o.diverged_at, stop)
        stopping = None
        if es is not None and o.es_epoch is not None:
            stopping = (es["monitor"], o.es_epoch, o.restored)
        loop_summary(summary, o.epochs, self._last_row(i), self.best.of(i), pop.threads,
                     o.stopped_early, stopping)  # fmt: skip
        share = float(pop.member_seconds[i])
        summary["train_seconds"] = round(share, 4)
        summary["wall_seconds"] = round(wall * share / total, 4)
        summary["population"].update(
            train_seconds=round(pop.train_seconds, 4), wall_seconds=round(wall, 4)
        )
        files[path / "summary.json"] = summary_text(summary)
        if o.status != Status.DIVERGED:
            files[path / "model.npz"] = model_bytes(model, saved_meta(exp, decision))
        return files

    def _last_row(self, i: int) -> dict:
        """Member i's last metrics row as the single run's summary holds it (no seconds)."""
        row: dict[str, Any] = {}
        if np.isnan(self.last[i, 0]):
            return row
        for name, v in zip(self.pop.columns, self.last[i].tolist(), strict=True):
            if name == "seconds" or (name.endswith("accuracy") and v != v):
                continue
            row[name] = int(v) if name == "epoch" else v
        return row
