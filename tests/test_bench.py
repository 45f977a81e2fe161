"""`edge-daemon bench`, the cached delegate choice across restarts, quantized XNNPACK.

No timing is asserted anywhere: the machines tests run on are shared and
noisy. Timings are only checked to be present and positive.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from edge_daemon import bench
from edge_daemon.config import parse_config
from edge_daemon.engine.autoselect import CACHE_FILE, CANDIDATES
from edge_daemon.engine.interpreter import DelegateSettings, build_engine, cpu_count
from edge_daemon.engine.model import load_model
from edge_daemon.engine.runtimes import load_runtime
from edge_daemon.pipeline import Classifier
from edge_daemon.sources.files import decode_image
from tests.helpers import (
    IMAGES,
    LABELS,
    MODELS,
    RUNTIMES,
    first_name,
    missing,
    run_cli,
    runtime_available,
    shared_file,
)

MODEL = "mobilenet_v1_1.0_224_quant.tflite"
ROW_KEYS = {
    "runtime",
    "version",
    "delegate",
    "threads",
    "error",
    "invokes",
    "frames",
    "bare_ms",
    "bare_fps",
    "pipeline_ms",
    "pipeline_fps",
    "ratio",
    "stages",
    "top1",
    "top1_matches_cpu",
}
STAGE_KEYS = {"decode_ms", "preprocess_ms", "invoke_ms", "postprocess_ms"}


def _available() -> list[str]:
    found = [name for name in RUNTIMES if runtime_available(name)]
    if not found:
        missing("a TFLite runtime")
    return found


@pytest.fixture(scope="module")
def bench_json(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One `edge-daemon bench --frames 3 --json` run on the sample images, shared by the tests."""
    tmp = tmp_path_factory.mktemp("bench")
    cfg = tmp / "config.yaml"
    cfg.write_text(
        json.dumps(  # JSON is YAML
            {
                "model": {"path": str(shared_file(MODELS / MODEL)), "labels": str(LABELS)},
                "source": {"kind": "files", "path": str(shared_file(IMAGES))},
                "daemon": {"state_dir": str(tmp / "state")},
            }
        )
    )
    proc = run_cli("bench", "--config", str(cfg), "--frames", "3", "--json", timeout=600)
    assert proc.returncode == 0, proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def test_bench_json_has_a_row_per_runtime_delegate_and_thread_count(
    bench_json: dict[str, Any],
) -> None:
    runtimes = _available()
    threads = bench.thread_counts(cpu_count())
    got = [(r["runtime"], r["delegate"], r["threads"]) for r in bench_json["cases"]]
    want = [(rt, d, t) for rt in runtimes for d in ("xnnpack", "cpu") for t in threads]
    assert got == want
    assert set(bench_json["runtimes"]) == set(runtimes)
    assert bench_json["machine"]["cores"] == cpu_count()
    assert bench_json["model"]["input"] == "224x224 uint8"
    assert (
        bench_json["model"]["sha256"] == hashlib.sha256((MODELS / MODEL).read_bytes()).hexdigest()
    )


def test_bench_rows_carry_every_figure(bench_json: dict[str, Any]) -> None:
    frames = bench_json["frames"]
    assert frames["kind"] == "files"
    assert frames["per_case"] == 3
    # The folder holds 7 images and two non-image files, which are skipped.
    assert frames["count"] == 7
    for row in bench_json["cases"]:
        assert set(row) == ROW_KEYS, row
        # The standard model runs on both delegates of both runtimes.
        assert row["error"] is None, row
        assert row["invokes"] == 3 and row["frames"] == 3
        for key in ("bare_ms", "bare_fps", "pipeline_ms", "pipeline_fps", "ratio"):
            assert isinstance(row[key], float) and row[key] > 0, (key, row)
        assert set(row["stages"]) == STAGE_KEYS
        assert row["stages"]["invoke_ms"] > 0
        assert row["stages"]["decode_ms"] > 0  # files are decoded in the pipeline
        assert all(v >= 0 for v in row["stages"].values())
        assert len(row["top1"]) == frames["count"]
    path = bench_json["frame_path"]
    assert path["decode_ms"] > 0 and path["resize_ms"] > 0
    assert path["quantize_ms"] >= 0
    assert bench_json["summary"].startswith("fastest: ")


def test_bench_rows_agree_with_the_cpu_path(bench_json: dict[str, Any]) -> None:
    for runtime in _available():
        rows = [r for r in bench_json["cases"] if r["runtime"] == runtime]
        cpu = [r for r in rows if r["delegate"] == "cpu"]
        # The built-in kernels are deterministic: the same answers at any thread count.
        assert all(r["top1"] == cpu[0]["top1"] for r in cpu)
        assert cpu[0]["top1_matches_cpu"] is None  # the reference itself
        for row in rows:
            if row is not cpu[0]:
                assert row["top1_matches_cpu"] is True, row


def test_bench_table_names_the_fastest_case(
    write_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runtime = _available()[0]
    monkeypatch.setattr(bench, "BENCH_RUNTIMES", (runtime,))
    monkeypatch.setattr(bench, "thread_counts", lambda cores: [1])
    cfg = parse_config(write_config(runtime=runtime).read_text())
    assert bench.run_bench(cfg, frames=2, as_json=False) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"edge-daemon bench: {MODEL} (224x224 uint8), 7 ")
    assert out[1].split()[:3] == ["runtime", "delegate", "thr"]
    rows = [line for line in out if line.startswith(runtime)]
    assert [r.split()[2] for r in rows] == ["xnnpack", "cpu"]
    assert any(line.startswith("frame path") for line in out)
    assert out[-1].startswith(f"fastest: {runtime} ")
    assert "dominates" in out[-1]


def test_a_camera_source_is_benched_on_synthetic_640x480_frames() -> None:
    cfg = parse_config("source: {kind: picamera2}")
    frames, note = bench.load_frames(cfg, (224, 224))
    assert note.startswith("4 synthetic 640x480 RGB frames (source.kind is picamera2)")
    for f in frames:
        assert f.data is None and f.pixels is not None
        assert f.pixels.shape == (480, 640, 3) and f.pixels.dtype == np.uint8
    # Deterministic, and not flat (a flat frame would tell a classifier nothing).
    again, _ = bench.load_frames(cfg, (224, 224))
    assert all(np.array_equal(a.pixels, b.pixels) for a, b in zip(frames, again))  # type: ignore[arg-type]
    assert all(float(f.pixels.std()) > 10 for f in frames)  # type: ignore[union-attr]


# -- the cached choice of delegates: auto ----------------------------------------------------
def test_second_start_reuses_the_cached_delegate(
    write_config: Callable[..., Path], runtime_name: str, tmp_path: Path
) -> None:
    cfg = write_config(runtime=runtime_name, delegates="auto")
    cache = tmp_path / "state" / CACHE_FILE
    assert not cache.exists()

    first = run_cli("run", "--config", str(cfg), "--max-frames", "1")
    assert first.returncode == 0, first.stderr
    assert "chosen for" in first.stderr and "(cached choice)" not in first.stderr
    data = json.loads(cache.read_text())
    sha = hashlib.sha256((MODELS / MODEL).read_bytes()).hexdigest()
    [(key, entry)] = data.items()
    assert key.startswith(f"{sha}|{runtime_name}|")
    assert key.endswith(f"|threads={cpu_count()}")
    chosen = entry["delegate"]
    assert chosen in CANDIDATES
    assert entry["model"] == MODEL
    assert set(entry["measured"]) == set(CANDIDATES)
    before = cache.read_bytes()

    second = run_cli("run", "--config", str(cfg), "--max-frames", "1")
    assert second.returncode == 0, second.stderr
    assert f"delegate {chosen} for {MODEL} (cached choice)" in second.stderr
    assert "chosen for" not in second.stderr  # nothing was measured again
    assert f"with delegate {chosen}," in second.stderr
    assert cache.read_bytes() == before


# -- tflite-runtime's XNNPACK on a quantized graph --------------------------------------------
def test_tflite_runtime_xnnpack_claims_the_quantized_graph_and_matches_cpu(
    expected: dict[str, Any],
) -> None:
    if not runtime_available("tflite_runtime"):
        missing("runtime tflite_runtime")
    runtime = load_runtime("tflite_runtime")
    path = str(shared_file(MODELS / MODEL))
    engine = build_engine(path, runtime, "xnnpack", DelegateSettings(threads=2))
    try:
        assert engine.input.dtype == np.uint8  # a quantized graph
        assert engine.delegated_nodes() > 0
    finally:
        engine.close()

    tops = {}
    for delegate in ("xnnpack", "cpu"):
        cfg = parse_config(
            json.dumps(
                {
                    "model": {"path": path, "labels": str(LABELS)},
                    "engine": {"runtime": "tflite_runtime", "delegates": [delegate]},
                }
            )
        )
        model = load_model(cfg, runtime)
        try:
            assert model.engine.delegate == delegate
            if delegate == "xnnpack":
                assert model.engine.delegated_nodes() > 0
            clf = Classifier(model, top_k=3, min_score=0.0, resize="stretch")
            image = decode_image(shared_file(IMAGES / "grace_hopper.bmp"), (224, 224))
            top = clf.classify(image).top1
            assert top is not None
            tops[delegate] = (top.index, first_name(top.label))
        finally:
            model.close()
    assert tops["xnnpack"] == tops["cpu"]
    assert tops["xnnpack"][1] == expected["images"]["grace_hopper.bmp"]["top1"]
