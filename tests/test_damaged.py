"""Damaged run files, full disks, read-only folders and links (issue 18): every reader of a run
folder (predict, export, explain, activations, invert, compare, diff, plot, report, resume)
answers a damaged file with one line naming it and exit status 2, quickly and in little memory,
and changes nothing; a run stopped by a full disk says so in one line, leaves no temporary
file, is marked failed and resumes once there is room; resume checks everything before it
changes anything; run files are never written through a symbolic link; a run's memory does not
grow with its epochs."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest import CONFIGS, ROOT, invoke_nnlab, nnlab_env, run_nnlab_capped, train_run
from nnlab.config import load_config
from nnlab.errors import RunError, StorageError
from nnlab.experiment import build
from nnlab.files import atomic_write
from nnlab.lifecycle import resume
from nnlab.metrics import MetricsTally, best_of
from nnlab.runs import (
    CHECKPOINT,
    MetricsLog,
    load_model,
    read_config,
    read_metrics,
    read_summary,
    rows_before,
    save_checkpoint,
    write_config,
)
from nnlab.train import Trainer

EPOCHS, CHECKPOINT_AT = 40, 25


# ---------------------------------------------------------------- run folders to damage


def _interrupt(run: Path, at: int = CHECKPOINT_AT) -> None:
    """Make a completed run one interrupted after epoch ``at`` with a checkpoint there: the
    same run trained again to ``at`` (its rows equal the first rows of metrics.csv)."""
    config = load_config(run / "config.yaml")
    config["training"]["epochs"] = at
    trainer = Trainer(build(config))
    trainer.fit()
    arrays, meta = trainer.state()
    save_checkpoint(run / CHECKPOINT, arrays, meta)
    summary = read_summary(run)
    summary.update(status="interrupted", epochs_completed=at)
    (run / "summary.json").write_text(json.dumps(summary))


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """Runs made once: a completed XOR run, the same interrupted at epoch 25, another run."""
    root = tmp_path_factory.mktemp("built")
    xor = CONFIGS / "xor.yaml"
    done = train_run(xor, root / "runs", f"training.epochs={EPOCHS}", "optimizer.lr=0.5")
    other = train_run(xor, root / "runs", f"training.epochs={EPOCHS}", "training.seed=1")
    interrupted = root / "interrupted"
    shutil.copytree(done, interrupted)
    _interrupt(interrupted)
    return {"done": done, "other": other, "interrupted": interrupted}


@pytest.fixture
def place(tmp_path, built) -> Path:
    """A folder holding ``runs/run`` (completed), ``runs/good`` (another run), ``runs/broken``
    (interrupted at epoch 25, with its checkpoint), an input file and a file of the user's."""
    runs = tmp_path / "runs"
    shutil.copytree(built["done"], runs / "run")
    shutil.copytree(built["other"], runs / "good")
    shutil.copytree(built["interrupted"], runs / "broken")
    (tmp_path / "in.csv").write_text("0,0\n0,1\n1,0\n1,1\n")
    (tmp_path / "mine.txt").write_text("the user's own file\n")
    return tmp_path


def snapshot(folder: Path) -> dict[str, str]:
    """Every file and link under ``folder`` -> a digest of what it holds."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_symlink():
            out[str(p)] = "-> " + os.readlink(p)
        elif p.is_file():
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def npz_edit(path: Path, change: Callable[[dict], None]) -> None:
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())


def json_member(key: str, change: Callable[[dict], None]) -> Callable[[dict], None]:
    """An edit of the JSON held in the .npz member ``key`` (architecture, meta)."""

    def edit(arrays: dict) -> None:
        data = json.loads(bytes(arrays[key]).decode())
        change(data)
        arrays[key] = np.frombuffer(json.dumps(data).encode(), dtype=np.uint8)

    return edit


def first_param(arrays: dict) -> str:
    return next(k for k in arrays if k.startswith("param/"))


def deep(n: int) -> str:
    return "[" * n + "]" * n


def truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def summary_with(**fields) -> Callable[[Path], None]:
    def edit(p: Path) -> None:
        p.write_text(json.dumps({**json.loads(p.read_text()), **fields}))

    return edit


MODEL_DAMAGE: dict[str, Callable[[Path], None]] = {
    "zero bytes": lambda p: p.write_bytes(b""),
    "truncated": truncate,
    "not an archive": lambda p: p.write_bytes(b"garbage" * 100),
    "a parameter missing": lambda p: npz_edit(p, lambda a: a.pop(first_param(a))),
    "a parameter of the wrong shape": lambda p: npz_edit(
        p, lambda a: a.__setitem__(first_param(a), np.zeros((7, 3), np.float32))
    ),
    "a parameter of text": lambda p: npz_edit(
        p, lambda a: a.__setitem__(first_param(a), np.array(["x"] * 4))
    ),
    "an extra parameter": lambda p: npz_edit(
        p, lambda a: a.__setitem__("param/layers.9.W", np.zeros(3, np.float32))
    ),
    "an architecture that is a list": lambda p: npz_edit(
        p, lambda a: a.__setitem__("architecture", np.frombuffer(b"[1, 2]", np.uint8))
    ),
    "an architecture nested 100000 deep": lambda p: npz_edit(
        p, lambda a: a.__setitem__("architecture", np.frombuffer(deep(100_000).encode(), np.uint8))
    ),
    "a model section that is text": lambda p: npz_edit(
        p, json_member("architecture", lambda m: m.__setitem__("model", "x"))
    ),
    "a layer of 10^9 units": lambda p: npz_edit(
        p, json_member("architecture", lambda m: m["model"]["layers"][0].update(units=10**9))
    ),
    "an unknown layer": lambda p: npz_edit(
        p, json_member("architecture", lambda m: m["model"]["layers"][0].__setitem__("type", "x"))
    ),
    "an input shape of text": lambda p: npz_edit(
        p, json_member("architecture", lambda m: m.__setitem__("input_shape", "ab"))
    ),
    "a dtype of objects": lambda p: npz_edit(
        p, json_member("architecture", lambda m: m.__setitem__("dtype", "object"))
    ),
    "more classes than output units": lambda p: npz_edit(
        p, json_member("architecture", lambda m: m.__setitem__("n_classes", 5))
    ),
    "an input scaling of the wrong shape": lambda p: npz_edit(
        p, lambda a: a.__setitem__("input/scale", np.ones(17))
    ),
    "an input scaling of 0": lambda p: npz_edit(
        p, lambda a: a.__setitem__("input/scale", np.zeros(()))
    ),
}

SUMMARY_DAMAGE: dict[str, Callable[[Path], None]] = {
    "[]": lambda p: p.write_text("[]"),
    "null": lambda p: p.write_text("null"),
    "zero bytes": lambda p: p.write_text(""),
    "nested 100000 deep": lambda p: p.write_text(
        '{"status": "completed", "x": ' + deep(10**5) + "}"
    ),
    "a status that is a number": summary_with(status=5),
    "an unknown status": summary_with(status="sleeping"),
    "best that is a list": summary_with(best=[1]),
    "last that is text": summary_with(last="x"),
    "test metrics that are a number": summary_with(test=3),
    "epochs that are text": summary_with(epochs_completed="x"),
    "seconds below zero": summary_with(train_seconds=-1),
    "9 MB of spaces": lambda p: p.write_text(" " * (9 << 20)),
}

CONFIG_DAMAGE: dict[str, Callable[[Path], None]] = {
    "not YAML": lambda p: p.write_text("{{{: ::"),
    "a list": lambda p: p.write_text("- 1\n- 2\n"),
    "zero bytes": lambda p: p.write_text(""),
    "an unknown key": lambda p: p.write_text(p.read_text() + "bogus: 1\n"),
}

METRICS_DAMAGE: dict[str, Callable[[Path], None]] = {
    "binary garbage": lambda p: p.write_bytes(bytes(range(256)) * 12),
    "text that is not numbers": lambda p: p.write_text("epoch,loss\nfoo,bar\n"),
    "rows of the wrong length": lambda p: p.write_text(p.read_text().replace(",", ";", 3)),
}


# ---------------------------------------------------------------- the readers


def commands(place: Path, run: Path) -> dict[str, tuple]:
    """Every reader of a run folder, as a command line on ``run``."""
    return {
        "predict": ("predict", run, place / "in.csv"),
        "export": ("export", run, "-o", place / "out.py"),
        "explain": ("explain", run),
        "activations": ("activations", run),
        "invert": ("invert", run, place / "in.csv"),
        "compare": ("compare", run),
        "diff": ("diff", run, place / "runs" / "good"),
        "plot": ("plot", run, "-o", place / "curves.png"),
        "report": ("report", run, "-o", place / "report.html"),
        "export-runs": ("export-runs", run, "--to", "tensorboard", place / "tb"),
        "resume": ("train", "--resume", run, "-q"),
    }


#: the readers that open each file (model.npz: the commands that use the model)
MODEL_READERS = ("predict", "export", "explain", "activations", "invert")
SUMMARY_READERS = ("compare", "diff", "plot", "report", "export-runs", "resume")
CONFIG_READERS = ("explain", "activations", "compare", "diff", "plot", "report", "resume")
METRICS_READERS = ("compare", "diff", "plot", "report", "export-runs", "resume")


#: the commands on many runs, which skip a damaged one with a warning
SKIPPERS = ("compare", "diff", "plot", "report", "export-runs")


def refused(place: Path, args: tuple, file: Path) -> str:
    """Run a command that must refuse the damaged ``file``: exit status 2, its last stderr line
    an error, the file named (in the error, or in the warning of a command that skips damaged
    runs), no traceback, within seconds and 200 MB (traced allocations), nothing changed."""
    before = snapshot(place)
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        proc = invoke_nnlab(*args, cwd=place)
        seconds = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (args, proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    assert lines and lines[-1].startswith("error: "), proc.stderr
    if args[0] in SKIPPERS:  # a damaged run is skipped, said so
        assert len(lines) <= 2 and lines[0].startswith(f"warning: {file}"), proc.stderr
    else:
        assert len(lines) == 1 and lines[0].startswith(f"error: {file}"), proc.stderr
    assert seconds < 10, (args, seconds)  # measured: 0.2-1.5 s each on a busy machine
    assert peak < 200 << 20, (args, peak)
    assert snapshot(place) == before, "a refused command changed a file"
    return lines[-1]


def damaged_cases(damage: dict, readers: tuple) -> list:
    return [
        pytest.param(name, reader, id=f"{name}-{reader}") for name in damage for reader in readers
    ]


@pytest.mark.parametrize("damage, reader", damaged_cases(MODEL_DAMAGE, MODEL_READERS))
def test_a_damaged_model_is_one_line_and_exit_2(place, damage, reader):
    run = place / "runs" / "run"
    MODEL_DAMAGE[damage](run / "model.npz")
    refused(place, commands(place, run)[reader], run / "model.npz")


@pytest.mark.parametrize("damage, reader", damaged_cases(SUMMARY_DAMAGE, SUMMARY_READERS))
def test_a_damaged_summary_is_one_line_and_exit_2(place, damage, reader):
    run = place / "runs" / ("broken" if reader == "resume" else "run")
    SUMMARY_DAMAGE[damage](run / "summary.json")
    refused(place, commands(place, run)[reader], run / "summary.json")


#: compare, diff, plot and report show a config as written: an unknown key is no damage there
AS_WRITTEN = ("compare", "diff", "plot", "report")


@pytest.mark.parametrize(
    "damage, reader",
    [
        p
        for p in damaged_cases(CONFIG_DAMAGE, CONFIG_READERS)
        if not (p.values[0] == "an unknown key" and p.values[1] in AS_WRITTEN)
    ],
)
def test_a_damaged_config_is_one_line_and_exit_2(place, damage, reader):
    run = place / "runs" / ("broken" if reader == "resume" else "run")
    CONFIG_DAMAGE[damage](run / "config.yaml")
    refused(place, commands(place, run)[reader], run / "config.yaml")


@pytest.mark.parametrize("reader", AS_WRITTEN)
def test_a_config_with_an_unknown_key_is_shown_as_written(place, reader):
    run = place / "runs" / "run"
    CONFIG_DAMAGE["an unknown key"](run / "config.yaml")
    proc = invoke_nnlab(*commands(place, run)[reader], cwd=place)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


@pytest.mark.parametrize("damage, reader", damaged_cases(METRICS_DAMAGE, METRICS_READERS))
def test_a_damaged_metrics_log_is_one_line_and_exit_2(place, damage, reader):
    run = place / "runs" / ("broken" if reader == "resume" else "run")
    METRICS_DAMAGE[damage](run / "metrics.csv")
    refused(place, commands(place, run)[reader], run / "metrics.csv")


def test_a_run_folder_of_odd_files_is_refused(place):
    # a folder where summary.json should be, a FIFO where model.npz should be (reading it
    # would block forever)
    run = place / "runs" / "run"
    (run / "model.npz").unlink()
    os.mkfifo(run / "model.npz")
    refused(place, ("predict", run, place / "in.csv"), run / "model.npz")
    (run / "summary.json").unlink()
    (run / "summary.json").mkdir()
    refused(place, ("train", "--resume", run), run)


@pytest.mark.slow  # six processes; tracemalloc checks every case in this process by default
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS caps on Linux")
def test_damaged_files_in_a_real_process_capped_at_200_mb(place):
    # each in a child whose address space is capped at the peak of the same command on a good
    # run plus 200 MB: a reader that loaded or built what a damaged file claims would fail
    run, good, again = (place / "runs" / n for n in ("run", "good", "broken"))
    shutil.copytree(again, place / "runs" / "broken2")
    MODEL_DAMAGE["a layer of 10^9 units"](run / "model.npz")
    SUMMARY_DAMAGE["nested 100000 deep"](good / "summary.json")
    CHECKPOINT_DAMAGE["epoch -3"](again / CHECKPOINT)
    cases = [
        (
            ("predict", run, place / "in.csv"),
            ("predict", place / "runs" / "good", place / "in.csv"),
            run / "model.npz",
        ),
        (("compare", good), ("compare", run), good / "summary.json"),
        (
            ("train", "--resume", again, "-q"),
            ("train", "--resume", place / "runs" / "broken2", "-q"),
            again / CHECKPOINT,
        ),
    ]
    for args, baseline, file in cases:
        t0 = time.perf_counter()
        proc = run_nnlab_capped(*args, extra_mb=200, baseline=baseline, cwd=place, timeout=60)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert str(file) in proc.stderr.strip().splitlines()[0], proc.stderr
        assert time.perf_counter() - t0 < 30


# ---------------------------------------------------------------- resume: check, then change


CHECKPOINT_DAMAGE: dict[str, Callable[[Path], None]] = {
    "zero bytes": lambda p: p.write_bytes(b""),
    "truncated": truncate,
    "no state": lambda p: npz_edit(p, lambda a: a.pop("meta")),
    "no epoch": lambda p: npz_edit(p, json_member("meta", lambda m: m.pop("epoch"))),
    "an epoch of text": lambda p: npz_edit(p, json_member("meta", lambda m: m.update(epoch="7"))),
    "epoch -3": lambda p: npz_edit(p, json_member("meta", lambda m: m.update(epoch=-3))),
    "an epoch beyond the run's": lambda p: npz_edit(
        p, json_member("meta", lambda m: m.update(epoch=10**6))
    ),
    "a random-generator state that is not one": lambda p: npz_edit(
        p, json_member("meta", lambda m: m.update(rng={"x": 1}))
    ),
    "an optimizer state that is a list": lambda p: npz_edit(
        p, json_member("meta", lambda m: m.update(optimizer=[1]))
    ),
    "early stopping that is null": lambda p: npz_edit(
        p, json_member("meta", lambda m: m.update(early_stopping=None))
    ),
    "best that is a list": lambda p: npz_edit(p, json_member("meta", lambda m: m.update(best=[1]))),
    "a last row of another epoch": lambda p: npz_edit(
        p, json_member("meta", lambda m: m["last"].update(epoch=3))
    ),
    "weights of the wrong shape": lambda p: npz_edit(
        p, lambda a: a.__setitem__("theta", np.zeros(3, np.float32))
    ),
    "weights of text": lambda p: npz_edit(p, lambda a: a.__setitem__("theta", np.array(["a"] * 9))),
    # a scalar would broadcast into the momentum buffer without a word
    "an optimizer array of one number": lambda p: npz_edit(
        p, lambda a: a.__setitem__("optimizer/buf", np.float32(3.0))
    ),
    "an array the run does not have": lambda p: npz_edit(
        p, lambda a: a.__setitem__("optimizer/m", np.zeros(9, np.float32))
    ),
}


@pytest.mark.parametrize("damage", list(CHECKPOINT_DAMAGE))
def test_resume_refuses_a_damaged_checkpoint_before_changing_anything(place, damage):
    run = place / "runs" / "broken"
    CHECKPOINT_DAMAGE[damage](run / CHECKPOINT)
    refused(place, ("train", "--resume", run, "-q"), run / CHECKPOINT)


@pytest.mark.parametrize(
    "edit, file",
    [
        (lambda r: summary_with(best=[1], wall_seconds="x")(r / "summary.json"), "summary.json"),
        (lambda r: (r / "metrics.csv").write_text("epoch,loss\n"), "metrics.csv"),
        (lambda r: truncate(r / "metrics.csv"), "metrics.csv"),  # fewer rows than epochs
        (
            lambda r: (r / "metrics.csv").write_text(
                (r / "metrics.csv").read_text().replace("\n3,", "\n30,", 1)
            ),
            "metrics.csv",
        ),
    ],
    ids=["summary of the wrong types", "only a header", "rows cut", "an epoch out of order"],
)
def test_resume_refuses_other_damage_before_changing_anything(place, edit, file):
    run = place / "runs" / "broken"
    edit(run)
    refused(place, ("train", "--resume", run, "-q"), run / file)


@pytest.fixture(scope="module")
def layered(tmp_path_factory) -> tuple[Path, Path]:
    """A completed XOR run with layers.csv, and a copy interrupted at epoch 25."""
    root = tmp_path_factory.mktemp("layered")
    done = train_run(
        CONFIGS / "xor.yaml", root / "runs", f"training.epochs={EPOCHS}", "training.log_layers=true"
    )
    interrupted = root / "interrupted"
    shutil.copytree(done, interrupted)
    _interrupt(interrupted)
    return done, interrupted


LAYERS_DAMAGE: dict[str, Callable[[Path], None]] = {
    "binary garbage": lambda p: p.write_bytes(bytes(range(256)) * 12),
    "other columns": lambda p: p.write_text("epoch,layer\n0,0\n"),
    "an epoch of text": lambda p: p.write_text(p.read_text().replace("\n1,", "\nx,", 1)),
    "epochs out of order": lambda p: p.write_text(p.read_text().replace("\n2,", "\n99,", 1)),
}


@pytest.mark.parametrize("damage", list(LAYERS_DAMAGE))
def test_resume_refuses_a_damaged_layers_log_before_changing_anything(tmp_path, layered, damage):
    run = tmp_path / "runs" / "broken"
    shutil.copytree(layered[1], run)
    LAYERS_DAMAGE[damage](run / "layers.csv")
    refused(tmp_path, ("train", "--resume", run, "-q"), run / "layers.csv")


@pytest.mark.parametrize("block", [100, 1 << 20])
def test_a_resumed_layers_log_equals_the_uninterrupted_one(tmp_path, layered, block, monkeypatch):
    # layers.csv is cut in place at the checkpoint's epoch (read in blocks, not rewritten)
    import nnlab.metrics_csv

    monkeypatch.setattr(nnlab.metrics_csv, "BLOCK_BYTES", block)  # a boundary inside rows
    run = tmp_path / "broken"
    shutil.copytree(layered[1], run)
    assert resume(run).summary["status"] == "completed"
    assert (run / "layers.csv").read_bytes() == (layered[0] / "layers.csv").read_bytes()


def test_a_resumed_run_equals_the_uninterrupted_one(place):
    broken, run = place / "runs" / "broken", place / "runs" / "run"
    (broken / "metrics.csv").write_text((broken / "metrics.csv").read_text() + "41,0.5")  # cut
    (broken / ".summary.json.tmp-99999999").write_bytes(b"x" * 1000)  # a killed write's
    result = resume(broken)
    assert result.summary["status"] == "completed"
    assert result.summary["resumed"][0]["at_epoch"] == CHECKPOINT_AT
    a, b = read_metrics(broken), read_metrics(run)
    keep = [c for c in a.columns if c != "seconds"]
    np.testing.assert_array_equal(a.values[:, : len(keep)], b.values[:, : len(keep)])
    done = read_summary(run)
    for key in ("best", "last", "epochs_completed", "train"):
        assert result.summary[key] == done[key], key
    assert not list(broken.glob(".*tmp*"))


# ---------------------------------------------------------------- full disks, read-only folders


@contextlib.contextmanager
def small_disk(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``folder`` (root on Linux); the test is skipped where
    mounting is not permitted."""
    folder.mkdir(parents=True, exist_ok=True)
    if not sys.platform.startswith("linux") or shutil.which("mount") is None:
        pytest.skip("a small disk needs Linux and mount(8)")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or 'not permitted'})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def remount(folder: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(folder)], check=True)


def full_disk_run(runs: Path, *overrides: str) -> tuple[subprocess.CompletedProcess, Path]:
    """Train XOR for many epochs into ``runs`` (a small disk) until it is full."""
    proc = invoke_nnlab(
        "train", CONFIGS / "xor.yaml", "--runs-dir", runs, "-q",
        "--set", "training.epochs=8000", "--set", "training.checkpoint_seconds=0.05",
        *overrides,
    )  # fmt: skip
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    return proc, run


def outside(folder: Path, disk: Path) -> dict[str, str]:
    """``snapshot`` of what ``folder`` holds outside ``disk``."""
    return {k: v for k, v in snapshot(folder).items() if not k.startswith(f"{disk}/")}


def test_a_full_disk_is_one_line_the_run_failed_and_resumable(tmp_path):
    (tmp_path / "mine.txt").write_text("the user's own file\n")
    with small_disk(tmp_path / "disk", "256k") as disk:
        before = outside(tmp_path, disk)
        proc, run = full_disk_run(disk)
        assert outside(tmp_path, disk) == before
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, proc.stderr
        assert len(lines) == 1 and "Traceback" not in proc.stderr
        assert re.match(
            rf"error: {re.escape(str(run))}/\S+: cannot write: the disk is full", lines[0]
        )
        assert f"nnlab train --resume {run}" in lines[0]
        assert not list(run.glob(".*tmp*")), "a temporary file keeps the disk full"
        summary = read_summary(run)
        assert summary["status"] == "failed" and "the disk is full" in summary["error"]
        assert (run / CHECKPOINT).is_file()
        remount(disk, "size=4m")
        again = invoke_nnlab("train", "--resume", run, "-q")
        assert again.returncode == 0, again.stderr
        resumed = read_metrics(run)
    whole = train_run(CONFIGS / "xor.yaml", tmp_path / "runs", "training.epochs=8000")
    keep = [c for c in resumed.columns if c != "seconds"]
    np.testing.assert_array_equal(
        resumed.values[:, : len(keep)], read_metrics(whole).values[:, : len(keep)]
    )


def test_a_read_only_runs_folder_is_one_line(tmp_path, built):
    with small_disk(tmp_path / "disk", "1m") as disk:
        shutil.copytree(built["interrupted"], disk / "broken")
        before = snapshot(disk)
        remount(disk, "ro")
        resumed = invoke_nnlab("train", "--resume", disk / "broken", "-q")
        trained = invoke_nnlab("train", CONFIGS / "xor.yaml", "--runs-dir", disk, "-q")
        assert snapshot(disk) == before
    for proc in (resumed, trained):
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert "read-only" in lines[0].lower() and str(disk) in lines[0]


def sweep_into(runs: Path, *options: str) -> subprocess.CompletedProcess:
    """A sweep of three XOR trials of 8000 epochs (about 500 KB of metrics) into ``runs``."""
    return invoke_nnlab(
        "sweep", CONFIGS / "xor.yaml", "--grid", "optimizer.lr=0.1,0.2,0.3", "--runs-dir", runs,
        "-q", "--set", "training.epochs=8000", "--set", "training.checkpoint_seconds=0.05",
        *options,
    )  # fmt: skip


@pytest.mark.parametrize("population", ["off", "on"])
def test_a_sweep_on_a_full_disk_then_a_read_only_one(population, tmp_path):
    """One task per trial (its trial continues from its checkpoint), and the three trials as
    one population (which trains again from the start)."""
    mine = tmp_path / "mine.txt"
    mine.write_text("the user's own file\n")
    with small_disk(tmp_path / "disk", "256k") as disk:
        kept = outside(tmp_path, disk)
        proc = sweep_into(disk, "--population", population)
        # a file of the sweep's own (the index) or of a trial: no more trials start
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert re.match(rf"error: {disk}/sweeps/xor/\S+: cannot write: ", lines[0])
        assert "the disk is full: free some space" in lines[0]
        assert not list(disk.rglob(".*.tmp-*")), "a temporary file keeps the disk full"
        remount(disk, "size=8m")
        again = sweep_into(disk, "--population", population)
        assert again.returncode == 0, again.stderr
        if population == "off":
            assert "continued from a checkpoint" in again.stdout + again.stderr
        folder = disk / "sweeps" / "xor"
        trials = json.loads((folder / "index.json").read_text())["trials"]
        assert [t["status"] for t in trials] == ["completed"] * 3
        assert all(("population" in t) == (population == "on") for t in trials)
        before = snapshot(disk)
        remount(disk, "ro")
        for options in ((), ("--seeds", "2")):  # rerun as it was; with more trials
            ro = sweep_into(disk, *options)
            lines = ro.stderr.strip().splitlines()
            assert ro.returncode == 2 and len(lines) == 1, ro.stderr
            assert lines[0] == (
                f"error: {folder}/.lock: cannot open the sweep's lock: the file system is "
                "read-only: write to another folder"
            )
        assert snapshot(disk) == before
        assert outside(tmp_path, disk) == kept


class _FullDisk:
    """A patched writer: each write of a run's metrics log fails with ENOSPC once ``after``
    rows were written (works without the permission to mount anything)."""

    def __init__(self, f, after: int):
        self.f, self.left = f, after

    def write(self, text: str) -> int:
        self.left -= 1
        if self.left < 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.f.write(text)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def test_a_full_disk_with_a_patched_writer(tmp_path, monkeypatch):
    import nnlab.metrics_csv

    real = nnlab.metrics_csv.open_log
    full = lambda p, size=None: _FullDisk(real(p, size), 60)  # noqa: E731
    monkeypatch.setattr(nnlab.metrics_csv, "open_log", full)
    proc = invoke_nnlab(
        "train", CONFIGS / "xor.yaml", "--runs-dir", tmp_path / "runs", "-q",
        "--set", "training.epochs=100", "--set", "training.checkpoint_seconds=0",
    )  # fmt: skip
    (run,) = (tmp_path / "runs").iterdir()
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"error: {run / 'metrics.csv'}: cannot write: the disk is full")
    summary = read_summary(run)
    assert summary["status"] == "failed"
    assert "the disk is full" in summary["error"]
    assert len(read_metrics(run)) == 60  # cut back to the last checkpoint, made room
    monkeypatch.setattr(nnlab.metrics_csv, "open_log", real)
    assert resume(run).summary["status"] == "completed"
    assert read_metrics(run).column("epoch").tolist() == list(range(1, 101))


def test_a_checkpoint_that_finds_the_disk_full(tmp_path, monkeypatch):
    import nnlab.lifecycle

    real, calls = nnlab.lifecycle.save_checkpoint, []

    def fifth_fails(path, arrays, meta):
        calls.append(meta["epoch"])
        if len(calls) == 5:
            raise StorageError(OSError(errno.ENOSPC, "No space left on device"), path)
        real(path, arrays, meta)

    monkeypatch.setattr(nnlab.lifecycle, "save_checkpoint", fifth_fails)
    proc = invoke_nnlab(
        "train", CONFIGS / "xor.yaml", "--runs-dir", tmp_path / "runs", "-q",
        "--set", "training.epochs=50", "--set", "training.checkpoint_seconds=0",
    )  # fmt: skip
    (run,) = (tmp_path / "runs").iterdir()
    assert proc.stderr.startswith(f"error: {run / CHECKPOINT}: cannot write: the disk is full")
    assert read_summary(run)["status"] == "failed"
    # the rows after the last checkpoint saved (epoch 4) are cut off to make room
    assert len(read_metrics(run)) == 4
    monkeypatch.setattr(nnlab.lifecycle, "save_checkpoint", real)
    assert resume(run).summary["resumed"][0]["at_epoch"] == 4


def test_atomic_write_removes_its_temporary_file_and_names_the_target(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    target.write_text("old")

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(StorageError) as e:
        atomic_write(target, "new")
    assert isinstance(e.value, OSError) and e.value.errno == errno.ENOSPC
    assert str(e.value).startswith(f"{target}: cannot write: the disk is full")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]


# ---------------------------------------------------------------- links


def test_run_files_are_never_written_through_a_link(place):
    run = place / "runs" / "broken"
    mine = place / "mine.txt"
    before = mine.read_bytes()
    (run / "metrics.csv").unlink()
    (run / "metrics.csv").symlink_to(mine)
    proc = invoke_nnlab("train", "--resume", run, "-q")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert mine.read_bytes() == before
    # the temporary file of an atomic write, a link put in its place in advance
    tmp = place / f".target.tmp-{os.getpid()}"
    tmp.symlink_to(mine)
    atomic_write(place / "target", "text")
    assert (place / "target").read_text() == "text" and mine.read_bytes() == before


def test_a_log_opened_through_a_link_is_refused(tmp_path):
    mine = tmp_path / "mine.txt"
    mine.write_text("x\n")
    (tmp_path / "metrics.csv").symlink_to(mine)
    with pytest.raises(StorageError, match="symbolic link"):
        MetricsLog(tmp_path / "metrics.csv", ["epoch", "loss"], keep_bytes=0)
    assert mine.read_text() == "x\n"


# ---------------------------------------------------------------- long runs


def _fit_memory(epochs: int, folder: Path) -> int:
    """Bytes still allocated after ``epochs`` epochs of XOR, written to a metrics log."""
    config = load_config(CONFIGS / "xor.yaml", [f"training.epochs={epochs}"])
    exp = build(config)
    trainer = Trainer(exp)
    folder.mkdir()
    trainer.log = MetricsLog(folder / "metrics.csv", trainer.columns)
    tracemalloc.start()
    try:
        trainer.fit()
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    trainer.log.close()
    assert trainer.tally.count == epochs
    return held


def test_a_runs_memory_does_not_grow_with_its_epochs(tmp_path):
    # a row kept per epoch held about 315 bytes: 1.1 MB more for 3,500 more epochs
    short = _fit_memory(500, tmp_path / "short")  # first: what it imports stays
    grown = _fit_memory(4_000, tmp_path / "long") - short
    assert grown < 100_000, grown  # measured: about 1 KB


def test_the_tally_of_blocks_is_that_of_rows():
    rng = np.random.default_rng(0)
    columns = ["epoch", "loss", "accuracy", "val_loss", "lr", "seconds"]
    values = rng.integers(0, 5, (500, len(columns))).astype(float)  # many ties
    values[:, 0] = np.arange(1, 501)
    values[rng.random(values.shape) < 0.1] = np.nan
    values[:, 0] = np.arange(1, 501)
    rows = [dict(zip(columns, r, strict=True)) for r in values.tolist()]
    for r in rows:
        r["epoch"] = int(r["epoch"])
    tally = MetricsTally()
    for start in range(0, 500, 37):
        tally.add_block(columns, values[start : start + 37])
    assert tally.best == best_of(rows)
    assert tally.count == 500 and tally.last["epoch"] == 500


def test_rows_before_reads_in_blocks_and_finds_the_checkpoints_row(place, monkeypatch):
    import nnlab.metrics_csv

    monkeypatch.setattr(nnlab.metrics_csv, "BLOCK_BYTES", 50)  # a block boundary inside most rows
    run = place / "runs" / "run"
    metrics = read_metrics(run)
    text = (run / "metrics.csv").read_bytes()
    for epochs in (0, 1, 17, EPOCHS):
        size, tally = rows_before(run, metrics.columns, epochs)
        assert size == len(b"".join(text.splitlines(keepends=True)[: epochs + 1]))
        assert tally.best == best_of(metrics.rows()[:epochs]) and tally.count == epochs
    with pytest.raises(RunError, match="fewer than the 41 the checkpoint"):
        rows_before(run, metrics.columns, EPOCHS + 1)


def test_read_metrics_in_blocks_reads_what_it_reads_whole(place, monkeypatch):
    import nnlab.metrics_csv

    run = place / "runs" / "run"
    (run / "metrics.csv").write_text((run / "metrics.csv").read_text() + "41,0.")  # unfinished
    whole = read_metrics(run)
    assert len(whole) == EPOCHS and whole.column("epoch").tolist() == list(range(1, EPOCHS + 1))
    monkeypatch.setattr(nnlab.metrics_csv, "BLOCK_BYTES", 50)  # a block boundary inside rows
    blocks = read_metrics(run)
    assert blocks.columns == whole.columns
    np.testing.assert_array_equal(blocks.values, whole.values)


def test_rows_before_with_log_every_keeps_the_every_kth_rows_up_to_the_checkpoint(tmp_path):
    # training.log_every: 3 wrote epochs 3, 6, 9 and the last of a session that ended at 10
    header, rows = "epoch,loss\n", [f"{e},{1 / e!r}\n" for e in (3, 6, 9, 10)]
    (tmp_path / "metrics.csv").write_text(header + "".join(rows))
    for epochs, kept in ((2, 0), (8, 2), (9, 3), (10, 3)):
        size, tally = rows_before(tmp_path, ["epoch", "loss"], epochs, every=3)
        assert size == len(header) + sum(len(r) for r in rows[:kept])
        assert tally.count == kept and (tally.last or {}).get("epoch", 0) == 3 * kept
    with pytest.raises(RunError, match="not epochs 3, 6, 9"):  # 10 is not a row to keep
        rows_before(tmp_path, ["epoch", "loss"], 12, every=3)
    (tmp_path / "metrics.csv").write_text(header + "".join(rows[:2]))
    with pytest.raises(RunError, match="holds 2 rows, fewer than the 3 the checkpoint"):
        rows_before(tmp_path, ["epoch", "loss"], 9, every=3)
    with pytest.raises(RunError, match="not epochs 2, 4, 6"):
        rows_before(tmp_path, ["epoch", "loss"], 4, every=2)


def _maxrss_mb(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    """Run nnlab as a real process; its exit and its peak resident memory (MB)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "nnlab", *args],
        cwd=cwd,
        env=nnlab_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    done = subprocess.CompletedProcess(args, proc.returncode, out, err)
    return done, usage.ru_maxrss / 1024


@pytest.mark.slow
def test_a_million_epochs_stay_under_150_mb(tmp_path):
    # measured: 360 MB when the trainer kept its rows, 46 MB now (about 90 s)
    proc, mb = _maxrss_mb(
        "train", CONFIGS / "xor.yaml", "--runs-dir", tmp_path, "-q",
        "--set", "training.epochs=1000000", cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert mb < 150, mb


@pytest.mark.slow
def test_resume_of_a_100_mb_metrics_log_reads_it_in_blocks(tmp_path, built):
    # measured: 992 MB and 14 s when resume read every row into dicts; 58 MB and 5 s now
    run = tmp_path / "run"
    shutil.copytree(built["interrupted"], run)
    n = 1_200_000
    config = read_config(run)
    config["training"]["epochs"] = n + 1
    write_config(run, config)
    columns = read_metrics(run).columns
    rng = np.random.default_rng(0)
    with open(run / "metrics.csv", "w") as f:
        f.write(",".join(columns) + "\n")
        for start in range(0, n, 100_000):
            block = rng.random((100_000, len(columns)))
            block[:, 0] = np.arange(start + 1, start + 100_001)
            np.savetxt(f, block, delimiter=",", fmt=["%d"] + ["%.17g"] * (len(columns) - 1))
    # the best and last rows then come from the file (as for a checkpoint of an earlier nnlab)
    edit = lambda m: [m.update(epoch=n), m.pop("best"), m.pop("last")]  # noqa: E731
    npz_edit(run / CHECKPOINT, json_member("meta", edit))
    proc, mb = _maxrss_mb("train", "--resume", run, "-q", cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert mb < 150, mb
    assert read_summary(run)["epochs_completed"] == n + 1
    # compare reads its two ends (measured: 79 MB, 784 MB before)
    proc, mb = _maxrss_mb("compare", run, cwd=ROOT)
    assert proc.returncode == 0 and "1200001" in proc.stdout, proc.stderr
    assert mb < 150, mb


@pytest.mark.parametrize(
    "config",
    ["questions/semi_supervised.yaml", "questions/lstm_sequence.yaml", "invertible.yaml",
     "questions/dropout.yaml", "threshold.yaml"],
)  # fmt: skip
def test_the_checks_refuse_nothing_a_run_writes(tmp_path, config):
    run = train_run(CONFIGS / config, tmp_path, "training.epochs=1")
    model, _ = load_model(run)
    assert model.n_params == read_summary(run)["parameters"]
    assert read_summary(run)["status"] == "completed"
