"""nnlab importance: a sweep's axes (from sweep.yaml, or the keys that differ) and each one's
share of the variance of the objective, recovered from synthetic runs with known shares; the
report shows the same numbers."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_compare import make_run

from conftest import invoke_nnlab
from nnlab.compare import load_runs
from nnlab.compare.axes import find_axes, runs_importance
from nnlab.report import report_data

LRS = (0.1, 0.01, 0.001)
INITS = ("he_normal", "glorot_uniform")
F = {0.1: 0.00, 0.01: 0.06, 0.001: 0.03}  # the learning rate's effect
G = {"he_normal": 0.02, "glorot_uniform": 0.0}  # the initializer's
E = 0.005
H = {  # their interaction: every row and column of it averages to 0
    (0.1, "he_normal"): E,
    (0.1, "glorot_uniform"): -E,
    (0.01, "he_normal"): -E,
    (0.01, "glorot_uniform"): E,
    (0.001, "he_normal"): 0.0,
    (0.001, "glorot_uniform"): 0.0,
}
SEED_EFFECT = (0.011, -0.004, 0.007)  # what seed k adds to every config (its data split)


def known_shares() -> dict[str, float]:
    """The functional ANOVA of the 3 x 2 grid by hand: each effect's mean square over the
    variance of the cells."""
    cells = np.array([[0.9 + F[lr] + G[i] + H[lr, i] for i in INITS] for lr in LRS])
    total = cells.var()
    f = np.array([F[lr] for lr in LRS])
    g = np.array([G[i] for i in INITS])
    h = np.array([[H[lr, i] for i in INITS] for lr in LRS])
    return {
        "lr": np.mean((f - f.mean()) ** 2) / total,
        "initializer": np.mean((g - g.mean()) ** 2) / total,
        "lr × initializer": np.mean(h**2) / total,
    }


def write_grid(root: Path, noise: float = 0.0, skip: tuple = (), spec: bool = True) -> Path:
    """A sweep folder of 3 x 2 configs x 3 seeds (its sweep.yaml with a third axis of one value
    when ``spec``); val_accuracy = 0.9 + F + G + H + the seed's effect (+ noise)."""
    rng = np.random.default_rng(7)
    trials = root / "trials"
    number = 0
    for lr in LRS:
        for init in INITS:
            for k, effect in enumerate(SEED_EFFECT):
                number += 1
                if (lr, init) in skip:
                    continue
                y = 0.9 + F[lr] + G[init] + H[lr, init] + effect + noise * rng.standard_normal()
                sets = [f"optimizer.lr={lr}", f"model.layers.0.initializer={init}"]
                make_run(
                    trials, f"{number:03d}-h{number}", [*sets, f"training.seed={k}"],
                    val_accuracy=(0.5, 0.6, y), test={"accuracy": y - 0.01, "loss": 0.3},
                )  # fmt: skip
    if spec:
        (root / "sweep.yaml").write_text(
            "name: grid\naxes:\n  optimizer.lr: [0.1, 0.01, 0.001]\n"
            "  model.layers[0].initializer: [he_normal, glorot_uniform]\n"
            "  training.batch_size: [32]\nseeds: [0, 1, 2]\n"
            "trials:\n- {number: 1, hash: abc, seed: 0, overrides: {optimizer.lr: 0.1}}\n"
        )
    return root


def importance_json(*args: object) -> dict:
    proc = invoke_nnlab("importance", *args, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def shares(data: dict) -> dict[str, float]:
    """Each term's share, an interaction named with its axes in the order of known_shares."""
    return {
        " × ".join(sorted(t["term"].split(" × "), reverse=True)): t["share"] for t in data["terms"]
    }


def test_a_full_grid_gives_the_known_shares_exactly(tmp_path):
    sweep = write_grid(tmp_path / "sweeps" / "grid")
    data = importance_json(sweep)
    assert data["method"] == "anova" and data["objective"] == "val_accuracy"
    assert data["axes"] == {
        "lr": "optimizer.lr",
        "initializer": "model.layers.0.initializer",
        "batch_size": "training.batch_size",
    }
    assert data["axes_from"].endswith("sweep.yaml") and (data["configs"], data["runs"]) == (6, 18)
    found = shares(data)
    for term, share in known_shares().items():
        assert found[term] == pytest.approx(share, rel=1e-9, abs=1e-12)
    assert found["batch_size"] == 0.0  # an axis of the spec with one value explains nothing
    assert [t["term"] for t in data["terms"]][:3] == ["lr", "initializer", "lr × initializer"]
    # each seed moves every config alike: every draw of seeds gives the same shares
    lr = data["terms"][0]
    assert lr["spread"] == pytest.approx(0.0, abs=1e-12)
    assert lr["low"] == pytest.approx(lr["share"]) == pytest.approx(lr["high"])
    assert data["seed_share"] > 0
    assert [v for v, _ in lr["levels"]] == [0.001, 0.01, 0.1]
    assert [m for _, m in lr["levels"]] == pytest.approx(
        [0.9 + F[x] + 0.01 + np.mean(SEED_EFFECT) for x in (0.001, 0.01, 0.1)]
    )


def test_runs_outside_a_sweep_rank_the_keys_that_differ(tmp_path):
    runs = write_grid(tmp_path / "plain", spec=False)
    data = importance_json(runs)
    assert data["axes"] == {"lr": "optimizer.lr", "initializer": "model.layers.0.initializer"}
    assert "differ" in data["axes_from"]
    for term, share in known_shares().items():
        assert shares(data)[term] == pytest.approx(share, rel=1e-9)


def test_seed_noise_shows_in_the_interval(tmp_path):
    data = importance_json(write_grid(tmp_path / "noisy", noise=0.01), "--seed", "3")
    lr = data["terms"][0]
    assert lr["term"] == "lr" and lr["spread"] > 0.005 and lr["low"] < lr["high"]
    again = importance_json(write_grid(tmp_path / "noisy2", noise=0.01), "--seed", "3")
    assert again["terms"] == data["terms"]  # the bootstrap is seeded


def test_metric_where_and_formats(tmp_path):
    sweep = write_grid(tmp_path / "sweeps" / "grid")
    test = importance_json(sweep, "--metric", "test_accuracy")  # y - 0.01: the same shares
    assert test["objective"] == "test_accuracy"
    assert shares(test)["lr"] == pytest.approx(known_shares()["lr"], rel=1e-9)
    # without lr 0.1 the grid is 2 x 2: lr 0.01 against 0.001 only
    two = importance_json(sweep, "--where", "lr<0.05")
    assert two["configs"] == 4 and two["method"] == "anova"
    csv = invoke_nnlab("importance", sweep, "--format", "csv").stdout
    frame = pd.read_csv(io.StringIO(csv))
    assert list(frame.columns) == ["term", "share", "low", "high", "spread"]
    assert frame["share"].iloc[0] == pytest.approx(known_shares()["lr"], rel=1e-9)
    table = invoke_nnlab("importance", sweep).stdout
    assert table.splitlines()[0].split() == ["term", "share", "95%", "interval", "spread"]
    assert f"{100 * known_shares()['lr']:.1f}%" in table.splitlines()[2]
    assert "exact functional ANOVA of the complete grid" in " ".join(table.split())
    markdown = invoke_nnlab("importance", sweep, "--format", "markdown").stdout
    assert markdown.startswith("| term") and "\n- val_accuracy, averaged over" in markdown


def test_an_incomplete_grid_goes_to_fanova(tmp_path):
    sweep = write_grid(tmp_path / "sweeps" / "grid", skip=((0.1, "he_normal"),))
    data = importance_json(sweep, "--boot", "0")
    assert data["method"] == "fanova" and data["configs"] == 5
    assert data["terms"][0]["term"] == "lr" and data["terms"][-1]["term"] == "interactions"
    proc = invoke_nnlab("importance", sweep, "--method", "anova")
    assert proc.returncode == 2 and "do not form a complete grid" in proc.stderr


def test_bad_input_is_a_clear_error(tmp_path):
    sweep = write_grid(tmp_path / "sweeps" / "grid")
    proc = invoke_nnlab("importance", sweep, "--metric", "val_acc")
    assert proc.returncode == 2 and "Did you mean 'val_accuracy'?" in proc.stderr
    one = invoke_nnlab("importance", *sorted((sweep / "trials").iterdir())[:3])
    assert one.returncode == 2 and "at least 2 configs" in one.stderr  # seeds of one config
    plain = write_grid(tmp_path / "plain", spec=False)
    seeds = invoke_nnlab("importance", *sorted((plain / "trials").iterdir())[:3])
    assert seeds.returncode == 2 and "no axes to rank" in seeds.stderr
    none = invoke_nnlab("importance", sweep, "--where", "lr>1")
    assert none.returncode == 2 and "--where left none" in none.stderr


def test_the_report_shows_the_same_importance(tmp_path):
    sweep = write_grid(tmp_path / "sweeps" / "grid", noise=0.01)
    runs = load_runs([sweep], warn=pytest.fail)
    page = report_data(runs)["sweep"]["importance"]
    imp, axes = runs_importance(runs)
    assert axes.names == find_axes(runs).names == ["lr", "initializer", "batch_size"]
    assert imp.method == "anova" and imp.objective == "val_accuracy"
    cli = importance_json(sweep)
    assert [t["term"] for t in page["terms"]] == [t["term"] for t in cli["terms"]]
    for shown, printed in zip(page["terms"], cli["terms"], strict=True):
        assert shown["share"] == pytest.approx(printed["share"], rel=1e-12)
        assert shown["low"] == pytest.approx(printed["low"], rel=1e-12)
