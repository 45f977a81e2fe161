"""The change gate's tuner on the page, in a real browser (Debian's chromium, headless)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from PIL import Image

from tests.gate.scenes import photo
from tests.web.conftest import Running
from tests.web.test_page import browser  # noqa: F401  (the module's browser fixture)

pytestmark = pytest.mark.slow
REGION = {"x": 0.5, "y": 0.0, "width": 0.5, "height": 1.0}


def put_frame(folder: Path, image: np.ndarray) -> None:
    """Replace the one frame the looping files source reads (atomically, as a camera would)."""
    tmp = folder.parent / "next.bmp"
    Image.fromarray(image).save(tmp)
    os.replace(tmp, folder / "frame.bmp")


def overlay_pixels(page: Any) -> dict[str, int]:
    """How many pixels of the overlay are drawn: the region's outline and the heat map."""
    return dict(
        page.evaluate(
            """() => {
              const c = document.querySelector('#overlay');
              const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
              let outline = 0, heat = 0;
              for (let i = 0; i < d.length; i += 4) {
                if (d[i] > 200 && d[i + 1] > 180 && d[i + 2] < 140 && d[i + 3] > 200) outline++;
                else if (d[i] > 200 && d[i + 1] < 100 && d[i + 3] > 0) heat++;
              }
              return {outline, heat};
            }"""
        )
    )


def test_the_page_shows_the_gate_and_where_the_change_is(
    browser: Any,  # noqa: F811
    run_daemon: Callable[..., Running],
    tmp_path: Path,
) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    still = photo("hot_dog.jpg", (320, 240))
    put_frame(frames, still)
    d = run_daemon(
        source=frames,
        overrides={
            "gate": {"mode": "motion", "hold": 3.0},
            "preprocess": {"region": REGION},
        },
    )
    context = browser.new_context(viewport={"width": 1100, "height": 900}, bypass_csp=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"http://127.0.0.1:{d.port}/")
    page.wait_for_function("!document.querySelector('#gate').hidden", timeout=30_000)
    page.wait_for_function(
        "document.querySelector('#gate-state').textContent === 'watching'", timeout=30_000
    )
    page.wait_for_function("document.querySelector('#live').naturalWidth > 0", timeout=30_000)
    page.wait_for_function(
        "document.querySelector('#gate-frames').textContent.includes('skipped')", timeout=30_000
    )
    page.wait_for_function("document.querySelector('#overlay').height > 0", timeout=30_000)
    assert page.inner_text("#gate-via") == "in software (RGB sample)"
    assert page.inner_text("#gate-region") == "x 0.5, y 0, 0.5 x 1 of the frame"
    drawn = overlay_pixels(page)
    assert drawn["outline"] > 200 and drawn["heat"] == 0

    # A parrot lands in the region and moves: the gate is active, the heat map shows where.
    parrot = photo("parrot.jpg", (80, 150))
    deadline = time.monotonic() + 40
    n = 0
    while True:
        moved = still.copy()
        x = 220 + (n % 2) * 6
        moved[40:190, x : x + 80] = parrot
        put_frame(frames, moved)
        n += 1
        state = page.inner_text("#gate-state")
        drawn = overlay_pixels(page)
        if state == "active" and drawn["heat"] > 100:
            break
        assert time.monotonic() < deadline, f"state {state}, overlay {drawn}"
        time.sleep(0.3)
    change = page.inner_text("#gate-change")
    assert change.startswith("change ") and "motion at 0.005" in change
    level = page.evaluate("parseFloat(document.querySelector('#gate-level').style.width)")
    mark = page.evaluate("parseFloat(document.querySelector('#gate-mark').style.left)")
    assert level > mark  # the change is past its threshold
    # Where: the heat is right of the region's middle, where the parrot is.
    heat_x = page.evaluate(
        """() => {
          const c = document.querySelector('#overlay');
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          let sum = 0, n = 0;
          for (let i = 0; i < d.length; i += 4) {
            if (d[i] > 200 && d[i + 1] < 100 && d[i + 3] > 0) { sum += (i / 4) % c.width; n++; }
          }
          return sum / n / c.width;
        }"""
    )
    assert heat_x > 0.6
    shot = tmp_path / "page-gate.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot of the gate's tuner: {shot}")
    assert errors == []
    context.close()
