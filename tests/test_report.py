"""nnlab report: what the page holds (tables with intervals and verdicts, curves with seed bands,
the sweep's axes and importance) against hand-computed values, and the page itself opened in a
real headless Chromium: it loads with no console error and no request, and its table, curves and
parallel coordinates are drawn (and sort, filter and open a run's details)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from chromium import DRIVER_NOTE, Chromium, find_chromium
from test_compare import make_run

from conftest import invoke_nnlab
from nnlab.compare import load_runs
from nnlab.errors import ConfigError
from nnlab.report import build_page, report_data, write_report

READY = "document.body.dataset.ready === 'true' || !document.getElementById('error').hidden"
ACCURACY = {  # (initializer, lr) -> the last val_accuracy of seeds 0, 1, 2
    ("he_normal", 0.01): (0.90, 0.92, 0.94),
    ("he_normal", 0.1): (0.80, 0.85, 0.78),
    ("zeros", 0.01): (0.10, 0.11, 0.09),
    ("zeros", 0.1): (0.10, 0.10, 0.12),
}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A sweep folder: 2 initializers x 2 learning rates x 3 seeds, with known accuracies."""
    root = tmp_path_factory.mktemp("runs") / "sweeps" / "grid"
    trials = []
    for n, ((init, lr), accs) in enumerate(ACCURACY.items()):
        for s, acc in enumerate(accs):
            name = f"{3 * n + s + 1:03d}-abc{n}{s}"
            sets = [
                f"model.layers.0.initializer={init}",
                f"optimizer.lr={lr}",
                f"training.seed={s}",
            ]
            curve = (acc / 2, acc * 0.9, acc)
            make_run(
                root / "trials",
                name,
                sets,
                val_accuracy=curve,
                val_loss=tuple(1 - a for a in curve),
            )
            trials.append({"number": 3 * n + s + 1, "run": f"trials/{name}"})
    (root / "index.json").write_text(json.dumps({"trials": trials}))
    return root


@pytest.fixture(scope="module")
def data(sweep) -> dict:
    return report_data(load_runs([sweep], warn=pytest.fail))


def test_the_seed_groups_have_intervals_and_verdicts(data):
    groups = data["tables"]["groups"]
    keys = [c["key"] for c in groups["columns"]]
    acc = [row[keys.index("val_accuracy")] for row in groups["rows"]]
    for (mean, low, high, n), values in zip(acc, ACCURACY.values(), strict=True):
        t_low, t_high = scipy.stats.t.interval(
            0.95, 2, loc=np.mean(values), scale=scipy.stats.sem(values)
        )
        assert n == 3 and mean == pytest.approx(np.mean(values))
        assert (low, high) == pytest.approx((t_low, t_high))
    verdicts = groups["verdicts"]
    assert verdicts["metric"] == "val_accuracy" and verdicts["best"] == 0  # he_normal, 0.01
    marks = [r["verdict"] for r in verdicts["rows"]]
    assert marks[0] == "reference" and marks[2] == marks[3] == "worse"  # zeros: far worse
    paired = scipy.stats.ttest_rel(ACCURACY[("he_normal", 0.1)], ACCURACY[("he_normal", 0.01)])
    assert verdicts["rows"][1]["p"] == pytest.approx(paired.pvalue)  # paired by seed
    assert data["objective"] == {"name": "val_accuracy", "higher": True}
    runs = data["tables"]["runs"]
    assert [r[0] for r in runs["rows"]][:2] == ["grid/001", "grid/002"]  # trials by number


def test_curves_are_per_config_with_seed_bands(data):
    lines = data["curves"]["lines"]["val_accuracy"]
    assert [line["group"] for line in lines] == [0, 1, 2, 3]
    first = np.array(ACCURACY[("he_normal", 0.01)])
    np.testing.assert_allclose(
        lines[0]["mean"], [first.mean() / 2, first.mean() * 0.9, first.mean()]
    )
    np.testing.assert_allclose(lines[0]["low"][-1], first.min())
    np.testing.assert_allclose(lines[0]["high"][-1], first.max())
    assert set(data["curves"]["lines"]) == {
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
        "lr",
        "seconds",
    }
    assert data["groups"][0]["label"] == "initializer=he_normal lr=0.01"


def test_the_sweep_has_its_axes_and_their_importance(data):
    sweep = data["sweep"]
    assert [a["name"] for a in sweep["axes"]] == ["initializer", "lr"]
    lr = sweep["axes"][1]
    assert lr["numeric"] and lr["values"] == [0.01, 0.1, 0.01, 0.1] and not lr["log"]
    assert sweep["mean"] == pytest.approx([np.mean(v) for v in ACCURACY.values()])
    imp = sweep["importance"]
    assert imp["method"] == "anova"  # a complete grid
    shares = {t["term"]: t["share"] for t in imp["terms"]}
    assert max(shares, key=shares.get) == "initializer"
    # the exact functional ANOVA of the 2x2 grid of means: main effects and interaction
    m = np.array(
        [[np.mean(ACCURACY[(i, lr)]) for lr in (0.01, 0.1)] for i in ("he_normal", "zeros")]
    )
    a = m.mean(axis=1) - m.mean()
    b = m.mean(axis=0) - m.mean()
    total = m.var()
    assert shares["initializer"] == pytest.approx(np.mean(a**2) / total)
    assert shares["lr"] == pytest.approx(np.mean(b**2) / total)


def test_an_unknown_objective_is_a_clear_error(sweep):
    runs = load_runs([sweep], warn=pytest.fail)
    with pytest.raises(ConfigError, match=r"no column 'val_acc'.*Did you mean 'val_accuracy'"):
        report_data(runs, objective="val_acc")
    assert report_data(runs, objective="val_loss.best")["objective"]["higher"] is False


def test_the_page_holds_everything_and_names_the_extra_without_plotly(data, sweep, tmp_path):
    import sys

    page = build_page(data)
    assert "<script src" not in page and "<link" not in page  # nothing loaded from elsewhere
    assert page.count("<script") == 3  # the data, plotly.js, the page's own script
    out = tmp_path / "r.html"
    with pytest.MonkeyPatch.context() as mp:  # import plotly fails
        mp.setitem(sys.modules, "plotly", None)
        mp.setitem(sys.modules, "plotly.offline", None)
        proc = invoke_nnlab("report", sweep, "-o", out)
    assert proc.returncode == 2 and "pip install 'nnlab[report]'" in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


def test_the_cli_writes_the_report_and_says_its_size(sweep, tmp_path):
    out = tmp_path / "report.html"
    proc = invoke_nnlab("report", sweep, "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert str(out) in proc.stdout and "12 runs" in proc.stdout
    assert out.read_text().startswith("<!doctype html>")


@pytest.fixture(scope="module")
def chromium():
    binary = find_chromium()
    if binary is None:
        pytest.skip("no chromium binary on this machine (Debian: apt-get install chromium)")
    with Chromium(binary) as browser:
        yield browser


@pytest.fixture(scope="module")
def opened(sweep, tmp_path_factory, chromium):
    """The sweep's report, written and opened once: (its path, what the page did)."""
    out = tmp_path_factory.mktemp("page") / "report.html"
    write_report([sweep], out, warn=pytest.fail)
    return out, chromium.open(out, READY)


def test_the_page_in_chromium_draws_without_errors_or_requests(opened, chromium):
    out, page = opened
    assert chromium.evaluate("document.getElementById('error').hidden"), chromium.evaluate(
        "document.getElementById('error').textContent"
    )
    errors = [
        (level, text)
        for level, text in page.console
        if level == "error" or (level == "warning" and DRIVER_NOTE not in text)
    ]
    assert errors == [] and page.exceptions == []
    assert page.requests == [out.resolve().as_uri()]  # the file itself, nothing else
    count = "document.querySelectorAll('{}').length"
    assert chromium.evaluate(count.format("#table tbody tr")) == 4  # the seed groups
    header = chromium.evaluate(
        "[...document.querySelectorAll('#table th')].map(t => t.textContent)"
    )
    assert header[:3] == ["runs", "initializer", "lr"] and "verdict" in header
    # the curves: a line and a band per config; the parallel coordinates: 2 axes + the objective
    assert chromium.evaluate(count.format("#curves .scatterlayer .trace")) >= 4
    assert chromium.evaluate(count.format("#parcoords .parcoords .y-axis")) == 3
    assert chromium.evaluate(count.format("#slices .scatterlayer .point")) == 24  # 12 runs, 2 axes
    assert chromium.evaluate(count.format("#importance .bars .point")) == 3


def test_the_table_sorts_filters_and_opens_a_run(opened, chromium):
    click = "document.querySelector('{}').click()"
    chromium.evaluate(click.format("#views input[value=runs]"))
    rows = "[...document.querySelectorAll('#table tbody tr')].map(r => r.cells[0].textContent)"
    assert len(chromium.evaluate(rows)) == 12
    column = (
        "[...document.querySelectorAll('#table th')].findIndex(t => t.textContent.startsWith('{}'))"
    )
    j = chromium.evaluate(column.format("val_accuracy"))
    chromium.evaluate(f"document.querySelectorAll('#table th')[{j}].click()")  # ascending
    chromium.evaluate(f"document.querySelectorAll('#table th')[{j}].click()")  # descending
    cells = f"[...document.querySelectorAll('#table tbody tr')].map(r => r.cells[{j}])"
    values = chromium.evaluate(f"{cells}.map(c => Number(c.textContent))")
    assert values == sorted(values, reverse=True) and values[0] == 0.94
    chromium.evaluate(
        "const f = document.getElementById('filter'); f.value = 'lr<0.05 he_normal';"
        "f.dispatchEvent(new Event('input'))"
    )
    assert sorted(chromium.evaluate(rows)) == ["grid/001", "grid/002", "grid/003"]
    chromium.evaluate(click.format("#table tbody tr"))
    details = chromium.evaluate("document.getElementById('details-body').innerText")
    assert not chromium.evaluate("document.getElementById('details').hidden")
    assert "model.layers.0.initializer" in details and "he_normal" in details
    assert "Config keys every run shares" in details and "Baselines" in details


def test_odd_runs_still_make_a_page(tmp_path):
    """One run, and a failed one without a metrics log: no seed groups, no sweep, no error."""
    ok = make_run(tmp_path, "ok", ["optimizer.lr=0.1"])
    failed = make_run(tmp_path, "failed", ["optimizer.lr=0.2"], status="failed", error="boom")
    (failed / "metrics.csv").unlink()
    data = report_data(load_runs([ok, failed], warn=pytest.fail))
    assert data["tables"]["groups"] is None  # no config ran two seeds
    assert [r["status"] for r in data["runs"]] == ["completed", "failed"]
    assert [line["group"] for line in data["curves"]["lines"]["val_loss"]] == [0]
    assert data["sweep"]["mean"][1] is None  # the failed run has no objective
    assert build_page(data).startswith("<!doctype html>")
    single = report_data(load_runs([ok], warn=pytest.fail))
    assert single["sweep"] is None and single["tables"]["groups"] is None
