"""nnlab compare --group-seeds --against: the verdict columns of run folders with known values,
against SciPy's own tests; a table of cases where the difference is real or noise; how a row
is named; what is said without SciPy."""

from __future__ import annotations

import io
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats as st
from test_compare import make_run

from conftest import invoke_nnlab


def seed_runs(root: Path, lr: float, values, seeds=None, metric: str = "val_accuracy") -> None:
    """A config (``optimizer.lr``) run with ``seeds`` (default 0, 1, ...): the last value of
    ``metric`` of seed i is ``values[i]``."""
    seeds = range(len(values)) if seeds is None else seeds
    for s, v in zip(seeds, values, strict=True):
        curve = {"val_accuracy": (0.1, 0.2, 0.3), "val_loss": (1.0, 0.9, 0.8)}
        curve[metric] = (curve[metric][0], curve[metric][1], float(v))
        make_run(root, f"lr{lr}-s{s}", [f"optimizer.lr={lr}", f"training.seed={s}"], **curve)


def compare_json(root: Path, *args: str) -> list[dict]:
    proc = invoke_nnlab("compare", root, "--group-seeds", *args, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def by_lr(rows: list[dict]) -> dict[float, dict]:
    return {r["optimizer.lr"]: r for r in rows}


A = np.array([0.912, 0.934, 0.921, 0.905, 0.940])  # the reference, seeds 0-4
B = np.array([0.897, 0.925, 0.899, 0.904, 0.921])  # seeds 0-4: paired with A
C = np.array([0.951, 0.930, 0.962, 0.947])  # seeds 5-8: Welch against A


@pytest.fixture(scope="module")
def known(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("known")
    seed_runs(root, 0.01, A)
    seed_runs(root, 0.1, B[[3, 1, 4, 0, 2]], seeds=[3, 1, 4, 0, 2])  # run folders in any order
    seed_runs(root, 0.001, C, seeds=[5, 6, 7, 8])
    return root


def test_the_columns_are_scipys_intervals_and_tests(known):
    rows = by_lr(compare_json(known, "--against", "lr==0.01"))
    a, b, c = rows[0.01], rows[0.1], rows[0.001]
    m = "val_accuracy"
    for row, x in ((a, A), (b, B), (c, C)):  # the 95% t-interval of each mean
        low, high = st.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=st.sem(x))
        assert row[f"{m}.n"] == len(x) and row[f"{m}.mean"] == pytest.approx(x.mean())
        assert (row[f"{m}.low"], row[f"{m}.high"]) == pytest.approx((low, high), rel=1e-12)
    paired = st.ttest_rel(B, A)  # by seed: 0.1's seed 3 against 0.01's seed 3
    ci = paired.confidence_interval(0.95)
    assert b[f"{m}.test"] == "paired t" and b[f"{m}.diff"] == pytest.approx(np.mean(B - A))
    assert b[f"{m}.p"] == pytest.approx(paired.pvalue, rel=1e-9)
    assert (b[f"{m}.diff_low"], b[f"{m}.diff_high"]) == pytest.approx((ci.low, ci.high))
    exact = st.permutation_test(
        (B - A,), np.mean, permutation_type="samples", n_resamples=np.inf
    ).pvalue
    assert b[f"{m}.p_exact"] == pytest.approx(exact)
    welch = st.ttest_ind(C, A, equal_var=False)  # other seeds: unpaired
    ci = welch.confidence_interval(0.95)
    assert c[f"{m}.test"] == "welch t" and c[f"{m}.p_exact"] is None
    assert c[f"{m}.p"] == pytest.approx(welch.pvalue, rel=1e-9)
    assert (c[f"{m}.diff_low"], c[f"{m}.diff_high"]) == pytest.approx((ci.low, ci.high))
    assert a[f"{m}.verdict"] == "reference" and a[f"{m}.p"] is None
    assert [r["row"] for r in rows.values()] == [1, 2, 3]


def _paired_power(d: np.ndarray, n: int) -> float:
    """The power of the two-sided paired t-test at 0.05 with n pairs, if the differences keep
    their mean and spread: from the noncentral t distribution."""
    df, nc = n - 1, abs(d.mean()) / (d.std(ddof=1) / math.sqrt(n))
    crit = st.t.ppf(0.975, df)
    return st.nct.sf(crit, df, nc) + st.nct.cdf(-crit, df, nc)


def test_the_seeds_needed_reach_a_power_of_0_8(known):
    rows = by_lr(compare_json(known, "--against", "best"))
    assert rows[0.001]["val_accuracy.verdict"] == "reference"  # C: the best mean
    needed = rows[0.1]["val_accuracy.seeds_needed"]  # B against... C: other seeds, Welch
    assert isinstance(needed, int) and needed >= 2
    # paired, A against B: the smallest n whose power reaches 0.8
    ab = by_lr(compare_json(known, "--against", "lr==0.01"))[0.1]["val_accuracy.seeds_needed"]
    d = B - A
    assert _paired_power(d, ab) >= 0.8 > _paired_power(d, ab - 1)
    text = invoke_nnlab("compare", known, "--group-seeds", "--against", "1", "--width", "0")
    # the two best rows: C (0.001, row 3) and A (0.01, row 1), unpaired
    assert "seeds needed to tell the two best rows (3 and 1) apart at 95%" in text.stdout


def test_the_table_shows_the_same_numbers(known):
    proc = invoke_nnlab(
        "compare", known, "--group-seeds", "--against", "lr==0.01", "-c", "lr", "--format",
        "markdown",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    headers = [c.strip() for c in lines[0].split("|")[1:-1]]
    assert headers == ["#", "runs", "lr", "val_accuracy", "diff", "p", "verdict"]
    row = [c.strip() for c in lines[3].split("|")[1:-1]]  # lr 0.1 against 0.01
    paired = st.ttest_rel(B, A)
    half = paired.confidence_interval(0.95).high - np.mean(B - A)
    assert row[4] == f"{np.mean(B - A):+.4f} ± {half:.4f}"
    assert row[5] == f"{paired.pvalue:.3f}" and row[6] in ("* worse", "≈ within noise")
    assert row[6] == ("* worse" if paired.pvalue < 0.05 else "≈ within noise")
    assert "verdicts on val_accuracy against row 1" in proc.stdout


# ---------------------------------------------------------------- a table of cases

RNG = np.random.default_rng(2026)
SEED_EFFECT = 0.03 * RNG.standard_normal(8)  # what a seed (its data split) does to both rows
NOISE = 0.002 * RNG.standard_normal((2, 8))


def _case(diff: float, seeds_b: range = range(8), n: int = 8, metric: str = "val_accuracy"):
    """Two configs whose values share each seed's effect; B is A shifted by ``diff``."""
    a = 0.9 + SEED_EFFECT[:n] + NOISE[0, :n]
    b = 0.9 + SEED_EFFECT[:n] + NOISE[1, :n] + diff
    return a, b, list(seeds_b)[:n], metric


CASES = {  # name: (values of A, values of B, B's seeds, metric), B's expected verdict
    "a real difference, paired by seed": (_case(-0.01), "worse"),
    "a real gain, paired": (_case(+0.01), "better"),
    "no difference: seed noise": (_case(0.0), "within noise"),
    # the same values with B's seeds shifted: unpaired, the seed effect (sd 0.03) is noise
    "the same difference, unpaired": (_case(-0.01, range(8, 16)), "within noise"),
    "a large difference, unpaired": (_case(-0.2, range(8, 16)), "worse"),
    "a loss: lower is better": (_case(-0.01, metric="val_loss"), "better"),
    "one seed each": (_case(-0.2, n=1), "too few seeds"),
}


@pytest.mark.parametrize("case", CASES)
def test_the_verdict_calls_real_differences_real_and_noise_noise(case, tmp_path):
    (a, b, seeds_b, metric), expected = CASES[case]
    seed_runs(tmp_path, 0.01, a, metric=metric)
    seed_runs(tmp_path, 0.1, b, seeds=seeds_b, metric=metric)
    rows = by_lr(compare_json(tmp_path, "--against", "lr==0.01", "--objective", metric))
    assert rows[0.1][f"{metric}.verdict"] == expected
    assert rows[0.01][f"{metric}.verdict"] == "reference"


# ---------------------------------------------------------------- naming the row


def test_against_names_a_row_by_number_or_by_conditions(known):
    by_number = compare_json(known, "--against", "2", "--sort", "val_accuracy")
    assert [r["optimizer.lr"] for r in by_number] == [0.001, 0.01, 0.1]  # best first
    assert by_number[1]["val_accuracy.verdict"] == "reference"
    by_mean = compare_json(known, "--against", "val_accuracy<0.915")  # a row by its mean
    assert by_lr(by_mean)[0.1]["val_accuracy.verdict"] == "reference"
    alone = by_lr(compare_json(known, "--objective", "val_loss"))  # against the best
    assert alone[0.01]["val_loss.verdict"] == "reference"  # every val_loss is 0.8: the first
    assert alone[0.1]["val_loss.p"] == 1.0 and alone[0.1]["val_loss.verdict"] == "within noise"
    top = compare_json(known, "--against", "best", "--top", "1")  # --top cuts after
    assert len(top) == 1 and top[0]["val_accuracy.verdict"] == "worse"  # the best is row 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--against", "4"], "no row 4: the table has 3 rows"),
        (["--against", "lr<0.05"], "'lr<0.05' matches 2 rows (1, 3)"),
        (["--against", "lr==0.5"], "no row matches 'lr==0.5'"),
        (["--against", "best", "--against", "2"], "not a mix"),
        (["--against", "lrr==0.1"], "no column 'lrr'"),
        (["--against", "best", "--objective", "val_acc"], "Did you mean 'val_accuracy'?"),
    ],
)
def test_a_bad_row_is_a_clear_error(known, args, message):
    proc = invoke_nnlab("compare", known, "--group-seeds", *args)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: --")


def test_verdicts_need_seed_groups_and_say_which_extra_without_scipy(known, monkeypatch):
    proc = invoke_nnlab("compare", known, "--against", "best")
    assert proc.returncode == 2 and "add --group-seeds" in proc.stderr
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.stats", None)
    proc = invoke_nnlab("compare", known, "--group-seeds", "--against", "best")
    assert proc.returncode == 2 and "pip install 'nnlab[stats]'" in proc.stderr
    plain = invoke_nnlab("compare", known, "--group-seeds")  # intervals: the std instead
    assert plain.returncode == 0 and "sample standard deviation" in plain.stdout


def test_csv_carries_the_json_numbers(known):
    proc = invoke_nnlab(
        "compare", known, "--group-seeds", "--against", "best", "--format", "csv", "-c", "lr"
    )
    frame = pd.read_csv(io.StringIO(proc.stdout))
    rows = compare_json(known, "--against", "best", "-c", "lr")
    stats = ["diff", "diff_low", "diff_high", "p", "p_exact", "test", "verdict", "seeds_needed"]
    assert list(frame.columns)[:2] == ["row", "runs"]
    assert [c for c in frame.columns if c.startswith("val_accuracy.")][5:] == [
        f"val_accuracy.{s}" for s in stats
    ]
    for record, (_, row) in zip(rows, frame.iterrows(), strict=True):
        for s in ("diff", "p", "diff_high"):
            got, want = row[f"val_accuracy.{s}"], record[f"val_accuracy.{s}"]
            assert (math.isnan(got) and want is None) or got == pytest.approx(want, rel=1e-15)
