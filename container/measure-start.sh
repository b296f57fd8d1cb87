#!/usr/bin/env bash
# The image's size and its start → /health ready time with the model files already on disk (mounted, no
# download): the first start on a fresh /data volume, then restarts on the same volume. With BASELINE set to a
# `stream-assist` command outside the image (e.g. .venv/bin/stream-assist), each run also starts that one the
# same way right after, so the two are compared under the same load.
# usage: [BASELINE=.venv/bin/stream-assist] container/measure-start.sh IMAGE TEXT.gguf MMPROJ.gguf [RUNS]
# (the two files in one folder; needs podman and curl)
set -euo pipefail
image=$1 text=$2 mmproj=$3 runs=${4:-3}
port=${PORT:-18080}
models=$(cd "$(dirname "$text")" && pwd)
volume=stream-assist-start-$$
home=$(mktemp -d)
size=$(podman image inspect --format '{{.Size}}' "$image")
echo "image $image: $((size / 1000000)) MB"
trap 'podman rm -f "$volume-$run" >/dev/null 2>&1 || true; podman volume rm -f "$volume" >/dev/null 2>&1 || true; rm -rf "$home"' EXIT

ready_after() {  # seconds from $1 until /health answers, while process/container check $2 succeeds
  until curl -fs "http://127.0.0.1:$port/health" >/dev/null; do
    eval "$2" || { echo "it stopped before /health answered" >&2; exit 1; }
    sleep 0.05  # polling a server's readiness: this is the measurement, not a test
  done
  printf "%.1f" "$(echo "$(date +%s.%N) - $1" | bc)"
}

for run in $(seq "$runs"); do
  kind=$([ "$run" = 1 ] && echo "fresh volume" || echo "restart")
  begun=$(date +%s.%N)
  podman run -d --rm --name "$volume-$run" --network host -v "$volume":/data -v "$models":/models:ro \
    -e HEALTH_PORT="$port" "$image" stream-assist serve --host 0.0.0.0 --port "$port" \
    --model "/models/$(basename "$text")" --mmproj "/models/$(basename "$mmproj")" >/dev/null 2>&1
  took=$(ready_after "$begun" "podman container exists $volume-$run")
  inside=$(podman logs "$volume-$run" 2>&1 | grep -o -E "(model loaded|kernels ready) in [0-9.]+ s" | paste -sd,)
  podman stop --time 20 "$volume-$run" >/dev/null
  echo "run $run, image ($kind): podman run → /health ok $took s ($inside)"
  if [ -n "${BASELINE:-}" ]; then
    begun=$(date +%s.%N)
    HOME=$home "$BASELINE" serve --host 0.0.0.0 --port "$port" --model "$text" --mmproj "$mmproj" \
      >/dev/null 2>"$home/log" &
    pid=$!
    took=$(ready_after "$begun" "kill -0 $pid 2>/dev/null")
    kill -TERM "$pid" && wait "$pid" || true
    inside=$(grep -o -E "(model loaded|kernels ready) in [0-9.]+ s" "$home/log" | paste -sd,)
    echo "run $run, $BASELINE: start → /health ok $took s ($inside)"
  fi
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores (shared machine)"
