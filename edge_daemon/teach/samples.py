"""The samples a taught model learns from: JPEGs per class, with cached embeddings.

Layout under ``teach_dir(cfg)``::

    samples/<class>/<id>.jpg             the frame (the camera's JPEG, or the photo)
    samples/<class>/<id>.json            when it was added and where it came from
    samples/<class>/<id>.<key>.npy       its embedding by the base model whose
                                         sha256 starts with <key> (16 hex digits)

A sample id is ``YYYYmmddTHHMMSS-xxxxxx`` (UTC time added, 6 random hex
digits): unique across classes, and sorting ids sorts by time added. Every file
is written whole (temporary file, fsync, rename), so a kill leaves a sample
complete or absent. Class names are checked (``check_class_name``) before any
path is built from them: none can lead outside ``samples/``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import secrets
import shutil
import time
import unicodedata
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ..errors import TeachError
from ..fileio import replace_file, sync_dir

SAMPLES = "samples"
MAX_NAME = 64
# Smallest sample accepted, in pixels per side: below it a frame carries nothing to learn.
MIN_SIDE = 32
# Larger images are refused (a Pi's memory; PIL's own bomb guard is far above).
MAX_PIXELS = 50_000_000
JPEG_QUALITY = 95
SOURCES = ("file", "event", "live")
KEY_LEN = 16  # hex digits of the base model's sha256 in an embedding's file name

_ID = re.compile(r"^\d{8}T\d{6}-[0-9a-f]{6}$")
_EMBEDDING = re.compile(r"^(\d{8}T\d{6}-[0-9a-f]{6})\.([0-9a-f]{16})\.npy$")
_PNG = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Sample:
    """One sample: ``path`` is its JPEG (which may be gone when only embeddings are left)."""

    id: str
    cls: str
    path: str
    added: float
    source: str  # "file" | "event" | "live"

    @property
    def has_image(self) -> bool:
        return os.path.isfile(self.path)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "class": self.cls,
            "path": self.path,
            "added": self.added,
            "source": self.source,
        }


def _shown(name: str) -> str:
    text = repr(name)
    return text if len(text) <= 40 else text[:37] + "...'"


def check_class_name(name: str) -> str:
    """``name`` if it can name a class (a label, a folder), else TeachError saying why.

    Letters and digits (any script), spaces, ``-``, ``_``, ``.``, ``'``, ``+`` and
    ``&``; 1 to 64 characters; starting with a letter or digit and not ending
    with a space or a dot. So no ``/``, ``..``, NUL or control character can
    reach a path, and no ``,`` (which separates a label line's names in event
    rules) or leading ``#``/``@`` (rule syntax) can reach a label.
    """
    hint = "; use letters, digits, spaces, - and _ (up to 64 characters), e.g. open or blue tit"
    if not isinstance(name, str) or not name:
        raise TeachError("a class name must not be empty" + hint)
    if len(name) > MAX_NAME:
        raise TeachError(f"class name {_shown(name)} is too long ({len(name)} characters)" + hint)
    if "\x00" in name or any(unicodedata.category(c).startswith("C") for c in name):
        raise TeachError(f"class name {_shown(name)} holds a control character" + hint)
    if "/" in name or "\\" in name or name in (".", ".."):
        raise TeachError(f"class name {_shown(name)} is a path, not a name" + hint)
    first = name[0]
    if not (first.isalnum()):
        raise TeachError(f"class name {_shown(name)} must start with a letter or digit" + hint)
    if name[-1] in " .":
        raise TeachError(f"class name {_shown(name)} must not end with a space or a dot" + hint)
    bad = sorted({c for c in name if not (c.isalnum() or c in " -_.'+&")})
    if bad:
        raise TeachError(f"class name {_shown(name)} holds {' '.join(bad)}" + hint)
    return name


def _new_id(now: float) -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + "-" + secrets.token_hex(3)


def model_key(model_sha256: str) -> str:
    """The part of a base model's sha256 that names its embeddings' files."""
    key = model_sha256.lower()[:KEY_LEN]
    if not re.fullmatch(r"[0-9a-f]{16}", key):
        raise ValueError(f"not a sha256: {model_sha256!r}")
    return key


def check_frame(image: np.ndarray, what: str) -> np.ndarray:
    """An (H, W, 3) uint8 RGB frame big enough to learn from, else TeachError."""
    if (
        not isinstance(image, np.ndarray)
        or image.dtype != np.uint8
        or image.ndim != 3
        or image.shape[2] not in (3, 4)
    ):
        shape = getattr(image, "shape", None)
        raise TeachError(f"{what}: not an RGB frame (got {shape}); give an (H, W, 3) uint8 image")
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise TeachError(
            f"{what}: too small ({w}x{h}); a sample must be at least {MIN_SIDE}x{MIN_SIDE} pixels"
        )
    return np.ascontiguousarray(image[..., :3])


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(image, "RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def read_sample_file(path: str) -> bytes:
    """A photo's bytes as a sample keeps them: JPEG as it is (turned upright if its
    EXIF says so), anything else re-encoded as JPEG. TeachError names the file
    and what is wrong: not an image, too small, CMYK, 16 bits per channel,
    truncated."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PIXELS)
    except FileNotFoundError:
        raise TeachError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise TeachError(f"{path}: a folder, not an image; name the image files") from None
    except OSError as exc:
        raise TeachError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if data.startswith(_PNG) and len(data) > 24 and data[24] == 16:
        raise TeachError(
            f"{path}: a 16-bit PNG; save it with 8 bits per channel (a camera frame is 8-bit)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt, mode, (w, h) = img.format, img.mode, img.size
                if w * h > MAX_PIXELS:
                    raise TeachError(f"{path}: too large ({w}x{h}); scale it down first")
                if mode == "CMYK":
                    raise TeachError(
                        f"{path}: a CMYK image (print colours); save it as RGB, as a camera"
                        " delivers frames"
                    )
                if mode.startswith("I;16") or mode in ("I", "F"):
                    raise TeachError(
                        f"{path}: {mode} pixels (16 or 32 bits); save it with 8 bits per channel"
                    )
                if min(w, h) < MIN_SIDE:
                    raise TeachError(
                        f"{path}: too small ({w}x{h}); a sample must be at least"
                        f" {MIN_SIDE}x{MIN_SIDE} pixels"
                    )
                img.load()  # a truncated file fails here, not as a half-grey sample
                turned = img.getexif().get(0x0112, 1) not in (1, None)  # EXIF Orientation
                if fmt == "JPEG" and mode in ("RGB", "L") and not turned:
                    return data
                upright = ImageOps.exif_transpose(img) if turned else img
                rgb = upright.convert("RGB")
                out = io.BytesIO()
                rgb.save(out, "JPEG", quality=JPEG_QUALITY)
                return out.getvalue()
    except TeachError:
        raise
    except UnidentifiedImageError:
        raise TeachError(f"{path}: not an image (JPEG, PNG, BMP ...)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        text = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        raise TeachError(f"{path}: not a readable image ({text})") from None
    except Image.DecompressionBombWarning:
        raise TeachError(f"{path}: too large; scale it down first") from None


class SampleStore:
    """The samples under ``root`` (``teach_dir(cfg)``), by class."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.dir = os.path.join(root, SAMPLES)

    # -- paths -----------------------------------------------------------------
    def _class_dir(self, cls: str) -> str:
        return os.path.join(self.dir, check_class_name(cls))

    def canonical_class(self, cls: str) -> str:
        """``cls`` as stored: a name differing only in case is the same class (event
        rules match labels ignoring case, so two such classes could not be told apart)."""
        check_class_name(cls)
        for name in self._class_names():
            if name.casefold() == cls.casefold():
                return name
        return cls

    def _class_names(self) -> list[str]:
        try:
            entries = sorted(os.listdir(self.dir))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise TeachError(f"{self.dir}: cannot read the samples ({exc.strerror})") from None
        out = []
        for name in entries:
            try:
                check_class_name(name)
            except TeachError:
                continue  # not ours (a stray file or folder): ignored, never touched
            if os.path.isdir(os.path.join(self.dir, name)):
                out.append(name)
        return out

    # -- adding ----------------------------------------------------------------
    def _write(
        self,
        cls: str,
        jpeg: bytes,
        *,
        source: str,
        extra: Optional[dict[str, Any]] = None,
        embedding: Optional[np.ndarray] = None,
        model_sha256: str = "",
    ) -> Sample:
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}")
        cls = self.canonical_class(cls)
        folder = self._class_dir(cls)
        now = time.time()
        sid = _new_id(now)
        try:
            os.makedirs(folder, exist_ok=True)
            meta = {"added": now, "source": source, **(extra or {})}
            replace_file(os.path.join(folder, f"{sid}.json"), json.dumps(meta).encode())
            replace_file(os.path.join(folder, f"{sid}.jpg"), jpeg)
            sync_dir(folder)
        except OSError as exc:
            for suffix in (".json", ".jpg"):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(folder, sid + suffix))
            raise TeachError(
                f"{folder}: cannot store the sample ({exc.strerror or exc}); free some space"
                " or fix teach.dir"
            ) from None
        sample = Sample(sid, cls, os.path.join(folder, f"{sid}.jpg"), now, source)
        if embedding is not None and model_sha256:
            from .active import base_of

            # A frame the taught model classified: its embedding is its base network's.
            self.put_embedding(sample, base_of(self.root, model_sha256), embedding)
        return sample

    def add_image(
        self,
        cls: str,
        image: np.ndarray,
        *,
        source: str,
        embedding: Optional[np.ndarray] = None,
        model_sha256: str = "",
    ) -> Sample:
        """Keep an (H, W, 3) uint8 RGB frame as a sample of ``cls`` (a JPEG);
        ``embedding`` (if given) is cached as the one by ``model_sha256``."""
        check_class_name(cls)
        frame = check_frame(image, f"sample for {cls!r}")
        return self._write(
            cls, encode_jpeg(frame), source=source, embedding=embedding, model_sha256=model_sha256
        )

    def add_jpeg(
        self, cls: str, jpeg: bytes, *, source: str, extra: Optional[dict[str, Any]] = None
    ) -> Sample:
        """Keep JPEG bytes as they are (an event's snapshot, already checked)."""
        check_class_name(cls)
        return self._write(cls, jpeg, source=source, extra=extra)

    def add_file(self, cls: str, path: str, *, source: str = "file") -> Sample:
        """Keep a photo as a sample; a bad file is refused with TeachError naming it."""
        check_class_name(cls)
        data = read_sample_file(path)
        return self._write(cls, data, source=source, extra={"file": os.path.basename(path)})

    # -- reading ---------------------------------------------------------------
    def _read_class(self, cls: str) -> list[Sample]:
        folder = os.path.join(self.dir, cls)
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return []
        ids: set[str] = set()
        for name in names:
            if name.endswith(".tmp"):
                continue
            stem = name.split(".", 1)[0]
            if _ID.match(stem):
                ids.add(stem)
        out = []
        for sid in sorted(ids):
            added, source = self._meta(folder, sid)
            out.append(Sample(sid, cls, os.path.join(folder, f"{sid}.jpg"), added, source))
        return out

    @staticmethod
    def _meta(folder: str, sid: str) -> tuple[float, str]:
        try:
            with open(os.path.join(folder, f"{sid}.json"), "rb") as f:
                meta = json.loads(f.read(65536))
            added, source = float(meta["added"]), str(meta["source"])
            if source in SOURCES:
                return added, source
        except (OSError, ValueError, KeyError, TypeError):
            pass
        try:  # a sidecar lost or damaged: the time in the id
            added = time.mktime(time.strptime(sid[:15], "%Y%m%dT%H%M%S")) - time.timezone
        except ValueError:
            added = 0.0
        return added, "file"

    def classes(self) -> dict[str, list[Sample]]:
        """Every class with its samples, oldest first (classes in name order)."""
        return {cls: self._read_class(cls) for cls in self._class_names()}

    def get(self, sample_id: str) -> Sample:
        """The sample with this id in any class; TeachError when there is none."""
        if not isinstance(sample_id, str) or not _ID.match(sample_id):
            raise TeachError(
                f"{_shown(str(sample_id))} is not a sample id (they look like"
                " 20261202T101500-a3f9c1; see `edge-daemon teach list --json`)"
            )
        for cls in self._class_names():
            for s in self._read_class(cls):
                if s.id == sample_id:
                    return s
        raise TeachError(f"no sample {sample_id} in {self.dir}; see `edge-daemon teach list`")

    def image_bytes(self, sample: Sample) -> bytes:
        """The sample's JPEG; TeachError when it is gone."""
        try:
            with open(sample.path, "rb") as f:
                return f.read()
        except OSError as exc:
            raise TeachError(f"{sample.path}: cannot read the sample ({exc.strerror})") from None

    # -- removing --------------------------------------------------------------
    def remove(self, cls: str, ids: Sequence[str] = ()) -> int:
        """Remove the samples ``ids`` of ``cls`` (all of them, and the class, when
        none are named); how many. Unknown ids: TeachError, nothing removed."""
        check_class_name(cls)
        cls = self.canonical_class(cls)
        folder = os.path.join(self.dir, cls)
        if not os.path.isdir(folder):
            raise TeachError(f"no class {cls!r} in {self.dir}; see `edge-daemon teach list`")
        have = {s.id for s in self._read_class(cls)}
        if not ids:
            shutil.rmtree(folder, ignore_errors=True)
            if os.path.isdir(folder):
                raise TeachError(f"{folder}: cannot remove it; check its permissions")
            return len(have)
        unknown = [i for i in ids if i not in have]
        if unknown:
            raise TeachError(
                f"class {cls!r} has no sample {', '.join(_shown(i) for i in unknown)};"
                " nothing removed (see `edge-daemon teach list --json`)"
            )
        for sid in dict.fromkeys(ids):
            for name in os.listdir(folder):
                if name.split(".", 1)[0] == sid:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(folder, name))
        return len(set(ids))

    # -- embeddings ------------------------------------------------------------
    def _embedding_path(self, sample: Sample, model_sha256: str) -> str:
        return os.path.join(self.dir, sample.cls, f"{sample.id}.{model_key(model_sha256)}.npy")

    def embedding(self, sample: Sample, model_sha256: str) -> Optional[np.ndarray]:
        """The cached embedding by this base model, or None (also for a damaged file)."""
        try:
            with open(self._embedding_path(sample, model_sha256), "rb") as f:
                vec: np.ndarray = np.load(f, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        if vec.ndim != 1 or vec.dtype != np.float32 or not np.all(np.isfinite(vec)):
            return None
        return vec

    def put_embedding(self, sample: Sample, model_sha256: str, vec: np.ndarray) -> None:
        """Cache ``vec`` as the sample's embedding by this base model (best effort:
        a full disk only costs embedding it again next time)."""
        buf = io.BytesIO()
        np.save(buf, np.asarray(vec, dtype=np.float32).reshape(-1), allow_pickle=False)
        with contextlib.suppress(OSError):  # a cache: no fsync (one per sample on an SD card)
            replace_file(self._embedding_path(sample, model_sha256), buf.getvalue(), sync=False)

    def embedded_by(self, sample: Sample) -> set[str]:
        """The keys (sha256 prefixes) of the base models this sample has embeddings by."""
        folder = os.path.join(self.dir, sample.cls)
        try:
            names = os.listdir(folder)
        except OSError:
            return set()
        out = set()
        for name in names:
            m = _EMBEDDING.match(name)
            if m and m.group(1) == sample.id:
                out.add(m.group(2))
        return out

    def sweep(self, older_than: float = 3600.0) -> int:
        """Remove temporary files a kill left behind (older than ``older_than`` s)."""
        removed = 0
        limit = time.time() - older_than
        for folder, _dirs, files in os.walk(self.dir):
            for name in files:
                full = os.path.join(folder, name)
                if name.endswith(".tmp"):
                    with contextlib.suppress(OSError):
                        if os.stat(full).st_mtime < limit:
                            os.unlink(full)
                            removed += 1
        return removed
