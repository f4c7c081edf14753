"""The 8x8 handwritten digits (UCI ML Optical Recognition of Handwritten Digits, test part), as
scikit-learn ships them: 1797 images, 64 pixel values 0..16, 10 classes. The file is embedded."""

from __future__ import annotations

import functools
import gzip
from pathlib import Path

import numpy as np

from nnlab.data.base import DATASETS, Raw

DIGITS_FILE = Path(__file__).with_name("digits.csv.gz")


@functools.cache
def _table() -> np.ndarray:
    """The file's rows, parsed once per process (12 ms; a population of 100 seeds loads the
    data 100 times), read-only."""
    with gzip.open(DIGITS_FILE, "rb") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    table.flags.writeable = False
    return table


@DATASETS.register("digits", defaults={"scale": "unit", "test_split": 0.2})
def digits() -> Raw:
    """8x8 handwritten digits: 1797 samples, 64 features in 0..16, 10 classes (embedded)."""
    table = _table()
    X, y = table[:, :-1].astype(np.uint8), table[:, -1].copy()
    return Raw(
        X,
        y,
        n_classes=10,
        unit_scale=16.0,
        description="8x8 digits, 1797 samples",
        image_shape=(8, 8),
    )
