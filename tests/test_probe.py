"""nnlab probe: can this data be learned? Real labels vs shuffled ones on growing subsets."""

from __future__ import annotations

import pytest

from conftest import CONFIGS, invoke_nnlab
from nnlab.config import load_config
from nnlab.errors import ConfigError
from nnlab.probe import default_sizes, format_probe, probe, unregularized

LEARNABLE = CONFIGS / "questions" / "learnable.yaml"


def test_default_sizes_grow_by_four_up_to_the_training_size():
    assert default_sizes(1258) == [16, 64, 256, 1024, 1258]
    assert default_sizes(64) == [16, 64]
    assert default_sizes(10) == [10]


def test_regularisation_is_turned_off_and_reported():
    cfg = load_config(
        LEARNABLE,
        [
            "optimizer={name: adamw, weight_decay: 0.01}",
            "loss={name: categorical_crossentropy, label_smoothing: 0.1}",
            "training.early_stopping={monitor: val_loss}",
        ],
    )
    off_cfg, off = unregularized(cfg)
    assert off_cfg["model"]["layers"][1]["rate"] == 0.0
    assert off_cfg["optimizer"]["weight_decay"] == 0.0
    assert off_cfg["loss"]["label_smoothing"] == 0.0
    assert off_cfg["training"]["early_stopping"] is None
    assert off == [
        "model.layers[1].rate=0.2",
        "optimizer.weight_decay=0.01",
        "loss.label_smoothing=0.1",
        "training.early_stopping",
    ]
    assert cfg["model"]["layers"][1]["rate"] == 0.2  # the caller's config is left alone


def test_digits_are_learnable_and_shuffled_labels_are_only_memorised():
    """The gallery's claim: the net fits the real labels at every size and generalises; with
    shuffled labels it memorises a small set but not the whole training split, and its
    held-out accuracy stays at chance."""
    result = probe(load_config(LEARNABLE))
    rows = {r.samples: r for r in result.rows}
    assert list(rows) == [16, 64, 256, 1024, 1258]
    assert all(r.train >= 0.99 for r in result.rows)
    assert rows[16].shuffled_train >= 0.99
    assert rows[1258].shuffled_train < rows[1258].train - 0.3
    assert rows[1258].held_out > 0.9 and rows[1258].shuffled_held_out < 0.2
    assert rows[16].held_out < rows[1258].held_out  # more data generalises better
    assert result.held_out == "val" and result.turned_off
    text = format_probe(result)
    assert "shuffled: val acc" in text and "Verdict: learnable" in text


def test_noise_inputs_are_not_learnable():
    """A config whose own labels are shuffled is noise: the net memorises some of it, but the
    verdict is not 'learnable' since its held-out accuracy stays at chance."""
    cfg = load_config(LEARNABLE, ["data.shuffle_labels=true"])
    result = probe(cfg, sizes=[64, 512], epochs=20)
    assert result.rows[-1].held_out < 0.25
    assert "no sign of learnable structure" in format_probe(result)


def test_a_size_beyond_the_training_split_is_an_error():
    with pytest.raises(ConfigError, match="between 1 and the 1258 training samples"):
        probe(load_config(LEARNABLE), sizes=[16, 5000])


def test_the_command_prints_one_table_and_rejects_regression_data():
    r = invoke_nnlab("probe", LEARNABLE, "--sizes", "16,32", "--epochs", "20", "-q")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "without regularisation (model.layers[1].rate=0.2, optimizer.l2=0.0001)" in lines[0]
    assert lines[1].split()[:3] == ["samples", "majority", "train"]
    assert [line.split()[0] for line in lines[3:5]] == ["16", "32"]
    r = invoke_nnlab("probe", CONFIGS / "invertible.yaml")
    assert r.returncode == 2 and "regression" in r.stderr and "Traceback" not in r.stderr
    r = invoke_nnlab("probe", LEARNABLE, "--sizes", "16,x")
    assert r.returncode == 2 and "16,64,256" in r.stderr
