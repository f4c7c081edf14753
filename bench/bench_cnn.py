"""Speed of nnlab's convolutional network against PyTorch, side by side in one process run.

The network of configs/mnist_cnn.yaml (28x28x1 -> conv 5x5x16 same, ReLU -> 2x2 max pool ->
conv 5x5x32 same, ReLU -> 2x2 max pool -> dense 128 ReLU -> dense 10 softmax), Adam, batch
128, float32, the same number of threads for both, an epoch of the 60,000 MNIST training images
(shuffle included):
  - the floor: the matrix products of nnlab's training step alone (recorded from a real
    step: the convolutions' blocked im2col products, forward and kernel gradient, the input
    gradient's products, the dense layers' and the sums of bias gradients), on arrays of
    their shapes and layouts, times the steps of an epoch;
  - nnlab's training loop (nnlab.train.Trainer on the config, data as ``nnlab train`` loads it);
  - PyTorch on the CPU (torch.nn.Conv2d, MaxPool2d, Linear; Adam), NCHW as it wants it.
The contenders run one epoch each in turn, round after round, so that a slow spell of the shared
machine hits them alike; each ratio is the median of the per-round ratios, with their range.

Run: ``.venv/bin/python bench/bench_cnn.py [--rounds 3] [--batches N]`` (``--batches``: time
the first N batches of an epoch instead of all 469; the figures are scaled to an epoch).
On a machine that other processes keep busy, ``--threads 1 --cpu`` times the CPU seconds of
each contender instead of the wall clock: the work each does, which the load does not change
(with several threads, CPU time counts the threads' waiting too).
PyTorch is a benchmark-only dependency (``pip install torch==2.13.0``, the CPU build). The
peak memory of a whole ``nnlab train configs/mnist_cnn.yaml`` run is measured by
``--memory`` (a child process, its maximum resident set size).
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "mnist_cnn.yaml"
BATCH = 128


def nnlab_trainer(data, batches: int | None, threads: int | None):
    """nnlab's Trainer on configs/mnist_cnn.yaml with ``data`` (as ``nnlab train`` loads it),
    one epoch (or the first ``batches``), with ``threads`` threads (None: nnlab's choice)."""
    from nnlab.config import load_raw, resolve
    from nnlab.data import Split
    from nnlab.experiment import build
    from nnlab.train import Trainer

    raw = load_raw(CONFIG)
    raw["training"].update(epochs=1, **({"threads": threads} if threads else {}))
    exp = build(resolve(raw), data)
    if batches is not None:
        n = batches * BATCH
        tr = exp.data.train
        codes = None if tr.codes is None else (tr.codes[0][:n], tr.codes[1])
        exp.data.train = Split(tr.X[:n], tr.y[:n], codes=codes)
        exp.targets["train"] = [t.take(slice(0, n)) for t in exp.targets["train"]]
    exp.data.val = None
    trainer = Trainer(exp)

    def epoch() -> None:
        trainer.epoch = 0  # the trainer resumes where it stopped: run its one epoch again
        trainer.fit()

    return trainer, epoch


def step_products(trainer) -> list[tuple]:
    """The matrix products of one nnlab training step, as nnlab makes them: (a, b, out)
    layouts recorded from a real forward and backward pass (``product`` wrapped)."""
    import nnlab.nn.conv as conv
    import nnlab.nn.layers as layers
    import nnlab.nn.norm as norm

    exp = trainer.exp
    seen = []
    real = layers.product

    def recording(a, b, out):
        seen.append(tuple((x.shape, x.flags.f_contiguous and not x.flags.c_contiguous)
                          for x in (a, b, out)))  # fmt: skip
        return real(a, b, out)

    modules = (layers, conv, norm)
    for m in modules:
        m.product = recording
    try:
        xb = exp.data.train.X[:BATCH]
        out = exp.model.forward(xb, training=True, logits=exp.logit_flags)
        _, dout, _ = exp.objective(out, [exp.targets["train"][0].T[:BATCH]], [None])
        exp.model.backward(dout, logits=exp.logit_flags)
    finally:
        for m in modules:
            m.product = real
    return seen


def floor_epoch(products: list[tuple], steps: int):
    """The recorded products of a step on arrays of their shapes and layouts, ``steps``
    times: what an epoch's matrix products cost alone."""
    rng = np.random.default_rng(0)

    def array(shape, transposed):
        a = rng.random(shape[::-1] if transposed else shape, np.float32)
        return a.T if transposed else a

    calls = [tuple(array(*spec) for spec in p) for p in products]

    def epoch() -> None:
        for _ in range(steps):
            for a, b, out in calls:
                np.dot(a, b, out=out)

    return epoch


def torch_epoch(X: np.ndarray, y: np.ndarray, batches: int | None):
    import torch

    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10),
    )  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    lossf = nn.CrossEntropyLoss()
    n = X.shape[0] if batches is None else batches * BATCH
    Xt = torch.from_numpy(X[:n].reshape(-1, 1, 28, 28))
    yt = torch.from_numpy(y[:n].astype(np.int64))

    def epoch() -> None:
        perm = torch.randperm(n)
        for i in range(0, n, BATCH):
            idx = perm[i : i + BATCH]
            opt.zero_grad(set_to_none=True)
            loss = lossf(model(Xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            loss.item()  # the loss of each step, as nnlab's log reads it

    return epoch


def peak_memory() -> None:
    """Train configs/mnist_cnn.yaml for one epoch in a child process; print its peak RSS."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "nnlab", "train", str(CONFIG), "-q", "--set",
         "training.epochs=1", "--runs-dir", "/tmp/nnlab-bench-cnn"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode != 0:
        sys.exit(proc.stderr)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        f"peak memory of `nnlab train configs/mnist_cnn.yaml` (1 epoch, with the evaluation): "
        f"{peak:.0f} MB ({time.perf_counter() - t0:.0f} s)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="timed epochs per contender")
    ap.add_argument("--batches", type=int, default=None, help="time this many batches an epoch")
    ap.add_argument("--memory", action="store_true", help="also measure a run's peak memory")
    ap.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    ap.add_argument("--threads", type=int, default=None, help="threads (default: nnlab's choice)")
    ap.add_argument(
        "--cpu",
        action="store_true",
        help="time the process's CPU seconds, not the wall clock (with --threads 1: the work "
        "done, whatever other processes take of the cores)",
    )
    args = ap.parse_args()
    from bench_core import mnist_data  # the data as nnlab train loads it, or random data

    from nnlab import threads

    data, source = mnist_data()
    trainer, nnlab_epoch = nnlab_trainer(data, args.batches, args.threads)
    exp = trainer.exp
    steps = math.ceil(len(exp.data.train) / BATCH)
    scale = math.ceil(60000 / BATCH) / steps  # to an epoch
    n_threads = threads.choose(exp.model, BATCH, args.threads)
    print(
        f"MNIST CNN ({CONFIG.name}), Adam, batch {BATCH}, float32, {steps} batches timed, {source}"
    )
    print(f"numpy {np.__version__}, {os.cpu_count()} cores, {n_threads} BLAS threads")
    with threads.limited(n_threads):  # the pieces of the image layers follow the threads
        products = step_products(trainer)
    print(f"{len(products)} matrix products a step")
    clock = time.process_time if args.cpu else time.perf_counter
    contenders = {"floor (products alone)": floor_epoch(products, steps), "nnlab": nnlab_epoch}
    if not args.no_torch:
        try:
            import torch

            torch.set_num_threads(n_threads)
            X, y = exp.data.train.X, exp.data.train.y
            contenders[f"torch {torch.__version__}"] = torch_epoch(X, y, args.batches)
            print(f"torch threads: {torch.get_num_threads()}")
        except ImportError:
            print("PyTorch is not installed: its rows are skipped (pip install torch==2.13.0)")
    with threads.limited(n_threads):
        for fn in contenders.values():  # warm-up
            fn()
        times: dict[str, list[float]] = {k: [] for k in contenders}
        for _ in range(args.rounds):
            for name, fn in contenders.items():
                t0 = clock()
                fn()
                times[name].append((clock() - t0) * scale)
    unit = "CPU s/epoch" if args.cpu else "s/epoch"
    print(f"\n{'':26}{unit:>11}  {'rounds':>15}")
    for name, ts in times.items():
        print(f"{name:26}{statistics.median(ts):11.2f}  {min(ts):6.2f}-{max(ts):6.2f}")
    print()
    torch_name = next((k for k in times if k.startswith("torch")), None)
    for label, other, goal in (
        ("nnlab / floor", "floor (products alone)", ""),
        ("nnlab / torch", torch_name, "  (goal <= 1.5)"),
        ("floor / torch", torch_name, ""),
    ):
        if other is None:
            continue
        mine = times["floor (products alone)"] if label.startswith("floor") else times["nnlab"]
        ratios = [a / b for a, b in zip(mine, times[other], strict=True)]
        print(
            f"{label:16} = {statistics.median(ratios):.2f}{goal}  (rounds "
            f"{min(ratios):.2f}-{max(ratios):.2f})"
        )
    if args.memory:
        print()
        peak_memory()


if __name__ == "__main__":
    main()
