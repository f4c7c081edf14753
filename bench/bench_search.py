"""Search against grid on the 8x8 digits: the best validation accuracy reached against the
number of trials, for a 100-point grid, Optuna's random sampler and TPE (median over search
seeds), and what the median pruner saves.

The space: the digits network (64-W-10, a dropout layer after the hidden one, Adam, batch 32)
over the learning rate (1e-4 .. 1e-1, log), the width W (16 .. 256, log), the hidden layer's
initializer (he_normal, glorot_uniform) and the dropout rate (0 .. 0.5). The grid walks
5 learning rates x 5 widths x 2 initializers x 2 dropout rates = 100 points over the same
ranges; a search samples 40 configs. Every config runs ``--seeds`` training seeds (3) and is
scored by their mean validation accuracy at the last epoch (what the study is told). The
grid's curve is the best-so-far over a random order of its points, one order per search seed.

The seed noise: the pooled standard deviation of one seed's accuracy around its config's mean
over the ten best grid points (the bad corners of the space, an lr of 1e-4 after a few epochs,
spread far more and say nothing about telling good configs apart), divided by sqrt(seeds): the
spread of a good config's score. "Within the noise" means at most two of those below the grid's
best.

    python bench/bench_search.py                 # the figures of the README (minutes)
    python bench/bench_search.py --epochs 10 --search-seeds 2 --trials 20   # a quick look
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nnlab.sweeps import load_sweep, run_sweep  # noqa: E402
from nnlab.sweeps.search import load_study  # noqa: E402

BASE = """
description: the digits network with dropout, for bench_search
data: {name: digits, scale: unit, test_split: 0.2, validation_split: 0.1}
model:
  layers:
    - {type: dense, units: 64, activation: relu, initializer: he_normal}
    - {type: dropout, rate: 0.2}
    - {type: dense, units: 10, activation: softmax}
loss: categorical_crossentropy
optimizer: {name: adam, lr: 0.001}
training: {epochs: 30, batch_size: 32, seed: 0}
"""
SPACE = [
    "optimizer.lr=loguniform(1e-4, 1e-1)",
    "model.layers.0.units=int(16, 256, log)",
    "model.layers.0.initializer=choice(he_normal, glorot_uniform)",
    "model.layers.1.rate=uniform(0.0, 0.5)",
]
GRID = [
    "optimizer.lr=logspace(-4, -1, 5)",
    "model.layers.0.units=16,32,64,128,256",
    "model.layers.0.initializer=he_normal,glorot_uniform",
    "model.layers.1.rate=0.0,0.3",
]


def entries(sweep_dir: Path) -> list[dict]:
    return json.loads((sweep_dir / "index.json").read_text())["trials"]


def summaries(sweep_dir: Path) -> list[dict]:
    out = []
    for e in entries(sweep_dir):
        path = sweep_dir / e["run"] / "summary.json"
        out.append({**e, "summary": json.loads(path.read_text()) if path.is_file() else None})
    return out


def run_grid(base: Path, runs: Path, args: argparse.Namespace) -> dict[str, list[float]]:
    """Each grid point's seed accuracies (its overrides as a key)."""
    sweep = load_sweep(base, GRID, [f"training.epochs={args.epochs}"], str(args.seeds),
                       name="grid")  # fmt: skip
    run_sweep(sweep, runs, jobs=args.jobs, quiet=True)
    points: dict[str, list[float]] = {}
    for e in summaries(runs / "sweeps" / "grid"):
        key = json.dumps(e["overrides"], sort_keys=True)
        points.setdefault(key, []).append(e["summary"]["last"]["val_accuracy"])
    return points


def run_search(base: Path, runs: Path, args: argparse.Namespace, sampler: str, seed: int,
               pruner: str = "none") -> tuple[list[float | None], int, int]:  # fmt: skip
    """The value told for each trial in order (None: pruned or failed), the epochs run and the
    trials pruned."""
    name = f"{sampler}-{pruner}-{seed}"
    search = {"sampler": sampler, "trials": args.trials, "seed": seed, "pruner": pruner}
    sweep = load_sweep(base, SPACE, [f"training.epochs={args.epochs}"], str(args.seeds),
                       name=name, search=search)  # fmt: skip
    run_sweep(sweep, runs, jobs=args.jobs, quiet=True)
    sweep_dir = runs / "sweeps" / name
    study = load_study(sweep_dir, name)
    trials = study.get_trials()
    values = [t.value if t.state.name == "COMPLETE" else None for t in trials]
    epochs = sum(e["summary"]["epochs_completed"] for e in summaries(sweep_dir) if e["summary"])
    return values, epochs, sum(t.state.name == "PRUNED" for t in trials)


def best_so_far(values: list[float | None]) -> np.ndarray:
    out, best = [], -math.inf
    for v in values:
        best = max(best, v if v is not None else -math.inf)
        out.append(best)
    return np.array(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seeds", type=int, default=3, help="training seeds per config")
    p.add_argument("--trials", type=int, default=40, help="trials of each search")
    p.add_argument("--search-seeds", type=int, default=5)
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        base = Path(tmp) / "digits_dropout.yaml"
        base.write_text(BASE)
        runs = Path(tmp) / "runs"
        points = run_grid(base, runs, args)
        means = {k: float(np.mean(v)) for k, v in points.items()}
        grid_best = max(means.values())
        top = sorted(points, key=means.get)[-10:]
        resid = np.concatenate([np.array(points[k]) - np.mean(points[k]) for k in top])
        dof = sum(len(points[k]) - 1 for k in top)
        seed_std = float(np.sqrt(np.sum(resid**2) / dof))
        noise = seed_std / math.sqrt(args.seeds)
        grid_epochs = args.epochs * args.seeds * len(points)
        rng = np.random.default_rng(0)
        order = list(means.values())
        curves = {"grid": [], "random": [], "tpe": []}
        for _ in range(args.search_seeds):
            curves["grid"].append(best_so_far(list(rng.permutation(order))))
        epochs = {"random": [], "tpe": [], "tpe+median": []}
        pruned_best, pruned = [], []
        for s in range(args.search_seeds):
            for sampler in ("random", "tpe"):
                values, used, _ = run_search(base, runs, args, sampler, s)
                curves[sampler].append(best_so_far(values))
                epochs[sampler].append(used)
            values, used, n = run_search(base, runs, args, "tpe", s, "median")
            pruned_best.append(best_so_far(values)[-1])
            epochs["tpe+median"].append(used)
            pruned.append(n)
    seconds = time.perf_counter() - t0
    pruning = (epochs, pruned_best, pruned)
    report(args, curves, grid_best, seed_std, noise, pruning, grid_epochs, seconds)
    return 0


def report(args, curves, grid_best, seed_std, noise, pruning, grid_epochs, seconds):
    epochs, pruned_best, pruned = pruning
    k = args.seeds
    print(f"digits, {args.epochs} epochs, {k} seeds per config, median over "
          f"{args.search_seeds} search seeds ({seconds:.0f} s)")  # fmt: skip
    marks = [n for n in (5, 10, 20, 40, 100) if n <= 100]
    print("best val_accuracy (mean of the seeds) after N trials:")
    print(f"  {'N':>10}" + "".join(f"{n:>8}" for n in marks))
    for name, runs in curves.items():
        med = np.median(np.stack(runs), axis=0)
        cells = [f"{med[n - 1]:8.4f}" if n <= len(med) else f"{'':>8}" for n in marks]
        print(f"  {name:>10}" + "".join(cells))
    print(f"grid best (100 points): {grid_best:.4f}; seed noise: one seed's std {seed_std:.4f}, "
          f"of a {k}-seed mean {noise:.4f}")  # fmt: skip
    for name in ("random", "tpe"):
        at = float(np.median([c[min(len(c), args.trials) - 1] for c in curves[name]]))
        gap = grid_best - at
        verdict = "within the noise" if gap <= 2 * noise else "NOT within the noise"
        print(f"  {name} at {args.trials} trials: {at:.4f}, {gap:+.4f} below the grid's best "
              f"({gap / noise:+.1f} x the noise): {verdict}")  # fmt: skip
    full = np.median(epochs["tpe"])
    used = np.median(epochs["tpe+median"])
    best_full = float(np.median([c[-1] for c in curves["tpe"]]))
    best_pruned = float(np.median(pruned_best))
    saved = 1 - used / full
    print(f"median pruner (TPE, {args.trials} trials, {np.median(pruned):.0f} pruned): "
          f"{used:.0f} epochs against {full:.0f} without ({saved:.0%} saved; the grid: "
          f"{grid_epochs}); best {best_pruned:.4f} against {best_full:.4f} "
          f"({(best_full - best_pruned) / noise:+.1f} x the noise)")  # fmt: skip
    ok = saved >= 0.4 and best_full - best_pruned <= 2 * noise
    print(f"  goal (>= 40% saved, best within the noise): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    sys.exit(main())
