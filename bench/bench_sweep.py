"""Sweep throughput: the same sweep of small digits runs with 1 job and with 2 jobs.

Each sweep runs as a real ``nnlab sweep`` process in a fresh runs folder: TRIALS seeds of
configs/digits.yaml with EPOCHS epochs (about 1-2 s a trial). Both use 1 BLAS thread per
worker, so the only difference is the number of worker processes (with 1 job nnlab would give
its worker cores // 1 BLAS threads; on a busy machine multithreaded BLAS on these tiny matrices
can be many times slower, which would flatter the ratio). The goal on 2 free cores: 2 jobs at
least 1.7x faster than 1. The machine's load is printed before and after: the figure is only
meaningful on an otherwise idle machine. The CPU time of the sweep and its workers shows the
work done: equal for both job counts means running in parallel adds little work of its own.

    python bench/bench_sweep.py [--trials 10] [--epochs 300] [--repeat 1]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


def sweep_seconds(jobs: int, trials: int, epochs: int) -> tuple[float, float]:
    """Wall time of one ``nnlab sweep`` process, start to exit, and the CPU time it and its
    workers used."""
    with tempfile.TemporaryDirectory() as runs:
        cmd = [
            sys.executable, "-m", "nnlab", "sweep", str(ROOT / "configs" / "digits.yaml"),
            "--seeds", str(trials), "--set", f"training.epochs={epochs}",
            "--jobs", str(jobs), "--threads", "1", "--runs-dir", runs, "-q",
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            sys.exit(f"nnlab sweep failed ({proc.returncode}):\n{proc.stderr}")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return seconds, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10, help="trials per sweep")
    parser.add_argument("--epochs", type=int, default=300, help="epochs per trial")
    parser.add_argument("--repeat", type=int, default=1, help="sweeps per job count (median)")
    args = parser.parse_args()
    print(f"bench_sweep: {args.trials} digits trials x {args.epochs} epochs, 1 BLAS thread each")
    print(f"before: {load()}")
    times: dict[int, list[float]] = {1: [], 2: []}
    cpu: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.repeat):
        for jobs in (1, 2):
            wall, used = sweep_seconds(jobs, args.trials, args.epochs)
            times[jobs].append(wall)
            cpu[jobs].append(used)
    one, two = (statistics.median(times[j]) for j in (1, 2))
    print(f"after:  {load()}")
    for jobs, wall in ((1, one), (2, two)):
        runs = ", ".join(f"{t:.2f}" for t in times[jobs])
        print(
            f"--jobs {jobs}: {wall:6.2f} s wall ({runs}); "
            f"{statistics.median(cpu[jobs]):6.2f} s CPU, sweep and workers"
        )
    print(f"speed-up (jobs 1 / jobs 2): {one / two:.2f}x   (goal on 2 idle cores: >= 1.7x)")


if __name__ == "__main__":
    main()
