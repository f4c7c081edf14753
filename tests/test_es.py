"""Evolution strategies (``optimizer: es``), the 0-1 loss and the step activation: ES against a
hand-written NumPy OpenAI-ES on the same noise, its estimate against the gradient, the loss and
the activation, the config errors, repeatability and resume."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import rankdata

from conftest import CONFIGS, invoke_nnlab
from nnlab.config import load_config
from nnlab.errors import ConfigError
from nnlab.es import Perturbed
from nnlab.experiment import build, seed_streams
from nnlab.metrics import MetricsTally
from nnlab.nn import ACTIVATIONS, LOSSES
from nnlab.nn.es import centered_ranks
from nnlab.population.losses import zero_one as stacked_zero_one
from nnlab.runs import read_checkpoint, save_checkpoint
from nnlab.train import Trainer

XOR_ES = [
    "model.layers=[{type: dense, units: 3, activation: tanh}, "
    "{type: dense, units: 1, activation: sigmoid}]",
    "loss=mse",
    "training.dtype=float64",
    "training.epochs=25",
]


def _unpack(model, theta):
    """A flat parameter vector as {"layers.i.W": array, ...} (the model's layout)."""
    shapes = {n: model.layers[int(n.split(".")[1])].params[n.split(".")[2]].shape
              for n in model.param_names}  # fmt: skip
    return {n: theta[s].reshape(shapes[n]) for n, s in zip(model.param_names, model.param_slices,
                                                            strict=True)}  # fmt: skip


def _xor_loss(p, X, y):
    """MSE of the 2-3-1 tanh/sigmoid net, written out."""
    h = np.tanh(X @ p["layers.0.W"] + p["layers.0.b"])
    out = 1.0 / (1.0 + np.exp(-(h @ p["layers.1.W"] + p["layers.1.b"])))
    return float(np.mean((out - y.reshape(-1, 1)) ** 2))


def _threshold_zero_one(p, X, y):
    """1 - accuracy of the one-unit sigmoid net, written out."""
    out = 1.0 / (1.0 + np.exp(-(X @ p["layers.0.W"] + p["layers.0.b"])))
    return float(np.mean((out[:, 0] > 0.5) != (y == 1)))


def _reference_es(exp, loss_of, steps, seed):
    """OpenAI-ES written out: mirrored noise from the run's es stream, centered ranks
    (scipy's average ranks), the paper's estimate, then Adam (torch's formula) or SGD with
    momentum. Returns the weights after ``steps`` full-batch steps."""
    o = exp.optimizer
    rng = seed_streams(seed)["es"]
    theta = exp.model.theta.copy()
    X, y = exp.data.train.X, exp.data.train.y
    m, v, buf = np.zeros_like(theta), np.zeros_like(theta), np.zeros_like(theta)
    n = o.population // 2
    for t in range(1, steps + 1):
        eps = rng.standard_normal((n, theta.size))
        members = [theta + o.sigma * e for e in eps] + [theta - o.sigma * e for e in eps]
        losses = np.array([loss_of(_unpack(exp.model, th), X, y) for th in members])
        F = (rankdata(losses, method="average") - 1) / (losses.size - 1) - 0.5
        g = (F[:n] - F[n:]) @ eps / (o.population * o.sigma)
        if o.update == "adam":
            m = o.beta1 * m + (1 - o.beta1) * g
            v = o.beta2 * v + (1 - o.beta2) * g * g
            mhat, vhat = m / (1 - o.beta1**t), v / (1 - o.beta2**t)
            theta = theta - o.lr * mhat / (np.sqrt(vhat) + o.eps)
        else:
            buf = o.momentum * buf + g
            theta = theta - o.lr * buf
    return theta


@pytest.mark.parametrize(
    "case",
    [
        ("xor.yaml", [*XOR_ES, "optimizer={name: es, population: 20, sigma: 0.1, lr: 0.05}"],
         _xor_loss),
        ("questions/threshold_es.yaml",
         ["training.dtype=float64", "training.epochs=40",
          "optimizer={name: es, population: 30, sigma: 2.0, lr: 0.2, update: sgd, momentum: 0.5}"],
         _threshold_zero_one),
    ],
    ids=["xor-mse-adam", "threshold-zero_one-sgd"],
)  # fmt: skip
def test_es_equals_a_hand_written_openai_es_on_the_same_noise(case):
    config, overrides, loss_of = case
    cfg = load_config(CONFIGS / config, overrides)
    exp = build(cfg)
    want = _reference_es(exp, loss_of, cfg["training"]["epochs"], cfg["training"]["seed"])
    Trainer(exp).fit()
    start = build(cfg).model.theta
    assert not np.allclose(exp.model.theta, start)  # it moved
    np.testing.assert_allclose(exp.model.theta, want, rtol=1e-9, atol=1e-12)


def test_the_estimate_of_a_quadratic_loss_is_the_gradient_seen_through_the_noise():
    """With mirrored pairs and raw losses (shaping none), L(t + d) - L(t - d) = 2 grad . d
    exactly for a quadratic loss (a linear output with MSE), so the estimate is
    (E^T E / n) grad for the n noise rows E: backprop's gradient, through the noise."""
    cfg = load_config(
        CONFIGS / "threshold.yaml",
        ["training.dtype=float64", "optimizer={name: es, population: 400, shaping: none}"],
    )
    exp = build(cfg)
    perturbed = Perturbed(exp, 5)
    X = exp.data.train.X
    T = [t.T for t in exp.targets["train"]]
    out = exp.model.forward(X, training=True)
    _, dout, _ = exp.objective(out, T, [None])
    exp.model.backward(dout)
    backprop = exp.model.grad.copy()
    opt = exp.optimizer
    opt.ask(exp.model.theta, perturbed.model.theta)
    values, _, _ = perturbed.objective(perturbed.model.forward(X, training=True), T, [None])
    estimate = np.empty_like(backprop)
    opt.tell(values, estimate)
    E = seed_streams(1)["es"].standard_normal((200, 2))
    np.testing.assert_allclose(estimate, E.T @ E @ backprop / 200, rtol=1e-9)
    cos = estimate @ backprop / np.linalg.norm(estimate) / np.linalg.norm(backprop)
    assert cos > 0.99  # 200 pairs see the gradient's direction


def test_centered_ranks_are_scipys_average_ranks_scaled():
    x = np.array([0.4, 0.2, 0.4, np.nan, 0.0, 0.4])
    got = centered_ranks(x)
    want = (rankdata(np.where(np.isnan(x), np.inf, x), method="average") - 1) / 5 - 0.5
    np.testing.assert_array_equal(got, want)
    assert got[3] == 0.5 and got[4] == -0.5  # NaN ranks last, the lowest loss first
    assert got[0] == got[2] == got[5]


# ---------------------------------------------------------------- the 0-1 loss, the step


def test_zero_one_is_one_minus_the_accuracy_of_binary_and_multiclass_outputs():
    loss = LOSSES.build("zero_one")
    out = np.array([[0.9], [0.2], [0.6], [0.4]])
    t = loss.targets(np.array([1, 0, 0, 0]), 1, np.float64)
    value, grad = loss(out, t)
    assert value == 0.25 and not grad.any()
    assert loss(out, t, np.array([1.0, 1.0, 0.0, 1.0]))[0] == 0.0  # the wrong one masked
    z = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 5.0]])
    t3 = loss.targets(np.array([0, 2, 2]), 3, np.float64)
    assert loss(z, t3)[0] == pytest.approx(1 / 3)
    assert loss.correct(z, np.array([0, 2, 2])) == 2  # the accuracy's decision
    stacked, _ = stacked_zero_one(loss, np.stack([z, z[::-1]]), t3, None)
    assert stacked.tolist() == [loss(z, t3)[0], loss(z[::-1], t3)[0]] == [1 / 3, 1.0]


def test_the_step_activation_is_the_perceptrons_and_passes_no_gradient():
    step = ACTIVATIONS.build("heaviside")
    Z = np.array([-1.0, 0.0, 1e-9, 3.0], dtype=np.float32)
    A = step(Z)
    assert A.dtype == np.float32 and A.tolist() == [0.0, 0.0, 1.0, 1.0]
    assert not step.backward(np.ones_like(Z), Z, A).any()


def test_es_trains_a_step_perceptron_to_the_threshold():
    cfg = load_config(CONFIGS / "questions/perceptron_es.yaml")
    exp = build(cfg)
    trainer = Trainer(exp, log=[])  # a list collects the rows
    trainer.fit()
    assert trainer.log[0]["accuracy"] < 0.8 and trainer.log[-1]["accuracy"] == 0.8
    w, b = exp.model.theta  # kernel first: class 1 exactly when w x + b > 0
    assert b <= 0 < 2 * w + b  # x = 0 gives 0, x = 2 gives 1 (and x = 9 too: 4/5 at best)


# ---------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    "sets, path, words",
    [
        (["optimizer=adam"], "loss", ["zero_one has no gradient", "adam", "optimizer: es"]),
        (["optimizer=sgd", "loss=mse", "model.layers.0.activation=step"],
         "model.layers[0].activation", ["step activation", "sgd", "optimizer: es"]),
        (["optimizer.population=7"], "optimizer.population", ["must be even"]),
        (["optimizer.momentum=0.9"], "optimizer.momentum", ["update sgd"]),
        (["data={name: twist}", "model.layers.0.activation=linear"], "loss",
         ["is for a classifier's labels"]),
        (["optimizer.population=1000000000"], "optimizer.population",
         ["1000000000 perturbed networks needs", "of memory"]),
    ],
)  # fmt: skip
def test_bad_es_configs_are_one_line_errors_naming_the_key(sets, path, words, runs):
    args = [a for s in sets for a in ("--set", s)]
    proc = invoke_nnlab("train", CONFIGS / "questions/threshold_es.yaml", "--runs-dir", runs, *args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and path in lines[0], lines
    assert all(w in lines[0] for w in words), lines[0]
    assert not any(runs.iterdir())


def test_es_refuses_layers_the_population_engine_does_not_stack(runs):
    cfg = load_config(
        CONFIGS / "questions/lstm_sequence.yaml", ["optimizer={name: es}", "training.epochs=1"]
    )
    with pytest.raises(ConfigError, match="population engine") as info:
        Trainer(build(cfg))
    assert info.value.path.startswith("model.layers[") and info.value.path.endswith(".type")


# ---------------------------------------------------------------- repeatability and resume

DIGITS_ES = [
    "model.layers=[{type: dense, units: 16, activation: relu}, {type: dropout, rate: 0.2}, "
    "{type: dense, units: 10, activation: softmax}]",
    "optimizer={name: es, population: 12, sigma: 0.05, lr: 0.02}",
    "training.batch_size=256",
    "training.epochs=6",
    "training.checkpoint_seconds=0",
]


def _rows(trainer):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in trainer.log]


def test_es_repeats_bit_for_bit_and_resumes_from_any_checkpoint(tmp_path):
    """Mini-batches, shuffles, dropout masks and the es noise: the same config gives the same
    numbers, and a run continued from a checkpoint (written and read as resume does) gives the
    uninterrupted run's rows and weights, bit for bit."""
    cfg = load_config(CONFIGS / "digits.yaml", DIGITS_ES)
    exp = build(cfg)
    full = Trainer(exp, log=[])
    states = []

    def keep(tr):
        save_checkpoint(tmp_path / "c.npz", *tr.state())
        states.append(read_checkpoint(tmp_path / "c.npz"))

    full.checkpoint = keep
    full.fit()
    first, last = full.log[0]["val_accuracy"], full.log[-1]["val_accuracy"]
    assert last > max(0.2, 2 * first)  # it learns (10 classes: 0.1 by chance)
    again = build(cfg)
    Trainer(again).fit()
    np.testing.assert_array_equal(again.model.theta, exp.model.theta)
    for arrays, meta in (states[1], states[3]):
        assert "es_rng" in meta["optimizer"] and "optimizer/m" in arrays
        resumed = build(cfg)
        before = full.log[: meta["epoch"]]
        trainer = Trainer(resumed, log=list(before))
        trainer.load_state(arrays, meta, MetricsTally.of(before))
        trainer.fit()
        assert _rows(trainer) == _rows(full)
        np.testing.assert_array_equal(resumed.model.theta, exp.model.theta)
    other = build(load_config(CONFIGS / "digits.yaml", [*DIGITS_ES, "training.seed=2"]))
    Trainer(other).fit()
    assert not np.array_equal(other.model.theta, exp.model.theta)


def test_the_es_stream_leaves_the_other_streams_as_they_were():
    old = np.random.SeedSequence(7).spawn(4)
    new = seed_streams(7)
    for name, seq in zip(("data", "init", "train", "sample"), old, strict=True):
        assert new[name].random() == np.random.default_rng(seq).random()


def test_es_trains_several_outputs_with_masks_and_names_their_keys():
    """Two heads (a classifier on 5% of labels, masked, and a reconstruction): zero_one on
    the first is refused by adam at its key, trained by es; on the reconstruction it is
    refused, whatever the optimizer."""
    path = CONFIGS / "questions/semi_supervised.yaml"
    with pytest.raises(ConfigError, match="zero_one has no gradient") as info:
        build(load_config(path, ["model.outputs.0.loss=zero_one"]))
    assert info.value.path == "model.outputs[0].loss"
    es = ["optimizer={name: es, population: 10}", "training.epochs=3"]
    with pytest.raises(ConfigError, match="classifier's labels") as info:
        build(load_config(path, ["model.outputs.1.loss=zero_one", *es]))
    assert info.value.path == "model.outputs[1]"
    exp = build(load_config(path, ["model.outputs.0.loss=zero_one", *es]))
    trainer = Trainer(exp, log=[])
    assert trainer.fit() == "completed"
    losses = [r["recon_loss"] for r in trainer.log]
    assert losses[-1] < losses[0]  # the reconstruction improves
    assert all(0 <= r["cls_loss"] == 1 - r["cls_accuracy"] for r in trainer.log)


@pytest.mark.parametrize(
    "args, path",
    [
        (["gradcheck", "questions/perceptron_es.yaml", "--set", "training.dtype=float64"],
         "model.layers[0].activation"),
        (["gradcheck", "questions/threshold_es.yaml", "--set", "training.dtype=float64"], "loss"),
        (["lr-find", "questions/threshold_es.yaml"], "optimizer"),
    ],
)  # fmt: skip
def test_gradient_instruments_refuse_what_has_no_gradient(args, path):
    command, config, *rest = args
    proc = invoke_nnlab(command, CONFIGS / config, *rest)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {path}: ") and len(proc.stderr.splitlines()) == 1


def test_the_stacked_members_losses_are_the_single_models_on_their_weights():
    """Member-first stacking (products large enough for BLAS per member): each perturbed
    network's objective on the batch is the single-run model's with its weights."""
    cfg = load_config(
        CONFIGS / "digits.yaml",
        [
            "training.dtype=float64",
            "training.batch_size=128",
            "optimizer={name: es, population: 8}",
        ],
    )
    exp = build(cfg)
    perturbed = Perturbed(exp, 128)
    assert not perturbed.model.stack.member_last
    X, T = exp.data.train.X[:128], [exp.targets["train"][0].T[:128]]
    exp.optimizer.ask(exp.model.theta, perturbed.model.theta)
    stacked = perturbed.objective(perturbed.model.forward(X, training=True, logits=True), T, [None])
    members, center = np.array(perturbed.model.theta), exp.model.theta.copy()
    for m, theta in enumerate(members):
        exp.model.theta[...] = theta
        single = exp.objective(exp.model.forward(X, training=True, logits=True), T, [None])[0]
        assert stacked[0][m] == pytest.approx(single, rel=1e-12)
    half = len(members) // 2  # mirrored: theta + d, theta - d
    np.testing.assert_allclose(
        (members[:half] + members[half:]) / 2, np.tile(center, (half, 1)), atol=1e-15
    )
