"""``edge-daemon models fetch``: put the default model, its labels and sample images in place.

With internet: download MobileNet v1 1.0 224 quant and its labels from
TensorFlow's public model archive. Offline: copy them from a local folder
(``--from DIR``). Either way, what arrived is checked: it must parse as a
TFLite model, load in the installed runtime, and its output count must
match its labels.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path
from typing import Optional

from .engine.interpreter import read_model_bytes
from .engine.model import inspect_model
from .errors import EdgeDaemonError, ModelError
from .labels import align_labels, parse_labels

log = logging.getLogger(__name__)

MODEL_FILE = "mobilenet_v1_1.0_224_quant.tflite"
LABELS_FILE = "labels_mobilenet_quant_v1_224.txt"
# TensorFlow's archive of the hosted models: a zip holding exactly these two files.
DEFAULT_URL = (
    "https://storage.googleapis.com/download.tensorflow.org/models/"
    "mobilenet_v1_1.0_224_quant_and_labels.zip"
)
SAMPLE_URL = (
    "https://raw.githubusercontent.com/tensorflow/tensorflow/master/"
    "tensorflow/lite/examples/label_image/testdata/grace_hopper.bmp"
)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _write_atomic(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        # mkstemp makes the file 0600; a model fetched as root must stay
        # readable by the service user.
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        os.unlink(tmp)
        raise


def _download(url: str, timeout: float = 60.0) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data: bytes = response.read()
            return data
    except OSError as exc:
        reason = getattr(exc, "reason", None) or exc
        raise EdgeDaemonError(
            f"{url}: download failed ({reason}); on a machine without internet use"
            " 'edge-daemon models fetch --from DIR' with a folder holding the model"
        ) from None


def verify(model_path: Path, labels_path: Path) -> str:
    """Check the pair loads and agrees; a one-line summary. Raises ModelError."""
    data = read_model_bytes(str(model_path))
    info = inspect_model(str(model_path), data)
    labels = parse_labels(labels_path.read_text(encoding="utf-8"), str(labels_path))
    try:
        from .engine.interpreter import DelegateSettings, build_engine
        from .engine.runtimes import load_runtime

        runtime = load_runtime("auto")
    except EdgeDaemonError:
        return f"{model_path.name}: valid TFLite file, {len(labels)} labels (no runtime to load it)"
    del info
    engine = build_engine(str(model_path), runtime, "cpu", DelegateSettings(threads=1))
    try:
        outputs = 1
        for d in engine.output.shape[1:]:
            outputs *= d
        align_labels(labels, outputs, str(labels_path), model_path.name)
        shape = "x".join(str(d) for d in engine.input.shape[1:3])
        return (
            f"{model_path.name}: loads in {runtime.label}, input {shape}"
            f" {engine.input.dtype.name}, {outputs} outputs, {len(labels)} labels"
        )
    finally:
        engine.close()


def fetch(
    dest: Path,
    *,
    source_dir: Optional[Path] = None,
    images_dir: Optional[Path] = None,
    url: str = DEFAULT_URL,
    sample_url: Optional[str] = SAMPLE_URL,
) -> list[str]:
    """Fetch or copy the default model, labels and samples into ``dest``; lines to print."""
    lines = []
    if source_dir is not None:
        for name in (MODEL_FILE, LABELS_FILE):
            src = source_dir / name
            if not src.is_file():
                raise EdgeDaemonError(
                    f"{src}: not found; --from must name a folder holding"
                    f" {MODEL_FILE} and {LABELS_FILE}"
                )
            _write_atomic(dest / name, src.read_bytes())
        lines.append(f"copied {MODEL_FILE} and {LABELS_FILE} from {source_dir}")
    else:
        archive = _download(url)
        try:
            with zipfile.ZipFile(io.BytesIO(archive)) as z:
                names = {os.path.basename(n): n for n in z.namelist()}
                for name in (MODEL_FILE, LABELS_FILE):
                    if name not in names:
                        raise ModelError(f"{url}: the archive has no {name}")
                    _write_atomic(dest / name, z.read(names[name]))
        except zipfile.BadZipFile:
            raise ModelError(f"{url}: the download is not a zip archive; try again") from None
        lines.append(f"downloaded {MODEL_FILE} and {LABELS_FILE} from {url}")
    lines.append(verify(dest / MODEL_FILE, dest / LABELS_FILE))
    samples = dest / "samples"
    if images_dir is not None:
        copied = 0
        for src in sorted(images_dir.iterdir()):
            if src.suffix.lower() in IMAGE_SUFFIXES and src.is_file():
                samples.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, samples / src.name)
                copied += 1
        lines.append(f"copied {copied} sample images to {samples}")
    elif source_dir is None and sample_url:
        try:
            _write_atomic(samples / os.path.basename(sample_url), _download(sample_url))
            lines.append(f"downloaded a sample image to {samples}")
        except EdgeDaemonError as exc:
            log.warning("no sample image: %s", exc)
    return lines
