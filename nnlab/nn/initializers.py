"""Weight initializers, by name: ``INITIALIZERS.create("he_normal")(shape, rng, dtype)``.

The Glorot, He and LeCun families are one ``VarianceScaling`` with different settings, as in
Keras. Random values are drawn in float64 and cast, so a float32 and a float64 run with the same
seed start from the same weights (up to rounding); the memory check counts the float64 draw.
Inside ``planning()`` nothing is drawn: a model learns what its weights will need before it
allocates any.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator
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

# while planning: the list (bytes of each weight, bytes at the peak of drawing it)
_PLAN: contextvars.ContextVar[list[tuple[int, int]] | None] = contextvars.ContextVar(
    "nnlab_initializer_plan", default=None
)


@contextlib.contextmanager
def planning() -> Iterator[list[tuple[int, int]]]:
    """Initializers called inside draw nothing: each appends (bytes of the weight, bytes at the
    peak of drawing it) to the list yielded and returns a stand-in of the weight's shape and
    dtype whose entries share one element (no memory, no random numbers used)."""
    plan: list[tuple[int, int]] = []
    token = _PLAN.set(plan)
    try:
        yield plan
    finally:
        _PLAN.reset(token)


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of this shape, as Keras and PyTorch compute them: (inputs,
    outputs) for a dense kernel (inputs, outputs); for a convolution kernel (kh, kw, in
    channels, filters), the receptive field kh * kw times the input channels and times the
    filters (PyTorch holds the same kernel as (filters, in channels, kh, kw) and gets the same
    numbers); a vector's length for both."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def truncated_normal_draw(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> Array:
    """Normal(0, std) redrawn where it falls outside two standard deviations (float64)."""
    x = rng.standard_normal(shape)
    bad = _outside(x)
    while bad.any():
        x[bad] = rng.standard_normal(int(bad.sum()))
        bad = _outside(x)
    x *= std
    return x


# bytes per entry beside a truncated normal draw: two boolean masks, and the redrawn values
# (4.6% of the entries) with their indices
_TRUNC_MASKS = 3


def _outside(x: Array) -> Array:
    """``|x| > 2`` without a float copy of x."""
    bad = x > 2.0
    bad |= x < -2.0
    return bad


class Initializer:
    """``init(shape, rng, dtype)`` returns a new array of that shape."""

    #: float64 arrays of the weight's size alive at once while it is drawn, and bytes per entry
    #: of masks beside them: with the result, what the memory check counts
    draws = 1
    mask_bytes = 0

    def draw(self, shape: tuple[int, ...], rng: np.random.Generator) -> Array:
        """The values in float64 (the array returned may be reused)."""
        raise NotImplementedError

    def make(self, shape: tuple[int, ...], rng: np.random.Generator, dtype: np.dtype) -> Array:
        """The weight in ``dtype``."""
        return np.asarray(self.draw(shape, rng), dtype=dtype).reshape(shape)

    def peak_bytes(self, shape: tuple[int, ...], dtype: np.dtype) -> int:
        """The memory ``make`` takes at its peak: the float64 draws, masks and the result (which
        is the last float64 draw when ``dtype`` is float64)."""
        cast = 0 if self.draws and dtype == np.float64 else dtype.itemsize
        return math.prod(shape) * (8 * self.draws + self.mask_bytes + cast)

    def __call__(self, shape: tuple[int, ...], rng: np.random.Generator, dtype=np.float32) -> Array:
        shape, dtype = tuple(shape), np.dtype(dtype)
        plan = _PLAN.get()
        if plan is not None:
            plan.append((math.prod(shape) * dtype.itemsize, self.peak_bytes(shape, dtype)))
            return np.lib.stride_tricks.as_strided(np.zeros(1, dtype), shape, (0,) * len(shape))
        check_fits(self.peak_bytes(shape, dtype), f"a weight of shape {shape}")
        with np.errstate(over="ignore"):  # a value beyond float32's range becomes inf
            return self.make(shape, rng, dtype)


@INITIALIZERS.register("zeros", aliases=("zero",))
@dataclass
class Zeros(Initializer):
    """All zeros. Every unit of a layer then computes the same thing: symmetry never breaks."""

    draws = 0

    def make(self, shape, rng, dtype):
        return np.zeros(shape, dtype)


@INITIALIZERS.register("ones", aliases=("one",))
@dataclass
class Ones(Initializer):
    """All ones."""

    draws = 0

    def make(self, shape, rng, dtype):
        return np.ones(shape, dtype)


@INITIALIZERS.register("constant")
@dataclass
class Constant(Initializer):
    """A given value: a number for every entry, or a list (of lists) broadcast to the shape."""

    value: Annotated[
        float | list[float] | list[list[float]],
        Doc(
            "the value; a list sets each entry (shape (inputs, units) for a dense kernel, "
            "(kh, kw, in channels, filters) for a convolution's)"
        ),
    ] = 0.0
    draws = 0

    def make(self, shape, rng, dtype):
        value = np.asarray(self.value, dtype=np.float64)
        try:
            return np.broadcast_to(value.astype(dtype), shape).copy()
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
        x = rng.standard_normal(shape)
        x *= self.stddev
        x += self.mean
        return x


@INITIALIZERS.register("truncated_normal")
@dataclass
class TruncatedNormal(Initializer):
    """Normal(mean, stddev) with values beyond two standard deviations redrawn."""

    mean: Annotated[float, Doc("mean")] = 0.0
    stddev: Annotated[float, Interval(ge=0), Doc("standard deviation before truncation")] = 0.05
    mask_bytes = _TRUNC_MASKS

    def draw(self, shape, rng):
        x = truncated_normal_draw(rng, shape, self.stddev)
        x += self.mean
        return x


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

    @property
    def mask_bytes(self) -> int:
        return _TRUNC_MASKS if self.distribution == "truncated_normal" else 0

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
            x = rng.standard_normal(shape)
            x *= math.sqrt(var)
            return x
        return truncated_normal_draw(rng, shape, math.sqrt(var) / _TRUNC_STD)


def _family(name: str, aliases: tuple[str, ...], scale: float, mode: str, dist: str, doc: str):
    """A named VarianceScaling setting with PyTorch's ``gain`` as its only option."""

    @dataclass
    class Named(Initializer):
        gain: Annotated[
            float, Interval(gt=0), Doc("multiplies the standard deviation (PyTorch's gain)")
        ] = 1.0
        mask_bytes = _TRUNC_MASKS if dist == "truncated_normal" else 0

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
        scale = np.sqrt(np.einsum("ij,ij->j", units, units))  # (H,) each unit's norm
        scale[scale == 0] = 1.0
        np.divide(self.norm(shape), scale, out=scale)
        units *= scale
        return w

    def peak_bytes(self, shape, dtype):
        # the per-unit norms and their mask, and einsum's buffers (8192 values)
        return super().peak_bytes(shape, dtype) + 9 * shape[-1] + 8 * 8192


@INITIALIZERS.register("orthogonal")
@dataclass
class Orthogonal(Initializer):
    """A (semi-)orthogonal matrix from the QR decomposition of a normal draw (Saxe et al.)."""

    gain: Annotated[float, Interval(gt=0), Doc("multiplies the matrix")] = 1.0
    draws = 5  # the draw, LAPACK's copy of it, q, r and a temporary of triu

    def draw(self, shape, rng):
        if len(shape) < 2:
            raise ConfigError(f"orthogonal needs a weight of 2 or more dimensions, not {shape}")
        rows, cols = math.prod(shape[:-1]), shape[-1]
        a = rng.standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        del a
        q *= np.sign(np.diag(r))  # a uniform distribution over orthogonal matrices
        if rows < cols:
            q = q.T
        q = q.reshape(shape)
        q *= self.gain
        return q
