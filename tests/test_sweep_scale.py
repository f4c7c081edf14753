"""Sweeps at scale: reading hundreds of run folders (what compare takes from a summary, what it
still reads and reports), and ``training.log_every`` for runs of thousands of tiny epochs
(every k-th row and the last, exact last and best values, early stopping, resume)."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path

import numpy as np

from conftest import CONFIGS
from nnlab.compare import build_table, load_runs
from nnlab.config import config_hash, load_config
from nnlab.lifecycle import resume, train
from nnlab.metrics import best_of
from nnlab.runs import MetricsLog, read_metrics, write_config, write_summary
from nnlab.train import Trainer

COLUMNS = ["epoch", "loss", "accuracy", "lr", "seconds"]
XOR = load_config(CONFIGS / "xor.yaml", ["training.epochs=60"])


def fake_run(folder: Path, lr: float, seed: int, rng: np.random.Generator, **how) -> dict:
    """A run folder written by nnlab's own writers (config, metrics log, summary) with random
    curves; returns what the table must show, computed here from the rows."""
    config = json.loads(json.dumps(XOR))
    config["optimizer"]["lr"], config["training"]["seed"] = lr, seed
    every, epochs = how.get("every", 1), how.get("epochs", 60)
    folder.mkdir(parents=True)
    loss = rng.uniform(0.01, 1.0, epochs)
    rows = [
        {"epoch": i + 1, "loss": float(loss[i]), "accuracy": float(1 - loss[i]), "lr": lr}
        for i in range(epochs)
    ]
    log = MetricsLog(folder / "metrics.csv", COLUMNS)
    for r in rows:
        if r["epoch"] % every == 0 or r["epoch"] == epochs:
            log.append({**r, "seconds": 0.001})
    log.close()
    summary = {"status": how.get("status", "completed"), "config_hash": config_hash(config)}
    summary.update(write_config(folder, config), seed=seed, epochs_completed=epochs)
    if summary["status"] == "running":  # its process is gone: killed
        summary.update(pid=2**22 + 7, host=__import__("socket").gethostname())
    else:
        summary.update(last=rows[-1], best=best_of(rows), train_seconds=0.06)
    write_summary(folder, summary)
    i = int(np.argmin(loss))
    return {"loss": loss[-1], "loss.best": loss[i], "loss.best_epoch": i + 1}


def test_a_parent_folder_of_hundreds_of_runs_reads_right(tmp_path):
    """300 runs in nested sweep folders: found under their parent, read fast (a finished
    run's values from its summary, its config from the summary's copy) and shown as the full
    read shows them; an edited config.yaml wins over the copy; damaged files are reported."""
    rng = np.random.default_rng(0)
    expected = {}
    for i in range(300):
        sweep = f"sweeps/s{i % 3}/trials" if i % 10 else "plain"
        run = tmp_path / sweep / f"{i:04d}-x"
        how = {"every": 7, "epochs": 61} if i % 50 == 1 else {}
        if i == 5:
            how["status"] = "running"
        expected[run.name] = fake_run(run, [0.1, 1.0, 10.0][i % 3], i, rng, **how)
    edited = tmp_path / "sweeps/s1/trials/0001-x/config.yaml"  # lr 1.0, edited by hand
    edited.write_text(edited.read_text().replace("lr: 1.0", "lr: 0.5"))
    bad_config = tmp_path / "sweeps/s2/trials/0002-x/config.yaml"
    bad_config.write_text("optimizer: {lr: [")
    bad_log = tmp_path / "sweeps/s0/trials/0003-x/metrics.csv"
    bad_log.write_text(bad_log.read_text() + "61,oops,1.0,1.0,0.1\n")
    warnings: list[str] = []
    fast = load_runs([tmp_path], warnings.append, curves=False)
    full = load_runs([tmp_path], lambda w: None, curves=True)
    assert len(fast) == len(full) == 298
    assert len(warnings) == 2 and "config.yaml: damaged" in warnings[0] + warnings[1]
    assert any(str(bad_log) in w and "damaged" in w for w in warnings)
    assert [len(r.metrics) for r in fast if r.path.name == "0010-x"] == [1]  # its last row
    a, b = build_table(fast).frame, build_table(full).frame
    assert a.equals(b)
    rows = {r["run"]: r for r in a.to_dict("records")}
    for name, want in expected.items():
        if name in rows:
            got = rows[name]
            assert math.isclose(got["loss"], want["loss"]), name
            assert math.isclose(got["loss.best"], want["loss.best"]), name
            assert got["loss.best_epoch"] == want["loss.best_epoch"], name
    assert rows["0001-x"]["optimizer.lr"] == 0.5  # the file, not the summary's copy
    assert rows["0005-x"]["status"] == "killed" and rows["0005-x"]["epochs"] == 60
    assert rows["0051-x"]["epochs"] == 61  # every 7th row on disk, the summary exact


# ---------------------------------------------------------------- log_every


def trained(tmp_path: Path, name: str, *sets: str):
    config = load_config(CONFIGS / "xor.yaml", ["training.epochs=203", *sets])
    return train(config, tmp_path / name, handle_signals=False)


def without_seconds(run: Path) -> np.ndarray:
    m = read_metrics(run)
    return np.delete(m.values, m.columns.index("seconds"), axis=1)


def test_log_every_writes_every_kth_row_and_the_last_with_exact_values(tmp_path):
    every = trained(tmp_path, "every")
    sparse = trained(tmp_path, "sparse", "training.log_every=10")
    rows = without_seconds(every.run_dir)
    epochs = rows[:, 0]
    wanted = rows[(epochs % 10 == 0) | (epochs == 203)]
    assert np.array_equal(without_seconds(sparse.run_dir), wanted)
    for key in ("last", "best", "epochs_completed", "train"):
        assert sparse.summary[key] == every.summary[key], key
    assert sparse.summary["config_hash"] != every.summary["config_hash"]
    # log_every 1 is left out of the hash: configs from before the key keep their identity
    old = json.loads(json.dumps(every.experiment.config))
    del old["training"]["log_every"]
    assert config_hash(old) == every.summary["config_hash"]


def test_a_written_row_counts_the_seconds_of_the_epochs_since_the_one_before(tmp_path, monkeypatch):
    """With a clock that says each epoch took 1 s, every 10th row says 10 s and the last one
    (epoch 203) 3 s: the seconds column still adds up to the training time."""
    import time as real

    ticks = iter(range(10**6))
    clock = type("Clock", (), {"perf_counter": staticmethod(lambda: float(next(ticks)))})
    clock.monotonic = staticmethod(real.monotonic)
    monkeypatch.setattr("nnlab.train.time", clock)
    sparse = trained(tmp_path, "sparse", "training.log_every=10")
    seconds = read_metrics(sparse.run_dir).column("seconds")
    assert list(seconds) == [10.0] * 20 + [3.0]


def test_log_every_with_early_stopping_writes_the_stopping_epoch(tmp_path):
    es = "training.early_stopping={monitor: loss, patience: 5, min_delta: 0.5}"
    every = trained(tmp_path, "every", es)
    sparse = trained(tmp_path, "sparse", es, "training.log_every=4")
    stop = every.summary["epochs_completed"]
    assert sparse.summary["stopped_early"] and stop < 203 and stop % 4  # between two rows
    assert read_metrics(sparse.run_dir).column("epoch")[-1] == stop
    assert sparse.summary["early_stopping"] == every.summary["early_stopping"]
    assert sparse.summary["best"] == every.summary["best"]


def test_resume_with_log_every_gives_the_uninterrupted_log(tmp_path, monkeypatch):
    """Interrupted at epoch 103 (between two rows: its row is written as the last), resumed
    from the checkpoint of epoch 102: the rows after it go, and the run ends with the log
    and the summary of a run never interrupted."""
    sets = ("training.log_every=5", "training.checkpoint_seconds=0")
    whole = trained(tmp_path, "whole", *sets)
    end_epoch = Trainer._end_epoch

    def stop_at_103(self, fit, epoch, row, lr, seconds):
        if epoch + 1 == 103:
            self.request_stop(signal.SIGINT)
        return end_epoch(self, fit, epoch, row, lr, seconds)

    monkeypatch.setattr(Trainer, "_end_epoch", stop_at_103)
    cut = trained(tmp_path, "cut", *sets)
    assert cut.summary["status"] == "interrupted"
    assert list(read_metrics(cut.run_dir).column("epoch")[-2:]) == [100, 103]
    monkeypatch.undo()
    done = resume(cut.run_dir, handle_signals=False)
    assert done.summary["resumed"][0]["at_epoch"] == 102
    assert np.array_equal(without_seconds(cut.run_dir), without_seconds(whole.run_dir))
    for key in ("last", "best", "epochs_completed", "status"):
        assert done.summary[key] == whole.summary[key], key
