"""The small data sets of the questions users ask: XOR and the threshold toy."""

from __future__ import annotations

import numpy as np

from nnlab.data.base import DATASETS, Raw


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
