"""Per-layer statistics for ``training.log_layers: true``: what each layer's pre-activations and
activations look like, how many units are saturated or dead, and the size of its weights and
gradients, at initialization (epoch 0) and after every epoch. Written to ``layers.csv``.

The statistics come from a fixed probe batch (the first ``PROBE`` training samples) run through
the network in evaluation mode after the epoch, and one backward pass on it for the gradients:
they describe the network as it is, and cost one forward and backward pass per epoch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from nnlab.errors import StorageError
from nnlab.files import atomic_write, open_log
from nnlab.nn.layers import LAYERS
from nnlab.runs import number_text

Array = np.ndarray
PROBE = 512
COLUMNS = [
    "epoch", "layer", "name", "type", "activation", "z_mean", "z_std", "a_mean", "a_std",
    "saturated", "dead", "unit_spread", "w_norm", "grad_norm",
]  # fmt: skip
SATURATING = ("sigmoid", "tanh")
DEAD = ("relu",)


def _moments(x: Array | None) -> tuple[float, float]:
    if x is None:
        return math.nan, math.nan
    x = np.asarray(x, np.float64)
    return float(x.mean()), float(x.std())


def saturated_fraction(name: str, A: Array) -> float:
    """Share of (sample, unit) values where a sigmoid or tanh is flat: its slope below 5% of
    the maximum (|z| > 4.4 for sigmoid, |z| > 2.2 for tanh). NaN for other activations."""
    if name == "sigmoid":
        return float(np.mean(A * (1 - A) < 0.05 * 0.25))
    if name == "tanh":
        return float(np.mean(1 - A * A < 0.05))
    return math.nan


def dead_fraction(name: str, A: Array) -> float:
    """Share of ReLU units that output 0 for every probe sample. NaN for other activations."""
    if name not in DEAD:
        return math.nan
    flat = A.reshape(-1, A.shape[-1])
    return float(np.mean(~(flat > 0).any(axis=0)))


def unit_spread(A: Array) -> float:
    """Mean over samples of the standard deviation across a layer's units: 0 when every unit
    computes the same thing (the symmetry that zero initialization never breaks)."""
    flat = np.asarray(A, np.float64).reshape(-1, A.shape[-1])
    return float(flat.std(axis=1).mean())


class LayerStats:
    """Writes layers.csv rows for an experiment, from a fixed probe batch."""

    def __init__(self, exp: Any, path: Path, keep_bytes: int | None = None):
        """Start layers.csv, or with ``keep_bytes`` continue it after its first ``keep_bytes``
        bytes, cut there in place (the rows up to a resumed run's checkpoint, as
        ``runs.log_size_before`` finds them)."""
        self.exp = exp
        self.path = path
        n = min(PROBE, len(exp.data.train))
        self.X = exp.data.train.X[:n]
        self.objective = exp.objective.of([t.take(slice(0, n)) for t in exp.targets["train"]])
        if keep_bytes is None:
            atomic_write(path, ",".join(COLUMNS) + "\n", durable=False)  # a log: never synced
        self._f = open_log(path, keep_bytes)  # never through a symbolic link

    def record(self, epoch: int) -> None:
        exp = self.exp
        model = exp.model
        lines = []
        outs = model.forward(self.X, training=False, logits=exp.logit_flags)
        _, douts = self.objective(outs)
        model.backward(douts, logits=exp.logit_flags)
        for i, layer in enumerate(model.layers):
            fn = layer.activation_fn
            act = fn.name if fn is not None else ""
            Z, A = self._arrays(layer, i)
            if Z is None and A is None and not layer.params:
                continue  # dropout, flatten, pooling: nothing of their own to report
            key = "W" if "W" in layer.params else "gamma"  # a normalization layer's scale
            W, dW = layer.params.get(key), layer.grads.get(key)
            z_mean, z_std = _moments(Z)
            a_mean, a_std = _moments(A)
            row = {
                "epoch": epoch, "layer": i, "name": model.names[i], "type": LAYERS.name_of(layer),
                "activation": act, "z_mean": z_mean, "z_std": z_std, "a_mean": a_mean,
                "a_std": a_std,
                "saturated": saturated_fraction(act, A) if A is not None else math.nan,
                "dead": dead_fraction(act, A) if A is not None else math.nan,
                "unit_spread": unit_spread(A) if A is not None else math.nan,
                "w_norm": float(np.linalg.norm(W)) if W is not None else math.nan,
                "grad_norm": float(np.linalg.norm(dW)) if dW is not None else math.nan,
            }  # fmt: skip
            lines.append(",".join(_text(row[c]) for c in COLUMNS) + "\n")
        try:
            self._f.write("".join(lines))
            self._f.flush()
        except OSError as e:
            raise StorageError(e, self.path) from None

    def _arrays(self, layer: Any, i: int) -> tuple[Array | None, Array | None]:
        """The pre-activation and activation a layer computed on the probe batch."""
        fn = layer.activation_fn
        if hasattr(layer, "_Y"):  # batchnorm, layernorm: their input and their output
            return layer._X, layer._Y
        if hasattr(layer, "_H"):  # recurrent: the states h_t; an rnn's pre-activations too
            return getattr(layer, "_Z", None), layer._H[1:]
        if hasattr(layer, "_Z"):  # dense
            Z = layer._Z
            model, flags = self.exp.model, self.exp.logit_flags
            flags = flags if isinstance(flags, list) else [flags]
            if i in model.outputs and flags[model.outputs.index(i)]:
                return Z, fn(Z)  # a fused output computed only its logits
            return Z, layer._A
        if fn is not None and hasattr(layer, "_X"):  # a standalone activation
            return layer._X, layer._A
        return None, None

    def close(self) -> None:
        try:
            self._f.close()
        except OSError as e:
            raise StorageError(e, self.path) from None


def _text(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, float) and math.isnan(v):
        return ""
    return number_text(v)


def mode_means(
    model: Any, X: Array, passes: int = 10, seed: int = 0, batch: int = 1024
) -> list[dict[str, Any]]:
    """The mean output of every layer over the samples ``X`` in evaluation mode and in
    training mode (dropout on), the latter averaged over ``passes`` draws of the dropout
    masks from a generator seeded with ``seed`` (the model's own generator is restored, and
    so are its buffers: batchnorm's running averages, which training mode updates).

    With inverted dropout the two means agree: kept units are scaled by 1/(1 - rate), so the
    expected training-mode output equals the evaluation-mode one. Without the scaling a
    dropout layer's training-mode mean is (1 - rate) times its evaluation-mode mean, and the
    layers after it see larger inputs at evaluation than they were trained on.

    Returns
    -------
    A dict per layer: layer, name, type, activation, eval_mean, train_mean, ratio
    (train_mean / eval_mean).
    """
    n = X.shape[0]
    k = len(model.layers)
    eval_sum, train_sum = np.zeros(k), np.zeros(k)
    saved = [layer.rng for layer in model.layers]
    buffers = model.buffers.copy()  # training mode updates batchnorm's running averages
    model.set_rng(np.random.default_rng(seed))
    try:
        for start in range(0, n, batch):
            xb = X[start : start + batch]
            for i, out in enumerate(model.layer_outputs(xb, training=False)):
                eval_sum[i] += float(np.sum(out, dtype=np.float64))
            for _ in range(passes):
                for i, out in enumerate(model.layer_outputs(xb, training=True)):
                    train_sum[i] += float(np.sum(out, dtype=np.float64)) / passes
            model.buffers[...] = buffers  # evaluation mode uses the trained running averages
    finally:
        for layer, rng in zip(model.layers, saved, strict=True):
            layer.rng = rng
        model.buffers[...] = buffers
    rows = []
    for i, layer in enumerate(model.layers):
        size = n * int(np.prod(model.shapes[i]))
        e, t = eval_sum[i] / size, train_sum[i] / size
        fn = layer.activation_fn
        rows.append(
            {
                "layer": i,
                "name": model.names[i],
                "type": LAYERS.name_of(layer),
                "activation": fn.name if fn is not None else "",
                "eval_mean": e,
                "train_mean": t,
                "ratio": t / e if e != 0 else math.nan,
            }
        )
    return rows
