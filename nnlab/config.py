"""The YAML spec: its schema, loading, ``--set`` overrides and validation with key paths.

``load_config(path, overrides)`` returns the resolved config: a plain dict with every default
filled in and every component in canonical form, which is what a run saves and what a trial's
identity is hashed from.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

from nnlab.data import DATASETS
from nnlab.errors import ConfigError
from nnlab.nn import LAYERS, LOSSES, OPTIMIZERS
from nnlab.schema import (
    Doc,
    Interval,
    Ref,
    check,
    fields_of,
    fmt,
    json_schema,
    mapping_schema,
)
from nnlab.yaml_io import MAX_YAML_SIZE, dump_yaml, parse_yaml


@dataclass
class OutputSpec:
    layer: Annotated[str, Doc("the name of the layer whose output this is")]
    loss: Annotated[Any, Ref(LOSSES), Doc("the loss of this output")]
    weight: Annotated[float, Interval(ge=0), Doc("its weight in the total loss")] = 1.0
    target: Annotated[
        Literal["labels", "inputs", "none"],
        Doc(
            "what it is trained to give: the data's labels, its inputs (reconstruction), or "
            "nothing (a loss of the output alone: kl_divergence)"
        ),
    ] = "labels"


@dataclass
class ModelSpec:
    layers: Annotated[
        list[Annotated[Any, Ref(LAYERS)]],
        Doc("the layers from input to output; the input size comes from the data"),
    ]
    outputs: Annotated[
        list[OutputSpec] | None,
        Doc("several outputs (heads), each with its loss (null: the last layer, with `loss`)"),
    ] = None

    @staticmethod
    def __post_check__(p: dict, path: str) -> None:
        if not p["layers"]:
            raise ConfigError("a model needs at least one layer", f"{path}.layers")
        outs = p["outputs"]
        if outs is not None:
            if not outs:
                raise ConfigError("give at least one output, or null", f"{path}.outputs")
            seen = set()
            for k, o in enumerate(outs):
                if o["layer"] in seen:
                    raise ConfigError(
                        f"{o['layer']!r} is listed twice", f"{path}.outputs[{k}].layer"
                    )
                seen.add(o["layer"])


@dataclass
class EarlyStopping:
    monitor: Annotated[str, Doc("the metrics.csv column to watch")] = "val_loss"
    patience: Annotated[int, Interval(ge=1), Doc("epochs without improvement before stopping")] = 10
    min_delta: Annotated[float, Interval(ge=0), Doc("smallest change that counts")] = 0.0
    mode: Annotated[
        Literal["auto", "min", "max"], Doc("auto: max for accuracies, min otherwise")
    ] = "auto"
    restore_best: Annotated[bool, Doc("end with the weights of the best epoch")] = True


@dataclass
class PseudoLabels:
    start: Annotated[
        int,
        Interval(ge=1),
        Doc(
            "the first epoch (counted from 1, as metrics.csv) whose steps use pseudo-labels, "
            "made from the weights at the end of the epoch before"
        ),
    ] = 10
    confidence: Annotated[
        float,
        Interval(gt=0, le=1),
        Doc("an unlabelled sample gets its predicted class when its probability is >= this"),
    ] = 0.95
    weight: Annotated[
        float, Interval(gt=0), Doc("a pseudo-labelled sample's weight in the loss (labelled: 1)")
    ] = 1.0
    ramp: Annotated[
        int,
        Interval(ge=0),
        Doc("epochs over which that weight grows linearly from 0 (Lee 2013's alpha; 0: at once)"),
    ] = 0
    output: Annotated[
        str | None, Doc("the output trained on labels whose predictions are used (null: first)")
    ] = None


@dataclass
class TrainingSpec:
    epochs: Annotated[int, Interval(ge=1), Doc("passes over the training data")] = 10
    batch_size: Annotated[
        int | None, Interval(ge=1), Doc("samples per update (null: the full batch)")
    ] = 32
    shuffle: Annotated[bool, Doc("reshuffle the training data every epoch")] = True
    seed: Annotated[
        int, Interval(ge=0), Doc("seeds initialization, shuffling, dropout and the splits")
    ] = 0
    dtype: Annotated[Literal["float32", "float64"], Doc("floating-point precision")] = "float32"
    early_stopping: Annotated[
        EarlyStopping | None, Doc("stop when a metric stops improving (null: off)")
    ] = None
    threads: Annotated[
        int | None,
        Interval(ge=1),
        Doc("BLAS threads (null: 1, or the idle cores for large products; see threads.py)"),
    ] = None
    log_layers: Annotated[
        bool,
        Doc(
            "write layers.csv: per layer and epoch (0 = at initialization) the mean and std of "
            "pre-activations and activations, saturated and dead units, weight and gradient norms"
        ),
    ] = False
    pseudo_labels: Annotated[
        PseudoLabels | None,
        Doc(
            "pseudo-labelling: each epoch from `start` on, confident predictions on the "
            "training samples without a label (data.label_fraction) become their targets "
            "(null: off); metrics.csv counts them (pseudo_labels)"
        ),
    ] = None
    threshold: Annotated[
        float | Literal["tune", "accuracy", "balanced_accuracy", "f1", "mcc"] | None,
        Doc(
            "the decision threshold of a one-output binary classifier: null: the default (0.5 on "
            "a probability); a number; tune (the accuracy) or a metric to maximise "
            "(balanced_accuracy, f1, mcc), chosen after training on the validation split (the "
            "training split without one); predict and exports use it"
        ),
    ] = None
    checkpoint_seconds: Annotated[
        float,
        Interval(ge=0),
        Doc(
            "a checkpoint (for --resume) after each epoch that ends this long after the last "
            "one (0: after every epoch)"
        ),
    ] = 1.0
    log_every: Annotated[
        int,
        Interval(ge=1),
        Doc(
            "write every k-th epoch's row to metrics.csv, and the last epoch's (1: every "
            "epoch); for runs of thousands of tiny epochs. summary.json's last and best "
            "values, early stopping and resume still count every epoch"
        ),
    ] = 1


@dataclass
class Config:
    data: Annotated[Any, Ref(DATASETS), Doc("the data set and its options")]
    model: Annotated[ModelSpec, Doc("the network")]
    loss: Annotated[
        Any | None,
        Ref(LOSSES),
        Doc("the loss to minimise (a model with model.outputs gives one per output instead)"),
    ] = None
    optimizer: Annotated[Any, Ref(OPTIMIZERS), Doc("the optimizer and its options")] = "adam"
    training: Annotated[TrainingSpec, Doc("the training loop")] = field(default_factory=lambda: {})
    name: Annotated[str | None, Doc("the run's name (null: the config file's name)")] = None
    description: Annotated[str, Doc("free text: what this experiment asks")] = ""

    @staticmethod
    def __post_check__(p: dict, path: str) -> None:
        if p["model"]["outputs"] is None and p["loss"] is None:
            raise ConfigError(
                "required key is missing (a loss name, or a mapping with 'name')", "loss"
            )
        if p["model"]["outputs"] is not None and p["loss"] is not None:
            raise ConfigError(
                "a model with several outputs gives each its loss in model.outputs[i].loss; "
                "remove the top-level loss",
                "loss",
            )


# ---------------------------------------------------------------- overrides

_SEGMENT = re.compile(r"([^.\[\]]+)|\[(-?\d+)\]")
MAX_KEY_CHARS = 1000  # a key path (real ones are under 60)
MAX_KEY_PARTS = 50


def split_key(key: str) -> list[str | int]:
    """``model.layers.0.units`` or ``model.layers[0].units`` -> ['model', 'layers', 0, 'units'].

    At most ``MAX_KEY_CHARS`` characters and ``MAX_KEY_PARTS`` parts."""
    if len(key) > MAX_KEY_CHARS:
        raise ConfigError(
            f"a key path of {len(key):,} characters ({fmt(key)}), more than the "
            f"{MAX_KEY_CHARS:,} allowed",
            source="--set",
        )
    parts: list[str | int] = []
    pos = 0
    if not key.isprintable():
        raise ConfigError(f"cannot read the key path {fmt(key)}", source="--set")
    for m in _SEGMENT.finditer(key):
        if m.start() != pos and key[pos : m.start()] != ".":
            raise ConfigError(f"cannot read the key path {fmt(key)}", source="--set")
        pos = m.end()
        if m.group(2) is not None:
            parts.append(int(m.group(2)))
        else:
            seg = m.group(1)
            parts.append(int(seg) if re.fullmatch(r"-?\d+", seg) else seg)
    if not parts or pos != len(key):
        raise ConfigError(f"cannot read the key path {fmt(key)}", source="--set")
    if len(parts) > MAX_KEY_PARTS:
        raise ConfigError(
            f"a key path of {len(parts):,} parts ({fmt(key)}), more than the {MAX_KEY_PARTS} "
            "allowed",
            source="--set",
        )
    return parts


def format_key(parts: list[str | int]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """``KEY=VALUE`` with VALUE parsed as YAML."""
    if "=" not in text:
        raise ConfigError(
            f"{fmt(text)}: expected KEY=VALUE, e.g. optimizer.lr=0.01", source="--set"
        )
    key, _, value = text.partition("=")
    return split_key(key.strip()), parse_yaml(value, source=f"--set {key.strip()}")


def set_path(cfg: dict, parts: list[str | int], value: Any) -> None:
    """Set a nested key, creating mappings on the way; a component given by its name alone
    becomes a mapping so that its options can be set (``--set loss.label_smoothing=0.1``)."""
    node: Any = cfg
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(part, int):
            if not isinstance(node, list):
                _set_error(
                    f"{format_key(parts[:depth]) or 'the config'} is not a list", parts, depth
                )
            index = part if part >= 0 else len(node) + part
            if not 0 <= index <= len(node):
                _set_error(
                    f"index {part} is out of range (the list has {len(node)} items)", parts, depth
                )
            if index == len(node):  # one past the end appends
                node.append({} if not last else None)
            if last:
                node[index] = value
            else:
                node[index] = _as_mapping(
                    node[index], parent_is_layers=parts[depth - 1] == "layers"
                )
                node = node[index]
        else:
            if not isinstance(node, dict):
                _set_error(f"{format_key(parts[:depth])} is not a mapping", parts, depth)
            if last:
                node[part] = value
            else:
                child = node.get(part)
                if child is None:
                    child = [] if isinstance(parts[depth + 1], int) else {}
                elif isinstance(child, str) and not isinstance(parts[depth + 1], int):
                    child = _as_mapping(child, parent_is_layers=False)
                node[part] = child
                node = child


def _set_error(message: str, parts: list[str | int], depth: int) -> NoReturn:
    # the key path is formatted only here: formatting it at every level was quadratic
    raise ConfigError(message, format_key(parts[: depth + 1]), "--set")


def _as_mapping(node: Any, parent_is_layers: bool) -> Any:
    if isinstance(node, str):
        return {("type" if parent_is_layers else "name"): node}
    return {} if node is None else node


# ---------------------------------------------------------------- loading


def resolve(raw: Any, source: str = "config", overridden: list[str] | None = None) -> dict:
    """Validate a raw config mapping; errors name ``source`` (or ``--set`` for overridden keys)."""
    if not isinstance(raw, dict):
        raise ConfigError(
            "a config is a YAML mapping with sections data, model, loss, ...", source=source
        )
    try:
        return check(raw, Config, "")
    except ConfigError as e:
        for key in overridden or []:
            if e.path and (e.path == key or e.path.startswith((key + ".", key + "["))):
                raise e.located(source, "(from --set)") from None
        raise e.located(source) from None


def load_raw(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            "no such config file" if not p.exists() else "not a file", source=str(path)
        )
    try:
        size = p.stat().st_size
        if size > MAX_YAML_SIZE:
            raise ConfigError(
                f"the file has {size:,} bytes, more than the {MAX_YAML_SIZE:,} a config or "
                "sweep file may have; is it the file you meant?",
                source=str(path),
            )
        with p.open(encoding="utf-8") as f:
            text = f.read(MAX_YAML_SIZE + 1)  # parse_yaml refuses more (a file that grew)
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"not a text file (byte {e.start + 1} is not UTF-8); a config is a YAML file",
            source=str(path),
        ) from None
    except OSError as e:
        raise ConfigError(f"cannot read the file ({e.strerror or e})", source=str(path)) from None
    raw = parse_yaml(text, source=str(path))
    if raw is None:
        raise ConfigError("the config file is empty", source=str(path))
    return raw


def load_config(path: str | Path, overrides: list[str] = ()) -> dict:
    """Read, override and validate a config file; returns the resolved config."""
    raw = load_raw(path)
    keys = apply_overrides(raw, overrides, source=str(path))
    cfg = resolve(raw, source=str(path), overridden=keys)
    if cfg["name"] is None:
        cfg["name"] = Path(path).stem
    return cfg


def apply_overrides(raw: Any, overrides: list[str], source: str) -> list[str]:
    """Apply ``KEY=VALUE`` overrides in place; returns the key paths set."""
    keys = []
    for text in overrides:
        parts, value = parse_override(text)
        if not isinstance(raw, dict):
            raise ConfigError("a config is a YAML mapping", source=source)
        set_path(raw, parts, value)
        keys.append(format_key(parts))
    return keys


#: keys added after configs were first hashed, left out of the hash at their default value, so
#: that adding them kept the identity of every earlier config (a sweep resumes its trials)
LATER_KEYS = {("training", "log_every"): 1}


def config_hash(cfg: dict) -> str:
    """A short identity of a resolved config (its name and description left out)."""
    body = {k: v for k, v in cfg.items() if k not in ("name", "description")}
    for (section, key), default in LATER_KEYS.items():
        part = body.get(section)
        if isinstance(part, dict) and part.get(key, default) == default:
            body[section] = {k: v for k, v in part.items() if k != key}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def config_schema() -> dict:
    """The JSON Schema of a config file, for editors and ``nnlab config --schema``."""
    schema = mapping_schema(fields_of(Config))
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "nnlab experiment config"
    return schema


__all__ = [
    "Config",
    "config_hash",
    "config_schema",
    "dump_yaml",
    "json_schema",
    "load_config",
    "parse_yaml",
    "resolve",
]
