"""Hostile input, property-tested: whatever config or ``--set`` override is given, nnlab either
trains it or refuses it with an ``NnlabError`` (exit status 2 and one line through the command
line), never a traceback, never a RuntimeWarning, never a half-written run folder.

Keys are drawn from the schema (every section, every option of every registered component) and
from hostile ones; values are of every YAML type, with huge, negative, NaN and infinite numbers,
odd strings, nested lists and mappings, and broken or dangerous YAML. Configs that validate are
trained for at most two epochs (the number of epochs is the one value that is capped) and their
run folder is checked: complete, and its config.yaml reloads to the same config.

Each property runs ``EXAMPLES`` cases by default; the ``slow`` tests run many more."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import shutil
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import CONFIGS, invoke_nnlab
from nnlab.compare.table import load_runs, metric_names, record
from nnlab.config import Config, config_hash, load_config
from nnlab.docs import registries
from nnlab.errors import NnlabError
from nnlab.experiment import build
from nnlab.lifecycle import resume, train
from nnlab.predict import predict_file
from nnlab.runcheck import SUMMARY_FIELDS
from nnlab.runs import (
    CHECKPOINT,
    RUN_FILES,
    load_model,
    load_run_config,
    read_checkpoint,
    read_metrics,
    read_summary,
    save_checkpoint,
)
from nnlab.schema import Ref, fields_of, unwrap
from nnlab.train import Trainer

BASES = ["xor.yaml", "threshold.yaml", "digits.yaml", "questions/semi_supervised.yaml"]
LIBRARY_EXAMPLES = 150  # per library property, in the default run
CLI_EXAMPLES = 6  # through the command line (in this process)
DEEP_EXAMPLES = 2000  # the slow profile
CLI_DEEP_EXAMPLES = 100

FAST = settings(
    max_examples=LIBRARY_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,  # the same cases every run: a failure is reproducible, CI is stable
)
DEEP = settings(FAST, max_examples=DEEP_EXAMPLES, derandomize=False)
CLI = settings(FAST, max_examples=CLI_EXAMPLES)


# ---------------------------------------------------------------- keys from the schema


def _walk(fields: list, prefix: str, out: dict[str, list], depth: int = 0) -> None:
    """Every key path under ``fields`` -> the annotations a value there is checked against."""
    if depth > 5:
        return
    for f in fields:
        _walk_value(f.annotation, f"{prefix}{f.name}", out, depth)


def _walk_value(ann: Any, key: str, out: dict[str, list], depth: int) -> None:
    out.setdefault(key, []).append(ann)
    base, meta = unwrap(ann)
    ref = next((m for m in meta if isinstance(m, Ref)), None)
    if ref is not None:
        reg = ref.registry
        out.setdefault(f"{key}.{reg.key}", []).append(Literal[tuple(reg.all_names())])
        for entry in reg.entries():
            _walk(reg.fields(entry.name), f"{key}.", out, depth + 1)
        return
    for arg in (base, *get_args(base)):
        if get_origin(arg) is list:
            (item,) = get_args(arg)
            for i in ("0", "1", "-1", "[0]"):
                _walk_value(item, f"{key}{i}" if i[0] == "[" else f"{key}.{i}", out, depth + 1)
        elif dataclasses.is_dataclass(arg):
            _walk(fields_of(arg), f"{key}.", out, depth + 1)


SCHEMA: dict[str, list] = {}
_walk(fields_of(Config), "", SCHEMA)
SCHEMA_KEYS = sorted(SCHEMA)
HOSTILE_KEYS = [
    "",
    ".",
    "..",
    "...",
    "a..b",
    "[0]",
    "model.layers.-9.units",
    "model.layers[99].units",
    "model.layers.0.units.x",
    "training.",
    ".training",
    "training..epochs",
    "data.name.name",
    "__class__",
    "model.__dict__",
    "optimizer[0]",
    "model.layers[x]",
    "model.layers]0[",
    "../../etc",
    "ü.ß",
    "training.seed=1",
    ".".join(["a"] * 60),  # beyond the limits of a key path: parts, then characters
    "training." + "x" * 1000,
]
# the names components take, and the choices of Literal keys
NAMES = sorted(
    {n for reg in registries().values() for n in reg.all_names()}
    | {"integer", "one_hot", "standard", "minmax", "unit", "none", "float64", "inputs", "max"}
)


# ---------------------------------------------------------------- values


def _safe_text(s: str) -> bool:
    # no absolute or home paths: a data folder named by a case must stay in the test's folder
    return not s.strip().startswith(("/", "~", "\\"))


HUGE_INTS = [2**31, 2**63, -(2**63), 2**64 + 1, 10**12, 10**30, 10**400, -(10**30)]
EDGE_FLOATS = [0.0, -0.0, 1e-300, 5e-324, 1e308, -1e308, 1e30, -1e30, 0.5, 1e-3, 1.0]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 300),
    st.sampled_from(HUGE_INTS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(EDGE_FLOATS),
    st.sampled_from(NAMES),
    st.text(max_size=12).filter(_safe_text),
)
ANY_VALUE = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.sampled_from(NAMES), st.text(max_size=6)), inner, max_size=3),
    ),
    max_leaves=6,
)


def typed(ann: Any, depth: int = 0) -> st.SearchStrategy:
    """Values of the type a key wants, mostly plausible, often at or past its edges (sizes stay
    small or become absurd; nothing in between that would fill the memory honestly)."""
    base, meta = unwrap(ann)
    ref = next((m for m in meta if isinstance(m, Ref)), None)
    if ref is not None:
        reg = ref.registry
        names = st.sampled_from(reg.all_names())
        if depth > 2:
            return names
        specs = st.sampled_from(reg.entries()).flatmap(
            lambda e: _mapping(reg.fields(e.name), depth, {reg.key: st.just(e.name)})
        )
        return st.one_of(names, specs)
    if base is bool:
        return st.booleans()
    if base is int:
        small = st.integers(1, 8)
        return st.one_of(small, small, small, st.integers(-2, 0), st.sampled_from(HUGE_INTS))
    if base is float:
        unit = st.floats(0, 1)
        return st.one_of(
            unit,
            unit,
            unit,
            st.sampled_from(EDGE_FLOATS),
            st.floats(allow_nan=True, allow_infinity=True),
        )
    if base is str:
        return st.one_of(st.sampled_from(NAMES), st.text(max_size=10).filter(_safe_text))
    if get_origin(base) is Literal:
        return st.sampled_from(get_args(base))
    if get_origin(base) is list:
        (item,) = get_args(base)
        components = any(isinstance(m, Ref) for m in unwrap(item)[1])
        return st.lists(typed(item, depth + 1), min_size=int(components), max_size=3)
    if dataclasses.is_dataclass(base):
        if depth > 2:
            return st.just({})
        return _mapping(fields_of(base), depth)
    if get_args(base):  # a union
        return st.one_of(
            *[st.none() if a is type(None) else typed(a, depth) for a in get_args(base)]
        )
    return ANY_VALUE


def _mapping(fields: list, depth: int, fixed: dict | None = None) -> st.SearchStrategy:
    """A mapping with the required keys (mostly) and some of the optional ones."""
    required = {f.name: typed(f.annotation, depth + 1) for f in fields if f.required}
    optional = {f.name: typed(f.annotation, depth + 1) for f in fields if not f.required}
    return st.fixed_dictionaries({**(fixed or {}), **required}, optional=optional)


HOSTILE_YAML = [
    "&a [*a]",
    "&a {x: *a}",
    "!!python/object:os.system ls",
    "!!python/name:os.system",
    "{",
    "[1, 2",
    "]: x",
    "*nowhere",
    "!!binary AAAA",
    "!!set {a, b}",
    "2020-01-01",
    "!!timestamp 2020-01-01T00:00:00Z",
    "0x1F",
    "1_000",
    "~",
    ".NaN",
    "-.inf",
    "1e999",
    "{[1]: 2}",
    "!!float abc",
    "? [a]\n: b",
    "a: b: c",
    "--- 1\n--- 2",
    "'unclosed",
    "\t",
    "\x00",
    "\x85",
    "{name: adam, lr: .nan}",
    "{type: dense, units: 1e12}",
    "{name: sequence, n_samples: 1000000000000}",
    "{name: twist, samples: 99999999999}",
    # inputs that cost gigabytes unless they are bounded while read: a billion strings by
    # aliases, nesting beyond Python's stack, a number beyond what Python prints
    "[&a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol], "
    + ", ".join(f"&{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 10) + "]" for i in range(8))
    + "]",
    "[" * 60 + "]" * 60,
    "{a: " * 60 + "1" + "}" * 60,
    "1" + "0" * 5000,
]


def _yaml(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=math.inf, allow_unicode=True)


ANY_TEXT = st.one_of(
    ANY_VALUE.map(_yaml),
    st.sampled_from(HOSTILE_YAML),
    st.text(max_size=16).filter(_safe_text),
)
# an override of a schema key with a value of about its type, or anything at all
TYPED_OVERRIDE = st.sampled_from(SCHEMA_KEYS).flatmap(
    lambda k: st.sampled_from(SCHEMA[k]).flatmap(typed).map(lambda v: f"{k}={_yaml(v)}")
)
ANY_OVERRIDE = st.tuples(
    st.one_of(
        st.sampled_from(SCHEMA_KEYS),
        st.sampled_from(HOSTILE_KEYS),
        st.text(max_size=10).filter(lambda k: "=" not in k),
    ),
    ANY_TEXT,
).map(lambda kv: f"{kv[0]}={kv[1]}")
OVERRIDES = st.lists(
    st.one_of(TYPED_OVERRIDE, TYPED_OVERRIDE, TYPED_OVERRIDE, ANY_OVERRIDE), max_size=3
)


def _replace_sections(sections: dict) -> dict:
    config = yaml.safe_load((CONFIGS / "xor.yaml").read_text())
    config.update(sections)
    return config


# a whole config: of the schema's type, or a real one with sections replaced by such values,
# or any YAML document at all
SECTIONS = st.dictionaries(
    st.sampled_from([f.name for f in fields_of(Config)]),
    st.sampled_from(fields_of(Config)).flatmap(lambda f: typed(f.annotation)),
    max_size=2,
)
CONFIGS_TEXT = st.one_of(
    typed(Config).map(_yaml),
    typed(Config).map(_yaml),
    SECTIONS.map(_replace_sections).map(_yaml),
    SECTIONS.map(_replace_sections).map(_yaml),
    st.dictionaries(
        st.sampled_from([f.name for f in fields_of(Config)] + ["extra"]), ANY_VALUE, max_size=6
    ).map(_yaml),
    st.sampled_from(HOSTILE_YAML),
    st.text(max_size=40),
)


# ---------------------------------------------------------------- the property


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A working folder deep inside tmp_path (relative paths in the cases stay there), MNIST
    that cannot be found nor downloaded, and RuntimeWarnings as errors."""
    work = tmp_path / "a" / "b" / "work"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv("NNLAB_DATA_DIR", str(empty))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("NNLAB_MNIST_MIRRORS", "http://127.0.0.1:9/")  # refused at once
    return work


def check_run_folder(run: Path, config: dict) -> None:
    """A finished run folder: every file whole, no temporary files, the config reloads."""
    names = {p.name for p in run.iterdir()}
    summary = read_summary(run)
    want = set(RUN_FILES) - ({"model.npz"} if summary["status"] == "diverged" else set())
    assert want <= names, names
    assert not [n for n in names if n.startswith(".") or ".tmp" in n], names
    assert "checkpoint.npz" not in names  # completed and diverged runs have nothing to resume
    again = load_config(run / "config.yaml")
    assert again == config and config_hash(again) == config_hash(config)


def outcome(config_path: Path, overrides: list[str], runs: Path) -> str:
    """Validate and train; returns how it ended. Fails the test on anything but a clean run or
    an NnlabError that leaves no run folder."""
    before = set(runs.iterdir()) if runs.exists() else set()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        try:
            config = load_config(config_path, overrides)
        except NnlabError as e:
            assert str(e).strip() and "\n" not in str(e).strip("\n"), repr(str(e))
            return "invalid"
        config["training"]["epochs"] = min(config["training"]["epochs"], 2)
        try:
            result = train(config, runs, handle_signals=False)
        except NnlabError as e:
            assert str(e).strip()
            after = set(runs.iterdir()) if runs.exists() else set()
            assert after == before, "an error left a run folder behind"
            return "refused"
    assert result.summary["status"] in ("completed", "diverged"), result.summary
    assert result.run_dir.parent == runs
    check_run_folder(result.run_dir, config)
    return result.summary["status"]


def _overrides_case(sandbox: Path, base: str, overrides: list[str]) -> None:
    event(outcome(CONFIGS / base, overrides, sandbox / "runs"))


def _config_case(sandbox: Path, text: str) -> None:
    path = sandbox / "generated.yaml"
    path.write_text(text, encoding="utf-8")
    event(outcome(path, [], sandbox / "runs"))


@FAST
@given(base=st.sampled_from(BASES), overrides=OVERRIDES)
def test_any_override_trains_or_is_refused_cleanly(sandbox, base, overrides):
    _overrides_case(sandbox, base, overrides)


@FAST
@given(text=CONFIGS_TEXT)
def test_any_config_file_trains_or_is_refused_cleanly(sandbox, text):
    _config_case(sandbox, text)


@pytest.mark.slow
@DEEP
@given(base=st.sampled_from(BASES), overrides=OVERRIDES)
def test_any_override_deep(sandbox, base, overrides):
    _overrides_case(sandbox, base, overrides)


@pytest.mark.slow
@DEEP
@given(text=CONFIGS_TEXT)
def test_any_config_file_deep(sandbox, text):
    _config_case(sandbox, text)


# ---------------------------------------------------------------- through the command line


CLI_OVERRIDES = OVERRIDES.filter(lambda o: "\x00" not in "".join(o))  # argv cannot hold NUL


@CLI
@given(base=st.sampled_from(BASES[:2]), overrides=CLI_OVERRIDES)
def test_the_command_line_exits_0_2_or_3_without_traceback(sandbox, base, overrides):
    _cli_case(sandbox, base, overrides)


@pytest.mark.slow
@settings(CLI, max_examples=CLI_DEEP_EXAMPLES, derandomize=False)
@given(base=st.sampled_from(BASES[:2]), overrides=CLI_OVERRIDES)
def test_the_command_line_deep(sandbox, base, overrides):
    _cli_case(sandbox, base, overrides)


def _cli_case(sandbox: Path, base: str, overrides: list[str]) -> None:
    runs = sandbox / "cli-runs"
    before = set(runs.iterdir()) if runs.exists() else set()
    args = ["train", CONFIGS / base, "--runs-dir", runs, "-q"]
    for text in overrides:
        args += ["--set", text]
    proc = invoke_nnlab(*args, "--set", "training.epochs=2", cwd=sandbox)
    after = set(runs.iterdir()) if runs.exists() else set()
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    assert proc.returncode in (0, 2, 3), (proc.returncode, proc.stderr)
    if proc.returncode == 2:
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
        assert after == before
    else:
        (run,) = after - before
        assert proc.stdout.strip().splitlines()[-1] == str(run)
        status = read_summary(run)["status"]
        assert status == ("completed" if proc.returncode == 0 else "diverged")


def test_the_schema_keys_cover_every_section_and_component():
    # the generator reaches every registered component's options (a new one is covered the day
    # it is added) and the sections' keys
    keys = set(SCHEMA_KEYS)
    assert {
        "training.early_stopping.patience",
        "data.label_fraction",
        "model.outputs.0.loss",
    } <= keys
    assert {"optimizer.schedule.milestones", "model.layers.0.initializer.stddev"} <= keys
    for reg in registries().values():
        for entry in reg.entries():
            for f in reg.fields(entry.name):
                assert any(k.endswith(f".{f.name}") for k in keys), (reg.kind, f.name)


# ---------------------------------------------------------------- damaged run folders

# A run folder damaged as a full disk, an editor or a copy gone wrong damage one: files cut
# short, removed or overwritten, a field of summary.json or of the JSON a model or checkpoint
# stores given a value of another type, an array of a model or checkpoint removed or swapped
# for one of another type or shape, a cell of metrics.csv changed, a file replaced by a
# symbolic link to one outside the folder. Every reader either works or refuses with an
# NnlabError of one line (exit status 2), a refused resume changes nothing, and no reader
# (resume included) changes a file outside the run folder.

DAMAGE_EXAMPLES = 60  # each resumes a run of a few epochs
DAMAGED = settings(FAST, max_examples=DAMAGE_EXAMPLES)
DAMAGEABLE = [*RUN_FILES, CHECKPOINT, "layers.csv"]
SUMMARY_KEYS = [*SUMMARY_FIELDS, "status", "train_groups", "config"]
# keys of the JSON stored in model.npz (architecture) and checkpoint.npz (meta); "" the whole
STORED_KEYS = [
    "", "format", "model", "model.layers", "model.outputs", "input_shape", "dtype", "task",
    "n_classes", "class_names", "loss", "epoch", "optimizer", "optimizer.lr", "optimizer.t",
    "rng", "rng.state", "early_stopping.wait", "early_stopping.best", "early_stopping.epoch",
    "best", "best.loss", "best.loss.value", "best.loss.epoch", "last", "last.epoch", "last.loss",
]  # fmt: skip
ARRAYS = st.builds(
    np.zeros,
    st.lists(st.integers(0, 4), max_size=3).map(tuple),
    st.sampled_from(["float32", "float64", "int8", "bool", "<U3", "complex64"]),
)
DAMAGE = st.one_of(
    st.tuples(st.just("truncate"), st.sampled_from(DAMAGEABLE), st.floats(0, 1)),
    st.tuples(st.just("delete"), st.sampled_from(DAMAGEABLE), st.none()),
    st.tuples(st.just("link"), st.sampled_from(DAMAGEABLE), st.none()),
    st.tuples(st.just("overwrite"), st.sampled_from(DAMAGEABLE), st.binary(max_size=64)),
    st.tuples(
        st.just("field"),
        st.just("summary.json"),
        st.tuples(st.sampled_from(SUMMARY_KEYS) | st.text(max_size=3), ANY_VALUE),
    ),
    st.tuples(
        st.just("stored"),
        st.sampled_from(["model.npz", CHECKPOINT]),
        st.tuples(st.sampled_from(STORED_KEYS), ANY_VALUE),
    ),
    st.tuples(
        st.just("array"),
        st.sampled_from(["model.npz", CHECKPOINT]),
        st.tuples(st.integers(0, 20), st.none() | ARRAYS),
    ),
    st.tuples(
        st.just("cell"), st.just("metrics.csv"), st.tuples(st.integers(0, 40), st.text(max_size=5))
    ),
)


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> Path:
    """An XOR run with early stopping and layers.csv, interrupted after epoch 12 of 20 (its
    checkpoint there), with the model of the whole run."""
    root = tmp_path_factory.mktemp("damaged")
    es = "training.early_stopping={monitor: loss, patience: 1000}"
    config = load_config(
        CONFIGS / "xor.yaml", ["training.epochs=20", es, "training.log_layers=true"]
    )
    run = train(config, root, handle_signals=False).run_dir
    config["training"]["epochs"] = 12
    trainer = Trainer(build(config))
    trainer.fit()
    save_checkpoint(run / CHECKPOINT, *trainer.state())
    summary = read_summary(run)
    summary.update(status="interrupted", epochs_completed=12)
    (run / "summary.json").write_text(json.dumps(summary))
    (root / "in.csv").write_text("0,0\n1,1\n")
    return run


def _stored(arrays: dict, key: str, value: Any) -> None:
    """Set ``key`` (dotted) of the JSON an .npz stores (architecture or meta) to ``value``."""
    member = "architecture" if "architecture" in arrays else "meta"
    data = json.loads(bytes(arrays[member]).decode())
    *parents, last = key.split(".")
    node = data
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if not key:
        data = value
    elif isinstance(node, dict):
        node[last] = value
    arrays[member] = np.frombuffer(json.dumps(data).encode(), np.uint8)


def damage_run(run: Path, how: str, name: str, arg: Any) -> None:
    """Damage the file ``name`` of ``run`` (see ``DAMAGE``); a file already gone stays gone."""
    path = run / name
    if not path.is_file():
        return
    if how == "truncate":
        path.write_bytes(path.read_bytes()[: int(path.stat().st_size * arg)])
    elif how == "delete":
        path.unlink()
    elif how == "link":  # to a copy outside the run folder, which nothing may change
        outside = run.parent / f"outside-{name}"
        outside.write_bytes(path.read_bytes())
        path.unlink()
        path.symlink_to(outside)
    elif how == "overwrite":
        path.write_bytes(arg)
    elif how == "cell":
        lines = path.read_bytes().splitlines(keepends=True)
        if lines:
            k = arg[0] % len(lines)
            lines[k] = arg[1].encode() + lines[k][lines[k].find(b",") :]
            path.write_bytes(b"".join(lines))
    elif how == "field":
        with contextlib.suppress(ValueError):
            data = json.loads(path.read_text())
            if isinstance(data, dict):
                data[arg[0]] = arg[1]
                path.write_text(json.dumps(data))
    else:
        with contextlib.suppress(ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError):
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            if how == "stored":
                _stored(arrays, *arg)
            else:
                names = sorted(arrays)
                key = names[arg[0] % len(names)]
                arrays.pop(key) if arg[1] is None else arrays.__setitem__(key, arg[1])
            buf = io.BytesIO()
            np.savez(buf, **arrays)
            path.write_bytes(buf.getvalue())


def _readers(run: Path) -> dict[str, Any]:
    """Every reader of a run folder, as a call on ``run``; resume (which writes) last."""

    def compare(run: Path) -> None:
        runs = load_runs([run], warn=lambda message: None)
        names = metric_names(runs)
        for r in runs:
            record(r, names)

    return {
        "summary": read_summary,
        "config": load_run_config,
        "metrics": read_metrics,
        "model": load_model,
        "predict": lambda run: predict_file(run, run.parent / "in.csv"),
        "checkpoint": lambda run: read_checkpoint(run / CHECKPOINT),
        "compare": compare,
        "resume": lambda run: resume(run, handle_signals=False),
    }


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@DAMAGED
@given(damages=st.lists(DAMAGE, min_size=1, max_size=3))
def test_a_damaged_run_folder_is_read_or_refused_in_one_line(interrupted, damages):
    _damaged_case(interrupted, damages)


@pytest.mark.slow
@settings(DEEP, max_examples=DEEP_EXAMPLES)
@given(damages=st.lists(DAMAGE, min_size=1, max_size=3))
def test_a_damaged_run_folder_deep(interrupted, damages):
    _damaged_case(interrupted, damages)


def _damaged_case(interrupted: Path, damages: list) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(interrupted, run)
        shutil.copy(interrupted.parent / "in.csv", tmp)
        for damage in damages:
            damage_run(run, *damage)
        outside = {p: p.read_bytes() for p in Path(tmp).glob("outside-*")}
        for name, read in _readers(run).items():
            before = _snapshot(run)
            with warnings.catch_warnings():
                warnings.simplefilter("error", RuntimeWarning)
                try:
                    read(run)
                except NnlabError as e:
                    assert str(e).strip() and "\n" not in str(e).strip(), (name, str(e))
                    assert e.exit_code == 2
                    assert _snapshot(run) == before, f"a refused {name} changed the run"
                    event(f"{name}: refused")
                else:
                    event(f"{name}: read")
        assert {p: p.read_bytes() for p in outside} == outside, "a file outside the run changed"


@CLI
@given(
    damages=st.lists(DAMAGE, min_size=1, max_size=2),
    command=st.sampled_from(["predict", "compare", "resume"]),
)
def test_the_readers_command_lines_exit_0_or_2_in_one_line(interrupted, damages, command):
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(interrupted, run)
        for damage in damages:
            damage_run(run, *damage)
        args = {
            "predict": ("predict", run, interrupted.parent / "in.csv"),
            "compare": ("compare", run),
            "resume": ("train", "--resume", run, "-q"),
        }[command]
        proc = invoke_nnlab(*args, cwd=Path(tmp))
        assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
        assert proc.returncode in (0, 2), (proc.returncode, proc.stderr)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
        assert proc.returncode == 0 or len(errors) == 1, proc.stderr
