"""nnlab plot: curves per run or mean and band per group of seeds (against hand-computed values),
the legend naming what differs, a PNG, a plot in the terminal, and errors."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from test_compare import make_run

from conftest import invoke_nnlab
from nnlab.compare import load_runs
from nnlab.errors import ConfigError
from nnlab.plot import curves, labels, plot_image, text_plot

NAN = math.nan


@pytest.fixture
def seeds(tmp_path):
    """Two learning rates, three seeds each; one run stopped after two epochs, one has a NaN."""
    curves_of = {
        ("0.01", 0): (0.1, 0.2, 0.5),
        ("0.01", 1): (0.3, 0.4, 0.7),
        ("0.01", 2): (0.2, NAN, 0.9),
        ("0.1", 0): (0.5, 0.6, 0.6),
        ("0.1", 1): (0.7, 0.8, 0.8),
        ("0.1", 2): (0.6, 0.7),
    }
    for (lr, s), acc in curves_of.items():
        make_run(
            tmp_path / "runs",
            f"lr{lr}-s{s}",
            [f"optimizer.lr={lr}", f"training.seed={s}"],
            val_accuracy=acc,
            val_loss=tuple(1 - a for a in acc),
        )
    return tmp_path / "runs"


def runs_in(root):
    return sorted(root.iterdir())


def loaded(root):
    return load_runs(runs_in(root), warn=pytest.fail)


def test_group_curves_are_the_mean_with_a_band(seeds):
    low_lr, high_lr = curves(loaded(seeds), "val_accuracy", group_seeds=True)
    assert low_lr.label == "lr=0.01 (n=3)" and high_lr.label == "lr=0.1 (n=3)"
    np.testing.assert_array_equal(low_lr.epochs, [1, 2, 3])
    # epoch 2: the NaN is left out -> mean of 0.2 and 0.4
    np.testing.assert_allclose(low_lr.values, [0.2, 0.3, 0.7])
    np.testing.assert_allclose(low_lr.low, [0.1, 0.2, 0.5])
    np.testing.assert_allclose(low_lr.high, [0.3, 0.4, 0.9])
    # epoch 3: only two runs got there
    np.testing.assert_allclose(high_lr.values, [0.6, 0.7, 0.7])
    (std,) = [c for c in curves(loaded(seeds), "val_accuracy", True, band="std") if c.n == 3][:1]
    # epoch 1: 0.1, 0.3, 0.2 -> sample std 0.1; epoch 3: 0.5, 0.7, 0.9 -> 0.2
    np.testing.assert_allclose(std.high - std.values, [0.1, math.sqrt(0.02), 0.2])
    np.testing.assert_allclose(std.values - std.low, [0.1, math.sqrt(0.02), 0.2])


def test_one_line_per_run_named_by_what_differs(seeds):
    lines = curves(loaded(seeds), "val_loss")
    assert [c.label for c in lines] == [
        "lr=0.01 seed=0",
        "lr=0.01 seed=1",
        "lr=0.01 seed=2",
        "lr=0.1 seed=0",
        "lr=0.1 seed=1",
        "lr=0.1 seed=2",
    ]
    np.testing.assert_allclose(lines[0].values, [0.9, 0.8, 0.5])
    assert lines[0].low is None and len(lines[5].epochs) == 2


def test_labels_collapse_components_and_fall_back_to_run_names(tmp_path):
    a = make_run(tmp_path, "he", ["model.layers.0.initializer=he_normal"])
    b = make_run(tmp_path, "big", ["model.layers.0.initializer={name: random_normal, stddev: 2}"])
    c = make_run(tmp_path, "again", ["model.layers.0.initializer=he_normal"])
    runs = load_runs([a, b], warn=pytest.fail)
    assert labels(runs) == ["initializer=he_normal", "initializer=random_normal(stddev=2.0)"]
    assert labels(load_runs([a, c], warn=pytest.fail)) == ["he", "again"]


def test_image_has_a_panel_per_metric_with_a_legend(seeds, tmp_path):
    runs = loaded(seeds)
    panels = {m: curves(runs, m, group_seeds=True) for m in ("val_accuracy", "val_loss")}
    out = tmp_path / "curves.png"
    fig = plot_image(panels, out)
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    axes = fig.get_axes()
    assert [ax.get_ylabel() for ax in axes] == ["val_accuracy", "val_loss"]
    assert all(ax.get_xlabel() == "epoch" for ax in axes)
    (legend,) = fig.legends  # one legend beside the panels, covering none of them
    assert [t.get_text() for t in legend.get_texts()] == ["lr=0.01 (n=3)", "lr=0.1 (n=3)"]
    assert len(axes[0].collections) == 2  # the bands


def test_cli_writes_a_png(seeds, tmp_path):
    out = tmp_path / "c.png"
    proc = invoke_nnlab("plot", *runs_in(seeds), "--group-seeds", "-m", "val_accuracy", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out) and out.stat().st_size > 5000


def test_terminal_plot_has_axes_and_a_legend(seeds):
    where = ["--where", "lr==0.1"]
    proc = invoke_nnlab("plot", *runs_in(seeds), "-m", "val_accuracy", *where, "--group-seeds")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "val_accuracy"
    assert lines[1].split("|")[0].strip() == "0.8"  # top: the band's highest value
    assert lines[-4].split("|")[0].strip() == "0.5"  # bottom: its lowest
    assert lines[-2].split() == ["1", "2", "3", "epoch"]
    assert lines[-1] == "  * lr0.1-s0 (n=3)"  # one line: nothing differs, named by a run
    assert "*" in "".join(lines[1:-4]) and "." in "".join(lines[1:-4])


def test_text_plot_draws_each_line_where_its_values_are():
    from nnlab.plot import Curve

    up = Curve("up", np.array([1.0, 2.0, 3.0]), np.array([0.0, 1.0, 2.0]))
    flat = Curve("flat", np.array([1.0, 3.0]), np.array([2.0, 2.0]))
    text = text_plot([up, flat], "loss", columns=25, height=5).splitlines()
    grid = [line.split("|", 1)[1] for line in text[1:6]]
    assert grid[0].startswith("o") and grid[0].rstrip().endswith("o")  # flat at the top
    assert grid[4].startswith("*")  # up starts at the bottom left
    assert text[-2:] == ["  * up", "  o flat"]


def test_unknown_metric_and_missing_matplotlib(seeds, tmp_path):
    proc = invoke_nnlab("plot", *runs_in(seeds), "-m", "val_acc")
    assert proc.returncode == 2 and "Did you mean 'val_accuracy'?" in proc.stderr
    with pytest.raises(ConfigError):
        curves(loaded(seeds), "accuracy", band="iqr")
    with pytest.MonkeyPatch.context() as mp:  # import matplotlib fails
        mp.setitem(sys.modules, "matplotlib", None)
        mp.setitem(sys.modules, "matplotlib.pyplot", None)
        proc = invoke_nnlab("plot", *runs_in(seeds), "-o", tmp_path / "x.png")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert "pip install 'nnlab[plot]'" in proc.stderr
        assert not (tmp_path / "x.png").exists()
        proc = invoke_nnlab("plot", *runs_in(seeds))  # the terminal needs no matplotlib
        assert proc.returncode == 0 and "val_loss" in proc.stdout


@pytest.fixture
def grid(tmp_path):
    """Two initializers x seven learning rates x two seeds: 28 runs, more than the symbols
    and colours a plot can give one line each."""
    lrs = (0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001)
    for init in ("he_normal", "glorot_uniform"):
        for i, lr in enumerate(lrs):
            for s in (0, 1):
                acc = (0.2 + i * 0.05, 0.5 + i * 0.05 + s * 0.01, 0.6 + i * 0.04)
                make_run(
                    tmp_path / "runs",
                    f"{init}-{lr}-s{s}",
                    [f"optimizer.lr={lr}", f"training.seed={s}",
                     f"model.layers.0.initializer={init}"],
                    val_accuracy=acc,
                    val_loss=tuple(1 - a for a in acc),
                )  # fmt: skip
    return tmp_path / "runs"


def test_many_lines_share_a_symbol_per_value_of_the_swept_axis(grid):
    lines = curves(loaded(grid), "val_accuracy")
    text = text_plot(lines, "val_accuracy", columns=100).splitlines()
    assert max(map(len, text)) <= 100
    axis = text[text.index(next(t for t in text if t.strip().startswith("+--"))) + 1]
    assert axis.split()[-2:] == ["3", "epoch"]  # the axis label on the axis line, not wrapped
    key = [t for t in text if t.startswith("  ") and "=" in t]
    # colour by the axis with the most values (lr: 7, small to large), one symbol each
    assert [k.split()[1] for k in key] == [
        f"lr={lr}" for lr in ("0.001", "0.002", "0.005", "0.01", "0.02", "0.05", "0.1")
    ]
    assert all(k.endswith("(4 lines)") for k in key)
    symbols = [k.split()[0] for k in key]
    assert len(set(symbols)) == len(symbols)  # no symbol stands for two things


def test_an_image_of_many_runs_has_a_short_legend_and_no_warning(grid, tmp_path):
    import warnings

    runs = loaded(grid)
    panels = {m: curves(runs, m) for m in ("val_accuracy", "val_loss")}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning (matplotlib's layout ones) fails here
        fig = plot_image(panels, tmp_path / "many.png", logy=True)
    (legend,) = fig.legends
    texts = [t.get_text() for t in legend.get_texts()]
    # a colour per learning rate, a line style per initializer
    assert texts[:7] == [
        f"lr={lr} (4 lines)" for lr in ("0.001", "0.002", "0.005", "0.01", "0.02", "0.05", "0.1")
    ]
    assert texts[7:] == [
        "initializer=glorot_uniform (14 lines)",
        "initializer=he_normal (14 lines)",
    ]
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)  # the figure was closed once written: draw it again
    canvas.draw()
    renderer = canvas.get_renderer()
    box = legend.get_window_extent(renderer)
    for ax in fig.get_axes():  # the legend covers no panel
        assert not box.overlaps(ax.get_window_extent(renderer))


def test_a_long_run_is_drawn_from_at_most_max_points_epochs_first_and_last_kept(tmp_path):
    """A 10^6-epoch run's curve would be a million points in the image and in the report:
    plot and report keep MAX_POINTS evenly spaced epochs, the values those epochs had."""
    from nnlab.plot import MAX_POINTS, thin
    from nnlab.report.data import report_data

    n = MAX_POINTS * 3 + 7
    acc = tuple(float(i % 1000) / 1000 for i in range(n))
    for s in (0, 1):
        make_run(tmp_path / "runs", f"long-s{s}", [f"training.seed={s}"], acc, acc)
    runs = load_runs([tmp_path / "runs"], warn=pytest.fail)
    for line in (*curves(runs, "val_accuracy"), *curves(runs, "val_accuracy", True)):
        epochs = np.asarray(line.epochs)
        assert len(epochs) == MAX_POINTS and epochs[0] == 1 and epochs[-1] == n
        assert np.all(np.diff(epochs) > 0)
        np.testing.assert_array_equal(line.values, (epochs - 1) % 1000 / 1000)
    (drawn,) = report_data(runs)["curves"]["lines"]["val_accuracy"]
    assert len(drawn["epochs"]) == MAX_POINTS and drawn["epochs"][-1] == n
    x = np.arange(1.0, MAX_POINTS + 1)
    assert all(a is b for a, b in zip(thin(x, x, None), (x, x, None), strict=True))
