"""training.log_layers: per-layer statistics that show what initialization does."""

from __future__ import annotations

import csv
import itertools
import math

import numpy as np
import pytest

from conftest import CONFIGS
from nnlab.config import load_config
from nnlab.lifecycle import train

DEEP = CONFIGS / "questions" / "init_deep.yaml"


def _with_init(init: str, *extra: str) -> list[str]:
    return [f"model.layers.{i}.initializer={init}" for i in range(7)] + list(extra)


def _stats(run_dir) -> list[dict]:
    rows = list(csv.DictReader((run_dir / "layers.csv").open()))
    return [
        {
            k: (v if k in ("name", "type", "activation") else (float(v) if v else math.nan))
            for k, v in r.items()
        }
        for r in rows
    ]


def _at(rows, epoch):
    return [r for r in rows if r["epoch"] == epoch]


def test_layers_csv_has_a_row_per_layer_and_epoch_from_initialization(runs):
    result = train(load_config(DEEP, ["training.epochs=2"]), runs)
    rows = _stats(result.run_dir)
    assert [r["epoch"] for r in rows] == [e for e in (0, 1, 2) for _ in range(7)]
    first = _at(rows, 0)[0]
    assert first["type"] == "dense" and first["activation"] == "relu"
    assert first["w_norm"] > 0 and first["grad_norm"] > 0
    assert 0 <= first["dead"] <= 1 and math.isnan(first["saturated"])


def test_he_normal_keeps_the_spread_while_stddev_1_blows_it_up(runs):
    he = _at(_stats(train(load_config(DEEP, ["training.epochs=1"]), runs).run_dir), 0)
    big = _at(
        _stats(
            train(
                load_config(
                    DEEP, _with_init("{name: random_normal, stddev: 1.0}", "training.epochs=1")
                ),
                runs,
            ).run_dir
        ),
        0,
    )
    he_std = [r["a_std"] for r in he[:6]]
    big_std = [r["a_std"] for r in big[:6]]
    assert max(he_std) / min(he_std) < 3  # about constant with depth
    assert all(b > 2 * a for a, b in itertools.pairwise(big_std))  # grows each layer
    assert big_std[-1] > 1e4


def test_stddev_1_saturates_tanh_units(runs):
    overrides = [f"model.layers.{i}.activation=tanh" for i in range(6)]
    big = _at(
        _stats(
            train(
                load_config(
                    DEEP,
                    _with_init(
                        "{name: random_normal, stddev: 1.0}", "training.epochs=1", *overrides
                    ),
                ),
                runs,
            ).run_dir
        ),
        0,
    )
    glorot = _at(
        _stats(
            train(
                load_config(DEEP, _with_init("glorot_uniform", "training.epochs=1", *overrides)),
                runs,
            ).run_dir
        ),
        0,
    )
    assert min(r["saturated"] for r in big[1:6]) > 0.6
    assert max(r["saturated"] for r in glorot[:6]) < 0.1


def test_zeros_never_break_the_symmetry(runs):
    result = train(
        load_config(
            DEEP, _with_init("zeros", "training.epochs=5", "model.layers.0.initializer=he_normal")
        ),
        runs,
    )
    rows = _stats(result.run_dir)
    for r in rows:
        if 1 <= r["layer"] <= 5:  # hidden layers after the first: all units identical
            assert r["unit_spread"] == 0.0, r
    assert result.summary["test"]["accuracy"] < 0.5


def test_logging_layers_changes_no_number(runs):
    plain = train(load_config(DEEP, ["training.epochs=3", "training.log_layers=false"]), runs)
    logged = train(load_config(DEEP, ["training.epochs=3"]), runs)
    assert not (plain.run_dir / "layers.csv").exists()
    assert _metrics(plain.run_dir) == _metrics(logged.run_dir)
    np.testing.assert_array_equal(plain.experiment.model.theta, logged.experiment.model.theta)


def _metrics(run_dir) -> list[dict]:
    rows = csv.DictReader((run_dir / "metrics.csv").open())
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


@pytest.mark.parametrize(
    "name, A, expected",
    [
        ("sigmoid", np.array([[0.5, 0.999]]), 0.5),
        ("tanh", np.array([[0.0, 0.99], [-0.999, 0.1]]), 0.5),
    ],
)
def test_saturation_definition(name, A, expected):
    from nnlab.layerstats import saturated_fraction

    assert saturated_fraction(name, A) == expected


def test_dead_units_are_zero_for_every_sample():
    from nnlab.layerstats import dead_fraction

    A = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0]])
    assert dead_fraction("relu", A) == pytest.approx(1 / 3)
    assert math.isnan(dead_fraction("tanh", A))
