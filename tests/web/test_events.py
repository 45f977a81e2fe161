"""/api/events over the events store's reader (a stand-in with its interface)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Callable, Optional, Union

from PIL import Image

from edge_daemon.config import Config
from edge_daemon.web.events import NoEvents, StoreEvents, events_folder, events_query
from tests.web.conftest import Web


class History:
    """Shaped like edge_daemon.events.history.EventHistory: raw rows, Unix times."""

    def __init__(self, folder: Path, rows: list[dict[str, Any]]) -> None:
        self.dir, self.rows = folder, rows

    def list(
        self,
        *,
        rule: Optional[str] = None,
        label: Optional[str] = None,
        limit: Optional[int] = None,
        offset: int = 0,
        newest_first: bool = False,
    ) -> list[dict[str, Any]]:
        rows = sorted(self.rows, key=lambda r: r["start"], reverse=newest_first)
        rows = [r for r in rows if rule is None or r["rule"] == rule]
        return rows[offset : offset + limit if limit else None]

    def get(self, event_id: int) -> Optional[dict[str, Any]]:
        return next((r for r in self.rows if r["id"] == event_id), None)

    def snapshot_file(
        self, event: Union[int, dict[str, Any]], *, thumbnail: bool = False
    ) -> Optional[Path]:
        ev = self.get(event) if isinstance(event, int) else event
        name = ev and ev.get("thumbnail" if thumbnail else "snapshot")
        return self.dir / name if name and (self.dir / name).is_file() else None


def as_json(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k != "thumbnail"}
    out["start"] = f"t{row['start']}"
    return out


def jpeg(colour: tuple[int, int, int], size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "JPEG")
    return out.getvalue()


def test_the_api_serves_the_store_newest_first_with_thumbnails(
    web: Callable[..., Web], tmp_path: Path
) -> None:
    folder = tmp_path / "events"
    folder.mkdir()
    (folder / "1.jpg").write_bytes(jpeg((255, 0, 0), (64, 48)))
    (folder / "1.thumb.jpg").write_bytes(jpeg((255, 0, 0), (16, 12)))
    (folder / "2.jpg").write_bytes(jpeg((0, 0, 255), (64, 48)))
    rows = [
        {"id": 1, "rule": "birds", "label": "macaw", "start": 100.0, "snapshot": "1.jpg",
         "thumbnail": "1.thumb.jpg"},
        {"id": 2, "rule": "cats", "label": "tabby", "start": 200.0, "snapshot": "2.jpg",
         "thumbnail": None},
        {"id": 3, "rule": "cats", "label": "tabby", "start": 300.0, "snapshot": None,
         "thumbnail": None},
    ]  # fmt: skip
    w = web(events=StoreEvents(History(folder, rows), as_json, str(folder)))
    listed = w.request("/api/events").json()
    assert [e["id"] for e in listed] == [3, 2, 1]
    assert listed[2]["start"] == "t100.0" and "thumbnail" not in listed[2]
    assert [e["id"] for e in w.request("/api/events?rule=cats&limit=1&offset=1").json()] == [2]
    assert w.request("/api/events/2").json()["label"] == "tabby"
    assert Image.open(io.BytesIO(w.request("/api/events/1/thumbnail.jpg").body)).size == (16, 12)
    assert Image.open(io.BytesIO(w.request("/api/events/1/snapshot.jpg").body)).size == (64, 48)
    # No thumbnail: the snapshot stands in; no snapshot at all: 404.
    assert Image.open(io.BytesIO(w.request("/api/events/2/thumbnail.jpg").body)).size == (64, 48)
    assert w.request("/api/events/3/snapshot.jpg").status == 404
    assert w.request("/api/events/9").status == 404


def test_the_history_comes_from_the_events_store_when_there_is_one() -> None:
    folder = events_folder(Config())
    if folder is None:
        assert isinstance(events_query(Config()), NoEvents)
    else:  # a build with the store: its folder (under the state folder by default)
        assert os.path.basename(folder) == "events"
        assert isinstance(events_query(Config()), StoreEvents)
