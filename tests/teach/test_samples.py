"""Samples: class names that cannot escape teach.dir, bad photos refused one by one,
embeddings cached per base model, removal."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_daemon.errors import TeachError
from edge_daemon.teach.samples import SampleStore, check_class_name
from tests.teach.images import bad_files, good_files, photo

SHA_A = "a" * 64
SHA_B = "b" * 64


def all_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize(
    "name",
    [
        "../escape",
        "..",
        ".",
        ".hidden",
        "/etc/passwd",
        "a/b",
        "a\\b",
        "nul\x00byte",
        "tab\there",
        "x" * 65,
        "",
        "open, closed",
        "#3",
        "@birds",
        "trailing ",
        "trailing.",
    ],
)
def test_class_names_that_could_escape_or_confuse_are_refused(tmp_path: Path, name: str) -> None:
    root = tmp_path / "teach"
    store = SampleStore(str(root))
    with pytest.raises(TeachError) as err:
        store.add_image(name, photo(1), source="live")
    assert "\n" not in str(err.value) and "class name" in str(err.value)
    assert not (tmp_path / "escape").exists()
    assert not root.exists() or all_files(root) <= {"samples"}
    with pytest.raises(TeachError):
        store.remove(name)


@pytest.mark.parametrize("name", ["open", "blue tit", "great-tit_2", "Öffnung", "猫", "x" * 64])
def test_ordinary_class_names_are_kept_as_they_are(tmp_path: Path, name: str) -> None:
    assert check_class_name(name) == name
    store = SampleStore(str(tmp_path))
    s = store.add_image(name, photo(2), source="live")
    assert s.cls == name and os.path.dirname(s.path) == str(tmp_path / "samples" / name)


def test_a_class_spelt_in_another_case_is_the_same_class(tmp_path: Path) -> None:
    store = SampleStore(str(tmp_path))
    store.add_image("Open", photo(1), source="live")
    store.add_image("open", photo(2), source="live")
    assert {c: len(s) for c, s in store.classes().items()} == {"Open": 2}


def test_bad_files_are_refused_one_by_one_naming_the_file(tmp_path: Path) -> None:
    store = SampleStore(str(tmp_path / "teach"))
    bad = bad_files(tmp_path / "in")
    good = good_files(tmp_path / "in", 2)
    for kind, path in bad.items():
        with pytest.raises(TeachError) as err:
            store.add_file("open", str(path))
        assert str(path) in str(err.value), kind
        assert "\n" not in str(err.value)
    for path in good:
        store.add_file("open", str(path))
    samples = store.classes()["open"]
    assert len(samples) == len(good)
    assert all(s.source == "file" for s in samples)
    for s in samples:  # each kept as a JPEG that decodes to the photo's size
        with Image.open(s.path) as img:
            assert img.format == "JPEG" and img.size == (96, 72)
    assert not [p for p in (tmp_path / "teach").rglob("*.tmp")]


def test_a_camera_jpeg_is_kept_byte_for_byte(tmp_path: Path) -> None:
    (path,) = good_files(tmp_path / "in", 1)[:1]
    store = SampleStore(str(tmp_path / "teach"))
    s = store.add_file("closed", str(path))
    assert Path(s.path).read_bytes() == path.read_bytes()


def test_frames_too_small_or_of_the_wrong_shape_are_refused(tmp_path: Path) -> None:
    store = SampleStore(str(tmp_path))
    for image in (
        np.zeros((1, 1, 3), np.uint8),
        np.zeros((20, 200, 3), np.uint8),
        np.zeros((64, 64), np.uint8),
        np.zeros((64, 64, 3), np.float32),
    ):
        with pytest.raises(TeachError):
            store.add_image("open", image, source="live")
    assert store.classes() == {}


def test_embeddings_are_cached_per_base_model(tmp_path: Path) -> None:
    store = SampleStore(str(tmp_path))
    vec = np.arange(8, dtype=np.float32)
    s = store.add_image("open", photo(3), source="live", embedding=vec, model_sha256=SHA_A)
    assert np.array_equal(store.embedding(s, SHA_A), vec)
    assert store.embedding(s, SHA_B) is None
    store.put_embedding(s, SHA_B, vec * 2)
    assert np.array_equal(store.embedding(s, SHA_B), vec * 2)
    assert store.embedded_by(s) == {SHA_A[:16], SHA_B[:16]}
    # A damaged cache file reads as not cached (embedded again), never as garbage.
    Path(s.path).with_name(f"{s.id}.{SHA_A[:16]}.npy").write_bytes(b"\x93NUMPY junk")
    assert store.embedding(s, SHA_A) is None
    # The cache is written without fsync: after a power cut a file may be empty.
    Path(s.path).with_name(f"{s.id}.{SHA_B[:16]}.npy").write_bytes(b"")
    assert store.embedding(s, SHA_B) is None


def test_get_and_remove(tmp_path: Path) -> None:
    store = SampleStore(str(tmp_path))
    a = store.add_image("open", photo(1), source="live")
    b = store.add_image("open", photo(2), source="event")
    c = store.add_image("closed", photo(3), source="file")
    assert store.get(b.id) == b and store.get(c.id).cls == "closed"
    with pytest.raises(TeachError):
        store.get("../../etc/passwd")
    with pytest.raises(TeachError):
        store.get("20990101T000000-000000")
    with pytest.raises(TeachError) as err:  # one unknown id: nothing is removed
        store.remove("open", [a.id, "20990101T000000-000000"])
    assert "nothing removed" in str(err.value)
    assert len(store.classes()["open"]) == 2
    assert store.remove("open", [a.id]) == 1
    assert [s.id for s in store.classes()["open"]] == [b.id]
    assert store.remove("closed") == 1
    assert list(store.classes()) == ["open"]
    with pytest.raises(TeachError):
        store.remove("closed")


def test_stray_files_and_folders_are_ignored(tmp_path: Path) -> None:
    store = SampleStore(str(tmp_path))
    store.add_image("open", photo(1), source="live")
    (tmp_path / "samples" / ".git").mkdir()
    (tmp_path / "samples" / "README").write_text("mine")
    (tmp_path / "samples" / "open" / "notes.txt").write_text("mine")
    assert {c: len(s) for c, s in store.classes().items()} == {"open": 1}
    store.remove("open")
    assert (tmp_path / "samples" / "README").exists()
