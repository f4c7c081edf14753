"""Which axis of a sweep matters: each axis's share of the variance of the objective.

The trials come as a table (a list of dicts or a pandas DataFrame): a column per axis (numbers
or categories), the objective, and optionally a seed column. Rows with the same axis values are
the seeds of one config; the objective is averaged over them, and the shares are of the variance
of these config means. Two methods:

- ``anova``: the functional ANOVA of a complete grid (every combination of the axes' values
  present), exact. Each level of an axis weighs the same; the main effect of axis i is the mean
  over the other axes minus the grand mean, an interaction the mean over the remaining axes
  minus its lower-order terms, and the variances of these terms add up to the variance of the
  config means exactly (main effects + pairs + the higher-order rest = 1).
- ``fanova``: fANOVA (Hutter et al. 2014) through Optuna's ``FanovaImportanceEvaluator``, for
  any set of trials (random or Bayesian search, incomplete grids): a random forest fitted to the
  config means, its variance decomposed over the search space (uniform in each axis, on the log
  scale for a log axis). Main effects only; the rest (1 - their sum) is the interactions.

How stable a share is over seeds: a bootstrap over seeds (a seeded generator). When every config
has the same seeds, seeds are drawn with replacement jointly (a seed's shared effect, its data
split, stays shared); otherwise each config's values are drawn within the config. Each draw
recomputes the shares; the interval is the basic bootstrap interval (the 2.5 and 97.5
percentiles of the draws reflected about the estimate, within [0, 1]), and the spread the
standard deviation of the draws.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from nnlab.errors import ConfigError, DataError
from nnlab.fanova import Fanova

METHODS = ("auto", "anova", "fanova")
BOOTSTRAP = {"anova": 1000, "fanova": 20}  # draws by default: the forest is refit per draw


@dataclass(frozen=True)
class Share:
    """The share of the variance of the config means that a term explains.

    ``term`` is the axis, ``a × b`` for an interaction, or the rest of the interactions;
    ``axes`` the axes it involves (empty for the rest); ``share`` is the estimate from all
    seeds; ``low``/``high`` its 95% basic bootstrap interval and ``spread`` the standard
    deviation of the bootstrap draws over seeds (nan without seeds to draw). ``levels``
    (anova, main effects): each level's mean objective, averaged over the other axes.
    """

    term: str
    axes: tuple[str, ...]
    share: float
    low: float = math.nan
    high: float = math.nan
    spread: float = math.nan
    levels: tuple[tuple[Any, float], ...] = ()


@dataclass(frozen=True)
class Importance:
    """The importance of a sweep's axes, ranked.

    ``axes``: one Share per axis, largest first (an axis with one value has share 0);
    ``interactions``: anova, each pair of axes, largest first, then the higher-order rest (3
    axes or more); fanova, one rest term (1 - the main effects). ``variance`` is the variance
    (ddof=0) of the config means; ``seed_share`` the share of the variance of all trials that
    lies between the seeds of a config (nan with one value per config). ``dropped`` counts the
    trials left out for a non-finite objective.
    """

    method: str
    objective: str
    axes: list[Share]
    interactions: list[Share]
    variance: float
    seed_share: float
    n_configs: int
    n_trials: int
    dropped: int = 0
    n_boot: int = 0
    notes: list[str] = field(default_factory=list)

    def frame(self) -> pd.DataFrame:
        """A row per term (the axes, then the interactions): term, share, low, high, spread."""
        rows = [
            {"term": s.term, "share": s.share, "low": s.low, "high": s.high, "spread": s.spread}
            for s in [*self.axes, *self.interactions]
        ]
        return pd.DataFrame(rows, columns=["term", "share", "low", "high", "spread"])


def importance(
    trials: pd.DataFrame | Sequence[Mapping[str, Any]],
    axes: Sequence[str],
    objective: str,
    *,
    seed: str | None = "seed",
    method: Literal["auto", "anova", "fanova"] = "auto",
    distributions: Mapping[str, Any] | None = None,
    n_boot: int | Mapping[str, int] | None = None,
    rng_seed: int = 0,
    n_trees: int = 64,
) -> Importance:
    """Each axis's share of the variance of the objective over a sweep's trials, ranked.

    Parameters
    ----------
    trials : DataFrame or list of dicts
        A row per trial (run): the ``axes`` columns, the ``objective`` column (trials where it
        is not finite are left out) and, if any, the ``seed`` column. Rows with equal axis
        values are seeds of one config; the seed column lets the bootstrap draw seeds jointly.
    axes : list of str
        The columns that vary (numbers, strings, booleans; other values are compared as text).
    objective, seed : str
        The column to explain, and the seed column (None: none).
    method : 'auto', 'anova' or 'fanova'
        auto: the exact functional ANOVA when the configs form a complete grid, else fANOVA.
    distributions : mapping axis -> optuna distribution, optional
        fanova: the search space of an axis (a sampled axis's own distribution); the others
        are inferred from the values (numbers: a float range, on the log scale when all are
        positive and spread more evenly in log; anything else: categorical).
    n_boot : int or mapping method -> int, optional
        Bootstrap draws over seeds (default 1000 for anova, 20 for fanova; 0: none); a mapping
        gives the draws of each method (``{"anova": 1000, "fanova": 0}``: no forest refits).
    rng_seed : int
        Seeds the bootstrap's generator and the forest.
    n_trees : int
        fanova: trees in the forest (Optuna's default 64; the time grows with it).
    """
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; one of {', '.join(METHODS)}", "method")
    configs = _configs(_table(trials, axes, objective, seed), axes, objective, seed)
    chosen = _method(configs, method)
    draws = _bootstrap_means(configs, _draws(n_boot, chosen), rng_seed)
    if chosen == "anova":
        mains, inter = _anova(configs, draws)
    else:
        mains, inter = _fanova(configs, draws, distributions or {}, n_trees=n_trees, seed=rng_seed)
    return Importance(
        method=chosen,
        objective=objective,
        axes=sorted(mains, key=lambda s: -s.share),
        interactions=inter,
        variance=float(np.var(configs.means)),
        seed_share=configs.seed_share(),
        n_configs=len(configs.means),
        n_trials=configs.n_trials,
        dropped=configs.dropped,
        n_boot=0 if draws is None else len(draws),
        notes=configs.notes,
    )


def _draws(n_boot: int | Mapping[str, int] | None, method: str) -> int:
    """The bootstrap draws asked for ``method`` (its default when None or not in a mapping)."""
    if isinstance(n_boot, Mapping):
        return n_boot.get(method, BOOTSTRAP[method])
    return BOOTSTRAP[method] if n_boot is None else n_boot


def _method(configs: _Configs, method: str) -> str:
    """anova for a complete grid (when asked or auto), fanova otherwise."""
    if len(configs.keys) < 2:
        raise DataError("importance needs at least 2 configs with a finite objective")
    if method == "anova" and not configs.is_grid():
        raise DataError(
            f"the configs do not form a complete grid of {', '.join(configs.axes)} "
            f"({len(configs.keys)} of {configs.grid_size()} combinations): use fanova"
        )
    return "anova" if method == "anova" or (method == "auto" and configs.is_grid()) else "fanova"


# ---------------------------------------------------------------- the trials, by config


@dataclass
class _Configs:
    """The trials grouped by config: the axis values of each (normalized), each one's finite
    objective values (ordered by seed when there is a seed column) and their seeds."""

    axes: list[str]
    keys: list[tuple]  # a tuple of axis values per config
    values: list[np.ndarray]  # (n_c,) per config
    seeds: list[np.ndarray] | None
    n_trials: int
    dropped: int
    notes: list[str]

    @property
    def means(self) -> np.ndarray:
        return np.array([v.mean() for v in self.values])  # (n_configs,)

    def levels(self, i: int) -> list:
        """The distinct values of axis i, sorted (numbers by value, the rest as text)."""
        distinct = list(dict.fromkeys(k[i] for k in self.keys))
        try:
            return sorted(distinct)
        except TypeError:
            return sorted(distinct, key=lambda x: (type(x).__name__, str(x)))

    def grid_size(self) -> int:
        return math.prod(len(self.levels(i)) for i in range(len(self.axes)))

    def is_grid(self) -> bool:
        return len(self.keys) == self.grid_size()

    def seed_share(self) -> float:
        """Within-config sum of squares over the total sum of squares of all trials."""
        y = np.concatenate(self.values)
        total = float(np.sum((y - y.mean()) ** 2))
        within = sum(float(np.sum((v - v.mean()) ** 2)) for v in self.values)
        if all(v.size < 2 for v in self.values):
            return math.nan
        return within / total if total > 0 else 0.0


def _scalar(x: Any) -> Any:
    """An axis value as a hashable scalar: numbers, strings, booleans and None as they are
    (NumPy scalars as Python's), anything else as its JSON text."""
    if isinstance(x, np.generic):
        x = x.item()
    if x is None or isinstance(x, str | bool | int | float):
        return None if isinstance(x, float) and math.isnan(x) else x
    return json.dumps(x, sort_keys=True, default=str)


def _table(
    trials: pd.DataFrame | Sequence[Mapping[str, Any]],
    axes: Sequence[str],
    objective: str,
    seed: str | None,
) -> pd.DataFrame:
    frame = trials if isinstance(trials, pd.DataFrame) else pd.DataFrame.from_records(trials)
    if not axes:
        raise ConfigError("no axes to rank", "axes")
    if seed is not None and seed in axes:
        raise ConfigError(f"the seed column {seed!r} cannot be an axis", "axes")
    for col in [*axes, objective]:
        if col not in frame.columns:
            have = ", ".join(map(str, frame.columns)) or "none"
            raise DataError(f"the trials have no column {col!r} (columns: {have})")
    return frame


def _configs(
    frame: pd.DataFrame, axes: Sequence[str], objective: str, seed: str | None
) -> _Configs:
    y = pd.to_numeric(frame[objective], errors="coerce").to_numpy(dtype=np.float64)
    keep = np.isfinite(y)
    keys = [tuple(_scalar(x) for x in row) for row in frame[list(axes)].itertuples(index=False)]
    seeds = None
    if seed is not None and seed in frame.columns:
        seeds = pd.to_numeric(frame[seed], errors="coerce").to_numpy(dtype=np.float64)
        seeds = seeds if np.isfinite(seeds[keep]).all() else None  # a run without a seed
    groups: dict[tuple, list[int]] = {}
    for i, key in enumerate(keys):
        if keep[i]:
            groups.setdefault(key, []).append(i)
    values, seed_lists = [], []
    for rows in groups.values():
        idx = np.array(rows)
        if seeds is not None:
            idx = idx[np.argsort(seeds[idx], kind="stable")]
            seed_lists.append(seeds[idx])
        values.append(y[idx])
    dropped = int(np.sum(~keep))
    notes = [f"{dropped} trials without a finite {objective} left out"] if dropped else []
    seed_lists = seed_lists if seeds is not None else None
    return _Configs(list(axes), list(groups), values, seed_lists, int(keep.sum()), dropped, notes)


# ---------------------------------------------------------------- bootstrap over seeds


def _bootstrap_means(configs: _Configs, n_boot: int, rng_seed: int) -> np.ndarray | None:
    """Config means over ``n_boot`` draws of seeds with replacement, shape (n_boot,
    n_configs); None when no config has two values (nothing to draw) or n_boot is 0."""
    if n_boot <= 0 or all(v.size < 2 for v in configs.values):
        return None
    rng = np.random.default_rng(rng_seed)
    joint = _shared_seeds(configs)
    if joint is not None:
        idx = rng.integers(0, joint.shape[1], size=(n_boot, joint.shape[1]))  # (B, S)
        return joint[:, idx].mean(axis=-1).T  # (B, C)
    n = np.array([v.size for v in configs.values])  # (C,)
    padded = np.zeros((len(n), n.max()))  # (C, max n)
    for c, v in enumerate(configs.values):
        padded[c, : v.size] = v
    out = np.empty((n_boot, len(n)))
    chunk = max(1, 2_000_000 // padded.size)  # bounded memory for large sweeps
    rows = np.arange(len(n))[None, :, None]
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        idx = (rng.random((b, *padded.shape)) * n[None, :, None]).astype(np.int64)  # (b, C, m)
        mask = np.arange(padded.shape[1])[None, None, :] < n[None, :, None]
        out[start : start + b] = np.sum(padded[rows, idx] * mask, axis=-1) / n
    return out


def _shared_seeds(configs: _Configs) -> np.ndarray | None:
    """The values as an array (C, S) when every config has the same S >= 2 seeds, each once."""
    if configs.seeds is None:
        return None
    first = configs.seeds[0]
    if first.size < 2 or len(set(first.tolist())) != first.size:
        return None
    if any(s.shape != first.shape or not np.array_equal(s, first) for s in configs.seeds):
        return None
    return np.stack(configs.values)


def _interval(point: float, draws: np.ndarray | None, **kw: Any) -> Share:
    """A share with its basic bootstrap interval: [2 est - q97.5, 2 est - q2.5] of the
    draws, within [0, 1]. Drawing seeds adds noise, which moves every draw's shares toward
    the middle (small ones up, large ones down) as the seeds' noise moved the estimate away
    from the noise-free shares; the basic interval turns that shift back (the percentile
    interval would exclude a noise-free share of 0 by construction)."""
    point = float(point)
    if draws is None:
        return Share(share=point, **kw)
    q_low, q_high = np.percentile(draws, [2.5, 97.5])
    low, high = np.clip([2 * point - q_high, 2 * point - q_low], 0.0, 1.0)
    return Share(share=point, low=float(low), high=float(high), spread=float(np.std(draws)), **kw)


# ---------------------------------------------------------------- exact functional ANOVA


def grid_shares(
    cells: np.ndarray, k: int, max_order: int = 2
) -> tuple[dict[tuple[int, ...], np.ndarray], np.ndarray]:
    """The exact functional ANOVA of a complete grid of cell means.

    Parameters
    ----------
    cells : ndarray, shape (..., n_1, ..., n_k)
        The objective of each combination of the k axes' levels (the last k dimensions; any
        leading dimensions are independent grids, e.g. bootstrap draws).
    k : int
        Number of axes.
    max_order : int
        Terms up to this many axes.

    Returns
    -------
    shares : dict
        For each set of axes S (a sorted tuple of axis indices, 1 <= |S| <= max_order), the
        share V_S / V of the variance of the cells, shape (...). The term of S is the mean of
        the cells over the axes outside S minus the terms of S's proper subsets (the empty
        set: the grand mean); V_S is the mean of its square over the grid and V the variance
        (ddof=0) of the cells: the V_S over all sets add up to V.
    rest : ndarray, shape (...)
        The share of the terms of more than ``max_order`` axes (1 minus the others).
        A constant grid has every share 0.
    """
    grid = tuple(range(cells.ndim - k, cells.ndim))
    terms: dict[tuple[int, ...], np.ndarray] = {(): cells.mean(axis=grid, keepdims=True)}
    total = np.mean((cells - terms[()]) ** 2, axis=grid)  # (...)
    explained = np.zeros_like(total)
    shares = {}
    for order in range(1, min(max_order, k) + 1):
        for subset in itertools.combinations(range(k), order):
            others = tuple(grid[i] for i in range(k) if i not in subset)
            term = cells.mean(axis=others, keepdims=True) if others else cells
            for smaller in _proper_subsets(subset):
                term = term - terms[smaller]
            terms[subset] = term
            v = np.mean(term**2, axis=grid)  # the term is constant along the other axes
            explained = explained + v
            shares[subset] = np.divide(v, total, out=np.zeros_like(v), where=total > 0)
    rest = np.divide(total - explained, total, out=np.zeros_like(total), where=total > 0)
    return shares, np.clip(rest, 0.0, None)  # rounding may leave -1e-17


def _proper_subsets(subset: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
    for r in range(len(subset)):
        yield from itertools.combinations(subset, r)


def _anova(configs: _Configs, draws: np.ndarray | None) -> tuple[list[Share], list[Share]]:
    """Main effects and interactions of a complete grid, with their bootstrap intervals."""
    k, names = len(configs.axes), configs.axes
    levels = [configs.levels(i) for i in range(k)]
    shape = tuple(len(lv) for lv in levels)
    index = [tuple(lv.index(key[i]) for i, lv in enumerate(levels)) for key in configs.keys]
    order = np.argsort(np.ravel_multi_index(tuple(np.array(index).T), shape))  # cell order
    cells = configs.means[order].reshape(shape)  # (n_1, ..., n_k)
    point, rest = grid_shares(cells, k)
    boot, boot_rest = (None, None)
    if draws is not None:
        boot, boot_rest = grid_shares(draws[:, order].reshape(-1, *shape), k)

    def share(subset: tuple[int, ...], **kw: Any) -> Share:
        return _interval(float(point[subset]), boot[subset] if boot else None, **kw)

    mains = []
    for i in range(k):
        means = cells.mean(axis=tuple(j for j in range(k) if j != i))  # (n_i,)
        lv = tuple(zip(levels[i], map(float, means), strict=True))
        mains.append(share((i,), term=names[i], axes=(names[i],), levels=lv))
    varying = [i for i in range(k) if shape[i] > 1]
    inter = sorted(
        (
            share(p, term=" × ".join(names[i] for i in p), axes=tuple(names[i] for i in p))
            for p in itertools.combinations(varying, 2)
        ),
        key=lambda s: -s.share,
    )
    if len(varying) >= 3:
        inter.append(_interval(float(rest), boot_rest, term="higher-order interactions", axes=()))
    return mains, inter


# ---------------------------------------------------------------- fANOVA through Optuna


def _fanova(
    configs: _Configs, draws: np.ndarray | None, given: Mapping[str, Any], **forest: int
) -> tuple[list[Share], list[Share]]:
    """Main effects from Optuna's fANOVA on the config means (and on each bootstrap draw);
    the rest (1 - their sum) is the interactions."""
    unknown = set(given) - set(configs.axes)
    if unknown:
        raise ConfigError(f"no axis {sorted(unknown)[0]!r}", "distributions")
    levels = {a: configs.levels(i) for i, a in enumerate(configs.axes)}
    model = Fanova(configs.axes, configs.keys, levels, given, **forest)
    point = model.shares(configs.means)
    boot = np.stack([model.shares(d) for d in draws]) if draws is not None else None  # (B, V+1)
    found = {
        a: _interval(point[j], None if boot is None else boot[:, j], term=a, axes=(a,))
        for j, a in enumerate(model.names)
    }
    mains = [found.get(a, Share(term=a, axes=(a,), share=0.0)) for a in configs.axes]
    rest = _interval(point[-1], None if boot is None else boot[:, -1], term="interactions", axes=())
    return mains, [rest]
