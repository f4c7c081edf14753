"""The config keys of runs: flattened to dotted paths, the ones that differ, their short names,
and components (an initializer with its options) shown as one text. Used by the compare table,
diff and the legends of plots."""

from __future__ import annotations

import dataclasses
import functools
import json
import typing
from collections.abc import Iterable
from typing import Any

from nnlab.config import config_hash

SEED_KEY = "training.seed"
TOP_COMPONENTS = ("data", "loss", "optimizer")  # top-level config keys that name a component


def flatten(obj: Any, prefix: str = "", out: dict[str, Any] | None = None) -> dict[str, Any]:
    """Nested config -> dotted keys (``model.layers.0.units``). A list of plain values stays
    one value (shown as text)."""
    out = {} if out is None else out
    if isinstance(obj, dict) and obj:
        for k, v in obj.items():
            flatten(v, f"{prefix}{k}.", out)
    elif isinstance(obj, list) and any(isinstance(v, dict | list) for v in obj):
        for i, v in enumerate(obj):
            flatten(v, f"{prefix}{i}.", out)
    elif isinstance(obj, list | dict):
        out[prefix[:-1]] = json.dumps(obj)
    else:
        out[prefix[:-1]] = obj
    return out


def flatten_configs(configs: list[dict]) -> list[dict[str, Any]]:
    """Flatten several configs so that their keys line up: a component given by name in one
    (``relu``) and as a mapping in another (``{name: leaky_relu, alpha: 0.1}``) is ``KEY.name``
    in both, and a top-level component (``loss``) is always ``loss.name``, apart from the
    metric ``loss``."""
    flats = [
        flatten({k: v for k, v in c.items() if k not in ("name", "description")}) for c in configs
    ]
    keys = {k for f in flats for k in f}
    out = []
    for flat in flats:
        fixed = {}
        for k, v in flat.items():
            if k in TOP_COMPONENTS and isinstance(v, str):
                k = f"{k}.name"
            for sub in ("name", "type"):
                if isinstance(v, str) and f"{k}.{sub}" in keys:
                    k = f"{k}.{sub}"
                    break
            fixed[k] = v
        out.append(fixed)
    return out


_MISSING = object()


def differing_keys(flats: list[dict[str, Any]], skip: tuple[str, ...] = ()) -> list[str]:
    """Config keys whose value is not the same in every run (a missing key counts; ``1`` and
    ``1.0`` differ, as in the YAML)."""
    order: dict[str, None] = {}
    for f in flats:
        order.update(dict.fromkeys(f))
    out = []
    for k in order:
        if k in skip:
            continue
        first = flats[0].get(k, _MISSING)
        kind = type(first)
        if any(
            (v := f.get(k, _MISSING)) is not first and (type(v) is not kind or v != first)
            for f in flats
        ):
            out.append(k)
    return out


def short_names(keys: Iterable[str], taken: Iterable[str] = ()) -> dict[str, str]:
    """The one naming rule for headers and legends: each key by its shortest dotted suffix
    that is unique among ``keys`` and is none of the names in ``taken`` (the metric and status
    columns beside it). A trailing ``.name``/``.type`` is left out (``initializer`` for
    ``model.layers.0.initializer.name``) unless a list index would end the name, and a name
    never starts with a list index: ``optimizer.lr`` -> ``lr``, ``model.layers.0.units`` ->
    ``units`` or, beside ``model.layers.1.units``, ``layers.0.units``."""
    keys, taken = list(dict.fromkeys(keys)), set(taken)
    parts = {}
    for k in keys:
        segs = k.split(".")
        if len(segs) > 1 and segs[-1] in ("name", "type") and not segs[-2].isdigit():
            segs = segs[:-1]
        parts[k] = segs
    out = {}
    for k, segs in parts.items():
        out[k] = k
        for n in range(1, len(segs) + 1):
            tail = segs[-n:]
            bare = n == 1 < len(segs) and tail[0] in ("name", "type")  # layers.1.name, not name
            if (tail[0].isdigit() or bare) and n < len(segs):
                continue
            text = ".".join(tail)
            if text not in taken and sum(p[-n:] == tail for p in parts.values()) == 1:
                out[k] = text
                break
    return out


def components(config: dict) -> dict[str, str]:
    """Each named component of a resolved config (data set, loss, optimizer, schedule,
    activation, initializer) as one text: its name and the options that differ from their
    defaults, ``random_normal(stddev=1.0)``; keyed by dotted path."""
    training = {k: v for k, v in (config.get("training") or {}).items() if k != "seed"}
    text = json.dumps({**config, "training": training}, sort_keys=True, default=str)
    return dict(_components(text))


@functools.lru_cache(maxsize=4096)  # the seeds of a sweep's config share their components
def _components(text: str) -> tuple[tuple[str, str], ...]:
    from nnlab.config import Config

    out: dict[str, str] = {}
    _walk(json.loads(text), Config, "", out)
    return tuple(out.items())


def _walk(value: Any, ann: Any, path: str, out: dict[str, str]) -> str | None:
    """The component text of ``value`` if ``ann`` names a registry; records every component
    met on the way into ``out``."""
    from nnlab.schema import Ref, fields_of, unwrap

    base, meta = unwrap(ann)
    ref = next((m for m in meta if isinstance(m, Ref)), None)
    if ref is not None:
        return _component(value, ref.registry, path, out)
    if dataclasses.is_dataclass(base) and isinstance(value, dict):
        for f in fields_of(base):
            if f.name in value:
                _walk(value[f.name], f.annotation, f"{path}.{f.name}".lstrip("."), out)
    elif typing.get_origin(base) is list and isinstance(value, list):
        (item,) = typing.get_args(base) or (Any,)
        for i, v in enumerate(value):
            _walk(v, item, f"{path}.{i}", out)
    elif typing.get_args(base) and isinstance(value, dict):  # a union: its mapping member
        for arg in typing.get_args(base):
            if dataclasses.is_dataclass(arg):
                _walk(value, arg, path, out)
    return None


def _component(value: Any, reg: Any, path: str, out: dict[str, str]) -> str | None:
    name = value.get(reg.key) if isinstance(value, dict) else value
    if not isinstance(name, str) or name not in reg:
        return None
    options = value if isinstance(value, dict) else {}
    changed = []
    for f in reg.fields(name):
        if f.name not in options:
            continue
        sub = _walk(options[f.name], f.annotation, f"{path}.{f.name}", out)
        if f.required or options[f.name] != f.default:
            changed.append(f"{f.name}={sub if sub is not None else option_text(options[f.name])}")
    text = name + (f"({', '.join(changed)})" if changed else "")
    if reg.key == "name":
        out[path] = text
    return text


def option_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return fmt_config(value)


def fmt_config(x: Any) -> str:
    """A config value as a table cell: ``-`` for none, ``true``/``false``, floats as written."""
    if x is None or (isinstance(x, float) and x != x):
        return "-"
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, float):
        return repr(x)
    return str(x)


def collapse(
    keys: list[str], comps: list[dict[str, str]], taken: Iterable[str] = ()
) -> tuple[list[str], dict[str, list]]:
    """Where a component's name differs between runs, one column for it (its text) instead of
    its name and every option: ``initializer`` = he_normal, random_normal(stddev=1.0). A
    component whose path is ``taken`` by another column (the config's ``loss`` and the metric
    ``loss``) keeps the column ``PATH.name``."""
    keys = list(keys)
    texts: dict[str, list] = {}
    taken = set(taken)
    paths = sorted({p for c in comps for p in c}, key=lambda p: p.count("."))
    for path in paths:
        if f"{path}.name" not in keys:
            continue
        inside = [k for k in keys if k == f"{path}.name" or k.startswith(f"{path}.")]
        at = keys.index(inside[0])
        keys = [k for k in keys if k not in inside]
        column = f"{path}.name" if path in taken else path
        keys.insert(at, column)
        texts[column] = [c.get(path) for c in comps]
    return keys, texts


def group_key(config: dict) -> str:
    """The identity of a config with its seed left out: the runs that differ only by seed."""
    cfg = dict(config)
    if isinstance(cfg.get("training"), dict):
        cfg["training"] = {k: v for k, v in cfg["training"].items() if k != "seed"}
    return config_hash(cfg)


def differences(
    configs: list[dict], flats: list[dict[str, Any]], skip: tuple[str, ...] = ()
) -> list[dict[str, str]]:
    """For each config, the keys that differ between them (by their short names, components
    as one text) and its values as text: ``{"initializer": "he_normal", "lr": "0.01"}``."""
    keys = differing_keys(flats, skip=skip)
    keys, texts = collapse(keys, [components(c) for c in configs])
    short = short_names(keys)
    return [
        {short[k]: fmt_short(texts[k][i] if k in texts else flat.get(k)) for k in keys}
        for i, flat in enumerate(flats)
    ]


def fmt_short(x: Any) -> str:
    """A config value for a legend: as ``fmt_config``, floats with 6 significant digits at most
    (``0.000215443`` for ``logspace``'s ``0.000215443469003``)."""
    return f"{x:.6g}" if isinstance(x, float) and x == x else fmt_config(x)
