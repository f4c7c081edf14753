"""The small data sets of the questions users ask: XOR and the threshold toy."""

from __future__ import annotations

from typing import Annotated

import numpy as np

from nnlab.data.base import DATASETS, Raw
from nnlab.errors import ConfigError
from nnlab.memory import check_fits
from nnlab.schema import Doc, Interval


@DATASETS.register("xor")
def xor() -> Raw:
    """The four points of XOR: (0,0)->0, (0,1)->1, (1,0)->1, (1,1)->0."""
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
    y = np.array([0, 1, 1, 0])
    return Raw(X, y, n_classes=2, description="XOR, 4 points")


@DATASETS.register("threshold")
def threshold() -> Raw:
    """One feature, five points: x = [0, 0, 2, 2, 9], y = [0, 0, 1, 1, 0]. The threshold x > 1
    gets 4 of 5 right; the outlier at x = 9 pulls a least-squares fit away from it."""
    X = np.array([[0], [0], [2], [2], [9]], dtype=np.float64)
    y = np.array([0, 0, 1, 1, 0])
    return Raw(X, y, n_classes=2, description="threshold toy, 5 points")


@DATASETS.register("twist")
def twist(
    samples: Annotated[int, Interval(ge=1), Doc("number of points")] = 512,
    angle: Annotated[float, Doc("rotation in radians per unit of distance from the origin")] = 1.0,
) -> Raw:
    """A regression with as many outputs as inputs: points x uniform in the square [-1, 1]^2,
    targets y = x rotated by angle * |x| radians. The twist is one-to-one (|y| = |x| undoes it):
    a square network can learn it, and nnlab invert can then recover x from y."""
    check_fits(samples * 2 * 8 * 6, f"{samples:,} points", "data.samples")
    X = np.random.default_rng(2024).uniform(-1.0, 1.0, (samples, 2))  # the same points always
    with np.errstate(over="ignore"):
        theta = angle * np.hypot(X[:, 0], X[:, 1])
    if not np.isfinite(theta).all():
        raise ConfigError(f"{angle:g} is too large: the angles overflow", "data.angle")
    c, s = np.cos(theta), np.sin(theta)
    y = np.stack([c * X[:, 0] - s * X[:, 1], s * X[:, 0] + c * X[:, 1]], axis=1)
    return Raw(X, y, task="regression", description=f"twist, {samples} points in 2-D")
