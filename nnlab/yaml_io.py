"""YAML in and out: every text nnlab reads is bounded while it is read, and what it writes
reads best (small mappings and lists of scalars on one line).

Config and sweep files, ``--set``, ``-g`` and ``--seeds`` values go through ``parse_yaml``: a
few hundred bytes of aliases can stand for billions of values, and nesting runs Python out of
stack, so sizes are counted while the text is composed, before anything is built from it. Real
configs stay far below the limits (the largest in configs/ has 100 values and 5 levels).
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from typing import Any

import yaml

from nnlab.errors import ConfigError
from nnlab.schema import fmt

MAX_YAML_SIZE = 2_000_000  # characters of a text, bytes of a file
MAX_YAML_VALUES = 20_000  # scalars, lists and mappings; an alias counts the values it repeats
MAX_YAML_DEPTH = 50  # lists and mappings inside each other


class _TooLarge(yaml.MarkedYAMLError):
    """A YAML text beyond the limits, found while composing it (before it is constructed)."""


class _Loader(yaml.SafeLoader):
    """Safe YAML with YAML 1.2 floats (``1e-3`` is a number), no duplicate keys and bounded size:
    values are counted while they are composed (an alias as the values of its anchor), so an
    alias bomb or a huge list is refused after ``MAX_YAML_VALUES`` values, not built."""

    def __init__(self, stream):
        super().__init__(stream)
        self.values = 0  # values composed so far, aliases expanded
        self.depth = 0  # of the node being composed
        self.deepest = 0  # the deepest level reached inside it, aliases expanded
        self.sizes: dict[str, tuple[int, int]] = {}  # anchor -> (values, levels) of its node

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self.anchors and event.anchor not in self.sizes:
                raise _TooLarge(
                    None,
                    None,
                    f"the alias *{event.anchor} is inside its own anchor (a value that "
                    "contains itself)",
                    event.start_mark,
                )
            values, levels = self.sizes.get(event.anchor, (0, 0))
            self._count(values, event.start_mark)
            self._reach(self.depth + levels, event.start_mark)
            return super().compose_node(parent, index)
        self._count(1, event.start_mark)
        before, outer = self.values, self.deepest
        self.depth += 1
        self._reach(self.depth, event.start_mark)
        self.deepest = self.depth
        node = super().compose_node(parent, index)
        if event.anchor is not None:
            self.sizes[event.anchor] = (self.values - before + 1, self.deepest - self.depth + 1)
        self.depth -= 1
        self.deepest = max(outer, self.deepest)
        return node

    def _count(self, n: int, mark) -> None:
        self.values += n
        if self.values > MAX_YAML_VALUES:
            raise _TooLarge(
                None,
                None,
                f"more than {MAX_YAML_VALUES:,} values (an alias counts as the values it "
                "repeats); a config needs far fewer",
                mark,
            )

    def _reach(self, depth: int, mark) -> None:
        self.deepest = max(self.deepest, depth)
        if depth > MAX_YAML_DEPTH:
            raise _TooLarge(
                None,
                None,
                f"nested deeper than {MAX_YAML_DEPTH} levels (lists and mappings inside each "
                "other, aliases expanded); a config needs far fewer",
                mark,
            )

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                raise yaml.constructor.ConstructorError(
                    None, None, f"a key must be a plain value, got {fmt(key)}", key_node.start_mark
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {fmt(key)}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str, source: str) -> Any:
    """One YAML document, bounded (``MAX_YAML_SIZE``, ``MAX_YAML_VALUES``, ``MAX_YAML_DEPTH``);
    any problem is a one-line ``ConfigError`` naming ``source``."""
    if len(text) > MAX_YAML_SIZE:
        raise ConfigError(
            f"{len(text):,} characters of YAML, more than the {MAX_YAML_SIZE:,} a config may have",
            source=source,
        )
    try:
        return yaml.load(text, Loader=_Loader)
    except _TooLarge as e:
        mark = e.problem_mark
        raise ConfigError(
            f"YAML at line {mark.line + 1}, column {mark.column + 1}: {e.problem}", source=source
        ) from None
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


# libyaml's emitter writes the same text 3-10x faster (every run writes its config.yaml); the
# representers below are the same for both
_FastDumper: type | None = None
if hasattr(yaml, "CSafeDumper"):

    class _CDumper(yaml.CSafeDumper):
        pass

    _FastDumper = _CDumper


def _flow(items: Any) -> bool:
    """Small mappings and lists of scalars read best on one line."""
    return all(not isinstance(v, dict | list) for v in items) and len(repr(items)) <= 72


def _represent_dict(dumper, data):
    flow = bool(data) and _flow(data.values()) and len(repr(data)) <= 72
    return dumper.represent_mapping("tag:yaml.org,2002:map", data, flow_style=flow)


def _represent_list(dumper, data):
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=_flow(data))


for _dumper in (_Dumper, _FastDumper):
    if _dumper is not None:
        _dumper.add_representer(dict, _represent_dict)
        _dumper.add_representer(list, _represent_list)


def dump_yaml(data: Any, fast: bool = True) -> str:
    """YAML text of ``data``: small mappings and lists on one line, keys in their order.
    ``fast``: with libyaml's emitter when PyYAML has it (the same text)."""
    dumper = _FastDumper if fast and _FastDumper is not None else _Dumper
    return yaml.dump(data, Dumper=dumper, sort_keys=False, width=100, allow_unicode=True)
