"""Populations: many networks of one shape trained in one pass, against their peers, side by
side in one process run.

XOR 2-2-1, full batch, SGD with momentum (configs/xor.yaml), 1000 seeds:
  - nnlab's population (``nnlab.population.engine.Population``), per member and step;
  - a batched PyTorch replica doing the same work (``torch.bmm`` over the members' weights,
    autograd, SGD with momentum, and each member's loss and accuracy read every step), one
    thread, per member and step;
  - nnlab's single-run step (``nnlab.train.Trainer``), per step.
End to end, as a user runs them (``python -m nnlab sweep ... -q`` processes, run folders
written in both):
  - ``nnlab sweep configs/xor.yaml --seeds 1000 --jobs 2`` against the same with
    ``--population off``, which is timed on the first ``--off-seeds`` seeds (100) and scaled
    linearly to 1000 (its trials are alike: one process-run each, the same work);
  - digits 64-32-10, Adam, batches of 32 (shuffled per member), 20 epochs, 100 seeds, ``--jobs
    2``, against ``--population off`` (on the first ``--off-digits-seeds`` seeds, 20, scaled
    linearly).
With ``--digits-loops``, also in one process: the digits population's training loop against
100 single-run Trainers, and ``train_population`` against 100 ``nnlab.lifecycle.train`` calls.

Contenders run in interleaved rounds (a slow spell of the shared machine hits them alike); each
ratio is the median of the per-round ratios, with their range.

Run: ``.venv/bin/python bench/bench_population.py [--rounds 5]``. PyTorch is a benchmark-only
dependency (``pip install torch==2.13.0``, the CPU build); without it its rows are skipped.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
XOR = ROOT / "configs" / "xor.yaml"
DIGITS = ROOT / "configs" / "digits.yaml"


def xor_configs(seeds: int, epochs: int) -> list[dict]:
    from nnlab.config import load_config

    base = load_config(XOR, [f"training.epochs={epochs}"])
    from nnlab.population.run import seed_configs

    return seed_configs(base, list(range(seeds)))


def population_steps(configs: list[dict]):
    """A function that trains a new population of ``configs`` (its loop only: rows are kept
    in memory and dropped, as a run writes them to files)."""
    from nnlab.population.engine import Population
    from nnlab.population.members import build_members

    template, members = build_members(configs)

    def run() -> float:
        pop = Population(template, members)
        t0 = time.perf_counter()
        pop.fit()
        return time.perf_counter() - t0

    return run


def single_steps(config: dict):
    from nnlab.experiment import build
    from nnlab.train import Trainer

    trainer = Trainer(build(config))

    def run() -> float:
        trainer.epoch = 0  # the trainer resumes where it stopped: run its epochs again
        t0 = time.perf_counter()
        trainer.fit()
        return time.perf_counter() - t0

    return run


def torch_xor(members: int, steps: int):
    """The batched PyTorch replica of XOR 2-2-1 training, ``members`` networks at once."""
    import torch

    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    X = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=torch.float32)
    Y = torch.tensor([[0], [1], [1], [0]], dtype=torch.float32)
    Xb, Yb = X.expand(members, 4, 2), Y.expand(members, 4, 1)
    labels = Y[:, 0].long()
    W1 = torch.randn(members, 2, 2, generator=gen).requires_grad_()
    b1 = torch.zeros(members, 1, 2, requires_grad=True)
    W2 = torch.randn(members, 2, 1, generator=gen).requires_grad_()
    b2 = torch.zeros(members, 1, 1, requires_grad=True)
    opt = torch.optim.SGD([W1, b1, W2, b2], lr=1.0, momentum=0.9)
    bce = torch.nn.functional.binary_cross_entropy_with_logits

    def run() -> float:
        t0 = time.perf_counter()
        for _ in range(steps):
            opt.zero_grad()
            z = torch.bmm(torch.sigmoid(torch.bmm(Xb, W1) + b1), W2) + b2  # (M, 4, 1)
            loss = bce(z, Yb, reduction="none").mean(dim=(1, 2))  # each member's loss
            loss.sum().backward()  # the members' gradients are independent
            opt.step()
            loss.detach().numpy()  # each member's loss and accuracy, as nnlab records them
            ((z.detach()[:, :, 0] > 0).long() == labels).sum(dim=1).numpy()
        return time.perf_counter() - t0

    return run


def rounds(contenders: dict, n: int) -> dict[str, list[float]]:
    """Seconds of each contender per round, interleaved, after a warm-up round."""
    for fn in contenders.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(n):
        for name, fn in contenders.items():
            times[name].append(fn())
    return times


def ratio(a: list[float], b: list[float]) -> str:
    r = [x / y for x, y in zip(a, b, strict=True)]
    return f"{statistics.median(r):.3g} (rounds {min(r):.3g}-{max(r):.3g})"


def xor_bench(args) -> None:
    M, E = args.members, args.epochs
    print(f"XOR 2-2-1, full batch, SGD momentum, float32: {M} seeds, {E} epochs a round")
    contenders = {"population": population_steps(xor_configs(M, E))}
    single = xor_configs(1, E)[0]
    contenders["single run"] = single_steps(single)
    try:
        contenders["torch bmm"] = torch_xor(M, E)
        import torch

        print(f"torch {torch.__version__}, 1 thread")
    except ImportError:
        print("PyTorch is not installed: its row is skipped (pip install torch==2.13.0)")
    t = rounds(contenders, args.rounds)
    per = {  # seconds per member and step
        "population": [s / (M * E) for s in t["population"]],
        "single run": [s / E for s in t["single run"]],
    }
    if "torch bmm" in t:
        per["torch bmm"] = [s / (M * E) for s in t["torch bmm"]]
    for k, v in per.items():
        print(f"  {k:12} {statistics.median(v) * 1e9:9.0f} ns per member and step")
    if "torch bmm" in per:
        print(f"  population / torch bmm   = {ratio(per['population'], per['torch bmm'])}"
              "  (goal <= 0.5)")  # fmt: skip
    print(f"  single run / population  = {ratio(per['single run'], per['population'])}"
          "  (goal >= 50)")  # fmt: skip


def digits_configs(seeds: int) -> list[dict]:
    from nnlab.config import load_config
    from nnlab.population.run import seed_configs

    base = load_config(DIGITS, ["model.layers.0.units=32", "training.epochs=20"])
    return seed_configs(base, list(range(seeds)))


def digits_bench(args) -> None:
    from nnlab.lifecycle import train
    from nnlab.population.run import train_population

    n = args.digits_seeds
    cfgs = digits_configs(n)
    print(f"\ndigits 64-32-10, Adam, batch 32, 20 epochs: {n} seeds")
    singles = [single_steps(c) for c in cfgs]
    loops = {
        "population": population_steps(cfgs),
        "single runs": lambda: sum(run() for run in singles),
    }
    t = rounds(loops, max(1, args.rounds // 2))
    for k, v in t.items():
        print(f"  loop, {k:11} {statistics.median(v):7.2f} s")
    print(f"  loop: single runs / population = {ratio(t['single runs'], t['population'])}"
          "  (goal >= 5)")  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="bench-population-"))
    count = iter(range(10**6))

    def population_end_to_end() -> float:
        k = next(count)
        t0 = time.perf_counter()
        train_population(cfgs, [tmp / f"p{k}" / f"seed-{i}" for i in range(n)])
        return time.perf_counter() - t0

    def singles_end_to_end() -> float:
        k = next(count)
        t0 = time.perf_counter()
        for i, c in enumerate(cfgs):
            train(c, run_dir=tmp / f"s{k}" / f"seed-{i}")
        return time.perf_counter() - t0

    ends = {"population": population_end_to_end, "single runs": singles_end_to_end}
    t = rounds(ends, max(1, args.rounds // 2))
    for k, v in t.items():
        print(f"  with run folders, {k:11} {statistics.median(v):7.2f} s")
    print(f"  with run folders: single runs / population = "
          f"{ratio(t['single runs'], t['population'])}")  # fmt: skip


def sweep_seconds(runs: Path, spec: Path, seeds: int, *options: str) -> float:
    """Wall seconds of ``nnlab sweep SPEC --seeds N OPTIONS -q`` as a process, in a fresh runs
    folder (removed after); checks that every trial completed into its run folder."""
    shutil.rmtree(runs, ignore_errors=True)
    command = [sys.executable, "-m", "nnlab", "sweep", str(spec), "--seeds", str(seeds),
               *options, "--runs-dir", str(runs), "-q"]  # fmt: skip
    t0 = time.perf_counter()
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if out.returncode != 0 or f"{seeds} trials: {seeds} completed" not in out.stdout:
        raise SystemExit(f"{' '.join(command)}: {out.stdout}{out.stderr}")
    folders = [p for p in (runs / "sweeps").glob("*/trials/*") if (p / "model.npz").exists()]
    assert len(folders) == seeds, len(folders)
    shutil.rmtree(runs, ignore_errors=True)
    return seconds


def sweep_bench(name: str, spec: Path, seeds: int, off_seeds: int, options: list[str],
                rounds_: int, goal: float) -> None:  # fmt: skip
    """A sweep with populations against ``--population off`` on ``off_seeds`` seeds, scaled
    to ``seeds`` (the trials are alike), interleaved rounds."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-population-sweep-"))
    print(f"\n{name}: nnlab sweep {spec.relative_to(ROOT)} --seeds {seeds} {' '.join(options)}")
    scale = seeds / off_seeds
    on, off = [], []
    for _ in range(rounds_):
        on.append(sweep_seconds(tmp / "on", spec, seeds, *options))
        off.append(sweep_seconds(tmp / "off", spec, off_seeds, *options, "--population", "off")
                   * scale)  # fmt: skip
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"  populations          {statistics.median(on):8.1f} s  (rounds "
          f"{', '.join(f'{x:.1f}' for x in on)})")  # fmt: skip
    print(f"  --population off     {statistics.median(off):8.1f} s  ({off_seeds} seeds timed, "
          f"x{scale:g}; rounds {', '.join(f'{x:.1f}' for x in off)})")  # fmt: skip
    print(f"  off / populations    = {ratio(off, on)}  (goal >= {goal:g})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--members", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=3000, help="XOR epochs per round")
    ap.add_argument("--sweep-rounds", type=int, default=2)
    ap.add_argument("--off-seeds", type=int, default=100)
    ap.add_argument("--off-digits-seeds", type=int, default=20)
    ap.add_argument("--digits-seeds", type=int, default=100)
    ap.add_argument("--skip-steps", action="store_true", help="no XOR step figures")
    ap.add_argument("--skip-sweeps", action="store_true", help="no end-to-end sweeps")
    ap.add_argument("--digits-loops", action="store_true", help="the in-process digits rows")
    args = ap.parse_args()
    print(f"numpy {np.__version__}")
    if not args.skip_steps:
        xor_bench(args)
    if not args.skip_sweeps:
        sweep_bench("end to end, XOR 2-2-1, 3000 epochs", XOR, args.members, args.off_seeds,
                    ["--jobs", "2"], args.sweep_rounds, 20)  # fmt: skip
        digits = ["-s", "model.layers.0.units=32", "-s", "training.epochs=20", "--jobs", "2"]
        name = "end to end, digits 64-32-10, batch 32, 20 epochs"
        sweep_bench(name, DIGITS, args.digits_seeds, args.off_digits_seeds, digits,
                    args.sweep_rounds, 5)  # fmt: skip
    if args.digits_loops:
        digits_bench(args)


if __name__ == "__main__":
    main()
