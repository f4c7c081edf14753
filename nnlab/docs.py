"""The config reference, generated from the schema: ``nnlab list`` and the README's key table."""

from __future__ import annotations

import dataclasses
from typing import Any

from nnlab.registry import Registry
from nnlab.schema import Field, Ref, describe, fields_of, fmt, unwrap


def registries() -> dict[str, Registry]:
    from nnlab.data import DATASETS
    from nnlab.nn import ACTIVATIONS, INITIALIZERS, LAYERS, LOSSES, OPTIMIZERS, SCHEDULES

    return {
        "layers": LAYERS,
        "activations": ACTIVATIONS,
        "initializers": INITIALIZERS,
        "losses": LOSSES,
        "optimizers": OPTIMIZERS,
        "schedules": SCHEDULES,
        "data": DATASETS,
    }


def _default(f: Field) -> str:
    return "required" if f.required else fmt(f.default).replace("|", "\\|")


def _own_fields(registry: Registry, name: str) -> list[Field]:
    common = {f.name for f in fields_of(registry.common)} if registry.common else set()
    return [f for f in registry.fields(name) if f.name not in common]


def describe_registry(title: str, registry: Registry) -> str:
    """Plain-text listing of a registry for the terminal."""
    lines = [f"{title} ({registry.kind}, key '{registry.key}'):"]
    for entry in registry.entries():
        alias = f" (also: {', '.join(entry.aliases)})" if entry.aliases else ""
        lines.append(f"  {entry.name}{alias}: {entry.doc}")
        for f in _own_fields(registry, entry.name):
            lines.append(f"      {f.name} = {_default(f)}  [{describe(f.annotation)}]  {f.doc}")
    if registry.common is not None:
        lines.append(f"  every {registry.kind} also takes:")
        for f in fields_of(registry.common):
            lines.append(f"      {f.name} = {_default(f)}  [{describe(f.annotation)}]  {f.doc}")
    return "\n".join(lines) + "\n"


def _rows(fields: list[Field], prefix: str) -> list[str]:
    rows = []
    for f in fields:
        key = f"{prefix}{f.name}"
        base, meta = unwrap(f.annotation)
        ref = next((m for m in meta if isinstance(m, Ref)), None)
        what = describe(f.annotation).replace("|", "\\|")
        if ref is not None:
            what = f"{'an' if ref.registry.kind[0] in 'aeiou' else 'a'} {ref.registry.kind} (below)"
        rows.append(f"| `{key}` | {what} | `{_default(f)}` | {f.doc} |")
        inner = _section_type(base)
        if inner is not None:
            rows += _rows(fields_of(inner), f"{key}.")
    return rows


def _section_type(ann: Any) -> Any:
    if dataclasses.is_dataclass(ann):
        return ann
    for arg in getattr(ann, "__args__", ()) or ():
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def _shared_fields(registry: Registry) -> dict[str, Field]:
    """Fields every entry of a registry has (with the most common default), e.g. ``lr``."""
    entries = registry.entries()
    if len(entries) < 3:
        return {}
    per = [{f.name: f for f in _own_fields(registry, e.name)} for e in entries]
    names = set.intersection(*(set(p) for p in per))
    shared = {}
    for name in sorted(names, key=lambda n: list(per[0]).index(n)):
        defaults = [fmt(p[name].default) for p in per]
        common = max(defaults, key=defaults.count)  # on a tie the first entry's (not set order)
        shared[name] = next(p[name] for p in per if fmt(p[name].default) == common)
    return shared


def _option_list(fields: list[Field]) -> str:
    return "; ".join(
        f"`{f.name}` = `{_default(f)}` ({describe(f.annotation).replace('|', '/')}): {f.doc}"
        for f in fields
    )


def reference_markdown() -> str:
    """Every key of the spec with its default and allowed values, as Markdown."""
    from nnlab.config import Config

    out = ["| key | value | default | meaning |", "| --- | --- | --- | --- |"]
    out += _rows(fields_of(Config), "")
    for title, registry in registries().items():
        out += ["", f"#### {title} (`{registry.key}:`)", ""]
        shared = _shared_fields(registry)
        common = fields_of(registry.common) if registry.common is not None else []
        if shared or common:
            out += [
                f"Every {registry.kind} takes:",
                "",
                "| key | value | default | meaning |",
                "| --- | --- | --- | --- |",
            ]
            out += _rows(list(shared.values()) + common, "")
            out.append("")
        for entry in registry.entries():
            alias = f" (also {', '.join(f'`{a}`' for a in entry.aliases)})" if entry.aliases else ""
            own = [
                f
                for f in _own_fields(registry, entry.name)
                if f.name not in shared or fmt(f.default) != fmt(shared[f.name].default)
            ]
            opts = _option_list(own)
            out.append(
                f"- `{entry.name}`{alias}: {entry.doc}" + (f" Options: {opts}." if opts else "")
            )
    return "\n".join(out) + "\n"


def update_readme(path: str) -> bool:
    """Rewrite the generated key reference in a README between its markers; True if changed."""
    import re
    from pathlib import Path

    p = Path(path)
    text = p.read_text(encoding="utf-8")
    pattern = re.compile(r"(<!-- keys:start[^>]*-->\n).*?(<!-- keys:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"{path}: no <!-- keys:start --> ... <!-- keys:end --> markers")
    new = pattern.sub(lambda m: m.group(1) + reference_markdown() + m.group(2), text)
    if new != text:
        p.write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":
    import sys

    changed = update_readme(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    print("README key reference " + ("updated" if changed else "already up to date"))
