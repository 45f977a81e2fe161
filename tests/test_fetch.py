"""``edge-daemon models fetch``: copy (--from) or download (from a loopback server), then verify."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from tests.helpers import IMAGES, LABELS, MODELS, run_cli, shared_file

MODEL = "mobilenet_v1_1.0_224_quant.tflite"
LABELS_NAME = LABELS.name

# No test may reach the internet: any request that is not to the loopback
# server goes to a proxy address where nothing listens.
OFFLINE = {
    "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "no_proxy": "127.0.0.1",
    "NO_PROXY": "127.0.0.1",
    "EDGE_DAEMON_MODEL_URL": "",
}


def pinned(name: str) -> str:
    """The sha256 SHA256SUMS beside the fixture models gives for ``name``."""
    for line in shared_file(MODELS / "SHA256SUMS").read_text().splitlines():
        digest, _, file = line.partition("  ")
        if file.strip() == name:
            return digest
    raise AssertionError(f"{name} is not in SHA256SUMS")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch(*args: str) -> tuple[int, list[str], str]:
    proc = run_cli("models", "fetch", *args, env=OFFLINE)
    assert "Traceback" not in proc.stderr
    return proc.returncode, proc.stdout.splitlines(), proc.stderr


def error_line(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("edge-daemon:")]
    assert len(errors) == 1, stderr
    return errors[0].removeprefix("edge-daemon: error: ")


# -- --from DIR ------------------------------------------------------------------------


def test_fetch_from_a_folder_copies_and_verifies(tmp_path: Path) -> None:
    dest = tmp_path / "models"
    code, lines, stderr = fetch("--from", str(shared_file(MODELS)), "--dest", str(dest))
    assert code == 0, stderr
    assert sha256(dest / MODEL) == pinned(MODEL)
    assert sha256(dest / LABELS_NAME) == pinned(LABELS_NAME)
    assert lines[0] == f"copied {MODEL} and {LABELS_NAME} from {MODELS}"
    assert lines[1].startswith(f"{MODEL}: loads in ")
    assert lines[1].endswith("input 224x224 uint8, 1001 outputs, 1001 labels")
    assert not (dest / "samples").exists()  # --from alone downloads nothing
    assert sorted(p.name for p in dest.iterdir()) == sorted([MODEL, LABELS_NAME])


def test_fetch_from_a_folder_with_sample_images(tmp_path: Path) -> None:
    dest = tmp_path / "models"
    code, lines, stderr = fetch(
        "--from", str(shared_file(MODELS)), "--dest", str(dest), "--images", str(IMAGES)
    )
    assert code == 0, stderr
    images = sorted(p.name for p in IMAGES.iterdir() if p.suffix in (".jpg", ".bmp"))
    assert sorted(p.name for p in (dest / "samples").iterdir()) == images
    assert lines[-1] == f"copied {len(images)} sample images to {dest / 'samples'}"


def test_fetch_from_a_folder_without_the_model(tmp_path: Path) -> None:
    source = tmp_path / "empty"
    source.mkdir()
    code, _, stderr = fetch("--from", str(source), "--dest", str(tmp_path / "models"))
    assert code != 0
    assert error_line(stderr).startswith(f"{source / MODEL}: not found; --from must name a folder")


def test_fetch_refuses_labels_that_do_not_match(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / MODEL).write_bytes(shared_file(MODELS / MODEL).read_bytes())
    (source / LABELS_NAME).write_text("\n".join(f"c{i}" for i in range(10)) + "\n")
    code, _, stderr = fetch("--from", str(source), "--dest", str(tmp_path / "models"))
    assert code == 3
    message = error_line(stderr)
    assert "10 labels do not match the 1001 outputs" in message


def test_fetch_refuses_a_file_that_is_not_a_model(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / MODEL).write_text("<html>404 Not Found</html>")
    (source / LABELS_NAME).write_bytes(shared_file(LABELS).read_bytes())
    code, _, stderr = fetch("--from", str(source), "--dest", str(tmp_path / "models"))
    assert code == 3
    assert "not a TFLite model" in error_line(stderr)


# -- downloading, from a server on the loopback interface ------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on 127.0.0.1 serving a folder: (base URL, folder)."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def make_zip(path: Path, members: dict[str, bytes]) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    path.write_bytes(buf.getvalue())


def test_download_unpacks_and_verifies(server: tuple[str, Path], tmp_path: Path) -> None:
    base, root = server
    # The archive's layout: the two files, possibly inside a folder.
    make_zip(
        root / "models.zip",
        {
            f"mobilenet/{MODEL}": shared_file(MODELS / MODEL).read_bytes(),
            f"mobilenet/{LABELS_NAME}": shared_file(LABELS).read_bytes(),
            "mobilenet/README": b"other files in the archive are left alone",
        },
    )
    dest = tmp_path / "models"
    url = f"{base}/models.zip"
    code, lines, stderr = fetch("--url", url, "--dest", str(dest), "--images", str(IMAGES))
    assert code == 0, stderr
    assert lines[0] == f"downloaded {MODEL} and {LABELS_NAME} from {url}"
    assert lines[1].endswith("1001 outputs, 1001 labels")
    assert sha256(dest / MODEL) == pinned(MODEL)
    assert sha256(dest / LABELS_NAME) == pinned(LABELS_NAME)
    assert not (dest / "README").exists()
    assert not [p for p in dest.iterdir() if p.name.startswith(".")]  # no temp files left


def test_download_that_is_not_a_zip(server: tuple[str, Path], tmp_path: Path) -> None:
    base, root = server
    (root / "models.zip").write_text("<html>captive portal</html>")
    url = f"{base}/models.zip"
    code, _, stderr = fetch("--url", url, "--dest", str(tmp_path / "m"), "--images", str(IMAGES))
    assert code == 3
    assert error_line(stderr) == f"{url}: the download is not a zip archive; try again"
    assert not (tmp_path / "m" / MODEL).exists()


def test_download_without_the_labels(server: tuple[str, Path], tmp_path: Path) -> None:
    base, root = server
    make_zip(root / "models.zip", {MODEL: shared_file(MODELS / MODEL).read_bytes()})
    url = f"{base}/models.zip"
    code, _, stderr = fetch("--url", url, "--dest", str(tmp_path / "m"), "--images", str(IMAGES))
    assert code == 3
    assert error_line(stderr) == f"{url}: the archive has no {LABELS_NAME}"


def test_download_that_fails_says_how_to_work_offline(
    server: tuple[str, Path], tmp_path: Path
) -> None:
    base, _ = server
    url = f"{base}/absent.zip"
    code, _, stderr = fetch("--url", url, "--dest", str(tmp_path / "m"), "--images", str(IMAGES))
    assert code == 1
    message = error_line(stderr)
    assert message.startswith(f"{url}: download failed (")
    assert "edge-daemon models fetch --from DIR" in message
