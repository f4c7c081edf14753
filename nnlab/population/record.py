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
from nnlab.files import in_parallel, open_log
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


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


class MemberRuns:
    """The members' run folders ``paths`` (one per member, in order), fed by ``pop``."""

    def __init__(self, pop: Population, paths: list[Path]):
        self.pop = pop
        self.paths = [Path(p) for p in paths]
        M, C = len(pop.members), len(pop.columns)
        self.best = Best(pop.columns, M)
        self.last = np.full((M, C), np.nan)  # each member's last row, written or not
        self.every = pop.template.config["training"].get("log_every", 1)
        self.unwritten = np.zeros(M)  # seconds of the epochs since a member's last row written
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
            files[path / "config.yaml"], kept = config_text(member.config)
            summary.update(kept)  # a copy of the config, for fast readers
            summary["population"] = {"members": len(pop.members), "member": i}
            self.summaries.append(summary)
            files[path / "summary.json"] = summary_text(summary)
            files[path / "metrics.csv"] = header
        write_run_files(files, durable=False)  # as the single run's first files: the final are
        pop.checkpoint_cost = (time.perf_counter() - t0) / 3

    def rows(self, rows: Rows, pop: Population) -> None:
        """Append new rows to the members' metrics.csv (every ``training.log_every``-th
        epoch's, as the single run writes them)."""
        self.best.add(rows.epochs, rows.values, rows.ids)
        counts = np.count_nonzero(~np.isnan(rows.values[:, :, 0]), axis=0)  # a prefix each
        for m, i in enumerate(rows.ids):
            if counts[m]:
                self.last[i] = rows.values[counts[m] - 1, m]
        values = rows.values if self.every == 1 else self._every_kth(rows)
        counts = np.count_nonzero(~np.isnan(values[:, :, 0]), axis=0)
        self._append(rows.ids, metrics_texts(pop.columns, values, counts))

    def _append(self, ids: Array, texts: list[str]) -> None:
        for m, i in enumerate(ids):
            if texts[m]:
                with open_log(self.paths[i] / "metrics.csv") as f:  # never through a link
                    f.write(texts[m])

    def _every_kth(self, rows: Rows) -> Array:
        """The rows of every k-th epoch, their seconds those of the epochs since the row
        before (so that the column adds up to the training time, as in ``Trainer._write``)."""
        s = self.pop.columns.index("seconds")
        values, acc = rows.values, self.unwritten[rows.ids]
        written = rows.epochs % self.every == 0
        for e in range(len(rows.epochs)):
            acc += np.nan_to_num(values[e, :, s])
            if written[e]:
                values[e, :, s] = np.where(np.isnan(values[e, :, s]), np.nan, acc)
                acc[:] = 0.0
        self.unwritten[rows.ids] = acc
        return values[written]

    def _last_rows(self) -> None:
        """With ``log_every``: each member's last row, when it was not written (as the single
        run's ``Trainer.fit`` writes it at the end)."""
        if self.every == 1:
            return
        ids = np.flatnonzero(~np.isnan(self.last[:, 0]) & (self.last[:, 0] % self.every != 0))
        if not len(ids):
            return
        values = self.last[ids][None].copy()  # (1, members, columns)
        values[0, :, self.pop.columns.index("seconds")] = self.unwritten[ids]
        self._append(ids, metrics_texts(self.pop.columns, values, np.ones(len(ids), int)))

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
                "threads": pop.threads,
                "optimizer": {k: v for k, v in state.items() if not isinstance(v, Array)},
                "rng": member.rng.bit_generator.state,
                "early_stopping": pop.early_stopping_state(i),
                "best": self.best.of(i),  # of every epoch: metrics.csv may hold every k-th
                "last": self._last_row(i, seconds=True) or None,
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
        self._last_rows()
        wall = time.time() - self.started
        total = max(pop.train_seconds, 1e-12)
        with threads.limited(pop.threads):  # the final evaluations, as in training
            for i, (member, path) in enumerate(zip(pop.members, self.paths, strict=True)):
                files.update(self._end(i, member, path, wall, total))
        write_run_files(files)
        done = [
            (p / CHECKPOINT,) for i, p in enumerate(self.paths) if pop.outcomes[i].status in DONE
        ]
        in_parallel(_remove, done)
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

    def _last_row(self, i: int, seconds: bool = False) -> dict:
        """Member i's last metrics row as the single run's summary holds it (without seconds
        unless ``seconds``)."""
        row: dict[str, Any] = {}
        if np.isnan(self.last[i, 0]):
            return row
        for name, v in zip(self.pop.columns, self.last[i].tolist(), strict=True):
            if (name == "seconds" and not seconds) or (name.endswith("accuracy") and v != v):
                continue
            row[name] = int(v) if name == "epoch" else v
        return row
