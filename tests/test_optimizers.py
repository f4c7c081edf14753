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


def test_clipnorm_scales_the_global_gradient_as_torch_clip_grad_norm():
    opt, theta = make({"name": "sgd", "lr": 1.0, "clipnorm": 1.0}, [0.0, 0.0])
    step(opt, theta, [3.0, 4.0])  # norm 5 -> scaled by 1 / (5 + 1e-6), as clip_grad_norm_
    np.testing.assert_allclose(theta, [-3 / (5 + 1e-6), -4 / (5 + 1e-6)], rtol=1e-15)
    opt, theta = make({"name": "sgd", "lr": 1.0, "clipnorm": 1.0}, [0.0, 0.0])
    step(opt, theta, [0.6, 0.8])  # norm 1: 1 / (1 + 1e-6) < 1 scales it too, as in PyTorch
    np.testing.assert_allclose(theta, [-0.6 / (1 + 1e-6), -0.8 / (1 + 1e-6)], rtol=1e-15)
    opt, theta = make({"name": "sgd", "lr": 1.0, "clipnorm": 1.0}, [0.0, 0.0])
    step(opt, theta, [0.3, 0.4])  # below the bound: untouched
    np.testing.assert_array_equal(theta, [-0.3, -0.4])


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
CONVERGENCE_LR = {
    "sgd": 0.1,
    "rmsprop": 0.01,
    "adagrad": 0.5,
    "adam": 0.05,
    "adamw": 0.05,
    "rprop": 0.01,
    "es": 0.05,  # with the losses themselves (shaping none): see the test
}


def test_every_optimizer_is_in_the_convergence_test():
    assert set(OPTIMIZERS.names()) <= set(CONVERGENCE_LR)


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_optimizer_minimises_an_ill_conditioned_quadratic(name):
    a = np.array([1.0, 4.0, 9.0])  # curvatures
    c = np.array([1.0, -2.0, 0.5])  # minimum
    spec = {"name": name, "lr": CONVERGENCE_LR[name]}
    if name == "adamw":
        spec["weight_decay"] = 0.0
    if name == "es":  # the raw losses: their estimate vanishes at the minimum, as a gradient
        spec.update(shaping="none", population=20)
    opt, theta = make(spec, [0.0, 0.0, 0.0], n_decay=0)

    def f(t):
        return 0.5 * float(np.sum(a * (t - c) ** 2))

    start = f(theta)
    for _ in range(2000):
        if opt.needs_gradient:
            opt.step(theta, a * (theta - c))
        else:  # evolution strategies see the losses of perturbed copies only
            opt.rng = opt.rng or np.random.default_rng(0)
            members, estimate = np.empty((opt.population, 3)), np.empty(3)
            opt.ask(theta, members)
            opt.tell(np.array([f(m) for m in members]), estimate)
            opt.step(theta, estimate)
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
    tested = {"constant", "step", "multistep", "exponential", "cosine", "plateau"}
    assert set(SCHEDULES.names()) <= tested


def test_cosine_holds_eta_min_after_t_max():
    # PyTorch's CosineAnnealingLR would rise again along the cosine; nnlab holds eta_min
    sched = SCHEDULES.create({"name": "cosine", "t_max": 4, "eta_min": 0.01})
    got = [sched(e, 0.1, 10) for e in range(10)]
    assert got[4:] == [0.01] * 6
    assert got[0] == 0.1 and got[2] == pytest.approx(0.055)


# ---------------------------------------------------------------- the L2 penalty and clipping


def _objective_gradient(theta, n_decay, l2, a, c):
    """The gradient of 0.5 sum a (w - c)^2 + l2 sum(w[:n_decay]^2) by central differences: an
    independent computation of the whole objective's gradient."""
    from nnlab.gradcheck import numerical_gradient

    w = np.array(theta, dtype=np.float64)

    def f():
        return 0.5 * float(np.sum(a * (w - c) ** 2)) + l2 * float(np.sum(w[:n_decay] ** 2))

    return numerical_gradient(f, w)


@pytest.mark.parametrize("clip", [{"clipnorm": 0.5}, {"clipvalue": 0.2}])
def test_the_l2_penalty_is_clipped_with_the_loss_gradient(clip):
    theta0 = [3.0, -2.0, 0.5]  # two kernels, one bias
    a, c, l2 = np.array([1.0, 2.0, 0.5]), np.array([0.5, 0.5, 0.0]), 0.3
    opt, theta = make({"name": "sgd", "lr": 1.0, "l2": l2, **clip}, theta0, n_decay=2)
    step(opt, theta, a * (np.array(theta0) - c))  # the data loss's gradient only
    g = _objective_gradient(theta0, 2, l2, a, c)
    if "clipnorm" in clip:
        g *= min(1.0, clip["clipnorm"] / (np.linalg.norm(g) + 1e-6))
    else:
        g = np.clip(g, -clip["clipvalue"], clip["clipvalue"])
    np.testing.assert_allclose(theta, np.array(theta0) - g, rtol=0, atol=1e-9)
    # the step is within the clip: the penalty did not escape it
    if "clipnorm" in clip:
        assert np.linalg.norm(theta - theta0) <= clip["clipnorm"] + 1e-12
    else:
        assert np.abs(theta - theta0).max() <= clip["clipvalue"] + 1e-12


def test_weight_decay_is_added_after_clipping_as_in_torch():
    torch = pytest.importorskip("torch", reason="needs PyTorch (the bench extra)")
    theta0, grad = [3.0, -2.0, 0.5], [4.0, 1.0, -2.0]
    opt, theta = make(
        {"name": "sgd", "lr": 0.1, "weight_decay": 0.2, "clipnorm": 1.0}, theta0, n_decay=3
    )
    step(opt, theta, grad)
    p = torch.nn.Parameter(torch.tensor(theta0, dtype=torch.float64))
    p.grad = torch.tensor(grad, dtype=torch.float64)
    torch.nn.utils.clip_grad_norm_([p], 1.0)
    torch.optim.SGD([p], lr=0.1, weight_decay=0.2).step()
    np.testing.assert_allclose(theta, p.detach().numpy(), rtol=0, atol=1e-15)


# ---------------------------------------------------------------- Rprop


def test_rprop_first_step_is_the_initial_step_times_the_sign():
    opt, theta = make({"name": "rprop", "lr": 0.01}, [1.0, -2.0, 0.5])
    step(opt, theta, [0.3, -7.0, 0.0])
    # no previous gradient: every step stays 0.01; a zero gradient moves nothing
    np.testing.assert_array_equal(theta, [1.0 - 0.01, -2.0 + 0.01, 0.5])


def test_rprop_grows_keeps_and_shrinks_steps_by_hand():
    spec = {"name": "rprop", "lr": 0.1, "eta_minus": 0.5, "eta_plus": 1.3, "step_max": 0.15}
    opt, theta = make(spec, [0.0, 0.0, 0.0])
    step(opt, theta, [1.0, 1.0, 1.0])  # steps 0.1: theta -0.1 each
    step(opt, theta, [2.0, -1.0, 0.0])  # kept: 0.13; flipped: 0.05 and no move; zero: 0.1
    np.testing.assert_allclose(theta, [-0.1 - 0.13, -0.1, -0.1], rtol=1e-15)
    step(opt, theta, [1.0, -1.0, 1.0])
    # kept again: 0.13 * 1.3 = 0.169 > step_max: 0.15; after a flip the product is 0: the step
    # stays 0.05; the zero gradient left its product 0: 0.1
    np.testing.assert_allclose(theta, [-0.23 - 0.15, -0.1 + 0.05, -0.2], rtol=1e-15)


def test_rprop_with_a_schedule_is_a_config_error():
    with pytest.raises(ConfigError, match="schedule: constant") as info:
        OPTIMIZERS.resolve({"name": "rprop", "schedule": "cosine"}, "optimizer")
    assert info.value.path == "optimizer.schedule"
    with pytest.raises(ConfigError, match="eta_plus"):
        OPTIMIZERS.resolve({"name": "rprop", "eta_plus": 0.9}, "optimizer")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rprop_matches_torch_optim_rprop(dtype):
    torch = pytest.importorskip(
        "torch", reason="the comparison with torch.optim.Rprop needs PyTorch (the bench extra)"
    )
    rng = np.random.default_rng(3)
    a = rng.uniform(0.5, 4.0, 50)
    c = rng.normal(size=50)
    theta0 = rng.normal(size=50)
    settings = dict(lr=0.05, eta_minus=0.4, eta_plus=1.3, step_min=1e-4, step_max=0.2)
    opt = OPTIMIZERS.create({"name": "rprop", **settings})
    theta = theta0.astype(dtype)
    opt.setup(theta, 50)
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    p = torch.nn.Parameter(torch.tensor(theta0, dtype=tdtype))
    topt = torch.optim.Rprop([p], lr=0.05, etas=(0.4, 1.3), step_sizes=(1e-4, 0.2), foreach=False)
    noise = rng.normal(scale=0.5, size=(200, 50))  # flips some signs, as mini-batches do
    for k in range(200):
        grad = (a * (theta.astype(np.float64) - c) + noise[k]).astype(dtype)
        opt.step(theta, grad.copy())
        p.grad = torch.tensor(grad)
        topt.step()
        np.testing.assert_array_equal(theta, p.detach().numpy())  # bit for bit
    assert np.abs(theta.astype(np.float64) - c).max() < 0.5  # and it got somewhere


# ---------------------------------------------------------------- plateau


def _plateau_lrs(spec, values, higher=False, base=0.1):
    sched = SCHEDULES.create({"name": "plateau", **spec})
    lrs = []
    for e, v in enumerate(values):
        lrs.append(sched(e, base, len(values)))
        sched.observe(v, higher)
    return lrs, sched


def test_plateau_reduces_after_patience_epochs_without_improvement():
    values = [1.0, 0.9, 0.95, 0.91, 0.905, 0.85, 0.86, 0.87, 0.88, 0.89]
    lrs, _ = _plateau_lrs({"patience": 3, "factor": 0.5, "min_delta": 0.01}, values)
    # best 0.9 at epoch 2; 0.95, 0.91, 0.905 are not better by 0.01: reduced after epoch 5;
    # 0.85 improves; then three epochs without: reduced after epoch 9
    assert lrs == [0.1] * 5 + [0.05] * 4 + [0.025]


def test_plateau_cooldown_min_lr_and_max_mode():
    # cooldown 2: the two epochs after a reduction are not counted
    lrs, _ = _plateau_lrs(
        {"patience": 1, "factor": 0.5, "cooldown": 2, "min_lr": 0.02, "mode": "max"},
        [0.5, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4],
        higher=True,  # mode max, as the training loop resolves it
    )
    assert lrs == [0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025]
    lrs, _ = _plateau_lrs({"patience": 1, "min_lr": 0.02}, [1.0] * 4)  # floored at min_lr
    assert lrs == [0.1, 0.1, 0.02, 0.02]


def test_plateau_state_round_trips():
    values = [1.0, 0.9, 0.95, 0.96, 0.97, 0.8, 0.81]
    spec = {"patience": 2, "factor": 0.5, "cooldown": 1}
    lrs, _ = _plateau_lrs(spec, values)
    _, first = _plateau_lrs(spec, values[:4])
    second = SCHEDULES.create({"name": "plateau", **spec})
    second.load_state_dict(json_round_trip(first.state_dict()))
    rest = []
    for e, v in enumerate(values[4:], 4):
        rest.append(second(e, 0.1, len(values)))
        second.observe(v, False)
    assert rest == lrs[4:]


def json_round_trip(state):
    import json

    return json.loads(json.dumps(state))


def test_plateau_matches_torch_reduce_lr_on_plateau():
    torch = pytest.importorskip("torch", reason="needs PyTorch (the bench extra)")
    rng = np.random.default_rng(0)
    values = np.cumsum(rng.normal(0.0, 1.0, 300)) * 0.01 + 1.0  # a random walk with plateaus
    spec = {"patience": 4, "factor": 0.5, "min_delta": 0.005, "cooldown": 2, "min_lr": 1e-3}
    lrs, _ = _plateau_lrs(spec, values)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=0.5, patience=3, threshold=0.005, threshold_mode="abs",
        cooldown=2, min_lr=1e-3,
    )  # fmt: skip
    want = []
    for v in values:
        want.append(opt.param_groups[0]["lr"])
        ref.step(float(v))
    assert lrs == pytest.approx(want, rel=1e-15)
    assert len(set(lrs)) >= 4  # it did reduce, several times
