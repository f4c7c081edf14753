"""Initializers: shapes, dtypes, the statistics each promises, determinism, aliases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnlab.errors import ConfigError
from nnlab.nn import INITIALIZERS
from nnlab.nn.initializers import fans

SHAPE = (400, 300)  # fan_in 400, fan_out 300
FAN_AVG = 350

# name -> (expected mean, expected std) for SHAPE; every registered initializer needs an entry
EXPECTED = {
    "zeros": (0.0, 0.0),
    "ones": (1.0, 0.0),
    "constant": (0.0, 0.0),
    "random_uniform": (0.0, 0.1 / math.sqrt(12)),
    "random_normal": (0.0, 0.05),
    "truncated_normal": (0.0, 0.05 * 0.8796),  # a normal cut at 2 stddev has 0.88 of the std
    "variance_scaling": (0.0, math.sqrt(1 / 400)),
    "glorot_uniform": (0.0, math.sqrt(1 / FAN_AVG)),
    "glorot_normal": (0.0, math.sqrt(1 / FAN_AVG)),
    "he_uniform": (0.0, math.sqrt(2 / 400)),
    "he_normal": (0.0, math.sqrt(2 / 400)),
    "lecun_uniform": (0.0, math.sqrt(1 / 400)),
    "lecun_normal": (0.0, math.sqrt(1 / 400)),
    "orthogonal": (0.0, math.sqrt(1 / 400)),  # unit-norm columns of length 400
    # columns of norm 0.7 * 300^(1/400) over 400 entries
    "nguyen_widrow": (0.0, 0.7 * 300 ** (1 / 400) / math.sqrt(400)),
}


def test_every_initializer_has_expected_statistics():
    assert set(INITIALIZERS.names()) <= set(EXPECTED)


@pytest.mark.parametrize("name", INITIALIZERS.names())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_statistics_shape_and_dtype(name, dtype):
    w = INITIALIZERS.create(name)(SHAPE, np.random.default_rng(0), dtype)
    assert w.shape == SHAPE and w.dtype == dtype
    mean, std = EXPECTED[name]
    assert float(w.mean()) == pytest.approx(mean, abs=max(0.01 * std, 1e-12) + 3 * std / 346)
    assert float(w.std()) == pytest.approx(std, rel=0.02, abs=1e-12)


@pytest.mark.parametrize("name", INITIALIZERS.names())
def test_same_seed_same_weights_different_seed_different(name):
    init = INITIALIZERS.create(name)
    a = init((20, 10), np.random.default_rng(5))
    b = init((20, 10), np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    if EXPECTED[name][1] > 0:
        assert not np.array_equal(a, init((20, 10), np.random.default_rng(6)))


def test_float32_and_float64_start_from_the_same_draw():
    init = INITIALIZERS.create("he_normal")
    a = init((30, 20), np.random.default_rng(1), np.float32)
    b = init((30, 20), np.random.default_rng(1), np.float64)
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_uniform_bounds():
    w = INITIALIZERS.create("glorot_uniform")(SHAPE, np.random.default_rng(0))
    assert np.abs(w).max() <= math.sqrt(6 / (400 + 300))
    w = INITIALIZERS.create({"name": "random_uniform", "minval": 2, "maxval": 3})(
        SHAPE, np.random.default_rng(0)
    )
    assert w.min() >= 2 and w.max() < 3


def test_truncated_normal_stays_within_two_stddev():
    w = INITIALIZERS.create({"name": "truncated_normal", "mean": 1.0, "stddev": 0.1})(
        SHAPE, np.random.default_rng(0), np.float64
    )
    assert np.abs(w - 1.0).max() <= 0.2


def test_orthogonal_is_orthogonal():
    for shape in [(8, 8), (10, 4), (4, 10)]:
        q = INITIALIZERS.create({"name": "orthogonal", "gain": 2.0})(
            shape, np.random.default_rng(0), np.float64
        )
        small = min(shape)
        gram = q.T @ q if shape[0] >= shape[1] else q @ q.T
        np.testing.assert_allclose(gram, 4.0 * np.eye(small), atol=1e-12)


def test_gain_scales_the_standard_deviation():
    a = INITIALIZERS.create({"name": "he_normal", "gain": 3.0})(SHAPE, np.random.default_rng(0))
    b = INITIALIZERS.create("he_normal")(SHAPE, np.random.default_rng(0))
    np.testing.assert_allclose(a, 3.0 * b, rtol=1e-6)


def test_constant_sets_given_values_and_rejects_wrong_shapes():
    init = INITIALIZERS.create({"name": "constant", "value": [[1.0, 2.0], [3.0, 4.0]]})
    np.testing.assert_array_equal(init((2, 2), np.random.default_rng(0)), [[1, 2], [3, 4]])
    with pytest.raises(ConfigError, match="does not fit"):
        init((3, 2), np.random.default_rng(0))


@pytest.mark.parametrize(
    "alias, name",
    [
        ("xavier_uniform", "glorot_uniform"),
        ("xavier_normal", "glorot_normal"),
        ("kaiming_uniform", "he_uniform"),
        ("kaiming_normal", "he_normal"),
    ],
)
def test_aliases(alias, name):
    assert INITIALIZERS.resolve(alias) == INITIALIZERS.resolve(name)


def test_random_uniform_bounds_are_checked():
    with pytest.raises(ConfigError, match="minval"):
        INITIALIZERS.resolve({"name": "random_uniform", "minval": 1, "maxval": 0}, "x")


@pytest.mark.parametrize(
    "shape, fan_in, fan_out",
    [((64, 10), 64, 10), ((5, 5, 1, 16), 25, 400), ((3, 2, 16, 32), 96, 192), ((7,), 7, 7)],
)
def test_fans_of_dense_and_convolution_kernels_are_keras_and_pytorchs(shape, fan_in, fan_out):
    """A conv2d kernel (kh, kw, in, out): fan_in = kh kw in, fan_out = kh kw out, as Keras'
    compute_fans and PyTorch's _calculate_fan_in_and_fan_out (on its (out, in, kh, kw))."""
    assert fans(shape) == (fan_in, fan_out)
    torch = pytest.importorskip("torch")
    if len(shape) == 4:
        w = torch.empty(shape[3], shape[2], shape[0], shape[1])
    else:
        w = torch.empty(*reversed(shape)) if len(shape) == 2 else torch.empty(*shape)
    if len(shape) > 1:
        assert torch.nn.init._calculate_fan_in_and_fan_out(w) == (fan_in, fan_out)


def test_he_normal_of_a_convolution_kernel_has_stddev_sqrt_2_over_fan_in():
    w = INITIALIZERS.create("he_normal")((5, 5, 16, 32), np.random.default_rng(0), np.float64)
    assert w.std() == pytest.approx(np.sqrt(2 / (5 * 5 * 16)), rel=0.03)
    g = INITIALIZERS.create("glorot_uniform")((3, 3, 8, 24), np.random.default_rng(0))
    assert np.abs(g).max() <= np.sqrt(6 / (9 * 8 + 9 * 24))


def test_nguyen_widrow_as_encog_defines_it():
    """Encog's randomizeSynapse, written out: uniform weights, then each unit's weight vector
    divided by its norm and multiplied by beta = 0.7 * H^(1/N)."""
    n_in, units = 7, 5
    w = INITIALIZERS.create("nguyen_widrow")((n_in, units), np.random.default_rng(4), np.float64)
    raw = np.random.default_rng(4).uniform(-1.0, 1.0, (n_in, units))
    beta = 0.7 * math.pow(units, 1.0 / n_in)
    want = np.empty_like(raw)
    for j in range(units):
        norm = math.sqrt(sum(raw[k, j] * raw[k, j] for k in range(n_in)))
        for k in range(n_in):
            want[k, j] = beta * raw[k, j] / norm
    np.testing.assert_allclose(w, want, rtol=1e-13)
    np.testing.assert_allclose(np.linalg.norm(w, axis=0), beta, rtol=1e-13)


def test_nguyen_widrow_beta_option_and_kernels_only():
    w = INITIALIZERS.create({"name": "nguyen_widrow", "beta": 2.0})(
        (64, 30), np.random.default_rng(0), np.float64
    )
    np.testing.assert_allclose(np.linalg.norm(w, axis=0), 2.0, rtol=1e-12)
    with pytest.raises(ConfigError, match="kernel"):
        INITIALIZERS.create("nguyen_widrow")((30,), np.random.default_rng(0))
