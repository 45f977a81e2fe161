#!/usr/bin/env bash
# The daemon's main job on its built-in defaults: the files source over the
# sample images in models/samples, the default MobileNet model, predictions to
# edge-daemon-data/. Sets up .venv and fetches the model on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${VENV:-.venv}
python=${PYTHON:-python3}
# 32-bit Raspberry Pi OS has no ai-edge-litert wheel: use tflite-runtime there.
case "$(uname -m)" in
  armv7l|armv6l) extra=tflite ;;
  *) extra=litert ;;
esac

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check ".[$extra,web]"

if [ ! -f models/mobilenet_v1_1.0_224_quant.tflite ] || [ ! -d models/samples ]; then
  # Offline machines keep the models in ../shared (or $EDGE_DAEMON_MODELS);
  # otherwise download them from TensorFlow's model archive.
  shared=${EDGE_DAEMON_SHARED:-../shared}
  if [ -d "$shared/models" ]; then
    "$venv/bin/edge-daemon" models fetch --from "$shared/models" --images "$shared/images"
  else
    "$venv/bin/edge-daemon" models fetch
  fi
fi

"$venv/bin/edge-daemon" run "$@"
echo
echo "Predictions (edge-daemon tail -n 20):"
"$venv/bin/edge-daemon" tail -n 20
echo
echo "Status (edge-daemon status):"
"$venv/bin/edge-daemon" status || true
