"""Speed of the NumPy core against its peers, measured side by side in one process run.

MNIST-sized MLP (784-300-10, ReLU, softmax cross-entropy, Adam, batch 128, float32, a full epoch
of 60,000 samples including the shuffle):
  - the floor: the five matrix products of a training step alone, times the steps of an epoch;
  - nnlab's training loop (nnlab.train.Trainer);
  - PyTorch on the CPU with Adam(fused=True) (its fastest setup here) and with its default Adam;
  - a straightforward NumPy loop (what one writes by hand).
XOR 2-2-1 full batch: time per step of nnlab, PyTorch and plain NumPy (the gradient step alone,
and the same work as nnlab: loss value, accuracy and momentum each step).

Every contender trains on the same MNIST training images (float32 in [0, 1]); nnlab is given
the data as ``nnlab train`` loads it, which also keeps the bytes the images come from and
gathers its shuffled batches from them (the same numbers, a quarter of the memory traffic).

Run: ``make bench`` or ``.venv/bin/python bench/bench_core.py [--epochs 5]``. PyTorch is a
benchmark-only dependency (``pip install torch==2.13.0``, the CPU build); without it the PyTorch
rows are skipped with a note. The data is MNIST when nnlab finds it (NNLAB_DATA_DIR or
../shared/data/mnist), else random data of the same shape (timings do not depend on values).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BATCH, HIDDEN, CLASSES = 128, 300, 10


def mnist_data():
    """The MNIST training data as ``nnlab train`` loads it (float32 in [0, 1], and the bytes
    they come from), and where it came from."""
    from nnlab.data import DATASETS, Data, Split, load

    shared = ROOT.parent / "shared" / "data" / "mnist"
    if "NNLAB_DATA_DIR" not in os.environ and shared.is_dir():
        os.environ["NNLAB_DATA_DIR"] = str(shared)
    try:
        return load(DATASETS.resolve({"name": "mnist"}, "data"), np.random.default_rng(0)), "MNIST"
    except Exception as e:  # no mnist data set or no files: same-shaped random data
        rng = np.random.default_rng(0)
        ints = rng.integers(0, 256, (60000, 784), dtype=np.uint8)
        X = ints / np.float32(255)
        split = Split(X, rng.integers(0, CLASSES, 60000), codes=(ints, 255.0))
        data = Data("mnist", split, None, None, "classification", CLASSES, (784,))
        return data, f"random data ({type(e).__name__})"


def timed(fn, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


# ---------------------------------------------------------------- the floor


def floor_epoch(X: np.ndarray) -> callable:
    rng = np.random.default_rng(0)
    W1 = rng.standard_normal((784, HIDDEN), dtype=np.float32)
    W2 = rng.standard_normal((HIDDEN, CLASSES), dtype=np.float32)
    xb = X[:BATCH].copy()
    Z1 = np.empty((BATCH, HIDDEN), np.float32)
    Z2 = np.empty((BATCH, CLASSES), np.float32)
    dW1, dW2 = np.empty_like(W1), np.empty_like(W2)
    dH = np.empty_like(Z1)
    steps = -(-X.shape[0] // BATCH)

    def epoch():
        for _ in range(steps):
            np.matmul(xb, W1, out=Z1)
            np.matmul(Z1, W2, out=Z2)
            np.matmul(Z1.T, Z2, out=dW2)
            np.matmul(Z2, W2.T, out=dH)
            np.matmul(xb.T, dH, out=dW1)

    return epoch


# ---------------------------------------------------------------- nnlab


def nnlab_trainer(data, epochs: int):
    from nnlab.config import resolve
    from nnlab.experiment import build
    from nnlab.train import Trainer

    cfg = resolve(
        {
            "data": {"name": "mnist" if "mnist" in _datasets() else "xor"},
            "model": {
                "layers": [
                    {
                        "type": "dense",
                        "units": HIDDEN,
                        "activation": "relu",
                        "initializer": "he_normal",
                    },
                    {"type": "dense", "units": CLASSES, "activation": "softmax"},
                ]
            },
            "loss": "categorical_crossentropy",
            "optimizer": {"name": "adam", "lr": 1e-3},
            "training": {"epochs": epochs, "batch_size": BATCH},
        }
    )
    return Trainer(build(cfg, data))


def _datasets() -> list[str]:
    from nnlab.data import DATASETS

    return DATASETS.names()


# ---------------------------------------------------------------- plain NumPy


def numpy_epoch(X: np.ndarray, y: np.ndarray) -> callable:
    """The loop a user writes by hand: allocating, per-parameter Adam."""
    rng = np.random.default_rng(0)
    params = [
        (rng.standard_normal((784, HIDDEN)) * np.sqrt(2 / 784)).astype(np.float32),
        np.zeros(HIDDEN, np.float32),
        (rng.standard_normal((HIDDEN, CLASSES)) * np.sqrt(1 / HIDDEN)).astype(np.float32),
        np.zeros(CLASSES, np.float32),
    ]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    state = {"t": 0}
    n = X.shape[0]

    def epoch():
        perm = rng.permutation(n)
        for i in range(0, n, BATCH):
            idx = perm[i : i + BATCH]
            xb, yb = X[idx], y[idx]
            W1, b1, W2, b2 = params
            h = np.maximum(xb @ W1 + b1, 0)
            z = h @ W2 + b2
            z -= z.max(axis=1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(axis=1, keepdims=True)
            p[np.arange(len(yb)), yb] -= 1
            p /= len(yb)
            dW2, db2 = h.T @ p, p.sum(axis=0)
            dh = (p @ W2.T) * (h > 0)
            dW1, db1 = xb.T @ dh, dh.sum(axis=0)
            state["t"] += 1
            t = state["t"]
            for k, g in enumerate((dW1, db1, dW2, db2)):
                m[k] = 0.9 * m[k] + 0.1 * g
                v[k] = 0.999 * v[k] + 0.001 * g * g
                params[k] -= 1e-3 * (m[k] / (1 - 0.9**t)) / (np.sqrt(v[k] / (1 - 0.999**t)) + 1e-8)

    return epoch


# ---------------------------------------------------------------- PyTorch


def torch_epoch(X: np.ndarray, y: np.ndarray, fused: bool):
    import torch

    torch.manual_seed(0)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    model = torch.nn.Sequential(
        torch.nn.Linear(784, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, CLASSES)
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused or None)
    lossf = torch.nn.CrossEntropyLoss()
    n = X.shape[0]

    def epoch():
        perm = torch.randperm(n)
        for i in range(0, n, BATCH):
            idx = perm[i : i + BATCH]
            opt.zero_grad(set_to_none=True)
            loss = lossf(model(Xt[idx]), yt[idx])
            loss.backward()
            opt.step()

    return epoch


# ---------------------------------------------------------------- XOR


def xor_contenders(steps: int) -> dict[str, callable]:
    """Each contender as a function that runs ``steps`` full-batch steps of a 2-2-1 sigmoid
    net on XOR (SGD with momentum, binary cross-entropy)."""
    from nnlab.config import load_config
    from nnlab.experiment import build
    from nnlab.train import Trainer

    out = {}
    trainer = Trainer(
        build(load_config(ROOT / "configs" / "xor.yaml", [f"training.epochs={steps}"]))
    )

    def nnlab_steps() -> None:
        trainer.epoch = 0  # the trainer resumes where it stopped: run its epochs again
        trainer.fit()

    out["nnlab"] = nnlab_steps

    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    Y = np.array([[0], [1], [1], [0]], np.float32)
    labels = Y[:, 0].astype(np.int64)
    rng = np.random.default_rng(0)
    W1, b1 = rng.standard_normal((2, 2), dtype=np.float32), np.zeros(2, np.float32)
    W2, b2 = rng.standard_normal((2, 1), dtype=np.float32), np.zeros(1, np.float32)
    params = [W1.copy(), b1.copy(), W2.copy(), b2.copy()]  # for the same-work loop
    bufs = [np.zeros_like(a) for a in params]

    def numpy_bare(W1=W1, b1=b1, W2=W2, b2=b2) -> None:  # (arguments: the -= are in place)
        for _ in range(steps):  # the gradient step alone, as one writes it in a tutorial
            h = 1 / (1 + np.exp(-(X @ W1 + b1)))
            p = 1 / (1 + np.exp(-(h @ W2 + b2)))
            d2 = (p - Y) / 4
            dh = (d2 @ W2.T) * h * (1 - h)
            W2 -= 1.0 * (h.T @ d2)
            b2 -= 1.0 * d2.sum(0)
            W1 -= 1.0 * (X.T @ dh)
            b1 -= 1.0 * dh.sum(0)

    def numpy_same_work() -> None:
        W1, b1, W2, b2 = params
        for _ in range(steps):  # what nnlab does per step: the loss and accuracy, and momentum
            h = 1 / (1 + np.exp(-(X @ W1 + b1)))
            z = h @ W2 + b2
            e = np.exp(-np.abs(z))
            loss = float((np.maximum(z, 0) - z * Y + np.log1p(e)).sum()) / 4
            correct = int(np.count_nonzero((z[:, 0] > 0) == labels))
            p = np.where(z >= 0, 1.0, e) / (1 + e)
            d2 = (p - Y) / 4
            dh = (d2 @ W2.T) * h * (1 - h)
            for prm, buf, g in zip(
                params, bufs, (X.T @ dh, dh.sum(0), h.T @ d2, d2.sum(0)), strict=True
            ):
                buf *= 0.9
                buf += g
                prm -= 1.0 * buf
        assert loss >= 0 and correct >= 0

    out["numpy"] = numpy_bare
    out["numpy, same work"] = numpy_same_work
    try:
        import torch
    except ImportError:
        return out
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
    Lt = torch.from_numpy(labels)
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Sigmoid(), torch.nn.Linear(2, 1))
    opt = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9)
    lossf = torch.nn.BCEWithLogitsLoss()

    def torch_steps(same_work: bool) -> callable:
        def run() -> None:
            for _ in range(steps):
                opt.zero_grad()
                z = model(Xt)
                loss = lossf(z, Yt)
                loss.backward()
                opt.step()
                if same_work:  # the loss and accuracy a training log records, as nnlab does
                    loss.item()
                    int(((z[:, 0] > 0).long() == Lt).sum())

        return run

    out["torch"] = torch_steps(False)
    out["torch, same work"] = torch_steps(True)
    return out


def xor_steps(steps: int, rounds: int) -> dict[str, list[float]]:
    """Seconds per step of each XOR contender, per round (interleaved, after a warm-up)."""
    per_round = max(1, steps // rounds)
    contenders = xor_contenders(per_round)
    for fn in contenders.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            times[name] += [t / per_round for t in timed(fn, 1)]
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=5, help="timed epochs (rounds) per contender")
    ap.add_argument("--xor-steps", type=int, default=20000)
    args = ap.parse_args()

    data, source = mnist_data()
    X, y = data.train.X, data.train.y
    print(f"MNIST epoch: 784-{HIDDEN}-{CLASSES}, Adam, batch {BATCH}, float32, {source}")
    print(f"numpy {np.__version__}, {os.cpu_count()} cores")
    contenders = {"floor (5 matmuls/step)": floor_epoch(X)}
    trainer = nnlab_trainer(data, epochs=1)

    def nnlab_epoch() -> None:
        trainer.epoch = 0  # the trainer resumes where it stopped: run its one epoch again
        trainer.fit()

    contenders["nnlab"] = nnlab_epoch
    try:
        import torch

        contenders[f"torch {torch.__version__} Adam(fused=True)"] = torch_epoch(X, y, True)
        contenders["torch Adam (default)"] = torch_epoch(X, y, False)
        print(f"torch threads: {torch.get_num_threads()}")
    except ImportError:
        print("PyTorch is not installed: its rows are skipped (pip install torch==2.13.0)")
    contenders["plain NumPy loop"] = numpy_epoch(X, y)

    for fn in contenders.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(args.epochs):  # interleaved, so load changes hit every contender alike
        for name, fn in contenders.items():
            times[name] += timed(fn, 1)
    med = {k: statistics.median(v) for k, v in times.items()}
    nn = med["nnlab"]
    fused = next((k for k in med if "fused=True" in k), None)
    print(f"\n{'':34}{'s/epoch':>9}{'nnlab/this':>12}")
    for name, t in med.items():
        print(f"{name:34}{t:9.3f}{nn / t:12.2f}")
    print()
    # each ratio from the epochs of one round (measured within a second or two of each other,
    # so a slow spell of the machine hits both), then the median over the rounds
    for label, other, goal in (
        ("nnlab / floor", "floor (5 matmuls/step)", "<= 1.6"),
        ("nnlab / torch fused", fused, "<= 0.75"),
    ):
        if other is None:
            continue
        ratios = [a / b for a, b in zip(times["nnlab"], times[other], strict=True)]
        print(
            f"{label:22} = {statistics.median(ratios):.2f}  (goal {goal}; rounds "
            f"{min(ratios):.2f}-{max(ratios):.2f})"
        )

    xt = xor_steps(args.xor_steps, args.epochs)
    xs = {k: statistics.median(v) for k, v in xt.items()}
    print(
        "\nXOR 2-2-1 full batch, per step: "
        + ", ".join(f"{k} {v * 1e6:.1f} us" for k, v in xs.items())
    )

    def ratio(other: str) -> str:
        ratios = [a / b for a, b in zip(xt["nnlab"], xt[other], strict=True)]
        return f"{statistics.median(ratios):.3f} (rounds {min(ratios):.3f}-{max(ratios):.3f})"

    if "torch" in xs:
        print(f"nnlab / torch          = {ratio('torch')}  (goal <= 0.12)")
        print(
            f"nnlab / torch same work = {ratio('torch, same work')}  (PyTorch also reading the "
            "loss and accuracy each step)"
        )
    print(f"nnlab / plain numpy    = {ratio('numpy')}  (the gradient step alone)")
    print(
        f"nnlab / numpy same work = {ratio('numpy, same work')}  (loss, accuracy and "
        "momentum each step, as nnlab)"
    )


if __name__ == "__main__":
    main()
