"""The page in a real browser: Debian's chromium, headless, driven by playwright.

Playwright is pointed at the system's chromium (apt ``chromium``); it never
downloads a browser. Each run keeps a screenshot under the test's folder and
prints its path.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.helpers import IMAGES, missing, require_tool, shared_file
from tests.web.conftest import Running

pytestmark = pytest.mark.slow
TOKEN = "page-token-0123456789abcdef"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = require_tool("chromium", "apt install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright (pip install playwright; it drives the system's chromium)")
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        yield b
        b.close()


def page_top1(page: Any) -> str:
    return str(page.get_attribute("#top1", "data-label") or "")


def replace_frame(folder: Path, image: str) -> None:
    """Swap the one frame the files source keeps reading (atomically, like a camera would)."""
    tmp = folder.parent / "next.jpg"
    shutil.copyfile(shared_file(IMAGES / image), tmp)
    os.replace(tmp, folder / "frame.jpg")


def test_the_page_shows_what_the_daemon_sees(
    browser: Any,
    run_daemon: Callable[..., Running],
    tmp_path: Path,
) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    replace_frame(frames, "parrot.jpg")
    rules = [{"name": "birds", "labels": ["@birds"], "min_score": 0.3, "min_frames": 2}]
    d = run_daemon(
        source=frames,
        token=TOKEN,
        http={"stream_fps": 10},
        overrides={"events": {"rules": rules, "thumbnail": 160}},
    )
    # Playwright's waits evaluate script text, which the page's policy forbids (as it
    # should); the phone test below runs with the policy in force.
    context = browser.new_context(viewport={"width": 1100, "height": 900}, bypass_csp=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # A browser logs in once with the token in the address, then holds a cookie.
    page.goto(f"http://127.0.0.1:{d.port}/?token={TOKEN}")
    assert page.url == f"http://127.0.0.1:{d.port}/"

    def same_as_status() -> str:
        label = str(d.request("/api/status").json()["predictions"][0]["label"])
        page.wait_for_function(
            "label => document.querySelector('#top1').dataset.label === label",
            arg=label,
            timeout=30_000,
        )
        return label

    first = same_as_status()
    page.wait_for_function("document.querySelector('#state').textContent === 'running'")
    page.wait_for_function("document.querySelector('#live').naturalWidth > 0")
    assert page.inner_text("#delegate") == d.status()["delegate"]
    assert page.inner_text("#model") == "mobilenet_v1_0.25_128_quant.tflite"
    # Bars for the predictions a reader can see; the rest (under 1%) in one line.
    predictions = d.status()["predictions"]
    big = [p for i, p in enumerate(predictions) if i == 0 or p["score"] >= 0.01]
    rest = len(predictions) - len(big)
    assert rest > 0, predictions  # the parrot leaves most of the top-k near 0
    assert page.locator("#bars li").count() == len(big)
    assert page.inner_text("#others") == f"+{rest} other{'s' if rest > 1 else ''}, each under 1.0%"
    top_score = page.inner_text("#bars li .score >> nth=0")
    assert top_score == f"{predictions[0]['score'] * 100:.1f}%"
    # The parrot made an event: the page lists it with its thumbnail.
    page.wait_for_function(
        "[...document.querySelectorAll('#events img')].some(i => i.naturalWidth > 0)",
        timeout=30_000,
    )
    assert "macaw" in page.inner_text("#events")
    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot of the page: {shot}")
    docs_copy = os.environ.get("EDGE_DAEMON_DOCS_SCREENSHOT")  # refreshes docs/web-page.png
    if docs_copy:
        shutil.copyfile(shot, docs_copy)

    # New frames: the open page follows without a reload.
    replace_frame(frames, "hot_dog.jpg")
    d.wait_for("a new top-1", lambda: d.status()["predictions"][0]["label"] != first)
    second = same_as_status()
    assert second != first

    # The camera fails: the page says so, in the daemon's words.
    frames.rename(tmp_path / "gone")
    d.wait_for("degraded", lambda: d.status()["state"] == "degraded")
    page.wait_for_function("document.querySelector('#state').textContent === 'degraded'")
    # The reason may change as the source is retried: the page shows the current one.
    d.wait_for(
        "the page to show the reason",
        lambda: (
            page.is_visible("#reason")
            and page.inner_text("#reason") == d.request("/api/status").json()["reason"]
        ),
    )
    assert "frames" in page.inner_text("#reason")
    page.screenshot(path=str(tmp_path / "page-degraded.png"), full_page=True)
    print(f"screenshot of the degraded page: {tmp_path / 'page-degraded.png'}")
    assert errors == []
    context.close()


def test_the_page_is_usable_on_a_phone(browser: Any, run_daemon: Callable[..., Running]) -> None:
    d = run_daemon()
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    page.goto(f"http://127.0.0.1:{d.port}/")
    page.locator("#bars li").first.wait_for()  # the page's own script ran under its policy
    assert page.locator("#top1").get_attribute("data-label")
    # Nothing wider than the screen: no sideways scrolling.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    box = page.locator("#live").bounding_box()
    assert box is not None and box["width"] <= 390
    assert console == []  # no policy violation, no failed request
    context.close()


def test_without_the_token_the_page_asks_for_it(
    browser: Any, run_daemon: Callable[..., Running]
) -> None:
    d = run_daemon(token=TOKEN)
    page = browser.new_page()
    response = page.goto(f"http://127.0.0.1:{d.port}/")
    assert response is not None and response.status == 401
    assert "/?token=" in page.content()
    page.close()
