"""nnlab explain: input-gradient saliency of a trained run, checked against the gradients
written out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import CONFIGS, invoke_nnlab, train_run
from nnlab.errors import ConfigError
from nnlab.explain import explain, heat_text, run_inputs


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    return train_run(
        CONFIGS / "digits.yaml",
        runs,
        "training.epochs=3",
        "model.layers.0.units=32",
        "data.scale=standard",
    )


def _hand_gradients(model, X):
    """d logit_k / d x for every sample and class of a dense relu -> dense softmax net:
    W1 @ (relu'(z1) * W2[:, k]), shape (n, classes, features)."""
    W1, b1 = model.layers[0].params["W"], model.layers[0].params["b"]
    W2 = model.layers[1].params["W"]
    active = (X @ W1 + b1 > 0).astype(np.float64)  # (n, hidden)
    return np.einsum("fh,nh,hk->nkf", W1, active, W2)


def test_predicted_class_saliency_equals_the_hand_written_gradient(digits_run):
    model, _, data, X = run_inputs(digits_run, "test")
    s = explain(digits_run)
    grads = _hand_gradients(model, X.astype(np.float64))
    pred = model.predict(X).argmax(axis=1)
    chosen = grads[np.arange(len(X)), pred]  # (n, features)
    np.testing.assert_allclose(s.mean_abs, np.abs(chosen).mean(axis=0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(s.mean, chosen.mean(axis=0), rtol=1e-4, atol=1e-5)
    assert s.samples == len(data.test) == 359 and s.image_shape == (8, 8)
    assert s.class_counts.sum() == 359
    for k in (0, 7):  # the per-class maps average over the samples predicted as that class
        rows = pred == k
        np.testing.assert_allclose(
            s.per_class[k], np.abs(grads[rows, k]).mean(axis=0), rtol=1e-4, atol=1e-6
        )


def test_a_chosen_class_probability_follows_the_softmax_jacobian(digits_run):
    model, _, _, X = run_inputs(digits_run, "train")
    s = explain(digits_run, split="train", output=3, score="output")
    grads = _hand_gradients(model, X.astype(np.float64))  # (n, k, f)
    p = model.predict(X).astype(np.float64)  # (n, k)
    dp3 = p[:, 3:4] * (grads[:, 3] - np.einsum("nk,nkf->nf", p, grads))
    np.testing.assert_allclose(s.mean_abs, np.abs(dp3).mean(axis=0), rtol=1e-3, atol=1e-7)
    assert s.target == "the probability of class 3" and s.per_class is None


def test_a_linear_output_has_its_weight_as_saliency(tmp_path):
    """The threshold toy's linear output: d out / d x = w for every sample; the predicted
    class 0 scores -out, so the signed mean counts the predictions."""
    run = train_run(CONFIGS / "threshold.yaml", tmp_path, "training.epochs=200")
    model, _, _, X = run_inputs(run, "train")
    w = float(model.layers[0].params["W"][0, 0])
    s = explain(run, split="train")
    assert s.mean_abs[0] == pytest.approx(abs(w), rel=1e-6)
    ones = int((model.predict(X)[:, 0] > 0.5).sum())
    assert s.mean[0] == pytest.approx(w * (ones - (5 - ones)) / 5, rel=1e-5)


def test_the_command_draws_a_png_and_a_terminal_map(digits_run, tmp_path):
    png = tmp_path / "saliency.png"
    r = invoke_nnlab("explain", digits_run, "-o", png, "--top", "3")
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "predicted class" in r.stdout and "x[" in r.stdout
    ranks = [line.split()[0] for line in r.stdout.splitlines() if line[:1].isdigit()]
    assert ranks == ["1", "2", "3"]
    r = invoke_nnlab("explain", digits_run, "--data", "val")
    grid = [line for line in r.stdout.splitlines() if len(line) == 16 and "x[" not in line]
    assert r.returncode == 0 and len(grid) == 8


def test_heat_text_shades_by_value():
    assert heat_text(np.array([[0.0, 1.0], [0.5, 0.0]])) == "  @@\n==  "


@pytest.mark.parametrize(
    "args, message",
    [
        (["--target", "12"], "12 is not an output: they are 0..9"),
        (["-k", "three"], "'three' is not a class"),
        (["--output", "3"], "the class or output to explain is --target K"),  # the old spelling
        (["-o", "{tmp}/x.png", "--data", "train"], None),
    ],
)
def test_bad_requests_are_one_line_and_exit_2(digits_run, tmp_path, args, message):
    if message is None:  # -o on data that are not images
        run = train_run(CONFIGS / "threshold.yaml", tmp_path, "training.epochs=5")
        args = [a.replace("{tmp}", str(tmp_path)) for a in args]
        r = invoke_nnlab("explain", run, *args)
        assert r.returncode == 2 and "not images" in r.stderr
        return
    r = invoke_nnlab("explain", digits_run, *args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_a_split_the_run_does_not_have(tmp_path):
    run = train_run(CONFIGS / "threshold.yaml", tmp_path, "training.epochs=5")
    with pytest.raises(ConfigError, match="no test split \\(it has: train\\)"):
        explain(run)
    r = invoke_nnlab("explain", tmp_path)
    assert r.returncode == 2 and "not a run folder" in r.stderr


def test_a_regression_with_several_outputs_needs_one_chosen(tmp_path):
    run = train_run(CONFIGS / "invertible.yaml", tmp_path, "training.epochs=5")
    with pytest.raises(ConfigError, match=r"2 outputs: choose one with --target 0\.\.1"):
        explain(run, split="train")
    s = explain(run, split="train", output=1)
    assert s.target == "the output of output 1" and s.per_class is None
    assert s.mean_abs.shape == (2,) and (s.mean_abs > 0).all()


# ---------------------------------------------------------------- integrated gradients, smoothgrad


def test_integrated_gradients_add_up_to_the_score_difference(digits_run):
    """Completeness (Sundararajan et al.): each sample's attributions sum to
    score(x) - score(baseline), up to the path integral's discretisation."""
    from nnlab.explain import Method, _context, _scorer, attributions

    model, meta, _, X = run_inputs(digits_run, "test")
    X = X[:40].astype(np.float64)
    model_scorer, _ = _scorer(model, meta, None, "logit")
    for baseline in ("zeros", "mean"):
        method = Method("integrated_gradients", baseline, steps=200)
        context = _context(X, method)
        attr, target = attributions(model_scorer, X, method, context)
        base = np.broadcast_to(context["baseline"], X.shape)
        logits_x = model_scorer.outputs(X)[np.arange(40), target]
        logits_b = model_scorer.outputs(base.copy())[np.arange(40), target]
        gap = logits_x - logits_b
        # (ReLU kinks along the path and float32 leave a discretisation error of a few 1e-3)
        np.testing.assert_allclose(attr.sum(axis=1), gap, rtol=5e-3, atol=1e-3 * np.abs(gap).max())


def test_integrated_gradients_of_a_linear_output_are_weight_times_input(tmp_path):
    from nnlab.explain import Method

    run = train_run(CONFIGS / "threshold.yaml", tmp_path, "training.epochs=200")
    model, _, _, X = run_inputs(run, "train")
    w = float(model.layers[0].params["W"][0, 0])
    s = explain(run, split="train", method=Method("integrated_gradients", "zeros", steps=3))
    # d out / d x = w everywhere: the attribution is w * x exactly, signed by the class
    assert s.mean_abs[0] == pytest.approx(abs(w) * np.abs(X[:, 0]).mean(), rel=1e-5)
    assert s.unit == "attr" and s.method.startswith("integrated gradients (3 steps")


def test_smoothgrad_is_the_mean_gradient_over_seeded_noisy_copies(digits_run):
    from nnlab.explain import Method, _scorer

    model, meta, _, X = run_inputs(digits_run, "test")
    method = Method("smoothgrad", noise=0.1, samples=4, seed=3)
    s = explain(digits_run, method=method)
    scorer, _ = _scorer(model, meta, None, "logit")
    rng = np.random.default_rng(3)
    sigma = 0.1 * float(X.max() - X.min())
    target = scorer.target(scorer.outputs(X))
    total = np.zeros(X.shape)
    for _ in range(4):  # the draws the method makes, in its order (one batch: 359 samples)
        noisy = X + rng.normal(0.0, sigma, X.shape).astype(X.dtype)
        total += scorer.gradient(noisy, target)
    np.testing.assert_allclose(s.mean_abs, np.abs(total / 4).mean(axis=0), rtol=1e-5, atol=1e-7)
    again = explain(digits_run, method=method)
    np.testing.assert_array_equal(again.mean_abs, s.mean_abs)  # seeded: the same map
    plain = explain(digits_run)
    assert not np.allclose(s.mean_abs, plain.mean_abs)
    zero = explain(digits_run, method=Method("smoothgrad", noise=0.0, samples=2))
    np.testing.assert_allclose(zero.mean_abs, plain.mean_abs, rtol=1e-6)


def test_the_command_takes_a_method_and_refuses_a_bad_baseline(digits_run):
    r = invoke_nnlab("explain", digits_run, "--method", "integrated_gradients", "--steps", "8",
                     "--baseline", "mean", "--top", "2")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("integrated gradients (8 steps from a mean baseline) of the logit")
    assert "mean |attr|" in r.stdout
    bad = invoke_nnlab("explain", digits_run, "--method", "integrated_gradients", "--baseline",
                       "black")  # fmt: skip
    assert bad.returncode == 2 and "zeros, mean or a number" in bad.stderr
