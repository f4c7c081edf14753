"""A small declarative schema: typed fields with constraints, checked with key paths.

Config sections and component parameters are dataclasses (or function signatures) whose
annotations say what a value may be::

    lr: Annotated[float, Interval(gt=0), Doc("learning rate")] = 0.01

``check(value, annotation, path)`` returns the value normalised (ints become floats where a float
is wanted, components are resolved to their canonical form with defaults filled in) or raises a
``ConfigError`` naming the key path, the value given and what is allowed. The same annotations
give the JSON Schema (``json_schema``) and the README's key reference.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from nnlab.errors import ConfigError, allowed_list, did_you_mean
from nnlab.files import jsonable

NoneType = type(None)


@dataclass(frozen=True)
class Interval:
    """A numeric range constraint (any bound may be left open)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def ok(self, v: float) -> bool:
        # each bound must hold, so that NaN (which compares false) is outside every interval
        return (
            (self.ge is None or v >= self.ge)
            and (self.gt is None or v > self.gt)
            and (self.le is None or v <= self.le)
            and (self.lt is None or v < self.lt)
        )

    def describe(self) -> str:
        parts = []
        for op, bound in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt)):
            if bound is not None:
                parts.append(f"{op} {bound:g}")
        return " and ".join(parts)


@dataclass(frozen=True)
class Doc:
    """A field's one-line documentation."""

    text: str


@dataclass(frozen=True)
class Ref:
    """The value names a component of ``registry`` (a name, or a mapping with its key)."""

    registry: Any  # nnlab.registry.Registry; Any to avoid an import cycle


@dataclass(frozen=True)
class Field:
    """One key of a section or a component: its annotation, default and documentation."""

    name: str
    annotation: Any
    default: Any = dataclasses.MISSING

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING

    @property
    def doc(self) -> str:
        d = _meta(self.annotation, Doc)
        return d.text if d else ""


def fmt(value: Any) -> str:
    """A value as a user wrote it in YAML."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return _short(value)


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters; only the part shown is formatted, so a
    value of a billion items costs no more than a small one."""
    out: list[str] = []
    size = 0
    for piece in _repr_pieces(value, limit):
        out.append(piece)
        size += len(piece)
        if size > limit:
            break
    text = "".join(out)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_BRACKETS = {
    list: ("[", "]"),
    tuple: ("(", ")"),
    dict: ("{", "}"),
    set: ("{", "}"),
    frozenset: ("frozenset({", "})"),
}


def _repr_pieces(value: Any, limit: int) -> Iterator[str]:
    """The pieces of ``repr(value)``, lazily (containers item by item); strings beyond
    ``limit`` characters are cut, which a caller cuts anyway."""
    brackets = _BRACKETS.get(type(value))
    if brackets is not None and value:
        yield brackets[0]
        for i, item in enumerate(value):
            if i:
                yield ", "
            yield from _repr_pieces(item, limit)
            if type(value) is dict:
                yield ": "
                yield from _repr_pieces(value[item], limit)
        yield ("," if type(value) is tuple and len(value) == 1 else "") + brackets[1]
    elif isinstance(value, str | bytes):
        yield repr(value[: limit + 1])
    else:
        try:
            yield repr(value)
        except ValueError:  # an integer beyond Python's 4300 digits
            yield f"an integer of {value.bit_length():,} bits"


def unwrap(ann: Any) -> tuple[Any, tuple]:
    """An annotation's base type and its metadata (``Interval``, ``Doc``, ``Ref``...), with
    nested ``Annotated`` layers flattened."""
    if get_origin(ann) is Annotated:
        base, *meta = get_args(ann)
        inner, more = unwrap(base)
        return inner, tuple(meta) + more
    return ann, ()


def _meta(ann: Any, kind: type) -> Any:
    for m in unwrap(ann)[1]:
        if isinstance(m, kind):
            return m
    return None


def _is_union(ann: Any) -> bool:
    return get_origin(ann) in (Union, types.UnionType)


@functools.cache
def _hints(obj: Any) -> dict[str, Any]:
    """``obj``'s annotations, evaluated once (a sweep validates thousands of configs against
    the same few classes; evaluating them each time was most of the work). Read only."""
    return typing.get_type_hints(obj, include_extras=True)


def fields_of(obj: Any, skip: tuple[str, ...] = ()) -> list[Field]:
    """The schema fields of a dataclass or of a function's keyword parameters."""
    if dataclasses.is_dataclass(obj):
        hints = _hints(obj)
        out = []
        for f in dataclasses.fields(obj):
            if not f.init or f.name.startswith("_") or f.name in skip:
                continue
            default = f.default
            if default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            out.append(Field(f.name, hints[f.name], default))
        return out
    hints = _hints(obj)
    out = []
    for p in inspect.signature(obj).parameters.values():
        if p.name in skip or p.name.startswith("_"):
            continue
        default = dataclasses.MISSING if p.default is inspect.Parameter.empty else p.default
        out.append(Field(p.name, hints.get(p.name, Any), default))
    return out


def _a(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def describe(ann: Any) -> str:
    """What a value of this annotation may be, in words."""
    base, meta = unwrap(ann)
    ref = next((m for m in meta if isinstance(m, Ref)), None)
    if ref is not None:
        reg = ref.registry
        if reg.key == "name":
            return f"{_a(reg.kind)} name, or a mapping with 'name' and options"
        return f"{_a(reg.kind)}: a mapping with '{reg.key}' and options"
    interval = next((m for m in meta if isinstance(m, Interval)), None)
    if interval is not None and _is_union(base) and NoneType in get_args(base):
        inner = [a for a in get_args(base) if a is not NoneType]
        text = " or ".join(_describe_base(a) for a in inner)
        return f"{text} {interval.describe()}, or null"
    text = _describe_base(base)
    if interval is not None:
        text += f" {interval.describe()}"
    return text


def _describe_base(ann: Any) -> str:
    if _is_union(ann):
        args = get_args(ann)
        parts = [describe(a) for a in args if a is not NoneType]
        text = " or ".join(parts)
        return text + " or null" if NoneType in args else text
    if get_origin(ann) is Literal:
        return "one of " + ", ".join(fmt(a) for a in get_args(ann))
    if get_origin(ann) is list:
        (item,) = get_args(ann) or (Any,)
        _, meta = unwrap(item)
        ref = next((m for m in meta if isinstance(m, Ref)), None)
        if ref is not None:
            return f"a list of {ref.registry.kind}s"
        return f"a list of {_plural(describe(item))}"
    if dataclasses.is_dataclass(ann):
        return "a mapping"
    return {
        int: "an integer",
        float: "a number",
        bool: "true or false",
        str: "a string",
        NoneType: "null",
        dict: "a mapping",
        Any: "any value",
    }.get(ann, getattr(ann, "__name__", str(ann)))


def _plural(text: str) -> str:
    for single, plural in (
        ("an integer", "integers"),
        ("a number", "numbers"),
        ("a string", "strings"),
        ("a list", "lists"),
    ):
        if text.startswith(single):
            return plural + text[len(single) :]
    return text


def check(value: Any, ann: Any, path: str) -> Any:
    """Validate ``value`` against ``ann`` and return it normalised; ``path`` names it in errors."""
    base, meta = unwrap(ann)
    ref = next((m for m in meta if isinstance(m, Ref)), None)
    if ref is not None:
        if value is None and _is_union(base) and NoneType in get_args(base):
            return None
        return ref.registry.resolve(value, path)
    out = _check_base(value, base, ann, path)
    if out is not None:
        for m in meta:
            if isinstance(m, Interval) and not m.ok(out):
                raise ConfigError(f"expected {describe(ann)}, got {fmt(value)}", path)
    return out


def _type_error(value: Any, ann: Any, path: str) -> ConfigError:
    kind = type(value).__name__ if value is not None else "null"
    kind = {"dict": "mapping", "list": "list", "str": "string", "bool": "boolean"}.get(kind, kind)
    return ConfigError(f"expected {describe(ann)}, got {fmt(value)} ({kind})", path)


def _check_base(value: Any, base: Any, ann: Any, path: str) -> Any:
    if base is Any:
        return value
    if _is_union(base):
        return _check_union(value, base, ann, path)
    if get_origin(base) is Literal:
        choices = get_args(base)
        if value in choices and type(value) is type(choices[choices.index(value)]):
            return value
        names = [str(c) for c in choices]
        raise ConfigError(
            f"{fmt(value)} is not allowed.{did_you_mean(value, names)} Allowed: "
            + ", ".join(fmt(c) for c in choices),
            path,
        )
    if get_origin(base) is list:
        (item,) = get_args(base) or (Any,)
        if not isinstance(value, list):
            raise _type_error(value, ann, path)
        return [check(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(base):
        return check_mapping(value, fields_of(base), path, owner=None, post=base)
    if base is float:
        return _check_float(value, ann, path)
    if base is int and isinstance(value, float) and value.is_integer():
        return int(value)
    plain = {bool: bool, int: int, str: str, dict: dict, NoneType: NoneType}
    if base in plain:
        # bool is an int in Python, but a YAML true is not a count
        if isinstance(value, base) and not (base is int and isinstance(value, bool)):
            return value
        raise _type_error(value, ann, path)
    raise TypeError(f"schema: unsupported annotation {ann!r} at {path}")  # a bug, not user error


def _check_union(value: Any, base: Any, ann: Any, path: str) -> Any:
    """The value checked against the first option of a union that accepts it."""
    args = get_args(base)
    if value is None:
        if NoneType in args:
            return None
        raise _type_error(value, ann, path)
    options = [a for a in args if a is not NoneType]
    errors = []
    for option in options:
        try:
            return check(value, option, path)
        except ConfigError as e:
            errors.append(e)
    if len(options) == 1:
        raise errors[0]
    # A structured option (mapping or list) gives a more precise message when the value had
    # that shape: report its error rather than the union's summary.
    for option, err in zip(options, errors, strict=True):
        if _shape_matches(value, option):
            raise err
    raise _type_error(value, ann, path)


def _check_float(value: Any, ann: Any, path: str) -> float:
    """A finite float from an int or float (not a boolean)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _type_error(value, ann, path)
    try:
        number = float(value)
    except OverflowError:  # an integer beyond the floats
        number = math.inf
    if not math.isfinite(number):
        raise ConfigError(
            f"expected {describe(ann)}, got {fmt(value)}: a number must be finite", path
        )
    return number


def _shape_matches(value: Any, ann: Any) -> bool:
    base, meta = unwrap(ann)
    if any(isinstance(m, Ref) for m in meta) or dataclasses.is_dataclass(base) or base is dict:
        return isinstance(value, dict)
    if get_origin(base) is list:
        return isinstance(value, list)
    return False


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def check_mapping(
    value: Any, fields: list[Field], path: str, owner: str | None, post: Any = None
) -> dict:
    """Validate a mapping against ``fields``: no unknown keys, required keys present, defaults
    filled in, in field order. ``owner`` names the thing in messages (``optimizer 'sgd'``)."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ConfigError(f"expected a mapping, got {fmt(value)}", path)
    by_name = {f.name: f for f in fields}
    for key in value:
        if key not in by_name:
            where = f" for {owner}" if owner else ""
            raise ConfigError(
                f"unknown key {fmt(key)}{where}.{did_you_mean(key, by_name)} "
                f"Allowed keys: {allowed_list(by_name)}",
                join(path, str(key)),
            )
    out = {}
    for f in fields:
        sub = join(path, f.name)
        if f.name in value:
            out[f.name] = check(value[f.name], f.annotation, sub)
        elif f.required:
            raise ConfigError(f"required key is missing ({describe(f.annotation)})", sub)
        else:
            out[f.name] = check(f.default, f.annotation, sub)
    hook = getattr(post, "__post_check__", None)
    if hook is not None:
        hook(out, path)
    return out


# ---------------------------------------------------------------- JSON Schema


def json_schema(ann: Any) -> dict:
    """The JSON Schema (draft 2020-12 subset) of an annotation."""
    base, meta = unwrap(ann)
    ref = next((m for m in meta if isinstance(m, Ref)), None)
    if ref is not None:
        out = ref.registry.json_schema()
        if _is_union(base) and NoneType in get_args(base):
            out = {"anyOf": [out, {"type": "null"}]}
        return _with_doc(out, meta)
    interval = next((m for m in meta if isinstance(m, Interval)), None)
    out = _json_base(base)
    if interval is not None:
        target = out
        if "anyOf" in out:
            target = next(s for s in out["anyOf"] if s.get("type") in ("number", "integer"))
        for key, bound in (
            ("minimum", interval.ge),
            ("exclusiveMinimum", interval.gt),
            ("maximum", interval.le),
            ("exclusiveMaximum", interval.lt),
        ):
            if bound is not None:
                target[key] = bound
    return _with_doc(out, meta)


def _with_doc(out: dict, meta: tuple) -> dict:
    doc = next((m for m in meta if isinstance(m, Doc)), None)
    if doc is not None:
        out = {**out, "description": doc.text}
    return out


def _json_base(ann: Any) -> dict:
    if _is_union(ann):
        return {"anyOf": [json_schema(a) for a in get_args(ann)]}
    if get_origin(ann) is Literal:
        return {"enum": list(get_args(ann))}
    if get_origin(ann) is list:
        (item,) = get_args(ann) or (Any,)
        return {"type": "array", "items": json_schema(item)}
    if dataclasses.is_dataclass(ann):
        return mapping_schema(fields_of(ann))
    return {
        int: {"type": "integer"},
        float: {"type": "number"},
        bool: {"type": "boolean"},
        str: {"type": "string"},
        NoneType: {"type": "null"},
        dict: {"type": "object"},
    }.get(ann, {})


def mapping_schema(fields: list[Field], extra: dict | None = None) -> dict:
    props = dict(extra or {})
    for f in fields:
        sub = json_schema(f.annotation)
        if not f.required:
            sub = {**sub, "default": jsonable(f.default)}
        props[f.name] = sub
    return {
        "type": "object",
        "properties": props,
        "required": [f.name for f in fields if f.required],
        "additionalProperties": False,
    }
