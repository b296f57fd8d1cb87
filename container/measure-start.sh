#!/usr/bin/env bash
# The image's size and its start → /health ready time with the model files already on disk (mounted, no
# download): the first start on a fresh /data volume, then restarts on the same volume.
# usage: container/measure-start.sh IMAGE TEXT.gguf MMPROJ.gguf [RUNS]   (the two files in one folder; podman, curl)
set -euo pipefail
image=$1 text=$2 mmproj=$3 runs=${4:-3}
port=${PORT:-18080}
models=$(cd "$(dirname "$text")" && pwd)
volume=stream-assist-start-$$
size=$(podman image inspect --format '{{.Size}}' "$image")
echo "image $image: $((size / 1000000)) MB"
trap 'podman rm -f "$volume-run" >/dev/null 2>&1 || true; podman volume rm -f "$volume" >/dev/null 2>&1 || true' EXIT
for run in $(seq "$runs"); do
  begun=$(date +%s.%N)
  podman run -d --rm --name "$volume-run" --network host -v "$volume":/data -v "$models":/models:ro \
    -e HEALTH_PORT="$port" "$image" stream-assist serve --host 0.0.0.0 --port "$port" \
    --model "/models/$(basename "$text")" --mmproj "/models/$(basename "$mmproj")" >/dev/null
  until curl -fs "http://127.0.0.1:$port/health" >/dev/null; do
    podman container exists "$volume-run" || { echo "the container stopped"; exit 1; }
    sleep 0.05  # polling a server's readiness: this is the measurement, not a test
  done
  ready=$(date +%s.%N)
  podman stop --time 20 "$volume-run" >/dev/null
  echo "run $run ($([ "$run" = 1 ] && echo "fresh volume" || echo "restart")): podman run → /health ok" \
       "$(echo "$ready - $begun" | bc) s"
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
