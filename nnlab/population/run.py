"""Running populations: ``train_population`` trains configs that form one population into
their run folders; ``train_seeds`` is ``nnlab train CONFIG --seeds N``: one config over many
seeds, in populations as memory allows, each seed in its own run folder.
"""

from __future__ import annotations

import copy
import math
import queue
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnlab.experiment import EVAL_BATCH, Experiment, build
from nnlab.lifecycle import stops
from nnlab.lifecycle import train as train_single
from nnlab.memory import available_bytes, check_fits
from nnlab.population.engine import Population
from nnlab.population.members import build_members, data_shared
from nnlab.population.partition import partition
from nnlab.population.record import MemberRuns
from nnlab.progress import LiveLine, bar, clock
from nnlab.runs import Status, new_run_dir, now, read_summary, summary_text, write_run_files

#: share of the memory available that one population may take
MEMORY_SHARE = 0.5


@dataclass
class PopulationResult:
    """How the members of one population ended: their run folders and summaries."""

    paths: list[Path]
    summaries: list[dict]
    seconds: float
    signal: int | None = None


def train_population(
    configs: list[dict],
    paths: list[Path],
    quiet: bool = True,
    handle_signals: bool = True,
    stop: queue.SimpleQueue | None = None,
) -> PopulationResult:
    """Train resolved configs that form a population (``partition``) together, each into its
    run folder ``paths[i]``, as ``nnlab.lifecycle.train`` would train each alone. ``stop``:
    signal numbers put there stop the members at a safe point (as the signals do)."""
    t0 = time.perf_counter()
    template, members = build_members(configs)
    pop = Population(template, members)
    runs = MemberRuns(pop, paths)
    runs.start()
    display = PopulationProgress(len(members), pop.epochs, enabled=not quiet)
    if pop.threads_why:
        display.line.say(f"BLAS threads: {pop.threads} ({pop.threads_why})")
    pop.on_epoch = display.epoch
    try:
        with stops(pop, handle_signals, stop):
            pop.fit()
    except BaseException as e:
        _failed(runs, f"{type(e).__name__}: {e}", traceback.format_exc())
        raise
    finally:
        display.close()
    summaries = runs.finish()
    return PopulationResult(list(paths), summaries, time.perf_counter() - t0, pop.stop_signal)


def _failed(runs: MemberRuns, error: str, trace: str) -> None:
    """Every member's summary says failed, with the error (training raised)."""
    files = {}
    for path, summary in zip(runs.paths, runs.summaries, strict=False):
        summary.update(status=Status.FAILED, error=error, traceback=trace, finished=now())
        files[path / "summary.json"] = summary_text(summary)
    write_run_files(files)


class PopulationProgress:
    """A live line while a population trains: epoch, members training, time left."""

    def __init__(self, members: int, epochs: int, enabled: bool = True, delay: float = 1.0):
        self.members, self.epochs = members, epochs
        self.line = LiveLine(enabled=enabled, delay=delay)
        self.start = time.perf_counter()

    def epoch(self, pop: Population) -> None:
        if not self.line.due():
            return
        frac = pop.epoch / self.epochs
        eta = (time.perf_counter() - self.start) * (1 - frac) / frac if frac > 0 else 0.0
        self.line.draw(
            f"{self.members} members: epoch {pop.epoch}/{self.epochs} {bar(frac)} {frac:4.0%} "
            f"training {pop.size}  eta {clock(eta)}"
        )

    def close(self) -> None:
        self.line.clear()


# ---------------------------------------------------------------- memory


def member_bytes(exp: Experiment, shared_data: bool) -> int:
    """Memory one member takes in a population of ``exp``'s shape: its parameter block rows
    (weights, gradient, optimizer state, scratch, best weights), its activations and their
    gradients in training and evaluation, and its data when members do not share it."""
    item = exp.model.dtype.itemsize
    batch = min(exp.config["training"]["batch_size"] or len(exp.data.train), len(exp.data.train))
    n = 8 * exp.model.n_params
    for shape in exp.model.shapes:
        units = math.prod(shape)
        n += 6 * batch * units + 2 * min(EVAL_BATCH, _largest_split(exp)) * units
    nbytes = n * item
    if not shared_data:  # its own splits, and their copies stacked with the others'
        for name in ("train", "val", "test"):
            split = getattr(exp.data, name)
            if split is not None:
                arrays = [split.X, *(a for t in exp.targets[name] for a in (t.T, t.L, t.W))]
                nbytes += 2 * sum(a.nbytes for a in arrays if a is not None)
        codes = exp.data.train.codes
        if codes is not None:
            nbytes += 2 * codes[0].nbytes
    return nbytes


def _largest_split(exp: Experiment) -> int:
    return max(len(s) for s in (exp.data.train, exp.data.val, exp.data.test) if s is not None)


def population_size(exp: Experiment, shared_data: bool, wanted: int) -> int:
    """How many members of ``exp``'s shape fit in memory at once (at most ``wanted``): a
    population takes at most ``MEMORY_SHARE`` of the memory available; one member that does not
    fit is a ConfigError naming the memory it needs."""
    per = member_bytes(exp, shared_data)
    check_fits(per, "one member of the population", "training")
    have = available_bytes()
    if have is None:
        return wanted
    return max(1, min(wanted, int(have * MEMORY_SHARE // per)))


# ---------------------------------------------------------------- seeds


@dataclass
class SeedsResult:
    """``nnlab train --seeds``: the parent folder and each seed's run folder and summary."""

    root: Path
    seeds: list[int]
    paths: list[Path]
    summaries: list[dict | None]
    alone: dict[int, str] = field(default_factory=dict)  # seed index -> why it ran alone
    populations: list[int] = field(default_factory=list)  # sizes of the populations that ran
    signal: int | None = None
    seconds: float = 0.0


def seed_configs(config: dict, seeds: list[int]) -> list[dict]:
    """The config once per seed."""
    out = []
    for s in seeds:
        c = copy.deepcopy(config)
        c["training"]["seed"] = s
        out.append(c)
    return out


@dataclass
class Units:
    """How trials train: ``populations`` (lists of indices of configs trained together, each
    as large as memory allows) and the trials that train alone, with why."""

    populations: list[list[int]] = field(default_factory=list)
    alone: dict[int, str] = field(default_factory=dict)


def plan_units(configs: list[dict], slots: int = 1) -> Units:
    """Group resolved configs into populations (``partition``), split so that each fits in
    memory and, with ``slots`` workers, so that every worker gets one (of two members or
    more, as even as can be)."""
    part = partition(configs)
    units = Units(alone=dict(part.alone))
    for group in part.groups:
        first = [configs[i] for i in group]
        cap = population_size(build(first[0]), data_shared(first), len(group))
        n = max(math.ceil(len(group) / cap), min(max(1, slots), len(group) // 2))
        units.populations += [list(c) for c in np.array_split(group, n)]
    return units


def train_seeds(
    config: dict,
    seeds: list[int],
    runs_dir: str | Path = "runs",
    quiet: bool = True,
    say=None,
) -> SeedsResult:
    """Train ``config`` once per seed into ``runs_dir/NAME-<stamp>/seed-NNN``: in populations
    (as many members at once as memory allows), or one run at a time when the config cannot
    train in a population (``say`` is told why)."""
    t0 = time.perf_counter()
    configs = seed_configs(config, seeds)
    units = plan_units(configs)
    root = new_run_dir(runs_dir, config["name"])
    width = max(3, len(str(max(seeds))))
    paths = [root / f"seed-{s:0{width}d}" for s in seeds]
    result = SeedsResult(root, list(seeds), paths, [None] * len(seeds), dict(units.alone))
    if units.alone and say is not None and len(units.alone) == len(seeds) > 1:
        say(f"note: the seeds train one at a time: {next(iter(units.alone.values()))}")
    for chunk in units.populations:
        r = train_population([configs[i] for i in chunk], [paths[i] for i in chunk], quiet)
        result.populations.append(len(chunk))
        for i, s in zip(chunk, r.summaries, strict=True):
            result.summaries[i] = s
        if r.signal is not None:
            result.signal = r.signal
            break
    for i in sorted(units.alone):
        if result.signal is not None:
            break
        r = train_single(configs[i], run_dir=paths[i], quiet=quiet)
        result.summaries[i] = r.summary
        if r.summary["status"] == Status.INTERRUPTED:
            result.signal = 15 if r.summary.get("signal") == "SIGTERM" else 2
    for i, path in enumerate(paths):
        if result.summaries[i] is None and path.is_dir():
            result.summaries[i] = read_summary(path)
    result.seconds = time.perf_counter() - t0
    return result


def headline(summaries: list[dict | None]) -> str:
    """The result of many seeds in one line: ``train accuracy 1.0 in 95/100 seeds; 0.975 ±
    0.11 (mean ± sd)`` (the test split if there is one, else validation, else training; the
    loss when there is no accuracy), then how many did not complete."""
    done = [s for s in summaries if s is not None]
    split = next((k for k in ("test", "val", "train") if any(k in s for s in done)), None)
    counts: dict[str, int] = {}
    for s in done:
        counts[s["status"]] = counts.get(s["status"], 0) + 1
    others = ", ".join(f"{n} {st}" for st, n in counts.items() if st != Status.COMPLETED)
    tail = f" ({others})" if others else ""
    if split is None:
        return f"no seed finished{tail}"
    metrics = [s[split] for s in done if split in s]
    key = next((k for k in metrics[0] if k.endswith("accuracy")), "loss")
    values = np.array([m.get(key, np.nan) for m in metrics], dtype=float)
    values = values[np.isfinite(values)]
    name = f"{split} {key}"
    n = len(summaries)
    if not len(values):
        return f"{name}: no finite value{tail}"
    sd = f"{np.std(values, ddof=1):.2g}" if len(values) > 1 else "-"
    spread = f"{np.mean(values):.4g} ± {sd} (mean ± sd of {len(values)})"
    if key.endswith("accuracy"):
        top = values.max()
        hits = int(np.count_nonzero(values == top))
        return f"{name} {top:.4g} in {hits}/{n} seeds; {spread}{tail}"
    return f"{name} {spread}; best {values.min():.4g}{tail}"


def exit_code(result: SeedsResult) -> int:
    """0: every seed completed, or some diverged (a result); 1: a seed failed; 3: every seed
    diverged; 130/143: interrupted (Ctrl-C / SIGTERM)."""
    if result.signal is not None:
        return 143 if result.signal == 15 else 130
    statuses = [s["status"] if s else Status.FAILED for s in result.summaries]
    if any(st == Status.FAILED for st in statuses):
        return 1
    if all(st == Status.DIVERGED for st in statuses):
        return 3
    return 0
