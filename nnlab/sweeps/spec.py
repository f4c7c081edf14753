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
import re
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

SEED_KEY = "training.seed"
MAX_TRIALS = 10_000  # grid points times seeds, checked before the grid is built


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
            "logspace(a, b, n); the grid is their cartesian product"
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

    @staticmethod
    def __post_check__(p: dict, path: str) -> None:
        p["seeds"] = seed_list(p["seeds"], "seeds")
        for key, values in p["axes"].items():
            where = f"axes.{key}"
            if not isinstance(key, str):
                raise ConfigError(f"an axis is named by a key path, got {fmt(key)}", where)
            if isinstance(values, str):
                values = expression(values, where)
                if values is None:
                    raise ConfigError(
                        f"expected a list of values, or range(...), linspace(...), logspace(...); "
                        f"got {fmt(p['axes'][key])}",
                        where,
                    )
            if not isinstance(values, list) or not values:
                raise ConfigError(f"expected a non-empty list of values, got {fmt(values)}", where)
            p["axes"][key] = values


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
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"a seed is repeated in {fmt(seeds)}", where, source)
        return list(seeds)
    raise ConfigError(
        f"expected a count N (seeds 0..N-1) or a list of integers, got {fmt(seeds)}", where, source
    )


# ---------------------------------------------------------------- axis values

_EXPRESSION = re.compile(r"^\s*(range|linspace|logspace)\s*\((.*)\)\s*$", re.S)


def split_values(text: str) -> list[str]:
    """``a,b,c`` -> ['a', 'b', 'c'], splitting only at commas outside brackets and quotes, so
    that ``{name: random_normal, stddev: 1},he_normal`` is two values."""
    parts: list[str] = []
    depth, quote, start = 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def _clean(x: float) -> float | int:
    """Round away float noise (0.30000000000000004 -> 0.3)."""
    return float(f"{x:.12g}") if isinstance(x, float) else x


def expression(text: str, where: str, source: str | None = None) -> list | None:
    """The values of ``range(start, stop[, step])`` (stop excluded, as in Python and Hydra),
    ``linspace(a, b, n)`` or ``logspace(a, b, n)`` (10**a .. 10**b); None if ``text`` is not
    one of them."""
    m = _EXPRESSION.match(text)
    if m is None:
        return None
    fn = m.group(1)
    args = [parse_yaml(a, source=source or where) for a in split_values(m.group(2))]
    if not all(isinstance(a, int | float) and not isinstance(a, bool) for a in args):
        raise ConfigError(f"{fn}(...) takes numbers, got {fmt(text.strip())}", where, source)
    if fn == "range":
        if not 1 <= len(args) <= 3:
            raise ConfigError(
                "range takes (stop), (start, stop) or (start, stop, step)", where, source
            )
        start, stop, step = ([0, *args, 1] if len(args) == 1 else [*args, 1])[:3]
        if step == 0:
            raise ConfigError("range: the step must not be 0", where, source)
        exact = all(isinstance(a, int) for a in (start, stop, step))
        try:  # the count first, in integers when they are (len(range) stops at 2**63)
            n = -((start - stop) // step) if exact else (stop - start) / step - 1e-9
        except OverflowError:  # an integer beyond the floats
            n = math.inf
        n = max(0, math.ceil(n)) if math.isfinite(n) else n
        _check_count(fn, n, where, source)
    else:
        if len(args) != 3 or not isinstance(args[2], int) or args[2] < 1:
            raise ConfigError(
                f"{fn} takes (start, stop, count) with an integer count >= 1", where, source
            )
        a, b, n = args
        _check_count(fn, n, where, source)
    try:
        if fn != "range":
            points = [a + (b - a) * i / (n - 1) if n > 1 else a for i in range(n)]
            values = [_clean(10.0**p if fn == "logspace" else float(p)) for p in points]
        elif exact:
            values = list(range(start, stop, step))
        else:
            values = [_clean(start + i * step) for i in range(n)]
    except OverflowError:
        raise ConfigError(
            f"{fn}(...) gives numbers beyond the floating-point range (1.8e308)", where, source
        ) from None
    if not values:
        raise ConfigError(f"{text.strip()} gives no values", where, source)
    return values


def _check_count(fn: str, n: float, where: str, source: str | None) -> None:
    """An axis of more values than a sweep may have trials is refused before it is built."""
    if not n <= MAX_TRIALS:  # NaN too (a step of inf)
        count = f"{n:,}" if isinstance(n, int) else "infinitely many"
        raise ConfigError(
            f"{fn}(...) gives {count} values, more than the {MAX_TRIALS:,} trials a sweep may have",
            where,
            source,
        )


def parse_axis(text: str) -> tuple[str, list]:
    """``KEY=V1,V2,...`` (each value YAML) or ``KEY=range(...)`` -> (key, values)."""
    if "=" not in text:
        raise ConfigError(
            f"{fmt(text)}: expected KEY=V1,V2,..., e.g. optimizer.lr=0.1,0.01", source="-g"
        )
    key, _, rest = text.partition("=")
    key = key.strip()
    where = f"-g {key}"
    values = expression(rest, key, source="-g")
    if values is None:
        items = split_values(rest)
        if any(item == "" for item in items):
            raise ConfigError(f"an empty value in {fmt(rest)}", key, "-g")
        values = [parse_yaml(item, source=where) for item in items]
    return key, values


# ---------------------------------------------------------------- the sweep


@dataclass
class Axis:
    key: str  # as written: model.layers.0.initializer
    parts: list[str | int]
    values: list
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
    _trials: list[Trial] | None = None

    @property
    def size(self) -> int:
        return math.prod(len(a.values) for a in self.axes) * len(self.seeds or [None])

    @property
    def trials(self) -> list[Trial]:
        if self._trials is None:
            self._trials = self._expand()
        return self._trials

    def _expand(self) -> list[Trial]:
        trials: list[Trial] = []
        seen: dict[str, Trial] = {}
        total = self.size
        for i, (values, seed) in enumerate(
            itertools.product(
                itertools.product(*[a.values for a in self.axes]), self.seeds or [None]
            )
        ):
            raw = copy.deepcopy(self.base)
            overrides = {}
            for axis, value in zip(self.axes, values, strict=True):
                set_path(raw, axis.parts, copy.deepcopy(value))
                overrides[axis.key] = value
            if seed is not None:
                set_path(raw, ["training", "seed"], seed)
            try:
                cfg = self.resolve(raw)
            except ConfigError as e:
                where = f"trial {i + 1} of {total} ({trial_label(overrides, seed)})"
                raise ConfigError(str(e), source=where) from None
            cfg["name"] = self.name
            h = config_hash(cfg)
            if h in seen:
                self.notes.append(
                    f"trial {i + 1} ({trial_label(overrides, seed)}) is the same config as trial "
                    f"{seen[h].number} ({seen[h].label}); it runs once"
                )
                continue
            trial = Trial(len(trials) + 1, overrides, cfg["training"]["seed"], cfg, h)
            seen[h] = trial
            trials.append(trial)
        return trials

    def resolve(self, raw: dict) -> dict:
        """Validate a trial's raw config; errors name where the key was set."""
        try:
            return check(raw, Config, "")
        except ConfigError as e:
            for key, (source, note) in self.origins.items():
                if e.path and (e.path == key or e.path.startswith((key + ".", key + "["))):
                    raise e.located(source, note) from None
            raise e.located(self.base_source) from None


def load_sweep(
    path: str | Path,
    grid: list[str] = (),
    sets: list[str] = (),
    seeds: str | None = None,
    jobs: int | None = None,
    name: str | None = None,
) -> Sweep:
    """Read a sweep file or a config, with command-line axes (``grid``: ``KEY=V1,V2``), fixed
    overrides (``sets``: ``KEY=VALUE``), seeds (``"5"`` or ``"0,1,7"``), jobs and name."""
    source = str(path)
    raw = load_raw(path)
    origins: dict[str, tuple[str, str]] = {}
    axes: list[Axis] = []
    if isinstance(raw, dict) and "base" in raw:
        try:
            spec = check(raw, SweepFile, "")
        except ConfigError as e:
            raise e.located(source) from None
        if isinstance(spec["base"], str):
            base_path = Path(path).parent / spec["base"]
            base, base_source = load_raw(base_path), str(base_path)
        else:
            base, base_source = copy.deepcopy(spec["base"]), f"{source} (base)"
        default_name = Path(path).stem
        if not isinstance(base, dict):
            raise ConfigError("a config is a YAML mapping", source=base_source)
        for key, value in spec["set"].items():
            parts = _key_parts(key, f"set.{key}", source)
            _set(base, parts, copy.deepcopy(value), source, f"set.{key}")
            origins[format_key(parts)] = (source, f"(from set: {key})")
        for key, values in spec["axes"].items():
            parts = _key_parts(key, f"axes.{key}", source)
            axes.append(Axis(key, parts, values, source))
        file_seeds, file_jobs = spec["seeds"], spec["jobs"]
        description, file_name = spec["description"], spec["name"]
        given = raw
    else:
        if not isinstance(raw, dict):
            raise ConfigError("a config is a YAML mapping", source=source)
        base, base_source = raw, source
        default_name = raw.get("name") if isinstance(raw.get("name"), str) else Path(path).stem
        file_seeds, file_jobs, description, file_name = None, 1, "", None
        given = {"base": source}
    for key in apply_overrides(base, list(sets), source="--set"):
        origins[key] = (base_source, "(from --set)")
    for text in grid:
        key, values = parse_axis(text)
        parts = _key_parts(key, key, "-g")
        axes = [a for a in axes if a.parts != parts]  # the command line replaces a file's axis
        axes.append(Axis(key, parts, values, "-g"))
    for axis in axes:
        note = "(from -g)" if axis.origin == "-g" else f"(from axes: {axis.key})"
        origins[format_key(axis.parts)] = (base_source if axis.origin == "-g" else source, note)
    seed_values = seed_list(_parse_seeds(seeds), "--seeds") if seeds else file_seeds
    if seed_values is not None and any(format_key(a.parts) == SEED_KEY for a in axes):
        raise ConfigError(
            "the seeds are given twice: by seeds and by an axis over training.seed; use one",
            source=source,
        )
    sweep = Sweep(
        name=name or file_name or default_name,
        description=description,
        source=source,
        base=base,
        base_source=base_source,
        axes=axes,
        seeds=seed_values,
        jobs=jobs if jobs is not None else file_jobs,
        spec={
            **given,
            **({"cli_grid": list(grid)} if grid else {}),
            **({"cli_set": list(sets)} if sets else {}),
            **({"cli_seeds": seeds} if seeds else {}),
        },
        origins=origins,
    )
    if sweep.size > MAX_TRIALS:
        sizes = [f"{len(a.values):,}" for a in sweep.axes]
        sizes += [f"{len(seed_values):,} seeds"] if seed_values else []
        raise ConfigError(
            f"the grid has {sweep.size:,} trials ({' x '.join(sizes)}), more than the "
            f"{MAX_TRIALS:,} a sweep may have",
            source=source,
        )
    return sweep


def parse_seeds(text: str, where: str = "--seeds") -> list[int]:
    """Seeds given on the command line: ``5`` (0..4), ``0,1,7`` or ``[0, 1, 7]``."""
    return seed_list(_parse_seeds(text), where, where)


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
