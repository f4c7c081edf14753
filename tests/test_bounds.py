"""Inputs that would cost gigabytes are refused before they are expanded: alias bombs, huge lists
and mappings, deep nesting, long key paths, huge grids, models beyond the memory, numbers beyond
the dtype. Each ends in one line naming the file or the key and exit status 2, with nothing
written; a few run in a real process whose address space is capped (RLIMIT_AS), to prove that
they stay within 200 MB of what importing nnlab takes, and within a timeout far below what
they took before (tens of seconds and gigabytes)."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import CONFIGS, ROOT, nnlab_env, run_nnlab_capped
from nnlab import memory
from nnlab.cli import cli
from nnlab.config import MAX_KEY_PARTS, load_config, split_key
from nnlab.errors import ConfigError, DataError
from nnlab.nn import Model
from nnlab.nn.initializers import INITIALIZERS, planning
from nnlab.nn.layers import Dense
from nnlab.schema import fmt
from nnlab.sweeps.spec import MAX_TRIALS, load_sweep
from nnlab.yaml_io import MAX_YAML_DEPTH, MAX_YAML_SIZE, MAX_YAML_VALUES, parse_yaml

XOR = CONFIGS / "xor.yaml"
XOR_TEXT = XOR.read_text()


def alias_bomb(levels: int) -> str:
    """A flow list of a few hundred bytes whose last item stands for 10**levels strings."""
    items = ["&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        items.append(f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "[" + ", ".join(items) + "]"


def refused(*args: str, code: int = 2) -> str:
    """Run the command line in this process: it must exit with ``code`` and one line on stderr,
    no traceback; returns that line."""
    result = CliRunner().invoke(cli, [str(a) for a in args])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == code, (result.exit_code, result.stderr, result.exception)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def one_line_exit_2(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


needs_linux = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="needs Linux's RLIMIT_AS and /proc"
)


# ---------------------------------------------------------------- YAML


def test_an_alias_bomb_is_refused_while_it_is_read(write_config, runs):
    path = write_config(XOR_TEXT + f"name: {alias_bomb(10)}\n")
    line = refused("train", path, "--runs-dir", runs)
    assert str(path) in line and "line 19" in line
    assert f"more than {MAX_YAML_VALUES:,} values" in line and "alias" in line
    assert not list(runs.iterdir())


def test_an_alias_bomb_in_a_set_value_or_an_axis(runs):
    line = refused("train", XOR, "--set", f"description={alias_bomb(9)}", "--runs-dir", runs)
    assert "--set description" in line and "values" in line
    line = refused("sweep", XOR, "-g", f"optimizer.lr=[{alias_bomb(9)}]", "--print-trials")
    assert "-g optimizer.lr" in line and "values" in line


def test_aliases_within_the_limit_load_as_before():
    value = parse_yaml("a: &x {name: adam, lr: 0.1}\nb: *x\nc: [*x, *x]\n", "f.yaml")
    assert value["b"] == value["c"][1] == {"name": "adam", "lr": 0.1}
    # 10**4 strings through aliases are counted as such, and allowed
    assert len(parse_yaml(alias_bomb(4), "f.yaml")[-1]) == 10


def test_an_alias_inside_its_own_anchor_is_refused():
    for text in ("&a [*a]", "&a {x: *a}", "x: &a [1, [2, *a]]"):
        with pytest.raises(ConfigError, match=r"the alias \*a is inside its own anchor"):
            parse_yaml(text, "f.yaml")


def test_lists_and_mappings_are_counted_before_they_are_built(monkeypatch):
    monkeypatch.setattr("nnlab.yaml_io.MAX_YAML_VALUES", 1000)
    with pytest.raises(ConfigError, match="line 1, column 2000: more than 1,000 values"):
        parse_yaml("[" + ",".join(["0"] * 1000) + "]", "f.yaml")  # at the 1000th item
    assert len(parse_yaml("[" + ",".join(["0"] * 999) + "]", "f.yaml")) == 999
    with pytest.raises(ConfigError, match="more than 1,000 values"):
        parse_yaml("\n".join(f"k{i}: 0" for i in range(500)), "f.yaml")
    with pytest.raises(ConfigError, match="more than 1,000 values"):  # 2 * 10 + 1, 50 times
        parse_yaml(
            "a: &a {"
            + ", ".join(f"k{i}: 0" for i in range(10))
            + "}\nb: ["
            + ", ".join(["*a"] * 50)
            + "]",
            "f.yaml",
        )


def test_nesting_is_limited_with_the_place_it_goes_too_deep():
    ok = "[" * MAX_YAML_DEPTH + "]" * MAX_YAML_DEPTH
    assert parse_yaml(ok, "f.yaml") is not None
    deep = "x: " + "[" * 500 + "]" * 500
    with pytest.raises(ConfigError) as info:
        parse_yaml(deep, "f.yaml")
    assert f"nested deeper than {MAX_YAML_DEPTH} levels" in str(info.value)
    assert "line 1, column 53" in str(info.value)  # where level 51 opens


def test_nesting_through_aliases_counts_the_levels_they_repeat():
    # 40 anchors of 45 levels, each inside the next: 1,800 levels in 4 KB of text
    items = ["&a0 " + "[" * 45 + "]" * 45]
    items += [f"&a{k} " + "[" * 45 + f"*a{k - 1}" + "]" * 45 for k in range(1, 40)]
    with pytest.raises(ConfigError, match=r"line 1, column 147: nested deeper than 50 levels"):
        parse_yaml("[" + ", ".join(items) + "]", "f.yaml")
    half = "[" * 24 + "]" * 24
    value = parse_yaml(f"x: &a {half}\ny: " + "[" * 25 + "*a" + "]" * 25, "f.yaml")
    assert value["x"] == parse_yaml(half, "f.yaml")  # 1 + 25 + 24 levels: allowed


def test_nesting_500_deep_is_exit_2_not_an_internal_error(write_config, runs):
    path = write_config(XOR_TEXT + "name: " + "{a: " * 500 + "1" + "}" * 500 + "\n")
    assert "nested deeper" in refused("train", path, "--runs-dir", runs)


def test_a_text_or_file_beyond_the_size_limit_is_refused_unread(write_config, tmp_path):
    big = write_config(XOR_TEXT + "#" * MAX_YAML_SIZE + "\n", "big.yaml")
    with pytest.raises(ConfigError, match=f"more than the {MAX_YAML_SIZE:,}"):
        load_config(big)
    with pytest.raises(ConfigError, match="characters of YAML"):
        parse_yaml("x" * (MAX_YAML_SIZE + 1), "--set name")


# ---------------------------------------------------------------- key paths


def test_a_key_path_of_30000_parts_is_refused_at_once(runs):
    line = refused("train", XOR, "--set", ".".join(["a"] * 30_000) + "=1", "--runs-dir", runs)
    assert "a key path of 59,999 characters" in line and len(line) < 300


def test_key_paths_are_limited_in_parts():
    assert len(split_key(".".join(["a"] * MAX_KEY_PARTS))) == MAX_KEY_PARTS
    with pytest.raises(ConfigError, match=f"more than the {MAX_KEY_PARTS} allowed"):
        split_key(".".join(["a"] * (MAX_KEY_PARTS + 1)))
    with pytest.raises(ConfigError, match="cannot read the key path 'a\\.\\.b'"):
        split_key("a..b")


# ---------------------------------------------------------------- messages


def test_a_message_quotes_a_short_excerpt_of_a_huge_value():
    huge = [list(range(1000))] * 10**6  # a billion items, shared
    tracemalloc.start()
    text = fmt(huge)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert text.startswith("[[0, 1, 2") and text.endswith("...") and len(text) == 80
    assert peak < 100_000
    assert fmt({"a": [1, 2], "b": "it's"}) == repr({"a": [1, 2], "b": "it's"})  # small: as is
    assert fmt(10**5000) == "an integer of 16,610 bits"  # beyond what repr may print


def test_a_sweep_axis_of_a_huge_value_gives_a_short_line():
    value = "[" + ",".join(["[" + ",".join(["7"] * 100) + "]"] * 400) + "]"  # 40,401 values
    line = refused("sweep", XOR, "-g", f"optimizer.lr={value}", "--print-trials")
    assert "optimizer.lr" in line and len(line) < 400


# ---------------------------------------------------------------- sweeps


def test_a_grid_is_counted_before_it_is_built():
    with pytest.raises(ConfigError) as info:
        load_sweep(XOR, grid=["optimizer.lr=range(1000)", "training.epochs=range(1, 1001)"])
    message = str(info.value)
    assert "1,000,000 trials (1,000 x 1,000)" in message
    assert f"more than the {MAX_TRIALS:,}" in message
    sweep = load_sweep(XOR, grid=["optimizer.lr=range(100)"], seeds="100")
    assert sweep.size == MAX_TRIALS  # at the limit: accepted (its trials are built when asked)


def test_axes_and_seed_counts_are_counted_before_they_are_made():
    line = refused(
        "sweep",
        XOR,
        "-g",
        "optimizer.lr=linspace(0.001, 1, 1000000)",
        "-g",
        "training.seed=range(1000000)",
        "--print-trials",
    )
    assert "linspace(...) gives 1,000,000 values" in line
    line = refused("sweep", XOR, "-g", "optimizer.lr=range(0, 1, 1e-12)", "--print-trials")
    assert "range(...) gives 1,000,000,000,000 values" in line
    assert "at most 10,000" in refused("sweep", XOR, "--seeds", "1000000000", "--print-trials")


# ---------------------------------------------------------------- memory


def test_each_initializer_counts_what_it_allocates_at_its_peak():
    shape = (500, 700)
    for name in INITIALIZERS.names():
        for dtype in (np.float32, np.float64):
            init = INITIALIZERS.create(name)
            init((2, 3), np.random.default_rng(0), dtype)  # one-off allocations first
            tracemalloc.start()
            init(shape, np.random.default_rng(0), dtype)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            counted = init.peak_bytes(shape, np.dtype(dtype))
            assert peak <= counted + 20_000, (name, np.dtype(dtype).name, peak, counted)
            assert counted >= np.prod(shape) * np.dtype(dtype).itemsize


def test_planning_draws_nothing_and_allocates_nothing():
    rng = np.random.default_rng(3)
    state = rng.bit_generator.state
    with planning() as weights:
        W = INITIALIZERS.create("he_normal")((10**6, 10**6), rng, np.float32)
    assert rng.bit_generator.state == state
    assert W.shape == (10**6, 10**6) and W.dtype == np.float32 and W.strides == (0, 0)
    assert weights == [(4 * 10**12, 15 * 10**12)]  # float32 weights, drawn in float64


def test_a_model_beyond_the_memory_is_refused_before_any_weight_is_drawn(monkeypatch):
    # XOR with 10**9 hidden units: the check counted float32 and then the initializer
    # allocated 14.9 GiB in float64
    monkeypatch.setattr(memory, "_system_free", lambda: 8 * 10**9)
    tracemalloc.start()
    with pytest.raises(ConfigError) as info:
        Model([Dense(units=10**9), Dense(units=1)], (2,), np.random.default_rng(0))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert str(info.value) == (
        "model: a model of 4,000,000,001 float32 parameters needs 48.0 GB of memory, "
        "more than the 8.0 GB available"
    )
    assert peak < 1_000_000


def test_the_same_model_with_and_without_the_plan():
    a = Model(
        [Dense(units=30, initializer="orthogonal"), Dense(units=3)], (5,), np.random.default_rng(1)
    )
    rng = np.random.default_rng(1)
    W = INITIALIZERS.create("orthogonal")((5, 30), rng, np.float32)
    np.testing.assert_array_equal(a.layers[0].params["W"], W)


@needs_linux
def test_the_memory_available_includes_ulimit_v(tmp_path):
    import ast
    import resource

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2**31, 2**31))

    proc = subprocess.run(
        [sys.executable, "-c", "from nnlab import memory; print(memory.available())"],
        env=nnlab_env(),
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=cap,
    )
    have, what = ast.literal_eval(proc.stdout)
    assert what == "left under ulimit -v" and 0 < have < 2**31


# ---------------------------------------------------------------- CSV


def csv_config(write_config, tmp_path: Path, text: str) -> Path:
    """A copy of the XOR config that reads ``text`` as its CSV data."""
    data = tmp_path / "data.csv"
    data.write_text(text)
    return write_config(XOR_TEXT.replace("{name: xor}", f"{{name: csv, path: '{data}'}}"))


def test_csv_numbers_beyond_float32_are_refused_with_row_and_column(write_config, tmp_path, runs):
    config = csv_config(write_config, tmp_path, "a,b,y\n1,2,0\n3,1e300,1\n5,6,0\n7,8,1\n")
    line = refused("train", config, "--runs-dir", runs)
    assert "data.csv: row 3, column 2 ('b'): '1e300' is beyond the range of float32" in line
    assert "training.dtype: float64" in line and not list(runs.iterdir())
    # in float64 the value fits, and the run trains (no RuntimeWarning in standard scaling)
    sets = ["training.epochs=2", "training.dtype=float64", "data.scale=standard"]
    args = ["train", str(config), "--runs-dir", str(runs), "-q"]
    result = CliRunner().invoke(cli, args + [a for s in sets for a in ("--set", s)])
    assert result.exit_code == 0 and "Warning" not in result.stderr, result.stderr


def test_an_unclosed_quote_in_a_csv_is_reported_as_such(write_config, tmp_path, runs):
    config = csv_config(write_config, tmp_path, 'a,b,y\n1,2,0\n\n"3,4,1\n5,6,0\n')
    line = refused("train", config, "--runs-dir", runs)
    assert "the row that starts on line 4 opens a quote that is never closed" in line


def test_a_stray_but_closed_quote_still_reads(tmp_path):
    from nnlab.data.csv import csv_file

    path = tmp_path / "d.csv"
    path.write_text('a,b,y\n1,"2"x,0\n3,4,1\n')  # the csv module reads "2"x as 2x
    with pytest.raises(DataError, match="'2x' is not a number"):
        csv_file(str(path))


def test_a_csv_too_big_to_parse_is_refused_unread(tmp_path, monkeypatch):
    from nnlab.data.csv import csv_file

    path = tmp_path / "d.csv"
    path.write_text("a,y\n" + "1,0\n" * 50_000)
    monkeypatch.setattr(memory, "_system_free", lambda: 1_000_000)
    with pytest.raises(ConfigError, match=r"data\.path: reading .*d\.csv \(200.0 KB\) needs"):
        csv_file(str(path))


# ---------------------------------------------------------------- in a real process


@needs_linux
def test_bombs_lists_grids_and_models_in_a_capped_process(tmp_path):
    """Each case, in a process with 200 MB of address space beyond the libraries: one line,
    exit 2, within the timeout (they took 20 to 160 s and 1.5 GB or more before)."""
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(XOR_TEXT + f"name: {alias_bomb(10)}\n")
    huge = tmp_path / "huge.yaml"  # 12 million items: 24 MB
    huge.write_text(XOR_TEXT + "name: [" + ",0" * 12_000_000 + "]\n")
    runs = tmp_path / "runs"
    cases = [
        (["train", bomb], f"more than {MAX_YAML_VALUES:,} values"),
        (["train", huge], "the file has 24,000,"),
        (
            [
                "sweep",
                XOR,
                "-g",
                "optimizer.lr=range(1000000)",
                "-g",
                "training.epochs=range(1, 1000001)",
                "--print-trials",
            ],
            "gives 1,000,000 values",
        ),
        (
            [
                "sweep",
                XOR,
                "-g",
                "optimizer.lr=range(1000)",
                "-g",
                "training.epochs=range(1, 1001)",
                "--print-trials",
            ],
            "1,000,000 trials",
        ),
        (["train", XOR, "--set", "model.layers.0.units=1000000000"], "4,000,000,001"),
    ]
    for args, words in cases:
        proc = run_nnlab_capped(*args, "--runs-dir", runs, extra_mb=200, cwd=tmp_path, timeout=30)
        assert words in one_line_exit_2(proc), (args[:2], proc.stderr)
    assert not runs.exists() or not list(runs.iterdir())


def test_the_readme_states_the_limits():
    readme = (ROOT / "README.md").read_text()
    for number in (MAX_YAML_SIZE, MAX_YAML_VALUES, MAX_TRIALS):
        assert f"{number:,}" in readme
    assert f"{MAX_YAML_DEPTH} levels" in readme and f"{MAX_KEY_PARTS} parts" in readme


def test_axis_expressions_beyond_the_integers_and_floats_of_a_machine():
    # len(range(...)) stops at 2**63 and 10.0**1e308 overflows: both were internal errors
    line = refused("sweep", XOR, "-g", f"optimizer.lr=range(0, {10**25})", "--print-trials")
    assert f"gives {10**25:,} values" in line
    line = refused("sweep", XOR, "-g", "optimizer.lr=range(0, 1e400)", "--print-trials")
    assert "gives infinitely many values" in line
    line = refused("sweep", XOR, "-g", "optimizer.lr=logspace(0, 1e308, 3)", "--print-trials")
    assert "logspace(...) gives numbers beyond the floating-point range" in line
