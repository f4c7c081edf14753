"""The verdict statistics against SciPy's own functions, and verdicts on synthetic seed groups
whose true difference is known."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import scipy.stats as st

from nnlab import stats
from nnlab.compare.render import mean_std
from nnlab.errors import DataError, NnlabError

pytestmark = pytest.mark.filterwarnings("error")  # no RuntimeWarning on any edge case


def groups(seed: int, n: int, diff: float, paired: bool = True, sd: float = 0.01):
    """Two groups of n seeds, a difference ``diff`` between them. Paired: a per-seed effect
    (sd 2 * ``sd``, the data split of the seed) shared by both, and independent noise ``sd``
    in each; unpaired: independent values with the same total spread."""
    rng = np.random.default_rng(seed)
    if paired:
        common = 0.9 + 2 * sd * rng.standard_normal(n)
        return common + diff + sd * rng.standard_normal(n), common + sd * rng.standard_normal(n)
    a, b = 0.9 + math.sqrt(5) * sd * rng.standard_normal((2, n))
    return a + diff, b


# ---------------------------------------------------------------- one group


@pytest.mark.parametrize("n", [2, 3, 5, 30])
def test_interval_is_scipys_student_t_interval(n):
    x = groups(n, n, 0.0)[0]
    s = stats.summarize(x)
    low, high = st.t.interval(0.95, n - 1, loc=np.mean(x), scale=st.sem(x))
    assert s.n == n and s.mean == pytest.approx(np.mean(x), rel=1e-14)
    assert s.std == pytest.approx(np.std(x, ddof=1), rel=1e-12)
    assert (s.low, s.high) == pytest.approx((low, high), rel=1e-12)
    s90 = stats.summarize(x, confidence=0.9)
    assert (s90.low, s90.high) == pytest.approx(st.t.interval(0.9, n - 1, np.mean(x), st.sem(x)))


def test_interval_of_one_value_none_and_non_finite():
    def shown(s: stats.Summary) -> str:  # the gallery's text, and the compare table's cells
        text = stats.format_interval(s)
        assert text == mean_std(s.mean, s.half_width, s.n, 4)
        return text

    one = stats.summarize([0.97, math.nan])
    assert one.n == 1 and one.mean == 0.97 and math.isnan(one.half_width)
    assert shown(one) == "0.9700 (1)"
    none = stats.summarize([math.inf, math.nan])
    assert none.n == 0 and math.isnan(none.mean) and shown(none) == "-"
    same = stats.summarize([0.1, 0.1, 0.1])
    assert same.std == 0.0 and same.half_width == 0.0 and same.low == same.high
    assert shown(stats.summarize([0.97, 0.98, 0.975])) == "0.9750 ± 0.0124 (3)"


# ---------------------------------------------------------------- two groups against scipy


@pytest.mark.parametrize("n", [2, 3, 6, 12])
def test_paired_comparison_is_scipys_ttest_rel_paired_by_seed(n):
    a, b = groups(100 + n, n, 0.01)
    seeds = np.arange(n) * 7 + 1
    perm = np.random.default_rng(n).permutation(n)  # the reference's runs in another order
    c = stats.compare(a, b[perm], seeds=seeds, reference_seeds=seeds[perm], higher_is_better=True)
    ref = st.ttest_rel(a, b)
    ci = ref.confidence_interval(0.95)
    assert c.test == stats.PAIRED and c.n_pairs == n and c.df == n - 1
    assert c.diff == pytest.approx(np.mean(a - b), rel=1e-12)
    assert c.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert (c.low, c.high) == pytest.approx((ci.low, ci.high), rel=1e-9)


@pytest.mark.parametrize(("n", "m"), [(2, 2), (3, 5), (8, 4)])
def test_unpaired_comparison_is_scipys_welch_test(n, m):
    rng = np.random.default_rng(n * 10 + m)
    a = 0.95 + 0.02 * rng.standard_normal(n)
    b = 0.93 + 0.005 * rng.standard_normal(m)  # unequal variances: Welch differs from Student
    c = stats.compare(a, b, higher_is_better=True)
    ref = st.ttest_ind(a, b, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert c.test == stats.WELCH and c.n_pairs == 0
    assert c.df == pytest.approx(ref.df, rel=1e-12)
    assert c.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert (c.low, c.high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    if n != m:  # Student's pooled test differs from Welch's here
        assert c.p_value != pytest.approx(st.ttest_ind(a, b).pvalue, rel=1e-3)


def test_groups_with_other_seeds_are_compared_unpaired():
    a, b = groups(7, 4, 0.01)
    for ref_seeds in ([1, 2, 3, 5], [1, 2, 3, 3], None):
        c = stats.compare(
            a, b, seeds=[1, 2, 3, 4], reference_seeds=ref_seeds, higher_is_better=True
        )
        assert c.test == stats.WELCH
        assert c.p_value == pytest.approx(st.ttest_ind(a, b, equal_var=False).pvalue)
    # a non-finite value leaves its seed out: the seeds then differ, so Welch on the rest
    c = stats.compare(
        [*a[:3], math.nan],
        b,
        seeds=[1, 2, 3, 4],
        reference_seeds=[1, 2, 3, 4],
        higher_is_better=True,
    )
    assert c.test == stats.WELCH and c.n == 3 and c.n_ref == 4
    c = stats.compare(
        a[:3], b, seeds=[1, 2, 3], reference_seeds=[1, 2, 3, 3], higher_is_better=True
    )
    assert c.test == stats.WELCH and (c.n, c.n_ref) == (3, 4)


def test_p_value_is_two_sided_and_the_difference_signed():
    a, b = groups(3, 5, 0.03)
    ab = stats.compare(a, b, seeds=range(5), reference_seeds=range(5), higher_is_better=True)
    ba = stats.compare(b, a, seeds=range(5), reference_seeds=range(5), higher_is_better=True)
    assert ab.p_value == pytest.approx(ba.p_value) and ab.diff == pytest.approx(-ba.diff)
    assert ab.p_value == pytest.approx(st.ttest_rel(a, b, alternative="two-sided").pvalue)
    assert ab.verdict == stats.BETTER and ba.verdict == stats.WORSE
    assert ab.low > 0 and ba.high < 0


# ---------------------------------------------------------------- the exact sign-flip test


def _scipy_sign_flip(d: np.ndarray, resamples: float = np.inf) -> float:
    res = st.permutation_test(
        (d,),
        np.mean,
        permutation_type="samples",
        n_resamples=resamples,
        alternative="two-sided",
    )
    return float(res.pvalue)


@pytest.mark.parametrize("n", range(2, 11))
def test_sign_flip_test_is_scipys_exact_permutation_test(n):
    rng = np.random.default_rng(n)
    d = rng.normal(0.004, 0.01, n)
    assert stats.sign_flip_test(d) == pytest.approx(_scipy_sign_flip(d), rel=1e-12)
    ties = np.round(d, 2)  # quantized accuracies: equal magnitudes, sign patterns tie
    assert stats.sign_flip_test(ties) == pytest.approx(_scipy_sign_flip(ties), rel=1e-12)


def test_sign_flip_test_floor_and_monte_carlo():
    assert stats.sign_flip_test(np.full(3, 0.01)) == 2 / 8  # never below 2 / 2**n
    assert stats.sign_flip_test(np.full(6, 0.01)) == 2 / 64
    assert stats.sign_flip_test(np.zeros(4)) == 1.0
    assert stats.sign_flip_test([0.01]) == 1.0
    d = np.random.default_rng(0).normal(0.003, 0.01, stats.EXACT_MAX_PAIRS + 1)
    p = stats.sign_flip_test(d, rng_seed=0)
    assert p == stats.sign_flip_test(d, rng_seed=0)  # seeded: the same p every time
    assert p != stats.sign_flip_test(d, rng_seed=1)
    assert p == pytest.approx(_scipy_sign_flip(d), abs=0.02)
    c = stats.compare(
        d,
        np.zeros_like(d),
        seeds=range(d.size),
        reference_seeds=range(d.size),
        higher_is_better=True,
    )
    assert c.p_exact == p


def test_paired_comparison_reports_the_exact_p_beside_the_t_test():
    a, b = groups(11, 5, 0.02)
    c = stats.compare(a, b, seeds=range(5), reference_seeds=range(5), higher_is_better=True)
    assert c.p_exact == pytest.approx(_scipy_sign_flip(a - b))
    assert math.isnan(stats.compare(a, b, higher_is_better=True).p_exact)


# ---------------------------------------------------------------- edge cases


def test_every_seed_the_same_difference_is_certain_not_nan():
    a = np.array([0.91, 0.93, 0.95])
    b = a - 0.01  # the same difference up to rounding: scipy warns and returns a huge t
    c = stats.compare(a, b, seeds=[1, 2, 3], reference_seeds=[1, 2, 3], higher_is_better=True)
    assert c.p_value == 0.0 and c.verdict == stats.BETTER
    assert c.low == c.high == c.diff == pytest.approx(0.01)
    assert c.p_exact == 2 / 8
    same = stats.compare(
        a, a.copy(), seeds=[1, 2, 3], reference_seeds=[3, 2, 1][::-1], higher_is_better=True
    )
    assert (same.diff, same.low, same.high, same.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert same.verdict == stats.NOISE and same.marker == "≈"
    flat = stats.compare([0.5, 0.5], [0.4, 0.4, 0.4], higher_is_better=False)  # Welch, no spread
    assert flat.test == stats.WELCH and flat.p_value == 0.0 and flat.verdict == stats.WORSE


def test_too_few_seeds_gives_no_verdict():
    for a, b, kw in [
        ([0.9], [0.8, 0.85], {}),
        ([0.9, 0.91], [0.8], {}),
        ([0.9], [0.8], {"seeds": [1], "reference_seeds": [1]}),
        ([], [0.8, 0.9], {}),
    ]:
        c = stats.compare(a, b, higher_is_better=True, **kw)
        assert (
            c.test == stats.NO_TEST
            and c.verdict == stats.TOO_FEW
            and c.marker == "?"
            and math.isnan(c.p_value)
        )
        assert math.isnan(c.low) and not c.significant


# ---------------------------------------------------------------- verdicts on known truths


CASES = [
    # name, n seeds, true difference, paired?, higher_is_better, expected verdict
    ("large effect, 3 seeds, paired", 3, 0.08, True, True, stats.BETTER),
    ("large effect, 3 seeds, unpaired", 3, -0.15, False, True, stats.WORSE),
    ("loss: lower is better", 4, -0.06, True, False, stats.BETTER),
    ("loss: higher is worse", 4, 0.1, False, False, stats.WORSE),
    ("medium effect, 40 seeds", 40, 0.01, True, True, stats.BETTER),
    ("medium effect, 40 seeds, unpaired", 40, 0.02, False, True, stats.BETTER),
    ("no effect, 3 seeds", 3, 0.0, True, True, stats.NOISE),
    ("no effect, 200 seeds", 200, 0.0, True, True, stats.NOISE),
    ("no effect, 200 seeds, unpaired", 200, 0.0, False, True, stats.NOISE),
    ("tiny effect, 3 seeds", 3, 0.001, True, True, stats.NOISE),
]


@pytest.mark.parametrize(("case", "n", "diff", "paired", "hib", "expected"), CASES)
def test_verdict_calls_real_differences_real_and_noise_noise(case, n, diff, paired, hib, expected):
    a, b = groups(sum(map(ord, case)), n, diff, paired)  # a fixed generator per case
    seeds = np.arange(n) if paired else None
    c = stats.compare(a, b, seeds=seeds, reference_seeds=seeds, higher_is_better=hib)
    assert c.verdict == expected, (case, c)
    assert c.significant == (expected != stats.NOISE)
    assert (c.low <= diff <= c.high) or c.significant  # the truth inside, or a real call


@pytest.mark.parametrize("paired", [True, False])
def test_false_alarms_on_pure_noise_are_alpha(paired):
    """Over 2000 null comparisons the verdict says better/worse in 5% of them (a halved
    p-value, or a normal instead of a t quantile, moves the rate well outside 3.5-6.5%)."""
    rng = np.random.default_rng(2024)
    calls = 0
    for _ in range(2000):
        a, b = rng.normal(0.9, 0.01, (2, 4))
        seeds = range(4) if paired else None
        calls += stats.compare(
            a, b, seeds=seeds, reference_seeds=seeds, higher_is_better=True
        ).significant
    assert 0.035 <= calls / 2000 <= 0.065


def test_pairing_by_seed_removes_the_seeds_shared_effect():
    """Each seed moves both rows together (its data split) far more than the rows differ:
    only the paired test sees the difference."""
    rng = np.random.default_rng(1)
    split = 0.05 * rng.standard_normal(5)
    a = 0.9 + split + 0.02 + 0.003 * rng.standard_normal(5)
    b = 0.9 + split + 0.003 * rng.standard_normal(5)
    seeds = [3, 1, 4, 2, 5]
    paired = stats.compare(a, b, seeds=seeds, reference_seeds=seeds, higher_is_better=True)
    unpaired = stats.compare(a, b, higher_is_better=True)
    assert paired.verdict == stats.BETTER and paired.low > 0
    assert unpaired.verdict == stats.NOISE and unpaired.low < 0 < unpaired.high


# ---------------------------------------------------------------- seeds needed


def _standard(n: int, seed: int) -> np.ndarray:
    """n values with mean exactly 0 and sample standard deviation exactly 1."""
    z = np.random.default_rng(seed).standard_normal(n)
    return (z - z.mean()) / z.std(ddof=1)


@pytest.mark.parametrize(
    ("d", "paired", "expected"),
    [  # Cohen's tables (two-sided, alpha 0.05, power 0.8): n per group
        (0.5, True, 34),  # one-sample / paired t, d = 0.5
        (1.0, True, 10),
        (0.5, False, 64),  # two-sample t, equal variances
        (0.8, False, 26),
        (1.0, False, 17),
        (0.2, False, 394),
    ],
)
def test_seeds_needed_matches_power_tables(d, paired, expected):
    if paired:
        diffs = d + _standard(5, 1)
        n = stats.seeds_needed(diffs, np.zeros(5), seeds=range(5), reference_seeds=range(5))
    else:  # each group sd 1: the standardized difference is d
        n = stats.seeds_needed(d + _standard(6, 1), _standard(6, 2))
    assert n == expected


def test_seeds_needed_edges():
    a = np.array([0.90, 0.91, 0.92])
    assert stats.seeds_needed(a, a[::-1]) == math.inf  # no difference: never
    assert stats.seeds_needed(a, a - 0.01, seeds=[1, 2, 3], reference_seeds=[1, 2, 3]) == 2.0
    assert math.isnan(stats.seeds_needed([0.9], a))
    assert stats.seeds_needed(a + 1e-9, a) == math.inf  # beyond a million seeds
    small, large = (stats.seeds_needed(a + 0.02, s * (a - a.mean()) + a.mean()) for s in (1, 3))
    assert 2 <= small < large


# ---------------------------------------------------------------- a table of rows


def test_verdicts_against_the_best_row_by_the_metrics_direction():
    rng = np.random.default_rng(5)
    seeds = [1, 2, 3]
    means = [0.90, 0.97, 0.96, 0.50]
    rows = [(m + 0.002 * rng.standard_normal(3), seeds) for m in means]
    v = stats.verdicts(rows, higher_is_better=True)
    assert (v.best, v.runner_up, v.reference) == (1, 2, 1)
    assert [r.verdict for r in v.rows] == [stats.WORSE, stats.REFERENCE, stats.WORSE, stats.WORSE]
    needed = stats.seeds_needed(rows[1][0], rows[2][0], seeds=seeds, reference_seeds=seeds)
    assert v.seeds_needed == needed and 2 <= needed < math.inf
    loss = stats.verdicts(rows, higher_is_better=False, against=0)
    assert (loss.best, loss.runner_up, loss.reference) == (3, 0, 0)
    assert loss.rows[3].verdict == stats.BETTER and loss.rows[1].verdict == stats.WORSE
    assert stats.verdicts(rows[:1], higher_is_better=True).runner_up is None
    with pytest.raises(DataError, match="no row has a finite value"):
        stats.verdicts([([math.nan], [1]), ([], [])], higher_is_better=True)
    with pytest.raises(IndexError):
        stats.verdicts(rows, against=4, higher_is_better=True)


def test_missing_scipy_is_an_nnlab_error_naming_the_extra(monkeypatch):
    stats.summarize([0.9, 0.91])  # the t quantile of n = 2 is cached: SciPy is asked anyway
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.stats", None)
    with pytest.raises(NnlabError, match=r"pip install 'nnlab\[stats\]'") as e:
        stats.summarize([0.9, 0.91])
    assert e.value.exit_code == 2


def test_the_t_quantile_is_cached_per_n_and_confidence():
    stats._t_ppf.cache_clear()
    for _ in range(3):
        for n in (3, 5):
            stats.summarize(np.linspace(0.9, 0.95, n))
    info = stats._t_ppf.cache_info()
    assert (info.misses, info.hits) == (2, 4)
    assert stats.summarize([1.0, 2.0, 4.0], confidence=0.9).half_width == pytest.approx(
        st.t.ppf(0.95, 2) * np.std([1.0, 2.0, 4.0], ddof=1) / np.sqrt(3)
    )
