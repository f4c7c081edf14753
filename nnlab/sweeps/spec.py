"""A sweep's spec: a base config, axes (key path -> values) and seeds, expanded into trials.

A sweep file is YAML with ``base`` (a config path relative to the sweep file, or an inline
config), ``axes``, ``seeds``, ``set`` and options; a plain config file with ``-g`` axes on the
command line is the same sweep written differently. ``load_sweep`` reads either, ``Sweep.trials``
is the grid: the cartesian product of the axes, times the seeds (innermost), each trial a resolved
config whose identity is ``config_hash`` (name and description left out, the seed inside).
``check_trials`` builds every distinct combination once, so a combination that cannot train is an
error before anything runs.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from nnlab.config import (
    Config,
    apply_overrides,
    config_hash,
    format_key,
    load_raw,
    parse_yaml,
    set_path,
    split_key,
)
from nnlab.errors import ConfigError, NnlabError
from nnlab.schema import Doc, Interval, check, fmt
from nnlab.sweeps.axes import MAX_TRIALS, Distribution, distribution, expression, parse_axis
from nnlab.sweeps.search_spec import Search, SearchSection, search_axes, search_of

SEED_KEY = "training.seed"


@dataclass
class SweepFile:
    """The keys of a sweep file."""

    base: Annotated[
        str | dict, Doc("the base config: a path relative to the sweep file, or an inline config")
    ]
    axes: Annotated[
        dict,
        Doc(
            "key path -> a list of values, or range(start, stop[, step]), linspace(a, b, n), "
            "logspace(a, b, n); the grid is their cartesian product. A search also takes "
            "uniform(a, b), loguniform(a, b), int(a, b[, log]), choice(v1, ...)"
        ),
    ] = field(default_factory=dict)
    seeds: Annotated[
        int | list[int] | None,
        Doc("a count N (seeds 0..N-1) or a list of seeds (null: the base config's seed)"),
    ] = None
    set: Annotated[
        dict, Doc("key path -> value: fixed overrides of the base config, before the axes")
    ] = field(default_factory=dict)
    jobs: Annotated[int, Interval(ge=1), Doc("trials run in parallel processes")] = 1
    name: Annotated[
        str | None, Doc("the sweep's name: its folder runs/sweeps/NAME (null: the file's name)")
    ] = None
    description: Annotated[str, Doc("free text: what this sweep asks")] = ""
    search: Annotated[
        SearchSection | None, Doc("sample the axes with Optuna instead of a grid (null: grid)")
    ] = None

    @staticmethod
    def __post_check__(p: dict, path: str) -> None:
        p["seeds"] = seed_list(p["seeds"], "seeds")
        axes = {}  # a new mapping: the file's own (sweep.yaml's "spec") keeps its text
        for key, values in p["axes"].items():
            where = f"axes.{key}"
            if not isinstance(key, str):
                raise ConfigError(f"an axis is named by a key path, got {fmt(key)}", where)
            if isinstance(values, str):
                values = distribution(values, where) or expression(values, where)
                if values is None:
                    raise ConfigError(
                        f"expected a list of values, or range(...), linspace(...), logspace(...), "
                        f"or a search's uniform/loguniform/int/choice(...); "
                        f"got {fmt(p['axes'][key])}",
                        where,
                    )
            if not isinstance(values, list | Distribution) or not values:
                raise ConfigError(f"expected a non-empty list of values, got {fmt(values)}", where)
            axes[key] = values
        p["axes"] = axes


def seed_list(seeds: Any, where: str, source: str | None = None) -> list[int] | None:
    """Seeds as a list: a count N gives 0..N-1; a list is checked (integers, no repeats)."""
    if seeds is None:
        return None
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if not 1 <= seeds <= MAX_TRIALS:
            raise ConfigError(
                f"a seed count must be >= 1 and at most {MAX_TRIALS:,}, got {fmt(seeds)}",
                where,
                source,
            )
        return list(range(seeds))
    if isinstance(seeds, list) and seeds:
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            raise ConfigError(f"seeds must be integers, got {fmt(seeds)}", where, source)
        if min(seeds) < 0:
            raise ConfigError(f"seeds must be >= 0, got {min(seeds)}", where, source)
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"a seed is repeated in {fmt(seeds)}", where, source)
        return list(seeds)
    raise ConfigError(
        f"expected a count N (seeds 0..N-1) or a list of integers, got {fmt(seeds)}", where, source
    )


# ---------------------------------------------------------------- the sweep


@dataclass
class Axis:
    key: str  # as written: model.layers.0.initializer
    parts: list[str | int]
    values: list | Distribution  # a distribution in a search only
    origin: str  # "-g" or the sweep file


@dataclass
class Trial:
    """One point of the grid: a resolved config and its identity."""

    number: int  # 1-based position in the grid
    overrides: dict[str, Any]  # axis key -> value
    seed: int
    config: dict
    hash: str

    @property
    def label(self) -> str:
        return trial_label(self.overrides, self.seed)


def trial_label(overrides: dict[str, Any], seed: int | None) -> str:
    """``optimizer.lr=0.1 seed=2``: what sets a trial apart."""
    parts = [f"{k}={_short(v)}" for k, v in overrides.items()]
    return " ".join(parts + ([f"seed={seed}"] if seed is not None else []))


def _short(value: Any, limit: int = 80) -> str:
    """A value as a label shows it: compact JSON for lists and mappings, cut to ``limit``
    characters without encoding the rest."""
    if isinstance(value, str):
        return value if len(value) <= limit and value.isprintable() else fmt(value)
    if not isinstance(value, dict | list):
        return fmt(value)
    text = ""
    for piece in json.JSONEncoder(separators=(",", ":")).iterencode(value):
        text += piece
        if len(text) > limit:
            return text[: limit - 3] + "..."
    return text


@dataclass
class Sweep:
    name: str
    description: str
    source: str  # the file given
    base: dict  # the base config, fixed overrides applied, not yet resolved
    base_source: str
    axes: list[Axis]
    seeds: list[int] | None
    jobs: int
    spec: dict  # as given, for sweep.yaml
    origins: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (source, note)
    notes: list[str] = field(default_factory=list)
    search: Search | None = None
    #: a search's trials: the seeds of the configs sampled so far (``nnlab.sweeps.search``)
    sampled: list[Trial] = field(default_factory=list)
    _trials: list[Trial] | None = None

    @property
    def size(self) -> int:
        if self.search is not None:
            return self.search.trials * len(self.seeds or [None])
        return math.prod(len(a.values) for a in self.axes) * len(self.seeds or [None])

    @property
    def trials(self) -> list[Trial]:
        if self.search is not None:
            return self.sampled
        if self._trials is None:
            self._trials = self._expand()
        return self._trials

    def trial_at(self, overrides: dict[str, Any], seed: int | None, number: int) -> Trial:
        """The trial of a search's sampled ``overrides`` (axis key -> value) with ``seed``,
        numbered ``number``."""
        values = tuple(overrides[a.key] for a in self.axes)
        cfg = self._point(values, seed, number, overrides)
        return Trial(number, overrides, cfg["training"]["seed"], cfg, config_hash(cfg))

    def _expand(self) -> list[Trial]:
        """The grid points, each resolved once (the first seed's config validated in full);
        the other seeds of a point are copies with their seed set, which validating again
        would not change (seeds are checked integers >= 0): 10,000 seeds cost one check."""
        trials: list[Trial] = []
        seen: dict[str, Trial] = {}
        seeds = self.seeds or [None]
        grid = itertools.product(*[a.values for a in self.axes])
        for g, values in enumerate(grid):
            overrides = {a.key: v for a, v in zip(self.axes, values, strict=True)}
            point = self._point(values, seeds[0], g * len(seeds) + 1, overrides)
            for j, seed in enumerate(seeds):
                cfg = point if j == 0 else _with_seed(point, seed)
                h = config_hash(cfg)
                if h in seen:
                    self.notes.append(
                        f"trial {g * len(seeds) + j + 1} ({trial_label(overrides, seed)}) is the "
                        f"same config as trial {seen[h].number} ({seen[h].label}); it runs once"
                    )
                    continue
                trial = Trial(len(trials) + 1, overrides, cfg["training"]["seed"], cfg, h)
                seen[h] = trial
                trials.append(trial)
        return trials

    def _point(self, values: tuple, seed: int | None, number: int, overrides: dict) -> dict:
        """The resolved config of a grid point with ``seed`` (trial ``number`` of the grid)."""
        raw = copy.deepcopy(self.base)
        for axis, value in zip(self.axes, values, strict=True):
            set_path(raw, axis.parts, copy.deepcopy(value))
        if seed is not None:
            set_path(raw, ["training", "seed"], seed)
        try:
            cfg = self.resolve(raw)
        except ConfigError as e:
            where = f"trial {number} of {self.size} ({trial_label(overrides, seed)})"
            raise ConfigError(str(e), source=where) from None
        cfg["name"] = self.name
        return cfg

    def resolve(self, raw: dict) -> dict:
        """Validate a trial's raw config; errors name where the key was set."""
        try:
            return check(raw, Config, "")
        except ConfigError as e:
            for key, (source, note) in self.origins.items():
                if e.path and (e.path == key or e.path.startswith((key + ".", key + "["))):
                    raise e.located(source, note) from None
            raise e.located(self.base_source) from None


def _with_seed(config: dict, seed: int) -> dict:
    """A copy of a resolved config (plain data: dicts, lists, scalars) with another seed."""
    out = pickle.loads(pickle.dumps(config, protocol=pickle.HIGHEST_PROTOCOL))
    out["training"]["seed"] = seed
    return out


@dataclass
class _Given:
    """What a sweep file (or a plain config) says, before the command line adds to it."""

    base: dict
    base_source: str
    axes: list[Axis]
    origins: dict[str, tuple[str, str]]
    seeds: list[int] | None = None
    jobs: int = 1
    description: str = ""
    name: str | None = None
    default_name: str = ""
    spec: dict = field(default_factory=dict)
    search: dict | None = None  # the file's search section, checked


def load_sweep(
    path: str | Path,
    grid: list[str] = (),
    sets: list[str] = (),
    seeds: str | None = None,
    jobs: int | None = None,
    name: str | None = None,
    search: dict[str, Any] | None = None,
) -> Sweep:
    """Read a sweep file or a config, with command-line axes (``grid``: ``KEY=V1,V2``), fixed
    overrides (``sets``: ``KEY=VALUE``), seeds (``"5"`` or ``"0,1,7"``), jobs and name.
    ``search``: the command line's search options (``sampler``, ``trials``, ``seed``,
    ``objective``, ``pruner``; those given), over the file's ``search:`` section."""
    source = str(path)
    raw = load_raw(path)
    is_sweep_file = isinstance(raw, dict) and "base" in raw
    given = _sweep_file(raw, path) if is_sweep_file else _config(raw, path)
    origins, axes = given.origins, given.axes
    for key in apply_overrides(given.base, list(sets), source="--set"):
        origins[key] = (given.base_source, "(from --set)")
    for text in grid:
        key, values = parse_axis(text)
        parts = _key_parts(key, key, "-g")
        axes = [a for a in axes if a.parts != parts]  # the command line replaces a file's axis
        axes.append(Axis(key, parts, values, "-g"))
    for axis in axes:
        note = "(from -g)" if axis.origin == "-g" else f"(from axes: {axis.key})"
        origins[format_key(axis.parts)] = (
            given.base_source if axis.origin == "-g" else source,
            note,
        )
    searching = search_of(given.search, dict(search or {}), source)
    axes = search_axes(axes, searching, source)
    seed_values = seed_list(_parse_seeds(seeds), "--seeds") if seeds else given.seeds
    if seed_values is not None and any(format_key(a.parts) == SEED_KEY for a in axes):
        raise ConfigError(
            "the seeds are given twice: by seeds and by an axis over training.seed; use one",
            source=source,
        )
    sweep = Sweep(
        name=name or given.name or given.default_name,
        description=given.description,
        source=source,
        base=given.base,
        base_source=given.base_source,
        axes=axes,
        seeds=seed_values,
        jobs=jobs if jobs is not None else given.jobs,
        spec={
            **given.spec,
            **({"cli_grid": list(grid)} if grid else {}),
            **({"cli_set": list(sets)} if sets else {}),
            **({"cli_seeds": seeds} if seeds else {}),
            **({"cli_search": dict(search)} if search else {}),
        },
        origins=origins,
        search=searching,
    )
    _check_size(sweep, source)
    return sweep


def parse_seeds(text: str, where: str = "--seeds") -> list[int]:
    """Seeds given on the command line: ``5`` (0..4), ``0,1,7`` or ``[0, 1, 7]``."""
    return seed_list(_parse_seeds(text), where, where)


def _check_size(sweep: Sweep, source: str) -> None:
    """At most MAX_TRIALS runs: grid points (or a search's trials) times seeds."""
    if sweep.size <= MAX_TRIALS:
        return
    seeds = [f"{len(sweep.seeds):,} seeds"] if sweep.seeds else []
    if sweep.search is not None:
        what = f"the search has {sweep.size:,} runs ({sweep.search.trials:,} trials"
        what += f" x {seeds[0]})" if seeds else ")"
    else:
        sizes = [f"{len(a.values):,}" for a in sweep.axes] + seeds
        what = f"the grid has {sweep.size:,} trials ({' x '.join(sizes)})"
    raise ConfigError(f"{what}, more than the {MAX_TRIALS:,} a sweep may have", source=source)


def _sweep_file(raw: dict, path: str | Path) -> _Given:
    """A sweep file: its base config (a path or inline), fixed overrides, axes and options."""
    source = str(path)
    try:
        spec = check(raw, SweepFile, "")
    except ConfigError as e:
        raise e.located(source) from None
    if isinstance(spec["base"], str):
        base_path = Path(path).parent / spec["base"]
        base, base_source = load_raw(base_path), str(base_path)
    else:
        base, base_source = copy.deepcopy(spec["base"]), f"{source} (base)"
    if not isinstance(base, dict):
        raise ConfigError("a config is a YAML mapping", source=base_source)
    origins: dict[str, tuple[str, str]] = {}
    for key, value in spec["set"].items():
        parts = _key_parts(key, f"set.{key}", source)
        _set(base, parts, copy.deepcopy(value), source, f"set.{key}")
        origins[format_key(parts)] = (source, f"(from set: {key})")
    axes = [
        Axis(key, _key_parts(key, f"axes.{key}", source), values, source)
        for key, values in spec["axes"].items()
    ]
    return _Given(
        base,
        base_source,
        axes,
        origins,
        seeds=spec["seeds"],
        jobs=spec["jobs"],
        description=spec["description"],
        name=spec["name"],
        default_name=Path(path).stem,
        spec=raw,
        search=spec["search"],
    )


def _config(raw: Any, path: str | Path) -> _Given:
    """A plain config: the base of a sweep whose axes come from the command line."""
    source = str(path)
    if not isinstance(raw, dict):
        raise ConfigError("a config is a YAML mapping", source=source)
    name = raw.get("name") if isinstance(raw.get("name"), str) else Path(path).stem
    return _Given(raw, source, [], {}, default_name=name, spec={"base": source})


def _parse_seeds(text: str) -> Any:
    """``5`` (a count), ``0,1,7`` or ``[0, 1, 7]`` (a list)."""
    text = text.strip()
    return parse_yaml(f"[{text}]" if "," in text and not text.startswith("[") else text, "--seeds")


def _key_parts(key: str, where: str, source: str) -> list[str | int]:
    try:
        return split_key(key)
    except ConfigError as e:
        raise ConfigError(e.detail, where, source) from None


def _set(raw: dict, parts: list, value: Any, source: str, where: str) -> None:
    try:
        set_path(raw, parts, value)
    except ConfigError as e:
        raise ConfigError(e.detail, where, source) from None


# ---------------------------------------------------------------- checking


def check_trials(trials: list[Trial]) -> None:
    """Build every distinct data/model/loss combination once (seeds aside), so that a
    combination that cannot train is an error before any trial runs."""
    from nnlab.experiment import build
    from nnlab.nn import OPTIMIZERS
    from nnlab.train import Trainer

    built: set[str] = set()
    optimizers: set[str] = set()
    n = len(trials)
    for trial in trials:
        cfg = trial.config
        tr = cfg["training"]
        key = json.dumps(
            [cfg["data"], cfg["model"], cfg["loss"], tr["dtype"], tr["early_stopping"]],
            sort_keys=True,
        )
        opt = json.dumps(cfg["optimizer"], sort_keys=True)
        if key in built and opt in optimizers:
            continue
        try:
            if key not in built:
                Trainer(build(cfg))  # Trainer checks the early-stopping metric
                built.add(key)
            elif opt not in optimizers:
                OPTIMIZERS.build(cfg["optimizer"])
            optimizers.add(opt)
        except ConfigError as e:
            raise ConfigError(
                str(e), source=f"trial {trial.number} of {n} ({trial.label})"
            ) from None
        except NnlabError as e:
            raise type(e)(f"trial {trial.number} of {n} ({trial.label}): {e}") from None
