"""Start-up time and memory of the command line, measured on real processes.

  - ``nnlab --help`` wall time (goal: under 0.3 s): heavy modules must load lazily;
  - ``nnlab train configs/xor.yaml`` wall time (goal: under 1.5 s);
  - ``nnlab train configs/digits.yaml`` wall time, 60 epochs to 97% test accuracy (goal: under
    a minute; the accuracy is a test, tests/test_train.py);
  - peak memory (max RSS) of ``nnlab train configs/mnist_mlp.yaml`` for one epoch (goal: at most
    600 MB), when the MNIST files are found (NNLAB_DATA_DIR or ../shared/data/mnist).

Run: ``make bench`` or ``.venv/bin/python bench/bench_cli.py``. Each time is the best of a few
runs, so the figure is what the program costs, not what else the machine was doing.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def nnlab(*args: str, env: dict | None = None) -> float:
    """Wall seconds of one ``python -m nnlab ARGS`` process."""
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "nnlab", *args],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - t0


def best(n: int, *args: str) -> float:
    return min(nnlab(*args) for _ in range(n))


def main() -> None:
    help_s = best(5, "--help")
    with tempfile.TemporaryDirectory() as runs:
        xor_s = best(3, "train", "configs/xor.yaml", "--runs-dir", runs, "-q")
        digits_s = best(2, "train", "configs/digits.yaml", "--runs-dir", runs, "-q")
        print(f"nnlab --help                    {help_s:6.3f} s  (goal < 0.3 s)")
        print(f"nnlab train configs/xor.yaml    {xor_s:6.3f} s  (goal < 1.5 s)")
        print(f"nnlab train configs/digits.yaml {digits_s:6.3f} s  (goal < 60 s)")
        env = dict(os.environ)
        shared = ROOT.parent / "shared" / "data" / "mnist"
        if "NNLAB_DATA_DIR" not in env and shared.is_dir():
            env["NNLAB_DATA_DIR"] = str(shared)
        if "NNLAB_DATA_DIR" not in env:
            print("MNIST files not found (set NNLAB_DATA_DIR): peak memory not measured")
            return
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t = nnlab(
            "train",
            "configs/mnist_mlp.yaml",
            "--runs-dir",
            runs,
            "-q",
            "--set",
            "training.epochs=1",
            env=env,
        )
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB, largest child
        note = "" if peak > before else " (an earlier child was larger)"
        print(
            f"mnist_mlp, 1 epoch: peak RSS {peak / 1024:6.0f} MB{note} in {t:.1f} s "
            "(goal <= 600 MB)"
        )


if __name__ == "__main__":
    main()
