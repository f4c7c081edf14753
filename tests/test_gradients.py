"""Central-difference gradient checks in float64 for every registered activation, layer and loss.

The tests are parameterised over the registries: a component added to a registry is checked the
day it is added (a layer without an example below fails ``test_every_layer_has_an_example``).
"""

from __future__ import annotations

import numpy as np
import pytest

from nnlab.gradcheck import check_model, compare, loss_objective, numerical_gradient
from nnlab.nn import ACTIVATIONS, LAYERS, LOSSES, Model
from nnlab.nn.layers import Dense

RNG = np.random.default_rng(1234)

# Examples for each layer type: (spec, input kind). A "flat" example sits between two dense
# layers on (5,) inputs; a "seq" example reads sequences (4 steps, 3 features) after an LSTM
# (so its input gradient is checked too) and is followed by a dense layer; an "image" example
# reads 7x6 images of 3 channels after a 1x1 convolution with a tanh (so its input gradient is
# checked too) and is followed by a flatten and a dense layer. Batchnorm runs in training mode
# (batch statistics), which is what backpropagation differentiates.
LAYER_EXAMPLES = {
    "dense": [({"type": "dense", "units": 4, "activation": "tanh"}, "flat")],
    "dropout": [
        ({"type": "dropout", "rate": 0.3}, "flat"),
        ({"type": "dropout", "rate": 0.3, "scale": False}, "flat"),
    ],
    "activation": [
        ({"type": "activation", "activation": a}, "flat") for a in ("tanh", "softmax", "elu")
    ],
    "flatten": [({"type": "flatten"}, "seq")],
    "rnn": [
        ({"type": "rnn", "units": 3}, "seq"),
        ({"type": "rnn", "units": 3, "return_sequences": True}, "seq"),
        ({"type": "rnn", "units": 2, "activation": "relu"}, "seq"),
    ],
    "lstm": [
        ({"type": "lstm", "units": 3}, "seq"),
        ({"type": "lstm", "units": 2, "return_sequences": True}, "seq"),
    ],
    "conv2d": [
        ({"type": "conv2d", "filters": 2, "kernel_size": 3, "activation": "tanh"}, "image"),
        ({"type": "conv2d", "filters": 3, "kernel_size": 3, "padding": "same"}, "image"),
        ({"type": "conv2d", "filters": 2, "kernel_size": [2, 3], "strides": 2}, "image"),
        (
            {"type": "conv2d", "filters": 2, "kernel_size": 3, "strides": [2, 1],
             "padding": "same", "activation": "elu"},
            "image",
        ),
        ({"type": "conv2d", "filters": 2, "kernel_size": [3, 2], "dilation": 2}, "image"),
        (
            {"type": "conv2d", "filters": 2, "kernel_size": 3, "dilation": [2, 1],
             "padding": "same", "use_bias": False},
            "image",
        ),
        ({"type": "conv2d", "filters": 4, "kernel_size": 1, "activation": "sigmoid"}, "image"),
        ({"type": "conv2d", "filters": 2, "kernel_size": 1, "strides": 2}, "image"),
        ({"type": "conv2d", "filters": 2, "kernel_size": 2, "padding": "same"}, "image"),
        (
            {"type": "conv2d", "filters": 2, "kernel_size": [2, 3], "strides": 2,
             "padding": "same", "activation": "relu", "bias_initializer": "random_normal"},
            "image",
        ),
        ({"type": "conv2d", "filters": 2, "kernel_size": 2, "strides": 2, "dilation": 2}, "image"),
        (
            {"type": "conv2d", "filters": 2, "kernel_size": [2, 3], "strides": [1, 2],
             "dilation": [1, 2], "padding": "same"},
            "image",
        ),
    ],
    "maxpool2d": [
        ({"type": "maxpool2d"}, "image"),
        ({"type": "maxpool2d", "pool_size": 3, "strides": 2, "padding": "same"}, "image"),
        ({"type": "maxpool2d", "pool_size": [2, 3], "strides": 1}, "image"),
        ({"type": "maxpool2d", "pool_size": 3, "strides": [1, 2], "padding": "same"}, "image"),
        ({"type": "maxpool2d", "pool_size": 3, "strides": 2}, "image"),
        ({"type": "maxpool2d", "pool_size": 2, "padding": "same"}, "image"),
    ],
    "avgpool2d": [
        ({"type": "avgpool2d"}, "image"),
        ({"type": "avgpool2d", "pool_size": 3, "strides": 2, "padding": "same"}, "image"),
        ({"type": "avgpool2d", "pool_size": [2, 3], "strides": 1}, "image"),
        ({"type": "avgpool2d", "pool_size": [3, 2], "padding": "same"}, "image"),
        ({"type": "avgpool2d", "pool_size": 3, "strides": 2}, "image"),
        ({"type": "avgpool2d", "pool_size": 2, "strides": [1, 2], "padding": "same"}, "image"),
    ],
    "global_avgpool2d": [({"type": "global_avgpool2d"}, "image")],
    "upsample2d": [
        ({"type": "upsample2d"}, "image"),
        ({"type": "upsample2d", "size": [1, 3]}, "image"),
        ({"type": "upsample2d", "size": 3}, "image"),
    ],
    "reshape": [
        ({"type": "reshape", "target_shape": [2, 2]}, "flat"),
        ({"type": "reshape", "target_shape": [-1, 7, 3]}, "image"),
    ],
    "batchnorm": [
        ({"type": "batchnorm"}, "flat"),
        ({"type": "batchnorm", "momentum": 0.5, "gamma_initializer": "random_normal"}, "image"),
        ({"type": "batchnorm", "center": False, "scale": False}, "image"),
        ({"type": "batchnorm", "center": False}, "flat"),
        ({"type": "batchnorm", "scale": False, "eps": 0.1, "momentum": 1.0}, "image"),
        ({"type": "batchnorm", "eps": 1e-3, "beta_initializer": "random_normal"}, "flat"),
    ],
    "layernorm": [
        ({"type": "layernorm", "gamma_initializer": "random_normal"}, "flat"),
        ({"type": "layernorm", "beta_initializer": "random_normal"}, "image"),
        ({"type": "layernorm", "scale": False}, "image"),
        ({"type": "layernorm", "center": False, "eps": 0.1}, "flat"),
        ({"type": "layernorm", "center": False, "scale": False}, "image"),
    ],
    # in training mode with its noise frozen (the check replays the generator's state)
    "sample": [({"type": "sample"}, "flat")],
    "slice": [
        ({"type": "slice", "start": 1, "stop": 3}, "flat"),
        ({"type": "slice", "start": -2}, "flat"),
    ],
}  # fmt: skip


def _away_from_kinks(shape) -> np.ndarray:
    """Inputs in (-3, 3) at least 0.05 from 0, where relu-like functions have a kink."""
    z = RNG.uniform(-3, 3, shape)
    return np.where(np.abs(z) < 0.05, 0.5, z)


@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_activation_derivative_matches_central_differences(name):
    act = ACTIVATIONS.create(name)
    Z = _away_from_kinks((5, 4))
    dA = RNG.normal(size=(5, 4))
    A = act(Z)
    analytic = act.backward(dA.copy(), Z, A.copy())
    numeric = numerical_gradient(lambda: float(np.sum(dA * act(Z))), Z)
    check = compare(name, analytic, numeric)
    assert check.passed, check


def test_every_layer_has_an_example():
    assert set(LAYERS.names()) <= set(LAYER_EXAMPLES), "add a gradient-check example"


@pytest.mark.parametrize(
    "spec, kind",
    [case for cases in LAYER_EXAMPLES.values() for case in cases],
    ids=lambda c: str(c),
)
def test_layer_gradients_match_central_differences(spec, kind):
    layer = LAYERS.create(spec)
    if kind == "flat":
        before = [Dense(units=4, activation="sigmoid", bias_initializer={"name": "random_normal"})]
        shape, X = (5,), RNG.normal(size=(6, 5))
    elif kind == "seq":
        before = [LAYERS.create({"type": "lstm", "units": 3, "return_sequences": True})]
        shape, X = (4, 3), RNG.normal(size=(6, 4, 3))
    else:
        pointwise = {"type": "conv2d", "filters": 3, "kernel_size": 1, "activation": "tanh"}
        before = [LAYERS.create({**pointwise, "bias_initializer": {"name": "random_normal"}})]
        shape, X = (7, 6, 3), RNG.normal(size=(6, 7, 6, 3))
    after = [LAYERS.create("flatten"), Dense(units=3, activation="linear")]
    model = Model([*before, layer, *after], shape, np.random.default_rng(0), np.float64)
    model.set_rng(np.random.default_rng(7))
    T = RNG.normal(size=(6, 3))
    checks = check_model(model, loss_objective(LOSSES.create("mse"), T), X)
    assert all(c.passed for c in checks), checks
    assert {c.name for c in checks} == set(model.param_names)


def _loss_case(name: str):
    """(loss, outputs or logits, targets) suitable for a loss."""
    loss = LOSSES.create(name)
    if not loss.needs_target:  # kl_divergence: [mu, log_var] of 2 latent units, no target
        return loss, RNG.normal(size=(6, 4)), np.zeros((6, 0))
    out = RNG.normal(size=(6, 3))
    labels = RNG.integers(0, 3, 6)
    if name == "binary_crossentropy":
        return loss, out, RNG.uniform(0, 1, (6, 3)).round()
    if name == "hinge":
        return loss, out, loss.targets(labels, 3, np.float64)
    return loss, out, loss.targets(labels, 3, np.float64)


@pytest.mark.parametrize("name", LOSSES.names())
def test_loss_gradient_matches_central_differences(name):
    loss, out, t = _loss_case(name)
    if name == "mae":
        out = np.where(np.abs(out - t) < 0.05, out + 0.2, out)  # away from the kink
    if name == "hinge":
        margin = 1 - t * out
        out = np.where(np.abs(margin) < 0.05, out + 0.2 * t, out)
    _, grad = loss(out.copy(), t)
    numeric = numerical_gradient(lambda: loss(out, t)[0], out)
    check = compare(name, grad, numeric)
    assert check.passed, check


@pytest.mark.parametrize("name", LOSSES.names())
def test_weighted_loss_is_the_weighted_mean_and_its_gradient_checks(name):
    """Sample weights (a 0/1 mask, or pseudo-labels' smaller weights): the value is
    sum_i w_i l_i / sum_i w_i with l_i the loss of sample i alone, and its gradient checks."""
    loss, out, t = _loss_case(name)
    if name == "mae":
        out = np.where(np.abs(out - t) < 0.05, out + 0.2, out)
    if name == "hinge":
        margin = 1 - t * out
        out = np.where(np.abs(margin) < 0.05, out + 0.2 * t, out)
    w = np.array([1.0, 0.0, 0.3, 1.0, 0.7, 0.0])
    alone = [loss(out[i : i + 1].copy(), t[i : i + 1])[0] for i in range(6)]
    value, grad = loss(out.copy(), t, w)
    assert value == pytest.approx(np.dot(w, alone) / w.sum(), rel=1e-12)
    numeric = numerical_gradient(lambda: loss(out, t, w)[0], out)
    check = compare(name, grad, numeric)
    assert check.passed, check
    assert not grad[[1, 5]].any()  # weight 0: no gradient


def test_categorical_crossentropy_one_hot_and_integer_targets_agree():
    loss = LOSSES.create("categorical_crossentropy")
    z = RNG.normal(size=(5, 4))
    labels = RNG.integers(0, 4, 5)
    v1, g1 = loss(z.copy(), labels)
    v2, g2 = loss(z.copy(), np.eye(4)[labels])
    assert v1 == pytest.approx(v2, rel=1e-12)
    np.testing.assert_allclose(g1, g2, atol=1e-12)


@pytest.mark.parametrize(
    "loss_name, act, n_out",
    [
        ("categorical_crossentropy", "softmax", 3),
        ("binary_crossentropy", "sigmoid", 1),
        ("mse", "sigmoid", 3),
        ("hinge", "linear", 3),
    ],
)
def test_whole_network_gradient_with_each_loss(loss_name, act, n_out):
    """A 4-5-5-n network end to end, through the fused output where the loss has one."""
    layers = [
        Dense(
            units=5,
            activation="relu",
            initializer="he_normal",
            bias_initializer={"name": "random_uniform", "minval": 0.1, "maxval": 0.5},
        ),
        Dense(units=5, activation="tanh"),
        Dense(units=n_out, activation=act),
    ]
    model = Model(layers, (4,), np.random.default_rng(3), np.float64)
    loss = LOSSES.create(loss_name)
    X = RNG.normal(size=(8, 4))
    labels = RNG.integers(0, max(n_out, 2), 8)
    T = loss.targets(labels, n_out, np.float64)
    checks = check_model(
        model, loss_objective(loss, T), X, logits=loss.fused_activation is not None
    )
    assert all(c.passed for c in checks), checks


def test_gradient_check_catches_a_wrong_backward():
    """The check is not vacuous: a layer whose backward drops a term fails it."""

    class Broken(Dense):
        def backward_logits(self, dZ, need_dx=True):
            dX = super().backward_logits(dZ, need_dx)
            self.grads["W"] *= -1.0  # wrong sign
            return dX

    model = Model(
        [Broken(units=3, activation="tanh"), Dense(units=2)],
        (4,),
        np.random.default_rng(0),
        np.float64,
    )
    X, T = RNG.normal(size=(5, 4)), RNG.normal(size=(5, 2))
    mse = loss_objective(LOSSES.create("mse"), T)
    checks = {c.name: c.passed for c in check_model(model, mse, X)}
    assert checks["layers.0.W"] is False
    assert checks["layers.1.W"] is True


@pytest.mark.parametrize("join", ["concat", "sum"])
def test_graph_join_gradients(join):
    """input -> h1 -> h2; the output reads [input, h1, h2] joined: skip connections."""
    layers = [
        Dense(units=3, activation="tanh"),
        Dense(units=3, activation="sigmoid"),
        Dense(units=2, activation="linear"),
    ]
    model = Model(
        layers,
        (3,),
        np.random.default_rng(1),
        np.float64,
        names=["h1", "h2", "out"],
        inputs=[None, ["h1"], ["input", "h1", "h2"]],
        joins=["concat", "concat", join],
    )
    assert not model.chain and model.shapes[2] == (2,)
    X, T = RNG.normal(size=(5, 3)), RNG.normal(size=(5, 2))
    checks = check_model(model, loss_objective(LOSSES.create("mse"), T), X)
    assert all(c.passed for c in checks), checks


def _two_headed_model():
    layers = [
        Dense(units=4, activation="tanh"),
        Dense(units=3, activation="softmax"),
        Dense(units=5, activation="linear"),
    ]
    return Model(
        layers,
        (5,),
        np.random.default_rng(2),
        np.float64,
        names=["trunk", "cls", "recon"],
        inputs=[None, ["trunk"], ["trunk"]],
        outputs=["cls", "recon"],
    )


def _masked_objective(T_cls, w, X, weight=0.5):
    ce, mse = LOSSES.create("categorical_crossentropy"), LOSSES.create("mse")

    def objective(outs):
        v1, d1 = ce(outs[0], T_cls, w)
        v2, d2 = mse(outs[1], X)
        return v1 + weight * v2, [d1, weight * d2]

    return objective


def test_masked_two_headed_gradients():
    model = _two_headed_model()
    X = RNG.normal(size=(6, 5))
    labels = np.array([0, 2, -1, 1, -1, 2])  # two samples without a label
    w = (labels >= 0).astype(float)
    T = LOSSES.create("categorical_crossentropy").targets(np.maximum(labels, 0), 3, np.float64)
    T *= w[:, None]
    checks = check_model(model, _masked_objective(T, w, X), X, logits=[True, False])
    assert all(c.passed for c in checks), checks


def test_unlabelled_samples_contribute_exactly_nothing():
    ce = LOSSES.create("categorical_crossentropy")
    z = RNG.normal(size=(6, 3))
    labels = np.array([0, 2, -1, 1, -1, 2])
    w = (labels >= 0).astype(float)
    T = ce.targets(np.maximum(labels, 0), 3, np.float64) * w[:, None]
    v, g = ce(z.copy(), T, w)
    z2 = z.copy()
    z2[[2, 4]] = RNG.normal(size=(2, 3)) * 10  # change the unlabelled samples' logits
    v2, g2 = ce(z2, T, w)
    assert v == v2
    np.testing.assert_array_equal(g[[0, 1, 3, 5]], g2[[0, 1, 3, 5]])
    np.testing.assert_array_equal(g[[2, 4]], 0.0)
    # and the mean is over the labelled samples: the same as the loss of those alone
    v3, _ = ce(z[[0, 1, 3, 5]].copy(), T[[0, 1, 3, 5]])
    assert v == pytest.approx(v3, rel=1e-12)


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_loss_ignores_masked_samples(name):
    loss, out, t = _loss_case(name)
    w = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    if name == "categorical_crossentropy":
        t = t * w[:, None]
    v, g = loss(out.copy(), t, w)
    keep = w > 0
    v_alone, g_alone = loss(out[keep].copy(), t[keep])
    assert v == pytest.approx(v_alone, rel=1e-12)
    np.testing.assert_allclose(g[keep], g_alone, rtol=1e-12)
    np.testing.assert_array_equal(g[~keep], 0.0)


def test_cross_entropy_with_rows_far_apart_is_exact():
    """One row's logits 500 below another's: the batch-wide shift would underflow that row,
    so the loss shifts row by row; value and gradient equal a float64 reference."""
    ce = LOSSES.create("categorical_crossentropy")
    z = np.array([[1.0, 2.0, 3.0], [-500.0, -499.0, -501.0]], np.float32)
    t = np.array([[0, 0, 1], [1, 0, 0]], np.float32)
    v, g = ce(z.copy(), t)
    z64 = z.astype(np.float64)
    lse = np.log(np.exp(z64 - z64.max(1, keepdims=True)).sum(1)) + z64.max(1)
    ref = float(np.mean(lse - (t * z64).sum(1)))
    soft = np.exp(z64 - lse[:, None])
    assert v == pytest.approx(ref, rel=1e-6)
    np.testing.assert_allclose(g, (soft - t) / 2, atol=1e-7)
    assert np.isfinite(v) and np.isfinite(g).all()


def _input_gradient_check(model, objective, X, logits=False):
    """Model.backward(need_input_grad=True) against central differences in the inputs."""
    _, dout = objective(model.forward(X, logits=logits))
    dX = model.backward(dout, logits=logits, need_input_grad=True).copy()
    numeric = numerical_gradient(lambda: objective(model.forward(X, logits=logits))[0], X)
    return compare("input", dX, numeric)


@pytest.mark.parametrize("first", ["dense", "dropout", "flatten", "lstm"])
def test_input_gradient_of_a_chain(first):
    if first == "lstm":
        layers = [LAYERS.create({"type": "lstm", "units": 3}), Dense(units=3, activation="softmax")]
        X = RNG.normal(size=(5, 4, 2))
    elif first == "flatten":
        layers = [LAYERS.create("flatten"), Dense(units=3, activation="softmax")]
        X = RNG.normal(size=(5, 2, 3))
    else:
        layers = [Dense(units=4, activation="tanh"), Dense(units=3, activation="softmax")]
        if first == "dropout":
            layers.insert(0, LAYERS.create({"type": "dropout", "rate": 0.0}))
        X = RNG.normal(size=(5, 6))
    model = Model(layers, X.shape[1:], np.random.default_rng(0), np.float64)
    ce = LOSSES.create("categorical_crossentropy")
    T = ce.targets(RNG.integers(0, 3, 5), 3, np.float64)
    check = _input_gradient_check(model, loss_objective(ce, T), X, logits=True)
    assert check.passed, check
    assert model.backward(ce(model.forward(X, logits=True), T)[1], logits=True) is None


@pytest.mark.parametrize("join", ["concat", "sum"])
def test_input_gradient_of_a_graph_that_reads_the_input_twice(join):
    """The output reads the input directly (a skip connection) and through h1 and h2: dL/dX
    sums both paths."""
    layers = [
        Dense(units=4, activation="tanh"),
        Dense(units=3, activation="linear"),
        Dense(units=3, activation="sigmoid"),
    ]
    model = Model(
        layers,
        (3,),
        np.random.default_rng(1),
        np.float64,
        names=["h1", "h2", "out"],
        inputs=[None, ["h1"], ["input", "h2"]],
        joins=["concat", "concat", join],
    )
    X, T = RNG.normal(size=(5, 3)), RNG.normal(size=(5, 3))
    check = _input_gradient_check(model, loss_objective(LOSSES.create("mse"), T), X)
    assert check.passed, check


def test_input_gradient_of_two_heads():
    model = _two_headed_model()
    X = RNG.normal(size=(6, 5))
    labels = np.array([0, 2, -1, 1, -1, 2])
    w = (labels >= 0).astype(float)
    T = LOSSES.create("categorical_crossentropy").targets(np.maximum(labels, 0), 3, np.float64)
    T *= w[:, None]
    objective = _masked_objective(T, w, X.copy())
    check = _input_gradient_check(model, objective, X, logits=[True, False])
    assert check.passed, check


def test_batchnorm_gradient_in_evaluation_mode():
    """Saliency and layers.csv backpropagate through the evaluation-mode map x a + b, with
    the running averages as constants."""
    layers = [
        Dense(units=4, activation="tanh"),
        LAYERS.create({"type": "batchnorm", "gamma_initializer": "random_normal"}),
        Dense(units=2),
    ]
    model = Model(layers, (3,), np.random.default_rng(5), np.float64)
    model.forward(RNG.normal(size=(8, 3)), training=True)  # running averages away from 0, 1
    X, T = RNG.normal(size=(6, 3)), RNG.normal(size=(6, 2))
    checks = check_model(model, loss_objective(LOSSES.create("mse"), T), X, training=False)
    assert all(c.passed for c in checks), checks


IMAGE_CASES = [
    case
    for cases in LAYER_EXAMPLES.values()
    for case in cases
    if case[1] == "image" and case[0]["type"] not in ("dropout", "sample")
]


@pytest.mark.parametrize("spec", [c[0] for c in IMAGE_CASES], ids=str)
def test_image_layer_input_gradients_in_evaluation_mode(spec):
    """Saliency and Grad-CAM (nnlab explain) backpropagate after an evaluation-mode forward:
    each image layer's input gradient then is that of its evaluation map, whatever a
    training-mode forward on another batch left behind (max pooling's winners, batch
    statistics)."""
    layer = LAYERS.create(spec)
    pointwise = {"type": "conv2d", "filters": 3, "kernel_size": 1, "activation": "tanh"}
    before = LAYERS.create({**pointwise, "bias_initializer": {"name": "random_normal"}})
    after = [LAYERS.create("flatten"), Dense(units=3, activation="linear")]
    model = Model([before, layer, *after], (7, 6, 3), np.random.default_rng(0), np.float64)
    model.forward(RNG.normal(size=(9, 7, 6, 3)), training=True)  # another batch, in training
    X, T = RNG.normal(size=(6, 7, 6, 3)), RNG.normal(size=(6, 3))
    mse = LOSSES.create("mse")

    def objective(out):
        return mse(out, T)

    check = _input_gradient_check(model, objective, X)
    assert check.passed, check
