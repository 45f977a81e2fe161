"""A JSON Schema of the config, generated from the dataclasses that validate it.

`edge-daemon config schema` prints it; config/edge-daemon.schema.json is a
copy that editors read (through the ``# yaml-language-server: $schema=`` line
at the top of the YAML) for completion, documentation on hover and checks as
you type. Both come from config.SECTIONS and each field's metadata (doc,
lo/hi bounds, default) and type annotation, so they cannot drift from the
validator:

- ``bool``, ``int``, ``float``, ``str`` (non-blank), ``Literal[...]`` (an enum),
  ``Optional[X]`` (X or null), ``Union[A, B]``;
- ``list[X]`` (not empty unless its default is, no repeated scalars);
- keys declared ``required`` (entries of a list of mappings must give them);
- ``dict[str, X]`` (any keys, values X);
- a nested dataclass, alone or in a list: a mapping with exactly its keys.

Checks that relate two keys (source.retry_max >= source.retry_initial, even
camera sizes) stay in the validator; the schema describes each key alone.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, Literal, Union

from . import config as _config

DRAFT = "http://json-schema.org/draft-07/schema#"


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _plain(value: Any) -> Any:
    """A default as plain data: nested dataclasses as mappings, tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _json_default(value: Any) -> Any:
    """A default as JSON, or MISSING when it has no JSON form (then it is left out)."""
    value = _plain(value)
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return dataclasses.MISSING
    return value


def _type_schema(tp: Any, meta: dict[str, Any], default: Any) -> dict[str, Any]:
    """The schema of one annotation (and the bounds that apply to it)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Union:
        alternatives = [a for a in args if a is not type(None)]
        schemas = [_type_schema(a, meta, default) for a in alternatives]
        if type(None) in args:
            schemas.append({"type": "null"})
        return schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    if origin is Literal:
        return {"enum": list(args)}
    if origin is list:
        item = args[0] if args else Any
        if isinstance(item, type) and dataclasses.is_dataclass(item):
            # Each entry must be a whole mapping, with its required keys.
            items = section_schema(item, nullable=False, with_required=True)
        else:
            items = _type_schema(item, meta, None)
        out: dict[str, Any] = {"type": "array", "items": items}
        if meta.get("required") or not (isinstance(default, list) and not default):
            out["minItems"] = 1
        if not dataclasses.is_dataclass(item):
            out["uniqueItems"] = True
        return out
    if origin is dict:
        value = args[1] if len(args) == 2 else Any
        return {"type": "object", "additionalProperties": _type_schema(value, meta, None)}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return section_schema(tp, nullable=False)
    if tp is bool:
        return {"type": "boolean"}
    if tp in (int, float):
        out = {"type": "integer" if tp is int else "number"}
        if meta.get("lo") is not None:
            out["minimum"] = meta["lo"]
        if meta.get("hi") is not None:
            out["maximum"] = meta["hi"]
        return out
    if tp is str:
        # Non-empty and not only blanks, as the validator wants.
        return {"type": "string", "minLength": 1, "pattern": "\\S"}
    if tp is Any:
        return {}
    raise TypeError(f"config_schema: no JSON Schema for the annotation {tp!r}")


def field_schema(cls: type, f: dataclasses.Field[Any], tp: Any) -> dict[str, Any]:
    """One key: its type, bounds, default and documentation."""
    meta = dict(f.metadata)
    default = _default(f)
    out = _type_schema(tp, meta, default)
    doc = meta.get("doc")
    if doc:  # the key's own words over a nested section's docstring
        out = {"description": str(doc), **{k: v for k, v in out.items() if k != "description"}}
    # A required key's default is only a placeholder: nothing to suggest.
    if default is not dataclasses.MISSING and not meta.get("required"):
        value = _json_default(default)
        if value is not dataclasses.MISSING:
            out["default"] = value
    return out


def section_schema(
    cls: type, *, nullable: bool = True, with_required: bool = False
) -> dict[str, Any]:
    """A dataclass as a mapping with exactly its keys. A whole section may also be
    empty (null), which means every default. An entry of a list of mappings
    (``with_required``) must give the keys declared ``required``."""
    hints = typing.get_type_hints(cls)
    properties = {
        f.name: field_schema(cls, f, hints[f.name])
        for f in dataclasses.fields(cls)
        if not f.metadata.get("internal")
    }
    out: dict[str, Any] = {}
    if cls.__doc__:
        out["description"] = " ".join(cls.__doc__.split())
    out.update({"type": ["object", "null"] if nullable else "object", "properties": properties})
    required = [
        f.name for f in dataclasses.fields(cls) if f.metadata.get("required") and with_required
    ]
    if required:
        out["required"] = required
    out["additionalProperties"] = False
    return out


def config_schema() -> dict[str, Any]:
    """The whole config file's schema: config.SECTIONS, in order."""
    return {
        "$schema": DRAFT,
        "title": "edge-daemon configuration",
        "description": "edge-daemon's YAML config; generated by `edge-daemon config schema`.",
        "type": ["object", "null"],
        "properties": {name: section_schema(cls) for name, cls in _config.SECTIONS.items()},
        "additionalProperties": False,
    }


def schema_text() -> str:
    """The schema as the CLI prints it and config/edge-daemon.schema.json holds it."""
    return json.dumps(config_schema(), indent=2, ensure_ascii=False) + "\n"
