"""The change detector's arithmetic: cast before subtracting, thresholds, adaptation, grid."""

from __future__ import annotations

import numpy as np

from edge_daemon.config import RegionConfig
from edge_daemon.gate.detector import ChangeDetector, grid_shares
from edge_daemon.gate.sample import gate_plane, stride


def test_a_uniform_darkening_counts_and_does_not_wrap() -> None:
    # uint8 subtraction wraps: 16 - 32 is 240, and 32 - 16 is 16. Both ways must count the same.
    for before, after in ((32, 16), (16, 32), (200, 10), (10, 200)):
        det = ChangeDetector(pixel_threshold=10, adapt_rate=0.0)
        det.compare(np.full((12, 16), before, np.uint8))
        assert det.compare(np.full((12, 16), after, np.uint8)).ratio == 1.0
    det = ChangeDetector(pixel_threshold=20, adapt_rate=0.0)
    det.compare(np.full((12, 16), 32, np.uint8))
    assert det.compare(np.full((12, 16), 16, np.uint8)).ratio == 0.0  # 16 levels: below 20


def test_the_ratio_is_the_share_of_pixels_past_the_threshold() -> None:
    det = ChangeDetector(pixel_threshold=25, adapt_rate=0.0)
    base = np.full((100, 100), 100, np.uint8)
    assert det.compare(base).first
    moved = base.copy()
    moved[:10, :20] = 200  # 10 rows of 20 pixels: 190 of the 100 x 99 neighbour pairs
    moved[50:60, :10] = 120  # 20 levels: under the threshold
    moved[80, 50] = moved[90, 52] = 255  # lone pixels (noise) have no changed neighbour
    assert det.compare(moved).ratio == 190 / 9900
    assert det.compare(base).ratio == 0.0


def test_sensor_noise_stays_under_the_threshold_and_a_small_subject_does_not() -> None:
    from tests.gate.scenes import photo

    rng = np.random.default_rng(0)
    still = photo("bird.bmp", (160, 120))[..., 1].astype(np.float64)

    def noisy(image: np.ndarray) -> np.ndarray:
        # Sigma 10: night-time noise; alone, 1.4% of the pixels pass 25 levels.
        return np.clip(image + rng.normal(0, 10, image.shape), 0, 255).astype(np.uint8)

    det = ChangeDetector(pixel_threshold=25, adapt_rate=0.05)
    det.compare(noisy(still))
    ratios = []
    for _ in range(60):
        ratios.append(det.compare(noisy(still)).ratio)
        det.adapt()
    # The background starts from one noisy frame; adapting, it averages the noise out.
    assert max(ratios[20:]) < 0.005  # gate.area_threshold's default
    bird = still.copy()
    bird[50:62, 70:82] = (still[50:62, 70:82] + 128) % 256  # 12 x 12 pixels: 0.75% of the plane
    assert det.compare(noisy(bird)).ratio > 0.005


def test_the_background_adapts_at_the_given_rate() -> None:
    det = ChangeDetector(pixel_threshold=10, adapt_rate=0.5)
    det.compare(np.zeros((4, 4), np.uint8))
    bright = np.full((4, 4), 100, np.uint8)
    ratios = [det.compare(bright).ratio for _ in range(5) if det.adapt() is None]
    # Compared before each adaptation: 100, 50, 25, 12.5 then 6.25 levels away.
    assert ratios == [1.0, 1.0, 1.0, 1.0, 0.0]
    still = ChangeDetector(pixel_threshold=10, adapt_rate=0.0)
    still.compare(np.zeros((4, 4), np.uint8))
    for _ in range(5):
        assert still.compare(bright).ratio == 1.0
        still.adapt()


def test_rebaseline_takes_the_frame_as_background() -> None:
    det = ChangeDetector(pixel_threshold=10, adapt_rate=0.01)
    det.compare(np.zeros((4, 4), np.uint8))
    lit = np.full((4, 4), 180, np.uint8)
    assert det.compare(lit).ratio == 1.0
    det.rebaseline()
    assert det.compare(lit).ratio == 0.0


def test_the_grid_says_where_the_change_is() -> None:
    mask = np.zeros((60, 80), bool)
    mask[:10, 70:] = True  # the top right cell of an 8 x 6 grid
    grid = grid_shares(mask)
    assert len(grid) == 6 and all(len(row) == 8 for row in grid)
    assert grid[0][7] == 1.0
    assert sum(map(sum, grid)) == 1.0
    assert grid_shares(None) == [[0.0] * 8 for _ in range(6)]


def test_the_plane_is_a_small_sample_of_the_region() -> None:
    image = np.zeros((480, 640, 3), np.uint8)
    image[..., 1] = 7  # green: what the software path samples
    image[240:, 320:, 1] = 99  # the bottom right quarter
    region = RegionConfig(x=0.5, y=0.5, width=0.5, height=0.5)
    plane = gate_plane(image, roi=None, luma=None, region=region, sample_width=160)
    assert plane.shape == (120, 160) and plane.dtype == np.uint8
    assert (plane == 99).all()
    whole = gate_plane(image, roi=None, luma=None, region=None, sample_width=160)
    assert whole.shape == (120, 160) and (whole == 7).mean() == 0.75
    luma = np.full((240, 320), 50, np.uint8)  # the camera's Y plane of the region wins
    from_camera = gate_plane(image, roi=None, luma=luma, region=region, sample_width=160)
    assert from_camera.shape == (120, 160) and (from_camera == 50).all()
    roi = np.full((100, 100, 3), 3, np.uint8)
    assert (gate_plane(image, roi=roi, luma=None, region=region, sample_width=160) == 3).all()
    assert stride(640, 160) == 4 and stride(100, 160) == 1 and stride(161, 160) == 2
