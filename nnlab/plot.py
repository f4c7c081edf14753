"""Learning curves of runs: a line per run, or per group of seeds a mean line with a band
(min-max or ± one standard deviation); as an image (matplotlib, the ``plot`` extra) or drawn in
the terminal with characters.

The legend names what differs between the lines, by the keys' short names. When there are more
lines than colours (or terminal symbols), the lines are grouped by their differing keys: the
colour (symbol) stands for a value of the swept axis, the key with the most values that fit, and
in an image the line style for a value of a second axis; the legend then lists those values.
"""

from __future__ import annotations

import dataclasses
import io
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnlab.compare.keys import SEED_KEY, differences, group_key
from nnlab.compare.table import Run
from nnlab.errors import ConfigError, NnlabError, did_you_mean

Array = np.ndarray
BANDS = ("minmax", "std")
MARKERS = "*o+x#@%&=~^$ABCDEFGHJKLMNPRSTUVWYZ"
TERMINAL_LINES = 16  # more lines than this share a symbol per value of the swept axis
IMAGE_COLOURS = 10  # tab10
DASHES = ("-", "--", ":", "-.")
LEGEND_TEXT = 60  # characters of a legend entry at most


@dataclass
class Curve:
    """One line: epochs and values (for a group: the mean, with its band and run count)."""

    label: str
    epochs: Array  # (epochs,)
    values: Array  # (epochs,) NaN where a value is missing or not finite
    low: Array | None = None  # (epochs,) the band, for groups
    high: Array | None = None
    n: int = 1
    keys: dict[str, str] = field(default_factory=dict)  # the differing keys' values, as text


def labels(runs: list[Run], skip: tuple[str, ...] = ()) -> list[str]:
    """``initializer=he_normal lr=0.01``: the config keys that differ between ``runs``, by
    their short names; the runs' names when nothing differs."""
    diffs = differences([r.config for r in runs], [r.flat for r in runs], skip)
    if not diffs or not diffs[0]:
        return [r.label for r in runs]
    return [" ".join(f"{k}={v}" for k, v in d.items()) for d in diffs]


def _series(run: Run, metric: str) -> tuple[Array, Array]:
    m = run.metrics
    if metric not in m.columns or not len(m):
        return np.zeros(0), np.zeros(0)
    x = m.column("epoch").copy()
    y = m.column(metric).copy()
    y[~np.isfinite(y)] = np.nan
    return x, y


#: the most points a curve keeps (TensorBoard keeps 1000 of a scalar's): a 10^6-epoch run's
#: curve is drawn from this many epochs, evenly spaced, the first and the last among them
MAX_POINTS = 5000


def thin(epochs: Array, *values: Array | None, limit: int = MAX_POINTS) -> tuple:
    """``epochs`` (e,) and each of ``values`` (e,) at no more than ``limit`` evenly spaced
    epochs, the first and the last kept; as they are when there are no more than that."""
    if len(epochs) <= limit:
        return (epochs, *values)
    keep = np.unique(np.linspace(0, len(epochs) - 1, limit).round().astype(np.intp))
    return (epochs[keep], *(None if v is None else v[keep] for v in values))


def _check(runs: list[Run], metric: str, band: str) -> None:
    available = sorted({c for r in runs for c in r.metrics.columns} - {"epoch"})
    if metric not in available:
        raise ConfigError(
            f"no metric {metric!r} in these runs.{did_you_mean(metric, available)} "
            f"Metrics: {', '.join(available) or 'none'}",
            source="--metric",
        )
    if band not in BANDS:
        raise ConfigError(f"band {band!r}: expected one of {', '.join(BANDS)}", source="--band")


def curves(
    runs: list[Run], metric: str, group_seeds: bool = False, band: str = "minmax"
) -> list[Curve]:
    """The lines of a plot of ``metric``: one per run, or one per group of seeds (the mean
    over the runs that have a finite value at that epoch, and a min-max or ± std band). Runs
    without the metric draw no line."""
    _check(runs, metric, band)
    runs = [r for r in runs if metric in r.metrics.columns and len(r.metrics)]
    if not group_seeds:
        diffs = differences([r.config for r in runs], [r.flat for r in runs])
        names = labels(runs)
        return [
            Curve(name, *thin(*_series(r, metric)), keys=d)
            for r, name, d in zip(runs, names, diffs, strict=True)
        ]
    groups: dict[str, list[Run]] = {}
    for r in runs:
        groups.setdefault(group_key(r.config), []).append(r)
    firsts = [g[0] for g in groups.values()]
    diffs = differences([r.config for r in firsts], [r.flat for r in firsts], (SEED_KEY,))
    names = labels(firsts, skip=(SEED_KEY,))
    out = []
    for name, d, members in zip(names, diffs, groups.values(), strict=True):
        epochs, mean, low, high = thin(*band_of([_series(r, metric) for r in members], band))
        out.append(Curve(f"{name} (n={len(members)})", epochs, mean, low, high, len(members), d))
    return out


def band_of(series: list[tuple[Array, Array]], band: str = "minmax") -> tuple[Array, ...]:
    """The epochs (e,) of a group's runs and, per epoch, the mean over the runs with a finite
    value, and the band: min and max, or the mean ± one sample standard deviation (ddof=1)."""
    epochs = np.unique(np.concatenate([x for x, _ in series])) if series else np.zeros(0)
    table = np.full((len(series), len(epochs)), np.nan)  # (runs, epochs)
    for i, (x, y) in enumerate(series):
        table[i, np.searchsorted(epochs, x)] = y
    with warnings.catch_warnings():  # an epoch no run reached gives NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(table, axis=0)
        if band == "std":
            std = np.nan_to_num(np.nanstd(table, axis=0, ddof=1), nan=0.0)
            return epochs, mean, mean - std, mean + std
        return epochs, mean, np.nanmin(table, axis=0), np.nanmax(table, axis=0)


# ---------------------------------------------------------------- legend


@dataclass
class Legend:
    """The style of each line and what the legend says: ``colour[i]`` is line i's colour (or
    terminal symbol), ``entries[c]`` the text of colour c; with an axis per style, ``dash[i]``
    and ``dash_entries`` likewise for the line style."""

    colour: list[int]
    entries: list[str]
    dash: list[int]
    dash_entries: list[str] = field(default_factory=list)
    grouped: bool = False  # colours stand for an axis's values, not for single lines


def shorten(text: str, limit: int = LEGEND_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def legend(lines: list[Curve], limit: int, dashes: int = 1) -> Legend:
    """A colour per line when ``limit`` allows; otherwise a colour per value of the swept axis
    (the differing key, the seed last, with the most values that fit in ``limit``) and, with
    ``dashes`` > 1, a line style per value of a second axis."""
    n = len(lines)
    if n <= limit:
        return Legend(list(range(n)), [shorten(c.label) for c in lines], [0] * n)
    keys = dict.fromkeys(k for c in lines for k in c.keys)
    values = {k: _in_order(dict.fromkeys(c.keys.get(k, "-") for c in lines)) for k in keys}
    axes = sorted(values, key=lambda k: (k == "seed", -min(len(values[k]), limit + 1)))
    colour_key = next((k for k in axes if len(values[k]) <= limit), axes[0] if axes else None)
    if colour_key is None:  # nothing differs: the lines share their colours in turn
        return Legend(
            [i % limit for i in range(n)], [shorten(c.label) for c in lines[:limit]], [0] * n
        )
    slot, entries = _slots(lines, colour_key, values[colour_key], limit)
    rest = [k for k in axes if k != colour_key and 1 < len(values[k]) <= dashes]
    if not rest:
        return Legend(slot, entries, [0] * n, grouped=True)
    dash, dash_entries = _slots(lines, rest[0], values[rest[0]], dashes)
    return Legend(slot, entries, dash, dash_entries, grouped=True)


def _in_order(values: Iterable[str]) -> list[str]:
    """Numbers from small to large; other values as they came."""
    values = list(values)
    try:
        return sorted(values, key=float)
    except ValueError:
        return values


def _slots(
    lines: list[Curve], key: str, values: list[str], limit: int
) -> tuple[list[int], list[str]]:
    """Line i's slot by its value of ``key``; values beyond ``limit`` - 1 share the last slot
    ('other'). The entries count the lines of each slot."""
    if len(values) > limit:
        values = [*values[: limit - 1], "other"]
    index = {v: i for i, v in enumerate(values)}
    slot = [index.get(c.keys.get(key, "-"), len(values) - 1) for c in lines]
    counts = np.bincount(slot, minlength=len(values))
    entries = [
        shorten(f"{key}={v}" + (f" ({k} lines)" if k > 1 else ""))
        for v, k in zip(values, counts, strict=True)
    ]
    return slot, entries


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
    """Write one panel per metric to ``path`` (PNG, or what its extension says), with one
    legend for all panels beside them; returns the matplotlib figure."""
    plt = pyplot("without -o, nnlab plot draws in the terminal")
    first = next(iter(panels.values()))
    styles = legend(first, IMAGE_COLOURS, len(DASHES))
    colours = [plt.cm.tab10(i % 10) for i in range(max(len(styles.entries), 1))]
    if not styles.grouped:  # a colour per line: beyond ten, the styles take turns
        styles.dash = [(i // 10) % len(DASHES) for i in range(len(first))]
    width = max(len(t) for t in [*styles.entries, *styles.dash_entries, ""])
    n = len(panels)
    fig = plt.figure(figsize=(5.2 * n + 0.8 + 0.075 * width, 4.4), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, (metric, lines) in zip(axes, panels.items(), strict=True):
        _panel(ax, metric, lines, styles, colours, logy)
    fig.legend(*_handles(styles, colours), loc="outside right upper", fontsize="small")
    if title:
        fig.suptitle(title)
    save_figure(fig, path)
    return fig


def _panel(ax: Any, metric: str, lines: list[Curve], styles: Legend, colours: list, logy: bool):
    from matplotlib.ticker import MaxNLocator

    alpha = 0.2 if len(lines) <= 10 else 0.08
    for i, c in enumerate(lines):
        colour, dash = colours[styles.colour[i]], DASHES[styles.dash[i]]
        ax.plot(c.epochs, c.values, dash, color=colour, linewidth=1.2 if styles.grouped else 1.5)
        if c.low is not None and c.high is not None:
            ax.fill_between(c.epochs, c.low, c.high, color=colour, alpha=alpha, linewidth=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(metric + (" (log scale)" if logy else ""))
    if logy and any(np.nanmax(c.values, initial=0) > 0 for c in lines):
        ax.set_yscale("log")
    ax.grid(alpha=0.3)


def _handles(styles: Legend, colours: list) -> tuple[list, list[str]]:
    from matplotlib.lines import Line2D

    if not styles.grouped:
        handles = [
            Line2D([], [], color=colours[styles.colour[i]], linestyle=DASHES[styles.dash[i]])
            for i in range(len(styles.entries))
        ]
        return handles, styles.entries
    handles = [Line2D([], [], color=c, linewidth=3) for c in colours[: len(styles.entries)]]
    handles += [
        Line2D([], [], color="grey", linestyle=d) for d in DASHES[: len(styles.dash_entries)]
    ]
    return handles, [*styles.entries, *styles.dash_entries]


# ---------------------------------------------------------------- terminal


@dataclass
class _Canvas:
    """A grid of characters and the scales from epochs and values to its columns and rows."""

    width: int
    height: int
    x0: float
    x1: float
    y0: float  # on the log10 scale for a log axis
    y1: float
    logy: bool

    def __post_init__(self) -> None:
        self.grid = [[" "] * self.width for _ in range(self.height)]

    def col(self, x: float) -> int:
        return round((x - self.x0) / (self.x1 - self.x0) * (self.width - 1))

    def row(self, y: float) -> int:
        v = math.log10(y) if self.logy else y
        return self.height - 1 - round((v - self.y0) / (self.y1 - self.y0) * (self.height - 1))

    def ylabel(self, r: int) -> str:
        v = self.y1 - r / (self.height - 1) * (self.y1 - self.y0)
        return f"{10**v if self.logy else v:.4g}"


def _usable(v: Array | None, logy: bool) -> Array:
    v = np.asarray(v, dtype=float)
    return np.where(np.isfinite(v) & ((v > 0) if logy else True), v, np.nan)


def _canvas(lines: list[Curve], width: int, height: int, logy: bool) -> _Canvas | None:
    xs = [c.epochs for c in lines if len(c.epochs)]
    ys = [_usable(a, logy) for c in lines for a in (c.values, c.low, c.high) if a is not None]
    finite = np.concatenate([y[np.isfinite(y)] for y in ys]) if ys else np.zeros(0)
    if not xs or not len(finite):
        return None
    x0, x1 = min(x.min() for x in xs), max(x.max() for x in xs)
    lo, hi = finite.min(), finite.max()
    y0, y1 = (math.log10(lo), math.log10(hi)) if logy else (float(lo), float(hi))
    y0, y1 = (y0 - 0.5, y1 + 0.5) if y1 == y0 else (y0, y1)
    x0, x1 = (x0 - 1, x1 + 1) if x1 == x0 else (x0, x1)
    return _Canvas(width, height, float(x0), float(x1), y0, y1, logy)


def _draw_band(cv: _Canvas, c: Curve) -> None:
    """``.`` from the band's low to its high value in each column the curve spans."""
    lo, hi = _usable(c.low, cv.logy), _usable(c.high, cv.logy)
    at = cv.x0 + np.arange(cv.width) / (cv.width - 1) * (cv.x1 - cv.x0)  # (width,) epochs
    for j in np.flatnonzero((at >= c.epochs[0]) & (at <= c.epochs[-1])):
        a, b = np.interp(at[j], c.epochs, lo), np.interp(at[j], c.epochs, hi)
        if math.isfinite(a) and math.isfinite(b):
            for r in range(cv.row(b), cv.row(a) + 1):
                cv.grid[r][j] = "."


def _draw_line(cv: _Canvas, c: Curve, mark: str) -> None:
    """The curve's symbol in every column between its points, interpolated (on the log scale
    for a log axis)."""
    y = _usable(c.values, cv.logy)
    f = np.log10 if cv.logy else (lambda v: v)
    for j in np.flatnonzero(np.isfinite(y)):
        nxt = j + 1 if j + 1 < len(y) and math.isfinite(y[j + 1]) else j
        c0, c1 = cv.col(c.epochs[j]), cv.col(c.epochs[nxt])
        for k in range(c0, max(c0, c1) + 1):
            t = 0.0 if c1 == c0 else (k - c0) / (c1 - c0)
            v = f(y[j]) + t * (f(y[nxt]) - f(y[j]))
            cv.grid[cv.row(10**v if cv.logy else v)][k] = mark


def text_plot(
    lines: list[Curve],
    metric: str,
    columns: int = 80,
    height: int = 18,
    logy: bool = False,
    x_name: str = "epoch",
    logx: bool = False,
) -> str:
    """The curves drawn with characters in ``columns`` characters at most: a symbol per line
    (or, beyond ``TERMINAL_LINES`` lines, per value of the swept axis), ``.`` for the bands,
    values on the left, epochs (or what ``x_name`` says; ``logx``: on a log scale) below, and
    the legend."""
    if logx:
        lines = [dataclasses.replace(c, epochs=np.log10(c.epochs)) for c in lines]
    styles = legend(lines, TERMINAL_LINES)
    probe = _canvas(lines, 10, height, logy)
    if probe is None:
        return f"{metric}: no values to plot"
    margin = max(len(probe.ylabel(r)) for r in (0, height // 2, height - 1)) + 1
    cv = _canvas(lines, max(10, columns - margin - 1), height, logy)
    for c in lines:
        if c.low is not None and c.high is not None and len(c.epochs):
            _draw_band(cv, c)
    for i, c in enumerate(lines):
        _draw_line(cv, c, MARKERS[styles.colour[i] % len(MARKERS)])
    out = [metric + (" (log scale)" if logy else "")]
    for r in range(cv.height):
        label = cv.ylabel(r) if r in (0, height // 2, height - 1) else ""
        out.append(f"{label:>{margin}}|" + "".join(cv.grid[r]).rstrip())
    out.append(" " * margin + "+" + "-" * cv.width)
    out.append(" " * margin + _x_axis(cv, x_name, logx))
    out += [
        shorten(f"  {MARKERS[i % len(MARKERS)]} {e}", columns) for i, e in enumerate(styles.entries)
    ]
    return "\n".join(out)


def _x_axis(cv: _Canvas, name: str = "epoch", log: bool = False) -> str:
    """The first, middle and last epoch under the axis, and the word epoch (or ``name``), in
    its width; ``log``: the positions are log10 of the values."""

    def label(x: float) -> str:
        return f"{10**x:.2g}" if log else f"{x:g}"

    axis = [" "] * (cv.width + 1)
    mid = label((cv.x0 + cv.x1) / 2)
    right = f"{label(cv.x1)} {name}"
    for pos, text in (
        (1, label(cv.x0)),
        ((cv.width - len(mid)) // 2, mid),
        (cv.width + 1 - len(right), right),
    ):
        axis[pos : pos + len(text)] = text
    return "".join(axis).rstrip()
