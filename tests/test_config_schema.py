"""The config's JSON Schema (edge_daemon/config_schema.py, `edge-daemon config schema`).

The shipped copy must be what the command prints, the reference config must
validate against it, and the schema must agree with the validator: every key
at its bounds and choices is accepted by both, every bad value is refused by
both. The schema is checked with a small draft-07 checker below (just the
keywords the generator writes), so no extra dependency is needed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

import pytest
import yaml

from edge_daemon.cli import main
from edge_daemon.config import SECTIONS, parse_config
from edge_daemon.config_schema import config_schema, section_schema
from edge_daemon.errors import ConfigError
from tests.helpers import REPO

REFERENCE = REPO / "config" / "edge-daemon.yaml"
SHIPPED = REPO / "config" / "edge-daemon.schema.json"

_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def errors(value: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
    """Why ``value`` breaks ``schema`` (empty: it conforms)."""
    out: list[str] = []
    known = {"$schema", "title", "description", "default", "type", "enum", "anyOf",
             "properties", "additionalProperties", "items", "minItems", "uniqueItems",
             "minimum", "maximum", "minLength", "pattern", "required"}  # fmt: skip
    assert set(schema) <= known, f"{where}: the checker does not know {set(schema) - known}"
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, n) for n in names):
            return [f"{where}: {value!r} is not {names}"]
    if "enum" in schema and not any(value == c and type(value) is type(c) for c in schema["enum"]):
        out.append(f"{where}: {value!r} not in {schema['enum']}")
    if "anyOf" in schema:
        tries = [errors(value, s, where) for s in schema["anyOf"]]
        if all(tries):
            out.append(f"{where}: matches no alternative: {tries}")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                out.append(f"{where}: missing key {key!r}")
        props = schema.get("properties", {})
        for key, item in value.items():
            if key in props:
                out += errors(item, props[key], f"{where}.{key}")
            elif schema.get("additionalProperties") is False:
                out.append(f"{where}: unknown key {key!r}")
            elif isinstance(schema.get("additionalProperties"), dict):
                out += errors(item, schema["additionalProperties"], f"{where}.{key}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            out.append(f"{where}: fewer than {schema['minItems']} items")
        if schema.get("uniqueItems") and len({json.dumps(v) for v in value}) != len(value):
            out.append(f"{where}: repeated items")
        for i, item in enumerate(value):
            out += errors(item, schema.get("items", {}), f"{where}[{i}]")
    if _is_type(value, "number"):
        if "minimum" in schema and not value >= schema["minimum"]:
            out.append(f"{where}: {value} < {schema['minimum']}")
        if "maximum" in schema and not value <= schema["maximum"]:
            out.append(f"{where}: {value} > {schema['maximum']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            out.append(f"{where}: shorter than {schema['minLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.append(f"{where}: {value!r} does not match {schema['pattern']}")
    return out


def accepted_by_validator(data: Any) -> bool:
    try:
        parse_config(yaml.safe_dump(data))
    except ConfigError:
        return False
    return True


def test_the_shipped_schema_is_what_the_command_prints(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "schema"]) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed) == config_schema()
    assert SHIPPED.read_text() == printed, (
        "config/edge-daemon.schema.json is stale: "
        "edge-daemon config schema > config/edge-daemon.schema.json"
    )


def test_the_reference_config_points_editors_at_the_schema() -> None:
    first = REFERENCE.read_text().splitlines()[0]
    match = re.fullmatch(r"# yaml-language-server: \$schema=(\S+)", first)
    assert match, first
    assert (REFERENCE.parent / match.group(1)).resolve() == SHIPPED.resolve()


def test_every_key_of_the_reference_config_validates() -> None:
    data = yaml.safe_load(REFERENCE.read_text())
    schema = json.loads(SHIPPED.read_text())
    assert errors(data, schema) == []
    # and every one of its keys is described, with the default the file shows
    for section, keys in data.items():
        for key, value in keys.items():
            prop = schema["properties"][section]["properties"][key]
            assert prop["description"], f"{section}.{key}"
            assert prop.get("default") == value, f"{section}.{key}"


def _sample(cls: type) -> Any:
    """A nested dataclass at its defaults, as YAML data (None: it has required keys)."""
    fields = [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]
    if any(f.metadata.get("required") for f in fields):
        return None
    try:
        obj = cls()
    except TypeError:
        return None
    return json.loads(json.dumps({f.name: getattr(obj, f.name) for f in fields}, default=str))


def _good_and_bad(tp: Any, meta: dict[str, Any], default: Any) -> tuple[list[Any], list[Any]]:
    """Values of one key that the validator must accept, and ones it must refuse."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Union:
        good: list[Any] = [None] if type(None) in args else []
        bad: list[Any] = [] if type(None) in args else [None]
        parts = [_good_and_bad(a, meta, default) for a in args if a is not type(None)]
        for g, _ in parts:
            good += g
        # A value one alternative refuses may be another's: keep the common refusals.
        common = [b for b in parts[0][1] if all(b in p[1] for p in parts[1:])] if parts else []
        return good, bad + common
    if origin is Literal:
        return list(args), ["no-such-choice", 3, ["x"]]
    if origin is list:
        g, b = _good_and_bad(args[0], meta, None)
        good = [g[:1], g] if g else []
        bad = [[b[0]], "not-a-list"]
        if not dataclasses.is_dataclass(args[0]):
            bad.append(g[:1] * 2)  # a repeated entry
        if default != []:
            bad.append([])
        return good, bad
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        sample = _sample(tp)
        return ([sample] if sample is not None else []), [{"no_such_key": 1}, "text", [1]]
    if origin is dict:
        g, b = _good_and_bad(args[1], meta, None)
        return [{"a": g[0]}] if g else [], [{"a": b[0]}, "text"]
    if tp is bool:
        return [True, False], ["yes please", 1, [True]]
    if tp in (int, float):
        lo, hi = meta.get("lo"), meta.get("hi")
        good = [x for x in (lo, hi) if x is not None]
        good = [int(x) if tp is int else x for x in good] or [1]
        bad = ["12", True, {"a": 1}]
        if lo is not None:
            bad.append(lo - 1)
        if hi is not None:
            bad.append(hi + 1)
        if tp is int:
            bad.append(good[0] + 0.5)
        return good, bad
    if tp is str:
        return ["some/file.tflite"], ["", "   ", 3, ["a"]]
    raise AssertionError(f"no sample values for {tp!r}; extend _good_and_bad")


CASES = [
    (section, f, typing.get_type_hints(cls)[f.name])
    for section, cls in SECTIONS.items()
    for f in dataclasses.fields(cls)
]


@pytest.mark.parametrize(("section", "f", "tp"), CASES, ids=[f"{s}.{f.name}" for s, f, _ in CASES])
def test_schema_and_validator_agree_on_each_key(
    section: str, f: dataclasses.Field[Any], tp: Any
) -> None:
    schema = config_schema()
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    good, bad = _good_and_bad(tp, dict(f.metadata), default)
    for value in good:
        data = {section: {f.name: value}}
        if not accepted_by_validator(data):
            continue  # refused by a rule across keys (e.g. retry_max >= retry_initial)
        assert errors(data, schema) == [], f"{section}.{f.name}={value!r}"
    for value in bad:
        data = {section: {f.name: value}}
        if isinstance(value, float) and math.isnan(value):
            continue
        assert not accepted_by_validator(data), f"validator took {section}.{f.name}={value!r}"
        assert errors(data, schema), f"schema took {section}.{f.name}={value!r}"


def test_unknown_keys_and_sections_are_refused_by_both() -> None:
    schema = config_schema()
    for data in ({"model": {"top_n_results": 3}}, {"modle": {}}, [1, 2]):
        assert not accepted_by_validator(data)
        assert errors(data, schema)
    # Empty sections and an empty file mean every default, for both.
    for data in ({"model": None}, None, {}):
        assert accepted_by_validator(data)
        assert errors(data, schema) == []


# Shapes that sections under way bring: a nested mapping and a list of mappings.
@dataclass(frozen=True)
class _Tls:
    """TLS to the broker."""

    ca_file: Optional[str] = field(default=None, metadata={"doc": "CA bundle"})
    insecure: bool = field(default=False, metadata={"doc": "skip verification"})


@dataclass(frozen=True)
class _Rule:
    """One rule."""

    label: str = field(default="cat", metadata={"doc": "label to watch"})
    min_score: float = field(default=0.5, metadata={"doc": "threshold", "lo": 0.0, "hi": 1.0})


@dataclass(frozen=True)
class _Section:
    """A section with nested parts."""

    tls: _Tls = field(default_factory=_Tls, metadata={"doc": "TLS settings"})
    rules: list[_Rule] = field(default_factory=list, metadata={"doc": "event rules"})
    topics: dict[str, str] = field(default_factory=dict, metadata={"doc": "per-label topics"})
    internal: Optional[str] = field(default=None, metadata={"internal": True})


def test_nested_mappings_and_lists_of_mappings_are_closed() -> None:
    schema = section_schema(_Section)
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == {"tls", "rules", "topics"}
    tls = schema["properties"]["tls"]
    assert tls["additionalProperties"] is False and tls["type"] == "object"
    assert tls["description"] == "TLS settings"
    assert tls["default"] == {"ca_file": None, "insecure": False}
    rule = schema["properties"]["rules"]["items"]
    assert rule["additionalProperties"] is False
    assert schema["properties"]["rules"]["default"] == []

    good = {
        "tls": {"ca_file": "/etc/ssl/ca.pem"},
        "rules": [{"label": "cat"}, {"label": "dog", "min_score": 0.9}],
        "topics": {"cat": "home/cat"},
    }
    assert errors(good, schema) == []
    assert errors({"rules": []}, schema) == []  # the default is an empty list
    for bad in (
        {"tls": {"ca_fle": "x"}},
        {"tls": None},
        {"rules": [{"label": "cat", "colour": "red"}]},
        {"rules": [{"min_score": 2}]},
        {"rules": {"label": "cat"}},
        {"topics": {"cat": 3}},
    ):
        assert errors(bad, schema), bad


def test_an_annotation_without_a_schema_is_named() -> None:
    @dataclass(frozen=True)
    class Odd:
        when: complex = field(default=0j, metadata={"doc": "?"})

    with pytest.raises(TypeError, match="complex"):
        section_schema(Odd)


def test_entries_of_a_list_of_mappings_need_their_required_keys() -> None:
    """Where a section has a list of mappings (events.rules), both refuse an entry
    without its required keys or with an unknown one, and take a whole one."""
    lists = [
        (section, f)
        for section, cls in SECTIONS.items()
        for f in dataclasses.fields(cls)
        if typing.get_origin(typing.get_type_hints(cls)[f.name]) is list
        and dataclasses.is_dataclass(typing.get_args(typing.get_type_hints(cls)[f.name])[0])
    ]
    if not lists:
        pytest.skip("no list of mappings in the config yet")
    schema = config_schema()
    for section, f in lists:
        item = schema["properties"][section]["properties"][f.name]["items"]
        assert item["additionalProperties"] is False
        for key in item.get("required", []):
            assert "default" not in item["properties"][key], f"{section}.{f.name}[].{key}"
    if "events" in SECTIONS:
        good = {"events": {"rules": [{"name": "cats", "labels": ["tabby"]}]}}
        assert accepted_by_validator(good)
        assert errors(good, schema) == []
        for rule in ({"labels": ["tabby"]}, {"name": "cats"}, {"name": "cats", "labels": []},
                     {"name": "cats", "labels": ["tabby"], "colour": "red"}):  # fmt: skip
            data = {"events": {"rules": [rule]}}
            assert not accepted_by_validator(data), rule
            assert errors(data, schema), rule
