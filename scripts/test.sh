#!/usr/bin/env bash
# The test suite, as CI runs it: lint, format and type checks, then pytest with
# both TFLite runtimes installed side by side (NumPy 1), then the golden tests
# again with ai-edge-litert alone on NumPy 2, then (CI=true, or HASS_CHECK=1)
# the tests against a real Home Assistant, meanwhile (CI=true, or PI_CHECK=1)
# the emulated Raspberry Pi OS check for arm64 and armhf and (CI=true, or
# CAMERA_CHECK=1) the real camera stack check, and last the side-by-side
# benchmark. Extra arguments go to the first pytest run.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
pip_flags=(--quiet --disable-pip-version-check)

# System packages: libsystemd-dev and pkg-config build systemd-python;
# systemd provides systemd-analyze for the unit tests; shellcheck checks deploy/.
need=()
command -v pkg-config >/dev/null || need+=(pkg-config)
[ -f /usr/include/systemd/sd-daemon.h ] || need+=(libsystemd-dev)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v shellcheck >/dev/null || need+=(shellcheck)
# mosquitto: the real broker the MQTT tests and benchmark start on loopback;
# openssl makes the test CA for its TLS listener.
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_sub >/dev/null || need+=(mosquitto-clients)
command -v openssl >/dev/null || need+=(openssl)
# pgrep: the real-systemd check (tests/deploy/systemd_boot.sh) finds its PID 1.
command -v pgrep >/dev/null || need+=(procps)
# The web page is tested in Debian's chromium (driven by playwright, which never
# downloads a browser of its own); /metrics is checked by promtool.
command -v chromium >/dev/null || need+=(chromium)
command -v promtool >/dev/null || need+=(prometheus)
# The emulated Pi OS check (scripts/pi-os-check.sh): Debian roots for arm64 and
# armhf built with debootstrap, run under qemu-user through binfmt.
pi_check=0
[ "${CI:-}" = "true" ] && pi_check=1
[ -n "${PI_CHECK:-}" ] && pi_check=$PI_CHECK
# The camera check (scripts/camera-check.sh): picamera2 and libcamera in a
# Debian unstable root built with debootstrap, like the Pi OS check.
camera_check=0
[ "${CI:-}" = "true" ] && camera_check=1
[ -n "${CAMERA_CHECK:-}" ] && camera_check=$CAMERA_CHECK
if [ "$camera_check" = 1 ]; then
  command -v debootstrap >/dev/null || need+=(debootstrap)
fi
if [ "$pi_check" = 1 ]; then
  command -v debootstrap >/dev/null || need+=(debootstrap)
  command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
  command -v update-binfmts >/dev/null || need+=(binfmt-support)
fi
# The real Home Assistant (scripts/hass-root.sh): a Debian testing root built
# with debootstrap, entered with unshare and chroot (util-linux), run as root.
hass_check=0
[ "${CI:-}" = "true" ] && hass_check=1
[ -n "${HASS_CHECK:-}" ] && hass_check=$HASS_CHECK
if [ "$hass_check" = 1 ]; then
  command -v debootstrap >/dev/null || need+=(debootstrap)
  command -v unshare >/dev/null || need+=(util-linux)
  # Its network namespace has only a loopback: socat relays its HTTP port and
  # the broker's through Unix sockets; ip brings that loopback up.
  command -v socat >/dev/null || need+=(socat)
  command -v ip >/dev/null || need+=(iproute2)
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing system packages: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "missing system packages: ${need[*]} (install them with apt as root)" >&2
    exit 1
  fi
fi

venv=${VENV:-.venv-test}
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install "${pip_flags[@]}" -e ".[litert,tflite,systemd,mqtt,web,dev]"

# The Pi's own CPUs, emulated (scripts/pi-os-check.sh): install with
# deploy/install.sh, check, classify the fixture photos with each runtime that
# has a wheel there, run the daemon. It runs in the background from here,
# mostly on the core pytest leaves idle, and is waited for before the
# benchmark, which wants a quiet machine. About 10 minutes on a fresh machine
# (debootstrap included), 5-6 with the roots kept in
# /var/cache/edge-daemon-pi-check by an earlier run. --quick classifies with
# the default model only: every 224x224 model under emulation would add 4-5
# minutes (docs/raspberry-pi.md).
pi_pid=""
pi_log=""
hass_pid=""
hass_log=""
cam_pid=""
cam_log=""
stop_job() {
  # stop_job NAME PID LOG: kill it (unshare ignores SIGTERM; killing it takes
  # its namespace, processes and mounts, along) and show what it said.
  if [ -n "$2" ]; then
    kill -KILL "$2" 2>/dev/null || true
    wait "$2" 2>/dev/null || true
    echo "$1: stopped early, as the run failed; what it printed:"
    cat "$3"
  fi
  if [ -n "$3" ]; then rm -f "$3"; fi
}
stop_background() {
  # On a failure before their reports: the Pi OS check, the camera check and
  # the Home Assistant root build.
  stop_job pi-os-check "$pi_pid" "$pi_log"
  stop_job camera-check "$cam_pid" "$cam_log"
  stop_job hass-root "$hass_pid" "$hass_log"
}
if [ "$pi_check" = 1 ]; then
  pi_log=$(mktemp)
  pi_start=$SECONDS
  PI_CHECK_PYTHON="$(cd "$venv" && pwd)/bin/python" bash scripts/pi-os-check.sh --quick >"$pi_log" 2>&1 &
  pi_pid=$!
  trap stop_background EXIT
  echo "pi-os-check: started in the background; its report comes before the benchmark"
fi

# The real camera stack (scripts/camera-check.sh): picamera2 from PyPI over
# libcamera's virtual camera playing a fixture photo, in a Debian unstable
# root cached in /var/cache/edge-daemon-camera (keyed by its recipe). In the
# background too, reported before the benchmark. About 10 minutes with a fresh
# root (9 of them building it), under half a minute with the cached one.
if [ "$camera_check" = 1 ]; then
  cam_log=$(mktemp)
  cam_start=$SECONDS
  bash scripts/camera-check.sh >"$cam_log" 2>&1 &
  cam_pid=$!
  trap stop_background EXIT
  echo "camera-check: started in the background; its report comes before the benchmark"
fi

# The Home Assistant root (scripts/hass-root.sh), built or refreshed in the
# background too: about 9-13 minutes on a fresh machine, a second when
# /var/cache/edge-daemon-hass already holds it. Its tests run after the main
# pytest run, which leaves them out.
hass_args=()
if [ "$hass_check" = 1 ]; then
  hass_log=$(mktemp)
  hass_start=$SECONDS
  ROOT_PIP_PYTHON="$(cd "$venv" && pwd)/bin/python" bash scripts/hass-root.sh build >"$hass_log" 2>&1 &
  hass_pid=$!
  hass_args=(-m "not home_assistant")
  trap stop_background EXIT
  echo "hass-root: building or reusing the Home Assistant root in the background"
fi

"$venv/bin/ruff" check .
"$venv/bin/ruff" format --check .
"$venv/bin/mypy"
"$venv/bin/python" -m pytest -q ${hass_args[@]+"${hass_args[@]}"} "$@"

# ai-edge-litert with NumPy 2, as a Pi 64-bit install gets it by default.
venv2=${VENV2:-.venv-test-np2}
[ -x "$venv2/bin/python" ] || "$python" -m venv "$venv2"
"$venv2/bin/python" -m pip install "${pip_flags[@]}" -e ".[litert,dev]" "numpy>=2"
"$venv2/bin/python" -c "import numpy; assert int(numpy.__version__.split('.')[0]) >= 2, numpy.__version__"
"$venv2/bin/python" -m pytest -q tests/test_golden.py -k "ai_edge_litert"

# Home Assistant Core itself (tests/mqtt/test_home_assistant.py), from its root.
if [ "$hass_check" = 1 ]; then
  hass_status=0
  wait "$hass_pid" || hass_status=$?
  hass_pid=""
  tail -n 5 "$hass_log"
  echo "hass-root: $((SECONDS - hass_start)) s, in the background since the lint step"
  if [ "$hass_status" != 0 ]; then
    cat "$hass_log"
    echo "hass-root: building the Home Assistant root failed (exit $hass_status)" >&2
    exit "$hass_status"
  fi
  rm -f "$hass_log"
  hass_log=""
  hass_t0=$SECONDS
  "$venv/bin/python" -m pytest -q -m home_assistant tests/mqtt/test_home_assistant.py
  echo "home assistant tests: $((SECONDS - hass_t0)) s"
else
  echo "home assistant tests: skipped (run with CI=true or HASS_CHECK=1, as root)"
fi

if [ "$pi_check" = 1 ]; then
  pi_status=0
  wait "$pi_pid" || pi_status=$?
  pi_pid=""
  cat "$pi_log"
  rm -f "$pi_log"
  echo "pi-os-check: $((SECONDS - pi_start)) s, in the background since the lint step"
  if [ "$pi_status" != 0 ]; then
    echo "pi-os-check: the emulated Raspberry Pi OS check failed (exit $pi_status)" >&2
    exit "$pi_status"
  fi
else
  echo "pi-os-check: skipped (runs with CI=true or PI_CHECK=1, as root)"
fi

if [ "$camera_check" = 1 ]; then
  cam_status=0
  wait "$cam_pid" || cam_status=$?
  cam_pid=""
  cat "$cam_log"
  rm -f "$cam_log"
  cam_log=""
  echo "camera-check: $((SECONDS - cam_start)) s, in the background since the lint step"
  if [ "$cam_status" != 0 ]; then
    echo "camera-check: the real camera stack check failed (exit $cam_status)" >&2
    exit "$cam_status"
  fi
else
  echo "camera-check: skipped (runs with CI=true or CAMERA_CHECK=1, as root)"
fi

# The benchmarks: each prints figures measured side by side in one run, and
# proves its script runs. Speed targets are not test assertions: exit 1 (a
# target missed on this machine) is reported, anything else fails the run.
bench() {
  local what=$1 status=0
  shift
  "$venv/bin/python" "$@" || status=$?
  case $status in
    0) ;;
    1) echo "benchmark: the $what target was missed on this machine (figures above); not a failure" ;;
    *) echo "benchmark: $1 failed (exit $status)" >&2; exit "$status" ;;
  esac
}

# edge-daemon against the tutorial loop and bare invoke() loops, in-process and
# as the edge-daemon run process with the reference outputs. Locally the short
# form (about 1.5 minutes); in CI (CI=true) the full run the figures in
# docs/performance.md come from (about five minutes), since six pairs of 0.5 s
# windows swing by several percent on a shared machine.
bench_args=(--quick)
[ "${CI:-}" = "true" ] && bench_args=()
bench "speed" benchmarks/compare.py ${bench_args[@]+"${bench_args[@]}"}
# Each output's cost, short forms (under a minute each): the MQTT sink
# publishing to a local mosquitto, events and snapshots, the web server with 5
# live-view clients; each against the same daemon without it.
bench "MQTT throughput" benchmarks/outputs.py --quick
bench "events" benchmarks/events.py --quick
bench "web server's" benchmarks/web.py --quick
# Teaching: training time (cached, from scratch), accuracy on the synthetic
# scenes, the exported model against the base (short form, two to three minutes).
bench "teach" benchmarks/teach.py --quick
# The taught model against its base: agreement, invoke-time ratio, sizes.
# One base model; in CI with 200 interleaved invokes a side (30 swing by +-5%).
teach_args=(--quick)
[ "${CI:-}" = "true" ] && teach_args=(--quick --rounds 200)
bench "taught model's" benchmarks/teach_export.py "${teach_args[@]}"
# Each camera format's per-frame conversion against one invoke (under a minute).
bench "camera format" benchmarks/camera_formats.py --quick
# The change gate (about 70 s): a 45 s scene with one visit through two
# daemons at once, gate on and off; the gate's cost per frame; a small subject.
bench "change gate" benchmarks/gate.py --quick
# Where frames go under load (about a minute, no target): the bare loop and
# the daemon with its outputs, web off, log only, quiet and beside a busy loop.
bench "load" benchmarks/load.py --quick
