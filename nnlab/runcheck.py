"""What the files of a run folder must hold, checked as they are read.

A file edited by hand, cut short by a full disk or damaged on the way is refused with one line
naming it (a ``RunError``) before anything uses it: a summary whose fields have the wrong
types, a model whose architecture or parameters are not what it says, a checkpoint whose state
does not fit the run. ``nnlab.runs``, the owner of the run folder, reads the files and calls
these checks; they know the shapes of the contents, not the files.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from nnlab.errors import ConfigError, RunError

#: the kinds of numbers a stored array may hold (floats, integers, booleans)
NUMERIC_KINDS = "fiub"


def reason(e: BaseException) -> str:
    """An exception as a short phrase on one line (a library's message may span several)."""
    if isinstance(e, KeyError):  # NumPy's: "meta is not a file in the archive"
        name = str(e.args[0]).split(" is not a file")[0] if e.args else "part"
        return f"no {name[:60]} in it"
    if isinstance(e, RecursionError):
        return "nested too deeply"
    if isinstance(e, MemoryError):
        return "it holds (or says it holds) arrays larger than the free memory"
    if isinstance(e, EOFError):
        return "cut short"
    text = " ".join(str(e).split()) or type(e).__name__
    if "allow_pickle" in text:  # NumPy's answer to a file that is not .npy or .npz
        return "not an .npz archive"
    return text if len(text) <= 160 else text[:157] + "..."


def kind(value: Any) -> str:
    """What a JSON value is, in words: ``a list``, ``null``, ``a string`` ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    words = {str: "a string", list: "a list", dict: "a mapping"}
    return words.get(type(value), type(value).__name__)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _seconds(v: Any) -> bool:
    return _number(v) and math.isfinite(v) and v >= 0


def _metrics(v: Any) -> bool:
    """A mapping of metric -> value (non-finite values are text, a missing one null)."""
    return isinstance(v, dict) and all(
        x is None or isinstance(x, str) or _number(x) for x in v.values()
    )


def _best(v: Any) -> bool:
    return isinstance(v, dict) and all(
        isinstance(b, dict) and _number(b.get("value")) and _count(b.get("epoch"))
        for b in v.values()
    )


def _mapping(v: Any) -> bool:
    return isinstance(v, dict)


def _text(v: Any) -> bool:
    return isinstance(v, str)


_FIELD_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "text": (_text, "a string"),
    "count": (_count, "a whole number >= 0"),
    "count or null": (lambda v: v is None or _count(v), "a whole number >= 0 or null"),
    "flag": (lambda v: isinstance(v, bool), "true or false"),
    "seconds": (_seconds, "a number of seconds >= 0"),
    "mapping": (_mapping, "a mapping"),
    "mapping or null": (lambda v: v is None or _mapping(v), "a mapping or null"),
    "list": (lambda v: isinstance(v, list), "a list"),
    "metrics": (_metrics, "a mapping of metric names to numbers"),
    "best": (_best, "a mapping of metric names to {value, epoch}"),
}

#: summary.json's fields that nnlab reads, and what each must be (other fields are kept as
#: they are, and a summary of an older nnlab may lack some of these)
SUMMARY_FIELDS = {
    **dict.fromkeys(
        (
            "name",
            "run",
            "config_hash",
            "config_digest",
            "host",
            "started",
            "finished",
            "error",
            "traceback",
        ),
        "text",
    ),
    **dict.fromkeys(("seed", "epochs_planned", "epochs_completed", "parameters", "pid"), "count"),
    "signal": "text",
    "threads": "count or null",
    "stopped_early": "flag",
    **dict.fromkeys(("train_seconds", "wall_seconds"), "seconds"),
    **dict.fromkeys(("data", "baselines", "versions", "early_stopping", "config"), "mapping"),
    "diverged_at": "mapping or null",
    "resumed": "list",
    **dict.fromkeys(("last", "train", "val", "test"), "metrics"),
    "best": "best",
}


def check_summary(summary: Any, path: Path, statuses: tuple[str, ...]) -> dict:
    """``summary`` when it is an nnlab summary whose fields have their types; else a
    RunError naming ``path`` and the first field that is wrong."""
    if not isinstance(summary, dict):
        raise RunError(f"{path}: damaged (it holds {kind(summary)}, not an nnlab summary)")
    status = summary.get("status")
    if status not in statuses:
        got = repr(status) if isinstance(status, str) else kind(status)
        raise RunError(f"{path}: damaged (status is {got[:40]}, not one of {', '.join(statuses)})")
    for key, value in summary.items():
        field = SUMMARY_FIELDS.get(key) or ("mapping" if key.endswith("_groups") else None)
        if field is None:
            continue
        ok, what = _FIELD_KINDS[field]
        if not ok(value):
            raise RunError(f"{path}: damaged ({key} is {kind(value)}, not {what})")
    return summary


# ---------------------------------------------------------------- model.npz


def _damaged(path: Path, what: str) -> RunError:
    return RunError(f"{path}: damaged ({what})")


def check_model_meta(meta: Any, path: Path) -> dict:
    """The architecture stored in a model.npz, checked as a config's model section is (the
    layers and outputs), with its input shape, dtype, task and classes; returns it with the
    model section normalised."""
    from nnlab.config import ModelSpec
    from nnlab.nn import LOSSES
    from nnlab.schema import check

    if not isinstance(meta, dict):
        raise _damaged(path, f"its architecture is {kind(meta)}, not a mapping")
    try:
        meta["model"] = check(meta.get("model"), ModelSpec, "model")
        if meta["model"]["outputs"] is None:  # one output, with the config's loss
            LOSSES.resolve(meta.get("loss"), "loss")
    except ConfigError as e:
        raise _damaged(path, f"its architecture: {e}") from None
    except RecursionError:
        raise _damaged(path, "its architecture is nested too deeply") from None
    shape = meta.get("input_shape")
    if not (isinstance(shape, list) and 1 <= len(shape) <= 8 and all(_count(n) for n in shape)):
        raise _damaged(path, f"input_shape is {kind(shape)}, not a list of sizes")
    if 0 in shape:
        raise _damaged(path, "input_shape has a size 0")
    if meta.get("dtype") not in ("float32", "float64"):
        raise _damaged(path, "dtype is neither float32 nor float64")
    _check_classes(meta, path)
    _check_extras(meta, path)
    return meta


def _check_extras(meta: dict, path: Path) -> None:
    """The decision threshold, the label columns (a conditional model's inputs end with the
    one-hot label) and the image shape a model may store."""
    threshold, labels, image = (meta.get(k) for k in ("threshold", "label_columns", "image_shape"))
    if threshold is not None and not (_number(threshold) and math.isfinite(threshold)):
        raise _damaged(path, f"threshold is {kind(threshold)}, not a number")
    width = math.prod(meta["input_shape"])
    if labels is not None and not (
        _count(labels) and labels < width and labels in (0, meta.get("n_classes"))
    ):
        raise _damaged(path, "label_columns is not 0 or the number of classes")
    if image is not None and not (
        isinstance(image, list)
        and all(_count(n) for n in image)
        and math.prod(image) == width - (labels or 0)
    ):
        raise _damaged(path, "image_shape does not fit the inputs")


def _check_classes(meta: dict, path: Path) -> None:
    task, n, names = meta.get("task"), meta.get("n_classes"), meta.get("class_names")
    if task not in ("classification", "regression"):
        raise _damaged(path, "task is neither classification nor regression")
    if names is not None and not (isinstance(names, list) and len(names) == n):
        raise _damaged(path, "class_names is not a list of n_classes names")
    if task == "classification" and not (_count(n) and n >= 1):
        raise _damaged(path, f"n_classes is {kind(n)}, not a number of classes")


def check_arrays(arrays: dict[str, np.ndarray], path: Path, finite: bool = False) -> None:
    """Every stored array holds numbers (and, with ``finite``, finite ones)."""
    for name, a in arrays.items():
        if a.dtype.kind not in NUMERIC_KINDS:
            raise _damaged(path, f"{name} holds {a.dtype} values, not numbers")
        if finite and a.dtype.kind == "f" and not np.isfinite(a).all():
            raise _damaged(path, f"{name} holds NaN or infinite values")


def check_input_scaling(meta: dict, path: Path) -> None:
    """shift and scale: numbers, one for all inputs or one per input, scale never 0."""
    shape = tuple(meta["input_shape"])
    for key in ("shift", "scale"):
        a = np.asarray(meta[key])
        check_arrays({f"input/{key}": a}, path, finite=True)
        if a.shape not in ((), shape):
            raise _damaged(path, f"input/{key} has shape {a.shape}, not () or {shape}")
    if not np.all(np.asarray(meta["scale"]) != 0):
        raise _damaged(path, "input/scale holds a 0")


def check_heads(model: Any, meta: dict, path: Path) -> None:
    """Each output trained on the labels of a classification has a unit per class (or one,
    for two classes)."""
    if meta["task"] != "classification":
        return
    outputs = meta["model"].get("outputs") or [{"target": "labels"}]
    for k, spec in enumerate(outputs):
        shape = model.output_shapes[k]
        if spec.get("target", "labels") != "labels" or len(shape) != 1:
            continue
        units, n = shape[0], meta["n_classes"]
        if units != n and not (units == 1 and n == 2):
            raise _damaged(path, f"output {k} has {units} units for {n} classes")


# ---------------------------------------------------------------- checkpoint.npz


def check_checkpoint(arrays: dict[str, np.ndarray], meta: Any, path: Path) -> None:
    """What every checkpoint holds: a mapping with a count of epochs, weights of numbers."""
    if not isinstance(meta, dict):
        raise _damaged(path, f"its state is {kind(meta)}, not a mapping")
    if "epoch" not in meta:
        raise _damaged(path, "no epoch in its state")
    if not _count(meta["epoch"]):
        got = f"{kind(meta['epoch'])} {meta['epoch']!r:.20}"
        raise _damaged(path, f"epoch is {got}, not a whole number >= 0")
    if "theta" not in arrays:
        raise _damaged(path, "no weights (theta) in it")
    check_arrays(arrays, path)
    _check_tally(meta, path)
    es = meta.get("early_stopping")
    for key, ok, what in _EARLY_STOPPING if isinstance(es, dict) else ():
        if key in es and not ok(es[key]):
            raise _damaged(path, f"early_stopping.{key} is {kind(es[key])}, not {what}")


def _check_tally(meta: dict, path: Path) -> None:
    """The best and the last of every epoch's metrics a checkpoint keeps (``training.log_every``
    may leave them out of metrics.csv): the last is the checkpoint's epoch's row."""
    best, last = meta.get("best"), meta.get("last")
    if best is not None and not _best(best):
        raise _damaged(path, f"best is {kind(best)}, not {_FIELD_KINDS['best'][1]}")
    if last is not None and not (_metrics(last) and last.get("epoch") == meta["epoch"]):
        raise _damaged(path, f"last is not the metrics of epoch {meta['epoch']}")


_EARLY_STOPPING = (
    ("wait", _count, "a whole number >= 0"),
    ("best", lambda v: v is None or (_number(v) and math.isfinite(v)), "a number or null"),
    ("epoch", lambda v: v is None or _count(v), "a whole number >= 0 or null"),
)


# the arrays early stopping keeps at the best epoch, and those they are copies of
_BEST = {"best_theta": "theta", "best_buffers": "buffers"}


def check_state(
    fresh: tuple[dict[str, np.ndarray], dict], saved: tuple[dict[str, np.ndarray], dict], path: Path
) -> None:
    """A checkpoint's ``saved`` state fits the training state a fresh run of its config has
    (``fresh``, from ``Trainer.state()``): the same arrays with the same shapes (the best
    weights, when kept, the shape of the weights), and the values of its other fields of the
    same types. A field the checkpoint lacks (one of an older nnlab) is left to the loader."""
    arrays, fresh_arrays = saved[0], fresh[0]
    for name, a in arrays.items():
        like = fresh_arrays.get(_BEST.get(name, name))
        if like is None:
            raise _damaged(path, f"{name} is not part of this run's training state")
        if a.shape != like.shape:
            raise _damaged(path, f"{name} has shape {a.shape}; this run's is {like.shape}")
    # a checkpoint of an nnlab before buffers (running averages) has none, as its model
    old = {"buffers"} if fresh_arrays.get("buffers", np.empty(1)).size == 0 else set()
    missing = sorted(set(fresh_arrays) - set(arrays) - old)
    if "best_theta" in arrays and not old:  # the best weights come with their buffers
        missing += [] if "best_buffers" in arrays else ["best_buffers"]
    if "best_buffers" in arrays and "best_theta" not in arrays:
        missing.append("best_theta")
    if missing:
        raise _damaged(path, f"no {missing[0]} in it")
    _same_types(fresh[1], saved[1], path, "")


def _same_types(fresh: Any, saved: Any, path: Path, key: str) -> None:
    """``saved`` has the types ``fresh`` has, field by field (None in ``fresh``: anything)."""
    if fresh is None:
        return
    if isinstance(fresh, dict):
        if not isinstance(saved, dict):
            raise _damaged(path, f"{key or 'its state'} is {kind(saved)}, not a mapping")
        for k, v in fresh.items():
            if k in saved:
                _same_types(v, saved[k], path, f"{key}.{k}" if key else str(k))
        return
    if isinstance(fresh, bool):
        ok = isinstance(saved, bool)
    elif isinstance(fresh, int):
        ok = isinstance(saved, int) and not isinstance(saved, bool)
    elif isinstance(fresh, float):
        ok = _number(saved)
    else:
        ok = isinstance(saved, type(fresh))
    if not ok:
        raise _damaged(path, f"{key} is {kind(saved)}, not {kind(fresh)}")
