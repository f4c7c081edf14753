"""Learning curves of runs: a line per run, or per group of seeds a mean line with a band
(min-max or ± one standard deviation); as an image (matplotlib, the ``plot`` extra) or drawn in
the terminal with characters. The legend names what differs between the lines."""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnlab.compare.keys import SEED_KEY, describe_differences, group_key
from nnlab.compare.table import Run
from nnlab.errors import ConfigError, NnlabError, did_you_mean

Array = np.ndarray
BANDS = ("minmax", "std")
MARKERS = "*o+x#@%&=~^$"


@dataclass
class Curve:
    """One line: epochs and values (for a group: the mean, with its band and run count)."""

    label: str
    epochs: Array  # (epochs,)
    values: Array  # (epochs,) NaN where a value is missing or not finite
    low: Array | None = None  # (epochs,) the band, for groups
    high: Array | None = None
    n: int = 1


def labels(runs: list[Run], skip: tuple[str, ...] = ()) -> list[str]:
    """``initializer=he_normal lr=0.01``: the config keys that differ between ``runs``, by
    their short names; the run folders' names when nothing differs."""
    texts = describe_differences([r.config for r in runs], [r.flat for r in runs], skip)
    return texts if texts is not None else [r.label for r in runs]


def _series(run: Run, metric: str) -> tuple[Array, Array]:
    m = run.metrics
    if metric not in m.columns or not len(m):
        return np.zeros(0), np.zeros(0)
    x = m.column("epoch").copy()
    y = m.column(metric).copy()
    y[~np.isfinite(y)] = np.nan
    return x, y


def curves(
    runs: list[Run], metric: str, group_seeds: bool = False, band: str = "minmax"
) -> list[Curve]:
    """The lines of a plot of ``metric``: one per run, or one per group of seeds (the mean
    over the runs that have a finite value at that epoch, and a min-max or ± std band)."""
    available = sorted({c for r in runs for c in r.metrics.columns} - {"epoch"})
    if metric not in available:
        raise ConfigError(
            f"no metric {metric!r} in these runs.{did_you_mean(metric, available)} "
            f"Metrics: {', '.join(available) or 'none'}",
            source="--metric",
        )
    if band not in BANDS:
        raise ConfigError(f"band {band!r}: expected one of {', '.join(BANDS)}", source="--band")
    if not group_seeds:
        return [Curve(lab, *_series(r, metric)) for r, lab in zip(runs, labels(runs), strict=True)]
    groups: dict[str, list[Run]] = {}
    for r in runs:
        groups.setdefault(group_key(r.config), []).append(r)
    firsts = [g[0] for g in groups.values()]
    out = []
    for lab, members in zip(labels(firsts, skip=(SEED_KEY,)), groups.values(), strict=True):
        series = [_series(r, metric) for r in members]
        epochs = np.unique(np.concatenate([x for x, _ in series])) if series else np.zeros(0)
        table = np.full((len(members), len(epochs)), np.nan)  # (runs, epochs)
        for i, (x, y) in enumerate(series):
            table[i, np.searchsorted(epochs, x)] = y
        with warnings.catch_warnings():  # an epoch no run reached gives NaN, silently
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(table, axis=0)
            if band == "std":
                std = np.nan_to_num(np.nanstd(table, axis=0, ddof=1), nan=0.0)
                low, high = mean - std, mean + std
            else:
                low, high = np.nanmin(table, axis=0), np.nanmax(table, axis=0)
        out.append(Curve(f"{lab} (n={len(members)})", epochs, mean, low, high, len(members)))
    return out


# ---------------------------------------------------------------- image


def pyplot(without: str = "") -> Any:
    """matplotlib.pyplot on the Agg backend, or an error saying how to install it (and what
    works ``without`` it)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise NnlabError(
            "writing an image needs matplotlib: pip install 'nnlab[plot]'"
            + (f" ({without})" if without else "")
        ) from None
    return plt


def save_figure(fig: Any, path: str | Path, dpi: int = 120) -> None:
    """Write a figure atomically in the format of ``path``'s extension (PNG by default) and
    close it."""
    from nnlab.files import atomic_write

    plt = pyplot()
    buf = io.BytesIO()
    suffix = Path(path).suffix.lstrip(".").lower() or "png"
    try:
        fig.savefig(buf, format=suffix, dpi=dpi)
    except ValueError as e:
        plt.close(fig)
        raise ConfigError(f"cannot write a {suffix!r} image ({e})", source=str(path)) from None
    plt.close(fig)
    atomic_write(Path(path), buf.getvalue())


def plot_image(
    panels: dict[str, list[Curve]], path: str | Path, logy: bool = False, title: str = ""
) -> Any:
    """Write one panel per metric to ``path`` (PNG, or what its extension says); returns the
    matplotlib figure."""
    plt = pyplot("without -o, nnlab plot draws in the terminal")
    from matplotlib.ticker import MaxNLocator

    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(6.4 * n, 4.6), squeeze=False)
    styles = ["-", "--", ":", "-."]
    for ax, (metric, lines) in zip(axes[0], panels.items(), strict=True):
        for i, c in enumerate(lines):
            color = plt.cm.tab10(i % 10)
            style = styles[(i // 10) % len(styles)]
            ax.plot(c.epochs, c.values, style, color=color, label=c.label, linewidth=1.5)
            if c.low is not None and c.high is not None:
                ax.fill_between(c.epochs, c.low, c.high, color=color, alpha=0.2, linewidth=0)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(metric + (" (log scale)" if logy else ""))
        if logy:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small" if len(lines) <= 8 else "x-small", loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


# ---------------------------------------------------------------- terminal


def text_plot(
    lines: list[Curve], metric: str, width: int = 72, height: int = 18, logy: bool = False
) -> str:
    """The curves drawn with characters: a marker per line, ``.`` for the bands, the y axis
    labelled on the left, epochs below, and a legend."""
    tf = (lambda v: np.log10(v)) if logy else (lambda v: v)

    def usable(v: Array) -> Array:
        v = np.asarray(v, dtype=float)
        ok = np.isfinite(v) & ((v > 0) if logy else True)
        return np.where(ok, v, np.nan)

    xs = [c.epochs for c in lines if len(c.epochs)]
    ys = [usable(a) for c in lines for a in (c.values, c.low, c.high) if a is not None]
    finite = np.concatenate([y[np.isfinite(y)] for y in ys]) if ys else np.zeros(0)
    if not xs or not len(finite):
        return f"{metric}: no values to plot"
    x0, x1 = min(x.min() for x in xs), max(x.max() for x in xs)
    y0, y1 = float(tf(finite.min())), float(tf(finite.max()))
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    grid = [[" "] * width for _ in range(height)]

    def col(x: float) -> int:
        return round((x - x0) / (x1 - x0) * (width - 1))

    def row(y: float) -> int:
        return height - 1 - round((float(tf(y)) - y0) / (y1 - y0) * (height - 1))

    columns = np.arange(width)
    at = x0 + columns / (width - 1) * (x1 - x0)  # (width,) the epoch under each column
    for c in lines:
        if c.low is None or c.high is None or len(c.epochs) < 1:
            continue
        lo, hi = usable(c.low), usable(c.high)
        for j, x in enumerate(at):
            if x < c.epochs[0] or x > c.epochs[-1]:
                continue
            a, b = np.interp(x, c.epochs, lo), np.interp(x, c.epochs, hi)
            if not (math.isfinite(a) and math.isfinite(b)):
                continue
            for r in range(row(b), row(a) + 1):
                grid[r][j] = "."
    for i, c in enumerate(lines):
        mark = MARKERS[i % len(MARKERS)]
        y = usable(c.values)
        for j in range(len(c.epochs)):
            if not math.isfinite(y[j]):
                continue
            nxt = j + 1 if j + 1 < len(c.epochs) and math.isfinite(y[j + 1]) else j
            c0, c1 = col(c.epochs[j]), col(c.epochs[nxt])
            for k in range(c0, max(c0, c1) + 1):
                t = 0.0 if c1 == c0 else (k - c0) / (c1 - c0)
                value = tf(y[j]) + t * (tf(y[nxt]) - tf(y[j]))
                r = height - 1 - round((value - y0) / (y1 - y0) * (height - 1))
                grid[r][k] = mark

    def ylabel(r: int) -> str:
        v = y1 - r / (height - 1) * (y1 - y0)
        return f"{10**v if logy else v:.4g}"

    ticks = {0, height // 2, height - 1}
    margin = max(len(ylabel(r)) for r in ticks) + 1
    out = [f"{metric}" + (" (log scale)" if logy else "")]
    for r in range(height):
        label = ylabel(r) if r in ticks else ""
        out.append(f"{label:>{margin}}|" + "".join(grid[r]).rstrip())
    out.append(" " * margin + "+" + "-" * width)
    left, mid, right = f"{x0:g}", f"{(x0 + x1) / 2:g}", f"{x1:g}"
    axis = list(" " * (width + 1))
    for pos, text in ((1, left), ((width - len(mid)) // 2, mid), (width + 1 - len(right), right)):
        axis[pos : pos + len(text)] = text
    out.append(" " * margin + "".join(axis).rstrip() + "  epoch")
    for i, c in enumerate(lines):
        out.append(f"  {MARKERS[i % len(MARKERS)]} {c.label}")
    return "\n".join(out)
