"""Runs -> one table: the config keys that differ between the runs, and how each run did.

``load_runs`` reads run folders (a sweep folder stands for its trials); a folder that is not a
run, or a run with a damaged file, is reported through ``warn`` and skipped. ``records`` gives a
row per run with every config key flattened (``model.layers.0.units``) and the metric columns:
``M`` (last value), ``M.best``, ``M.best_epoch`` for each metric of metrics.csv, ``test_M`` from
the summary, ``status``, ``epochs``, ``seconds``. ``build_table`` filters (``--where``),
groups seeds, sorts and picks the columns; ``render`` writes it as a terminal table, markdown,
csv or json. pandas is used for reading metrics and for the table.
"""

from __future__ import annotations

import datetime
import io
import json
import math
import os
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnlab.config import config_hash, parse_yaml
from nnlab.errors import ConfigError, RunError, did_you_mean

if TYPE_CHECKING:
    import pandas as pd

Warn = Callable[[str], None]
NOT_METRICS = ("epoch", "lr", "seconds")
META = ("status", "epochs", "seconds")
SEED_KEY = "training.seed"


def higher_is_better(metric: str) -> bool:
    """Accuracies are better high; losses (everything else) low."""
    return "accuracy" in metric


# ---------------------------------------------------------------- reading


@dataclass
class Run:
    """A run folder, read."""

    path: Path
    config: dict
    summary: dict
    metrics: pd.DataFrame  # a row per epoch, the columns of metrics.csv
    status: str  # the summary's, or 'killed' for a run whose process is gone
    label: str = ""
    flat: dict[str, Any] = field(default_factory=dict)


def run_status(summary: dict) -> str:
    """The summary's status; a run that says 'running' but whose process on this host is gone
    was killed (SIGKILL, out of memory, power cut)."""
    status = str(summary.get("status", "unknown"))
    if status != "running" or summary.get("host") != socket.gethostname():
        return status
    pid = summary.get("pid")
    if not isinstance(pid, int):
        return status
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "killed"
    except PermissionError:
        return status
    # the pid may belong to a later process: one that started after the run did
    began, started = _process_start(pid), summary.get("started")
    if began is not None and isinstance(started, str):
        try:
            if began > datetime.datetime.fromisoformat(started).timestamp() + 2:
                return "killed"
        except ValueError:
            pass
    return status


def _process_start(pid: int) -> float | None:
    """When a process started (seconds since the epoch), from /proc on Linux; else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat[stat.rindex(")") + 2 :].split()[19])  # field 22, starttime
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def read_run(path: Path) -> Run:
    """Read a run folder; a RunError names the file that is missing or damaged."""
    from nnlab.runs import read_summary

    summary = read_summary(path)
    if not isinstance(summary, dict) or "status" not in summary:
        raise RunError(f"{path / 'summary.json'}: damaged (not an nnlab summary)")
    cfg_path = path / "config.yaml"
    try:
        config = parse_yaml(cfg_path.read_text(encoding="utf-8"), str(cfg_path))
    except FileNotFoundError:
        raise RunError(f"{cfg_path}: missing") from None
    except (OSError, UnicodeDecodeError, ConfigError) as e:
        reason = e.detail if isinstance(e, ConfigError) else e
        raise RunError(f"{cfg_path}: damaged ({reason})") from None
    if not isinstance(config, dict):
        raise RunError(f"{cfg_path}: damaged (not a mapping)")
    return Run(path, config, summary, read_metrics_frame(path), run_status(summary))


def read_metrics_frame(path: Path) -> pd.DataFrame:
    """metrics.csv as numbers (an unfinished last line, from a killed run, is dropped); an empty
    table when the run has none."""
    import pandas as pd

    file = path / "metrics.csv"
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return pd.DataFrame()
    except (OSError, UnicodeDecodeError) as e:
        raise RunError(f"{file}: damaged ({e})") from None
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    if not text.strip():
        return pd.DataFrame()
    try:
        frame = pd.read_csv(io.StringIO(text))
        if "epoch" not in frame.columns:
            raise ValueError("no 'epoch' column")
        return frame.apply(pd.to_numeric)
    except (ValueError, pd.errors.ParserError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise RunError(f"{file}: damaged ({reason})") from None


def is_sweep(path: Path) -> bool:
    return (path / "index.json").is_file() or (path / "sweep.yaml").is_file()


def sweep_runs(path: Path) -> list[Path]:
    """The trial run folders of a sweep folder, in the order of its index."""
    runs: list[Path] = []
    try:
        data = json.loads((path / "index.json").read_text(encoding="utf-8"))
        for e in sorted(data["trials"], key=lambda e: e["number"]):
            if (path / e["run"]).is_dir():
                runs.append(path / e["run"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no or a damaged index: the trial folders themselves
    trials = path / "trials"
    if trials.is_dir():
        runs += [p for p in sorted(trials.iterdir()) if p.is_dir() and p not in runs]
    return runs


def find_runs(paths: Iterable[str | Path], warn: Warn) -> list[Path]:
    """Run folders among ``paths``; a sweep folder gives its trials, a folder of sweeps (such as
    runs/sweeps, which ``runs/*`` names) all their trials; the rest is reported."""
    out: list[Path] = []
    for given in paths:
        p = Path(given)
        if (p / "summary.json").is_file():
            out.append(p)
        elif p.is_dir() and is_sweep(p):
            out += sweep_runs(p)
        elif p.is_dir() and (sweeps := [c for c in sorted(p.iterdir()) if is_sweep(c)]):
            out += [run for sweep in sweeps for run in sweep_runs(sweep)]  # runs/sweeps
        elif not p.exists():
            warn(f"{p}: no such file or folder; skipped")
        elif not p.is_dir():
            warn(f"{p}: not a run folder; skipped")
        elif (p / "config.yaml").exists() or (p / "metrics.csv").exists():
            warn(f"{p}: damaged run (no summary.json); skipped")
        else:
            inside = [
                c for c in sorted(p.iterdir()) if (c / "summary.json").is_file() or is_sweep(c)
            ]
            hint = f" (it holds runs: give {p}/*)" if inside else ""
            warn(f"{p}: not a run folder{hint}; skipped")
    seen: set[Path] = set()
    unique = []
    for p in out:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def load_runs(paths: Iterable[str | Path], warn: Warn) -> list[Run]:
    """Read every run among ``paths``; damaged ones are reported through ``warn`` and skipped."""
    runs = []
    for path in find_runs(paths, warn):
        try:
            runs.append(read_run(path))
        except RunError as e:
            warn(f"{e}; skipped")
    _label(runs)
    _flatten_all(runs)
    return runs


def _label(runs: list[Run]) -> None:
    names = [r.path.name for r in runs]
    unique = len(set(names)) == len(names)
    for r in runs:
        r.label = r.path.name if unique else str(r.path)


# ---------------------------------------------------------------- flattening


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested config -> dotted keys (``model.layers.0.units``). A list of plain values stays
    one value (shown as text)."""
    out: dict[str, Any] = {}
    if isinstance(obj, dict) and obj:
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(obj, list) and any(isinstance(v, dict | list) for v in obj):
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}{i}."))
    elif isinstance(obj, list | dict):
        out[prefix[:-1]] = json.dumps(obj)
    else:
        out[prefix[:-1]] = obj
    return out


TOP_COMPONENTS = ("data", "loss", "optimizer")  # top-level config keys that name a component


def _flatten_all(runs: list[Run]) -> None:
    """Flatten the configs; a component given by name in one run and as a mapping in another
    (``relu`` vs ``{name: leaky_relu, alpha: 0.1}``) lines up under ``KEY.name``."""
    flats = [
        flatten({k: v for k, v in r.config.items() if k not in ("name", "description")})
        for r in runs
    ]
    keys = {k for f in flats for k in f}
    for run, flat in zip(runs, flats, strict=True):
        fixed = {}
        for k, v in flat.items():
            if k in TOP_COMPONENTS and isinstance(v, str):
                k = f"{k}.name"  # always: a config's "loss" is not the metric "loss"
            for sub in ("name", "type"):
                if isinstance(v, str) and f"{k}.{sub}" in keys:
                    k = f"{k}.{sub}"
                    break
            fixed[k] = v
        run.flat = fixed


def differing_keys(flats: list[dict[str, Any]], skip: tuple[str, ...] = ()) -> list[str]:
    """Config keys whose value is not the same in every run (a missing key counts)."""
    order: dict[str, None] = {}
    for f in flats:
        order.update(dict.fromkeys(f))
    out = []
    for k in order:
        if k in skip:
            continue
        values = {json.dumps(f.get(k, "<missing>"), sort_keys=True, default=str) for f in flats}
        if len(values) > 1:
            out.append(k)
    return out


def short_names(keys: list[str]) -> dict[str, str]:
    """The shortest unique dotted suffix of each key, without a trailing ``.name``/``.type``:
    ``model.layers.0.initializer.name`` -> ``initializer``, ``optimizer.lr`` -> ``lr``."""
    parts = {}
    for k in keys:
        segs = k.split(".")
        if len(segs) > 1 and segs[-1] in ("name", "type"):
            segs = segs[:-1]
        parts[k] = segs
    out = {}
    for k, segs in parts.items():
        for n in range(1, len(segs) + 1):
            tail = segs[-n:]
            if tail[0].isdigit() and n < len(segs):
                continue
            if sum(p[-n:] == tail for p in parts.values()) == 1:
                out[k] = ".".join(tail)
                break
        else:
            out[k] = k
    return out


def components(config: dict) -> dict[str, str]:
    """Each named component of a resolved config (data set, loss, optimizer, schedule,
    activation, initializer) as one text: its name and the options that differ from their
    defaults, ``random_normal(stddev=1.0)``; keyed by dotted path."""
    import dataclasses
    import typing

    from nnlab.config import Config
    from nnlab.schema import Ref, _unwrap, fields_of

    out: dict[str, str] = {}

    def walk(value: Any, ann: Any, path: str) -> str | None:
        base, meta = _unwrap(ann)
        ref = next((m for m in meta if isinstance(m, Ref)), None)
        if ref is not None:
            reg = ref.registry
            name = value.get(reg.key) if isinstance(value, dict) else value
            if not isinstance(name, str) or name not in reg:
                return None
            options = value if isinstance(value, dict) else {}
            changed = []
            for f in reg.fields(name):
                if f.name not in options:
                    continue
                sub = walk(options[f.name], f.annotation, f"{path}.{f.name}")
                if f.required or options[f.name] != f.default:
                    changed.append(
                        f"{f.name}={sub if sub is not None else _option(options[f.name])}"
                    )
            text = name + (f"({', '.join(changed)})" if changed else "")
            if reg.key == "name":
                out[path] = text
            return text
        if dataclasses.is_dataclass(base) and isinstance(value, dict):
            for f in fields_of(base):
                if f.name in value:
                    walk(value[f.name], f.annotation, f"{path}.{f.name}".lstrip("."))
        elif typing.get_origin(base) is list and isinstance(value, list):
            (item,) = typing.get_args(base) or (Any,)
            for i, v in enumerate(value):
                walk(v, item, f"{path}.{i}")
        elif typing.get_args(base) and isinstance(value, dict):  # a union: its mapping member
            for arg in typing.get_args(base):
                if dataclasses.is_dataclass(arg):
                    walk(value, arg, path)
        return None

    walk(config, Config, "")
    return out


def _option(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return fmt_config(value)


def collapse(
    keys: list[str], comps: list[dict[str, str]], taken: Iterable[str] = ()
) -> tuple[list[str], dict[str, list]]:
    """Where a component's name differs between runs, one column for it (its text) instead of
    its name and every option: ``initializer`` = he_normal, random_normal(stddev=1.0). A
    component whose path is ``taken`` by another column (the config's ``loss`` and the metric
    ``loss``) keeps the column ``PATH.name``."""
    keys = list(keys)
    texts: dict[str, list] = {}
    taken = set(taken)
    paths = sorted({p for c in comps for p in c}, key=lambda p: p.count("."))
    for path in paths:
        if f"{path}.name" not in keys:
            continue
        inside = [k for k in keys if k == f"{path}.name" or k.startswith(f"{path}.")]
        at = keys.index(inside[0])
        keys = [k for k in keys if k not in inside]
        column = f"{path}.name" if path in taken else path
        keys.insert(at, column)
        texts[column] = [c.get(path) for c in comps]
    return keys, texts


# ---------------------------------------------------------------- records


def _number(x: Any) -> float:
    if isinstance(x, bool) or x is None:
        return math.nan
    if isinstance(x, int | float):
        return float(x)
    if isinstance(x, str):  # summary.json writes non-finite numbers as text
        try:
            return float(x)
        except ValueError:
            return math.nan
    return math.nan


def metric_names(runs: list[Run]) -> list[str]:
    """The metrics of metrics.csv over all runs, in file order."""
    names: dict[str, None] = {}
    for r in runs:
        cols = list(r.metrics.columns) or list((r.summary.get("last") or {}).keys())
        names.update(dict.fromkeys(c for c in cols if c not in NOT_METRICS))
    return list(names)


def record(run: Run, metrics: list[str]) -> dict[str, Any]:
    """A run as one row: its flattened config and its metric columns."""
    rec: dict[str, Any] = {"run": run.label, **run.flat}
    m = run.metrics
    last_summary = run.summary.get("last") or {}
    best_summary = run.summary.get("best") or {}
    for name in metrics:
        if name in m.columns and len(m):
            col = m[name]
            rec[name] = float(col.iloc[-1])
            finite = col[col.apply(math.isfinite)]
            if len(finite):
                i = finite.idxmax() if higher_is_better(name) else finite.idxmin()
                rec[f"{name}.best"] = float(finite[i])
                rec[f"{name}.best_epoch"] = int(m["epoch"][i])
            else:
                rec[f"{name}.best"] = rec[f"{name}.best_epoch"] = math.nan
        else:
            rec[name] = _number(last_summary.get(name))
            best = best_summary.get(name) or {}
            rec[f"{name}.best"] = _number(best.get("value"))
            rec[f"{name}.best_epoch"] = _number(best.get("epoch"))
    for key, value in (run.summary.get("test") or {}).items():
        rec[f"test_{key}"] = _number(value)
    rec["status"] = run.status
    epochs = run.summary.get("epochs_completed")
    unfinished = run.status in ("running", "killed")  # the summary is written at the end
    rec["epochs"] = epochs if isinstance(epochs, int) and not unfinished else len(m)
    seconds = run.summary.get("train_seconds")
    if not isinstance(seconds, int | float):
        seconds = float(m["seconds"].sum()) if "seconds" in m.columns else math.nan
    rec["seconds"] = float(seconds)
    return rec


# ---------------------------------------------------------------- columns and filters


def resolve_column(name: str, columns: list[str], what: str, prefer: list[str] = ()) -> str:
    """A column by its exact name, with ``[i]`` for ``.i``, without its ``.name``, or by a
    unique dotted suffix (``lr`` for ``optimizer.lr``); among several suffix matches, the one
    in ``prefer`` (the keys that differ, which the table shows by that suffix)."""
    name = re.sub(r"\[(-?\d+)\]", r".\1", name.strip())
    if name in columns:
        return name
    for sub in ("name", "type"):
        if f"{name}.{sub}" in columns:
            return f"{name}.{sub}"
    matches = [
        c
        for c in columns
        if c.endswith("." + name) or c.endswith(f".{name}.name") or c.endswith(f".{name}.type")
    ]
    preferred = [m for m in matches if m in prefer]
    if len(matches) == 1 or len(preferred) == 1:
        return matches[0] if len(matches) == 1 else preferred[0]
    if len(matches) > 1:
        raise ConfigError(f"{name!r} is ambiguous: {', '.join(matches)}", source=what)
    shown = [c for c in columns if "." not in c or c.split(".")[-1].startswith("best")]
    raise ConfigError(
        f"no column {name!r}.{did_you_mean(name, columns)} Columns: the config keys, "
        + ", ".join(shown),
        source=what,
    )


_WHERE = re.compile(r"^\s*([^\s<>=!]+)\s*(==|!=|<=|>=|=|<|>)\s*(.*?)\s*$")


@dataclass
class Condition:
    """``KEY OP VALUE`` of ``--where``."""

    text: str
    key: str
    op: str
    value: Any

    def test(self, cell: Any) -> bool:
        missing = cell is None or (isinstance(cell, float) and math.isnan(cell))
        if self.op in ("==", "!="):
            if self.value is None:
                equal = missing
            elif missing:
                equal = False
            elif isinstance(cell, str) or isinstance(self.value, str):
                equal = str(cell) == str(self.value)
            else:
                equal = cell == self.value and isinstance(cell, bool) == isinstance(
                    self.value, bool
                )
            return equal if self.op == "==" else not equal
        if missing:
            return False
        if not _is_number(cell):
            raise ConfigError(
                f"{self.text!r}: {self.key} holds {cell!r}, not a number; "
                f"{self.op} compares numbers (use == or !=)",
                source="--where",
            )
        return {
            "<": cell < self.value,
            "<=": cell <= self.value,
            ">": cell > self.value,
            ">=": cell >= self.value,
        }[self.op]


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def parse_where(text: str, columns: list[str], prefer: list[str] = ()) -> Condition:
    """``optimizer.lr<0.1``, ``status==completed``, ``val_accuracy>=0.9``: the value is YAML."""
    m = _WHERE.match(text)
    if m is None or not m.group(3):
        raise ConfigError(
            f"{text!r}: expected KEY OP VALUE with OP one of == != < <= > >=, "
            "e.g. 'optimizer.lr<0.1' or 'status==completed'",
            source="--where",
        )
    key = resolve_column(m.group(1), columns, "--where", prefer)
    op = "==" if m.group(2) == "=" else m.group(2)
    value = parse_yaml(m.group(3), "--where")
    if op not in ("==", "!=") and not _is_number(value):
        raise ConfigError(f"{text!r}: {op} compares numbers, got {value!r}", source="--where")
    return Condition(text, key, op, value)


def matches(recs: list[dict[str, Any]], where: Iterable[str], prefer: list[str] = ()) -> list[bool]:
    """Which records satisfy every ``--where`` condition."""
    columns: dict[str, None] = {}
    for rec in recs:
        columns.update(dict.fromkeys(rec))
    conditions = [parse_where(w, list(columns), prefer) for w in where]
    return [all(c.test(rec.get(c.key)) for c in conditions) for rec in recs]


def filter_runs(runs: list[Run], where: Iterable[str]) -> list[Run]:
    """The runs that satisfy every ``--where`` condition."""
    where = list(where)
    if not where:
        return runs
    metrics = metric_names(runs)
    keep = matches(
        [record(r, metrics) for r in runs], where, differing_keys([r.flat for r in runs])
    )
    return [r for r, k in zip(runs, keep, strict=True) if k]


# ---------------------------------------------------------------- the table


@dataclass
class Table:
    """What ``render`` prints: a frame and how to show it."""

    frame: pd.DataFrame
    columns: list[str]  # shown, in order (grouped: the base names of the mean/std/n columns)
    config_keys: list[str]  # which of the columns are config keys
    grouped: bool
    aggregated: set[str] = field(default_factory=set)  # grouped: columns shown as mean ± std (n)


def build_table(
    runs: list[Run],
    metrics: Iterable[str] = (),
    columns: Iterable[str] = (),
    where: Iterable[str] = (),
    sort: str | None = None,
    reverse: bool = False,
    top: int | None = None,
    group_seeds: bool = False,
) -> Table:
    """One row per run (or per group of seeds), filtered, sorted and cut to ``top`` rows."""
    import pandas as pd

    all_metrics = metric_names(runs)
    chosen = _choose_metrics(list(metrics), all_metrics)
    recs = [record(r, all_metrics) for r in runs]
    frame = pd.DataFrame.from_records(recs) if recs else pd.DataFrame(columns=["run", *META])
    cols = list(frame.columns)
    prefer = differing_keys([r.flat for r in runs])
    keep = matches(recs, where, prefer)
    runs = [r for r, k in zip(runs, keep, strict=True) if k]
    frame = frame[pd.Series(keep, index=frame.index, dtype=bool)] if len(frame) else frame
    numeric = [c for c in cols if _is_metric_column(c, all_metrics)]
    if group_seeds:
        frame, firsts = _group(frame, runs, numeric)
        config_keys = differing_keys([r.flat for r in firsts], skip=(SEED_KEY,))
    else:
        firsts = runs
        config_keys = differing_keys([r.flat for r in runs])
    comps = [components(r.config) for r in firsts]
    config_keys, texts = collapse(config_keys, comps, taken=[c for c in cols if c not in prefer])
    for path, values in texts.items():
        frame[path] = values
    if columns:
        names = cols + (["runs", "seeds"] if group_seeds else [])
        shown = []
        for given in _split(columns):
            col = resolve_column(given, names, "--columns", prefer)
            path = col.removesuffix(".name")
            if (
                col.endswith(".name")
                and not given.endswith(".name")
                and any(path in c for c in comps)
            ):
                frame[path] = [c.get(path) for c in comps]  # the component with its options
                config_keys.append(path)
                col = path
            if col not in ("run", "runs"):
                shown.append(col)
    else:
        shown = list(config_keys)
        for name in chosen:
            shown += [name, f"{name}.best"] + ([] if group_seeds else [f"{name}.best_epoch"])
        shown += [c for c in cols if c.startswith("test_")]
        shown += list(META)
    first = "runs" if group_seeds else "run"
    shown = [first, *shown]
    if sort:
        key = resolve_column(sort, cols, "--sort", prefer)
        by = f"{key}.mean" if group_seeds and key in numeric else key
        if by not in frame.columns:
            raise ConfigError(f"cannot sort by {key!r} here", source="--sort")
        ascending = not higher_is_better(key) if key in numeric else True
        if reverse:
            ascending = not ascending
        frame = frame.sort_values(by, ascending=ascending, na_position="last", kind="stable")
    elif reverse:
        frame = frame.iloc[::-1]
    if top is not None:
        frame = frame.head(top)
    config_keys = [c for c in shown if c in config_keys or (c not in numeric and "." in c)]
    aggregated = set(numeric) if group_seeds else set()
    return Table(frame.reset_index(drop=True), shown, config_keys, group_seeds, aggregated)


def _split(items: Iterable[str]) -> list[str]:
    return [c.strip() for item in items for c in item.split(",") if c.strip()]


def _choose_metrics(asked: list[str], available: list[str]) -> list[str]:
    """``--metric`` names (``all``: every one); by default the validation metrics if the runs
    have them, else the training metrics."""
    asked = _split(asked)
    if not asked:
        val = [m for m in available if m.startswith("val_")]
        return val or available
    if asked == ["all"]:
        return available
    out = []
    for name in asked:
        if name not in available:
            raise ConfigError(
                f"no metric {name!r} in these runs.{did_you_mean(name, available)} "
                f"Metrics: {', '.join(available) or 'none'} (or all)",
                source="--metric",
            )
        out.append(name)
    return out


def _is_metric_column(col: str, metrics: list[str]) -> bool:
    """A metric's last value, ``NAME.best`` or ``NAME.best_epoch``, a test metric, or timing
    (not a config key such as ``loss.name``)."""
    base, _, rest = col.partition(".")
    return (
        (base in metrics and rest in ("", "best", "best_epoch"))
        or col.startswith("test_")
        or col in ("epochs", "seconds")
    )


def group_key(config: dict) -> str:
    """The identity of a config with its seed left out: the runs that differ only by seed."""
    cfg = json.loads(json.dumps(config))
    (cfg.get("training") or {}).pop("seed", None)
    return config_hash(cfg)


def _group(frame: pd.DataFrame, runs: list[Run], numeric: list[str]):
    """Mean, sample standard deviation (ddof=1) and count of the finite values of each numeric
    column, over the runs of each group; config columns from the group's first run."""
    import pandas as pd

    columns = ["runs"]
    for col in frame.columns:
        if col in numeric:
            columns += [f"{col}.mean", f"{col}.std", f"{col}.n"]
        elif col != "run":
            columns.append("seeds" if col == SEED_KEY else col)
    order: dict[str, list[int]] = {}
    for i, r in enumerate(runs):
        order.setdefault(group_key(r.config), []).append(i)
    rows, firsts = [], []
    for idx in order.values():
        part = frame.iloc[idx]
        row: dict[str, Any] = {"runs": len(idx)}
        for col in frame.columns:
            if col in numeric:
                values = pd.to_numeric(part[col], errors="coerce")
                values = values[values.apply(math.isfinite)]
                row[f"{col}.mean"] = float(values.mean()) if len(values) else math.nan
                row[f"{col}.std"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
                row[f"{col}.n"] = len(values)
            elif col == "status":
                counts = part["status"].value_counts(sort=False)
                row["status"] = ", ".join(f"{n} {s}" for s, n in counts.items())
            elif col == SEED_KEY:
                row["seeds"] = ",".join(str(s) for s in part[col])
            elif col != "run":
                row[col] = part[col].iloc[0]
        rows.append(row)
        firsts.append(runs[idx[0]])
    return pd.DataFrame.from_records(rows, columns=columns), firsts


# ---------------------------------------------------------------- output


def fmt_number(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        if x != 0 and (abs(x) >= 1e5 or abs(x) < 10 ** -(digits - 1)):
            return f"{x:.{digits}g}"
        return f"{x:.{digits}f}"
    return str(x)


def fmt_config(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, float):
        return repr(x)
    return str(x)


def _digits(col: str) -> int:
    return 2 if col == "seconds" else 1 if col == "epochs" else 4


def _display(table: Table, short: bool) -> tuple[list[str], list[list[str]], list[str]]:
    """Headers, rows of text and alignments for the terminal and markdown."""
    f = table.frame
    names = short_names(table.config_keys) if short else {}
    taken = set(table.columns) - set(table.config_keys)  # metric and status columns
    names = {k: (k if v in taken else v) for k, v in names.items()}  # config "loss" != metric
    headers, cells, align = [], [], []
    cols = list(table.columns)
    i = 0
    while i < len(cols):
        col = cols[i]
        nxt = cols[i + 1] if i + 1 < len(cols) else None
        if col in table.aggregated:
            mean, std, n = f[f"{col}.mean"], f[f"{col}.std"], f[f"{col}.n"]
            d = _digits(col)
            cells.append([_mean_std(m, s, k, d) for m, s, k in zip(mean, std, n, strict=True)])
            headers.append(col)
            align.append("right")
        elif col.endswith(".best") and nxt == f"{col}_epoch" and not table.grouped:
            cells.append(
                [
                    f"{fmt_number(v)} ({fmt_number(int(e) if e == e else e)})" if v == v else "-"
                    for v, e in zip(f[col], f[nxt], strict=True)
                ]
            )
            headers.append(f"{col} (epoch)")
            align.append("right")
            i += 1
        elif col in f.columns:
            values = list(f[col])
            if col in table.config_keys:
                cells.append([fmt_config(_py(v)) for v in values])
                headers.append(names.get(col, col))
                align.append("left")
            elif col in ("run", "runs", "status", "seeds"):
                cells.append([fmt_config(_py(v)) for v in values])
                headers.append(col)
                align.append("right" if col == "runs" else "left")
            else:
                cells.append([fmt_number(_py(v), _digits(col)) for v in values])
                headers.append(col)
                align.append("right")
        else:
            cells.append(["-"] * len(f))
            headers.append(names.get(col, col))
            align.append("left")
        i += 1
    rows = [list(r) for r in zip(*cells, strict=True)] if cells else []
    return headers, rows, align


def _mean_std(mean: float, std: float, n: int, digits: int) -> str:
    """``0.9712 ± 0.0040 (3)``: the std with as many decimals as the mean."""
    if n == 0 or mean != mean:
        return "-"
    text = fmt_number(float(mean), digits)
    if std == std:
        fixed = "e" not in text and "inf" not in text
        text += f" ± {f'{std:.{digits}f}' if fixed else fmt_number(float(std), digits)}"
    return f"{text} ({int(n)})"


def _py(x: Any) -> Any:
    """A NumPy scalar as the Python value."""
    return x.item() if hasattr(x, "item") and not isinstance(x, str) else x


def render(table: Table, fmt: str = "table") -> str:
    """The table as text: ``table`` (terminal), ``markdown``, ``csv`` or ``json``."""
    if fmt in ("table", "markdown"):
        from tabulate import tabulate

        headers, rows, align = _display(table, short=True)
        tablefmt = "github" if fmt == "markdown" else "simple"
        return tabulate(
            rows, headers=headers, tablefmt=tablefmt, colalign=align, disable_numparse=True
        )
    frame = table.frame[_raw_columns(table)]
    if fmt == "csv":
        return frame.to_csv(index=False, lineterminator="\n").rstrip("\n")
    if fmt == "json":
        records = [
            {k: _json_value(_py(v)) for k, v in row.items()} for row in frame.to_dict("records")
        ]
        return json.dumps(records, indent=2)
    raise ValueError(f"unknown format {fmt!r}")


def _raw_columns(table: Table) -> list[str]:
    out = []
    for col in table.columns:
        if col in table.aggregated:
            out += [f"{col}.mean", f"{col}.std", f"{col}.n"]
        elif col in table.frame.columns:
            out.append(col)
    if table.grouped and "seeds" in table.frame.columns and "seeds" not in out:
        out.insert(1, "seeds")
    return out


def _json_value(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else str(x)
    return x


# ---------------------------------------------------------------- diff


def diff(a: Run, b: Run) -> dict[str, Any]:
    """The config keys that differ between two runs, and their metrics side by side with the
    change (B - A)."""
    metrics = metric_names([a, b])
    ra, rb = record(a, metrics), record(b, metrics)
    keys, texts = collapse(
        differing_keys([a.flat, b.flat]), [components(a.config), components(b.config)]
    )
    config = {k: tuple(texts[k]) if k in texts else (a.flat.get(k), b.flat.get(k)) for k in keys}
    rows = {}
    names = []
    for m in metrics:
        names += [m, f"{m}.best", f"{m}.best_epoch"]
    names += [k for k in dict.fromkeys((*ra, *rb)) if k.startswith("test_")]
    names += ["epochs", "seconds"]
    for name in names:
        va, vb = _number(ra.get(name)), _number(rb.get(name))
        rows[name] = (va, vb, vb - va)
    return {
        "a": str(a.path),
        "b": str(b.path),
        "status": (a.status, b.status),
        "same_config": not keys,
        "config": config,
        "metrics": rows,
    }


def _fixed(x: float, digits: int, sign: bool = False) -> str:
    if x != x:
        return "-"
    if sign:
        return f"{x:+.{digits}f}"
    return f"{x:.0f}" if digits == 0 else fmt_number(x, digits)


def render_diff(d: dict[str, Any], fmt: str = "table") -> str:
    if fmt == "json":
        return json.dumps(
            {
                **d,
                "config": {k: {"a": va, "b": vb} for k, (va, vb) in d["config"].items()},
                "metrics": {
                    k: {"a": _json_value(va), "b": _json_value(vb), "delta": _json_value(dv)}
                    for k, (va, vb, dv) in d["metrics"].items()
                },
            },
            indent=2,
        )
    from tabulate import tabulate

    tablefmt = "github" if fmt == "markdown" else "simple"
    a, b = Path(d["a"]).name, Path(d["b"]).name
    if a == b:
        a, b = d["a"], d["b"]
    parts = []
    if d["config"]:
        rows = [[k, fmt_config(va), fmt_config(vb)] for k, (va, vb) in d["config"].items()]
        parts.append(
            tabulate(rows, headers=["key", a, b], tablefmt=tablefmt, disable_numparse=True)
        )
    else:
        parts.append("the configs are the same")
    rows = [["status", d["status"][0], d["status"][1], ""]]
    for k, (va, vb, dv) in d["metrics"].items():
        whole = k.endswith("best_epoch") or k == "epochs"
        digits = 0 if whole else _digits(k)
        rows.append([k, _fixed(va, digits), _fixed(vb, digits), _fixed(dv, digits, sign=True)])
    parts.append(
        tabulate(
            rows,
            headers=["metric", a, b, "change"],
            tablefmt=tablefmt,
            colalign=("left", "right", "right", "right"),
            disable_numparse=True,
        )
    )
    return "\n\n".join(parts)
