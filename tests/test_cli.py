"""The ``edge-daemon`` command as a user runs it: one clear line for every bad input, outputs."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.helpers import IMAGES, LABELS, MODELS, first_name, run_cli, shared_file

WriteConfig = Callable[..., Path]
ERROR = "edge-daemon: error: "


def one_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The one error line of a failed command (never a traceback)."""
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("edge-daemon:")]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith(ERROR), errors[0]
    return errors[0][len(ERROR) :]


# -- no runtime importable -----------------------------------------------------------------


@pytest.fixture
def no_runtime(tmp_path: Path) -> dict[str, str]:
    """PYTHONPATH for a Python in which every TFLite runtime fails to import."""
    shim = tmp_path / "shim"
    for package in ("ai_edge_litert", "tflite_runtime", "tensorflow"):
        (shim / package).mkdir(parents=True)
        (shim / package / "__init__.py").write_text(
            f'raise ImportError("No module named {package!r} (hidden by the test)")\n'
        )
    return {"PYTHONPATH": str(shim)}


@pytest.mark.parametrize("command", ["check", "run", "classify"])
def test_no_runtime_gives_one_line_naming_the_extras(
    write_config: WriteConfig, no_runtime: dict[str, str], command: str
) -> None:
    cfg = write_config(delegates=["xnnpack"])
    args = [command, "--config", str(cfg)]
    if command == "classify":
        args.append(str(shared_file(IMAGES / "parrot.jpg")))
    proc = run_cli(*args, env=no_runtime)
    message = one_error(proc)
    assert proc.returncode == 4
    assert message.startswith("no TFLite runtime could be imported")
    assert "edge-daemon[litert]" in message and "edge-daemon[tflite]" in message


def test_a_forced_runtime_that_is_missing(
    write_config: WriteConfig, no_runtime: dict[str, str]
) -> None:
    cfg = write_config(runtime="tflite_runtime", delegates=["xnnpack"])
    message = one_error(run_cli("check", "--config", str(cfg), env=no_runtime))
    assert message.startswith("engine.runtime: tflite_runtime could not be imported")
    assert "edge-daemon[tflite]" in message
    assert message.endswith("or set engine.runtime: auto")


# -- bad configs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("model:\n  path: m.tflite\n  top_k: 0\n", "3: model.top_k: must be between 1 and 1000"),
        ("model:\n  path: m.tflite\n  topk: 3\n", "3: model.topk: unknown key (did you mean"),
        ("engine:\n  threads: two\n", "2: engine.threads: must be an integer (got 'two')"),
        ("source:\n  fps: -1\n", "2: source.fps: must be between 0.01 and 1000 (got -1)"),
        ("outputs:\n  prediction_log_mode: sometimes\n", "2: outputs.prediction_log_mode: must be"),
        ("cameras: {}\n", "1: cameras: unknown section"),
        ("model:\n  path: [m.tflite\n", "3: not valid YAML: "),  # the line where it noticed
        ("model:\n  path: !custom m.tflite\n", "2: unsupported YAML"),
        ("model:\n  ? [a, b]\n  : 1\n", "2: model: keys must be plain names"),
    ],
)
@pytest.mark.parametrize("command", ["check", "run"])
def test_bad_config_gives_file_line_key_path(
    tmp_path: Path, text: str, expected: str, command: str
) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(text)
    proc = run_cli(command, "--config", str(cfg))
    message = one_error(proc)
    assert proc.returncode == 2
    assert message.startswith(f"{cfg}:{expected}")
    assert proc.stdout == ""


def test_missing_config_file(tmp_path: Path) -> None:
    proc = run_cli("check", "--config", str(tmp_path / "nope.yaml"))
    assert one_error(proc) == (
        f"{tmp_path / 'nope.yaml'}: config file not found; pass --config with an existing file"
    )


def test_relative_paths_in_the_config_resolve_against_its_folder(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "models").mkdir(parents=True)
    small = shared_file(MODELS / "mobilenet_v1_0.25_128_quant.tflite")
    shutil.copyfile(small, site / "models" / "m.tflite")
    shutil.copyfile(shared_file(LABELS), site / "models" / "labels.txt")
    (site / "config.yaml").write_text(
        "model: {path: models/m.tflite, labels: models/labels.txt}\n"
        "engine: {delegates: [xnnpack]}\n"
        "outputs: {prediction_log: out/p.jsonl, status_file: out/status.json}\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = run_cli("check", "--json", "--config", "../site/config.yaml", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert Path(summary["model"]) == site.resolve() / "models" / "m.tflite"
    assert Path(summary["prediction_log"]) == site.resolve() / "out" / "p.jsonl"


# -- bad models --------------------------------------------------------------------------------


def test_broken_model_gives_one_line(write_config: WriteConfig) -> None:
    cfg = write_config(model="model_invoking_error.tflite", delegates=["xnnpack"])
    proc = run_cli("check", "--config", str(cfg))
    message = one_error(proc)
    assert proc.returncode == 3
    assert message.startswith(str(MODELS / "model_invoking_error.tflite") + ": ")
    assert "fake-op-double" in message


def test_edgetpu_model_without_edgetpu(write_config: WriteConfig) -> None:
    cfg = write_config(model="mobilenet_v1_0.75_192_quant_edgetpu.tflite")
    message = one_error(run_cli("check", "--config", str(cfg)))
    assert "compiled for the Edge TPU" in message
    assert "a plain (non-Edge TPU) model is needed" in message
    assert "set model.cpu_fallback" in message


def test_edgetpu_model_with_cpu_fallback_runs(
    write_config: WriteConfig, expected: dict[str, Any]
) -> None:
    plain = str(shared_file(MODELS / "mobilenet_v1_1.0_224_quant.tflite"))
    cfg = write_config(
        model="mobilenet_v1_0.75_192_quant_edgetpu.tflite",
        delegates=["edgetpu", "xnnpack"],
        overrides={"model": {"cpu_fallback": plain}},
    )
    proc = run_cli("classify", "--config", str(cfg), "--json", str(IMAGES / "parrot.jpg"))
    assert proc.returncode == 0, proc.stderr
    top = json.loads(proc.stdout)["predictions"][0]["label"]
    assert first_name(top) == expected["images"]["parrot.jpg"]["top1"]
    warnings = [line for line in proc.stderr.splitlines() if " WARNING " in line]
    assert len(warnings) == 1 and "delegate edgetpu unavailable" in warnings[0]


def test_label_count_mismatch_names_both_counts(write_config: WriteConfig, tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"class {i}" for i in range(999)) + "\n")
    cfg = write_config(labels=str(labels), delegates=["xnnpack"])
    message = one_error(run_cli("check", "--config", str(cfg)))
    assert message.startswith(f"{labels}: 999 labels do not match the 1001 outputs of")


def test_missing_model_file(write_config: WriteConfig, tmp_path: Path) -> None:
    cfg = write_config(model=str(tmp_path / "absent.tflite"))
    message = one_error(run_cli("check", "--config", str(cfg)))
    assert message == (
        f"{tmp_path / 'absent.tflite'}: model file not found;"
        " run 'edge-daemon models fetch' or fix model.path"
    )


# -- check -----------------------------------------------------------------------------------


def test_check_names_the_delegate_and_runtime(write_config: WriteConfig, runtime_name: str) -> None:
    cfg = write_config(runtime=runtime_name, delegates=["xnnpack"])
    text = run_cli("check", "--config", str(cfg))
    assert text.returncode == 0, text.stderr
    rows = dict(line.split(None, 1) for line in text.stdout.splitlines()[:-1])
    assert rows["delegate"] == "xnnpack"
    assert rows["runtime"].startswith(f"{runtime_name} ")
    assert rows["input"].startswith("224x224 uint8")
    assert rows["labels"].startswith("1001 from ")
    assert text.stdout.splitlines()[-1] == "ok: the config is valid and the model runs"


def test_check_json(write_config: WriteConfig) -> None:
    cfg = write_config(delegates=["cpu"])
    proc = run_cli("check", "--json", "--config", str(cfg))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["delegate"] == "cpu"
    assert summary["config"] == str(cfg)
    assert summary["output"] == "[1, 1001] uint8"
    assert summary["mqtt"] == "off"


def test_check_names_the_broker(write_config: WriteConfig) -> None:
    mqtt = {"host": "broker.lan", "port": 8883, "tls": {}}
    cfg = write_config(delegates=["cpu"], overrides={"mqtt": mqtt})
    proc = run_cli("check", "--json", "--config", str(cfg))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["mqtt"] == "broker.lan:8883 (tls)"


def test_check_says_when_labels_are_offset_by_one(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(shared_file(LABELS).read_text().splitlines()[1:]) + "\n")
    cfg = write_config(labels=str(labels), delegates=["xnnpack"])
    proc = run_cli("check", "--json", "--config", str(cfg))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["labels"] == (
        f"1000 from {labels} (offset by one: background class 0)"
    )


# -- classify ----------------------------------------------------------------------------------


def test_classify_json_shape(write_config: WriteConfig, tmp_path: Path) -> None:
    cfg = write_config(delegates=["xnnpack"])
    shutil.copyfile(shared_file(IMAGES / "cat.bmp"), tmp_path / "cat.bmp")
    images = ["cat.bmp", str(IMAGES / "parrot.jpg")]
    proc = run_cli(
        "classify", "--config", str(cfg), "--json", "--top-k", "3", *images, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2
    records = [json.loads(line) for line in lines]
    assert [r["image"] for r in records] == images  # as given on the command line
    for r in records:
        assert set(r) == {"image", "predictions"}
        assert len(r["predictions"]) == 3
        for p in r["predictions"]:
            assert set(p) == {"label", "index", "score"}
            assert isinstance(p["label"], str) and isinstance(p["index"], int)
            assert isinstance(p["score"], float)


def test_classify_skips_an_unreadable_image_and_fails_at_the_end(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    cfg = write_config(delegates=["xnnpack"])
    junk = tmp_path / "notes.jpg"
    junk.write_text("not an image")
    parrot = str(IMAGES / "parrot.jpg")
    proc = run_cli("classify", "--config", str(cfg), "--json", str(junk), parrot)
    assert proc.returncode == 1
    assert [json.loads(line)["image"] for line in proc.stdout.splitlines()] == [parrot]
    said = [line for line in proc.stderr.splitlines() if line.startswith("edge-daemon:")]
    assert said == [f"edge-daemon: {junk}: not a readable image (not a known image format)"]


def test_classify_text_output_and_top_k(
    write_config: WriteConfig, expected: dict[str, Any]
) -> None:
    cfg = write_config(delegates=["xnnpack"], overrides={"model": {"top_k": 2}})
    parrot = str(IMAGES / "parrot.jpg")
    proc = run_cli("classify", "--config", str(cfg), parrot)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"{parrot}:"
    assert len(lines) == 3
    assert expected["images"]["parrot.jpg"]["top1"] in lines[1]


def test_classify_min_score_drops_weak_predictions(write_config: WriteConfig) -> None:
    cfg = write_config(delegates=["xnnpack"], overrides={"model": {"top_k": 10, "min_score": 0.05}})
    images = [str(IMAGES / name) for name in ("parrot.jpg", "hot_dog.jpg")]
    proc = run_cli("classify", "--config", str(cfg), "--json", *images)
    assert proc.returncode == 0, proc.stderr
    for line in proc.stdout.splitlines():
        scores = [p["score"] for p in json.loads(line)["predictions"]]
        assert scores and all(score >= 0.05 for score in scores)
        assert len(scores) < 10  # a softmax over 1001 classes has few above 0.05


def test_classify_with_a_metadata_model_on_the_command_line(
    write_config: WriteConfig, expected: dict[str, Any]
) -> None:
    # --model without --labels: the labels packed in the model.
    cfg = write_config(delegates=["xnnpack"])
    model = str(MODELS / "mobilenet_v1_1.0_224_quant_metadata.tflite")
    parrot = str(IMAGES / "parrot.jpg")
    proc = run_cli("classify", "--config", str(cfg), "--model", model, "--json", parrot)
    assert proc.returncode == 0, proc.stderr
    top = json.loads(proc.stdout)["predictions"][0]
    assert first_name(top["label"]) == expected["images"]["parrot.jpg"]["top1"]
    # The packed labels line up with the outputs as the labels file does (no offset).
    names = [first_name(line) for line in shared_file(LABELS).read_text().splitlines()]
    assert top["index"] == names.index(first_name(top["label"]))


def test_classify_top_k_out_of_range(write_config: WriteConfig) -> None:
    cfg = write_config(delegates=["xnnpack"])
    proc = run_cli("classify", "--config", str(cfg), "--top-k", "0", str(IMAGES / "parrot.jpg"))
    assert one_error(proc) == "--top-k: must be between 1 and 1000 (got 0)"


# -- tail ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prediction log written by a real ``run`` (6 frames, looping over the images)."""
    folder = tmp_path_factory.mktemp("logged")
    cfg = folder / "config.yaml"
    cfg.write_text(
        json.dumps(
            {
                "model": {
                    "path": str(shared_file(MODELS / "mobilenet_v1_0.25_128_quant.tflite")),
                    "labels": str(shared_file(LABELS)),
                },
                "engine": {"delegates": ["xnnpack"]},
                "source": {"path": str(shared_file(IMAGES)), "loop": True},
                "outputs": {"prediction_log": str(folder / "p.jsonl"), "status_file": None},
                "http": {"listen": None},
            }
        )
    )
    proc = run_cli("run", "--config", str(cfg), "--max-frames", "6")
    assert proc.returncode == 0, proc.stderr
    return folder / "p.jsonl"


def tail_config(write_config: WriteConfig, log: Path) -> Path:
    return write_config(overrides={"outputs": {"prediction_log": str(log)}})


def test_tail_shows_the_last_lines_readably(
    logged: Path, write_config: WriteConfig, tmp_path: Path
) -> None:
    log = tmp_path / "p.jsonl"
    shutil.copyfile(logged, log)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    proc = run_cli("tail", "-n", "3", "--config", str(tail_config(write_config, log)))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3
    for line, rec in zip(lines, records[-3:]):
        best = first_name(rec["predictions"][0]["label"])
        assert line.startswith(f"{rec['ts']}  #{rec['frame']} {rec['image']}  {best} ")


def test_tail_skips_a_torn_last_line(
    logged: Path, write_config: WriteConfig, tmp_path: Path
) -> None:
    log = tmp_path / "p.jsonl"
    whole = logged.read_text()
    log.write_text(whole + '{"ts":"2026-11-21T08:10:00.000Z","frame":7,"image":"x.jpg","predic')
    cfg = tail_config(write_config, log)
    proc = run_cli("tail", "-n", "2", "--config", str(cfg))
    assert proc.returncode == 0, proc.stderr
    frames = [line.split()[1] for line in proc.stdout.splitlines()]
    assert frames == ["#5", "#6"]
    raw = run_cli("tail", "-n", "2", "--raw", "--config", str(cfg))
    assert raw.stdout.splitlines() == whole.splitlines()[-2:]


def test_tail_skips_a_foreign_line(logged: Path, write_config: WriteConfig, tmp_path: Path) -> None:
    log = tmp_path / "p.jsonl"
    log.write_text(logged.read_text() + "this is not JSON\n")
    proc = run_cli("tail", "-n", "2", "--config", str(tail_config(write_config, log)))
    assert proc.returncode == 0, proc.stderr
    assert [line.split()[1] for line in proc.stdout.splitlines()] == ["#6"]


def test_tail_without_a_log(write_config: WriteConfig, tmp_path: Path) -> None:
    log = tmp_path / "absent.jsonl"
    message = one_error(run_cli("tail", "--config", str(tail_config(write_config, log))))
    assert message == f"{log}: no prediction log yet; start the daemon first"
