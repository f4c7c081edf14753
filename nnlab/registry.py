"""Named components: ``register(name)`` adds one, ``resolve(spec)`` validates a config value.

A spec is a name (``"he_normal"``) or a mapping with the registry's key and parameters
(``{name: random_normal, stddev: 1}``). ``resolve`` turns either into the canonical form: the
canonical name (aliases resolved) with every parameter's default filled in; a component without
parameters resolves to its plain name. ``build`` makes the component from a resolved spec.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from nnlab.errors import ConfigError, allowed_list, did_you_mean
from nnlab.schema import Field, check_mapping, fields_of, fmt, join, mapping_schema


@dataclass
class Entry:
    name: str
    factory: Callable[..., Any]
    fields: list[Field]
    aliases: tuple[str, ...] = ()
    defaults: dict[str, Any] = field(default_factory=dict)  # overrides of the common fields
    info: dict[str, Any] = field(default_factory=dict)  # free metadata (e.g. a data set's task)

    @property
    def doc(self) -> str:
        text = inspect.getdoc(self.factory) or ""
        return text.strip().split("\n\n")[0].replace("\n", " ")


class Registry:
    """Components of one kind (``initializer``), looked up by name or alias."""

    def __init__(
        self, kind: str, key: str = "name", common: Any = None, runtime: Iterable[str] = ()
    ):
        self.kind = kind
        self.key = key
        self.common = common  # a dataclass whose fields every entry accepts too
        self.runtime = tuple(runtime)  # factory arguments that come from the program, not config
        self._entries: dict[str, Entry] = {}
        self._aliases: dict[str, str] = {}

    def register(
        self, name: str, *, aliases: Iterable[str] = (), defaults: dict | None = None, **info: Any
    ) -> Callable:
        def deco(factory: Callable) -> Callable:
            if name in self._entries or name in self._aliases:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            entry = Entry(name, factory, [], tuple(aliases), dict(defaults or {}), dict(info))
            self._entries[name] = entry
            for alias in entry.aliases:
                self._aliases[alias] = name
            return factory

        return deco

    def _fields(self, entry: Entry) -> list[Field]:
        if not entry.fields:
            own = fields_of(entry.factory, skip=self.runtime)
            common = fields_of(self.common) if self.common is not None else []
            own_names = {f.name for f in own}
            common = [
                Field(f.name, f.annotation, entry.defaults.get(f.name, f.default))
                for f in common
                if f.name not in own_names
            ]
            entry.fields = own + common
        return entry.fields

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]

    def all_names(self) -> list[str]:
        return sorted([*self._entries, *self._aliases])

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._aliases

    def get(self, name: str, path: str = "") -> Entry:
        """The entry for a name or alias; a ConfigError with a did-you-mean otherwise."""
        if isinstance(name, str):
            if name in self._entries:
                return self._entries[name]
            if name in self._aliases:
                return self._entries[self._aliases[name]]
        raise ConfigError(
            f"unknown {self.kind} {fmt(name)}.{did_you_mean(name, self.all_names())} "
            f"Allowed: {allowed_list(self.names())}",
            path,
        )

    def name_of(self, component: Any) -> str:
        """The registered name of a component built by this registry (its class name if it was
        not built from one)."""
        for entry in self._entries.values():
            if entry.factory is type(component):
                return entry.name
        return type(component).__name__

    def fields(self, name: str) -> list[Field]:
        return self._fields(self.get(name))

    def resolve(self, spec: Any, path: str = "") -> Any:
        """Validate a spec and return its canonical form (see the module docstring)."""
        if isinstance(spec, str):
            name, params, name_path = spec, {}, path
        elif isinstance(spec, dict):
            if self.key not in spec:
                raise ConfigError(
                    f"missing '{self.key}': a {self.kind} is given as a name or as a mapping "
                    f"with '{self.key}: <{self.kind}>' and its options. "
                    f"Allowed: {allowed_list(self.names())}",
                    join(path, self.key),
                )
            name = spec[self.key]
            params = {k: v for k, v in spec.items() if k != self.key}
            name_path = join(path, self.key)
        else:
            kind = "null" if spec is None else type(spec).__name__
            raise ConfigError(
                f"expected a {self.kind} name or a mapping with '{self.key}', got {fmt(spec)} "
                f"({kind}). Allowed: {allowed_list(self.names())}",
                path,
            )
        entry = self.get(name, name_path)
        fields = self._fields(entry)
        resolved = check_mapping(
            params, fields, path, owner=f"{self.kind} '{entry.name}'", post=entry.factory
        )
        common_hook = getattr(self.common, "__post_check__", None)
        if common_hook is not None:
            common_hook(resolved, path)
        if not fields and self.key == "name":
            return entry.name
        return {self.key: entry.name, **resolved}

    def split(self, resolved: Any) -> tuple[Entry, dict, dict]:
        """A resolved spec as (entry, its own parameters, the common fields)."""
        if isinstance(resolved, str):
            return self.get(resolved), {}, {}
        entry = self.get(resolved[self.key])
        own = {f.name for f in fields_of(entry.factory, skip=self.runtime)}
        params = {k: v for k, v in resolved.items() if k in own}
        common = {k: v for k, v in resolved.items() if k != self.key and k not in own}
        return entry, params, common

    def build(self, resolved: Any, **runtime: Any) -> Any:
        """Make the component of a resolved spec (``runtime`` adds program-given arguments)."""
        entry, params, _ = self.split(resolved)
        return entry.factory(**params, **runtime)

    def create(self, spec: Any, **runtime: Any) -> Any:
        """Resolve and build in one step (for programmatic use)."""
        return self.build(self.resolve(spec), **runtime)

    def json_schema(self) -> dict:
        options: list[dict] = []
        if self.key == "name":
            options.append({"enum": sorted([*self.names(), *self._aliases])})
        for entry in self.entries():
            fields = self._fields(entry)
            names = [entry.name, *entry.aliases]
            key_schema = {"enum": names}
            if entry.doc:
                key_schema["description"] = entry.doc
            options.append(mapping_schema(fields, extra={self.key: key_schema}))
            options[-1]["required"] = [self.key, *options[-1]["required"]]
        return {"anyOf": options, "description": f"a {self.kind}"}
