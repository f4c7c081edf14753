"""Instructions per training step, counted by valgrind's callgrind: repeatable on a busy shared
machine, where times are not (a count changes by well under 1% from run to run).

  - a single run of configs/xor.yaml: instructions per epoch (one full-batch step), from runs
    of 1 and 1 + N epochs (the difference, over N);
  - a population of configs/xor.yaml: instructions per member and step, from runs of E and
    E + N epochs.

Run: ``.venv/bin/python bench/bench_instructions.py [--epochs 1000] [--members 1000]`` (needs
``valgrind``; a few minutes). Compare two trees by running it in each.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(kind: str, epochs: int, members: int) -> None:
    """Train (inside valgrind): a single run, or a population."""
    from nnlab.config import load_config

    cfg = load_config(ROOT / "configs" / "xor.yaml", [f"training.epochs={epochs}"])
    if kind == "single":
        from nnlab.experiment import build
        from nnlab.train import Trainer

        Trainer(build(cfg)).fit()
        return
    from nnlab.population.engine import Population
    from nnlab.population.members import build_members
    from nnlab.population.run import seed_configs

    Population(*build_members(seed_configs(cfg, list(range(members))))).fit()


def count(kind: str, epochs: int, members: int) -> int:
    """Instructions of a whole process that trains ``epochs`` epochs."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
             __file__, "--child", kind, str(epochs), str(members)],
            capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"},
        )  # fmt: skip
    refs = re.search(r"refs:\s+([\d,]+)", proc.stderr)
    if proc.returncode or refs is None:
        sys.exit(f"valgrind failed:\n{proc.stderr[-2000:]}")
    return int(refs.group(1).replace(",", ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=1000, help="N: epochs told apart")
    ap.add_argument("--members", type=int, default=1000)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]))
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    n = args.epochs
    for _ in range(2):  # the first count also compiles the bytecode caches: not counted
        a, b = count("single", 1, 1), count("single", 1 + n, 1)
    print(f"single run of configs/xor.yaml: {(b - a) / n:,.0f} instructions per epoch")
    m, e = args.members, max(1, n // 10)
    a, b = count("population", 20, m), count("population", 20 + e, m)
    print(f"population of {m}: {(b - a) / (e * m):,.0f} instructions per member and step")


if __name__ == "__main__":
    main()
