"""The YAML config: one schema (the dataclasses below), strict validation, defaults.

Every key is declared once, as a dataclass field whose metadata carries its
documentation and bounds. Validation walks the YAML node tree (not just the
loaded data) so an error can name the file, the line and the key path:

    config.yaml:4: model.top_k: must be between 1 and 1000 (got 0)

Unknown keys are rejected: a misspelt key that is silently ignored is worse
than one that stops the daemon at start-up.
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional, Union

import yaml

from .errors import ConfigError

DELEGATE_NAMES = ("edgetpu", "gpu", "xnnpack", "cpu")
RUNTIME_NAMES = ("auto", "ai_edge_litert", "tflite_runtime", "tensorflow")
SOURCE_KINDS = ("files", "picamera2")

# Where edge-daemon looks for a config when --config is not given (in order).
ENV_CONFIG = "EDGE_DAEMON_CONFIG"
SYSTEM_CONFIG = Path("/etc/edge-daemon/config.yaml")


def _key(
    default: Any,
    doc: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    path: bool = False,
    required: bool = False,
) -> Any:
    """Declare a config key: its default, one line of documentation and its bounds."""
    meta = {"doc": doc, "lo": lo, "hi": hi, "path": path, "required": required}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ModelConfig:
    """Which model to run and how to read its output."""

    path: str = _key(
        "models/mobilenet_v1_1.0_224_quant.tflite", "the .tflite model file", path=True
    )
    labels: Optional[str] = _key(
        "models/labels_mobilenet_quant_v1_224.txt",
        "labels file; null = the labels packed in the model's metadata",
        path=True,
    )
    cpu_fallback: Optional[str] = _key(
        None, "plain model to run when an Edge TPU-compiled model.path has no Edge TPU", path=True
    )
    top_k: int = _key(10, "how many predictions to publish", lo=1, hi=1000)
    min_score: float = _key(0.0, "drop predictions scoring below this", lo=0.0, hi=1.0)
    mean: Optional[float] = _key(
        None,
        "float models: input = (pixel - mean) / std; null = metadata, else 127.5",
        lo=-1e6,
        hi=1e6,
    )
    std: Optional[float] = _key(
        None, "float models: see mean; null = metadata, else 127.5", lo=1e-9, hi=1e6
    )
    smoothing: int = _key(
        0,
        "average scores over this many frames before events, change mode and MQTT"
        " state use them; 0 = off",
        lo=0,
        hi=1000,
    )


@dataclass(frozen=True)
class RegionConfig:
    """A part of the frame (preprocess.region), as fractions of its width and height."""

    x: float = _key(0.0, "left edge, as a fraction of the frame's width", lo=0.0, hi=1.0)
    y: float = _key(0.0, "top edge, as a fraction of the frame's height", lo=0.0, hi=1.0)
    width: float = _key(1.0, "width, as a fraction of the frame's width", lo=0.0, hi=1.0)
    height: float = _key(1.0, "height, as a fraction of the frame's height", lo=0.0, hi=1.0)


@dataclass(frozen=True)
class PreprocessConfig:
    """How a frame becomes the model's input."""

    resize: Literal["stretch", "crop"] = _key(
        "stretch", "stretch the whole frame, or crop the centre to the model's aspect first"
    )
    region: Optional[RegionConfig] = _key(  # noqa: RUF009
        None, "what the model sees: {x, y, width, height} as fractions; null = the whole frame"
    )


@dataclass(frozen=True)
class EngineConfig:
    """Which TFLite runtime and delegates run the model."""

    runtime: Literal["auto", "ai_edge_litert", "tflite_runtime", "tensorflow"] = _key(
        "auto", "auto = first importable of ai_edge_litert, tflite_runtime, tensorflow"
    )
    delegates: Union[Literal["auto"], list[Literal["edgetpu", "gpu", "xnnpack", "cpu"]]] = _key(  # noqa: RUF009
        "auto",
        "auto = measure at start-up and keep the fastest correct one; or an ordered list"
        " such as [edgetpu, gpu, xnnpack, cpu]",
    )
    threads: Optional[int] = _key(None, "interpreter threads; null = all cores", lo=1, hi=64)
    edgetpu_library: str = _key("libedgetpu.so.1", "shared library of the Edge TPU delegate")
    gpu_library: str = _key(
        "libtensorflowlite_gpu_delegate.so", "shared library of the GPU delegate"
    )
    auto_budget: float = _key(
        2.0, "seconds delegates: auto may spend measuring candidates", lo=0.1, hi=30.0
    )


@dataclass(frozen=True)
class SourceConfig:
    """Where frames come from."""

    kind: Literal["files", "picamera2"] = _key("files", "files or picamera2")
    path: str = _key("models/samples", "files: a folder or a glob of images", path=True)
    loop: bool = _key(False, "files: start again after the last image")
    fps: Optional[float] = _key(
        None, "frames per second; null = as fast as possible", lo=0.01, hi=1000.0
    )
    camera: int = _key(0, "picamera2: camera number (Picamera2.global_camera_info())", lo=0, hi=16)
    width: int = _key(640, "picamera2: main stream width (even)", lo=64, hi=4656)
    height: int = _key(480, "picamera2: main stream height (even)", lo=64, hi=3496)
    timeout: float = _key(
        2.0, "seconds to wait for one frame before it counts as a fault", lo=0.05, hi=600.0
    )
    retry_initial: float = _key(
        0.5, "first back-off before reopening a failed source (s)", lo=0.0, hi=600.0
    )
    retry_max: float = _key(30.0, "longest back-off between reopen attempts (s)", lo=0.0, hi=3600.0)
    stall_timeout: float = _key(
        10.0, "no frame for this long: the systemd watchdog is no longer fed (s)", lo=0.5, hi=3600.0
    )


@dataclass(frozen=True)
class OutputsConfig:
    """Where predictions and status go."""

    prediction_log: Optional[str] = _key(
        "edge-daemon-data/predictions.jsonl", "JSON lines, one per frame; null = off", path=True
    )
    prediction_log_mode: Literal["every", "change"] = _key(
        "every", "every = a line per frame; change = only when the top-1 label changes"
    )
    heartbeat: float = _key(
        60.0, "change mode: write a line anyway after this many seconds", lo=0.1, hi=86400.0
    )
    max_bytes: int = _key(
        10_000_000, "rotate the prediction log when it would grow past this", lo=1024, hi=2**40
    )
    backups: int = _key(
        3, "rotated prediction logs to keep (predictions.jsonl.1 ...)", lo=0, hi=100
    )
    status_file: Optional[str] = _key(
        "edge-daemon-data/status.json", "JSON status, replaced atomically; null = off", path=True
    )
    status_interval: float = _key(1.0, "seconds between status file updates", lo=0.05, hi=3600.0)
    log_interval: float = _key(
        10.0, "seconds between INFO summary lines in the log", lo=0.1, hi=86400.0
    )


@dataclass(frozen=True)
class MqttTlsConfig:
    """TLS to the broker (mqtt.tls); a mapping here, even {}, turns TLS on."""

    ca_file: Optional[str] = _key(
        None, "CA certificate(s) that signed the broker's; null = the system's CAs", path=True
    )
    cert_file: Optional[str] = _key(
        None, "client certificate, for brokers that authenticate clients by it", path=True
    )
    key_file: Optional[str] = _key(None, "the client certificate's private key", path=True)
    insecure: bool = _key(
        False, "skip the check that the broker's certificate names mqtt.host (not its CA)"
    )


@dataclass(frozen=True)
class MqttConfig:
    """Results to an MQTT broker, for Home Assistant, Node-RED and the fleet view."""

    # Keys that must never be in the YAML, with what to do instead.
    REJECTED: ClassVar[dict[str, str]] = {
        "password": "passwords do not go in the config; put the password alone in a file"
        " readable only by the service (chmod 600) and name that file in mqtt.password_file",
    }

    host: Optional[str] = _key(None, "broker host name or address; null = MQTT off")
    port: int = _key(1883, "broker port (1883; usually 8883 with tls)", lo=1, hi=65535)
    username: Optional[str] = _key(None, "user name to log in with; null = anonymous")
    password_file: Optional[str] = _key(
        None, "file holding the password (one line); needs username", path=True
    )
    tls: Optional[MqttTlsConfig] = _key(None, "TLS settings; null = plain MQTT")  # noqa: RUF009
    device: Optional[str] = _key(
        None, "this Pi's name in topics and Home Assistant; null = the host name"
    )
    topic_prefix: str = _key("edge-daemon", "topics are <topic_prefix>/<device>/...")
    qos: int = _key(1, "MQTT quality of service for what is published (0, 1 or 2)", lo=0, hi=2)
    keepalive: int = _key(
        30, "seconds between pings; the broker declares the Pi offline after 1.5x", lo=5, hi=3600
    )
    min_interval: float = _key(0.2, "state: never more often than this (s)", lo=0.0, hi=3600.0)
    heartbeat: float = _key(
        60.0, "state: sent at least this often even when the label stays (s)", lo=1.0, hi=86400.0
    )
    attributes_interval: float = _key(
        10.0, "top-k attributes topic: at most this often (s)", lo=0.0, hi=86400.0
    )
    max_queued: int = _key(
        100,
        "QoS 1/2 messages kept while the broker is away; beyond, the oldest are dropped",
        lo=1,
        hi=100_000,
    )
    reconnect_max: float = _key(
        30.0, "longest wait between reconnect attempts (s)", lo=1.0, hi=3600.0
    )
    discovery: bool = _key(True, "publish Home Assistant discovery configs")
    discovery_prefix: str = _key("homeassistant", "Home Assistant's discovery prefix")
    configuration_url: Optional[str] = _key(
        None, "link shown on the Home Assistant device page (http:// or https://)"
    )
    commands: bool = _key(
        False, "obey <topic_prefix>/<device>/command/reload (restrict it with broker ACLs first)"
    )


@dataclass(frozen=True)
class DaemonConfig:
    """The service itself."""

    state_dir: str = _key("edge-daemon-data/state", "caches (delegate choice per model)", path=True)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = _key("INFO", "log verbosity")


RULE_NAME = r"[A-Za-z0-9_-]{1,64}"


@dataclass(frozen=True)
class RuleConfig:
    """One event rule: which labels, how sure, for how long."""

    name: str = _key(
        "", "the rule's name: letters, digits, _ and - (used in topics and ids)", required=True
    )
    labels: list[str] = _key(  # noqa: RUF009
        [],
        "label names, whole label lines, @birds/@cats/@dogs/@any groups or #index",
        required=True,
    )
    min_score: float = _key(0.5, "smoothed top-1 score needed", lo=0.0, hi=1.0)
    min_frames: int = _key(3, "frames in a row before an event starts", lo=1, hi=100_000)
    end_after: float = _key(5.0, "seconds without a match that end the event", lo=0.0, hi=86400.0)
    cooldown: float = _key(
        0.0, "seconds after an event ends before the rule may start another", lo=0.0, hi=86400.0
    )
    # The YAML line of the rule's labels, for errors found when the model loads.
    line: int = field(default=0, metadata={"internal": True}, compare=False)


@dataclass(frozen=True)
class EventsConfig:
    """Events: rules over the smoothed top-1, with snapshots and a SQLite history."""

    rules: list[RuleConfig] = _key([], "event rules; an empty list turns events off")  # noqa: RUF009
    dir: Optional[str] = _key(
        None, "events.db and snapshots; null = daemon.state_dir/events", path=True
    )
    snapshots: bool = _key(True, "keep each event's best frame as a JPEG")
    thumbnail: int = _key(0, "also keep a thumbnail this many pixels wide; 0 = none", lo=0, hi=4096)
    jpeg_quality: int = _key(85, "JPEG quality of snapshots", lo=10, hi=100)
    keep_days: float = _key(
        30.0, "delete events older than this; 0 = keep forever", lo=0.0, hi=36500.0
    )
    max_bytes: int = _key(
        500_000_000,
        "delete the oldest events when snapshots and database outgrow this",
        lo=1_000_000,
        hi=2**50,
    )


@dataclass(frozen=True)
class GateConfig:
    """The change gate: no inference while nothing in the region changes."""

    mode: Literal["off", "motion"] = _key(
        "off", "off = classify every frame; motion = only while something changes"
    )
    keepalive: float = _key(
        60.0, "classify at least this often anyway (s), for slow changes", lo=0.1, hi=86400.0
    )
    hold: float = _key(
        2.0, "keep classifying this long after the last change (s)", lo=0.0, hi=3600.0
    )
    pixel_threshold: int = _key(
        25, "grey levels a sampled pixel must differ from the background to count", lo=1, hi=254
    )
    area_threshold: float = _key(
        0.005,
        "share of the region's sampled pixels that must change (with a neighbour) for motion",
        lo=0.0001,
        hi=1.0,
    )
    adapt_rate: float = _key(
        0.05,
        "share of each difference the background takes up per frame (how fast it adapts)",
        lo=0.0,
        hi=1.0,
    )
    lighting_threshold: float = _key(
        0.5,
        "a change this share of the region at once is lighting (exposure, lamps):"
        " the background is replaced and one frame classified",
        lo=0.01,
        hi=1.0,
    )
    sample_width: int = _key(
        160, "the change detector samples the region at most this many pixels wide", lo=16, hi=4096
    )


@dataclass(frozen=True)
class TeachConfig:
    """Teaching the daemon your own classes: samples, training, the taught model."""

    dir: Optional[str] = _key(
        None, "samples, the taught model and its report; null = daemon.state_dir/teach", path=True
    )
    use: bool = _key(
        True,
        "run the taught model (teach.dir/model.tflite + labels.txt) once one is trained;"
        " until then, and with false, model.path",
    )
    base_model: Optional[str] = _key(
        None,
        "the base network teach train embeds with and builds on; null = model.path (or,"
        " when model.path is the taught model, the base its report.json names)",
        path=True,
    )
    base_labels: Optional[str] = _key(
        None, "labels file of teach.base_model (only loaded to check it runs)", path=True
    )


@dataclass(frozen=True)
class HttpConfig:
    """The web page, the HTTP API and Prometheus metrics (needs the web extra)."""

    listen: Optional[str] = _key(
        "127.0.0.1:8080",
        "HOST:PORT to serve on ([::1]:8080 for IPv6); beyond loopback needs auth; null = off",
    )
    auth: Optional[Literal["none", "token", "basic"]] = _key(
        None,
        "token (Bearer, from token_file), basic (users_file) or none; null = none on"
        " loopback, an error beyond it",
    )
    token_file: Optional[str] = _key(
        None, "auth: token: a file holding the token (one line, 16+ characters)", path=True
    )
    users_file: Optional[str] = _key(None, "auth: basic: a file of user:password lines", path=True)
    stream_fps: float = _key(
        5.0,
        "most frames (live view) and predictions (page) per second a client gets",
        lo=0.1,
        hi=30.0,
    )
    max_clients: int = _key(
        32, "connections served at once; more are answered 503 and closed", lo=1, hi=1024
    )
    idle_timeout: float = _key(
        20.0, "close a connection that sends or reads nothing for this long (s)", lo=1.0, hi=3600.0
    )
    allowed_hosts: Optional[list[str]] = _key(  # noqa: RUF009
        None,
        "Host names answered besides addresses, localhost and this machine's name (DNS"
        ' rebinding guard); ["*"] = any; null = none',
    )


@dataclass(frozen=True)
class Config:
    """A whole, validated config with every relative path made absolute."""

    model: ModelConfig = field(default_factory=ModelConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    outputs: OutputsConfig = field(default_factory=OutputsConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    teach: TeachConfig = field(default_factory=TeachConfig)
    # The file this came from (None: built-in defaults), not a YAML key.
    file: Optional[str] = field(default=None, metadata={"internal": True})


SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "preprocess": PreprocessConfig,
    "engine": EngineConfig,
    "source": SourceConfig,
    "outputs": OutputsConfig,
    "daemon": DaemonConfig,
    "mqtt": MqttConfig,
    "events": EventsConfig,
    "http": HttpConfig,
    "gate": GateConfig,
    "teach": TeachConfig,
}


class _Invalid(Exception):
    """A value failed validation: message and the YAML node to point at.

    ``located``: the message already starts with the full key path (an error
    inside a list of mappings, such as ``events.rules[0].min_score``).
    """

    def __init__(self, message: str, node: yaml.Node | None, located: bool = False) -> None:
        super().__init__(message)
        self.node = node
        self.located = located


def _show(value: Any) -> str:
    text = (
        repr(value)
        if isinstance(value, str)
        else yaml.safe_dump(value, default_flow_style=True).strip()
    )
    text = " ".join(text.removesuffix("\n...").split())  # one line: !!binary dumps several
    return text if len(text) <= 60 else text[:57] + "..."


def _scalar(node: yaml.Node) -> Any:
    """The Python value of a scalar node, with YAML's own type resolution."""
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def _check_number(value: Any, kind: type, meta: dict[str, Any], node: yaml.Node) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid(
            f"must be {'an integer' if kind is int else 'a number'} (got {_show(value)})", node
        )
    if kind is int and not isinstance(value, int):
        raise _Invalid(f"must be an integer (got {_show(value)})", node)
    lo, hi = meta.get("lo"), meta.get("hi")
    if value != value or (lo is not None and value < lo) or (hi is not None and value > hi):
        raise _Invalid(f"must be between {_fmt(lo)} and {_fmt(hi)} (got {_show(value)})", node)
    return float(value) if kind is float else value


def _fmt(bound: float | None) -> str:
    if bound is None:
        return "any"
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def _convert(tp: Any, node: yaml.Node, meta: dict[str, Any], path: str = "") -> Any:
    """Check one YAML node against a field's type annotation and return its value.

    ``path`` is the key path of the node (``events.rules``), for errors inside
    a list of mappings.
    """
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is list and dataclasses.is_dataclass(args[0]):
        return _mapping_list(args[0], node, path)
    if origin is Union:
        non_none = [a for a in args if a is not type(None)]
        if isinstance(node, yaml.ScalarNode) and _scalar(node) is None:
            if type(None) in args:
                return None
            raise _Invalid("must not be empty", node)
        # Try only the alternatives whose shape fits the node (a list for a
        # YAML sequence, a scalar otherwise) so the error speaks of that shape.
        is_seq = isinstance(node, yaml.SequenceNode)
        fitting = [a for a in non_none if (typing.get_origin(a) is list) == is_seq] or non_none
        errors = []
        for alt in fitting:
            try:
                return _convert(alt, node, meta)
            except _Invalid as exc:
                errors.append(exc)
        lists = [a for a in non_none if typing.get_origin(a) is list and a not in fitting]
        if len(errors) == 1 and not lists:
            raise errors[0]
        for alt in lists:
            items = ", ".join(str(x) for x in typing.get_args(typing.get_args(alt)[0]))
            errors.append(_Invalid(f"must be a list of {items}", node))
        wanted = " or ".join(str(e).split(" (got ")[0].removeprefix("must be ") for e in errors)
        raise _Invalid(f"must be {wanted} (got {_show(_plain(node))})", node)
    if origin is Literal:
        value = _scalar(node) if isinstance(node, yaml.ScalarNode) else _plain(node)
        if value not in args:
            choices = ", ".join(str(a) for a in args)
            wanted = choices if len(args) == 1 else f"one of {choices}"
            raise _Invalid(f"must be {wanted} (got {_show(value)})", node)
        return value
    if origin is list:
        if not isinstance(node, yaml.SequenceNode):
            raise _Invalid(f"must be a list (got {_show(_plain(node))})", node)
        values: list[Any] = [_convert(args[0], item, meta) for item in node.value]
        if not values:
            raise _Invalid("must not be an empty list", node)
        if len(set(values)) != len(values):
            raise _Invalid(f"must not repeat an entry (got {_show(values)})", node)
        return values
    if _nested_section(tp) is not None:
        raise _Invalid(f"must be a mapping of keys (got {_show(_plain(node))})", node)
    if not isinstance(node, yaml.ScalarNode):
        raise _Invalid(
            "must be a single value, not a "
            + ("list" if isinstance(node, yaml.SequenceNode) else "mapping"),
            node,
        )
    value = _scalar(node)
    if tp is bool:
        if not isinstance(value, bool):
            raise _Invalid(f"must be true or false (got {_show(value)})", node)
        return value
    if tp in (int, float):
        return _check_number(value, tp, meta, node)
    if tp is str:
        if not isinstance(value, str) or not value.strip():
            raise _Invalid(f"must be a non-empty string (got {_show(value)})", node)
        return value
    raise TypeError(f"unsupported config type {tp!r}")  # a schema bug, not user input


def _mapping_list(cls: Any, node: yaml.Node, path: str) -> list[Any]:
    """A list of mappings, each checked as a ``cls`` (``events.rules[0].min_score``)."""
    if not isinstance(node, yaml.SequenceNode):
        got = _plain(node)
        hint = "; write [] for none" if got is None else ""
        raise _Invalid(f"must be a list of mappings{hint} (got {_show(got)})", node)
    items = []
    for i, item in enumerate(node.value):
        built, _ = _section(cls, item, f"{path}[{i}]", required=True)
        names = {f.name for f in dataclasses.fields(cls)}
        if "line" in names:
            built = dataclasses.replace(built, line=item.start_mark.line + 1)
        items.append(built)
    return items


def _plain(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def _section(
    cls: type, node: yaml.Node | None, prefix: str, *, required: bool = False
) -> tuple[Any, dict[str, yaml.Node]]:
    """Build one section dataclass from its mapping node; unknown keys are errors.

    ``required``: the mapping must be there (an item of a list of mappings),
    and so must its keys declared ``required``.
    """
    empty = node is None or (isinstance(node, yaml.ScalarNode) and _scalar(node) is None)
    if empty and not required:
        return cls(), {}
    if empty or not isinstance(node, yaml.MappingNode):
        raise _Invalid(
            f"{prefix}: must be a mapping of keys (got {_show(_plain(node)) if node else 'null'})",
            node,
            located=True,
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    values: dict[str, Any] = {}
    nodes: dict[str, yaml.Node] = {}
    for key_node, value_node in node.value:
        key = _key_name(key_node, prefix)
        path = f"{prefix}.{_key_text(key)}"
        rejected = getattr(cls, "REJECTED", {})
        if key in rejected:
            raise _Invalid(f"{path}: {rejected[key]}", key_node, True)
        if key not in fields:
            close = _closest(str(key), list(fields))
            hint = f" (did you mean {prefix}.{close}?)" if close else ""
            raise _Invalid(
                f"{path}: unknown key{hint}; known keys: {', '.join(fields)}", key_node, True
            )
        if key in values:
            raise _Invalid(f"{path}: given twice", key_node, True)
        nested = _nested_section(hints[key])
        if nested is not None and isinstance(value_node, yaml.MappingNode):
            values[key] = _section(nested, value_node, path)[0]  # errors name their own path
            nodes[key] = value_node
            continue
        try:
            values[key] = _convert(hints[key], value_node, dict(fields[key].metadata), path)
        except _Invalid as exc:
            if exc.located:
                raise
            raise _Invalid(f"{path}: {exc}", exc.node, True) from None
        nodes[key] = value_node
    if required:
        for name, f in fields.items():
            if f.metadata.get("required") and name not in values:
                raise _Invalid(f"{prefix}: missing key {name}", node, True)
    return cls(**values), nodes


def _nested_section(tp: Any) -> Optional[type]:
    """The dataclass a key holds as a mapping of its own (such as mqtt.tls), else None."""
    candidates = typing.get_args(tp) if typing.get_origin(tp) is Union else (tp,)
    for c in candidates:
        if isinstance(c, type) and dataclasses.is_dataclass(c):
            return c
    return None


def _key_name(node: yaml.Node, prefix: str | None) -> Any:
    """A mapping key's value; a list or mapping used as a key is an error, not a crash."""
    if not isinstance(node, yaml.ScalarNode):
        where = f"{prefix}: " if prefix else ""
        raise _Invalid(f"{where}keys must be plain names, not a list or mapping", node)
    return _scalar(node)


def _key_text(key: Any) -> str:
    """A key as an error message shows it: as written when it is a plain name,
    quoted when it is empty, padded or holds control characters (a bare
    carriage return would break the one-line message), else as YAML."""
    if isinstance(key, str):
        return key if key and key.isprintable() and key.strip() == key else repr(key)
    return _show(key)


def _closest(word: str, choices: list[str]) -> str | None:
    import difflib

    found = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return found[0] if found else None


def _resolve_paths(section: Any, base: Path) -> Any:
    changes = {}
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if f.metadata.get("path") and isinstance(value, str):
            expanded = Path(os.path.expanduser(value))
            changes[f.name] = str(expanded if expanded.is_absolute() else base / expanded)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            changes[f.name] = _resolve_paths(value, base)
    return dataclasses.replace(section, **changes)


def _cross_checks(cfg: Config, nodes: dict[str, dict[str, yaml.Node]]) -> None:
    src = cfg.source
    if src.kind == "picamera2" and (src.width % 2 or src.height % 2):
        key = "width" if src.width % 2 else "height"
        raise _Invalid(
            f"source.{key}: must be even for the camera (got {getattr(src, key)})",
            nodes.get("source", {}).get(key),
        )
    _check_mqtt(cfg.mqtt, nodes.get("mqtt", {}))
    if src.retry_max < src.retry_initial:
        raise _Invalid(
            f"source.retry_max: must be at least source.retry_initial ({src.retry_initial})"
            f" (got {src.retry_max})",
            nodes.get("source", {}).get("retry_max"),
        )
    _http_checks(cfg.http, nodes.get("http", {}))
    _check_region(cfg.preprocess.region, nodes.get("preprocess", {}))
    if src.kind == "picamera2":
        _check_region_pixels(cfg.preprocess.region, src.width, src.height, nodes)
    g = cfg.gate
    if g.lighting_threshold <= g.area_threshold:
        raise _Invalid(
            f"gate.lighting_threshold: must be more than gate.area_threshold ({g.area_threshold:g})"
            f" (got {g.lighting_threshold:g})",
            nodes.get("gate", {}).get("lighting_threshold"),
        )


def _check_region(region: Optional[RegionConfig], nodes: dict[str, yaml.Node]) -> None:
    """The region must have an area and lie inside the frame."""
    if region is None:
        return
    node = nodes.get("region")
    for side, start, size in (
        ("width", region.x, region.width),
        ("height", region.y, region.height),
    ):
        if size <= 0.0:
            raise _Invalid(f"preprocess.region.{side}: must be more than 0 (got {size})", node)
        if start + size > 1.0 + 1e-9:
            edge = "x" if side == "width" else "y"
            raise _Invalid(
                f"preprocess.region: {edge} + {side} is {start + size:g}, past the frame's edge"
                f" (1.0); make {side} at most {1.0 - start:g}",
                node,
            )


# The smallest region, in pixels of the frame, that the model and the gate may be given.
MIN_REGION_PIXELS = 16


def region_box(
    region: Optional[RegionConfig], width: int, height: int
) -> tuple[int, int, int, int]:
    """The region as a pixel box (x0, y0, x1, y1) of a width x height frame."""
    if region is None:
        return 0, 0, width, height
    x0 = min(width - 1, max(0, round(region.x * width)))
    y0 = min(height - 1, max(0, round(region.y * height)))
    x1 = min(width, max(x0 + 1, round((region.x + region.width) * width)))
    y1 = min(height, max(y0 + 1, round((region.y + region.height) * height)))
    return x0, y0, x1, y1


def region_pixels_error(region: Optional[RegionConfig], width: int, height: int) -> Optional[str]:
    """Why ``region`` is too small in a width x height frame (one line), or None."""
    x0, y0, x1, y1 = region_box(region, width, height)
    w, h = x1 - x0, y1 - y0
    if w >= MIN_REGION_PIXELS and h >= MIN_REGION_PIXELS:
        return None
    return (
        f"preprocess.region: leaves {w}x{h} pixels of the {width}x{height} frame, fewer than"
        f" {MIN_REGION_PIXELS}x{MIN_REGION_PIXELS}; make the region larger"
    )


def _check_region_pixels(
    region: Optional[RegionConfig], width: int, height: int, nodes: dict[str, dict[str, yaml.Node]]
) -> None:
    problem = region_pixels_error(region, width, height)
    if problem is not None:
        raise _Invalid(problem, nodes.get("preprocess", {}).get("region"))


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` as (host, port); ValueError says what is wrong."""
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("an IPv6 address goes in brackets, e.g. [::1]:8080")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("the port must be a number from 0 to 65535")
    import ipaddress

    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(
                "the host must be an IP address (0.0.0.0 for every interface) or localhost"
            ) from None
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether a listen host is reachable from this machine only."""
    import ipaddress

    if host == "localhost":
        return True
    return ipaddress.ip_address(host).is_loopback


def _http_checks(h: HttpConfig, nodes: dict[str, yaml.Node]) -> None:
    if h.listen is None:
        return
    try:
        host, _ = parse_listen(h.listen)
    except ValueError as exc:
        raise _Invalid(f"http.listen: {exc} (got {_show(h.listen)})", nodes.get("listen")) from None
    if h.auth is None and not is_loopback(host):
        raise _Invalid(
            f"http.listen: {h.listen} is reachable from the network, so it needs a password:"
            " set http.auth: token with http.token_file (a file holding a long random token),"
            " or auth: basic with http.users_file; write auth: none to serve it open on purpose",
            nodes.get("listen"),
        )
    for auth, key in (("token", "token_file"), ("basic", "users_file")):
        if h.auth == auth and getattr(h, key) is None:
            raise _Invalid(
                f"http.auth: {auth} needs http.{key} (the secret lives in its own file)",
                nodes.get("auth"),
            )


_TOPIC_SAFE = re.compile(r"[A-Za-z0-9_-]+")


def _check_mqtt(mq: MqttConfig, nodes: dict[str, yaml.Node]) -> None:
    if mq.device is not None and not _TOPIC_SAFE.fullmatch(mq.device):
        raise _Invalid(
            f"mqtt.device: use only letters, digits, _ and - (got {_show(mq.device)}); it is"
            " part of topics and Home Assistant ids",
            nodes.get("device"),
        )
    for key in ("topic_prefix", "discovery_prefix"):
        value = getattr(mq, key)
        if any(c in value for c in "+#\0") or value.startswith("/") or value.endswith("/"):
            raise _Invalid(
                f"mqtt.{key}: must be a topic without +, # or a leading or trailing /"
                f" (got {_show(value)})",
                nodes.get(key),
            )
    if mq.password_file is not None and mq.username is None:
        raise _Invalid(
            "mqtt.password_file: a password needs mqtt.username; set it too",
            nodes.get("password_file"),
        )
    url = mq.configuration_url
    if url is not None and not url.startswith(("http://", "https://")):
        raise _Invalid(
            f"mqtt.configuration_url: must start with http:// or https:// (got {_show(url)})",
            nodes.get("configuration_url"),
        )
    if mq.heartbeat < mq.min_interval:
        raise _Invalid(
            f"mqtt.heartbeat: must be at least mqtt.min_interval ({mq.min_interval})"
            f" (got {mq.heartbeat})",
            nodes.get("heartbeat"),
        )


def _check_rules(cfg: Config, nodes: dict[str, dict[str, yaml.Node]]) -> None:
    """Rule names are ids (topics, entity ids, ``--rule``): well-formed and unique."""
    import re

    seq = nodes.get("events", {}).get("rules")
    items = seq.value if isinstance(seq, yaml.SequenceNode) else []
    seen: set[str] = set()
    for i, rule in enumerate(cfg.events.rules):
        node = items[i] if i < len(items) else None
        if not re.fullmatch(RULE_NAME, rule.name):
            raise _Invalid(
                f"events.rules[{i}].name: use 1 to 64 letters, digits, _ or -"
                f" (got {_show(rule.name)})",
                node,
            )
        if rule.name in seen:
            raise _Invalid(f"events.rules[{i}].name: {rule.name!r} names two rules", node)
        seen.add(rule.name)


def parse_config(text: str, *, name: str = "<config>", base: Path | None = None) -> Config:
    """Validate YAML text and return a Config; relative paths resolve against ``base``."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{name}{line}: not valid YAML: {problem}; fix the syntax") from None
    except RecursionError:  # PyYAML recurses per nesting level: "[[[[..." exhausts the stack
        raise ConfigError(f"{name}: not valid YAML: nested too deeply; fix the syntax") from None
    try:
        cfg, nodes = _build(root)
        _cross_checks(cfg, nodes)
        _check_rules(cfg, nodes)
    except RecursionError:
        raise ConfigError(f"{name}: a value is nested too deeply; fix the config") from None
    except _Invalid as exc:
        line = f":{exc.node.start_mark.line + 1}" if exc.node is not None else ""
        raise ConfigError(f"{name}{line}: {exc}") from None
    except yaml.YAMLError as exc:  # a tag the safe loader cannot build (!foo, a << merge key)
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            f"{name}{line}: unsupported YAML: {problem}; write plain keys and values"
        ) from None
    base = base if base is not None else Path.cwd()
    resolved = {key: _resolve_paths(getattr(cfg, key), base) for key in SECTIONS}
    return dataclasses.replace(cfg, **resolved, file=name if name != "<config>" else None)


def _build(root: yaml.Node | None) -> tuple[Config, dict[str, dict[str, yaml.Node]]]:
    if root is None or (isinstance(root, yaml.ScalarNode) and _scalar(root) is None):
        return Config(), {}
    if not isinstance(root, yaml.MappingNode):
        raise _Invalid(f"the file must be a mapping of sections ({', '.join(SECTIONS)})", root)
    sections: dict[str, Any] = {}
    nodes: dict[str, dict[str, yaml.Node]] = {}
    for key_node, value_node in root.value:
        key = _key_name(key_node, None)
        if key not in SECTIONS:
            close = _closest(str(key), list(SECTIONS))
            hint = f" (did you mean {close}?)" if close else ""
            raise _Invalid(
                f"{_key_text(key)}: unknown section{hint}; known sections: {', '.join(SECTIONS)}",
                key_node,
            )
        if key in sections:
            raise _Invalid(f"{key}: given twice", key_node)
        sections[key], nodes[key] = _section(SECTIONS[key], value_node, str(key))
    return Config(**sections), nodes


def load_config(path: str | os.PathLike[str] | None) -> Config:
    """Load the config at ``path``; None means the usual places, else built-in defaults.

    The usual places are $EDGE_DAEMON_CONFIG, then /etc/edge-daemon/config.yaml.
    Built-in defaults resolve relative paths against the current directory.
    """
    if path is None:
        env = os.environ.get(ENV_CONFIG)
        if env:
            path = env
        elif SYSTEM_CONFIG.is_file():
            path = SYSTEM_CONFIG
        else:
            return parse_config("", base=Path.cwd())
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{p}: config file not found; pass --config with an existing file"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"{p}: cannot read the config ({exc.strerror}); check its permissions"
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{p}: not UTF-8 text (byte {exc.start}); save the config as UTF-8"
        ) from None
    return parse_config(text, name=str(p), base=p.resolve().parent)


def reference_config() -> str:
    """A commented YAML document listing every key with its default and meaning."""
    lines = ["# edge-daemon configuration: every key, with its default."]
    for section, cls in SECTIONS.items():
        lines.append("")
        lines.append(f"# {cls.__doc__}")
        lines.append(f"{section}:")
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc,operator]
            value = (
                yaml.safe_dump(default, default_flow_style=True).strip().removesuffix("...").strip()
            )
            lines.append(f"  # {f.metadata['doc']}")
            lines.append(f"  {f.name}: {value}")
            nested = _nested_section(typing.get_type_hints(cls)[f.name])
            if nested is not None and default is None:
                for g in dataclasses.fields(nested):
                    shown = yaml.safe_dump(g.default).strip().removesuffix("...").strip()
                    lines.append(f"  #   {g.name}: {shown}  # {g.metadata['doc']}")
    return "\n".join(lines) + "\n"
