"""Golden predictions (../shared/images/expected.yaml) through ``classify`` and ``run``.

Every 224x224 fixture model listed there (plain, metadata labels, int8 io,
float, v2), by both runtimes, as a user runs them: one ``classify --json``
subprocess per model and runtime over all the images, and one ``run`` over a
folder of them, read back from the prediction log. Plus the 128x128 model.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
import yaml

from tests.helpers import IMAGES, LABELS, MODELS, first_name, run_cli, shared_file


def _models_224() -> list[str]:
    """The models expected.yaml lists (read at collection, to name the tests)."""
    path = IMAGES / "expected.yaml"
    if not path.is_file():
        return ["expected.yaml-missing"]  # the `expected` fixture then skips or fails
    return [str(m) for m in yaml.safe_load(path.read_text())["models_224"]]


MODELS_224 = _models_224()
SMALL = "mobilenet_v1_0.25_128_quant.tflite"

Runner = Callable[[str, str], "Outcome"]


class Outcome:
    """One CLI run: the process and the folder it wrote into."""

    def __init__(self, proc: subprocess.CompletedProcess[str], folder: Path) -> None:
        self.proc = proc
        self.folder = folder

    def ok(self) -> None:
        assert self.proc.returncode == 0, self.proc.stderr
        assert "Traceback" not in self.proc.stderr

    def log_lines(self) -> list[dict[str, Any]]:
        text = (self.folder / "out" / "predictions.jsonl").read_text(encoding="utf-8")
        assert text.endswith("\n")
        return [json.loads(line) for line in text.splitlines()]

    def status(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.folder / "out" / "status.json").read_text())
        return data


def write_config(folder: Path, model: str, runtime: str, source: Path, top_k: int = 5) -> Path:
    """A config for one model and runtime; the metadata model runs with labels: null."""
    labels: Optional[str] = None if "_metadata" in model else str(shared_file(LABELS))
    data = {
        "model": {"path": str(shared_file(MODELS / model)), "labels": labels, "top_k": top_k},
        "engine": {"runtime": runtime, "delegates": ["xnnpack"]},
        "source": {"kind": "files", "path": str(source)},
        "outputs": {
            "prediction_log": str(folder / "out" / "predictions.jsonl"),
            "status_file": str(folder / "out" / "status.json"),
        },
        "daemon": {"state_dir": str(folder / "state")},
        "http": {"listen": None},
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def misses(expected: dict[str, Any], got: dict[str, list[str]]) -> list[str]:
    """Where predictions (image -> labels, best first) break the golden expectations."""
    out = []
    for image, want in expected["images"].items():
        assert set(want) <= {"top1", "top3"}, f"expected.yaml: unknown expectation {want}"
        if image not in got:
            out.append(f"{image}: no prediction")
            continue
        names = [first_name(label) for label in got[image]]
        if "top1" in want and names[:1] != [want["top1"]]:
            out.append(f"{image}: top-1 should be {want['top1']!r}, got {names[:3]}")
        if "top3" in want and want["top3"] not in names[:3]:
            out.append(f"{image}: {want['top3']!r} should be in the top 3, got {names[:3]}")
    return out


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory, expected: dict[str, Any]) -> Path:
    """A folder holding exactly the golden images."""
    folder = tmp_path_factory.mktemp("images")
    for name in expected["images"]:
        shutil.copyfile(shared_file(IMAGES / name), folder / name)
    return folder


@pytest.fixture(scope="module")
def classified(tmp_path_factory: pytest.TempPathFactory, image_folder: Path) -> Runner:
    """``classify --json`` over every golden image, once per (model, runtime)."""
    cache: dict[tuple[str, str], Outcome] = {}

    def get(model: str, runtime: str) -> Outcome:
        if (model, runtime) not in cache:
            folder = tmp_path_factory.mktemp("classify")
            cfg = write_config(folder, model, runtime, image_folder)
            images = [str(p) for p in sorted(image_folder.iterdir())]
            proc = run_cli("classify", "--config", str(cfg), "--json", *images)
            cache[(model, runtime)] = Outcome(proc, folder)
        return cache[(model, runtime)]

    return get


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory, image_folder: Path) -> Runner:
    """``run`` over the folder of golden images, once per (model, runtime)."""
    cache: dict[tuple[str, str], Outcome] = {}

    def get(model: str, runtime: str) -> Outcome:
        if (model, runtime) not in cache:
            folder = tmp_path_factory.mktemp("run")
            cfg = write_config(folder, model, runtime, image_folder)
            cache[(model, runtime)] = Outcome(run_cli("run", "--config", str(cfg)), folder)
        return cache[(model, runtime)]

    return get


@pytest.mark.parametrize("model", MODELS_224)
def test_classify_gives_the_golden_predictions(
    classified: Runner, expected: dict[str, Any], runtime_name: str, model: str
) -> None:
    out = classified(model, runtime_name)
    out.ok()
    records = [json.loads(line) for line in out.proc.stdout.splitlines()]
    assert [Path(r["image"]).name for r in records] == sorted(expected["images"])
    got = {Path(r["image"]).name: [p["label"] for p in r["predictions"]] for r in records}
    assert misses(expected, got) == []


@pytest.mark.parametrize("model", MODELS_224)
def test_run_gives_the_golden_predictions(
    ran: Runner, expected: dict[str, Any], runtime_name: str, model: str
) -> None:
    out = ran(model, runtime_name)
    out.ok()
    lines = out.log_lines()
    assert [line["frame"] for line in lines] == list(range(1, len(expected["images"]) + 1))
    assert sorted(line["image"] for line in lines) == sorted(expected["images"])
    assert {line["model"] for line in lines} == {model}
    got = {line["image"]: [p["label"] for p in line["predictions"]] for line in lines}
    assert misses(expected, got) == []


def test_the_metadata_model_ran_with_its_packed_labels(ran: Runner, runtime_name: str) -> None:
    name = next((m for m in MODELS_224 if "_metadata" in m), None)
    if name is None:
        pytest.skip("expected.yaml lists no metadata model")
    out = ran(name, runtime_name)
    out.ok()
    assert out.status()["labels"].startswith(str(MODELS / name) + "!")


def test_run_uses_the_runtime_the_config_forces(ran: Runner, runtime_name: str) -> None:
    out = ran(MODELS_224[0], runtime_name)
    out.ok()
    status = out.status()
    assert status["runtime"].split()[0] == runtime_name
    assert status["state"] == "stopped"
    assert status["delegate"] == "xnnpack"


def test_prediction_log_lines_have_the_documented_fields(
    ran: Runner, expected: dict[str, Any], runtime_name: str
) -> None:
    out = ran(MODELS_224[0], runtime_name)
    out.ok()
    for line in out.log_lines():
        assert line["ts"].endswith("Z")
        ts = datetime.fromisoformat(line["ts"].replace("Z", "+00:00"))
        assert ts.utcoffset() == timedelta(0)
        assert isinstance(line["frame"], int)
        assert line["model"] == MODELS_224[0]
        assert len(line["predictions"]) == 5  # model.top_k
        for p in line["predictions"]:
            assert set(p) == {"label", "index", "score"}
            assert isinstance(p["index"], int) and 0 <= p["index"] < 1001
            assert 0.0 <= p["score"] <= 1.0
        scores = [p["score"] for p in line["predictions"]]
        assert scores == sorted(scores, reverse=True)


# -- the 128x128 model ---------------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory, image_folder: Path) -> Runner:
    """``check --json`` then ``run`` with the 128x128 model, once per runtime."""
    cache: dict[tuple[str, str], Outcome] = {}

    def get(command: str, runtime: str) -> Outcome:
        if (command, runtime) not in cache:
            folder = tmp_path_factory.mktemp(f"small-{command}")
            cfg = write_config(folder, SMALL, runtime, image_folder)
            args = ["check", "--json"] if command == "check" else ["run"]
            cache[(command, runtime)] = Outcome(run_cli(*args, "--config", str(cfg)), folder)
        return cache[(command, runtime)]

    return get


def test_the_128_model_input_size(small: Runner, runtime_name: str) -> None:
    out = small("check", runtime_name)
    out.ok()
    summary = json.loads(out.proc.stdout)
    assert summary["input"].startswith("128x128 uint8")
    assert summary["runtime"].split()[0] == runtime_name


def test_the_128_model_runs(small: Runner, expected: dict[str, Any], runtime_name: str) -> None:
    # A low-accuracy model: assert only what it gets robustly right. Its top-5
    # for the parrot and the chickadee hold the golden labels.
    out = small("run", runtime_name)
    out.ok()
    lines = out.log_lines()
    assert sorted(line["image"] for line in lines) == sorted(expected["images"])
    assert {line["model"] for line in lines} == {SMALL}
    top5 = {line["image"]: [first_name(p["label"]) for p in line["predictions"]] for line in lines}
    assert expected["images"]["parrot.jpg"]["top1"] in top5["parrot.jpg"]
    assert expected["images"]["bird.bmp"]["top1"] in top5["bird.bmp"]
    assert out.status()["input"] == {"width": 128, "height": 128, "dtype": "uint8"}
