"""Optimizers: one step against hand-computed numbers, and convergence for every registered one."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnlab.errors import ConfigError
from nnlab.nn import OPTIMIZERS, SCHEDULES


def make(spec, theta, n_decay=None):
    opt = OPTIMIZERS.create(spec)
    theta = np.array(theta, dtype=np.float64)
    opt.setup(theta, len(theta) if n_decay is None else n_decay)
    opt.set_epoch(0, 10)
    return opt, theta


def step(opt, theta, grad):
    opt.step(theta, np.array(grad, dtype=np.float64))
    return theta


def test_sgd_one_step():
    opt, theta = make({"name": "sgd", "lr": 0.1}, [1.0, -2.0])
    step(opt, theta, [0.5, 0.1])
    np.testing.assert_allclose(theta, [0.95, -2.01], rtol=0, atol=1e-15)


def test_sgd_momentum_two_steps():
    opt, theta = make({"name": "sgd", "lr": 0.1, "momentum": 0.9}, [1.0, -2.0])
    step(opt, theta, [0.5, 0.1])  # buf = g1 = [0.5, 0.1]
    step(opt, theta, [0.2, -0.4])  # buf = 0.9 * g1 + g2 = [0.65, -0.31]
    np.testing.assert_allclose(theta, [1 - 0.05 - 0.065, -2 - 0.01 + 0.031], atol=1e-15)


def test_sgd_nesterov_two_steps():
    opt, theta = make({"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True}, [1.0])
    step(opt, theta, [0.5])  # buf = 0.5; update g + 0.9 buf = 0.95
    step(opt, theta, [0.2])  # buf = 0.65; update 0.2 + 0.585 = 0.785
    np.testing.assert_allclose(theta, [1 - 0.095 - 0.0785], atol=1e-15)


def test_adam_first_step_is_lr_times_sign():
    # bias-corrected m = g and v = g^2 after one step, so the update is lr * g / (|g| + eps)
    opt, theta = make({"name": "adam", "lr": 0.1}, [1.0, -2.0])
    step(opt, theta, [0.5, 0.1])
    np.testing.assert_allclose(theta, [0.900000002, -2.0999999900], rtol=0, atol=1e-12)


def test_adam_second_step_by_hand():
    opt, theta = make({"name": "adam", "lr": 0.01, "beta1": 0.9, "beta2": 0.999}, [0.0])
    step(opt, theta, [1.0])
    step(opt, theta, [-0.5])
    m = 0.9 * 0.1 * 1.0 + 0.1 * -0.5  # 0.04
    v = 0.999 * 0.001 * 1.0 + 0.001 * 0.25  # 0.001249
    mhat, vhat = m / (1 - 0.9**2), v / (1 - 0.999**2)
    expected = -0.01 * 1.0 / (1.0 + 1e-8) - 0.01 * mhat / (math.sqrt(vhat) + 1e-8)
    np.testing.assert_allclose(theta, [expected], rtol=1e-12)


def test_adamw_decays_kernels_before_the_step_and_leaves_biases():
    # theta = [kernel, bias]; only the first entry decays
    opt, theta = make({"name": "adamw", "lr": 0.1, "weight_decay": 0.5}, [2.0, 2.0], n_decay=1)
    step(opt, theta, [0.5, 0.5])
    np.testing.assert_allclose(
        theta,
        [2.0 * (1 - 0.05) - 0.1 * 0.5 / (0.5 + 1e-8), 2.0 - 0.1 * 0.5 / (0.5 + 1e-8)],
        atol=1e-12,
    )


def test_rmsprop_first_step():
    # v = (1 - rho) g^2, so the update is lr * g / (sqrt(0.1) |g| + eps)
    opt, theta = make({"name": "rmsprop", "lr": 0.01, "rho": 0.9}, [1.0, 1.0])
    step(opt, theta, [2.0, -0.5])
    np.testing.assert_allclose(
        theta,
        [1 - 0.01 * 2 / (math.sqrt(0.4) + 1e-8), 1 + 0.01 * 0.5 / (math.sqrt(0.025) + 1e-8)],
        rtol=1e-12,
    )


def test_rmsprop_centered_and_momentum():
    opt, theta = make(
        {"name": "rmsprop", "lr": 0.01, "rho": 0.9, "centered": True, "momentum": 0.5}, [0.0]
    )
    step(opt, theta, [2.0])
    v, gavg = 0.4, 0.2
    buf1 = 2.0 / (math.sqrt(v - gavg**2) + 1e-8)
    step(opt, theta, [1.0])
    v, gavg = 0.9 * v + 0.1, 0.9 * gavg + 0.1
    buf2 = 0.5 * buf1 + 1.0 / (math.sqrt(v - gavg**2) + 1e-8)
    np.testing.assert_allclose(theta, [-0.01 * buf1 - 0.01 * buf2], rtol=1e-12)


def test_adagrad_two_steps():
    opt, theta = make({"name": "adagrad", "lr": 0.1}, [0.0])
    step(opt, theta, [3.0])  # s = 9: update 0.1 * 3 / 3
    step(opt, theta, [4.0])  # s = 25: update 0.1 * 4 / 5
    np.testing.assert_allclose(theta, [-0.1 - 0.08], atol=1e-9)


def test_weight_decay_and_l2_touch_kernels_only():
    opt, theta = make(
        {"name": "sgd", "lr": 0.1, "weight_decay": 0.1, "l2": 0.05}, [1.0, 1.0], n_decay=1
    )
    step(opt, theta, [0.0, 0.0])  # kernel gradient: 0.1 * 1 + 2 * 0.05 * 1 = 0.2
    np.testing.assert_allclose(theta, [0.98, 1.0], atol=1e-15)


def test_clipnorm_scales_the_global_gradient():
    opt, theta = make({"name": "sgd", "lr": 1.0, "clipnorm": 1.0}, [0.0, 0.0])
    step(opt, theta, [3.0, 4.0])  # norm 5 -> scaled to 1
    np.testing.assert_allclose(theta, [-0.6, -0.8], atol=1e-9)


def test_clipvalue_clips_each_entry():
    opt, theta = make({"name": "sgd", "lr": 1.0, "clipvalue": 0.5}, [0.0, 0.0])
    step(opt, theta, [3.0, -0.25])
    np.testing.assert_allclose(theta, [-0.5, 0.25])


def test_nesterov_without_momentum_is_a_config_error():
    with pytest.raises(ConfigError, match="momentum"):
        OPTIMIZERS.resolve({"name": "sgd", "nesterov": True}, "optimizer")


def test_optimizer_state_round_trips():
    opt, theta = make({"name": "adam", "lr": 0.1}, [1.0, 2.0])
    step(opt, theta, [0.3, -0.2])
    state = opt.state_dict()
    opt2, theta2 = make({"name": "adam", "lr": 0.1}, list(theta))
    opt2.load_state_dict(state)
    step(opt, theta, [0.1, 0.1])
    step(opt2, theta2, [0.1, 0.1])
    np.testing.assert_array_equal(theta, theta2)


# learning rates for the convergence test; a new optimizer must get an entry here
CONVERGENCE_LR = {"sgd": 0.1, "rmsprop": 0.01, "adagrad": 0.5, "adam": 0.05, "adamw": 0.05}


def test_every_optimizer_is_in_the_convergence_test():
    assert set(OPTIMIZERS.names()) <= set(CONVERGENCE_LR)


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_optimizer_minimises_an_ill_conditioned_quadratic(name):
    a = np.array([1.0, 4.0, 9.0])  # curvatures
    c = np.array([1.0, -2.0, 0.5])  # minimum
    spec = {"name": name, "lr": CONVERGENCE_LR[name]}
    if name == "adamw":
        spec["weight_decay"] = 0.0
    opt, theta = make(spec, [0.0, 0.0, 0.0], n_decay=0)

    def f(t):
        return 0.5 * float(np.sum(a * (t - c) ** 2))

    start = f(theta)
    for _ in range(2000):
        opt.step(theta, a * (theta - c))
    assert f(theta) < 1e-6 * start, (name, theta)


@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop"])
def test_optimizer_descends_rosenbrock(name):
    spec = {"name": name, "lr": {"sgd": 1e-3, "adam": 2e-2, "rmsprop": 1e-3}[name]}
    if name == "sgd":
        spec["momentum"] = 0.9
    opt, theta = make(spec, [-1.5, 2.0], n_decay=0)

    def grad(t):
        x, y = t
        return np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])

    for _ in range(20000):
        opt.step(theta, grad(theta))
    np.testing.assert_allclose(theta, [1.0, 1.0], atol=0.05)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("constant", [0.1, 0.1, 0.1, 0.1]),
        ({"name": "step", "step_size": 2, "gamma": 0.5}, [0.1, 0.1, 0.05, 0.05]),
        ({"name": "multistep", "milestones": [1, 3], "gamma": 0.1}, [0.1, 0.01, 0.01, 0.001]),
        ({"name": "exponential", "gamma": 0.5}, [0.1, 0.05, 0.025, 0.0125]),
        ({"name": "cosine", "t_max": 2}, [0.1, 0.05, 0.0, 0.0]),
    ],
)
def test_schedules(spec, expected):
    sched = SCHEDULES.create(spec)
    got = [sched(e, 0.1, 4) for e in range(4)]
    np.testing.assert_allclose(got, expected, atol=1e-15)


def test_every_schedule_is_tested():
    tested = {"constant", "step", "multistep", "exponential", "cosine"}
    assert set(SCHEDULES.names()) <= tested
