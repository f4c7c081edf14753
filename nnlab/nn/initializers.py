"""Weight initializers, by name: ``INITIALIZERS.create("he_normal")(shape, rng, dtype)``.

The Glorot, He and LeCun families are one ``VarianceScaling`` with different settings, as in
Keras. Values are drawn in float64 and cast, so a float32 and a float64 run with the same seed
start from the same weights (up to rounding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np

from nnlab.errors import ConfigError
from nnlab.memory import check_fits
from nnlab.registry import Registry
from nnlab.schema import Doc, Interval

Array = np.ndarray
INITIALIZERS = Registry("initializer")

# Keras' correction so that a normal truncated at two standard deviations has the wanted stddev.
_TRUNC_STD = 0.87962566103423978


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of this shape: (inputs, outputs) for a dense kernel."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def truncated_normal_draw(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> Array:
    """Normal(0, std) redrawn where it falls outside two standard deviations."""
    x = rng.standard_normal(shape)
    bad = np.abs(x) > 2.0
    while bad.any():
        x[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(x) > 2.0
    return x * std


class Initializer:
    """``init(shape, rng, dtype)`` returns a new array of that shape."""

    def draw(self, shape: tuple[int, ...], rng: np.random.Generator) -> Array:
        raise NotImplementedError

    def __call__(self, shape: tuple[int, ...], rng: np.random.Generator, dtype=np.float32) -> Array:
        shape = tuple(shape)
        # drawn in float64, then cast: both exist for a moment
        check_fits(math.prod(shape) * (8 + np.dtype(dtype).itemsize), f"a weight of shape {shape}")
        with np.errstate(over="ignore"):  # a value beyond float32's range becomes inf
            return np.asarray(self.draw(shape, rng), dtype=dtype).reshape(shape)


@INITIALIZERS.register("zeros", aliases=("zero",))
@dataclass
class Zeros(Initializer):
    """All zeros. Every unit of a layer then computes the same thing: symmetry never breaks."""

    def draw(self, shape, rng):
        return np.zeros(shape)


@INITIALIZERS.register("ones", aliases=("one",))
@dataclass
class Ones(Initializer):
    """All ones."""

    def draw(self, shape, rng):
        return np.ones(shape)


@INITIALIZERS.register("constant")
@dataclass
class Constant(Initializer):
    """A given value: a number for every entry, or a list (of lists) broadcast to the shape."""

    value: Annotated[
        float | list[float] | list[list[float]],
        Doc("the value; a list sets each entry (shape (inputs, units) for a dense kernel)"),
    ] = 0.0

    def draw(self, shape, rng):
        value = np.asarray(self.value, dtype=np.float64)
        try:
            return np.broadcast_to(value, shape).copy()
        except ValueError:
            raise ConfigError(
                f"constant value of shape {value.shape} does not fit a weight of shape {shape}"
            ) from None


@INITIALIZERS.register("random_uniform", aliases=("uniform",))
@dataclass
class RandomUniform(Initializer):
    """Uniform on [minval, maxval)."""

    minval: Annotated[float, Doc("lower bound")] = -0.05
    maxval: Annotated[float, Doc("upper bound")] = 0.05

    @staticmethod
    def __post_check__(p: dict, path: str) -> None:
        if p["minval"] >= p["maxval"]:
            raise ConfigError(
                f"minval ({p['minval']:g}) must be below maxval ({p['maxval']:g})", path
            )

    def draw(self, shape, rng):
        return rng.uniform(self.minval, self.maxval, shape)


@INITIALIZERS.register("random_normal", aliases=("normal",))
@dataclass
class RandomNormal(Initializer):
    """Normal(mean, stddev)."""

    mean: Annotated[float, Doc("mean")] = 0.0
    stddev: Annotated[float, Interval(ge=0), Doc("standard deviation")] = 0.05

    def draw(self, shape, rng):
        return self.mean + self.stddev * rng.standard_normal(shape)


@INITIALIZERS.register("truncated_normal")
@dataclass
class TruncatedNormal(Initializer):
    """Normal(mean, stddev) with values beyond two standard deviations redrawn."""

    mean: Annotated[float, Doc("mean")] = 0.0
    stddev: Annotated[float, Interval(ge=0), Doc("standard deviation before truncation")] = 0.05

    def draw(self, shape, rng):
        return self.mean + truncated_normal_draw(rng, shape, self.stddev)


@INITIALIZERS.register("variance_scaling")
@dataclass
class VarianceScaling(Initializer):
    """Variance ``scale / n`` where n is fan_in, fan_out or their mean (Keras' VarianceScaling).

    ``uniform`` draws on [-sqrt(3 var), sqrt(3 var)]; ``truncated_normal`` is corrected so that the
    variance after truncation is ``var``; ``normal`` is untruncated.
    """

    scale: Annotated[float, Interval(gt=0), Doc("variance multiplier")] = 1.0
    mode: Annotated[Literal["fan_in", "fan_out", "fan_avg"], Doc("what n is")] = "fan_in"
    distribution: Annotated[
        Literal["truncated_normal", "normal", "uniform"], Doc("the distribution")
    ] = "truncated_normal"

    def variance(self, shape: tuple[int, ...]) -> float:
        fan_in, fan_out = fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        return self.scale / max(1.0, n)

    def draw(self, shape, rng):
        var = self.variance(shape)
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * var)
            return rng.uniform(-limit, limit, shape)
        if self.distribution == "normal":
            return math.sqrt(var) * rng.standard_normal(shape)
        return truncated_normal_draw(rng, shape, math.sqrt(var) / _TRUNC_STD)


def _family(name: str, aliases: tuple[str, ...], scale: float, mode: str, dist: str, doc: str):
    """A named VarianceScaling setting with PyTorch's ``gain`` as its only option."""

    @dataclass
    class Named(Initializer):
        gain: Annotated[
            float, Interval(gt=0), Doc("multiplies the standard deviation (PyTorch's gain)")
        ] = 1.0

        def draw(self, shape, rng):
            return VarianceScaling(scale * self.gain**2, mode, dist).draw(shape, rng)

    Named.__doc__ = doc
    Named.__name__ = Named.__qualname__ = "".join(w.title() for w in name.split("_"))
    INITIALIZERS.register(name, aliases=aliases)(Named)
    return Named


for _args in [
    ("glorot_uniform", ("xavier_uniform",), 1.0, "fan_avg", "uniform",
     "Glorot/Xavier uniform: limit sqrt(6 / (fan_in + fan_out))."),
    ("glorot_normal", ("xavier_normal",), 1.0, "fan_avg", "truncated_normal",
     "Glorot/Xavier normal: stddev sqrt(2 / (fan_in + fan_out)), truncated at 2 stddev."),
    ("he_uniform", ("kaiming_uniform",), 2.0, "fan_in", "uniform",
     "He/Kaiming uniform: limit sqrt(6 / fan_in); for ReLU layers."),
    ("he_normal", ("kaiming_normal",), 2.0, "fan_in", "truncated_normal",
     "He/Kaiming normal: stddev sqrt(2 / fan_in), truncated at 2 stddev; for ReLU layers."),
    ("lecun_uniform", (), 1.0, "fan_in", "uniform",
     "LeCun uniform: limit sqrt(3 / fan_in)."),
    ("lecun_normal", (), 1.0, "fan_in", "truncated_normal",
     "LeCun normal: stddev sqrt(1 / fan_in), truncated at 2 stddev; for SELU layers."),
]:  # fmt: skip
    _family(*_args)


@INITIALIZERS.register("nguyen_widrow", aliases=("nw",))
@dataclass
class NguyenWidrow(Initializer):
    """Nguyen-Widrow, Encog's default: uniform draws on [-1, 1], then each unit's weights
    rescaled to the norm beta = 0.7 H^(1/N), H units reading N inputs (the layer's fans).

    Encog computes beta once per network (H: all its hidden units, N: its inputs) and
    normalises each unit's weights together with its bias weight; an nnlab initializer sees
    one kernel, so H and N are the layer's own (the same beta for the hidden layer of a
    one-hidden-layer net) and the bias comes from ``bias_initializer`` (zeros by default;
    Nguyen and Widrow draw it on [-beta, beta]). ``beta`` sets the norm outright.
    """

    beta: Annotated[
        float | None, Interval(gt=0), Doc("each unit's weight norm (null: 0.7 H^(1/N))")
    ] = None

    def norm(self, shape: tuple[int, ...]) -> float:
        fan_in, fan_out = fans(shape)
        return self.beta if self.beta is not None else 0.7 * fan_out ** (1.0 / fan_in)

    def draw(self, shape, rng):
        if len(shape) < 2:
            raise ConfigError(
                f"nguyen_widrow initializes a kernel (inputs, units), not shape {shape}; for "
                "a bias use random_uniform with minval -beta and maxval beta"
            )
        w = rng.uniform(-1.0, 1.0, shape)
        units = w.reshape(-1, shape[-1])  # (N, H): a column per unit (filter)
        norms = np.sqrt(np.einsum("ij,ij->j", units, units))
        units *= self.norm(shape) / np.where(norms > 0, norms, 1.0)
        return w


@INITIALIZERS.register("orthogonal")
@dataclass
class Orthogonal(Initializer):
    """A (semi-)orthogonal matrix from the QR decomposition of a normal draw (Saxe et al.)."""

    gain: Annotated[float, Interval(gt=0), Doc("multiplies the matrix")] = 1.0

    def draw(self, shape, rng):
        if len(shape) < 2:
            raise ConfigError(f"orthogonal needs a weight of 2 or more dimensions, not {shape}")
        rows, cols = math.prod(shape[:-1]), shape[-1]
        a = rng.standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q *= np.sign(np.diag(r))  # a uniform distribution over orthogonal matrices
        if rows < cols:
            q = q.T
        return self.gain * q.reshape(shape)
