"""The gate's decisions over time: motion, hold, open events, keepalive, lighting."""

from __future__ import annotations

import numpy as np

from edge_daemon.config import GateConfig
from edge_daemon.gate import ChangeGate

STILL = np.full((60, 80), 90, np.uint8)


def with_subject(x: int = 0, value: int = 200) -> np.ndarray:
    plane = STILL.copy()
    plane[20:30, x : x + 10] = value  # 100 of 4800 pixels: about 2%
    return plane


def gate(**settings: object) -> ChangeGate:
    return ChangeGate(GateConfig(mode="motion", **settings))  # type: ignore[arg-type]


def test_a_still_scene_is_classified_only_at_start_and_at_each_keepalive() -> None:
    g = gate(keepalive=60.0, hold=2.0)
    reasons = [g.decide(STILL, t * 0.5, event_open=False) for t in range(7200)]  # an hour
    classified = [(t * 0.5, r) for t, r in enumerate(reasons) if r]
    assert classified[0] == (0.0, "first")
    assert [r for _, r in classified[1:]] == ["keepalive"] * 59
    assert [t for t, _ in classified[1:4]] == [60.0, 120.0, 180.0]
    assert g.state == "watching"
    report = g.report(0.0)
    assert report["frames_seen"] == 7200 and report["frames_classified"] == 60
    assert report["skipped_share"] == round(7140 / 7200, 4)


def test_motion_then_hold_then_watching() -> None:
    g = gate(hold=2.0, keepalive=1000.0)
    assert g.decide(STILL, 0.0, False) == "first"
    assert g.decide(STILL, 0.1, False) is None and g.state == "watching"
    assert g.decide(with_subject(0), 0.2, False) == "motion" and g.state == "active"
    assert g.decide(with_subject(12), 0.3, False) == "motion"
    # The subject is gone (the background took up only 10% of it): hold, then watching.
    for t in (0.4, 1.0, 2.29):
        assert g.decide(STILL, t, False) == "hold" and g.state == "active"
    assert g.decide(STILL, 2.31, False) is None and g.state == "watching"


def test_an_open_event_keeps_inference_on() -> None:
    g = gate(hold=0.0, keepalive=1000.0)
    g.decide(STILL, 0.0, False)
    assert g.decide(STILL, 1.0, event_open=True) == "event" and g.state == "active"
    assert g.decide(STILL, 2.0, event_open=False) is None


def test_a_lighting_change_rebaselines_and_classifies_one_frame() -> None:
    g = gate(hold=2.0, keepalive=1000.0)
    g.decide(STILL, 0.0, False)
    lit = np.clip(STILL.astype(int) + 60, 0, 255).astype(np.uint8)  # every pixel brighter
    assert g.decide(lit, 1.0, False) == "lighting" and g.state == "watching"
    assert g.report(0.0)["lighting_changes"] == 1
    # The new light is the background at once: the next frames are still.
    assert [g.decide(lit, 1.0 + n / 30, False) for n in range(1, 60)] == [None] * 59
    # A subject in the new light is motion against it.
    subject = lit.copy()
    subject[20:30, :10] = 255
    assert g.decide(subject, 3.5, False) == "motion"


def test_a_flickering_light_cannot_keep_the_model_running() -> None:
    g = gate(hold=2.0, keepalive=1000.0)
    g.decide(STILL, 0.0, False)
    dark, bright = STILL, np.full(STILL.shape, 200, np.uint8)
    reasons = [g.decide(bright if n % 2 else dark, 1 + n / 30, False) for n in range(300)]
    classified = [r for r in reasons if r]
    assert classified == ["lighting"] * 5  # 10 s of flicker: one frame per hold
    assert g.report(0.0)["lighting_changes"] == 299  # every frame but the first (as before)


def first_then(g: ChangeGate, plane: np.ndarray) -> object:
    g.decide(STILL, 0.0, False)
    return g.decide(plane, 100.0, False)


def test_thresholds_decide_what_is_motion() -> None:
    small = with_subject(0)  # about 2% of the plane, 110 levels brighter
    assert first_then(gate(area_threshold=0.03, keepalive=1e9, hold=0.0), small) is None
    assert first_then(gate(area_threshold=0.01, keepalive=1e9, hold=0.0), small) == "motion"
    assert first_then(gate(pixel_threshold=120, keepalive=1e9, hold=0.0), small) is None


def test_off_classifies_everything_and_counts_it() -> None:
    g = ChangeGate(GateConfig(mode="off"))
    assert [g.decide(None, t, False) for t in range(3)] == ["off"] * 3
    report = g.report(0.0)
    assert report["state"] == "off" and report["frames_classified"] == 3
    assert "change_ratio" not in report


def test_the_report_carries_the_peak_and_where_it_was() -> None:
    g = gate(keepalive=1e9)
    g.decide(STILL, 0.0, False)
    g.decide(with_subject(70), 0.1, False)  # the right edge
    g.decide(STILL, 0.2, False)
    report = g.report(0.3)
    assert report["peak_ratio"] > report["area_threshold"] > report["change_ratio"]
    hot = [(r, c) for r, row in enumerate(report["grid"]) for c, v in enumerate(row) if v > 0]
    assert hot and all(c == 7 for _, c in hot)
    # The peak is kept for a second (the page polls once a second), then starts again.
    g.decide(STILL, 0.5, False)
    assert g.report(0.9)["peak_ratio"] == report["peak_ratio"]
    g.decide(STILL, 1.2, False)
    assert g.report(1.3)["peak_ratio"] == report["peak_ratio"]  # a second since 0.3
    g.decide(STILL, 1.4, False)
    assert g.report(1.5)["peak_ratio"] < report["area_threshold"]


def test_a_reload_keeps_the_counts_and_starts_a_new_background() -> None:
    g = gate()
    for t in range(5):
        g.decide(STILL, float(t), False)
    after = g.successor(GateConfig(mode="motion", pixel_threshold=40))
    assert after.seen == 5 and after.classified == g.classified
    assert after.decide(STILL, 10.0, False) == "first"


def test_a_camera_luma_plane_is_used_and_rgb_only_frames_are_sampled() -> None:
    from edge_daemon.config import RegionConfig
    from edge_daemon.sources.base import Frame

    rgb = np.full((120, 160, 3), 90, np.uint8)
    lores = np.full((60, 80), 90, np.uint8)
    region = RegionConfig(x=0.5, y=0.0, width=0.5, height=1.0)
    camera = gate(keepalive=1e9, hold=0.0)
    assert camera.check(Frame(rgb, "camera0", 1, 0.0, 0.0, luma=lores), region, 0.0, False) == (
        "first"
    )
    lit = lores.copy()
    lit[:20, :20] = 250  # a change the camera's Y plane shows, the RGB frame does not
    assert camera.check(Frame(rgb, "camera0", 2, 0.1, 0.0, luma=lit), region, 0.1, False) == (
        "motion"
    )
    assert camera.report(0.2)["via"] == "luma"
    software = gate(keepalive=1e9, hold=0.0)
    assert software.check(Frame(rgb, "camera0", 1, 0.0, 0.0), region, 0.0, False) == "first"
    assert software.check(Frame(rgb, "camera0", 2, 0.1, 0.0), region, 0.1, False) is None
    moved = rgb.copy()
    moved[:30, 0:20] = 250  # outside the region (the left half): no change for the gate
    assert software.check(Frame(moved, "camera0", 3, 0.2, 0.0), region, 0.2, False) is None
    moved[:30, 100:120] = 250  # inside it
    assert software.check(Frame(moved, "camera0", 4, 0.3, 0.0), region, 0.3, False) == "motion"
    assert software.report(0.4)["via"] == "software"
