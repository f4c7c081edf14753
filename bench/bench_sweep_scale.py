"""Sweeps and compare at scale, against the code before this change, side by side in one run.

1. Reading run folders: N synthetic runs (a real XOR run of 50 epochs, cloned with other
   learning rates and seeds through nnlab's own writers) read and tabled by ``nnlab compare``
   and read with every row for ``nnlab plot``; beside them the pre-change way of reading (a
   YAML parse of config.yaml and the csv module per run) in this process, and the whole
   ``nnlab compare DIR`` command of the pre-change tree and of this one.
2. The runner's own cost per trial: sweeps whose trials end at once (an executor that trains
   nothing), so that all the time is bookkeeping (planning, index, folders, spec): this
   runner against the pre-change runner (index.json rewritten at every event).
3. A real sweep of many tiny trials (XOR, a few epochs, ``--jobs 2``): its throughput, and the
   share of its time the sweep's bookkeeping takes (counted by the runner); the pre-change
   ``nnlab sweep`` on the same trials for the throughput ratio.
4. ``nnlab sweep configs/xor.yaml --seeds 100 --jobs 2`` (3000 epochs a trial), pre-change and
   now, and now with ``training.log_every=100``.

The pre-change tree is ``git archive REF`` of this repository (``--baseline``, default the
commit the change started from); without it those rows are skipped. The machine is shared:
absolute times drift, ratios within one run hold.

    python bench/bench_sweep_scale.py [--reads 1000,5000] [--null 1000,10000] [--tiny 10000]
        [--tiny-old 1000] [--epochs 20] [--jobs 2] [--baseline 060f14c] [--parts 1,2,3,4]
        [--quick]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nnlab.compare import build_table, load_runs, render  # noqa: E402
from nnlab.config import config_hash, load_config, parse_yaml  # noqa: E402
from nnlab.lifecycle import train  # noqa: E402
from nnlab.runs import find_runs, read_summary, write_config, write_summary  # noqa: E402
from nnlab.sweeps import Executor, TrialOutcome, check_trials, load_sweep, run_sweep  # noqa: E402

BASELINE = "060f14c"  # main before this change (the sweep index rewritten at every event)


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


def baseline_tree(ref: str, into: Path) -> Path | None:
    """The pre-change source tree (``git archive``), or None when it cannot be had."""
    try:
        data = subprocess.run(
            ["git", "-C", str(ROOT), "archive", ref], capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"(no baseline {ref}: {e}; its rows are skipped)")
        return None
    tar = into / "baseline.tar"
    tar.write_bytes(data)
    with tarfile.open(tar) as t:
        t.extractall(into / "baseline", filter="data")
    return into / "baseline"


class Took:
    """Wall and CPU seconds (the process and the children it waited for: a sweep's workers)
    of a command. On a busy machine the CPU time is the steadier figure."""

    def __init__(self, wall: float, cpu: float):
        self.wall, self.cpu = wall, cpu

    def __str__(self) -> str:
        return f"{self.wall:.2f} s (CPU {self.cpu:.2f} s)"

    def __truediv__(self, other: Took) -> str:
        return f"{self.wall / other.wall:.1f}x (CPU {self.cpu / other.cpu:.1f}x)"


def nnlab(tree: Path, *args: str) -> Took:
    """``python -m nnlab ARGS`` of a source tree (run in it: ``-m`` puts the working folder
    first on the path)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "nnlab", *args], env=env, cwd=tree, capture_output=True
    )
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 1):
        sys.exit(f"nnlab {' '.join(args)} ({tree}) failed:\n{proc.stderr.decode()[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Took(seconds, cpu)


# ---------------------------------------------------------------- 1. reading


def make_runs(root: Path, n: int, template: Path) -> Path:
    """``n`` run folders under ``root/sweeps/s/trials`` cloned from ``template`` (a real run),
    each with its own config (learning rate, seed) written by nnlab's writers."""
    base = load_config(ROOT / "configs" / "xor.yaml", ["training.epochs=50"])
    summary = read_summary(template)
    folder = root / "sweeps" / "s" / "trials"
    for i in range(n):
        run = folder / f"{i + 1:05d}-x"
        run.mkdir(parents=True)
        config = json.loads(json.dumps(base))
        config["optimizer"]["lr"] = [0.1, 1.0, 10.0][i % 3]
        config["training"]["seed"] = i // 3
        s = {**summary, **write_config(run, config), "run": run.name, "seed": i // 3}
        s["config_hash"] = config_hash(config)
        write_summary(run, s)
        for name in ("metrics.csv", "model.npz"):
            shutil.copyfile(template / name, run / name)
    return root / "sweeps" / "s"


def old_read(run: Path) -> tuple[dict, dict, np.ndarray]:
    """A run read the pre-change way: summary, config.yaml parsed, metrics.csv by the csv
    module cell by cell."""
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    config = parse_yaml((run / "config.yaml").read_text(encoding="utf-8"), str(run))
    lines = (run / "metrics.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    reader = csv.reader(lines)
    columns = next(reader)
    rows = [[float(v) if v != "" else math.nan for v in row] for row in reader if row]
    return summary, config, np.array(rows).reshape(len(rows), len(columns))


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def bench_reading(sizes: list[int], work: Path, old: Path | None) -> None:
    print("\n1. reading N run folders (XOR, 50 epochs): find + read + table")
    template = train(
        load_config(ROOT / "configs" / "xor.yaml", ["training.epochs=50"]),
        work / "template",
        handle_signals=False,
    ).run_dir
    for n in sizes:
        sweep = make_runs(work / f"read{n}", n, template)
        cpu = time.process_time()
        t_find, paths = timed(find_runs, [sweep], print)
        t_read, runs = timed(load_runs, [sweep], print, curves=False)
        t_table, table = timed(build_table, runs, group_seeds=True)
        cpu = time.process_time() - cpu
        t_render, _ = timed(render, table, "table")
        t_curves, _ = timed(load_runs, [sweep], print, curves=True)
        t_old, _ = timed(lambda found: [old_read(p) for p in found], paths)
        print(
            f"  N={n}: find {t_find:.2f} s, read {t_read - t_find:.2f} s (with every row, for "
            f"plot: {t_curves - t_find:.2f} s), table {t_table:.2f} s, render {t_render:.2f} s; "
            f"find + read + table: {t_read + t_table:.2f} s (CPU {cpu:.2f} s)"
        )
        print(
            f"    reading per run: now {1e6 * (t_read - t_find) / n:.0f} us, the pre-change "
            f"way (YAML parse, csv module) {1e6 * t_old / n:.0f} us: "
            f"{t_old / (t_read - t_find):.1f}x"
        )
        commands = [
            ["compare", str(sweep)],
            ["compare", str(sweep), "--group-seeds"],  # with intervals (scipy.stats)
            ["plot", str(sweep), "--group-seeds", "-m", "loss"],
        ]
        for command in commands:
            new = nnlab(ROOT, *command)
            shown = " ".join(["nnlab", command[0], "DIR", *command[2:]])
            line = f"    {shown}, the whole command: now {new}"
            if old is not None:
                was = nnlab(old, *command)
                line += f"; pre-change {was}: {was / new}"
            print(line)
        shutil.rmtree(work / f"read{n}")


# ---------------------------------------------------------------- 2. the runner alone


class Instant(Executor):
    """Trials that end as soon as they are submitted: a sweep's bookkeeping, alone."""

    slots = 2

    def __init__(self) -> None:
        self.tasks: list = []

    @property
    def busy(self) -> int:
        return len(self.tasks)

    def submit(self, task) -> None:
        self.tasks.append(task)

    def wait(self, timeout: float) -> list[TrialOutcome]:
        done, self.tasks = self.tasks, []
        return [TrialOutcome(t.key, "completed", summary={"last": {"loss": 0.1}}) for t in done]

    def interrupt(self, signum: int) -> None:
        pass

    def close(self, grace: float = 10.0) -> None:
        pass


INSTANT = """
import sys, time
from nnlab.sweeps import Executor, TrialOutcome, load_sweep, run_sweep
class Instant(Executor):
    slots = 2
    def __init__(self): self.tasks = []
    @property
    def busy(self): return len(self.tasks)
    def submit(self, task): self.tasks.append(task)
    def wait(self, timeout):
        done, self.tasks = self.tasks, []
        return [TrialOutcome(t.key, "completed", summary={"last": {"loss": 0.1}}) for t in done]
    def interrupt(self, signum): pass
    def close(self, grace=10.0): pass
sweep = load_sweep(sys.argv[1], seeds=sys.argv[2], sets=["training.epochs=20"])
t0 = time.perf_counter(); sweep.trials; t1 = time.perf_counter()
run_sweep(sweep, sys.argv[3], quiet=True, executor=Instant(), handle_signals=False)
print(t1 - t0, time.perf_counter() - t1)
"""


def bench_runner(sizes: list[int], work: Path, old: Path | None) -> None:
    print("\n2. the runner alone: trials that end at once (seconds of bookkeeping per trial)")
    script = work / "instant.py"
    script.write_text(INSTANT)
    for n in sizes:
        sweep = load_sweep(ROOT / "configs" / "xor.yaml", seeds=str(n),
                           sets=["training.epochs=20"])  # fmt: skip
        t_expand, _ = timed(lambda: sweep.trials)  # noqa: B023
        runs = work / f"instant{n}"
        t_run, result = timed(run_sweep, sweep, runs, quiet=True, executor=Instant(),
                              handle_signals=False)  # fmt: skip
        line = (
            f"  N={n}: grid {t_expand:.2f} s, run_sweep {t_run:.2f} s "
            f"({n / t_run:.0f} trials/s, {1e6 * result.bookkeeping / n:.0f} us of bookkeeping "
            "a trial)"
        )
        if old is not None and n <= 2000:
            env = {**os.environ, "PYTHONPATH": str(old)}
            out = subprocess.run(
                [sys.executable, str(script), str(ROOT / "configs" / "xor.yaml"), str(n),
                 str(work / f"old-instant{n}")],
                env=env, cwd=old, capture_output=True, text=True, check=True,
            ).stdout.split()  # fmt: skip
            o_expand, o_run = float(out[0]), float(out[1])
            line += (
                f"; pre-change: grid {o_expand:.2f} s ({o_expand / t_expand:.0f}x), "
                f"run_sweep {o_run:.2f} s ({o_run / t_run:.0f}x)"
            )
        print(line)
        shutil.rmtree(runs, ignore_errors=True)
        shutil.rmtree(work / f"old-instant{n}", ignore_errors=True)


# ---------------------------------------------------------------- 3. many tiny trials


def bench_tiny(n: int, n_old: int, epochs: int, jobs: int, work: Path, old: Path | None) -> None:
    print(f"\n3. a sweep of tiny trials: XOR, {epochs} epochs a trial, --jobs {jobs}")
    sets = [f"training.epochs={epochs}"]
    t_grid, sweep = timed(lambda: load_sweep(ROOT / "configs" / "xor.yaml", seeds=str(n),
                                             sets=sets, jobs=jobs))  # fmt: skip
    t_expand, _ = timed(lambda: sweep.trials)
    t_check, _ = timed(check_trials, sweep.trials)
    t_run, result = timed(run_sweep, sweep, work / "tiny", quiet=True, handle_signals=False)
    before = t_grid + t_expand + t_check
    share = result.bookkeeping / t_run
    print(
        f"  N={n}: {t_run:.1f} s in run_sweep ({n / t_run:.0f} trials/s), of which "
        f"bookkeeping {result.bookkeeping:.2f} s = {100 * share:.2f}% (goal < 5%); "
        f"the grid and its check before it {before:.2f} s "
        f"({100 * (before + result.bookkeeping) / (before + t_run):.2f}% with it)"
    )
    shutil.rmtree(work / "tiny", ignore_errors=True)
    if old is None:
        return
    args = ["sweep", str(ROOT / "configs" / "xor.yaml"), "--seeds", str(n_old), "--set",
            sets[0], "--jobs", str(jobs), "-q"]  # fmt: skip
    new = nnlab(ROOT, *args, "--runs-dir", str(work / "tiny-new"))
    was = nnlab(old, *args, "--runs-dir", str(work / "tiny-old"))
    print(
        f"  nnlab sweep, N={n_old}: now {new}, {n_old / new.wall:.0f} trials/s; "
        f"pre-change {was}, {n_old / was.wall:.0f} trials/s: {was / new}"
    )
    shutil.rmtree(work / "tiny-new", ignore_errors=True)
    shutil.rmtree(work / "tiny-old", ignore_errors=True)


def bench_xor100(jobs: int, work: Path, old: Path | None) -> None:
    print(f"\n4. nnlab sweep configs/xor.yaml --seeds 100 --jobs {jobs} (3000 epochs a trial)")
    args = ["sweep", str(ROOT / "configs" / "xor.yaml"), "--seeds", "100", "--jobs", str(jobs),
            "-q"]  # fmt: skip
    new = nnlab(ROOT, *args, "--runs-dir", str(work / "x-new"))
    log = nnlab(ROOT, *args, "--set", "training.log_every=100", "--runs-dir", str(work / "x-log"))
    print(f"  now {new}; with training.log_every=100 {log}")
    if old is not None:
        was = nnlab(old, *args, "--runs-dir", str(work / "x-old"))
        print(f"  pre-change {was}: {was / new} ({was / log} with log_every=100)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", default="1000,5000", help="run folders to read")
    parser.add_argument("--null", default="1000,10000", help="trials for the runner alone")
    parser.add_argument("--tiny", type=int, default=10000, help="tiny trials (this runner)")
    parser.add_argument("--tiny-old", type=int, default=1000, help="... and both runners")
    parser.add_argument("--epochs", type=int, default=20, help="epochs of a tiny trial")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--baseline", default=BASELINE, help="git ref of the pre-change code")
    parser.add_argument("--quick", action="store_true", help="small sizes, a quick look")
    parser.add_argument("--parts", default="1,2,3,4", help="which parts to run (1,2,3,4)")
    args = parser.parse_args()
    if args.quick:
        args.reads, args.null, args.tiny, args.tiny_old = "300", "300", 300, 100
    print(f"bench_sweep_scale: before: {load()}")
    with tempfile.TemporaryDirectory(prefix="nnlab-bench-") as tmp:
        work = Path(tmp)
        old = baseline_tree(args.baseline, work) if args.baseline else None
        parts = set(args.parts.split(","))
        if "1" in parts:
            bench_reading([int(n) for n in args.reads.split(",")], work, old)
        if "2" in parts:
            bench_runner([int(n) for n in args.null.split(",")], work, old)
        if "3" in parts:
            bench_tiny(args.tiny, args.tiny_old, args.epochs, args.jobs, work, old)
        if "4" in parts and not args.quick:
            bench_xor100(args.jobs, work, old)
    print(f"\nafter: {load()}")


if __name__ == "__main__":
    main()
