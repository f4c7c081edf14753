"""Verdicts over seeds: the confidence interval of a seed group, the comparison of two groups
(paired by seed, or Welch), and how many seeds would tell two groups apart.

Plain NumPy arrays in, small frozen dataclasses out; SciPy (the ``stats`` extra) supplies the
t and noncentral t distributions. Which direction is better is the caller's to say
(``higher_is_better``): accuracies high, losses low.

The choices, in one place:

- the interval of a group is Student's t-interval of the mean (sample standard deviation,
  ddof=1, n - 1 degrees of freedom), 95% by default; one value gives no interval;
- two groups with the same seeds are compared by the paired t-test on the per-seed
  differences; otherwise by Welch's t-test (unequal variances, Welch-Satterthwaite degrees of
  freedom); both two-sided. The verdict comes from that test's p-value. Beside a paired test,
  the exact sign-flip permutation test's (2**n sign patterns up to ``EXACT_MAX_PAIRS`` pairs,
  a seeded Monte Carlo beyond): its smallest possible p-value is 2 / 2**n (0.25 with 3 seeds),
  so it is reported and does not decide the verdict;
- differences whose spread is within rounding of the values (every seed the same difference)
  get the t-test's limit: p = 0 and a zero-width interval when the difference is not 0, p = 1
  when it is;
- the seeds needed to tell two groups apart: the smallest n per group at which the two-sided
  test at alpha = 0.05 (paired t on the differences, or Welch with n seeds in each group) has
  power 0.8 against the observed difference and spread, from the noncentral t distribution.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from nnlab.errors import DataError, NnlabError

ALPHA = 0.05
CONFIDENCE = 0.95
POWER = 0.8
EXACT_MAX_PAIRS = 16  # the sign-flip test enumerates 2**16 = 65536 patterns at most
RESAMPLES = 9999  # Monte Carlo sign flips beyond EXACT_MAX_PAIRS
MAX_SEEDS = 10**6  # seeds_needed answers inf beyond this

BETTER, WORSE, NOISE = "better", "worse", "within noise"
REFERENCE, TOO_FEW = "reference", "too few seeds"
MARKERS = {BETTER: "*", WORSE: "*", NOISE: "≈", REFERENCE: "", TOO_FEW: "?"}

PAIRED, WELCH, NO_TEST = "paired t", "welch t", "none"


def _scipy_stats() -> Any:
    """scipy.stats, or an error naming the extra that installs it."""
    try:
        import scipy.stats
    except ImportError:
        raise NnlabError(
            "the statistics (intervals, verdicts, seeds needed) need scipy: "
            "pip install 'nnlab[stats]'"
        ) from None
    return scipy.stats


def _t_quantile(confidence: float, df: float) -> float:
    """``t.ppf((1 + confidence) / 2, df)``, cached per (confidence, df) after SciPy is asked
    for, so that a missing SciPy is said even where the value is cached."""
    return _t_ppf(_scipy_stats(), (1 + confidence) / 2, float(df))


@functools.lru_cache(maxsize=4096)  # t.ppf takes ~0.8 ms; Welch's df are any float: bounded
def _t_ppf(st: Any, q: float, df: float) -> float:
    return float(st.t.ppf(q, df))


def _rounding(*arrays: np.ndarray) -> float:
    """A spread at or below this is rounding, not seed noise: 64 ulps of the largest value."""
    scale = max((float(np.max(np.abs(a))) for a in arrays if a.size), default=0.0)
    return 64 * np.finfo(np.float64).eps * scale


def _std(x: np.ndarray, floor: float) -> float:
    """Sample standard deviation (ddof=1); 0 when within rounding; nan for fewer than 2."""
    if x.size < 2:
        return math.nan
    s = float(np.std(x, ddof=1))
    return 0.0 if s <= floor else s


# ---------------------------------------------------------------- one group


@dataclass(frozen=True)
class Summary:
    """A seed group: ``n`` finite values, their mean, sample standard deviation (ddof=1) and
    the half-width of the t-interval of the mean (nan for n < 2)."""

    n: int
    mean: float
    std: float
    half_width: float
    confidence: float = CONFIDENCE

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width


def summarize(values: ArrayLike, confidence: float = CONFIDENCE) -> Summary:
    """Mean and Student-t confidence interval of one group's values.

    Parameters
    ----------
    values : array_like, shape (n,)
        One metric over the seeds of a config; non-finite values (a diverged run's NaN loss)
        are left out, and ``n`` counts the rest.
    confidence : float
        Coverage of the interval (0.95).

    Returns
    -------
    Summary
        ``half_width = t.ppf((1 + confidence) / 2, n - 1) * std / sqrt(n)`` with the sample
        standard deviation (ddof=1): ``mean ± half_width`` is ``scipy.stats.t.interval``.
        n = 1: std and half_width nan; n = 0: mean nan too.
    """
    x = _finite(values)[0]
    n = int(x.size)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, confidence)
    mean = float(np.mean(x))
    std = _std(x, _rounding(x))
    half = _t_quantile(confidence, n - 1) * std / math.sqrt(n) if n >= 2 else math.nan
    return Summary(n, mean, std, half, confidence)


def format_interval(summary: Summary, digits: int = 4) -> str:
    """``0.9712 ± 0.0040 (3)``: the mean, the half-width of its confidence interval (not the
    standard deviation) and n; ``0.9712 (1)`` for one value, ``-`` for none."""
    if summary.n == 0:
        return "-"
    half = f" ± {summary.half_width:.{digits}f}" if summary.n >= 2 else ""
    return f"{summary.mean:.{digits}f}{half} ({summary.n})"


# ---------------------------------------------------------------- two groups


@dataclass(frozen=True)
class Comparison:
    """A group against a reference group: ``diff`` = mean(group) - mean(reference) (paired:
    the mean of the per-seed differences) and its interval ``low``/``high``; the two-sided
    ``p_value`` of ``test`` ('paired t', 'welch t', 'none') and, paired, the exact sign-flip
    ``p_exact`` (nan otherwise); ``n_pairs`` seeds paired (0 for Welch), ``n``/``n_ref`` the
    finite values; ``verdict``: 'better', 'worse', 'within noise', 'too few seeds', 'reference'."""

    diff: float
    low: float
    high: float
    p_value: float
    test: str
    verdict: str
    n: int
    n_ref: int
    n_pairs: int = 0
    p_exact: float = math.nan
    df: float = math.nan

    @property
    def marker(self) -> str:
        """``*`` a real difference (better or worse), ``≈`` within noise, ``?`` too few seeds,
        empty for the reference."""
        return MARKERS[self.verdict]

    @property
    def significant(self) -> bool:
        return self.verdict in (BETTER, WORSE)


def paired_by_seed(
    values: np.ndarray, seeds: ArrayLike | None, ref: np.ndarray, ref_seeds: ArrayLike | None
) -> tuple[np.ndarray, np.ndarray] | None:
    """The two groups' values ordered by seed when both have the same seeds, each once;
    otherwise None (the groups are then compared unpaired)."""
    if seeds is None or ref_seeds is None:
        return None
    s, r = np.asarray(seeds).ravel(), np.asarray(ref_seeds).ravel()
    if s.size != r.size or len(set(s.tolist())) != s.size or set(s.tolist()) != set(r.tolist()):
        return None
    order_s, order_r = np.argsort(s, kind="stable"), np.argsort(r, kind="stable")
    return values[order_s], ref[order_r]


def _finite(
    values: ArrayLike, seeds: ArrayLike | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The finite values (n,) and their seeds."""
    x = np.asarray(values, dtype=np.float64).ravel()  # (n,)
    keep = np.isfinite(x)
    if seeds is None:
        return x[keep], None
    s = np.asarray(seeds).ravel()
    if s.size != x.size:
        raise ValueError(f"{s.size} seeds for {x.size} values")
    return x[keep], s[keep]


def compare(
    values: ArrayLike,
    reference: ArrayLike,
    *,
    higher_is_better: bool,
    seeds: ArrayLike | None = None,
    reference_seeds: ArrayLike | None = None,
    alpha: float = ALPHA,
    confidence: float = CONFIDENCE,
    rng_seed: int = 0,
) -> Comparison:
    """A group against a reference group: the difference, its interval, p-value and verdict.

    Parameters
    ----------
    values, reference : array_like, shapes (n,) and (m,)
        The metric over each group's seeds; non-finite values are left out (with their seed).
    higher_is_better : bool
        The metric's direction: a significant positive difference is 'better' when true.
    seeds, reference_seeds : array_like, shapes (n,) and (m,), optional
        The seed of each value. When both groups have the same seeds (each once), the test
        is the paired t-test on the per-seed differences (and the exact sign-flip test is
        reported beside it); otherwise Welch's t-test.
    alpha : float
        Significance level of the verdict (two-sided).
    confidence : float
        Coverage of the interval of the difference.
    rng_seed : int
        Seed of the Monte Carlo sign flips beyond ``EXACT_MAX_PAIRS`` pairs.

    Returns
    -------
    Comparison
    """
    x, sx = _finite(values, seeds)
    r, sr = _finite(reference, reference_seeds)
    pairs = paired_by_seed(x, sx, r, sr)
    if pairs is not None:
        c = _paired(pairs[0] - pairs[1], confidence, rng_seed, _rounding(x, r))
    else:
        c = _welch(x, r, confidence, _rounding(x, r))
    verdict = _verdict(c["diff"], c["p_value"], higher_is_better, alpha)
    return Comparison(verdict=verdict, n=int(x.size), n_ref=int(r.size), **c)


def _verdict(diff: float, p: float, higher_is_better: bool, alpha: float) -> str:
    if math.isnan(p):
        return TOO_FEW
    if p >= alpha:
        return NOISE
    return BETTER if (diff > 0) == higher_is_better else WORSE


def _paired(d: np.ndarray, confidence: float, rng_seed: int, floor: float) -> dict[str, Any]:
    """The paired t-test on the differences ``d`` (n,): df n - 1, se = sd(d) / sqrt(n)."""
    n = int(d.size)
    diff = float(np.mean(d)) if n else math.nan
    out = {"diff": diff, "test": PAIRED, "n_pairs": n, "df": float(n - 1)}
    if n < 2:
        return {**out, "test": NO_TEST, "low": math.nan, "high": math.nan, "p_value": math.nan}
    out["p_exact"] = sign_flip_test(d, rng_seed=rng_seed)
    sd = _std(d, floor)
    if sd == 0.0:
        return {**out, **_certain(diff, floor)}
    se = sd / math.sqrt(n)
    return {**out, **_t_test(diff, se, n - 1.0, confidence)}


def _welch(x: np.ndarray, r: np.ndarray, confidence: float, floor: float) -> dict[str, Any]:
    """Welch's t-test: se^2 = s_x^2 / n_x + s_r^2 / n_r, Welch-Satterthwaite df."""
    diff = float(np.mean(x) - np.mean(r)) if x.size and r.size else math.nan
    out: dict[str, Any] = {"diff": diff, "test": WELCH}
    if x.size < 2 or r.size < 2:
        return {**out, "test": NO_TEST, "low": math.nan, "high": math.nan, "p_value": math.nan}
    vx, vr = _std(x, floor) ** 2 / x.size, _std(r, floor) ** 2 / r.size
    if vx + vr == 0.0:
        return {**out, **_certain(diff, floor)}
    df = (vx + vr) ** 2 / (vx**2 / (x.size - 1) + vr**2 / (r.size - 1))
    return {**out, "df": df, **_t_test(diff, math.sqrt(vx + vr), df, confidence)}


def _certain(diff: float, floor: float) -> dict[str, float]:
    """No spread at all: the t-test's limit (p 0, or 1 for no difference); a point interval."""
    if abs(diff) <= floor:
        diff = 0.0
    return {"diff": diff, "low": diff, "high": diff, "p_value": 1.0 if diff == 0.0 else 0.0}


def _t_test(diff: float, se: float, df: float, confidence: float) -> dict[str, float]:
    t = _scipy_stats().t
    p = float(2 * t.sf(abs(diff) / se, df))
    half = _t_quantile(confidence, df) * se
    return {"low": diff - half, "high": diff + half, "p_value": min(p, 1.0)}


def sign_flip_test(
    differences: ArrayLike, *, resamples: int = RESAMPLES, rng_seed: int = 0
) -> float:
    """Two-sided p-value of the sign-flip permutation test of a zero mean difference.

    Under the null each per-seed difference is as likely positive as negative; the p-value is
    the share of sign patterns whose mean is at least as far from 0 as the observed one
    (within 100 ulps, as ``scipy.stats.permutation_test``). Exact (all ``2**n`` patterns) up
    to ``EXACT_MAX_PAIRS`` differences; beyond, ``resamples`` random patterns from
    ``np.random.default_rng(rng_seed)`` and ``(hits + 1) / (resamples + 1)``.

    Parameters
    ----------
    differences : array_like, shape (n,)
    """
    d = np.asarray(differences, dtype=np.float64).ravel()  # (n,)
    n = d.size
    if n == 0:
        return math.nan
    observed = abs(float(np.mean(d)))
    tol = 100 * np.finfo(np.float64).eps * observed
    if n <= EXACT_MAX_PAIRS:
        codes = np.arange(2**n, dtype=np.int64)[:, None]  # (2**n, 1)
        signs = 1.0 - 2.0 * ((codes >> np.arange(n)) & 1)  # (2**n, n)
        null = np.abs(signs @ d) / n  # (2**n,)
        return float(np.mean(null >= observed - tol))
    rng = np.random.default_rng(rng_seed)
    hits = 0
    for start in range(0, resamples, 4096):  # bounded memory for many pairs
        m = min(4096, resamples - start)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(m, n))  # (m, n)
        hits += int(np.sum(np.abs(signs @ d) / n >= observed - tol))
    return (hits + 1) / (resamples + 1)


# ---------------------------------------------------------------- seeds needed


def seeds_needed(
    values: ArrayLike,
    reference: ArrayLike,
    *,
    seeds: ArrayLike | None = None,
    reference_seeds: ArrayLike | None = None,
    alpha: float = ALPHA,
    power: float = POWER,
) -> float:
    """How many seeds per group would tell the two groups apart, from their spread.

    The smallest n at which the two-sided t-test at ``alpha`` has ``power`` against the
    observed difference if the spread stays what it is: paired (the same seeds, as in
    :func:`compare`) from the per-seed differences, df n - 1; otherwise Welch with n seeds
    in each group, df (n - 1)(v1 + v2)^2 / (v1^2 + v2^2). Power from the noncentral t
    distribution (noncentrality: difference / standard error). ``values``, ``reference``
    and the seeds are as in :func:`compare`.

    Returns
    -------
    float
        A whole number >= 2; ``inf`` when the difference is 0 (no number of seeds would
        tell them apart) or needs more than ``MAX_SEEDS``; ``nan`` when a group has fewer
        than 2 values (no spread to go by).
    """
    x, sx = _finite(values, seeds)
    r, sr = _finite(reference, reference_seeds)
    floor = _rounding(x, r)
    pairs = paired_by_seed(x, sx, r, sr)
    if pairs is not None:
        d = pairs[0] - pairs[1]
        if d.size < 2:
            return math.nan
        delta, var = abs(float(np.mean(d))), _std(d, floor) ** 2
        ratio = 0.0  # the df of a paired test do not depend on the spread
    else:
        if x.size < 2 or r.size < 2:
            return math.nan
        delta = abs(float(np.mean(x) - np.mean(r)))
        vx, vr = _std(x, floor) ** 2, _std(r, floor) ** 2
        var = vx + vr
        ratio = (vx**2 + vr**2) / var**2 if var > 0 else 0.5
    if delta <= floor:
        return math.inf
    if var == 0.0:
        return 2.0

    def reaches(n: int) -> bool:
        df = n - 1.0 if pairs is not None else (n - 1.0) / ratio
        return _power(delta / math.sqrt(var / n), df, alpha) >= power

    return _smallest(reaches)


def _power(noncentrality: float, df: float, alpha: float) -> float:
    """Power of the two-sided t-test: P(|T| > t_crit) for T noncentral t(df, noncentrality)."""
    st, crit = _scipy_stats(), _t_quantile(1 - alpha, df)
    with np.errstate(all="ignore"):
        p = st.nct.sf(crit, df, noncentrality) + st.nct.cdf(-crit, df, noncentrality)
    return float(np.clip(p, 0.0, 1.0)) if np.isfinite(p) else 1.0


def _smallest(reaches: Any) -> float:
    """The smallest n >= 2 with ``reaches(n)`` (monotone in n): doubling, then bisection."""
    lo, hi = 1, 2  # reaches(lo) is false by convention: 1 seed is never enough
    while not reaches(hi):
        if hi >= MAX_SEEDS:
            return math.inf
        lo, hi = hi, min(2 * hi, MAX_SEEDS)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if reaches(mid) else (mid, hi)
    return float(hi)


# ---------------------------------------------------------------- a table of groups


@dataclass(frozen=True)
class Verdicts:
    """Every group of a table against the group at index ``reference``: ``rows[i]`` for
    group i (verdict 'reference' for itself); ``best`` and ``runner_up`` (None for a single
    group) by mean, and the ``seeds_needed`` to tell them apart (nan for a single group)."""

    reference: int
    rows: list[Comparison]
    best: int
    runner_up: int | None
    seeds_needed: float


Group = tuple[ArrayLike, ArrayLike | None]  # (values (n,), seeds (n,) or None)


def best_index(means: ArrayLike, higher_is_better: bool) -> int:
    """The index of the best finite mean (the first on a tie); -1 when none is finite."""
    m = np.asarray(means, dtype=np.float64).ravel()
    finite = np.isfinite(m)
    if not finite.any():
        return -1
    score = np.where(finite, m if higher_is_better else -m, -np.inf)
    return int(np.argmax(score))


def verdicts(
    groups: Sequence[Group],
    *,
    against: int | Literal["best"] = "best",
    higher_is_better: bool,
    alpha: float = ALPHA,
    confidence: float = CONFIDENCE,
) -> Verdicts:
    """Compare every group of a table with the best group (``against='best'``) or with the
    group at index ``against``, and count the seeds needed to tell the two best apart.

    Parameters
    ----------
    groups : sequence of (values, seeds)
        One entry per table row: the metric over its seeds, shape (n,), and their seeds,
        shape (n,) or None.
    against : 'best' or int
        The reference row.
    higher_is_better : bool
        The metric's direction.

    Each p-value is for its own comparison (no correction for comparing many rows); against
    the best row, chosen for its high mean, differences tend to come out larger than they are.
    """
    means = [summarize(v).mean for v, _ in groups]
    best = best_index(means, higher_is_better)
    if best < 0:
        raise DataError("no row has a finite value to compare")
    runner_up = best_index(
        [m if i != best else math.nan for i, m in enumerate(means)], higher_is_better
    )
    ref = best if against == "best" else int(against)
    if not 0 <= ref < len(groups):
        raise IndexError(f"no row {against} among {len(groups)}")
    ref_values, ref_seeds = groups[ref]
    options = {"higher_is_better": higher_is_better, "alpha": alpha, "confidence": confidence}
    rows = [
        compare(v, ref_values, seeds=s, reference_seeds=ref_seeds, **options)
        if i != ref
        else _as_reference(summarize(ref_values).n)
        for i, (v, s) in enumerate(groups)
    ]
    needed = math.nan
    if runner_up >= 0:
        (a, sa), (b, sb) = groups[best], groups[runner_up]
        needed = seeds_needed(a, b, seeds=sa, reference_seeds=sb, alpha=alpha)
    return Verdicts(ref, rows, best, runner_up if runner_up >= 0 else None, needed)


def _as_reference(n: int) -> Comparison:
    """The reference row against itself: no difference, no test."""
    return Comparison(0.0, math.nan, math.nan, math.nan, NO_TEST, REFERENCE, n, n)
