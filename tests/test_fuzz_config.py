"""Fuzzing the config: whatever the YAML, one line naming the file and the key, never a crash.

Configs are generated from the schema itself (every section and key, with
values inside and outside their bounds and of the wrong type), then from
random YAML documents and random text. The property: ``parse_config``
either returns a Config or raises ConfigError whose message is one line,
starts with the file name, and names the key path of a bad key.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import typing
from pathlib import Path
from typing import Any, Literal, Optional, Union

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_daemon.config import (
    RULE_NAME,
    SECTIONS,
    Config,
    is_loopback,
    load_config,
    parse_config,
    parse_listen,
)
from edge_daemon.errors import ConfigError
from tests.helpers import run_cli

NAME = "config.yaml"
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MESSAGE = re.compile(r"^config\.yaml(:\d+)?: \S")


@dataclasses.dataclass(frozen=True)
class Key:
    section: str
    name: str
    type: Any
    lo: Optional[float]
    hi: Optional[float]

    @property
    def path(self) -> str:
        return f"{self.section}.{self.name}"


KEYS = [
    Key(section, f.name, typing.get_type_hints(cls)[f.name], f.metadata["lo"], f.metadata["hi"])
    for section, cls in SECTIONS.items()
    for f in dataclasses.fields(cls)
]


def _parts(tp: Any) -> tuple[bool, list[Any]]:
    """Whether None is allowed, and the other alternatives of a type."""
    if typing.get_origin(tp) is Union:
        args = typing.get_args(tp)
        return type(None) in args, [a for a in args if a is not type(None)]
    return False, [tp]


def _mapping_list(tp: Any) -> bool:
    """A list of mappings, each a dataclass (such as events.rules)."""
    return typing.get_origin(tp) is list and dataclasses.is_dataclass(typing.get_args(tp)[0])


def item_mappings(cls: Any) -> st.SearchStrategy[dict[str, Any]]:
    """Valid mappings for one item of a list of mappings: required keys and some others."""
    hints = typing.get_type_hints(cls)
    required: dict[str, st.SearchStrategy[Any]] = {}
    others: dict[str, st.SearchStrategy[Any]] = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        if f.name == "name":
            strategy: st.SearchStrategy[Any] = st.from_regex(RULE_NAME, fullmatch=True)
        elif hints[f.name] == list[str]:
            chars = st.characters(codec="utf-8", exclude_characters="\x85\u2028\u2029")
            text = st.text(chars, min_size=1).filter(str.strip)
            strategy = st.lists(text, min_size=1, max_size=3, unique=True)
        else:
            strategy = valid_values(
                Key("", f.name, hints[f.name], f.metadata["lo"], f.metadata["hi"])
            )
        (required if f.metadata.get("required") else others)[f.name] = strategy
    return st.fixed_dictionaries(required, optional=others)


def valid_values(key: Key) -> st.SearchStrategy[Any]:
    optional, alternatives = _parts(key.type)
    options: list[st.SearchStrategy[Any]] = [st.none()] if optional else []
    for tp in alternatives:
        origin = typing.get_origin(tp)
        if _mapping_list(tp):
            items = item_mappings(typing.get_args(tp)[0])
            options.append(st.lists(items, max_size=3, unique_by=lambda m: m["name"]))
        elif origin is Literal:
            options.append(st.sampled_from(typing.get_args(tp)))
        elif origin is list:
            names = typing.get_args(typing.get_args(tp)[0])
            if names:
                options.append(st.lists(st.sampled_from(names), min_size=1, unique=True))
            else:  # free strings, such as host names
                host = st.from_regex(r"[a-z][a-z0-9-]{0,15}(\.[a-z]{2,5})?", fullmatch=True)
                options.append(st.lists(host, min_size=1, max_size=3, unique=True))
        elif tp is bool:
            options.append(st.booleans())
        elif tp is int:
            lo = int(key.lo) if key.lo is not None else -(2**31)
            hi = int(key.hi) if key.hi is not None else 2**31
            options.append(st.integers(lo, hi))
        elif tp is float:
            options.append(
                st.floats(key.lo, key.hi, allow_nan=False, allow_infinity=False)
                | st.integers(math.ceil(key.lo or 0), math.floor(key.hi or 10))
            )
        elif tp is str:
            # PyYAML's emitter writes NEL and the Unicode line/paragraph separators
            # unquoted, and reads them back as line breaks: the dump would not say
            # what the test means, so they are left out of the generated text.
            chars = st.characters(codec="utf-8", exclude_characters="\x85\u2028\u2029")
            options.append(st.text(chars, min_size=1).filter(str.strip))
        elif dataclasses.is_dataclass(tp):  # a mapping of its own, such as mqtt.tls
            inner = {
                f.name: valid_values(
                    Key(key.path, f.name, typing.get_type_hints(tp)[f.name],
                        f.metadata["lo"], f.metadata["hi"])
                )
                for f in dataclasses.fields(tp)
            }  # fmt: skip
            options.append(st.fixed_dictionaries({}, optional=inner))
        else:
            raise AssertionError(f"no strategy for {key.path}: {tp}")
    return st.one_of(options)


def invalid_values(key: Key) -> st.SearchStrategy[Any]:
    """Values ``key`` must refuse."""
    optional, alternatives = _parts(key.type)
    kinds = {typing.get_origin(tp) or tp for tp in alternatives}
    nested = any(dataclasses.is_dataclass(tp) for tp in alternatives)
    options: list[st.SearchStrategy[Any]] = [
        # A mapping is the right shape for a nested section; refused there are scalars.
        st.integers() | st.text(min_size=1, max_size=5).filter(str.strip)
        if nested
        else st.dictionaries(st.text(max_size=5), st.integers(), min_size=1),
    ]
    if list not in kinds:
        options.append(st.lists(st.integers(), min_size=1, max_size=3))
    if not optional:
        options.append(st.none())
    if int in kinds or float in kinds:
        options.append(st.text(alphabet="abcxyz", min_size=1))
        options.append(st.booleans())
        if key.lo is not None:
            options.append(st.floats(max_value=key.lo, exclude_max=True, allow_nan=False))
        if key.hi is not None:
            options.append(st.floats(min_value=key.hi, exclude_min=True, allow_nan=False))
        options.append(st.just(float("nan")))
    if int in kinds:
        options.append(
            st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not x.is_integer())
        )
    if bool in kinds:
        options.append(st.integers() | st.sampled_from(["maybe", "yes please", "1"]))
    if str in kinds:
        options.append(st.integers() | st.sampled_from(["", "   "]))
    if Literal in kinds:
        choices = {
            c
            for tp in alternatives
            if typing.get_origin(tp) is Literal
            for c in typing.get_args(tp)
        }
        options.append(st.text(min_size=1, max_size=12).filter(lambda v: v not in choices))
        options.append(st.integers())
    if any(_mapping_list(tp) for tp in alternatives):
        options.append(st.integers() | st.booleans())
    elif list in kinds:
        names = [
            n
            for tp in alternatives
            if typing.get_origin(tp) is list
            for n in typing.get_args(typing.get_args(tp)[0])
        ]
        options.append(st.just([]))
        if names:
            options.append(st.sampled_from(names).map(lambda n: [n, n]))
            options.append(st.lists(st.sampled_from(["tpu", "npu", "CPU", "Gpu"]), min_size=1))
        else:
            options.append(st.lists(st.integers(), min_size=1, max_size=3))
    return st.one_of(options)


@st.composite
def valid_configs(draw: st.DrawFn) -> dict[str, dict[str, Any]]:
    chosen = draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=len(KEYS)))
    data: dict[str, dict[str, Any]] = {}
    for key in chosen:
        data.setdefault(key.section, {})[key.name] = draw(valid_values(key))
    return data


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def cross_check_error(data: dict[str, dict[str, Any]]) -> Optional[str]:
    """The key a valid-per-key config is still refused for (checks across keys)."""
    src = data.get("source", {})
    if src.get("kind") == "picamera2":
        for side in ("width", "height"):
            if src.get(side, 640 if side == "width" else 480) % 2:
                return f"source.{side}"
    mq = data.get("mqtt", {})
    device = mq.get("device")
    if device is not None and not re.fullmatch(r"[A-Za-z0-9_-]+", device):
        return "mqtt.device"
    for key in ("topic_prefix", "discovery_prefix"):
        value = mq.get(key)
        if value is not None and (
            any(c in value for c in "+#\0") or value.startswith("/") or value.endswith("/")
        ):
            return f"mqtt.{key}"
    if mq.get("password_file") is not None and mq.get("username") is None:
        return "mqtt.password_file"
    url = mq.get("configuration_url")
    if url is not None and not url.startswith(("http://", "https://")):
        return "mqtt.configuration_url"
    if mq.get("heartbeat", 60.0) < mq.get("min_interval", 0.2):
        return "mqtt.heartbeat"
    if src.get("retry_max", 30.0) < src.get("retry_initial", 0.5):
        return "source.retry_max"
    http = http_check_error(data.get("http", {}))
    if http is not None:
        return http
    region = region_check_error(data.get("preprocess", {}))
    if region is not None:
        return region
    if src.get("kind") == "picamera2":
        r = data.get("preprocess", {}).get("region")
        if isinstance(r, dict):
            w, h = src.get("width", 640), src.get("height", 480)
            x0, x1 = round(r.get("x", 0.0) * w), round((r.get("x", 0.0) + r.get("width", 1.0)) * w)
            y0, y1 = round(r.get("y", 0.0) * h), round((r.get("y", 0.0) + r.get("height", 1.0)) * h)
            if min(x1, w) - min(x0, w - 1) < 16 or min(y1, h) - min(y0, h - 1) < 16:
                return "preprocess.region"
    gate = data.get("gate", {})
    if gate.get("lighting_threshold", 0.5) <= gate.get("area_threshold", 0.005):
        return "gate.lighting_threshold"
    return None


def region_check_error(pre: dict[str, Any]) -> Optional[str]:
    """The region key refused across its keys: no area, or past the frame's edge."""
    region = pre.get("region")
    if not isinstance(region, dict):
        return None
    for side, edge in (("width", "x"), ("height", "y")):
        size = region.get(side, 1.0)
        if size <= 0.0:
            return f"preprocess.region.{side}"
        if region.get(edge, 0.0) + size > 1.0 + 1e-9:
            return "preprocess.region"
    return None


def http_check_error(h: dict[str, Any]) -> Optional[str]:
    """The http key refused across keys: an unparsable or unguarded listen, a missing secret."""
    listen = h.get("listen", "127.0.0.1:8080")
    if listen is None:
        return None
    try:
        host, _ = parse_listen(listen)
    except ValueError:
        return "http.listen"
    if h.get("auth") is None and not is_loopback(host):
        return "http.listen"
    for auth, secret in (("token", "token_file"), ("basic", "users_file")):
        if h.get("auth") == auth and h.get(secret) is None:
            return "http.auth"
    return None


def key_lines(text: str, key: Key) -> tuple[int, int]:
    """The first and last line (1-based) of ``key`` and its value in ``text``."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    assert root is not None
    section = next(v for k, v in root.value if k.value == key.section)
    key_node, value_node = next((k, v) for k, v in section.value if k.value == key.name)
    return key_node.start_mark.line + 1, value_node.end_mark.line + 1


def assert_one_line(exc: ConfigError) -> str:
    message = str(exc)
    assert "\n" not in message, message
    assert MESSAGE.match(message), message
    return message


def parse(text: str) -> Config:
    return parse_config(text, name=NAME, base=Path("/srv"))


@FUZZ
@given(valid_configs())
def test_every_valid_value_of_every_key_is_accepted(data: dict[str, dict[str, Any]]) -> None:
    bad_key = cross_check_error(data)
    if bad_key is not None:
        with pytest.raises(ConfigError) as info:
            parse(dump(data))
        assert f": {bad_key}: " in assert_one_line(info.value)
        return
    cfg = parse(dump(data))
    for section, values in data.items():
        for name, value in values.items():
            got = getattr(getattr(cfg, section), name)
            field = next(f for f in dataclasses.fields(SECTIONS[section]) if f.name == name)
            if isinstance(value, dict):  # a nested section such as mqtt.tls
                for inner in dataclasses.fields(got):
                    check_value(
                        getattr(got, inner.name), value.get(inner.name, inner.default), inner
                    )
            elif field.metadata.get("path") and isinstance(value, str):
                assert got == str(Path("/srv") / os.path.expanduser(value))
            elif isinstance(got, list) and got and dataclasses.is_dataclass(got[0]):
                assert [{k: getattr(g, k) for k in v} for g, v in zip(got, value)] == value
            else:
                check_value(got, value, field)


def check_value(got: Any, value: Any, field: dataclasses.Field[Any]) -> None:
    if field.metadata.get("path") and isinstance(value, str):
        assert got == str(Path("/srv") / os.path.expanduser(value))
    else:
        assert got == value  # 3 == 3.0 for an integer given to a float key


@FUZZ
@given(valid_configs(), st.sampled_from(KEYS), st.data())
def test_one_bad_value_is_one_line_naming_the_file_line_and_key(
    data: dict[str, dict[str, Any]], key: Key, draw: st.DataObject
) -> None:
    data.setdefault(key.section, {})[key.name] = draw.draw(invalid_values(key))
    text = dump(data)
    with pytest.raises(ConfigError) as info:
        parse(text)
    message = assert_one_line(info.value)
    assert f": {key.path}: " in message
    # The line number points at the bad key or its value.
    line = int(message.split(":")[1])
    first, last = key_lines(text, key)
    assert first <= line <= last, (message, text)


@FUZZ
@given(
    valid_configs(),
    st.sampled_from(list(SECTIONS)),
    st.text(st.characters(codec="utf-8", exclude_characters="\n\r"), min_size=1, max_size=20),
)
def test_an_unknown_key_is_named_with_its_section(
    data: dict[str, dict[str, Any]], section: str, name: str
) -> None:
    known = {f.name for f in dataclasses.fields(SECTIONS[section])}
    known |= set(getattr(SECTIONS[section], "REJECTED", {}))  # refused with their own reason
    if name in known or yaml.safe_load(dump({name: 1})) != {name: 1}:
        return  # a known key, or a name YAML reads back as something else
    data.setdefault(section, {})[name] = 1
    with pytest.raises(ConfigError) as info:
        parse(dump(data))
    message = assert_one_line(info.value)
    # A name with padding or control characters is quoted, so the reader can see them.
    shown = name if name.isprintable() and name.strip() == name else repr(name)
    assert f": {section}.{shown}: unknown key" in message or "keys must be plain" in message


yaml_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=10)
    | st.sampled_from(list(SECTIONS) + [k.name for k in KEYS]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(list(SECTIONS) + [k.name for k in KEYS]) | st.text(max_size=6),
            inner,
            max_size=5,
        )
    ),
    max_leaves=25,
)


@FUZZ
@given(yaml_values)
def test_random_yaml_documents_never_crash(data: Any) -> None:
    try:
        parse(dump(data))
    except ConfigError as exc:
        assert_one_line(exc)


@FUZZ
@given(st.text(max_size=200))
def test_random_text_never_crashes(text: str) -> None:
    try:
        parse(text)
    except ConfigError as exc:
        assert_one_line(exc)


@FUZZ
@given(valid_configs(), st.data())
def test_a_half_edited_config_never_crashes(
    data: dict[str, dict[str, Any]], draw: st.DataObject
) -> None:
    # Cut short, or with a character typed in the wrong place, as an editor leaves it.
    text = dump(data)
    cut = draw.draw(st.integers(0, len(text)))
    typo = draw.draw(st.sampled_from(["", ":", "[", "{", "'", '"', "\t", "- ", "&a", "*a", "!"]))
    edited = text[:cut] + typo + text[cut : cut + draw.draw(st.integers(0, 40))]
    try:
        parse(edited)
    except ConfigError as exc:
        assert_one_line(exc)


@pytest.mark.parametrize(
    "text",
    [
        "[" * 5000,
        "model: {top_k: " + "[" * 2000 + "]" * 2000 + "}",
        "model:\n  top_k: !!binary aGVsbG8=\n",
        "model: !!python/object/apply:os.system [true]\n",
        "a: &a [*a, *a]\nmodel: {top_k: *a}\n",
        "\x00",
    ],
    ids=["deep-brackets", "deep-value", "binary", "python-tag", "alias-loop", "nul"],
)
def test_hostile_yaml_is_one_line(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(text)
    assert_one_line(info.value)


def test_bytes_that_are_not_utf8_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / NAME
    path.write_bytes(b"model:\n  top_k: \xff\xfe\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: not UTF-8 text (byte 16); save the config as UTF-8"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[" * 5000, "nested too deeply"),
        ("model:\n  top_k: !!binary aGVsbG8=\n", "model.top_k: must be an integer"),
        ("source:\n  retry_initial: 5\n  retry_max: 1\n", "source.retry_max: must be at least"),
    ],
    ids=["deep", "binary", "cross-check"],
)
def test_cli_check_prints_one_line_and_no_traceback(text: str, says: str, tmp_path: Path) -> None:
    path = tmp_path / NAME
    path.write_text(text)
    result = run_cli("check", "--config", str(path))
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"edge-daemon: error: {path}")
    assert says in lines[0]
