"""`teach train` on real photos: held-out frames classified as the report says, the exported
model in both runtimes, embeddings cached per base model, refusals, skipped bad samples."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from edge_daemon.config import load_config
from edge_daemon.engine.model import load_model
from edge_daemon.pipeline import Classifier
from edge_daemon.sources.files import decode_image
from edge_daemon.teach.active import installed, running_config
from edge_daemon.teach.samples import SampleStore
from tests.helpers import IMAGES, MODELS, RUNTIMES, missing, run_cli, runtime_available, shared_file
from tests.teach.scenes import TASKS, write_frames

BASE = "mobilenet_v1_1.0_224_quant.tflite"
TRAIN, HELD_OUT = 6, 6


@pytest.fixture(scope="module")
def garage(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, list[Path]]]:
    """Training and held-out frames of the garage door (different seeds)."""
    root = tmp_path_factory.mktemp("garage")
    images = shared_file(IMAGES)
    return {
        "train": write_frames(images, "garage", root / "train", TRAIN, seed=1),
        "held_out": write_frames(images, "garage", root / "held-out", HELD_OUT, seed=2),
    }


def teach_config(
    write_config: Callable[..., Path], name: str = "config.yaml", **overrides: Any
) -> Path:
    return write_config(delegates=["xnnpack", "cpu"], overrides=overrides, name=name)


def add_all(config: Path, frames: dict[str, list[Path]]) -> None:
    for cls, paths in frames.items():
        r = run_cli("teach", "add", cls, *map(str, paths), "--config", str(config))
        assert r.returncode == 0, r.stderr


def train_json(config: Path, *extra: str) -> dict[str, Any]:
    r = run_cli("teach", "train", "--json", *extra, "--config", str(config), timeout=600)
    assert r.returncode == 0, r.stderr
    return dict(json.loads(r.stdout))


def test_a_taught_model_classifies_held_out_frames_as_its_report_says(
    write_config: Callable[..., Path], tmp_path: Path, garage: dict[str, dict[str, list[Path]]]
) -> None:
    config = teach_config(write_config)
    add_all(config, garage["train"])
    report = train_json(config)
    classes = sorted(TASKS["garage"])
    assert report["classes"] == classes
    assert report["counts"] == dict.fromkeys(classes, TRAIN)
    assert report["embedded"] == TRAIN * len(classes)
    base = shared_file(MODELS / BASE)
    assert report["base"]["sha256"] == hashlib.sha256(base.read_bytes()).hexdigest()
    assert report["base"]["embedding"]["dims"] == 1024
    assert len(report["confusion"]) == len(classes)
    assert sum(map(sum, report["confusion"])) == TRAIN * len(classes)
    assert report["agreement"]["checked"] == TRAIN * len(classes)
    assert report["agreement"]["ratio"] >= 0.99
    root = tmp_path / "state" / "teach"
    assert (root / "labels.txt").read_text().split("\n")[:-1] == classes
    model = (root / "model.tflite").read_bytes()
    assert hashlib.sha256(model).hexdigest() == report["model"]["sha256"]
    assert json.loads((root / "report.json").read_text())["model"] == report["model"]
    # classify (as the daemon would: the taught model, teach.use) the frames it never saw
    held = [p for paths in garage["held_out"].values() for p in paths]
    r = run_cli("classify", "--json", *map(str, held), "--config", str(config))
    assert r.returncode == 0, r.stderr
    right = 0
    for line in r.stdout.splitlines():
        got = json.loads(line)
        truth = Path(got["image"]).parent.name
        assert {p["label"] for p in got["predictions"]} <= set(classes)
        right += got["predictions"][0]["label"] == truth
    accuracy = right / len(held)
    assert accuracy >= 0.9, accuracy
    assert abs(accuracy - report["accuracy"]) <= 0.15, (accuracy, report["accuracy"])
    # A second run reuses every cached embedding.
    again = train_json(config)
    assert again["embedded"] == 0 and again["classes"] == classes


def test_the_exported_model_loads_and_agrees_in_both_runtimes(
    write_config: Callable[..., Path], tmp_path: Path, garage: dict[str, dict[str, list[Path]]]
) -> None:
    config = teach_config(write_config)
    add_all(config, garage["train"])
    report = train_json(config)
    root = str(tmp_path / "state" / "teach")
    found = installed(root)
    assert found is not None
    cfg = load_config(config)
    for name in RUNTIMES:
        if not runtime_available(name):
            missing(name)
    tops: dict[str, list[int]] = {}
    for name in RUNTIMES:
        run = dataclasses.replace(
            cfg,
            model=dataclasses.replace(cfg.model, path=found[0], labels=found[1]),
            engine=dataclasses.replace(cfg.engine, runtime=name),
        )
        model = load_model(run)
        try:
            assert model.engine.runtime.split()[0] == name
            assert model.labels.labels == tuple(report["classes"])
            clf = Classifier.from_config(model, run)
            tops[name] = [
                clf.classify(decode_image(p.read_bytes(), (224, 224))).predictions[0].index
                for paths in garage["held_out"].values()
                for p in paths
            ]
        finally:
            model.close()
    assert tops[RUNTIMES[0]] == tops[RUNTIMES[1]]


def test_a_base_model_swap_re_embeds_once_and_stranded_samples_are_refused(
    write_config: Callable[..., Path], tmp_path: Path, garage: dict[str, dict[str, list[Path]]]
) -> None:
    v1 = teach_config(write_config)
    add_all(v1, {c: p[:3] for c, p in garage["train"].items()})
    assert train_json(v1)["embedded"] == 9
    v2_model = str(shared_file(MODELS / "mobilenet_v2_1.0_224_quant.tflite"))
    v2 = teach_config(write_config, model={"path": v2_model}, name="v2.yaml")
    first = train_json(v2)
    assert first["embedded"] == 9 and first["base"]["embedding"]["dims"] == 1280
    assert train_json(v2)["embedded"] == 0
    # One more sample per class, embedded by v2 only, then its photo is lost.
    add_all(v2, {c: p[3:4] for c, p in garage["train"].items()})
    assert train_json(v2)["embedded"] == 3
    samples = tmp_path / "state" / "teach" / "samples"
    for cls in TASKS["garage"]:
        sorted((samples / cls).glob("*.jpg"))[-1].unlink()
    r = run_cli("teach", "train", "--config", str(v1), timeout=600)
    assert r.returncode == 8
    last = r.stderr.strip().splitlines()[-1]  # after the progress lines: the error, one line
    assert last.startswith("edge-daemon: error: 3 samples were embedded by another base model")
    assert "their photos are gone" in last and "Traceback" not in r.stderr


def test_a_sample_damaged_on_disk_is_skipped_and_named(
    write_config: Callable[..., Path], tmp_path: Path, garage: dict[str, dict[str, list[Path]]]
) -> None:
    config = teach_config(write_config)
    add_all(config, {c: p[:4] for c, p in garage["train"].items()})
    victim = sorted((tmp_path / "state" / "teach" / "samples" / "open").glob("*.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[:300])
    r = run_cli("teach", "train", "--config", str(config), timeout=600)
    assert r.returncode == 0, r.stderr
    assert f"skipped {victim}" in r.stdout
    report = json.loads((tmp_path / "state" / "teach" / "report.json").read_text())
    assert report["counts"]["open"] == 3 and report["skipped"][0]["file"] == str(victim)


def test_a_base_without_embeddings_is_refused(
    write_config: Callable[..., Path], tmp_path: Path, garage: dict[str, dict[str, list[Path]]]
) -> None:
    config = teach_config(write_config)
    add_all(config, {c: p[:3] for c, p in garage["train"].items()})
    bogus = tmp_path / "plain.tflite"
    shutil.copyfile(shared_file(MODELS / "model_invoking_error.tflite"), bogus)
    r = run_cli(
        "teach", "train", "--config",
        str(teach_config(write_config, teach={"base_model": str(bogus)})),
    )  # fmt: skip
    assert r.returncode != 0 and "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("edge-daemon: error: ") and str(bogus) in last
    assert not (tmp_path / "state" / "teach" / "model.tflite").exists()


def test_live_frames_the_taught_model_classified_keep_their_embedding_for_training(
    write_config: Callable[..., Path], tmp_path: Path, garage: dict[str, dict[str, list[Path]]]
) -> None:
    config = teach_config(write_config)
    add_all(config, {c: p[:3] for c, p in garage["train"].items()})
    report = train_json(config)
    cfg = load_config(config)
    taught_cfg = running_config(cfg)[0]
    taught, base = load_model(taught_cfg), load_model(cfg)
    store = SampleStore(str(tmp_path / "state" / "teach"))
    try:
        live, ref = Classifier.from_config(taught, taught_cfg), Classifier.from_config(base, cfg)
        for cls, paths in garage["held_out"].items():
            pixels = decode_image(paths[0].read_bytes(), (224, 224))
            result = live.classify(pixels)
            assert result.embedding is not None
            # The taught model's pooled features are its base's: same layers, same invoke.
            assert np.array_equal(result.embedding, ref.embed(pixels))
            s = store.add_image(
                cls, pixels, source="live", embedding=result.embedding, model_sha256=taught.sha256
            )
            assert store.embedding(s, report["base"]["sha256"]) is not None
    finally:
        taught.close()
        base.close()
    again = train_json(config)
    assert again["embedded"] == 0 and sum(again["counts"].values()) == 12


def test_model_path_may_name_the_taught_model_and_training_then_uses_its_recorded_base(
    write_config: Callable[..., Path], tmp_path: Path, garage: dict[str, dict[str, list[Path]]]
) -> None:
    config = teach_config(write_config)
    add_all(config, {c: p[:3] for c, p in garage["train"].items()})
    first = train_json(config)
    root = tmp_path / "state" / "teach"
    direct = write_config(
        model=str(root / "model.tflite"),
        labels=str(root / "labels.txt"),
        delegates=["xnnpack", "cpu"],
        overrides={"teach": {"use": False}},
        name="direct.yaml",
    )
    again = train_json(direct)
    assert again["base"]["sha256"] == first["base"]["sha256"] and again["embedded"] == 0
    run, taught = running_config(load_config(direct))
    assert taught and run.model.labels == str(root / again["model"]["generation"] / "labels.txt")
    r = run_cli("classify", "--json", str(garage["held_out"]["open"][0]), "--config", str(direct))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["predictions"][0]["label"] == "open"


def test_training_stops_before_installing_a_model_the_event_rules_cannot_run(
    write_config: Callable[..., Path], tmp_path: Path, garage: dict[str, dict[str, list[Path]]]
) -> None:
    # The feeder workflow: a rule on ImageNet's birds while the stock model runs. A taught
    # model has none of them, so the daemon could not run it; training says which rule.
    birds = {"rules": [{"name": "birds", "labels": ["@birds"], "min_frames": 2}]}
    config = teach_config(write_config, events=birds)
    add_all(config, {c: p[:3] for c, p in garage["train"].items()})
    r = run_cli("teach", "train", "--config", str(config), timeout=600)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    (last,) = r.stderr.strip().splitlines()[-1:]
    assert last.startswith("edge-daemon: error: ")
    assert "events.rules[0].labels" in last and "@birds" in last and "@any" in last
    assert installed(str(tmp_path / "state" / "teach")) is None
    anything = {"rules": [{"name": "seen", "labels": ["@any"], "min_frames": 2}]}
    report = train_json(teach_config(write_config, events=anything, name="any.yaml"))
    assert sorted(report["classes"]) == sorted(garage["train"])
    assert installed(str(tmp_path / "state" / "teach")) is not None
