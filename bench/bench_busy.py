"""BLAS threads on a busy machine: the default thread choice against 1 and 2 threads.

MNIST 784-300-10 (configs/mnist_mlp.yaml) for 2 epochs, each run a real ``nnlab train`` process,
in two conditions: with a CPU hog (a process spinning on the last core, as another user's job
would) and without. In each round every variant runs once in turn, so that a slow spell of the
machine hits them alike; the figures are medians over the rounds of the training time
(summary.json's train_seconds), and the ratios are to one thread in the same condition.
Before each run the busy cores seen by ``nnlab.threads.busy_cores`` are printed: on a shared
machine other people's work is part of the conditions.

Run: ``.venv/bin/python bench/bench_busy.py [--epochs 2] [--rounds 3] [--wait-idle 600]`` with
the MNIST files in $NNLAB_DATA_DIR (or ../shared/data/mnist); on a shared machine
``--wait-idle`` waits for other people's work to pause before the rounds without the hog.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "mnist_mlp.yaml"
VARIANTS = {"default": [], "1 thread": ["training.threads=1"], "2 threads": ["training.threads=2"]}
CONDITIONS = ("idle", "hog on one core")


def data_dir() -> str:
    for folder in (os.environ.get("NNLAB_DATA_DIR"), ROOT.parent / "shared" / "data" / "mnist"):
        if folder and (Path(folder) / "train-images-idx3-ubyte.gz").is_file():
            return str(folder)
    sys.exit("bench_busy: no MNIST files: set NNLAB_DATA_DIR to the folder holding them")


def start_hog() -> subprocess.Popen:
    """A process spinning on the last core this process may use."""
    core = max(os.sched_getaffinity(0))
    code = f"import os; os.sched_setaffinity(0, {{{core}}})\nwhile True: pass"
    return subprocess.Popen([sys.executable, "-c", code])


def train(sets: list[str], epochs: int, runs: Path) -> dict:
    """One ``nnlab train`` process; returns its summary."""
    args = [sys.executable, "-m", "nnlab", "train", str(CONFIG), "--runs-dir", str(runs)]
    for s in [f"training.epochs={epochs}", *sets]:
        args += ["--set", s]
    env = {**os.environ, "NNLAB_DATA_DIR": data_dir(), "PYTHONPATH": str(ROOT)}
    for name in ("NNLAB_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(name, None)
    proc = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    run = Path(proc.stdout.strip().splitlines()[-1])
    summary = json.loads((run / "summary.json").read_text())
    why = [line for line in proc.stderr.splitlines() if line.startswith("BLAS threads:")]
    summary["why"] = why[0].split("(", 1)[1].split(";")[0] if why else ""
    return summary


def wait_for_idle(seconds: float) -> float:
    """Wait up to ``seconds`` for other processes to leave every core idle; returns the busy
    cores last seen."""
    from nnlab import threads

    deadline = time.monotonic() + seconds
    while True:
        busy = threads.busy_cores(0.5) or 0.0
        if busy < threads.IDLE_SLACK or time.monotonic() > deadline:
            return busy


def one_round(condition: str, epochs: int, runs: Path, results: dict, wait_idle: float) -> None:
    """Every variant once in ``condition``; appends (train seconds, threads) to ``results``."""
    from nnlab import threads

    hog = start_hog() if condition != "idle" else None
    if hog is None and wait_idle:
        seen = wait_for_idle(wait_idle)
        print(f"  (waited for idle cores: {seen:.2f} busy)", flush=True)
    try:
        time.sleep(0.3 if hog else 0)  # the hog is spinning before a run starts
        for name, sets in VARIANTS.items():
            busy = threads.busy_cores(0.2)
            s = train(sets, epochs, runs)
            results.setdefault((condition, name), []).append((s["train_seconds"], s["threads"]))
            seen = "?" if busy is None else f"{busy:.2f}"
            print(
                f"  {condition:15s} {name:9s}: {s['train_seconds']:6.2f} s with "
                f"{s['threads']} thread(s); busy cores seen just before: {seen}"
                + (f"; the run saw: {s['why']}" if s["why"] else ""),
                flush=True,
            )
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each round without the hog, wait up to this long for idle cores",
    )
    opts = parser.parse_args()
    from nnlab import threads

    print(f"{threads.cores()} cores; MNIST 784-300-10, {opts.epochs} epochs, batch 128, float32")
    results: dict[tuple[str, str], list[tuple[float, int]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(opts.rounds):
            print(f"round {r + 1}")
            for condition in CONDITIONS:
                one_round(condition, opts.epochs, Path(tmp), results, opts.wait_idle)
    print("\nmedian training time (range), and the ratio to 1 thread in the same condition:")
    for condition in CONDITIONS:
        one = statistics.median(t for t, _ in results[(condition, "1 thread")])
        for name in VARIANTS:
            times = [t for t, _ in results[(condition, name)]]
            used = sorted({n for _, n in results[(condition, name)]})
            print(
                f"  {condition:15s} {name:9s} {statistics.median(times):6.2f} s "
                f"({min(times):.2f}-{max(times):.2f}), threads {used}: "
                f"{statistics.median(times) / one:.2f}x the time of 1 thread"
            )


if __name__ == "__main__":
    main()
