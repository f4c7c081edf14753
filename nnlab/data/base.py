"""Data sets by name, and the options every data set takes (splits, subset, scaling, labels).

A data set function returns a ``Raw`` (features, targets, and an official test set if it has
one); ``load`` turns it into train/validation/test ``Split``s, fixed by the seed, scaled with
statistics of the training split only, in the wanted dtype.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Annotated, Literal

import numpy as np

from nnlab.errors import ConfigError, DataError
from nnlab.registry import Registry
from nnlab.schema import Doc, Interval

Array = np.ndarray


@dataclass
class DataOptions:
    """Keys every data set accepts besides its own."""

    validation_split: Annotated[
        float, Interval(ge=0, lt=1), Doc("fraction of the training data held out for validation")
    ] = 0.0
    test_split: Annotated[
        float, Interval(ge=0, lt=1), Doc("fraction held out as a test set (data without one)")
    ] = 0.0
    subset: Annotated[
        int | None, Interval(ge=1), Doc("train on this many samples only (null: all)")
    ] = None
    scale: Annotated[
        Literal["none", "unit", "standard", "minmax"],
        Doc(
            "input scaling: unit = divide by the data's range (16 for digits, 255 for MNIST), "
            "standard = zero mean and unit variance, minmax = [0, 1] per feature; statistics "
            "come from the training split"
        ),
    ] = "none"
    labels: Annotated[
        Literal["integer", "one_hot"], Doc("class labels as integers or one-hot rows")
    ] = "integer"
    shuffle_labels: Annotated[
        bool, Doc("permute the training labels (a noise baseline: can the net fit random labels?)")
    ] = False
    label_fraction: Annotated[
        float,
        Interval(gt=0, le=1),
        Doc("keep the labels of this fraction of the training samples (semi-supervised)"),
    ] = 1.0
    unlabelled: Annotated[
        Literal["keep", "drop"],
        Doc("training samples without a label: keep them (losses on labels ignore them) or drop"),
    ] = "keep"
    split_seed: Annotated[
        int | None,
        Interval(ge=0),
        Doc("seed of the splits, subset and label shuffle (null: training.seed)"),
    ] = None
    label_input: Annotated[
        bool,
        Doc(
            "append each sample's one-hot class label to its inputs, as the last n_classes "
            "values (a row of zeros without a label), for conditional models such as a "
            "conditional VAE (a slice layer picks it out); reconstructions leave it out"
        ),
    ] = False

    @staticmethod
    def __post_check__(p: dict, path: str) -> None:
        if p["validation_split"] + p["test_split"] >= 1.0:
            raise ConfigError(
                f"validation_split + test_split must be below 1, got "
                f"{p['validation_split']:g} + {p['test_split']:g}",
                f"{path}.validation_split",
            )


DATASETS = Registry("data set", key="name", common=DataOptions, runtime=("rng", "dtype"))


@dataclass
class Raw:
    """What a data set function returns."""

    X: Array  # (samples, features...) any numeric dtype
    y: Array  # (samples,) int labels for classification, float values for regression
    X_test: Array | None = None
    y_test: Array | None = None
    task: Literal["classification", "regression"] = "classification"
    n_classes: int | None = None
    unit_scale: float | None = None  # the data's natural range, for scale: unit
    class_names: list[str] | None = None
    description: str = ""
    # named subsets of the samples (boolean masks), reported separately: e.g. the sin steps
    groups: dict[str, Array] | None = None
    groups_test: dict[str, Array] | None = None
    image_shape: tuple[int, ...] | None = None  # (height, width) of flat image rows, e.g. (28, 28)
    source: str | None = None  # the file the data came from, named in errors


@dataclass
class Split:
    X: Array
    y: Array  # int labels (classification, integer; -1: no label), one-hot rows, or values
    groups: dict[str, Array] | None = None
    # For inputs stored as small integers (MNIST's bytes): those integers and the divisor that
    # gives X, bit for bit (X == codes / divisor in X's dtype). Training gathers its shuffled
    # batches from the integers, a quarter of the memory traffic of gathering float32 rows.
    codes: tuple[Array, float] | None = None

    def __len__(self) -> int:
        return int(self.X.shape[0])


@dataclass
class Data:
    name: str
    train: Split
    val: Split | None
    test: Split | None
    task: str
    n_classes: int | None
    input_shape: tuple[int, ...]
    shift: Array | float = 0.0  # inputs are scaled as (x - shift) / scale
    scale: Array | float = 1.0
    class_names: list[str] | None = None
    description: str = ""
    sizes: dict[str, int] = field(default_factory=dict)
    image_shape: tuple[int, ...] | None = None  # what one input row is as an image
    label_columns: int = 0  # data.label_input: the one-hot label, the inputs' last columns

    def labels(self, split: Split) -> Array | None:
        """Integer class labels of a split (for accuracy; -1 where a sample has none), or None
        for regression."""
        if self.task != "classification":
            return None
        if split.y.ndim == 1:
            return split.y
        return np.where(split.y.any(axis=1), split.y.argmax(axis=1), -1)


def _check_labels(y: Array, n_classes: int, what: str) -> None:
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DataError(f"{what}: class labels must be a 1-d array of integers, got {y.dtype}")
    bad = (y < 0) | (y >= n_classes)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(
            f"{what}: sample {i + 1} has the label {int(y[i])}, outside 0..{n_classes - 1} "
            f"({int(bad.sum())} samples do); the {n_classes} classes are numbered from 0: "
            "fix or remove those samples"
        )


def _check_finite(a: Array, what: str, kind: str) -> None:
    if a.dtype.kind not in "fc" or np.isfinite(a).all():
        return
    rows = (~np.isfinite(a)).reshape(a.shape[0], -1).any(axis=1)
    i = int(np.argmax(rows))
    raise DataError(
        f"{what}: {int(rows.sum())} samples have NaN or infinite {kind} (the first: sample "
        f"{i + 1}); fill in or remove them"
    )


def load(spec: dict, rng: np.random.Generator, dtype=np.float32) -> Data:
    """Load the data set of a resolved ``data`` section, split and scaled."""
    entry, params, opts = DATASETS.split(spec)
    wants = inspect.signature(entry.factory).parameters
    if "rng" in wants:  # generated data sets
        params = {**params, "rng": rng}
    if "dtype" in wants:  # files whose values must fit the training dtype
        params = {**params, "dtype": np.dtype(dtype)}
    raw: Raw = entry.factory(**params)
    name = entry.name
    X, y, n_classes = _checked(raw, name)
    train_idx, val_idx, test_idx = _split_indices(X.shape[0], raw, name, opts, rng)

    def part(idx: Array) -> Split:
        groups = {g: m[idx] for g, m in raw.groups.items()} if raw.groups else None
        return Split(X[idx], y[idx], groups)

    val = part(val_idx) if val_idx.size else None
    test = _test_split(raw, n_classes, name) if raw.X_test is not None else None
    if test is None and test_idx.size:
        test = part(test_idx)
    train_idx, labelled = _hidden_labels(train_idx, raw, name, opts, rng)
    train = part(train_idx)
    if opts["shuffle_labels"]:
        train.y = rng.permutation(train.y)
    if labelled is not None:
        train.y = np.where(labelled, train.y, -1)
    shift, scale = _scaler(opts["scale"], train.X, raw.unit_scale)
    splits = [s for s in (train, val, test) if s is not None]
    _finish_splits(train, splits, X.dtype, shift, scale, raw.task, n_classes, opts["labels"],
                   dtype)  # fmt: skip
    label_columns = 0
    if opts["label_input"]:
        shift, scale = _append_labels(splits, X.shape[1:], raw.task, n_classes, shift, scale)
        label_columns = n_classes
    return Data(
        name=name,
        train=train,
        val=val,
        test=test,
        task=raw.task,
        n_classes=n_classes,
        input_shape=tuple(train.X.shape[1:]),
        shift=shift,
        scale=scale,
        class_names=raw.class_names,
        description=raw.description,
        sizes={k: len(s) for k, s in (("train", train), ("val", val), ("test", test)) if s},
        image_shape=raw.image_shape,
        label_columns=label_columns,
    )


def _checked(raw: Raw, name: str) -> tuple[Array, Array, int | None]:
    """The raw inputs and targets, checked: as many of each, none empty, labels in range,
    values finite. Returns (X, y, number of classes or None)."""
    X, y = np.asarray(raw.X), np.asarray(raw.y)
    what = raw.source or f"data '{name}'"
    if X.shape[0] != y.shape[0]:
        raise DataError(f"{what}: {X.shape[0]} samples but {y.shape[0]} targets")
    if X.shape[0] == 0:
        raise DataError(f"{what}: the data set is empty")
    if raw.task == "classification":
        n_classes = raw.n_classes or int(y.max()) + 1
        _check_labels(y, n_classes, what)
    else:
        n_classes = None
        _check_finite(y, what, "targets")
    _check_finite(X, what, "inputs")
    if raw.X_test is not None:
        _check_finite(np.asarray(raw.X_test), f"{what} (test set)", "inputs")
    return X, y, n_classes


def _split_indices(
    n: int, raw: Raw, name: str, opts: dict, rng: np.random.Generator
) -> tuple[Array, Array, Array]:
    """The samples of the training, validation and test splits (and the subset)."""
    if raw.X_test is not None and opts["test_split"]:
        raise ConfigError(
            f"data '{name}' has its own test set; test_split is for data without one",
            "data.test_split",
        )
    n_test = round(opts["test_split"] * n)
    n_val = round(opts["validation_split"] * n)
    if (opts["test_split"] and n_test == 0) or (opts["validation_split"] and n_val == 0):
        raise ConfigError(
            f"data '{name}' has {n} samples: the split would be empty", "data.validation_split"
        )
    order = rng.permutation(n) if (n_test or n_val or opts["subset"]) else np.arange(n)
    test_idx, val_idx, train_idx = np.split(order, [n_test, n_test + n_val])
    if opts["subset"] is not None:
        if opts["subset"] > train_idx.size:
            raise ConfigError(
                f"subset {opts['subset']} is larger than the {train_idx.size} training samples",
                "data.subset",
            )
        train_idx = train_idx[: opts["subset"]]
    if train_idx.size == 0:
        raise ConfigError(f"no training samples left of {n}", "data.validation_split")
    return train_idx, val_idx, test_idx


def _test_split(raw: Raw, n_classes: int | None, name: str) -> Split:
    """A data set's own test set, checked."""
    what = raw.source or f"data '{name}'"
    test = Split(np.asarray(raw.X_test), np.asarray(raw.y_test), raw.groups_test)
    if raw.task == "classification":
        _check_labels(test.y, n_classes, f"{what} (test set)")
    else:
        _check_finite(test.y, f"{what} (test set)", "targets")
    return test


def _hidden_labels(
    train_idx: Array, raw: Raw, name: str, opts: dict, rng: np.random.Generator
) -> tuple[Array, Array | None]:
    """``label_fraction``: which training samples keep their label (None: all), and the
    training samples left when the unlabelled ones are dropped."""
    if (opts["label_fraction"] < 1.0 or opts["shuffle_labels"]) and raw.task != "classification":
        key = "label_fraction" if opts["label_fraction"] < 1.0 else "shuffle_labels"
        raise ConfigError(
            f"data '{name}' is a regression task: it has no labels to hide or shuffle",
            f"data.{key}",
        )
    if opts["label_fraction"] >= 1.0:
        return train_idx, None
    keep = max(1, round(opts["label_fraction"] * train_idx.size))
    labelled = np.zeros(train_idx.size, bool)
    labelled[rng.permutation(train_idx.size)[:keep]] = True
    if opts["unlabelled"] == "drop":
        return train_idx[labelled], labelled[labelled]
    return train_idx, labelled


def _finish_splits(
    train: Split,
    splits: list[Split],
    raw_dtype: np.dtype,
    shift: Array | float,
    scale: Array | float,
    task: str,
    n_classes: int | None,
    labels: str,
    dtype,
) -> None:
    """Scale every split's inputs into ``dtype`` and give its targets their final form."""
    # inputs of one byte or two, scaled by a single number, are kept as they are for batches
    compact = (
        raw_dtype.kind in "iu"
        and raw_dtype.itemsize < np.dtype(dtype).itemsize
        and np.isscalar(shift)
        and shift == 0.0
        and np.isscalar(scale)
    )
    for s in splits:
        if compact and s is train:  # (only training draws shuffled batches)
            s.codes = (s.X, float(scale))
        Xs = s.X.astype(dtype, copy=True)
        if not (np.isscalar(shift) and shift == 0.0):
            Xs -= np.asarray(shift, dtype)
        if not (np.isscalar(scale) and scale == 1.0):
            Xs /= np.asarray(scale, dtype)
        s.X = Xs
        if task == "classification":
            s.y = s.y.astype(np.int64)
            if labels == "one_hot":
                s.y = np.eye(n_classes, dtype=dtype)[s.y] * (s.y >= 0)[:, None]
        else:
            s.y = s.y.astype(dtype)


def _append_labels(
    splits: list[Split],
    feature_shape: tuple[int, ...],
    task: str,
    n_classes: int | None,
    shift: Array | float,
    scale: Array | float,
) -> tuple[Array, Array]:
    """``data.label_input``: each split's inputs get the one-hot label as n_classes more values
    (zeros where a sample has none); returns the scaling extended over them (shift 0, scale 1:
    a raw label is the label the model sees)."""
    if task != "classification":
        raise ConfigError(
            "label_input is for classification data: it appends the class label",
            "data.label_input",
        )
    if len(feature_shape) != 1:
        raise ConfigError(
            f"label_input appends the label to flat inputs; these have shape {feature_shape}",
            "data.label_input",
        )
    for s in splits:
        labels = s.y if s.y.ndim == 1 else np.where(s.y.any(axis=1), s.y.argmax(axis=1), -1)
        onehot = np.zeros((len(s), n_classes), s.X.dtype)
        rows = np.flatnonzero(labels >= 0)
        onehot[rows, labels[rows]] = 1
        s.X = np.concatenate([s.X, onehot], axis=1)
        s.codes = None  # the batches are gathered from X itself
    n = feature_shape[0]
    shift = np.concatenate(
        [np.broadcast_to(np.asarray(shift, np.float64), (n,)), np.zeros(n_classes)]
    )
    scale = np.concatenate(
        [np.broadcast_to(np.asarray(scale, np.float64), (n,)), np.ones(n_classes)]
    )
    return shift, scale


def _scaler(kind: str, X: Array, unit_scale: float | None) -> tuple[Array | float, Array | float]:
    """(shift, scale) such that (x - shift) / scale is the scaled input."""
    if kind == "none":
        return 0.0, 1.0
    if kind == "unit":
        top = unit_scale if unit_scale is not None else float(np.abs(X).max())
        return 0.0, (top if top > 0 else 1.0)
    if kind == "standard":
        mean, std = _mean_std(X)
        # a constant feature's computed std is rounding noise (1e-15 for a column of 0.1), not
        # 0: dividing by it would blow up any other value; scikit-learn's bound tells them apart
        n, eps = X.shape[0], np.finfo(np.float64).eps
        with np.errstate(over="ignore"):  # a std beyond 1e154 is not a constant's
            var = std**2
            constant = (var <= n * eps * var + (n * mean * eps) ** 2) & np.isfinite(var)
        return mean, np.where(constant, 1.0, std)
    lo, hi = X.min(axis=0).astype(np.float64), X.max(axis=0).astype(np.float64)  # minmax
    return lo, np.where(hi > lo, hi - lo, 1.0)


def _mean_std(X: Array, rows: int = 4096) -> tuple[Array, Array]:
    """Per-feature mean and standard deviation in float64, in chunks (no full float64 copy)."""
    n = X.shape[0]
    mean = np.zeros(X.shape[1:])
    for i in range(0, n, rows):
        mean += X[i : i + rows].sum(axis=0, dtype=np.float64)
    mean /= n
    var = np.zeros(X.shape[1:])
    for i in range(0, n, rows):
        d = X[i : i + rows] - mean
        var += np.einsum("i...,i...->...", d, d)
    return mean, np.sqrt(var / n)
