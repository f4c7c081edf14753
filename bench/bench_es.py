"""Evolution strategies: a step's perturbed networks evaluated in one pass of the population
engine (``nnlab.es.Perturbed``, what ``optimizer: es`` runs) against a Python loop over them
(each member's weights copied into the single-run model, its forward pass and objective),
side by side in one process run. Both then make the same estimate and update; the loop's
losses are checked against the pass's.

Cases: the threshold toy (1 unit, 5 samples, population 100), XOR 2-2-1 (4 samples, 100),
digits 64-32-10 (a batch of 128, 50) and the same with a population of 200.

Contenders run in interleaved rounds (a slow spell of the shared machine hits them alike);
each ratio is the median of the per-round ratios, with their range.

Run: ``.venv/bin/python bench/bench_es.py [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "threshold 1 unit, 5 samples, population 100": (
        "questions/threshold_es.yaml", [], 300
    ),
    "xor 2-2-1, 4 samples, population 100": (
        "xor.yaml", ["optimizer={name: es, population: 100}"], 300
    ),
    "digits 64-32-10, batch 128, population 50": (
        "digits.yaml",
        ["model.layers.0.units=32",
         "optimizer={name: es, population: 50}", "training.batch_size=128"],
        20,
    ),
    "digits 64-32-10, batch 128, population 200": (
        "digits.yaml",
        ["model.layers.0.units=32",
         "optimizer={name: es, population: 200}", "training.batch_size=128"],
        5,
    ),
}  # fmt: skip


def setup(config: str, overrides: list[str]):
    """The experiment, its stacked members and a batch (inputs, targets, masks)."""
    from nnlab.config import load_config
    from nnlab.es import Perturbed
    from nnlab.experiment import build

    exp = build(load_config(ROOT / "configs" / config, overrides))
    n = min(exp.config["training"]["batch_size"] or len(exp.data.train), len(exp.data.train))
    perturbed = Perturbed(exp, n)
    X = exp.data.train.X[:n]
    T = [t.T[:n] for t in exp.targets["train"]]
    W = [None if t.W is None else t.W[:n] for t in exp.targets["train"]]
    return exp, perturbed, X, T, W


def loop_step(exp, X, T, W, members: np.ndarray) -> np.ndarray:
    """One es step whose members are evaluated one by one on the single-run model."""
    opt, model = exp.optimizer, exp.model
    theta = model.theta.copy()
    opt.ask(theta, members)
    losses = np.empty(len(members))
    for i, m in enumerate(members):
        model.theta[...] = m
        out = model.forward(X, training=True, logits=exp.logit_flags)
        losses[i] = exp.objective(out, T, W)[0]
    model.theta[...] = theta
    opt.tell(losses, model.grad)
    opt.step(model.theta, model.grad)
    return losses


def same_losses(config: str, overrides: list[str]) -> float:
    """The largest difference between the loop's and the pass's losses on one step's noise."""
    exp_a, perturbed, X, T, W = setup(config, overrides)
    exp_b, _, _, _, _ = setup(config, overrides)
    members = np.empty((exp_b.optimizer.population, exp_b.model.n_params), exp_b.model.dtype)
    state = exp_a.optimizer.rng.bit_generator.state
    a = loop_step(exp_b, X, T, W, members)
    exp_a.optimizer.rng.bit_generator.state = state
    exp_a.optimizer.ask(exp_a.model.theta, perturbed.model.theta)
    b = perturbed.objective(perturbed.model.forward(X, training=True, logits=perturbed.flags),
                            T, W)[0]  # fmt: skip
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-30)))


def timed(fn, steps: int, *args) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        fn(*args)
    return (time.perf_counter() - t0) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from nnlab import threads

    with threads.limited(1):
        for label, (config, overrides, steps) in CASES.items():
            exp, perturbed, X, T, W = setup(config, overrides)
            members = np.empty((exp.optimizer.population, exp.model.n_params), exp.model.dtype)
            ratios, loops, passes = [], [], []
            for _ in range(args.rounds):
                loop = timed(loop_step, steps, exp, X, T, W, members)
                one = timed(perturbed.step, steps, X, T, W)
                loops.append(loop)
                passes.append(one)
                ratios.append(loop / one)
            print(
                f"{label}: one pass {statistics.median(passes) * 1e6:,.0f} us a step, a loop "
                f"over the members {statistics.median(loops) * 1e6:,.0f} us: the pass "
                f"{statistics.median(ratios):.1f}x faster (rounds {min(ratios):.1f}-"
                f"{max(ratios):.1f}); losses equal to "
                f"{same_losses(config, overrides):.1e} relative"
            )


if __name__ == "__main__":
    main()
