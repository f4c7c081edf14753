"""The YAML spec: its schema, loading, ``--set`` overrides and validation with key paths.

``load_config(path, overrides)`` returns the resolved config: a plain dict with every default
filled in and every component in canonical form, which is what a run saves and what a trial's
identity is hashed from.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from nnlab.data import DATASETS
from nnlab.errors import ConfigError
from nnlab.nn import LAYERS, LOSSES, OPTIMIZERS
from nnlab.schema import Doc, Interval, Ref, check, fields_of, json_schema, mapping_schema


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
        Doc("BLAS threads (null: all cores for large products, 1 for small ones; see threads.py)"),
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


# ---------------------------------------------------------------- YAML


class _Loader(yaml.SafeLoader):
    """Safe YAML with YAML 1.2 floats (``1e-3`` is a number) and no duplicate keys."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                raise yaml.constructor.ConstructorError(
                    None, None, f"a key must be a plain value, got {key!r}", key_node.start_mark
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = " ".join(p for p in (e.context, e.problem) if p)
        raise ConfigError(f"YAML syntax error at {where}{problem}", source=source) from None
    except yaml.reader.ReaderError as e:
        char = chr(e.character) if isinstance(e.character, int) else e.character
        raise ConfigError(
            f"YAML error at character {e.position + 1}: {e.reason} {char!r} (remove it)",
            source=source,
        ) from None
    except (yaml.YAMLError, ValueError, TypeError) as e:
        # a constructor's own error (``!!float abc``) is a ValueError
        raise ConfigError(f"YAML error: {' '.join(str(e).split())}", source=source) from None


class _Dumper(yaml.SafeDumper):
    pass


def _flow(items: Any) -> bool:
    """Small mappings and lists of scalars read best on one line."""
    return all(not isinstance(v, dict | list) for v in items) and len(repr(items)) <= 72


def _represent_dict(dumper, data):
    flow = bool(data) and _flow(data.values()) and len(repr(data)) <= 72
    return dumper.represent_mapping("tag:yaml.org,2002:map", data, flow_style=flow)


def _represent_list(dumper, data):
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=_flow(data))


_Dumper.add_representer(dict, _represent_dict)
_Dumper.add_representer(list, _represent_list)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)


# ---------------------------------------------------------------- overrides

_SEGMENT = re.compile(r"([^.\[\]]+)|\[(-?\d+)\]")


def split_key(key: str) -> list[str | int]:
    """``model.layers.0.units`` or ``model.layers[0].units`` -> ['model', 'layers', 0, 'units']."""
    parts: list[str | int] = []
    pos = 0
    if not key.isprintable():
        raise ConfigError(f"cannot read the key path {key!r}", source="--set")
    for m in _SEGMENT.finditer(key):
        if m.start() != pos and key[pos : m.start()] != ".":
            raise ConfigError(f"cannot read the key path {key!r}", source="--set")
        pos = m.end()
        if m.group(2) is not None:
            parts.append(int(m.group(2)))
        else:
            seg = m.group(1)
            parts.append(int(seg) if re.fullmatch(r"-?\d+", seg) else seg)
    if not parts or pos != len(key):
        raise ConfigError(f"cannot read the key path {key!r}", source="--set")
    return parts


def format_key(parts: list[str | int]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """``KEY=VALUE`` with VALUE parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"{text!r}: expected KEY=VALUE, e.g. optimizer.lr=0.01", source="--set")
    key, _, value = text.partition("=")
    return split_key(key.strip()), parse_yaml(value, source=f"--set {key.strip()}")


def set_path(cfg: dict, parts: list[str | int], value: Any) -> None:
    """Set a nested key, creating mappings on the way; a component given by its name alone
    becomes a mapping so that its options can be set (``--set loss.label_smoothing=0.1``)."""
    node: Any = cfg
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = format_key(parts[: depth + 1])
        if isinstance(part, int):
            if not isinstance(node, list):
                raise ConfigError(
                    f"{format_key(parts[:depth]) or 'the config'} is not a list", where, "--set"
                )
            index = part if part >= 0 else len(node) + part
            if not 0 <= index <= len(node):
                raise ConfigError(
                    f"index {part} is out of range (the list has {len(node)} items)", where, "--set"
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
                raise ConfigError(f"{format_key(parts[:depth])} is not a mapping", where, "--set")
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
        text = p.read_text(encoding="utf-8")
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


def config_hash(cfg: dict) -> str:
    """A short identity of a resolved config (its name and description left out)."""
    body = {k: v for k, v in cfg.items() if k not in ("name", "description")}
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
