"""nnlab compare and nnlab diff: the differing keys, last/best metrics, seed statistics against
hand-computed values, statuses of unfinished runs, filters, formats, and damaged folders."""

from __future__ import annotations

import csv
import datetime
import io
import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import scipy.stats

from conftest import CONFIGS, invoke_nnlab
from nnlab.compare import build_table, load_runs, render, short_names
from nnlab.config import config_hash, dump_yaml, load_config
from nnlab.errors import ConfigError

COLUMNS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"]


def make_run(
    root: Path,
    name: str,
    sets: tuple[str, ...] = (),
    val_accuracy: tuple[float, ...] = (0.5, 0.8, 0.7),
    val_loss: tuple[float, ...] = (1.0, 0.4, 0.6),
    status: str = "completed",
    test: dict | None = None,
    **summary: object,
) -> Path:
    """A run folder as nnlab train writes it, with the given validation curves."""
    cfg = load_config(CONFIGS / "digits.yaml", list(sets))
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(dump_yaml(cfg))
    lines = [",".join(COLUMNS)]
    for i, (acc, loss) in enumerate(zip(val_accuracy, val_loss, strict=True)):
        row = [i + 1, 2 * loss, acc / 2, loss, acc, 0.001, 0.5]
        lines.append(",".join(repr(float(v)) if not isinstance(v, int) else str(v) for v in row))
    (run / "metrics.csv").write_text("\n".join(lines) + "\n")
    data = {
        "status": status,
        "name": cfg["name"],
        "config_hash": config_hash(cfg),
        "seed": cfg["training"]["seed"],
        "epochs_completed": len(val_accuracy),
        "train_seconds": 0.5 * len(val_accuracy),
        **({"test": test} if test else {}),
        **summary,
    }
    (run / "summary.json").write_text(json.dumps(data))
    return run


def table(runs, **options):
    return build_table(load_runs(runs, warn=pytest.fail), **options)


def frame(runs, **options) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(render(table(runs, **options), "csv")))


def test_columns_are_the_differing_keys_then_last_and_best_metrics(tmp_path):
    a = make_run(tmp_path, "a", ["optimizer.lr=0.01"], test={"loss": 0.3, "accuracy": 0.9})
    b = make_run(
        tmp_path,
        "b",
        ["optimizer.lr=0.001", "model.layers.0.activation=tanh"],
        val_accuracy=(0.6, 0.65, 0.9),
        val_loss=(0.9, 0.95, 0.2),
        test={"loss": 0.25, "accuracy": 0.92},
    )
    f = frame([a, b])
    assert list(f.columns) == [
        "run",
        "model.layers.0.activation",
        "optimizer.lr",
        "val_loss",
        "val_loss.best",
        "val_loss.best_epoch",
        "val_accuracy",
        "val_accuracy.best",
        "val_accuracy.best_epoch",
        "test_loss",
        "test_accuracy",
        "status",
        "epochs",
        "seconds",
    ]  # shared keys (loss, data, epochs, ...) are left out
    ra, rb = f.iloc[0], f.iloc[1]
    assert (ra["run"], ra["optimizer.lr"], ra["model.layers.0.activation"]) == ("a", 0.01, "relu")
    assert (ra["val_accuracy"], ra["val_accuracy.best"], ra["val_accuracy.best_epoch"]) == (
        0.7,
        0.8,
        2,
    )
    assert (ra["val_loss"], ra["val_loss.best"], ra["val_loss.best_epoch"]) == (0.6, 0.4, 2)
    assert (rb["val_accuracy.best"], rb["val_accuracy.best_epoch"]) == (0.9, 3)
    assert (rb["test_accuracy"], rb["seconds"], rb["epochs"]) == (0.92, 1.5, 3)
    text = render(table([a, b]), "table")
    assert "0.8000 (2)" in text and "val_accuracy.best (epoch)" in text
    assert text.splitlines()[0].split()[:3] == ["run", "activation", "lr"]  # short names
    all_metrics = frame([a, b], metrics=["all"])
    assert {"loss", "accuracy.best", "accuracy.best_epoch"} <= set(all_metrics.columns)


def test_group_seeds_gives_mean_sample_std_and_count(tmp_path):
    runs = [
        make_run(
            tmp_path,
            f"lr1-s{s}",
            ["optimizer.lr=0.01", f"training.seed={s}"],
            val_accuracy=(0.1, 0.2, v),
        )
        for s, v in ((0, 0.5), (1, 0.7), (2, 0.9))
    ]
    runs += [
        make_run(
            tmp_path,
            f"lr2-s{s}",
            ["optimizer.lr=0.1", f"training.seed={s}"],
            val_accuracy=(0.1, 0.2, v),
        )
        for s, v in ((0, 0.6), (1, 0.8))
    ]
    runs.append(
        make_run(
            tmp_path,
            "lr2-s2",
            ["optimizer.lr=0.1", "training.seed=2"],
            val_accuracy=(0.1, math.nan, math.nan),
            val_loss=(1.0, math.inf, math.nan),
            status="diverged",
        )
    )
    rows = json.loads(render(table(runs, group_seeds=True), "json"))
    assert [(r["optimizer.lr"], r["runs"], r["seeds"]) for r in rows] == [
        (0.01, 3, "0,1,2"),
        (0.1, 3, "0,1,2"),
    ]
    g1, g2 = rows
    # 0.5, 0.7, 0.9: mean 0.7, sample std sqrt((0.04 + 0 + 0.04) / 2) = 0.2
    assert g1["val_accuracy.mean"] == pytest.approx(0.7)
    assert g1["val_accuracy.std"] == pytest.approx(0.2)
    assert g1["val_accuracy.n"] == 3
    # the diverged run has no finite last value: 0.6, 0.8 -> mean 0.7, std sqrt(0.02) (n = 2)
    assert g2["val_accuracy.mean"] == pytest.approx(0.7)
    assert g2["val_accuracy.std"] == pytest.approx(math.sqrt(0.02))
    assert g2["val_accuracy.n"] == 2
    # best values: 0.5, 0.7, 0.9 again; epochs 3, 3, 3 (std 0)
    assert g1["val_accuracy.best.mean"] == pytest.approx(0.7)
    assert g1["epochs.std"] == 0
    assert g2["status"] == "2 completed, 1 diverged"
    # the 95% t-interval of the mean: t(0.975, n - 1) * std / sqrt(n) either side
    low, high = scipy.stats.t.interval(0.95, 2, loc=0.7, scale=0.2 / math.sqrt(3))
    assert (g1["val_accuracy.low"], g1["val_accuracy.high"]) == pytest.approx((low, high))
    low2, high2 = scipy.stats.t.interval(0.95, 1, loc=0.7, scale=math.sqrt(0.02 / 2))
    assert (g2["val_accuracy.low"], g2["val_accuracy.high"]) == pytest.approx((low2, high2))
    text = render(table(runs, group_seeds=True, metrics=["val_accuracy"]), "markdown")
    assert f"| 0.7000 ± {high - 0.7:.4f} (3) |" in text  # 0.4968: about 2.5 std with 3 seeds
    assert f"| 0.7000 ± {high2 - 0.7:.4f} (2) |" in text
    assert text.endswith("mean ± half-width of the 95% t-interval of the mean (runs with a value)")
    assert "seed" not in text.splitlines()[0]


def test_unfinished_runs_appear_with_their_status(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    long_ago = "2020-01-01T00:00:00+00:00"  # before this process began: its pid was reused
    runs = [
        make_run(tmp_path, "done", ["optimizer.lr=0.1"]),
        make_run(tmp_path, "nan", ["optimizer.lr=0.2"], status="diverged"),
        make_run(tmp_path, "stopped", ["optimizer.lr=0.3"], status="interrupted"),
        make_run(tmp_path, "failed", ["optimizer.lr=0.4"], status="failed", error="boom"),
        make_run(
            tmp_path,
            "gone",
            ["optimizer.lr=0.5"],
            status="running",
            pid=dead.pid,
            host=host,
            started=now,
        ),
        make_run(
            tmp_path, "live", ["optimizer.lr=0.6"], status="running", pid=os.getpid(),
            host=host, started=now,
        ),
        make_run(
            tmp_path, "reused", ["optimizer.lr=0.7"], status="running", pid=os.getpid(),
            host=host, started=long_ago,
        ),
    ]  # fmt: skip
    (runs[4] / "metrics.csv").write_text((runs[4] / "metrics.csv").read_text() + "4,0.1,0.")
    f = frame(runs)
    assert list(f["status"]) == [
        "completed",
        "diverged",
        "interrupted",
        "failed",
        "killed",
        "running",
        "killed",
    ]
    assert f["epochs"][4] == 3  # the unfinished last line of a killed run is not an epoch


def test_damaged_folders_are_reported_by_name_and_skipped(tmp_path):
    good = make_run(tmp_path, "good", ["optimizer.lr=0.1"])
    make_run(tmp_path, "other", ["optimizer.lr=0.2"])
    bad_summary = make_run(tmp_path, "bad-summary")
    (bad_summary / "summary.json").write_text('{"status": "compl')
    bad_config = make_run(tmp_path, "bad-config")
    (bad_config / "config.yaml").write_text("data: {name: [\n")
    bad_metrics = make_run(tmp_path, "bad-metrics")
    (bad_metrics / "metrics.csv").write_text("epoch,loss\n1,0.5\n2,oops\n")
    no_summary = make_run(tmp_path, "no-summary")
    (no_summary / "summary.json").unlink()
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("hi")
    proc = invoke_nnlab(
        "compare", *sorted(tmp_path.iterdir()), tmp_path / "missing", "--format", "csv"
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    err = proc.stderr.splitlines()
    assert len(err) == 7
    for name, words in [
        ("bad-summary/summary.json", "damaged"),
        ("bad-config/config.yaml", "damaged"),
        ("bad-metrics/metrics.csv", "damaged"),
        ("no-summary", "no summary.json"),
        ("empty", "not a run folder"),
        ("notes.txt", "not a run folder"),
        ("missing", "no such file or folder"),
    ]:
        assert any(f"{tmp_path / name}" in line and words in line for line in err), (name, err)
    rows = pd.read_csv(io.StringIO(proc.stdout))
    assert list(rows["run"]) == ["good", "other"]
    # a folder of runs stands for the runs under it; the damaged ones are reported
    proc = invoke_nnlab("compare", tmp_path, "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    assert list(pd.read_csv(io.StringIO(proc.stdout))["run"]) == ["good", "other"]
    err = proc.stderr.splitlines()
    for name in ("bad-summary", "bad-config", "bad-metrics", "no-summary"):
        assert any(f"{tmp_path / name}" in line for line in err), (name, err)
    assert good.exists()


def test_sweep_folders_stand_for_their_trials(tmp_path):
    sweeps = tmp_path / "runs" / "sweeps"
    for name, lrs in (("one", (0.1, 0.2)), ("two", (0.3,))):
        for i, lr in enumerate(lrs):
            make_run(sweeps / name / "trials", f"{i + 1:03d}-x", [f"optimizer.lr={lr}"])
        trials = [{"number": i + 1, "run": f"trials/{i + 1:03d}-x"} for i in range(len(lrs))]
        (sweeps / name / "index.json").write_text(json.dumps({"trials": trials[::-1]}))
    plain = make_run(tmp_path / "runs", "plain", ["optimizer.lr=0.4"])
    f = frame([sweeps / "one"])
    assert list(f["optimizer.lr"]) == [0.1, 0.2]  # in the index's order
    f = frame(sorted((tmp_path / "runs").iterdir()))  # runs/*: plain runs and runs/sweeps
    assert sorted(f["optimizer.lr"]) == [0.1, 0.2, 0.3, 0.4] and plain.exists()


def test_where_sort_and_top(tmp_path):
    runs = [
        make_run(tmp_path, f"r{i}", [f"optimizer.lr={lr}"], val_accuracy=(0.1, 0.2, acc))
        for i, (lr, acc) in enumerate([(0.1, 0.6), (0.01, 0.9), (0.001, 0.8), (0.05, 0.95)])
    ]
    runs.append(make_run(tmp_path, "r4", ["optimizer.lr=0.02"], status="diverged"))
    f = frame(runs, where=["optimizer.lr<0.1", "status==completed"], sort="val_accuracy")
    assert list(f["run"]) == ["r3", "r1", "r2"]  # best accuracy first
    f = frame(runs, where=["lr>=0.01"], sort="lr", top=2)  # a unique suffix names a key
    assert list(f["optimizer.lr"]) == [0.01, 0.02]
    f = frame(runs, sort="val_accuracy", reverse=True, top=1)
    assert list(f["run"]) == ["r0"]  # reversed: worst first
    f = frame(runs, where=["status!=diverged", "val_accuracy.best_epoch=3"])
    assert list(f["run"]) == ["r0", "r1", "r2", "r3"]
    for group in (False, True):  # nothing left: an empty table, not an error
        empty = table(runs, where=["lr>1"], group_seeds=group, sort="val_accuracy")
        assert json.loads(render(empty, "json")) == [] and "status" in render(empty, "table")


@pytest.mark.parametrize(
    "where, words",
    [
        ("optimzer.lr<0.1", ["no column 'optimzer.lr'", "Did you mean 'optimizer.lr'?"]),
        ("optimizer.lr", ["expected KEY OP VALUE"]),
        ("optimizer.lr<fast", ["< compares numbers"]),
        ("status<3", ["status holds 'completed', not a number"]),
        ("units==3", ["ambiguous"]),
    ],
)
def test_bad_where_is_an_error(tmp_path, where, words):
    runs = [make_run(tmp_path, "a"), make_run(tmp_path, "b", ["optimizer.lr=0.1"])]
    with pytest.raises(ConfigError) as info:
        table(runs, where=[where])
    for w in words:
        assert w in str(info.value)


def test_cli_errors_exit_2_without_traceback(tmp_path):
    run = make_run(tmp_path, "a")
    for args, words in [
        (["--where", "lr<<1"], "--where"),
        (["--metric", "val_acc"], "Did you mean 'val_accuracy'?"),
        (["--columns", "nothing"], "no column 'nothing'"),
    ]:
        proc = invoke_nnlab("compare", run, *args)
        assert proc.returncode == 2 and proc.stderr.startswith("error: ") and words in proc.stderr
        assert "Traceback" not in proc.stderr


def test_columns_and_formats(tmp_path):
    runs = [make_run(tmp_path, "a"), make_run(tmp_path, "b", ["optimizer.lr=0.1"])]
    f = frame(runs, columns=["lr,data.name", "val_loss.best"])
    assert list(f.columns) == ["run", "optimizer.lr", "data.name", "val_loss.best"]
    assert list(f["data.name"]) == ["digits", "digits"]  # any key, not only differing ones
    md = render(table(runs), "markdown").splitlines()
    assert md[0].startswith("| run") and set(md[1]) <= set("|-: ")
    assert len(md) == 4
    records = json.loads(render(table(runs), "json"))
    assert [r["optimizer.lr"] for r in records] == [0.001, 0.1]


def test_a_component_that_changes_name_is_one_column(tmp_path):
    runs = [
        make_run(tmp_path, "he", ["model.layers.0.initializer=he_normal"]),
        make_run(
            tmp_path, "big", ["model.layers.0.initializer={name: random_normal, stddev: 1.0}"]
        ),
        make_run(tmp_path, "zero", ["model.layers.0.initializer=zeros"]),
    ]
    f = frame(runs)
    assert list(f["model.layers.0.initializer"]) == [
        "he_normal",
        "random_normal(stddev=1.0)",
        "zeros",
    ]
    assert not [c for c in f.columns if c.startswith("model.layers.0.initializer.")]
    # filters still see every option
    assert list(frame(runs, where=["initializer.stddev>0.5"])["run"]) == ["big"]
    # a column named by the component gives its options too; by .name, the name alone
    f = frame(runs, columns=["initializer", "model.layers.0.initializer.name"])
    assert list(f.columns) == [
        "run",
        "model.layers.0.initializer",
        "model.layers.0.initializer.name",
    ]
    assert list(f["model.layers.0.initializer"])[1] == "random_normal(stddev=1.0)"
    assert list(f["model.layers.0.initializer.name"])[1] == "random_normal"


def test_short_names_are_unique_suffixes():
    keys = [
        "model.layers.0.initializer.name",
        "model.layers.0.units",
        "model.layers.1.units",
        "optimizer.lr",
        "training.seed",
    ]
    assert short_names(keys) == {
        "model.layers.0.initializer.name": "initializer",
        "model.layers.0.units": "layers.0.units",
        "model.layers.1.units": "layers.1.units",
        "optimizer.lr": "lr",
        "training.seed": "seed",
    }


def test_diff_shows_the_differing_keys_and_the_changes(tmp_path):
    a = make_run(tmp_path, "a", test={"loss": 0.3, "accuracy": 0.9})
    b = make_run(
        tmp_path,
        "b",
        ["optimizer.lr=0.1", "training.epochs=5"],
        val_accuracy=(0.6, 0.7, 0.9),
        test={"loss": 0.2, "accuracy": 0.95},
    )
    proc = invoke_nnlab("diff", a, b)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    keys = [line.split()[0] for line in lines[2 : lines.index("")]]
    assert keys == ["optimizer.lr", "training.epochs"]
    assert lines[2].split() == ["optimizer.lr", "0.001", "0.1"]
    row = next(line for line in lines if line.startswith("val_accuracy "))
    assert row.split() == ["val_accuracy", "0.7000", "0.9000", "+0.2000"]
    row = next(line for line in lines if line.startswith("test_accuracy "))
    assert row.split()[-1] == "+0.0500"
    data = json.loads(invoke_nnlab("diff", a, b, "--format", "json").stdout)
    assert data["config"] == {
        "optimizer.lr": {"a": 0.001, "b": 0.1},
        "training.epochs": {"a": 60, "b": 5},
    }
    assert data["metrics"]["val_accuracy.best_epoch"]["delta"] == 1
    rows = list(csv.DictReader(io.StringIO(invoke_nnlab("diff", a, b, "--format", "csv").stdout)))
    assert rows[0] == {"section": "config", "name": "optimizer.lr", "a": "0.001", "b": "0.1",
                       "change": ""}  # fmt: skip
    got = {r["name"]: r for r in rows if r["section"] == "metric"}
    assert float(got["val_accuracy"]["change"]) == pytest.approx(0.2)  # full numbers, as json
    assert next(r for r in rows if r["section"] == "status")["a"] == "completed"
    proc = invoke_nnlab("diff", a, tmp_path / "nothing")
    assert proc.returncode == 2 and "no such file or folder" in proc.stderr


@pytest.mark.parametrize("command", ["compare", "diff", "plot", "sweep"])
def test_help_shows_an_example(command):
    proc = invoke_nnlab(command, "--help")
    assert proc.returncode == 0 and "Example" in proc.stdout and f"nnlab {command} " in proc.stdout
    assert command in invoke_nnlab("--help").stdout


def test_a_config_loss_and_the_loss_metric_stay_apart(runs):
    """Runs that differ in their loss: the config's loss is its own column (loss.name), the
    metric loss keeps its numbers, in every format and when grouping seeds."""
    import csv as _csv
    import io

    from conftest import CONFIGS, invoke_nnlab

    for name in ("mse", "binary_crossentropy"):
        done = invoke_nnlab(
            "train",
            CONFIGS / "xor.yaml",
            "--runs-dir",
            runs,
            "-q",
            "--set",
            f"loss={name}",
            "--set",
            "training.epochs=20",
        )
        assert done.returncode == 0, done.stderr
    out = invoke_nnlab("compare", *sorted(runs.iterdir()), "--format", "csv")
    rows = list(_csv.DictReader(io.StringIO(out.stdout)))
    assert [r["loss.name"] for r in rows] == ["mse", "binary_crossentropy"]
    assert all(float(r["loss"]) > 0 for r in rows)
    grouped = invoke_nnlab("compare", *sorted(runs.iterdir()), "--group-seeds")
    assert "mse" in grouped.stdout and "binary_crossentropy" in grouped.stdout


def test_whole_numbers_stay_whole_and_empty_columns_go(tmp_path):
    """A key missing from one run (a second layer) keeps its integers; a key that is null in
    some runs and missing in others is no column at all."""
    two = make_run(tmp_path, "two", ["model.layers.0.units=32"])
    three = make_run(
        tmp_path,
        "three",
        ["model.layers.0.units=16", "model.layers.2={type: dense, units: 10, activation: softmax}",
         "model.layers.1.units=12", "model.layers.1.activation=relu"],
    )  # fmt: skip
    t = table([two, three])
    text = render(t, "table")
    header, _, first, second = text.splitlines()[:4]
    assert "layers.1.units" in header and "12" in second.split() and "12.0" not in text
    assert "32" in first.split() and "32.0" not in text
    rows = json.loads(render(t, "json"))
    for col in rows[0]:  # no column is empty in every row
        assert any(r[col] is not None for r in rows), col
    # null in one run (layers.0.name), missing in the other (layers.2.name): no column
    assert "layers.2.name" not in header and "model.layers.2.name" not in rows[0]


def test_headers_are_the_shortest_unique_key_paths():
    keys = ["model.layers.1.name", "model.layers.1.type", "model.layers.0.units", "loss.name"]
    assert short_names(keys, taken={"loss", "status"}) == {
        "model.layers.1.name": "layers.1.name",  # never a bare 'name' or '1.name'
        "model.layers.1.type": "layers.1.type",
        "model.layers.0.units": "units",
        "loss.name": "loss.name",  # 'loss' is the metric beside it
    }


def test_trials_are_named_by_their_sweep_and_number(tmp_path):
    for sweep, lr in (("one", 0.1), ("two", 0.2)):
        make_run(tmp_path / sweep / "trials", "001-4fb9c189be51", [f"optimizer.lr={lr}"])
        (tmp_path / sweep / "index.json").write_text(
            json.dumps({"trials": [{"number": 1, "run": "trials/001-4fb9c189be51"}]})
        )
    make_run(tmp_path, "digits-20260101-120000")
    assert list(
        frame([tmp_path / "one", tmp_path / "two", tmp_path / "digits-20260101-120000"])["run"]
    ) == ["one/001", "two/001", "digits-20260101-120000"]


def test_where_recomputes_what_differs_and_which_metrics(tmp_path):
    a = make_run(tmp_path, "a", ["optimizer.lr=0.1", "model.layers.0.units=8"])
    b = make_run(tmp_path, "b", ["optimizer.lr=0.1", "model.layers.0.units=16"])
    c = make_run(tmp_path, "c", ["optimizer.lr=0.01", "model.layers.0.units=16"])
    assert table([a, b, c]).config_keys == ["model.layers.0.units", "optimizer.lr"]
    assert table([a, b, c], where=["lr==0.1"]).config_keys == ["model.layers.0.units"]
    assert table([a, b, c], where=["units==16"]).config_keys == ["optimizer.lr"]


def test_a_wide_table_fits_the_width_and_says_what_it_left_out(tmp_path):
    sets = [
        ["optimizer.lr=0.1", "model.layers.0.units=8", "training.batch_size=16"],
        ["optimizer.lr=0.01", "model.layers.0.units=16", "model.layers.0.activation=tanh"],
        ["optimizer.lr=0.001", "training.epochs=3", "data.validation_split=0.2"],
    ]
    runs = [make_run(tmp_path, f"run-{i}", s, test={"accuracy": 0.9}) for i, s in enumerate(sets)]
    t = table(runs)
    full = render(t, "table")
    assert max(map(len, full.splitlines())) > 60
    text = render(t, "table", width=60)
    table_lines, note = text.split("\n\n")
    assert max(len(line) for line in text.splitlines()) <= 60
    header = table_lines.splitlines()[0].split()
    assert header[0] == "run" and "val_accuracy" in header and header[-1] == "status"
    assert header.index("lr") < header.index("val_accuracy")  # the differing keys first
    assert note.startswith("left out to fit 60 columns:")
    for gone in ("seconds", "epochs", "test_accuracy", "val_loss"):
        assert gone in note.replace("\n", " ") and gone not in header
    assert "--width 0" in note.replace("\n", " ")
