"""A search: Optuna samples the axes (ask/tell), nnlab runs each sampled config's seeds.

The study lives in the sweep folder, ``study.journal`` (Optuna's journal file storage: an
append-only log of the study's operations, one JSON line each, written by the runner alone,
under the sweep's lock). Each sampled config is an Optuna trial; it runs every seed of the
sweep as an ordinary trial run folder (``trials/NNN-HASH``, the hash of its config with the
seed), and the study is told the mean of their objective (the metric's last value). A config
whose seed diverged is told failed; one whose seed failed stays open, and runs again the next
time the sweep runs (as a grid reruns a failed trial).

Running a search again continues its study: trials told stay as they are, open ones (asked
but not told: the sweep was stopped or killed) run what they lack (seed runs done are
skipped, unfinished ones continue from their checkpoint) and are told once, and new trials
are asked until the study holds ``trials`` of them: every trial exactly once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnlab.errors import ConfigError, RunError
from nnlab.metrics import NOT_METRICS, higher_is_better
from nnlab.runs import DONE, Status, read_summary
from nnlab.sweeps.axes import Distribution
from nnlab.sweeps.pruning import Steps, make_pruner, mark_pruned
from nnlab.sweeps.search_spec import Search
from nnlab.sweeps.spec import Sweep, Trial

INSTALL = "pip install 'nnlab[search]'"
STUDY_FILE = "study.journal"
_PRIMITIVE = (str, int, float, bool, type(None))


def import_optuna(where: str = "--sampler") -> Any:
    """Optuna, quiet, or a ConfigError naming the extra that installs it."""
    try:
        import optuna
    except ImportError as e:
        raise ConfigError(f"a search runs on Optuna ({e}): {INSTALL}", source=where) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


# ---------------------------------------------------------------- the search space


def to_optuna(dist: Distribution) -> Any:
    """An axis's distribution as Optuna's (a choice among values other than strings, numbers,
    booleans and null is a choice among their JSON texts)."""
    optuna = import_optuna()
    d = optuna.distributions
    if dist.kind == "choice":
        return d.CategoricalDistribution(_encoded(dist.choices))
    if dist.kind == "int":
        return d.IntDistribution(int(dist.low), int(dist.high), log=dist.log)
    return d.FloatDistribution(float(dist.low), float(dist.high), log=dist.log)


def _encoded(choices: tuple) -> list:
    if all(isinstance(c, _PRIMITIVE) for c in choices):
        return list(choices)
    return [json.dumps(c, sort_keys=True) for c in choices]


def from_optuna(dist: Distribution, value: Any) -> Any:
    """A sampled value as the config takes it."""
    if dist.kind == "choice":
        return dist.choices[_encoded(dist.choices).index(value)]
    return int(value) if dist.kind == "int" else float(value)


def sampler(search: Search, asked: int) -> Any:
    """Optuna's sampler; its seed is drawn from the search's seed and the trials asked before
    (a search continued after a stop does not draw its first trials again)."""
    optuna = import_optuna()
    seed = int(np.random.SeedSequence([search.seed, asked]).generate_state(1)[0])
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if search.sampler == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ImportError as e:
            raise ConfigError(
                f"the cmaes sampler needs cmaes ({e}): {INSTALL}", source="--sampler"
            ) from None
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    return optuna.samplers.TPESampler(seed=seed)


# ---------------------------------------------------------------- the study


def study_path(sweep_dir: Path) -> Path:
    return Path(sweep_dir) / STUDY_FILE


def _repair(path: Path) -> None:
    """Under the sweep's lock: a kill while appending left at most an unfinished last line
    (cut, or the next line would be glued to it), and perhaps Optuna's lock file (removed:
    only this process writes the study)."""
    for stale in (Path(f"{path}.lock"),):
        stale.unlink(missing_ok=True)
    if not path.is_file():
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


def signature(sweep: Sweep, metric: str, direction: str) -> dict:
    """What makes two searches the same study: the axes, the seeds, the base and the
    objective (another sweep of the same name must not continue this one)."""
    from nnlab.config import config_hash

    return {
        "axes": {a.key: str(a.values) for a in sweep.axes},
        "seeds": sweep.seeds,
        "base": config_hash(sweep.base) if isinstance(sweep.base, dict) else None,
        "objective": [metric, direction],
    }


def load_study(sweep_dir: Path, name: str) -> Any:
    """The study of a search's folder, to read (None if there is none)."""
    path = study_path(sweep_dir)
    if not path.is_file():
        return None
    optuna = import_optuna()
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


@dataclass
class _Group:
    """A sampled config (an Optuna trial) and its seed runs."""

    number: int  # the Optuna trial's number
    trial: Any  # optuna.Trial
    overrides: dict[str, Any]
    runs: list[str]  # run hashes, one per seed
    steps: Steps
    pruned: bool = False
    told: bool = False
    ended: dict[str, str] = field(default_factory=dict)  # run hash -> status


class SearchDriver:
    """The search's part of a sweep's loop (``runner._Loop``): asks trials while there are
    free workers, tells the study each config's mean, prunes through the executor."""

    def __init__(self, sweep: Sweep, sweep_dir: Path):
        self.sweep, self.search, self.dir = sweep, sweep.search, Path(sweep_dir)
        self.seeds = sweep.seeds or [None]
        self.metric, self.direction = objective(sweep)
        #: the metric the workers report each epoch, for the pruner (None: no pruner)
        self.report = self.metric if self.search.pruner != "none" else None
        self.optuna = import_optuna()
        self.groups: dict[int, _Group] = {}
        self.by_run: dict[str, list[_Group]] = {}  # run hash -> the groups that use it
        self.asked = 0  # trials in the study (abandoned ones aside)
        self.study = self._open()
        sweep.sampled.clear()  # the study says which configs were sampled (a Sweep run again)
        self._restore()

    def _open(self) -> Any:
        optuna = self.optuna
        path = study_path(self.dir)
        _repair(path)
        backend = optuna.storages.journal.JournalFileBackend(
            str(path), lock_obj=optuna.storages.journal.JournalFileOpenLock(str(path))
        )
        storage = optuna.storages.JournalStorage(backend)
        names = {s.study_name for s in optuna.get_all_study_summaries(storage)}
        asked = 0
        if self.sweep.name in names:
            old = optuna.load_study(study_name=self.sweep.name, storage=storage)
            asked = len(old.get_trials(deepcopy=False))
        study = optuna.create_study(
            storage=storage,
            study_name=self.sweep.name,
            direction=self.direction,
            sampler=sampler(self.search, asked),
            pruner=make_pruner(self.search.pruner),
            load_if_exists=True,
        )
        mine = signature(self.sweep, self.metric, self.direction)
        theirs = study.user_attrs.get("nnlab")
        if theirs is None:
            study.set_user_attr("nnlab", mine)
        elif json.dumps(theirs, sort_keys=True) != json.dumps(mine, sort_keys=True):
            raise RunError(
                f"{self.dir}: holds a search of other axes, seeds, base or objective; give "
                "this one another name (--name) or remove that folder"
            )
        return study

    def _restore(self) -> None:
        """Every trial of the study: its seed runs join the sweep's trials; open trials
        (asked, not told) become groups to finish; abandoned asks are told failed."""
        T = self.optuna.trial.TrialState
        for ft in self.study.get_trials(deepcopy=False):
            if ft.user_attrs.get("nnlab_abandoned"):
                continue
            missing = [a.key for a in self.sweep.axes if a.key not in ft.params]
            if missing:  # killed between asking and its last parameter: never ran
                if ft.state == T.RUNNING:
                    trial = self.optuna.trial.Trial(self.study, ft._trial_id)
                    trial.set_user_attr("nnlab_abandoned", True)
                    self.study.tell(trial, state=T.FAIL)
                continue
            self.asked += 1
            overrides = {a.key: from_optuna(a.values, ft.params[a.key]) for a in self.sweep.axes}
            group = self._group(ft.number, None, overrides, ft.intermediate_values)
            group.told = ft.state != T.RUNNING
            group.pruned = "nnlab_pruned_at" in ft.user_attrs  # decided, maybe not told
            if not group.told:
                group.trial = self.optuna.trial.Trial(self.study, ft._trial_id)

    def _group(
        self, number: int, trial: Any, overrides: dict[str, Any], told: dict | None = None
    ) -> _Group:
        runs = []
        for j, seed in enumerate(self.seeds):
            t = self.sweep.trial_at(overrides, seed, number * len(self.seeds) + j + 1)
            if t.hash not in self.by_run:
                self.sweep.sampled.append(t)
            runs.append(t.hash)
        group = _Group(number, trial, overrides, runs, Steps(set(told or ())))
        self.groups[number] = group
        for h in runs:
            self.by_run.setdefault(h, []).append(group)
        return group

    # ------------------------------------------------------------ hooks of the loop

    def adopt(self, plan: Any) -> None:
        """After the runner planned the known trials: the unfinished runs of a pruned config
        (the sweep stopped while they stopped) are pruned, not run again; open configs whose
        runs all ended are told now."""
        entries, drop = plan.entries, set()
        for group in self.groups.values():
            for h in group.runs:
                entries[h]["search_trial"] = group.number
                status = entries[h].get("status")
                if status in DONE:
                    group.ended[h] = status
                    group.pruned |= status == Status.PRUNED
            for h in group.runs if group.pruned else ():
                if h not in group.ended:
                    run = self.dir / entries[h]["run"]
                    if (run / "summary.json").is_file():
                        mark_pruned(run)
                    entries[h]["status"] = group.ended[h] = Status.PRUNED
                    drop.add(h)
        plan.todo = [t for t in plan.todo if t.hash not in drop]
        plan.resume -= drop
        for group in self.groups.values():
            self._maybe_tell(group, entries, set())

    def more(self, loop: Any = None) -> bool:
        """Whether trials are left to ask (and no signal stops the sweep's ``loop``)."""
        stopping = bool(getattr(loop, "signals", None))
        return not stopping and self.asked < self.search.trials

    def runs_left(self) -> int:
        """Seed runs of the trials not asked yet."""
        return max(0, self.search.trials - self.asked) * len(self.seeds)

    def tick(self, loop: Any) -> None:
        """Each turn of the loop: the workers' reports to the pruner; new trials to ask while
        workers would be idle."""
        loop.progress.total = self.sweep.size
        self._reports(loop)
        for group in list(self.groups.values()):
            self._step(group, loop)
        while self.more(loop) and len(loop.queue) + loop.ex.busy < loop.ex.slots:
            self._ask(loop)

    def _reports(self, loop: Any) -> None:
        for key, epoch, value in loop.ex.reports():
            for group in self.by_run.get(key, []):
                group.steps.add(key, epoch, value)

    def _ask(self, loop: Any) -> None:
        dists = {a.key: to_optuna(a.values) for a in self.sweep.axes}
        trial = self.study.ask(fixed_distributions=dists)
        self.asked += 1
        overrides = {a.key: from_optuna(a.values, trial.params[a.key]) for a in self.sweep.axes}
        try:
            group = self._group(trial.number, trial, overrides)
        except ConfigError as e:  # a sampled combination the bounds alone did not reveal
            trial.set_user_attr("nnlab_error", str(e))
            self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
            loop.progress.say(f"note: search trial {trial.number} cannot run: {e}")
            return
        entries = loop.entries
        width = max(3, len(str(self.sweep.size)))
        next_number = max((e["number"] for e in entries.values()), default=0) + 1
        for h, t in zip(group.runs, self._trials_of(group), strict=True):
            e = entries.get(h)
            if e is None:
                e = entries[h] = {"number": next_number, "hash": h, "status": "pending"}
                e["run"] = f"trials/{next_number:0{width}d}-{h}"
                e.update(overrides=t.overrides, seed=t.seed, search_trial=group.number)
                next_number += 1
                loop.index.record(e)
            if e["status"] in DONE:
                group.ended[h] = e["status"]
            elif e["status"] == "pending" and all(q.hash != h for q in loop.queue):
                loop.queue.append(t)
        loop.progress.todo += len(group.runs)
        loop.folder.write_spec(self.sweep)  # sweep.yaml lists the trials sampled so far
        self._maybe_tell(group, entries, set(loop.running))

    def _trials_of(self, group: _Group) -> list[Trial]:
        known = {t.hash: t for t in self.sweep.sampled}
        return [known[h] for h in group.runs]

    def ended(self, loop: Any, trial: Trial, entry: dict) -> None:
        """A seed run ended: its config is told once all its runs have (with the epochs its
        runs reported before they ended: the pruner compares the next trials with them)."""
        self._reports(loop)
        for group in self.by_run.get(trial.hash, []):
            group.ended[trial.hash] = entry["status"]
            self._step(group, loop)
            self._maybe_tell(group, loop.entries, set(loop.running))

    def _step(self, group: _Group, loop: Any) -> None:
        """Report the epochs all running seeds reached; prune a hopeless config."""
        if group.told or group.pruned:
            return
        running = {h for h in group.runs if h in loop.running}
        left = running or any(t.hash in group.runs for t in loop.queue)
        for epoch, value in group.steps.ready(running):
            group.trial.report(value, epoch)
            if left and group.trial.should_prune():  # nothing left to save: no prune
                self._prune(group, loop, epoch)
                return

    def _prune(self, group: _Group, loop: Any, epoch: int) -> None:
        group.pruned = True
        group.trial.set_user_attr("nnlab_pruned_at", epoch)  # a decision a restart keeps
        for h in group.runs:
            if h in loop.running:
                loop.ex.prune(h)
        queued = [t for t in loop.queue if t.hash in group.runs]
        for t in queued:
            loop.queue.remove(t)
            e = loop.entries[t.hash]
            e.update(status=Status.PRUNED, error=None)
            loop.index.record(e)
            group.ended[t.hash] = Status.PRUNED
            loop.progress.trial(t.label, Status.PRUNED, None, None, None)
        self._maybe_tell(group, loop.entries, set(loop.running))

    def _maybe_tell(self, group: _Group, entries: dict, running: set[str]) -> None:
        """Tell the study once every run of the config ended (none failed)."""
        if group.told or group.trial is None:
            return
        statuses = [group.ended.get(h) or entries.get(h, {}).get("status") for h in group.runs]
        if any(s not in DONE for s in statuses) or running & set(group.runs):
            return
        T = self.optuna.trial.TrialState
        if group.pruned or Status.PRUNED in statuses:
            self.study.tell(group.trial, state=T.PRUNED)
        elif Status.DIVERGED in statuses:
            group.trial.set_user_attr("nnlab", "diverged")
            self.study.tell(group.trial, state=T.FAIL)
        else:
            values = [self._value(entries[h]) for h in group.runs]
            if any(v is None for v in values):
                self.study.tell(group.trial, state=T.FAIL)
            else:
                self.study.tell(group.trial, float(np.mean(values)))
        group.told = True

    def _value(self, entry: dict) -> float | None:
        try:
            summary = read_summary(self.dir / entry["run"])
        except RunError:
            return None
        value = (summary.get("last") or {}).get(self.metric)
        return float(value) if isinstance(value, int | float) else None


def objective(sweep: Sweep) -> tuple[str, str]:
    """The metric a search's study is told and its direction: the one asked, else the
    validation metric nnlab ranks by (``compare``'s default: the validation accuracy, else
    the first validation metric), checked against the runs' metric columns."""
    from nnlab.compare.verdict import default_objective
    from nnlab.experiment import build, metric_columns

    search = sweep.search
    first = {a.key: _first(a.values) for a in sweep.axes}
    probe = sweep.trial_at(first, (sweep.seeds or [None])[0], 1)
    columns = [c for c in metric_columns(build(probe.config)) if c not in NOT_METRICS]
    metric = search.metric or default_objective(columns)
    where = "--objective" if "objective" in sweep.spec.get("cli_search", {}) else "search.objective"
    if metric not in columns:
        raise ConfigError(
            f"{metric!r} is not a metric of these runs; they have {', '.join(columns)}",
            where,
            sweep.source,
        )
    direction = search.direction or ("maximize" if higher_is_better(metric) else "minimize")
    return metric, direction


def _first(dist: Distribution) -> Any:
    return dist.choices[0] if dist.kind == "choice" else dist.low


def check_space(sweep: Sweep) -> None:
    """Before anything runs: every bound and every choice of each axis (the other axes at
    their first value) resolves and builds, so that a space with a value that cannot train is
    an error naming the axis, not a failed trial later."""
    from nnlab.sweeps.spec import check_trials

    first = {a.key: _first(a.values) for a in sweep.axes}
    seed = (sweep.seeds or [None])[0]
    probes: dict[str, Trial] = {}
    for axis in sweep.axes:
        d = axis.values
        where = f"-g {axis.key}" if axis.origin == "-g" else f"axes.{axis.key}"
        values = d.choices if d.kind == "choice" else (d.low, d.high)
        for value in values:
            try:
                t = sweep.trial_at({**first, axis.key: value}, seed, len(probes) + 1)
            except ConfigError as e:
                raise ConfigError(f"{json.dumps(value)} cannot run: {e}", where) from None
            probes.setdefault(t.hash, t)
    check_trials(list(probes.values()))


def best(sweep_dir: Path, name: str) -> dict | None:
    """The best trial of a search's study: its number, value and parameters (None: no
    completed trial yet)."""
    study = load_study(sweep_dir, name)
    if study is None:
        return None
    try:
        b = study.best_trial
    except ValueError:
        return None
    return {"number": b.number, "value": b.value, "params": b.params}


def counts(sweep_dir: Path, name: str) -> dict[str, int]:
    """The study's trials by state (complete, pruned, fail, running)."""
    study = load_study(sweep_dir, name)
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False) if study is not None else []:
        if t.user_attrs.get("nnlab_abandoned"):
            continue
        out[t.state.name.lower()] = out.get(t.state.name.lower(), 0) + 1
    return out
