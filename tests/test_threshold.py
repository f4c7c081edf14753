"""The decision threshold (training.threshold) and the ROC AUC of binary classifiers: the
search against brute force, the AUC against scikit-learn, and the threshold carried into
summary.json, model.npz, nnlab predict and every export."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from conftest import CONFIGS, c_compiler, invoke_nnlab, run_without_nnlab, train_run
from nnlab.config import load_config
from nnlab.errors import ConfigError
from nnlab.experiment import build
from nnlab.export import export
from nnlab.lifecycle import train
from nnlab.runs import load_model
from nnlab.threshold import METRICS, candidates, confusion, roc_auc, tune


def brute_force(scores, labels, metric, thresholds=None):
    """The best value of a metric (scikit-learn's) over thresholds at every score and between
    every two (or over the given ``thresholds``, compared in the scores' dtype)."""
    sk = pytest.importorskip("sklearn.metrics")
    score = {
        "accuracy": sk.accuracy_score,
        "balanced_accuracy": sk.balanced_accuracy_score,
        "f1": lambda y, p: sk.f1_score(y, p, zero_division=0.0),
        "mcc": sk.matthews_corrcoef,
    }[metric]
    if thresholds is not None:
        return max(score(labels, (scores > scores.dtype.type(t)).astype(int)) for t in thresholds)
    u = np.unique(scores.astype(np.float64))
    ts = np.concatenate([u - 1e-9, u, (u[:-1] + u[1:]) / 2, u + 1e-9])
    return max(score(labels, (scores.astype(np.float64) > t).astype(int)) for t in ts)


@pytest.mark.parametrize("metric", sorted(METRICS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tune_finds_the_best_threshold_of_a_brute_force_search(metric, seed):
    rng = np.random.default_rng(seed)
    labels = (rng.random(60) < 0.3).astype(np.int64)
    scores = np.round(rng.normal(labels * 0.8, 1.0), 1).astype(np.float32)  # with ties
    t, value = tune(scores, labels, metric, 0.5)
    assert value == pytest.approx(brute_force(scores, labels, metric), abs=1e-12)
    # the value is the metric's at that threshold, deciding as predict does (in float32)
    at_t = brute_force(scores, labels, metric, thresholds=[t])
    assert at_t == pytest.approx(value, abs=1e-12)


def test_the_default_is_kept_when_it_is_among_the_best_and_ties_go_to_the_nearest():
    scores = np.array([0.1, 0.2, 0.8, 0.9], np.float32)
    labels = np.array([0, 0, 1, 1])
    assert tune(scores, labels, "accuracy", 0.5) == (0.5, 1.0)
    t, _ = tune(scores, labels, "accuracy", 0.85)  # every cut in [0.2, 0.8) is best
    assert 0.2 <= t < 0.8 and t == pytest.approx(0.5, abs=1e-6)  # the cut nearest 0.85


def test_candidates_separate_adjacent_float32_scores():
    a = np.float32(0.3)
    b = np.nextafter(a, np.float32(1))
    scores = np.array([a, b], np.float32)
    labels = np.array([0, 1])
    t, value = tune(scores, labels, "accuracy", 0.9)
    assert value == 1.0 and (scores > np.float32(t)).tolist() == [False, True]
    assert all(np.float32(c) == c for c in candidates(scores, 0.5))


def test_confusion_counts_every_threshold():
    scores = np.array([0.1, 0.4, 0.4, 0.7])
    labels = np.array([0, 1, 0, 1])
    tp, fp, tn, fn = confusion(scores, labels, np.array([0.0, 0.4, 0.7]))
    assert tp.tolist() == [2, 1, 0] and fp.tolist() == [2, 0, 0]
    assert tn.tolist() == [0, 2, 2] and fn.tolist() == [0, 1, 2]


@pytest.mark.parametrize("seed", range(4))
def test_roc_auc_matches_scikit_learn(seed):
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    labels = (rng.random(200) < 0.4).astype(np.int64)
    scores = np.round(rng.normal(labels, 1.5), 1)  # many ties
    assert roc_auc(scores, labels) == pytest.approx(metrics.roc_auc_score(labels, scores))
    assert roc_auc(scores, np.zeros(200, np.int64)) is None  # one class: undefined


# ---------------------------------------------------------------- in a run

TOY = """
data: {name: csv, path: data.csv, validation_split: 0.3, test_split: 0.2}
model:
  layers:
    - {type: dense, units: 1, activation: linear}
loss: mse
optimizer: {name: sgd, lr: 0.05}
training: {epochs: 200, batch_size: null, seed: 0, threshold: tune}
"""


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A linear output trained with MSE on imbalanced data (20% class 1, overlapping): least
    squares puts its scores far below 0.5, so the tuned threshold differs from the default."""
    tmp = tmp_path_factory.mktemp("threshold")
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.2).astype(int)
    x = rng.normal(y * 1.5, 1.0)
    (tmp / "data.csv").write_text(
        "x,y\n" + "".join(f"{a:.6f},{b}\n" for a, b in zip(x, y, strict=True))
    )
    (tmp / "toy.yaml").write_text(TOY.replace("data.csv", str(tmp / "data.csv")))
    return train_run(tmp / "toy.yaml", tmp / "runs"), tmp


def test_the_tuned_threshold_is_recorded_and_is_the_best_on_val(toy_run):
    run, _ = toy_run
    s = json.loads((run / "summary.json").read_text())
    t = s["threshold"]
    assert t["chosen_by"] == "accuracy" and t["split"] == "val" and t["default"] == 0.5
    assert t["value"] != 0.5 and "note" not in t
    model, meta = load_model(run)
    assert meta["threshold"] == t["value"]
    exp = build(load_config(run / "config.yaml"))  # the same splits
    X, labels = exp.data.val.X, exp.targets["val"][0].L
    scores = model.predict(X)[:, 0]
    assert t["accuracy"] == pytest.approx(brute_force(scores, labels, "accuracy"))
    assert s["val"]["threshold_accuracy"] == t["accuracy"] >= s["val"]["accuracy"]
    for split in ("train", "val", "test"):
        L = exp.targets[split][0].L
        out = model.predict(exp.split(split).X)[:, 0]
        assert s[split]["threshold_accuracy"] == np.mean((out > t["value"]) == L)
        assert s[split]["roc_auc"] == pytest.approx(roc_auc(out, L))


def test_predict_and_every_export_decide_with_the_tuned_threshold(toy_run, tmp_path):
    run, _ = toy_run
    t = json.loads((run / "summary.json").read_text())["threshold"]["value"]
    model, _ = load_model(run)
    raw = np.linspace(-3, 5, 401).reshape(-1, 1)  # the inputs are raw (no scaling here)
    want = (model.predict(raw.astype(np.float32))[:, 0] > t).astype(int)
    assert 0 < want.sum() < want.size and (model.predict(raw)[:, 0] > 0.5).sum() < want.sum()
    np.savetxt(tmp_path / "x.csv", raw, delimiter=",")
    out = invoke_nnlab("predict", run, tmp_path / "x.csv")
    assert out.returncode == 0, out.stderr
    got = [int(line.split(",")[0]) for line in out.stdout.splitlines()[1:]]
    assert got == want.tolist()
    (program,) = export(run, "numpy", tmp_path / "predict.py")
    proc = run_without_nnlab(program, "x.csv", cwd=tmp_path)
    assert [int(line.split(",")[0]) for line in proc.stdout.splitlines()[1:]] == want.tolist()
    ort = pytest.importorskip("onnxruntime")
    export(run, "onnx", tmp_path / "model.onnx")
    session = ort.InferenceSession(str(tmp_path / "model.onnx"))
    classes = session.run(["class"], {"input": raw.astype(np.float32)})[0]
    assert classes.tolist() == want.tolist()


def test_the_c_header_defines_the_threshold_and_compiles(toy_run, tmp_path):
    run, _ = toy_run
    t = json.loads((run / "summary.json").read_text())["threshold"]["value"]
    (header,) = export(run, "c", tmp_path / "model.h")
    line = next(x for x in header.read_text().splitlines() if x.startswith("#define THRESHOLD"))
    assert np.float32(line.split()[-1].rstrip("f")) == np.float32(t)
    cc = c_compiler()
    (tmp_path / "main.c").write_text(
        '#include <stdio.h>\n#include "model.h"\n'
        "int main(void) { float x[1] = {1.0f}, out[1]; predict(x, out);\n"
        '  printf("%d\\n", out[0] > THRESHOLD); return 0; }\n'
    )
    flags = ["-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Werror"]
    subprocess.run([cc, *flags, "main.c", "-o", "main", "-lm"], cwd=tmp_path, check=True)
    model, _ = load_model(run)
    got = subprocess.run([str(tmp_path / "main")], capture_output=True, text=True).stdout
    assert int(got) == int(model.predict(np.ones((1, 1), np.float32))[0, 0] > np.float32(t))


def test_without_a_validation_split_the_threshold_is_tuned_on_train_with_a_note(runs):
    cfg = load_config(CONFIGS / "questions/threshold_bce.yaml", ["training.threshold=tune"])
    s = train(cfg, runs, handle_signals=False).summary
    assert s["threshold"]["split"] == "train" and "optimistic" in s["threshold"]["note"]
    # BCE ends with w < 0: its outputs rank x = 0 above x = 2, so no cut gets 4 of 5
    assert s["train"]["roc_auc"] == pytest.approx(1 / 3)
    assert s["threshold"]["accuracy"] == s["train"]["threshold_accuracy"] == 0.6


def test_a_fixed_threshold_and_the_printed_result(runs):
    cfg = load_config(CONFIGS / "questions/threshold_sigmoid_mse.yaml", ["training.threshold=0.9"])
    result = train(cfg, runs, handle_signals=False)
    s = result.summary
    assert s["threshold"] == {"value": float(np.float32(0.9)), "chosen_by": "fixed", "default": 0.5}
    from nnlab.result import format_result

    text = format_result(s)
    assert "roc_auc" in text and "decision threshold 0.9 (fixed; default 0.5)" in text


@pytest.mark.parametrize(
    "config, overrides, words",
    [
        ("digits.yaml", [], "10 classes and the output 10 units"),
        ("questions/semi_supervised.yaml", [], "this model has 2 outputs"),
        ("invertible.yaml", [], "a regression output"),
    ],
)
def test_a_threshold_where_none_decides_is_a_config_error(config, overrides, words):
    cfg = load_config(CONFIGS / config, ["training.threshold=tune", *overrides])
    with pytest.raises(ConfigError, match=words) as info:
        build(cfg)
    assert info.value.path == "training.threshold"
    with pytest.raises(ConfigError, match=r"training\.threshold"):
        load_config(CONFIGS / "xor.yaml", ["training.threshold=best"])


def test_roc_auc_and_threshold_accuracy_are_better_high():
    from nnlab.metrics import higher_is_better

    assert higher_is_better("test_roc_auc") and higher_is_better("val_threshold_accuracy")
    assert not higher_is_better("val_loss")
