#!/usr/bin/env python3
"""The web server's cost: the daemon with its server off, and on with 5 live-view clients.

Two ``edge-daemon run`` processes with the same model and frames (a looping
files source, as fast as it goes): A with ``http.listen: null``, B serving on
a free 127.0.0.1 port with 5 clients reading /api/stream.mjpg (their reading
runs in this process, on the same cores, which is harsher than a phone
elsewhere on the network). They take turns: while one is measured the other
is stopped (SIGSTOP), so they never compete for the cores; who goes first
alternates from pair to pair. Frames per second
come from each daemon's status file (frames and its own ``updated`` time);
the ratio is the median of the per-pair ratios B / A.

Printed: frames/s of each, the ratio (target >= 0.95x), CPU seconds per
frame of each, the frames the clients received, and the RSS of each daemon.
Exit status 0 when the target is met, 1 when not (figures printed first).
``--quick`` (scripts/test.sh) takes under a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from daemon_process import cpu_seconds_of, rss_mb_of, spawn, terminate

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EDGE_DAEMON_SHARED", REPO.parent / "shared"))
MODEL = "mobilenet_v1_1.0_224_quant.tflite"
LABELS = "labels_mobilenet_quant_v1_224.txt"
CLIENTS = 5
TARGET = 0.95


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(folder: Path, frames: Path, name: str, listen: Optional[str]) -> Path:
    out = folder / name
    out.mkdir()
    cfg = {
        "model": {
            "path": str(SHARED / "models" / MODEL),
            "labels": str(SHARED / "models" / LABELS),
        },
        "engine": {"delegates": ["xnnpack", "cpu"]},
        "source": {"kind": "files", "path": str(frames), "loop": True, "stall_timeout": 3600},
        "outputs": {
            "prediction_log": None,
            "status_file": str(out / "status.json"),
            "status_interval": 0.05,
            "log_interval": 3600,
        },
        "daemon": {"state_dir": str(folder / "state")},
        "http": {"listen": listen},
    }
    path = out / "config.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


class Daemon:
    """An ``edge-daemon run`` child, paused and resumed with signals."""

    def __init__(self, name: str, config: Path) -> None:
        self.name = name
        self.status_path = config.parent / "status.json"
        self.log = (config.parent / "stderr.txt").open("wb")
        self.proc = spawn(["-m", "edge_daemon", "run", "--config", str(config)], self.log)

    def status(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.status_path.read_text())
        return data

    def wait_running(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited; see {self.log.name}")
            try:
                if self.status().get("state") == "running":
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        raise SystemExit(f"{self.name} did not start in {timeout:.0f} s; see {self.log.name}")

    def pause(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def mark(self) -> tuple[int, float]:
        """(frames, the daemon's own time of that count) from its status file."""
        for _ in range(50):
            try:
                s = self.status()
                updated = datetime.fromisoformat(s["updated"].replace("Z", "+00:00"))
                return int(s["frames"]), updated.timestamp()
            except (OSError, ValueError, KeyError):
                time.sleep(0.01)  # caught between write and rename: read again
        raise SystemExit(f"{self.name}: unreadable status file")

    def cpu_seconds(self) -> float:
        return cpu_seconds_of(self.proc.pid)

    def rss_mb(self) -> float:
        return rss_mb_of(self.proc.pid)

    def stop(self) -> None:
        terminate(self.proc)
        self.log.close()


class Watcher(threading.Thread):
    """One live-view client: reads /api/stream.mjpg and counts the frames."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.frames = 0
        self.stopped = False

    def run(self) -> None:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=60) as s:
                s.sendall(b"GET /api/stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                while not self.stopped:
                    data = s.recv(65536)
                    if not data:
                        return
                    self.frames += data.count(b"--frame\r\n")
        except OSError:
            return


def window(run: Daemon, paused: Daemon, seconds: float) -> tuple[float, float, int]:
    """Frames/s of ``run`` over ``seconds`` while ``paused`` is stopped; CPU s and frames."""
    paused.pause()
    run.resume()
    time.sleep(0.5)  # settle: threads resumed, a status written since
    f0, t0 = run.mark()
    c0 = run.cpu_seconds()
    time.sleep(seconds)
    f1, t1 = run.mark()
    cpu = run.cpu_seconds() - c0
    return (f1 - f0) / (t1 - t0) if t1 > t0 else 0.0, cpu, f1 - f0


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 pairs of 1 s windows (< 60 s)")
    parser.add_argument("--pairs", type=int, help="alternating window pairs (default 16, quick 8)")
    parser.add_argument("--seconds", type=float, help="window length (default 2, quick 1)")
    args = parser.parse_args(argv)
    pairs = args.pairs or (8 if args.quick else 16)
    seconds = args.seconds or (1.0 if args.quick else 2.0)
    if not (SHARED / "models" / MODEL).is_file():
        print(f"benchmark: {SHARED / 'models' / MODEL} is missing", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="edge-http-bench-") as tmp:
        folder = Path(tmp)
        frames = folder / "frames"
        frames.mkdir()
        for image in sorted((SHARED / "images").iterdir()):
            if image.suffix in (".bmp", ".jpg"):
                shutil.copyfile(image, frames / image.name)
        port = free_port()
        off = Daemon("server off", write_config(folder, frames, "off", None))
        on = Daemon("server on", write_config(folder, frames, "on", f"127.0.0.1:{port}"))
        watchers: list[Watcher] = []
        try:
            off.wait_running()
            on.wait_running()
            watchers = [Watcher(port) for _ in range(CLIENTS)]
            for w in watchers:
                w.start()
            for d in (off, on):  # warm-up windows, not counted
                window(d, on if d is off else off, 1.0)
            ratios, fps_off, fps_on = [], [], []
            cpu_off = cpu_on = 0.0
            n_off = n_on = 0
            for i in range(pairs):
                # Who goes first alternates, so neither side always follows the other.
                if i % 2 == 0:
                    a, ca, na = window(off, on, seconds)
                    b, cb, nb = window(on, off, seconds)
                else:
                    b, cb, nb = window(on, off, seconds)
                    a, ca, na = window(off, on, seconds)
                fps_off.append(a)
                fps_on.append(b)
                cpu_off, cpu_on, n_off, n_on = cpu_off + ca, cpu_on + cb, n_off + na, n_on + nb
                if a > 0:
                    ratios.append(b / a)
            on.resume()
            off.resume()
            received = [w.frames for w in watchers]
            rss_off, rss_on = off.rss_mb(), on.rss_mb()
        finally:
            for w in watchers:
                w.stopped = True
            off.stop()
            on.stop()

    ratio = statistics.median(ratios) if ratios else 0.0
    print(f"web benchmark: {MODEL}, {pairs} pairs of {seconds:g} s windows, {CLIENTS} clients")
    print(f"  server off:            {statistics.median(fps_off):7.1f} frames/s (median)")
    print(f"  server on, {CLIENTS} viewers: {statistics.median(fps_on):7.1f} frames/s (median)")
    print(f"  ratio on/off:          {ratio:7.3f}x (target >= {TARGET}x)")
    print(
        f"  CPU per frame:         off {1000 * cpu_off / max(n_off, 1):.2f} ms,"
        f" on {1000 * cpu_on / max(n_on, 1):.2f} ms"
    )
    print(f"  live-view frames received per client: {received}")
    print(f"  RSS: server off {rss_off:.1f} MB, server on with {CLIENTS} viewers {rss_on:.1f} MB")
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
