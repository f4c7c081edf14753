"""nnlab export-runs: runs in an MLflow tracking store and in TensorBoard event files, read back
with MLflow's and TensorBoard's own libraries."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import CONFIGS, invoke_nnlab, train_run
from nnlab.compare import load_runs
from nnlab.tracking import export_runs, split_tag


@pytest.fixture(scope="module")
def three(tmp_path_factory) -> Path:
    """Three digits runs of 4 epochs: two learning rates, one with a test split."""
    root = tmp_path_factory.mktemp("runs")
    for lr in (0.01, 0.001):
        train_run(CONFIGS / "digits.yaml", root, f"optimizer.lr={lr}", "training.epochs=4")
    train_run(CONFIGS / "xor.yaml", root, "training.epochs=5")
    return root


def metrics_csv(run: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run / "metrics.csv").open()))


@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")
def test_mlflow_holds_params_metrics_per_epoch_summary_and_files(three, tmp_path):
    mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    out = tmp_path / "mlruns"
    done = export_runs([three], "mlflow", out, experiment="digits")
    assert (done.written, done.skipped) == (3, 0)
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    exp = client.get_experiment_by_name("digits")
    found = {r.data.tags["nnlab.run_dir"]: r for r in client.search_runs([exp.experiment_id])}
    assert len(found) == 3
    for run in load_runs([three], warn=pytest.fail):
        got = found[str(run.path.resolve())]
        assert got.info.run_name == run.label and got.info.status == "FINISHED"
        assert got.data.params["optimizer.lr"] == str(run.config["optimizer"]["lr"])
        assert got.data.params["data.name"] == run.config["data"]["name"]
        rows = metrics_csv(run.path)
        history = client.get_metric_history(got.info.run_id, "loss")
        assert [(h.step, h.value) for h in history] == [
            (int(r["epoch"]), float(r["loss"])) for r in rows
        ]  # every epoch, the numbers of metrics.csv exactly
        summary = json.loads((run.path / "summary.json").read_text())
        assert got.data.metrics["final_train_accuracy"] == summary["train"]["accuracy"]
        assert got.data.tags["nnlab.status"] == "completed"
        files = {f.path for f in client.list_artifacts(got.info.run_id)}
        assert {"config.yaml", "summary.json", "metrics.csv", "model.npz"} <= files
        local = client.download_artifacts(got.info.run_id, "model.npz", str(tmp_path))
        assert Path(local).read_bytes() == (run.path / "model.npz").read_bytes()
    again = export_runs([three], "mlflow", out, experiment="digits")
    assert (again.written, again.skipped) == (0, 3)  # nothing twice


def test_tensorboard_event_files_hold_the_curves_as_keras_writes_them(three, tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
        acc = EventAccumulator(str(folder))
        acc.Reload()
        return {
            tag: [
                (e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)
            ]
            for tag in acc.Tags()["tensors"]
        }

    out = tmp_path / "tb"
    done = export_runs([three], "tensorboard", out)
    assert (done.written, done.skipped) == (3, 0)
    for run in load_runs([three], warn=pytest.fail):
        folder = out / run.label
        rows = metrics_csv(run.path)
        train = scalars(folder / "train")
        expect = [(int(r["epoch"]), float(np.float32(r["loss"]))) for r in rows]
        assert train["epoch_loss"] == expect  # float32, as TensorBoard keeps scalars
        assert [v for _, v in train["epoch_learning_rate"]] == [
            float(np.float32(r["lr"])) for r in rows
        ]
        if "val_loss" in rows[0]:
            val = scalars(folder / "validation")
            assert [v for _, v in val["epoch_accuracy"]] == [
                float(np.float32(r["val_accuracy"])) for r in rows
            ]
        root = EventAccumulator(str(folder))
        root.Reload()
        assert {"config", "summary", "_hparams_/session_start_info"} <= set(root.Tags()["tensors"])
        assert (folder / "model.npz").read_bytes() == (run.path / "model.npz").read_bytes()
    assert export_runs([three], "tensorboard", out).skipped == 3


def test_keras_names_and_clear_errors(three, tmp_path):
    assert split_tag("val_loss") == ("validation", "epoch_loss")
    assert split_tag("cls_accuracy") == ("train", "epoch_cls_accuracy")
    assert split_tag("lr") == ("train", "epoch_learning_rate")
    proc = invoke_nnlab("export-runs", three, "--to", "wandb", tmp_path / "x")
    assert proc.returncode == 2 and "wandb" in proc.stderr and "mlflow" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_runs_of_different_shapes_go_to_tensorboard(tmp_path):
    """A key one run lacks (xor has no second hidden layer's initializer of its own kind) is
    a text value in the HParams dashboard, not an error."""
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    runs = tmp_path / "runs"
    train_run(CONFIGS / "xor.yaml", runs, "training.epochs=3")
    train_run(CONFIGS / "threshold.yaml", runs, "training.epochs=3")
    done = export_runs([runs], "tensorboard", tmp_path / "tb")
    assert (done.written, done.skipped) == (2, 0)
