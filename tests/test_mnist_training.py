"""The accuracy goals of issues 3 and 14, by full trainings of the shipped configs through the real
command line. Slow (minutes to tens of minutes): skipped by ``make test``, run by
``make test-slow``. They read the MNIST files from ``$NNLAB_DATA_DIR`` or ``../shared``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import CONFIGS, MNIST_DIR, NO_MNIST, run_nnlab

DATA_DIR = None if MNIST_DIR is None else str(MNIST_DIR)

pytestmark = [pytest.mark.slow, pytest.mark.skipif(DATA_DIR is None, reason=NO_MNIST)]


def _train(config: Path, runs: Path, timeout: float, *overrides: str) -> dict:
    sets = [f"--set={o}" for o in overrides]
    proc = run_nnlab(
        "train", config, "--runs-dir", runs, *sets, timeout=timeout, NNLAB_DATA_DIR=DATA_DIR
    )
    assert proc.returncode == 0, proc.stderr
    run = Path(proc.stdout.strip().splitlines()[-1])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["data"] == {"name": "mnist", "train": 60000, "test": 10000}
    return summary


def test_mnist_mlp_reaches_at_most_2_percent_test_error_in_10_epochs(runs):
    summary = _train(CONFIGS / "mnist_mlp.yaml", runs, timeout=1800)
    assert summary["epochs_completed"] <= 10
    error = 1 - summary["test"]["accuracy"]
    assert error <= 0.020, f"test error {error:.2%}"


def test_mnist_best_reaches_at_most_1_3_percent_test_error(runs):
    summary = _train(CONFIGS / "mnist_best.yaml", runs, timeout=4 * 3600)
    error = 1 - summary["test"]["accuracy"]
    assert error <= 0.013, f"test error {error:.2%}"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mnist_cnn_reaches_at_most_0_8_percent_test_error_in_10_epochs(runs, seed):
    """Issue 14: configs/mnist_cnn.yaml, each of three seeds."""
    summary = _train(CONFIGS / "mnist_cnn.yaml", runs, 3 * 3600, f"training.seed={seed}")
    assert summary["epochs_completed"] == 10
    error = 1 - summary["test"]["accuracy"]
    assert error <= 0.008, f"seed {seed}: test error {error:.2%}"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mnist_cnn_best_reaches_at_most_0_6_percent_test_error(runs, seed):
    """Issue 14: configs/mnist_cnn_best.yaml, each of three seeds."""
    summary = _train(CONFIGS / "mnist_cnn_best.yaml", runs, 8 * 3600, f"training.seed={seed}")
    error = 1 - summary["test"]["accuracy"]
    assert error <= 0.006, f"seed {seed}: test error {error:.2%}"
