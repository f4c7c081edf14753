"""nnlab lr-find: the range test's smoothing and readings on curves with a known answer, a sane
suggestion on digits, the same output twice from the same seed, nothing written and nothing
changed for later runs."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from conftest import CONFIGS, invoke_nnlab
from nnlab.lrfind import smooth, suggest

DIGITS = CONFIGS / "digits.yaml"


def test_smoothing_is_the_debiased_moving_average():
    x = np.random.default_rng(0).normal(2.0, 0.3, 50)
    # pandas' adjusted ewm weighs x[i - k] by beta**k over the weights' sum: the same average
    expected = pd.Series(x).ewm(alpha=0.02, adjust=True).mean().to_numpy()
    np.testing.assert_allclose(smooth(x, 0.98), expected, rtol=1e-12)
    assert smooth(x, 0.98)[0] == x[0]  # no pull towards 0 at the start


def curve(steps: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """A loss that falls from 2.3 to 0.3 around lr 1e-3 (fastest there, per factor of rate)
    and climbs again beyond 1e-1, with a sudden fall on its way up at lr 2."""
    lrs = 1e-7 * 1e8 ** (np.arange(steps) / (steps - 1))
    u = np.log10(lrs)
    loss = 2.3 - 2.0 / (1 + np.exp(-(u + 3) / 0.3)) + 3.0 * np.maximum(u + 1, 0) ** 2
    return lrs, loss - 5.0 * (u > 0.3)


def test_readings_of_a_known_curve():
    lrs, loss = curve()
    found = suggest(lrs, loss, 200)
    step = 1e8 ** (1 / 199)  # the factor between two steps
    assert 1e-3 / step <= found["steep"] <= 1e-3 * step  # the steepest fall before the minimum
    lowest = lrs[np.argmin(loss[20:195]) + 20]
    assert found["minimum"] == pytest.approx(lowest / 10)
    # valley: the middle of the longest fall, here from the start of the window to the minimum
    u = np.log10([lrs[20], lowest])
    assert found["valley"] == pytest.approx(10 ** u.mean(), rel=step - 1)
    assert math.isnan(suggest(lrs[:12], loss[:12], 200)["valley"])  # too short to read


def lr_find(*args: object, cwd=None) -> dict:
    proc = invoke_nnlab("lr-find", DIGITS, *args, "--format", "json", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_sane_rate_for_adam_on_digits_the_same_twice(tmp_path):
    first = lr_find(cwd=tmp_path)
    assert 1e-3 <= first["suggested"] <= 1e-1 and first["method"] == "valley"
    assert all(1e-3 <= v <= 1e-1 for v in first["suggestions"].values())
    assert first["lr"][0] == 1e-7 and len(first["lr"]) == len(first["loss"]) <= 200
    assert lr_find(cwd=tmp_path) == first  # bit for bit, from the seed
    other = lr_find("--seed", "1", cwd=tmp_path)
    assert other["loss"] != first["loss"]
    assert list(tmp_path.iterdir()) == []  # no run folder, nothing written


def test_later_runs_are_unchanged(runs):
    args = ("--set", "training.epochs=2", "--runs-dir", runs, "-q")
    before = invoke_nnlab("train", DIGITS, *args)
    lr_find("--steps", "40")
    after = invoke_nnlab("train", DIGITS, *args)
    first, second = (runs / p.stdout.strip().splitlines()[-1] for p in (before, after))
    first, second = (r if r.is_absolute() else runs.parent / r for r in (first, second))
    metrics = [(r / "metrics.csv").read_text().splitlines() for r in (first, second)]
    strip = [[",".join(line.split(",")[:-1]) for line in m] for m in metrics]  # seconds differ
    assert strip[0] == strip[1]


def test_the_loss_that_diverges_stops_the_test():
    out = lr_find("--set", "optimizer=sgd", "--start", "1e-3", "--end", "1e4", "--steps", "100")
    assert len(out["lr"]) < 100
    assert out["stopped"].startswith(("diverged", "the loss was not finite"))
    smoothed = np.array(out["smoothed"])
    if out["stopped"].startswith("diverged"):
        assert smoothed[-1] > 4 * smoothed[:-1].min()
    assert np.isfinite(out["loss"]).all()


def test_text_and_image(tmp_path):
    proc = invoke_nnlab("lr-find", DIGITS, "--steps", "60", "--method", "minimum")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert text.startswith("loss\n") and " lr\n" in text  # the curve, lr on its axis
    assert "suggested lr: " in text and "by minimum: a tenth of the rate" in text
    assert "nothing written" in text
    image = tmp_path / "lr.png"
    proc = invoke_nnlab("lr-find", DIGITS, "--steps", "60", "-o", image)
    assert proc.returncode == 0 and image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {image}" in proc.stdout and "loss\n" not in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "1", "--end", "0.1"], "the rates must grow"),
        (["--steps", "5"], "5 is not in the range x>=20"),
        (["--set", "optimizer.lr=-1"], "optimizer.lr"),
        (["--start", "1e3", "--end", "1e9", "--steps", "20"], "too few to read a curve"),
    ],
)
def test_bad_input_is_a_clear_error(args, message):
    proc = invoke_nnlab("lr-find", DIGITS, *args)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
