"""``edge-daemon run`` as a child process, measured from outside: its prediction log, CPU, threads.

Shared by the benchmarks that measure the daemon as users run it (compare.py's
process phase, load.py, gate.py). A ``DaemonProcess`` is started with a
config, paused and resumed with SIGSTOP/SIGCONT so that sides take turns, and
read from outside only:

- frames from its prediction log (each line's ``ts`` is the frame's capture
  time, millisecond resolution), followed across rotations through an open
  descriptor, so the config's ``max_bytes`` stays what users have;
- CPU seconds from ``/proc/PID/stat`` (user + system, every thread);
- per-thread context switches from ``/proc/PID/task/*/status`` (a voluntary
  switch is the thread going to sleep: each one is a wake-up later).

``CpuBurner`` is a bounded, self-stopping busy loop in a process of its own,
standing for other programs on the machine.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parent.parent

# Run the daemon with each Python thread's name set as its OS thread name
# (``/proc/PID/task/TID/comm``), which Python before 3.14 does not do, so
# that context switches can be told apart by thread. Nothing else changes.
_NAMED_THREADS = """
import ctypes, runpy, sys, threading
_prctl = ctypes.CDLL(None).prctl
_inner = threading.Thread._bootstrap_inner
def _named(self):
    _prctl(15, self.name[:15].encode(), 0, 0, 0)  # PR_SET_NAME
    _inner(self)
threading.Thread._bootstrap_inner = _named
sys.argv[0] = "edge-daemon"
runpy.run_module("edge_daemon", run_name="__main__", alter_sys=True)
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def epoch(ts: str) -> float:
    """A prediction log ``ts`` (ISO 8601 UTC) as seconds since the epoch."""
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def daemon_config(
    folder: Path,
    *,
    model: Path,
    labels: Path,
    frames: Path,
    state: Path,
    web: bool = True,
    status_file: bool = True,
    extra: Optional[dict[str, Any]] = None,
) -> Path:
    """A config in ``folder`` with the reference config's outputs, over a looping ``frames``.

    The reference config (config/edge-daemon.yaml) turns on the prediction log,
    the status file and the web server on loopback; MQTT and events are off
    until a broker or a rule is set. ``web`` serves on a free 127.0.0.1 port;
    ``status_file`` False leaves the status file off too (the prediction log
    always stays: it is how frames are counted). ``extra`` is merged in per
    section. The stall timeout is long because the benchmark stops the
    daemon for seconds at a time.
    """
    folder.mkdir(parents=True, exist_ok=True)
    cfg: dict[str, Any] = {
        "model": {"path": str(model), "labels": str(labels)},
        "source": {"kind": "files", "path": str(frames), "loop": True, "stall_timeout": 3600.0},
        "outputs": {
            "prediction_log": str(folder / "predictions.jsonl"),
            "status_file": str(folder / "status.json") if status_file else None,
        },
        "daemon": {"state_dir": str(state)},
        "http": {"listen": f"127.0.0.1:{free_port()}" if web else None},
    }
    for section, values in (extra or {}).items():
        cfg.setdefault(section, {}).update(values)
    path = folder / "config.yaml"
    path.write_text(json.dumps(cfg, indent=1))  # JSON is YAML
    return path


def spawn(args: list[str], stderr: Any) -> subprocess.Popen[bytes]:
    """``python ARGS`` with this checkout importable and no systemd variables
    (the child must not notify or feed a watchdog); stderr to the file ``stderr``."""
    path = str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")
    env = {**os.environ, "PYTHONPATH": path}
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"):
        env.pop(key, None)
    return subprocess.Popen(
        [sys.executable, *args], env=env, stdout=subprocess.DEVNULL, stderr=stderr
    )


def terminate(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGCONT (it may be paused), SIGTERM, wait; SIGKILL after ``timeout`` seconds."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGCONT)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def rss_mb_of(pid: int) -> float:
    """Resident set size of process ``pid`` in MB (NaN when /proc does not say)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds_of(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_switches(pid: int) -> dict[int, tuple[str, int, int]]:
    """Per thread of ``pid``: (name, voluntary, involuntary context switches so far)."""
    out: dict[int, tuple[str, int, int]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            vol = invol = 0
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    vol = int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches:"):
                    invol = int(line.split()[1])
        except OSError:
            continue  # the thread ended meanwhile
        if int(task.name) == pid:
            name = "main (inference)"
        out[int(task.name)] = (name, vol, invol)
    return out


def switches_between(
    before: dict[int, tuple[str, int, int]], after: dict[int, tuple[str, int, int]]
) -> dict[str, tuple[int, int]]:
    """Context switches between two ``thread_switches`` readings, summed by thread name."""
    out: dict[str, tuple[int, int]] = {}
    for tid, (name, vol, invol) in after.items():
        _, vol0, invol0 = before.get(tid, (name, 0, 0))
        v, i = out.get(name, (0, 0))
        out[name] = (v + vol - vol0, i + invol - invol0)
    return out


class PredictionLogReader:
    """New lines of a prediction log, followed across rotation (``.jsonl`` -> ``.jsonl.1``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._f: Optional[Any] = None
        self._rest = b""
        self._closed = False

    def _open(self) -> bool:
        if self._f is None:
            try:
                self._f = open(self.path, "rb")  # noqa: SIM115  (kept open across calls)
            except FileNotFoundError:
                return False
        return True

    def records(self) -> list[dict[str, Any]]:
        """The records written since the last call (whole lines only)."""
        out: list[dict[str, Any]] = []
        while not self._closed and self._open():
            assert self._f is not None
            data = self._rest + self._f.read()
            lines = data.split(b"\n")
            self._rest = lines.pop()
            for line in lines:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
            try:
                rotated = os.stat(self.path).st_ino != os.fstat(self._f.fileno()).st_ino
            except FileNotFoundError:
                rotated = False
            if not rotated:
                break
            self._f.close()  # everything up to the rotation is read: go on in the new file
            self._f, self._rest = None, b""
        return out

    def close(self) -> None:
        """Stop reading: later calls return nothing new."""
        self._closed = True
        if self._f is not None:
            self._f.close()
            self._f = None


class DaemonProcess:
    """One ``edge-daemon run --config CONFIG`` child, read from outside."""

    def __init__(self, name: str, config: Path, *, named_threads: bool = False) -> None:
        self.name = name
        self.config = config
        self.folder = config.parent
        cfg = json.loads(config.read_text())
        self.log_path = Path(cfg["outputs"]["prediction_log"])
        self.listen: Optional[str] = cfg.get("http", {}).get("listen")
        args = ["run", "--config", str(config)]
        cmd = ["-c", _NAMED_THREADS, *args] if named_threads else ["-m", "edge_daemon", *args]
        self.stderr_path = self.folder / "stderr.txt"
        self._stderr = self.stderr_path.open("wb")
        self.proc = spawn(cmd, self._stderr)
        self.reader = PredictionLogReader(self.log_path)
        self.records: list[dict[str, Any]] = []  # every record read so far
        self.paused = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _check_alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.stderr_path.read_text(errors="replace")[-1500:]
            raise SystemExit(f"{self.name}: edge-daemon exited ({self.proc.returncode}):\n{tail}")

    def wait_classifying(self, frames: int = 20, timeout: float = 120.0) -> None:
        """Wait until the prediction log holds ``frames`` lines."""
        deadline = time.monotonic() + timeout
        while len(self.read()) < frames:
            self._check_alive()
            if time.monotonic() > deadline:
                raise SystemExit(f"{self.name}: no {frames} predictions in {timeout:.0f} s")
            time.sleep(0.05)

    def read(self) -> list[dict[str, Any]]:
        """Every record so far (reads what is new)."""
        self.records.extend(self.reader.records())
        return self.records

    def captured(self, start: float, end: float) -> list[float]:
        """Capture times (epoch s) of the frames logged with start <= ts < end."""
        out = []
        for r in self.read():
            try:
                t = epoch(r["ts"])
            except (KeyError, ValueError):
                continue
            if start <= t < end:
                out.append(t)
        return out

    def pause(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def cpu_seconds(self) -> float:
        return cpu_seconds_of(self.proc.pid)

    def threads(self) -> dict[int, tuple[str, int, int]]:
        return thread_switches(self.proc.pid)

    def rss_mb(self) -> float:
        return rss_mb_of(self.proc.pid)

    def status(self) -> dict[str, Any]:
        """The status file, or {} while it cannot be read."""
        try:
            data = json.loads((self.folder / "status.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def stop(self) -> int:
        """SIGTERM (after SIGCONT), wait; the exit status."""
        terminate(self.proc)
        self.paused = False
        self._stderr.close()
        self.read()
        self.reader.close()
        return self.proc.returncode


@dataclass(frozen=True)
class Window:
    """What one measured window of a daemon saw: frames/s, frames, CPU s, length,
    and the context switches (voluntary, involuntary) by thread name."""

    fps: float
    frames: int
    cpu: float
    seconds: float
    wakeups: dict[str, tuple[int, int]]


def window(daemon: DaemonProcess, seconds: float, settle: float) -> Window:
    """Resume ``daemon``, let it settle, measure ``seconds``, pause it again.

    Frames per second come from the capture times the prediction log holds
    for the window; CPU and context switches from /proc over the same span.
    """
    daemon.resume()
    time.sleep(settle)
    threads0, cpu0, start = daemon.threads(), daemon.cpu_seconds(), time.time()
    time.sleep(seconds)
    end, cpu1, threads1 = time.time(), daemon.cpu_seconds(), daemon.threads()
    # The prediction log's writer appends every 50 ms: run on past the window's
    # end until its last lines are in the file (later frames are not counted).
    time.sleep(0.08)
    daemon.pause()
    stamps = daemon.captured(start, end)
    fps = len(stamps) / (end - start) if end > start else 0.0
    return Window(fps, len(stamps), cpu1 - cpu0, end - start, switches_between(threads0, threads1))


class CpuBurner:
    """A busy loop in its own process: ends by itself after ``limit`` seconds at the latest."""

    CODE = (
        "import time, sys\n"
        "end = time.monotonic() + float(sys.argv[1])\n"
        "x = 0\n"
        "while time.monotonic() < end:\n"
        "    for _ in range(10000): x += 1\n"
    )

    def __init__(self, limit: float) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", self.CODE, str(limit)])
        self.running = True

    def pause(self) -> None:
        if self.running and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGSTOP)
        self.running = False

    def resume(self) -> None:
        if not self.running and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
        self.running = True

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.terminate()
            self.proc.wait(10)
