"""Inputs drawn from a trained variational autoencoder: ``nnlab generate RUN --label 3``.

A VAE's decoder maps a latent z to an input; drawing z from the prior N(0, 1) (instead of from
the encoder, as in training) and decoding it samples new inputs, and a conditional VAE (whose
inputs carry the one-hot label, ``data.label_input``) draws them for a given label: a sample of
p(x | y), which running a classifier backwards cannot give. The model runs as it does for
``nnlab predict`` except that its ``sample`` layers give z ~ N(0, 1), from a generator seeded by
``seed``; the samples are the reconstruction output, in the data's raw units.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnlab.errors import ConfigError, RunError, did_you_mean
from nnlab.nn.latent import Sample
from nnlab.predict import predict
from nnlab.runs import load_model

Array = np.ndarray


@dataclass
class Generated:
    """Samples (labels, n, features) in raw units, a row of n per label (one row, label None,
    for an unconditional VAE)."""

    samples: Array
    labels: list[str | None]
    image_shape: tuple[int, ...] | None


def _labels(meta: dict, wanted: list[str]) -> list[tuple[int | None, str | None]]:
    """(class index, class name) of each label asked for (``all``: every class)."""
    if not meta.get("label_columns"):
        if wanted:
            raise ConfigError(
                "the model is not conditional (its data has no label_input): give no --label",
                "--label",
            )
        return [(None, None)]
    names = [str(c) for c in (meta.get("class_names") or range(meta["n_classes"]))]
    if not wanted:
        raise ConfigError(
            f"the model is conditional: give --label (one of {', '.join(names)}, or all)",
            "--label",
        )
    if wanted == ["all"]:
        return list(enumerate(names))
    out = []
    for w in wanted:
        if w not in names:
            raise ConfigError(
                f"{w!r} is not a class.{did_you_mean(w, names)} Classes: {', '.join(names)}",
                "--label",
            )
        out.append((names.index(w), w))
    return out


def _recon_head(meta: dict) -> str:
    """The name of the output trained on the inputs (the reconstruction)."""
    outputs = meta["model"].get("outputs") or []
    for o in outputs:
        if o["target"] == "inputs":
            return o["layer"]
    raise ConfigError("the model has no output trained on its inputs (target: inputs) to draw")


def generate(run: str | Path, labels: list[str] = (), n: int = 16, seed: int = 0) -> Generated:
    """``n`` inputs drawn for each label (see the module docstring)."""
    if n < 1:
        raise ConfigError(f"-n must be at least 1, got {n}", "-n")
    model, meta = load_model(run)
    samplers = [layer for layer in model.layers if isinstance(layer, Sample)]
    if not samplers:
        raise RunError(
            f"{run}: the model has no sample layer; generate draws from a variational "
            "autoencoder (see configs/questions/cvae.yaml)"
        )
    head = _recon_head(meta)
    rng = np.random.default_rng(seed)
    for layer in samplers:
        layer.prior, layer.rng = True, rng
    width = int(np.prod(model.input_shape))
    c = int(meta.get("label_columns") or 0)
    shift = np.broadcast_to(np.asarray(meta["shift"], np.float64), (width,))[: width - c]
    scale = np.broadcast_to(np.asarray(meta["scale"], np.float64), (width,))[: width - c]
    rows, names = [], []
    for k, name in _labels(meta, list(labels)):
        X = np.zeros((n, width))  # the pixels do not matter: z comes from the prior
        if k is not None:
            X[:, width - c + k] = 1.0
        out = predict(model, meta, X)[head]  # (n, features) as the model saw them, scaled
        rows.append(out.astype(np.float64) * scale + shift)
        names.append(name)
    shape = tuple(meta["image_shape"]) if meta.get("image_shape") else None
    return Generated(np.stack(rows), names, shape)


def grid(g: Generated, path: str | Path) -> None:
    """The samples as a PNG (or SVG/PDF) grid: a row per label (one label: a square grid)."""
    from nnlab.plot import pyplot, save_figure

    if g.image_shape is None:
        raise ConfigError("the samples are not images: write them to a .npy or .csv file", "-o")
    plt = pyplot("without an image file, nnlab generate prints the samples")
    labels, n = g.samples.shape[:2]
    flat = g.samples.reshape(-1, g.samples.shape[-1])  # (labels * n, features)
    cols = int(np.ceil(np.sqrt(n))) if labels == 1 else n
    rows = int(np.ceil(flat.shape[0] / cols))
    fig, axes = plt.subplots(
        rows, cols, figsize=(0.7 * cols + 0.7, 0.7 * rows + 0.5), squeeze=False,
        layout="constrained",
    )  # fmt: skip
    top = float(flat.max()) or 1.0
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < flat.shape[0]:
            ax.imshow(flat[i].reshape(g.image_shape), cmap="gray_r", vmin=0, vmax=top)
        if labels > 1 and i % cols == 0:
            ax.text(-0.3, 0.5, str(g.labels[i // cols]), transform=ax.transAxes, ha="right",
                    va="center")  # fmt: skip
    what = "" if g.labels == [None] else f" for label {', '.join(map(str, g.labels))}"
    fig.suptitle(f"{n} samples drawn from the prior{what}", fontsize="medium")
    save_figure(fig, path)


def write(g: Generated, path: str | Path) -> None:
    """The samples to a .npy (labels, n, features), .npz (an array per label) or .csv file (a
    row per sample, its label first), or an image grid (.png, .svg, .pdf)."""
    from nnlab.files import atomic_write

    suffix = Path(path).suffix.lower()
    if suffix in (".png", ".svg", ".pdf"):
        return grid(g, path)
    if suffix not in (".npy", ".npz", ".csv"):
        raise ConfigError(f"{path}: name the file .png, .svg, .pdf, .npy, .npz or .csv", "-o")
    import io

    if suffix == ".csv":
        lines = ["label," + ",".join(f"x{j}" for j in range(g.samples.shape[-1]))]
        for name, block in zip(g.labels, g.samples, strict=True):
            lines += [f"{'' if name is None else name}," + ",".join(map(repr, r.tolist()))
                      for r in block]  # fmt: skip
        return atomic_write(path, "\n".join(lines) + "\n")
    buf = io.BytesIO()
    if suffix == ".npy":
        np.save(buf, g.samples)
    else:
        np.savez(buf, **{str(name): block for name, block in zip(g.labels, g.samples, strict=True)})
    atomic_write(path, buf.getvalue())
    return None


def text(g: Generated, per_row: int = 8) -> str:
    """The samples drawn with characters, ``per_row`` side by side (images), else a table."""
    from nnlab.explain import heat_text

    if g.image_shape is None:
        return "\n".join(
            f"{name}: " + " ".join(f"{v:.3g}" for v in r) for name, b in zip(g.labels, g.samples,
            strict=True) for r in b
        )  # fmt: skip
    out: list[str] = []
    for name, block in zip(g.labels, g.samples, strict=True):
        if name is not None:
            out.append(f"label {name}:")
        for start in range(0, len(block), per_row):
            maps = [
                heat_text(x.reshape(g.image_shape)).splitlines()
                for x in block[start : start + per_row]
            ]
            out += ["  ".join(parts) for parts in zip(*maps, strict=True)]
            out.append("")
    return "\n".join(out).rstrip()
