"""The command line: messages, exit statuses, help, outputs (in this process, through click's
CliRunner), and as a real process where one matters: the installed entry point, what --help
imports, signals, a SIGKILL and resume, a memory limit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import CONFIGS, invoke_nnlab, wait_for

GOOD = (CONFIGS / "threshold.yaml").read_text()


@pytest.mark.parametrize(
    "text, words",
    [
        (GOOD.replace("optimizer:", "optimiser:"), ["optimiser", "Did you mean 'optimizer'?"]),
        (GOOD.replace("epochs: 10000", "epochs: many"), ["training.epochs", "'many'", "integer"]),
        (
            GOOD.replace("initializer: glorot_uniform", "initializer: he_norml"),
            ["model.layers[0].initializer", "'he_norml'", "Did you mean 'he_normal'?"],
        ),
        (
            GOOD.replace("name: sgd", "name: sgdd"),
            ["optimizer.name", "Did you mean 'sgd'?", "adam"],
        ),
        (GOOD.replace("name: threshold", "name: treshold"), ["data.name", "'threshold'"]),
        ("data: {name: xor\nmodel: [\n", ["YAML syntax error", "line", "column"]),
    ],
)
def test_bad_config_exits_2_with_the_key_path_and_no_traceback(write_config, text, words, runs):
    path = write_config(text)
    proc = invoke_nnlab("train", path, "--runs-dir", runs)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    for w in words:
        assert w in proc.stderr
    assert not any(runs.iterdir())  # nothing written


def test_missing_config_file(runs):
    proc = invoke_nnlab("train", "no/such.yaml", "--runs-dir", runs)
    assert proc.returncode == 2 and "no such config file" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_set_value_is_attributed_to_set(runs):
    proc = invoke_nnlab(
        "train", CONFIGS / "xor.yaml", "--runs-dir", runs, "--set", "optimizer.lr=fast"
    )
    assert proc.returncode == 2
    assert "optimizer.lr (from --set)" in proc.stderr and "'fast'" in proc.stderr


def test_train_prints_the_result_and_the_run_path_last(runs):
    proc = invoke_nnlab("train", CONFIGS / "xor.yaml", "--runs-dir", runs)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    run_dir = Path(lines[-1])
    assert run_dir.parent == runs and (run_dir / "summary.json").is_file()
    assert "completed" in lines[0] and "accuracy" in proc.stdout
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"


def test_train_name_and_seed_options(runs):
    proc = invoke_nnlab(
        "train", CONFIGS / "xor.yaml", "--runs-dir", runs, "--name", "../evil/x", "--seed", "5"
    )
    assert proc.returncode == 0, proc.stderr
    run_dir = Path(proc.stdout.strip().splitlines()[-1])
    assert run_dir.parent == runs and run_dir.name.startswith("evil-x-")
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["training"]["seed"] == 5 and cfg["name"] == "../evil/x"


def test_validate(write_config):
    proc = invoke_nnlab("validate", CONFIGS / "digits.yaml")
    assert (
        proc.returncode == 0
        and "OK" in proc.stdout
        and "1258 train, 180 val, 359 test" in proc.stdout
    )
    proc = invoke_nnlab("validate", CONFIGS / "digits.yaml", "--set", "model.layers.1.units=4")
    assert proc.returncode == 2 and "model.layers[1].units" in proc.stderr


def test_config_prints_the_resolved_config():
    proc = invoke_nnlab(
        "config",
        CONFIGS / "xor.yaml",
        "--set",
        "optimizer.name=adam",
        "--set",
        "optimizer.momentum=null",
    )
    assert proc.returncode == 2  # adam has no momentum
    proc = invoke_nnlab("config", CONFIGS / "threshold.yaml", "--set", "optimizer.lr=0.5")
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["optimizer"]["lr"] == 0.5 and cfg["optimizer"]["nesterov"] is False
    assert cfg["model"]["layers"][0]["use_bias"] is True
    proc = invoke_nnlab("config", CONFIGS / "threshold.yaml", "--format", "json")
    assert json.loads(proc.stdout)["training"]["epochs"] == 10000


def test_config_schema_is_json_schema():
    proc = invoke_nnlab("config", "--schema")
    schema = json.loads(proc.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert "training" in schema["properties"]


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["train"],
        ["validate"],
        ["config"],
        ["list"],
        ["gradcheck"],
        ["probe"],
        ["explain"],
        ["activations"],
    ],
)
def test_help_shows_an_example(command):
    proc = invoke_nnlab(*command, "--help")
    assert proc.returncode == 0
    assert "Example" in proc.stdout and "nnlab " in proc.stdout


def test_list_shows_components_with_options():
    proc = invoke_nnlab("list", "initializers")
    assert proc.returncode == 0
    assert "he_normal (also: kaiming_normal)" in proc.stdout
    assert "stddev = 0.05" in proc.stdout


# ---------------------------------------------------------------- real processes


def test_the_installed_entry_point_exits_0_2_or_3(runs, write_config):
    """The ``nnlab`` script that pip installs, run as a real process: the exit statuses and
    streams a shell sees (the tests above run the same command line in this process)."""
    import subprocess
    import sys

    from conftest import ROOT, nnlab_env

    script = Path(sys.executable).parent / "nnlab"
    if not script.exists():
        pytest.skip("no nnlab script beside this Python (pip install -e . makes it)")

    def nnlab(*args):
        return subprocess.run(
            [str(script), *map(str, args)],
            cwd=ROOT,
            env=nnlab_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )

    done = nnlab("train", CONFIGS / "xor.yaml", "--runs-dir", runs, "-q")
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip().splitlines()[-1]).parent == runs
    bad = nnlab("train", write_config(GOOD.replace("optimizer:", "optimiser:")), "--runs-dir", runs)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1
    lr = ["--set", "optimizer.lr=1.0"]
    diverged = nnlab("train", CONFIGS / "threshold.yaml", "--runs-dir", runs, "-q", *lr)
    assert diverged.returncode == 3 and "diverged" in diverged.stdout, diverged.stderr
    usage = nnlab("train")
    assert usage.returncode == 2 and usage.stderr.startswith("Usage: nnlab train")


def test_help_imports_no_library_beyond_click():
    """``nnlab --help`` stays fast (0.05 s): a command imports NumPy, pandas, YAML, ... only
    when it runs. A fresh process, since this one has imported them all."""
    import subprocess
    import sys

    from conftest import ROOT, nnlab_env

    code = (
        "import sys\n"
        "from nnlab.cli import main\n"
        "sys.argv = ['nnlab', '--help']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "heavy = {'numpy', 'pandas', 'yaml', 'tabulate', 'threadpoolctl', 'matplotlib'}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & heavy), file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=nnlab_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Commands:" in proc.stdout and proc.stderr == "[]\n"


def test_sigterm_stops_at_a_safe_point_and_keeps_the_files(runs):
    import signal
    import subprocess
    import sys

    from conftest import ROOT, nnlab_env

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nnlab",
            "train",
            str(CONFIGS / "digits.yaml"),
            "--runs-dir",
            str(runs),
            "-q",
            "--set",
            "training.epochs=100000",
        ],
        cwd=ROOT,
        env=nnlab_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def epochs_on_disk():
        logs = list(runs.glob("*/metrics.csv"))
        return logs and len(logs[0].read_text().splitlines()) > 3

    wait_for(epochs_on_disk, what="a few epochs in metrics.csv")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    run_dir = Path(out.strip().splitlines()[-1])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["signal"] == "SIGTERM"
    assert f"continue it with: nnlab train --resume {run_dir}" in out  # how to resume
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert len(rows) - 1 == summary["epochs_completed"] >= 3
    assert (run_dir / "model.npz").is_file()


def _metrics_rows_without_seconds(run_dir: Path) -> list[list[str]]:
    rows = [line.split(",") for line in (run_dir / "metrics.csv").read_text().splitlines()]
    col = rows[0].index("seconds")
    return [r[:col] + r[col + 1 :] for r in rows]


def test_resume_after_sigkill_gives_the_uninterrupted_metrics(runs):
    """A real process killed with SIGKILL in the middle of an epoch, then --resume: the
    resumed metrics.csv equals an uninterrupted run's, bit for bit apart from timing."""
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT, nnlab_env

    args = [
        str(CONFIGS / "digits.yaml"),
        "-q",
        "--set",
        "training.epochs=40",
        "--set",
        "training.checkpoint_seconds=0",
        "--set",
        "model.layers.1={type: dropout, rate: 0.2}",
        "--set",
        "model.layers.2={type: dense, units: 10, activation: softmax}",
        "--set",
        "training.early_stopping={monitor: val_loss, patience: 1000}",
        "--set",
        "training.log_layers=true",
        "--set",  # a schedule with state of its own, resumed from the checkpoint
        "optimizer.schedule={name: plateau, monitor: val_loss, patience: 2, factor: 0.5}",
    ]
    full = invoke_nnlab("train", *args, "--runs-dir", runs / "full")
    assert full.returncode == 0, full.stderr
    full_dir = Path(full.stdout.strip().splitlines()[-1])

    killed_root = runs / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "nnlab", "train", *args, "--runs-dir", str(killed_root)],
        cwd=ROOT,
        env=nnlab_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )

    def checkpointed_run():  # some epochs and a checkpoint on disk: its metrics.csv
        logs = list(killed_root.glob("*/metrics.csv"))
        ok = logs and list(killed_root.glob("*/checkpoint.npz"))
        return ok and len(logs[0].read_text().splitlines()) > 8 and logs

    logs = wait_for(checkpointed_run, what="a checkpoint and 8 epochs")
    time.sleep(0.004)  # somewhere inside the next epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    run_dir = logs[0].parent
    partial = json.loads((run_dir / "summary.json").read_text())
    assert partial["status"] == "running"  # what a killed run leaves
    n_before = len((run_dir / "metrics.csv").read_text().splitlines()) - 1
    assert 8 <= n_before < 40

    resumed = invoke_nnlab("train", "--resume", run_dir, "-q")
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["resumed"][0]["at_epoch"] >= 1
    assert _metrics_rows_without_seconds(run_dir) == _metrics_rows_without_seconds(full_dir)
    lr = [r[-1] for r in _metrics_rows_without_seconds(full_dir)[1:]]
    assert len(set(lr)) > 1  # the plateau schedule reduced the rate
    assert (run_dir / "layers.csv").read_text() == (full_dir / "layers.csv").read_text()
    assert not (run_dir / "checkpoint.npz").exists()
    a, b = np.load(run_dir / "model.npz"), np.load(full_dir / "model.npz")
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k])


def test_resume_refuses_a_completed_run_and_a_non_run(runs, tmp_path):
    proc = invoke_nnlab("train", CONFIGS / "xor.yaml", "--runs-dir", runs, "-q")
    run_dir = proc.stdout.strip().splitlines()[-1]
    again = invoke_nnlab("train", "--resume", run_dir)
    assert again.returncode == 2 and "completed" in again.stderr
    nothing = invoke_nnlab("train", "--resume", tmp_path)
    assert nothing.returncode == 2 and "not a run folder" in nothing.stderr
    both = invoke_nnlab("train", CONFIGS / "xor.yaml", "--resume", run_dir)
    assert both.returncode == 2 and "--resume" in both.stderr


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's RLIMIT_AS")
def test_running_out_of_memory_is_one_clear_message_and_a_failed_run(runs):
    from conftest import run_nnlab_capped

    # the child may use what nnlab needs to read and build this config (the peak of a process
    # that validates it: libraries, data, model), plus 300 MB; a full batch of 1,258 digits
    # through 40,000 units needs 192 MiB per activation array, an allocation no size check
    # refuses in advance
    sets = ["model.layers.0.units=40000", "training.batch_size=null", "training.epochs=1"]
    config = [str(CONFIGS / "digits.yaml"), *(a for s in sets for a in ("--set", s))]
    proc = run_nnlab_capped(
        "train",
        *config,
        "--runs-dir",
        str(runs),
        "-q",
        extra_mb=300,
        baseline=("validate", *config),
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error: out of memory (Unable to allocate"), proc.stderr
    assert "training.batch_size" in proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    (run,) = runs.iterdir()  # the run folder says what happened
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and "MemoryError" in summary["error"]


def test_a_single_run_command_given_several_runs_takes_the_newest(runs, tmp_path):
    """`nnlab export runs/digits-* -o predict.py` once a second run exists: the newest run,
    said on stderr (the README's Quickstart runs in order on a machine with earlier runs)."""
    from conftest import train_run

    old = train_run(CONFIGS / "xor.yaml", runs, "training.epochs=3")
    new = train_run(CONFIGS / "xor.yaml", runs, "training.epochs=4")
    summary = json.loads((old / "summary.json").read_text())
    summary["started"] = "2020-01-01T00:00:00+00:00"  # started first, whatever the clock says
    (old / "summary.json").write_text(json.dumps(summary))
    out = tmp_path / "predict.py"
    r = invoke_nnlab("export", new, old, "-o", out)
    assert r.returncode == 0, r.stderr
    assert f"2 runs given; using the newest, {new}" in r.stderr
    assert out.is_file()
    r = invoke_nnlab("activations", old, new, "--passes", "1")
    assert r.returncode == 0 and f"using the newest, {new}" in r.stderr
