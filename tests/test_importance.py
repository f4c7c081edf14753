"""Axis importance: the exact functional ANOVA recovers known variance shares of synthetic
grids, fANOVA (Optuna) agrees on the ranking, and the bootstrap over seeds says how stable."""

from __future__ import annotations

import itertools
import math
import sys

import numpy as np
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution

from nnlab import importance as imp
from nnlab.errors import ConfigError, DataError, NnlabError
from nnlab.fanova import spread_evenly_in_log

pytestmark = pytest.mark.filterwarnings("error")


def grid(f, levels: dict[str, list], seeds: int = 1, noise: float = 0.0, gen: int = 0):
    """A row per trial of the full grid of ``levels`` times ``seeds``: objective f(**axes)
    plus Gaussian noise (a fixed generator)."""
    rng = np.random.default_rng(gen)
    rows = []
    for combo in itertools.product(*levels.values()):
        point = dict(zip(levels, combo, strict=True))
        for s in range(seeds):
            y = f(**point) + noise * rng.standard_normal()
            rows.append({**point, "seed": s, "acc": y})
    return rows


def shares(result: imp.Importance) -> dict[str, float]:
    return {s.term: s.share for s in [*result.axes, *result.interactions]}


LEVELS = {"lr": [1e-3, 1e-2, 1e-1], "init": ["he", "glorot", "zeros"], "units": [16, 64, 256]}


# ---------------------------------------------------------------- exact functional ANOVA


def test_an_objective_of_one_axis_gives_that_axis_everything():
    effect = {1e-3: 0.90, 1e-2: 0.97, 1e-1: 0.93}
    r = imp.importance(grid(lambda lr, **_: effect[lr], LEVELS), list(LEVELS), "acc")
    got = shares(r)
    assert r.method == "anova" and r.axes[0].term == "lr"
    assert got["lr"] == pytest.approx(1.0, abs=1e-12)
    for term in ("init", "units", "lr × init", "higher-order interactions"):
        assert got[term] == pytest.approx(0.0, abs=1e-12)
    assert dict(r.axes[0].levels) == pytest.approx(effect)  # each level's mean objective
    assert math.isnan(r.seed_share) and math.isnan(r.axes[0].low)  # one seed: no spread


def test_additive_shares_are_recovered_exactly():
    """g(a) has variance 1.25 over its four levels, h(b) variance 5: shares 0.2 and 0.8."""
    g = {"w": 0.0, "x": 1.0, "y": 2.0, "z": 3.0}
    h = {0.1: -math.sqrt(5), 0.5: math.sqrt(5)}
    levels = {"a": list(g), "b": list(h)}
    r = imp.importance(grid(lambda a, b: 7 + g[a] + h[b], levels), ["a", "b"], "acc")
    got = shares(r)
    assert [s.term for s in r.axes] == ["b", "a"]
    assert got["a"] == pytest.approx(0.2, rel=1e-12) and got["b"] == pytest.approx(0.8, rel=1e-12)
    assert got["a × b"] == pytest.approx(0.0, abs=1e-12)
    assert "higher-order interactions" not in got  # two axes: nothing beyond the pair
    assert r.variance == pytest.approx(6.25, rel=1e-12)


def test_main_effects_are_the_variance_of_the_level_means():
    """An independent formula on a messy grid: a main effect's share is the variance of the
    axis's level means over the variance of the cells; all terms add up to 1."""
    rng = np.random.default_rng(3)
    table = {c: rng.standard_normal() for c in itertools.product(*LEVELS.values())}
    rows = grid(lambda lr, init, units: table[lr, init, units], LEVELS)
    r = imp.importance(rows, list(LEVELS), "acc")
    frame = pd.DataFrame(rows)
    for axis in LEVELS:
        expected = frame.groupby(axis)["acc"].mean().var(ddof=0) / frame["acc"].var(ddof=0)
        assert shares(r)[axis] == pytest.approx(expected, rel=1e-10)
    assert sum(shares(r).values()) == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize(
    ("f", "expected"),
    [
        (lambda a, b, c: a * b, {"a × b": 1.0}),
        (lambda a, b, c: a + b + a * b, {"a": 1 / 3, "b": 1 / 3, "a × b": 1 / 3}),
        (lambda a, b, c: a * b * c, {"higher-order interactions": 1.0}),
        (lambda a, b, c: 2 * c + a * c, {"c": 0.8, "a × c": 0.2}),
    ],
)
def test_interactions(f, expected):
    levels = {"a": [-1, 1], "b": [-1, 1], "c": [-1, 1]}
    got = shares(imp.importance(grid(f, levels), ["a", "b", "c"], "acc"))
    assert got == pytest.approx({t: expected.get(t, 0.0) for t in got}, abs=1e-12)


def test_constant_objective_and_constant_axis():
    r = imp.importance(grid(lambda **_: 0.5, LEVELS), list(LEVELS), "acc")
    assert r.variance == 0 and all(v == 0 for v in shares(r).values())
    levels = {"a": [1, 2, 3], "b": ["only"]}
    r = imp.importance(grid(lambda a, b: a, levels), ["a", "b"], "acc")
    assert shares(r) == {"a": pytest.approx(1.0), "b": 0.0}


# ---------------------------------------------------------------- seeds


def test_seed_means_and_averaged_tables_agree_and_the_bootstrap_tracks_seed_noise():
    def f(lr, init, units):
        return {1e-3: 0.0, 1e-2: 0.4, 1e-1: -0.4}[lr] + 0.2 * (init == "zeros")

    rows = grid(f, LEVELS, seeds=3, noise=0.05, gen=1)
    r = imp.importance(rows, list(LEVELS), "acc")
    averaged = pd.DataFrame(rows).groupby(list(LEVELS), as_index=False)["acc"].mean()
    flat = imp.importance(averaged, list(LEVELS), "acc")
    assert shares(flat) == pytest.approx(shares(r), rel=1e-12)
    assert math.isnan(flat.axes[0].low) and flat.n_boot == 0 and r.n_boot == 1000
    assert (r.n_configs, r.n_trials) == (27, 81)
    truth = shares(imp.importance(grid(f, LEVELS), list(LEVELS), "acc"))  # without noise
    for s in [*r.axes, *r.interactions]:  # the intervals hold the noise-free shares
        assert s.low <= truth[s.term] <= s.high, s
    assert r.axes[0].term == "lr" and r.axes[0].low > 0.7
    # the spread of the estimate shrinks as seeds are added; without noise it vanishes
    many = imp.importance(grid(f, LEVELS, seeds=30, noise=0.05, gen=1), list(LEVELS), "acc")
    assert many.axes[0].spread < r.axes[0].spread / 2
    exact = imp.importance(grid(f, LEVELS, seeds=3), list(LEVELS), "acc")
    assert exact.axes[0].spread == 0 and exact.seed_share == pytest.approx(0, abs=1e-12)


def test_seed_share_is_the_within_config_variance():
    """Config means of variance 1 (two levels ±1), seed noise of variance 1: half the trials'
    variance lies between seeds."""
    rows = grid(lambda a: a, {"a": [-1.0, 1.0]}, seeds=4000, noise=1.0, gen=2)
    r = imp.importance(rows, ["a"], "acc", n_boot=0)
    assert r.seed_share == pytest.approx(0.5, abs=0.02)


def test_bootstrap_is_seeded_and_draws_within_configs_when_seeds_differ():
    rows = grid(lambda lr, **_: lr, LEVELS, seeds=3, noise=0.01, gen=4)
    a = imp.importance(rows, list(LEVELS), "acc", rng_seed=5)
    assert a == imp.importance(rows, list(LEVELS), "acc", rng_seed=5)
    assert a.axes[0].spread != imp.importance(rows, list(LEVELS), "acc", rng_seed=6).axes[0].spread
    for i, row in enumerate(rows):  # every config its own seeds: drawn config by config
        row["seed"] = i
    b = imp.importance(rows[:-1], list(LEVELS), "acc")  # one config with 2 seeds
    assert b.axes[0].share == pytest.approx(a.axes[0].share, abs=0.01)
    assert b.axes[0].low <= 1.0 <= b.axes[0].high  # the noise-free share: lr is everything
    assert 0 < b.axes[0].spread < 0.02 and b.axes[0].spread != a.axes[0].spread


def test_non_finite_objectives_are_left_out_and_counted():
    rows = grid(lambda lr, **_: lr, LEVELS, seeds=2)
    rows[0]["acc"] = math.nan  # a diverged run
    rows[5]["acc"] = None
    r = imp.importance(rows, list(LEVELS), "acc")
    assert r.dropped == 2 and r.n_trials == 52 and r.method == "anova"
    assert "2 trials" in r.notes[0]


# ---------------------------------------------------------------- fANOVA


def test_fanova_agrees_with_the_exact_ranking():
    """Additive shares 0.6 / 0.3 / 0.1 on a grid: fANOVA ranks the axes the same way."""
    scale = {"lr": math.sqrt(0.6), "init": math.sqrt(0.3), "units": math.sqrt(0.1)}
    sign = {1e-3: -1, 1e-2: 0, 1e-1: 1, "he": -1, "glorot": 0, "zeros": 1, 16: -1, 64: 0, 256: 1}

    def f(lr, init, units):
        return scale["lr"] * sign[lr] + scale["init"] * sign[init] + scale["units"] * sign[units]

    rows = grid(f, LEVELS)
    exact = imp.importance(rows, list(LEVELS), "acc")
    assert shares(exact)["lr"] == pytest.approx(0.6) and shares(exact)["units"] == pytest.approx(
        0.1
    )
    fanova = imp.importance(rows, list(LEVELS), "acc", method="fanova")
    assert fanova.method == "fanova"
    assert [s.term for s in fanova.axes] == [s.term for s in exact.axes] == ["lr", "init", "units"]
    assert fanova.interactions[0].term == "interactions"


def test_fanova_on_random_search_trials():
    """A sampled search (no grid): auto picks fANOVA; the one axis that matters gets most of
    the variance; the bootstrap over seeds gives an interval."""
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(30):
        lr, drop = 10 ** rng.uniform(-4, -1), rng.uniform(0, 0.5)
        init = str(rng.choice(["he", "glorot"]))
        for s in range(2):
            acc = 0.9 - 0.05 * (np.log10(lr) + 2.5) ** 2 + 0.002 * rng.standard_normal()
            rows.append({"lr": lr, "drop": drop, "init": init, "seed": s, "acc": acc})
    r = imp.importance(rows, ["lr", "drop", "init"], "acc", n_boot=3)
    assert r.method == "fanova" and r.n_configs == 30 and r.n_boot == 3
    assert r.axes[0].term == "lr" and r.axes[0].share > 0.8
    assert r.axes[0].low <= r.axes[0].high and r.axes[0].spread >= 0
    with pytest.raises(DataError, match="complete grid"):
        imp.importance(rows, ["lr", "drop", "init"], "acc", method="anova")


def test_fanova_reads_a_log_axis_on_its_log_scale():
    """lr on 1e-4..1e-1 steps the objective by 1 below 1e-3, units add up to 1.7 linearly.
    Measured uniformly on the log scale (lr < 1e-3 is a third of it) both matter about
    equally; on the raw scale (where it is 1%) the lr hardly matters."""
    rng = np.random.default_rng(1)
    rows = [
        {"lr": lr, "units": u, "acc": float(lr < 1e-3) + 1.7 * u / 512}
        for lr, u in zip(10 ** rng.uniform(-4, -1, 60), rng.uniform(16, 512, 60), strict=True)
    ]
    axes = ["lr", "units"]
    log = imp.importance(rows, axes, "acc", method="fanova", seed=None)
    raw = imp.importance(
        rows, axes, "acc", method="fanova", distributions={"lr": FloatDistribution(1e-4, 1e-1)}
    )
    given = imp.importance(
        rows, axes, "acc", method="fanova",
        distributions={"lr": FloatDistribution(1e-4, 1e-1, log=True)},
    )  # fmt: skip
    assert 0.4 < shares(log)["lr"] < 0.7 and 0.3 < shares(log)["units"] < 0.6
    assert shares(given)["lr"] == pytest.approx(shares(log)["lr"], abs=0.02)
    assert shares(raw)["lr"] < 0.15 and shares(raw)["units"] > 0.8


def test_log_scale_inference():
    assert spread_evenly_in_log(np.array([1e-3, 1e-2, 1e-1]))
    assert spread_evenly_in_log(np.array([16, 64, 256, 1024]))
    assert not spread_evenly_in_log(np.array([0.1, 0.3, 0.5]))
    assert not spread_evenly_in_log(np.array([0.0, 0.01, 0.1]))  # 0 has no log
    assert not spread_evenly_in_log(np.array([1e-3, 1e-1]))  # two values: no evidence


def test_fanova_checks_given_distributions():
    rows = grid(lambda lr, **_: lr, LEVELS)
    with pytest.raises(DataError, match=r"lr: 0.1 is outside \[0.0001, 0.01\]"):
        imp.importance(
            rows, list(LEVELS), "acc", method="fanova",
            distributions={"lr": FloatDistribution(1e-4, 1e-2, log=True)},
        )  # fmt: skip
    with pytest.raises(DataError, match="'zeros' is not among the choices"):
        imp.importance(
            rows, list(LEVELS), "acc", method="fanova",
            distributions={"init": CategoricalDistribution(["he", "glorot"])},
        )  # fmt: skip
    with pytest.raises(ConfigError, match="no axis 'depth'"):
        imp.importance(
            rows, list(LEVELS), "acc", method="fanova",
            distributions={"depth": FloatDistribution(1, 2)},
        )  # fmt: skip


# ---------------------------------------------------------------- bad input


def test_bad_input_is_a_clear_error():
    rows = grid(lambda lr, **_: lr, LEVELS)
    with pytest.raises(DataError, match=r"no column 'val_acc' \(columns: lr, init, units"):
        imp.importance(rows, list(LEVELS), "val_acc")
    with pytest.raises(ConfigError, match="unknown method 'grid'"):
        imp.importance(rows, list(LEVELS), "acc", method="grid")
    with pytest.raises(ConfigError, match="seed column 'seed' cannot be an axis"):
        imp.importance(rows, ["lr", "seed"], "acc")
    with pytest.raises(DataError, match="at least 2 configs"):
        imp.importance(rows[:1], list(LEVELS), "acc")


def test_component_values_are_compared_as_text():
    rows = grid(lambda init, **_: len(init), {"init": ["a", "bb"], "lr": [0.1, 0.2]})
    for row in rows:
        row["init"] = {"name": row["init"], "stddev": 1.0}  # a component with options
    r = imp.importance(rows, ["init", "lr"], "acc")
    assert r.axes[0].term == "init" and r.axes[0].share == pytest.approx(1.0)
    assert dict(r.axes[0].levels)['{"name": "bb", "stddev": 1.0}'] == 2


def test_missing_optuna_is_an_nnlab_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    rows = grid(lambda lr, **_: lr, LEVELS)
    assert imp.importance(rows, list(LEVELS), "acc").method == "anova"  # no optuna needed
    with pytest.raises(NnlabError, match=r"pip install 'nnlab\[search\]'") as e:
        imp.importance(rows, list(LEVELS), "acc", method="fanova")
    assert e.value.exit_code == 2
