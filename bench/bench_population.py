"""Populations: many networks of one shape trained in one pass, against their peers, side by
side in one process run.

XOR 2-2-1, full batch, SGD with momentum (configs/xor.yaml), 1000 seeds:
  - nnlab's population (``nnlab.population.engine.Population``), per member and step;
  - a batched PyTorch replica doing the same work (``torch.bmm`` over the members' weights,
    autograd, SGD with momentum, and each member's loss and accuracy read every step), one
    thread, per member and step;
  - nnlab's single-run step (``nnlab.train.Trainer``), per step.
Digits 64-32-10, Adam, batches of 32 (shuffled per member), 20 epochs, 100 seeds:
  - the training loops: the population against 100 single-run Trainers;
  - end to end with the run folders written: ``train_population`` against 100
    ``nnlab.lifecycle.train`` calls.

Contenders run in interleaved rounds (a slow spell of the shared machine hits them alike); each
ratio is the median of the per-round ratios, with their range.

Run: ``.venv/bin/python bench/bench_population.py [--rounds 5]``. PyTorch is a benchmark-only
dependency (``pip install torch==2.13.0``, the CPU build); without it its rows are skipped.
"""

from __future__ import annotations

import argparse
import statistics
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
    single = xor_configs(1, 10 * E)[0]
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
        "single run": [s / (10 * E) for s in t["single run"]],
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--members", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=300, help="XOR epochs per round")
    ap.add_argument("--digits-seeds", type=int, default=100)
    ap.add_argument("--skip-digits", action="store_true")
    args = ap.parse_args()
    print(f"numpy {np.__version__}")
    xor_bench(args)
    if not args.skip_digits:
        digits_bench(args)


if __name__ == "__main__":
    main()
