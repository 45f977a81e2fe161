"""The YAML config: defaults, strict validation with file:line: key.path, relative paths."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from edge_daemon.config import load_config, parse_config
from edge_daemon.errors import ConfigError


def config_error(text: str, name: str = "config.yaml") -> str:
    """The one-line message a bad config gives."""
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), name=name, base=Path("/srv"))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_the_issue_example_top_k_zero() -> None:
    text = """\
        # edge-daemon
        model:
          path: m.tflite
          top_k: 0
        """
    assert config_error(text) == "config.yaml:4: model.top_k: must be between 1 and 1000 (got 0)"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "model:\n  path: m.tflite\n  min_score: 1.5\n",
            "config.yaml:3: model.min_score: must be between 0 and 1 (got 1.5)",
        ),
        (
            "model:\n  top_k: 1001\n",
            "config.yaml:2: model.top_k: must be between 1 and 1000 (got 1001)",
        ),
        (
            "source:\n  kind: files\n  fps: 0\n",
            "config.yaml:3: source.fps: must be between 0.01 and 1000 (got 0)",
        ),
        (
            "engine:\n  threads: 0\n",
            "config.yaml:2: engine.threads: must be between 1 and 64 (got 0)",
        ),
        (
            "outputs:\n  max_bytes: 10\n",
            "config.yaml:2: outputs.max_bytes: must be between 1024 and 1099511627776 (got 10)",
        ),
        (
            "model:\n  std: 0\n",
            "config.yaml:2: model.std: must be between 1e-09 and 1000000 (got 0)",
        ),
        (
            "model:\n  min_score: .nan\n",
            "config.yaml:2: model.min_score: must be between 0 and 1 (got .nan)",
        ),
    ],
)
def test_out_of_range_values(text: str, expected: str) -> None:
    assert config_error(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("model:\n  top_k: ten\n", "2: model.top_k: must be an integer (got 'ten')"),
        ("model:\n  top_k: 2.5\n", "2: model.top_k: must be an integer (got 2.5)"),
        ("model:\n  top_k: true\n", "2: model.top_k: must be an integer (got true)"),
        ("source:\n  loop: maybe\n", "2: source.loop: must be true or false (got 'maybe')"),
        ("model:\n  path: 3\n", "2: model.path: must be a non-empty string (got 3)"),
        ("model:\n  path: null\n", "2: model.path: must be a non-empty string (got null)"),
        ("source:\n  fps: [1, 2]\n", "2: source.fps: must be a single value, not a list"),
        ("model: [1, 2]\n", "1: model: must be a mapping of keys (got [1, 2])"),
        (
            "preprocess:\n  resize: fit\n",
            "2: preprocess.resize: must be one of stretch, crop (got 'fit')",
        ),
        (
            "engine:\n  delegates: [xnnpack, tpu]\n",
            "2: engine.delegates: must be one of edgetpu, gpu, xnnpack, cpu (got 'tpu')",
        ),
        (
            "engine:\n  delegates: fast\n",
            "2: engine.delegates: must be auto or a list of edgetpu, gpu, xnnpack, cpu"
            " (got 'fast')",
        ),
        ("engine:\n  delegates: []\n", "2: engine.delegates: must not be an empty list"),
        (
            "engine:\n  delegates: [cpu, cpu]\n",
            "2: engine.delegates: must not repeat an entry (got [cpu, cpu])",
        ),
        (
            "daemon:\n  log_level: info\n",
            "2: daemon.log_level: must be one of DEBUG, INFO, WARNING, ERROR (got 'info')",
        ),
    ],
)
def test_wrong_types(text: str, expected: str) -> None:
    assert config_error(text) == f"config.yaml:{expected}"


def test_unknown_key_suggests_the_close_one() -> None:
    message = config_error("model:\n  path: m.tflite\n  topk: 3\n")
    assert message.startswith("config.yaml:3: model.topk: unknown key (did you mean model.top_k?)")
    assert "known keys: path, labels" in message


def test_unknown_section() -> None:
    message = config_error("engine: {}\nmodle:\n  path: m.tflite\n")
    assert message.startswith("config.yaml:2: modle: unknown section (did you mean model?)")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"\\r": null\n', "config.yaml:1: '\\r': unknown section;"),
        ('"\\n": 1\n', "config.yaml:1: '\\n': unknown section;"),
        ('"": 1\n', "config.yaml:1: '': unknown section;"),
        ('model:\n  " top_k": 3\n', "config.yaml:2: model.' top_k': unknown key (did you mean"),
    ],
)
def test_an_unknown_key_that_is_not_a_plain_name_is_quoted_on_one_line(
    text: str, expected: str
) -> None:
    message = config_error(text)
    assert message.startswith(expected) and "\n" not in message and "\r" not in message


def test_key_given_twice() -> None:
    message = config_error("model:\n  top_k: 3\n  top_k: 4\n")
    assert message == "config.yaml:3: model.top_k: given twice"


def test_cross_check_retry_max_below_retry_initial() -> None:
    message = config_error("source:\n  retry_initial: 5\n  retry_max: 1\n")
    assert message.startswith("config.yaml:3: source.retry_max: must be at least")


def test_odd_camera_size_is_rejected_for_the_camera_only() -> None:
    message = config_error("source:\n  kind: picamera2\n  width: 641\n")
    assert message == "config.yaml:3: source.width: must be even for the camera (got 641)"
    assert parse_config("source:\n  kind: files\n  width: 641\n").source.width == 641


def test_invalid_yaml_names_the_line() -> None:
    message = config_error("model:\n  path: m.tflite\n  top_k: [1\n")
    assert message.startswith("config.yaml:")
    assert "not valid YAML" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Tags the safe loader cannot build, and a YAML merge key.
        ("model:\n  path: !foo m.tflite\n", "config.yaml:2: unsupported YAML: "),
        ("model:\n  path: !!python/object:os.system x\n", "config.yaml:2: unsupported YAML: "),
        ("model:\n  top_k: 3\n  <<: {top_k: 3}\n", "config.yaml:3: unsupported YAML: "),
        # A list or mapping used as a key.
        ("model:\n  ? [a, b]\n  : 1\n", "config.yaml:2: model: keys must be plain names"),
        ("engine: {}\n? {a: 1}\n: 1\n", "config.yaml:2: keys must be plain names"),
    ],
)
def test_unusual_yaml_is_a_config_error_with_its_line(text: str, expected: str) -> None:
    assert config_error(text).startswith(expected)


def test_empty_file_and_empty_sections_mean_defaults() -> None:
    assert parse_config("", base=Path("/srv")) == parse_config("model:\n", base=Path("/srv"))
    cfg = parse_config("model:\n", base=Path("/srv"))
    assert cfg.model.top_k == 10
    assert cfg.engine.delegates == "auto"
    assert cfg.preprocess.resize == "stretch"
    assert cfg.outputs.prediction_log_mode == "every"


def test_values_are_read() -> None:
    cfg = parse_config(
        textwrap.dedent(
            """\
            model: {path: m.tflite, labels: null, top_k: 3, min_score: 0.25, mean: 0, std: 255}
            preprocess: {resize: crop}
            engine: {runtime: tflite_runtime, delegates: [edgetpu, xnnpack], threads: 2}
            source: {loop: true, fps: 20}
            outputs: {prediction_log: null, prediction_log_mode: change, heartbeat: 5}
            """
        ),
        base=Path("/srv"),
    )
    assert cfg.model.labels is None
    assert (cfg.model.top_k, cfg.model.min_score, cfg.model.mean, cfg.model.std) == (
        3,
        0.25,
        0.0,
        255.0,
    )
    assert isinstance(cfg.model.mean, float)
    assert cfg.preprocess.resize == "crop"
    assert cfg.engine.runtime == "tflite_runtime"
    assert cfg.engine.delegates == ["edgetpu", "xnnpack"]
    assert cfg.engine.threads == 2
    assert cfg.source.loop is True and cfg.source.fps == 20.0
    assert cfg.outputs.prediction_log is None
    assert cfg.outputs.prediction_log_mode == "change" and cfg.outputs.heartbeat == 5.0


def test_relative_paths_resolve_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc" / "edge"
    folder.mkdir(parents=True)
    config = folder / "config.yaml"
    config.write_text(
        textwrap.dedent(
            """\
            model:
              path: models/m.tflite
              labels: ../labels.txt
              cpu_fallback: plain.tflite
            source: {path: samples}
            outputs: {prediction_log: out/p.jsonl, status_file: /var/run/status.json}
            daemon: {state_dir: state}
            """
        )
    )
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config("../etc/edge/config.yaml")
    assert Path(cfg.model.path) == folder.resolve() / "models" / "m.tflite"
    assert Path(cfg.model.labels or "").resolve() == (tmp_path / "etc" / "labels.txt").resolve()
    assert Path(cfg.model.cpu_fallback or "") == folder.resolve() / "plain.tflite"
    assert Path(cfg.source.path) == folder.resolve() / "samples"
    assert Path(cfg.outputs.prediction_log or "") == folder.resolve() / "out" / "p.jsonl"
    assert cfg.outputs.status_file == "/var/run/status.json"
    assert Path(cfg.daemon.state_dir) == folder.resolve() / "state"
    assert cfg.file == "../etc/edge/config.yaml"


def test_home_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = parse_config("model:\n  path: ~/m.tflite\n", base=Path("/srv"))
    assert Path(cfg.model.path) == tmp_path / "m.tflite"


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_config_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"model:\n  path: caf\xe9.tflite\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


def test_error_names_the_file_it_came_from(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("model:\n  top_k: 0\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}:2: model.top_k:")


def test_environment_variable_names_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "from-env.yaml"
    path.write_text("model:\n  top_k: 7\n")
    monkeypatch.setenv("EDGE_DAEMON_CONFIG", str(path))
    cfg = load_config(None)
    assert cfg.model.top_k == 7
    assert cfg.file == str(path)


# -- mqtt -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mqtt:\n  host: b\n  password: x\n", "c.yaml:3: mqtt.password: passwords do not go in"),
        ("mqtt:\n  tls:\n    ca: x\n", "c.yaml:3: mqtt.tls.ca: unknown key; known keys: ca_file"),
        ("mqtt:\n  tls: yes\n", "c.yaml:2: mqtt.tls: must be a mapping of keys (got true)"),
        ("mqtt:\n  tls:\n    insecure: 1\n", "c.yaml:3: mqtt.tls.insecure: must be true or false"),
        ("mqtt:\n  device: my pi\n", "c.yaml:2: mqtt.device: use only letters, digits, _ and -"),
        ("mqtt:\n  topic_prefix: a/#\n", "c.yaml:2: mqtt.topic_prefix: must be a topic without"),
        ("mqtt:\n  password_file: p\n", "c.yaml:2: mqtt.password_file: a password needs mqtt.user"),
        ("mqtt:\n  qos: 3\n", "c.yaml:2: mqtt.qos: must be between 0 and 2 (got 3)"),
        ("mqtt:\n  configuration_url: pi.lan\n", "c.yaml:2: mqtt.configuration_url: must start"),
    ],
)
def test_mqtt_errors_name_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, name="c.yaml")
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


def test_mqtt_paths_resolve_against_the_config(tmp_path: Path) -> None:
    text = "mqtt:\n  host: b\n  username: u\n  password_file: pw\n  tls:\n    ca_file: ca.crt\n"
    cfg = parse_config(text, base=tmp_path)
    assert cfg.mqtt.password_file == str(tmp_path / "pw")
    assert cfg.mqtt.tls is not None and cfg.mqtt.tls.ca_file == str(tmp_path / "ca.crt")
    assert parse_config("mqtt:\n  tls: {}\n").mqtt.tls is not None  # TLS with system CAs
    assert parse_config("").mqtt.host is None  # off by default


# -- lists of mappings (events.rules) --------------------------------------------------


def test_event_rules_are_checked_item_by_item_with_key_paths_and_lines() -> None:
    text = """\
        events:
          rules:
            - name: feeder
              labels: [goldfinch]
            - name: cats
              labels: ["@cats"]
              min_frames: 0
        """
    assert config_error(text) == (
        "config.yaml:7: events.rules[1].min_frames: must be between 1 and 100000 (got 0)"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "events:\n  rules:\n    - labels: [jay]\n",
            "config.yaml:3: events.rules[0]: missing key name",
        ),
        (
            "events:\n  rules:\n    - name: a\n      labels: [jay]\n      min_scor: 1\n",
            "config.yaml:5: events.rules[0].min_scor: unknown key (did you mean"
            " events.rules[0].min_score?); known keys: name, labels, min_score, min_frames,"
            " end_after, cooldown",
        ),
        (
            "events:\n  rules: [jay]\n",
            "config.yaml:2: events.rules[0]: must be a mapping of keys (got 'jay')",
        ),
        (
            "events:\n  rules:\n    name: a\n",
            "config.yaml:3: events.rules: must be a list of mappings (got {name: a})",
        ),
        (
            "events:\n  rules:\n    - {name: a, labels: [jay]}\n    - {name: a, labels: [owl]}\n",
            "config.yaml:4: events.rules[1].name: 'a' names two rules",
        ),
        (
            "events:\n  rules:\n    - {name: bird feeder, labels: [jay]}\n",
            "config.yaml:3: events.rules[0].name: use 1 to 64 letters, digits, _ or -"
            " (got 'bird feeder')",
        ),
        (
            "events:\n  rules:\n    - {name: a, labels: []}\n",
            "config.yaml:3: events.rules[0].labels: must not be an empty list",
        ),
        (
            "model:\n  smoothing: -1\n",
            "config.yaml:2: model.smoothing: must be between 0 and 1000 (got -1)",
        ),
    ],
)
def test_bad_event_rules(text: str, expected: str) -> None:
    assert config_error(text) == expected


def test_event_rules_defaults_and_paths() -> None:
    cfg = parse_config(
        "events:\n  dir: ev\n  rules:\n    - name: feeder\n      labels: ['@birds']\n",
        base=Path("/srv"),
    )
    (rule,) = cfg.events.rules
    assert (rule.min_score, rule.min_frames, rule.end_after, rule.cooldown) == (0.5, 3, 5.0, 0.0)
    assert rule.line == 4
    assert cfg.events.dir == "/srv/ev"
    assert parse_config("").events.rules == []


def test_no_event_rules_is_an_empty_list_not_an_empty_key() -> None:
    assert config_error("events:\n  rules:\n") == (
        "config.yaml:2: events.rules: must be a list of mappings; write [] for none (got null)"
    )
    assert parse_config("events:\n  rules: []\n").events.rules == []
