"""The recurrence of a user's LSTM question, as a data set of windows and next values."""

from __future__ import annotations

from typing import Annotated

import numpy as np

from nnlab.data.base import DATASETS, Raw
from nnlab.memory import check_fits
from nnlab.schema import Doc, Interval


@DATASETS.register("sequence", defaults={"test_split": 0.2})
def sequence(
    n_samples: Annotated[int, Interval(ge=10), Doc("number of windows")] = 4000,
    length: Annotated[int, Interval(ge=1), Doc("elements per window (time steps)")] = 10,
    threshold: Annotated[float, Doc("below it the next element is the previous + step")] = 10.0,
    step: Annotated[float, Doc("what is added below the threshold")] = 1.0,
    start_low: Annotated[float, Doc("the first element is uniform on [start_low, start_high)")] = (
        -1.0
    ),
    start_high: Annotated[float, Doc("see start_low")] = 12.0,
    rng: np.random.Generator | None = None,
) -> Raw:
    """Windows of the recurrence x' = x + 1 while x < 10, else sin(x); the target is the element
    after the window. Samples whose last element is >= 10 (the sin steps) form the group
    ``sin``, the others ``plus_one``: their errors are reported separately."""
    rng = rng if rng is not None else np.random.default_rng(0)
    check_fits(
        n_samples * (length + 1) * 8 * 3, f"{n_samples:,} windows of {length}", "data.n_samples"
    )
    seq = np.empty((n_samples, length + 1))
    seq[:, 0] = rng.uniform(start_low, start_high, n_samples)
    for t in range(1, length + 1):
        prev = seq[:, t - 1]
        seq[:, t] = np.where(prev < threshold, prev + step, np.sin(prev))
    X = seq[:, :length, None]  # (samples, time, 1)
    sin = X[:, -1, 0] >= threshold
    return Raw(
        X,
        seq[:, length],
        task="regression",
        groups={"sin": sin, "plus_one": ~sin},
        description=f"x+1 / sin(x) recurrence, {n_samples} windows of {length}",
    )
