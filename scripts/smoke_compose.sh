#!/usr/bin/env bash
# Bring the image up with deploy/compose.yaml, check it serves, then take it down; print JSON.
#
#   scripts/smoke_compose.sh --image IMAGE [--gpu] [--model-store DIR] [--nfe-step N] [--ready-timeout S]
#
#   --image IMAGE      the image to run (PTBR_IMAGE), e.g. the one scripts/smoke_container.sh built
#   --gpu              keep compose.yaml's GPU reservation; default: add deploy/compose.cpu.yaml (no GPU)
#   --model-store DIR  add deploy/compose.model-store.yaml: the model from this BentoML model store, not the image
#
# Uses `docker compose` when its engine answers, else podman-compose (PyPI; beside $PYTHON or on PATH). Checks:
# the merged config, /readyz within the start period, the routes (scripts/smoke_http.py), the compose healthcheck
# command, that the image's user can write the data volume, the restart policy; then `down -v`. Exit 1 on failure.
set -Eeuo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGE=""
GPU=0
MODEL_STORE=""
NFE_STEP=2
READY_TIMEOUT=900
while [[ $# -gt 0 ]]; do
    case "$1" in
        --image) IMAGE="$2"; shift 2 ;;
        --gpu) GPU=1; shift ;;
        --model-store) MODEL_STORE="$2"; shift 2 ;;
        --nfe-step) NFE_STEP="$2"; shift 2 ;;
        --ready-timeout) READY_TIMEOUT="$2"; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
done
[[ -n "$IMAGE" ]] || { echo "--image is required" >&2; exit 2; }

say() { echo "[smoke-compose] $*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
    if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON="$(command -v python3)"; fi
fi

if command -v docker >/dev/null && docker compose version >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    COMPOSE=(docker compose); ENGINE=docker
elif [[ -x "$(dirname "$PYTHON")/podman-compose" ]]; then
    COMPOSE=("$(dirname "$PYTHON")/podman-compose"); ENGINE=podman
elif command -v podman-compose >/dev/null; then
    COMPOSE=(podman-compose); ENGINE=podman
else
    echo "neither docker compose nor podman-compose is available (pip install podman-compose)" >&2; exit 2
fi

FILES=(-f "$REPO/deploy/compose.yaml")
[[ "$GPU" == 1 ]] || FILES+=(-f "$REPO/deploy/compose.cpu.yaml")
[[ -z "$MODEL_STORE" ]] || FILES+=(-f "$REPO/deploy/compose.model-store.yaml")
PROJECT="ptbr-smoke-$$"
export PTBR_IMAGE="$IMAGE"
export PTBR_PORT="${PTBR_PORT:-$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
[[ -z "$MODEL_STORE" ]] || export PTBR_MODEL_STORE="$MODEL_STORE"
WORK="$(mktemp -d -t ptbr-compose-XXXXXX)"
compose() { "${COMPOSE[@]}" -p "$PROJECT" "${FILES[@]}" "$@"; }
cleanup() {
    local status=$?
    compose down -v >/dev/null 2>&1 || true
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
say "${COMPOSE[*]} with ${FILES[*]}"

compose config >"$WORK/config.yaml"
started="$(now)"
compose up -d >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log" >&2; exit 1; }
CONTAINER="$("$ENGINE" ps -q --filter "label=com.docker.compose.project=$PROJECT" | head -n 1)"
[[ -n "$CONTAINER" ]] || { cat "$WORK/up.log" >&2; say "no container for project $PROJECT"; exit 1; }
COLD_START=""
deadline=$(( $(date +%s) + READY_TIMEOUT ))
while (( $(date +%s) < deadline )); do
    if [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PTBR_PORT/readyz" || true)" == 200 ]]; then
        COLD_START="$(since "$started")"; break
    fi
    if [[ "$("$ENGINE" inspect --format '{{.State.Running}}' "$CONTAINER")" != true ]]; then break; fi
    sleep 0.25
done
if [[ -z "$COLD_START" ]]; then "$ENGINE" logs --tail 80 "$CONTAINER" >&2 || true; say "never ready"; exit 1; fi
say "ready in ${COLD_START}s on port $PTBR_PORT"

# The compose healthcheck's own command, run in the container (podman without systemd does not schedule it).
if [[ "$ENGINE" == podman ]]; then
    HEALTH="$(podman healthcheck run "$CONTAINER" >/dev/null 2>&1 && echo healthy || echo unhealthy)"
else
    for _ in $(seq 1 20); do
        HEALTH="$(docker inspect --format '{{.State.Health.Status}}' "$CONTAINER")"
        [[ "$HEALTH" == starting ]] || break; sleep 3
    done
fi
RESTART="$("$ENGINE" inspect --format '{{.HostConfig.RestartPolicy.Name}}' "$CONTAINER")"
DATA_WRITABLE="$("$ENGINE" exec "$CONTAINER" sh -c \
    'touch "$PTBR_DATA_DIR/.smoke-write" && rm "$PTBR_DATA_DIR/.smoke-write" && echo yes || echo no')"
say "healthcheck: $HEALTH, restart policy: $RESTART, data volume writable by $("$ENGINE" exec "$CONTAINER" id -u): $DATA_WRITABLE"

HTTP_STATUS=0
"$PYTHON" "$REPO/scripts/smoke_http.py" "http://127.0.0.1:$PTBR_PORT" --nfe-step "$NFE_STEP" >"$WORK/http.json" \
    || HTTP_STATUS=$?
[[ "$HTTP_STATUS" == 0 ]] || "$ENGINE" logs --tail 60 "$CONTAINER" >&2 || true

started="$(now)"
compose down -v >"$WORK/down.log" 2>&1
DOWN_SECONDS="$(since "$started")"
LEFT="$("$ENGINE" ps -aq --filter "label=com.docker.compose.project=$PROJECT" | wc -l)"

export ENGINE IMAGE GPU MODEL_STORE COLD_START HEALTH RESTART DATA_WRITABLE DOWN_SECONDS LEFT
"$PYTHON" - "$WORK/http.json" "${COMPOSE[*]}" "${FILES[*]}" <<'EOF'
import json, os, sys
env = os.environ
try:
    http = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    http = None
print(json.dumps({
    "compose": sys.argv[2], "files": sys.argv[3].replace("-f ", "").split(), "image": env["IMAGE"],
    "gpu": env["GPU"] == "1", "model_store": env["MODEL_STORE"] or None,
    "cold_start_to_ready_seconds": float(env["COLD_START"]), "healthcheck": env["HEALTH"],
    "restart_policy": env["RESTART"], "data_volume_writable": env["DATA_WRITABLE"] == "yes",
    "down_seconds": float(env["DOWN_SECONDS"]), "containers_left": int(env["LEFT"]), "http": http,
}))
EOF
[[ "$HTTP_STATUS" == 0 && "$HEALTH" == healthy && "$DATA_WRITABLE" == yes && "$LEFT" == 0 ]]
