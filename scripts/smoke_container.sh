#!/usr/bin/env bash
# Build the bento, containerize it, run the image, synthesise through it, stop and clean up; print JSON timings.
#
#   scripts/smoke_container.sh [--model TAG] [--torch-index cu126|pypi] [--backend docker|podman] [--tag IMAGE]
#                              [--gpus] [--rm-image] [--compose] [--nfe-step N] [--ready-timeout S] [--port P]
#
#   --model TAG        a model already in the BentoML store ($BENTOML_HOME); the bento is built in that store.
#                      Without it the tiny demo model is imported into a throw-away BentoML home (removed at exit).
#   --torch-index I    cu126 (default): bentofile.yaml as it is, torch from the cu126 index (Pascal kernels).
#                      pypi: the same bentofile without its extra_index_url (scripts/bentofile_variant.py writes it
#                      to a temporary file), for machines that cannot reach the torch index (PyPI's torch has no
#                      Pascal kernels: see README).
#   --backend B        docker or podman; default: the first whose engine answers (docker info, then podman info).
#   --gpus             give the container every GPU (docker --gpus all; podman --device nvidia.com/gpu=all, CDI).
#   --rm-image         remove the image at the end too (containers are always removed).
#   --compose          also bring the image up with deploy/compose.yaml on CPU (scripts/smoke_compose.sh).
#   --read-only        run the image as the Helm chart does: read-only root filesystem, writable scratch only where
#                      BentoML, numba and matplotlib write (the chart's scratch volume and env).
#
# Environment: PYTHON (the project's venv python; default .venv/bin/python, else python3) runs bentoml and the
# HTTP checks (scripts/smoke_http.py). Progress goes to stderr; stdout gets one JSON object. Exit 1 on any failure.
set -Eeuo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODEL=""
TORCH_INDEX="cu126"
BACKEND=""
IMAGE=""
GPUS=0
RM_IMAGE=0
COMPOSE=0
NFE_STEP=2
READY_TIMEOUT=900
PORT=""
READ_ONLY=0

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --model) MODEL="$2"; shift 2 ;;
        --torch-index) TORCH_INDEX="$2"; shift 2 ;;
        --backend) BACKEND="$2"; shift 2 ;;
        --tag) IMAGE="$2"; shift 2 ;;
        --gpus) GPUS=1; shift ;;
        --rm-image) RM_IMAGE=1; shift ;;
        --compose) COMPOSE=1; shift ;;
        --read-only) READ_ONLY=1; shift ;;
        --nfe-step) NFE_STEP="$2"; shift 2 ;;
        --ready-timeout) READY_TIMEOUT="$2"; shift 2 ;;
        --port) PORT="$2"; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "unknown option: $1" >&2; usage ;;
    esac
done
case "$TORCH_INDEX" in cu126|pypi) ;; *) echo "--torch-index must be cu126 or pypi" >&2; exit 2 ;; esac

say() { echo "[smoke-container] $*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
    if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON="$(command -v python3)"; fi
fi
BENTOML="$(dirname "$PYTHON")/bentoml"
[[ -x "$BENTOML" ]] || { echo "no bentoml beside $PYTHON: set PYTHON to the project's venv python" >&2; exit 2; }

# --- container engine ------------------------------------------------------------------------------------------
if [[ -z "$BACKEND" ]]; then
    if command -v docker >/dev/null && docker info >/dev/null 2>&1; then BACKEND=docker
    elif command -v podman >/dev/null && podman info >/dev/null 2>&1; then BACKEND=podman
    else echo "no container engine answers (docker info / podman info)" >&2; exit 2
    fi
fi
ENGINE="$BACKEND"
if [[ "$BACKEND" == docker ]] && docker --version 2>/dev/null | grep -qi podman; then
    # podman-docker: bentoml's docker backend rejects podman's version while BuildKit is requested.
    export DOCKER_BUILDKIT=0
fi
say "backend: $BACKEND"

WORK="$(mktemp -d -t ptbr-smoke-XXXXXX)"
CONTAINER="ptbr-smoke-$$"
OWN_HOME=""
cleanup() {
    local status=$?
    "$ENGINE" rm -f "$CONTAINER" >/dev/null 2>&1 || true
    if [[ "$RM_IMAGE" == 1 && -n "$IMAGE" ]]; then "$ENGINE" rmi -f "$IMAGE" >/dev/null 2>&1 || true; fi
    [[ -n "$OWN_HOME" ]] && rm -rf "$OWN_HOME"
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT

# --- model and bento -------------------------------------------------------------------------------------------
export BENTOML_DO_NOT_TRACK=True
if [[ -z "$MODEL" ]]; then
    OWN_HOME="$(mktemp -d -t ptbr-smoke-bentoml-XXXXXX)"
    export BENTOML_HOME="$OWN_HOME"
    MODEL="$(HF_HUB_OFFLINE=1 "$PYTHON" "$REPO/scripts/import_model.py" --demo)"
    say "demo model $MODEL in throw-away BENTOML_HOME $OWN_HOME"
fi

BENTOFILE="$REPO/bentofile.yaml"
if [[ "$TORCH_INDEX" == pypi ]]; then
    # One bentofile: the PyPI variant is derived from it, never kept by hand.
    BENTOFILE="$WORK/bentofile.yaml"
    "$PYTHON" "$REPO/scripts/bentofile_variant.py" --torch-index pypi "$BENTOFILE"
    say "torch from PyPI: $BENTOFILE (bentofile.yaml without extra_index_url)"
fi

started="$(now)"
BENTO="$(cd "$REPO" && PTBR_MODEL_TAG="$MODEL" "$BENTOML" build -f "$BENTOFILE" --output tag "$REPO" \
         | tail -n 1 | sed 's/^__tag__://')"
BUILD_SECONDS="$(since "$started")"
say "bento $BENTO built in ${BUILD_SECONDS}s"
IMAGE="${IMAGE:-$BENTO}"

started="$(now)"
"$BENTOML" containerize "$BENTO" --backend "$BACKEND" -t "$IMAGE" >"$WORK/containerize.log" 2>&1 || {
    tail -n 60 "$WORK/containerize.log" >&2; say "containerize failed"; exit 1; }
CONTAINERIZE_SECONDS="$(since "$started")"
IMAGE_BYTES="$("$ENGINE" image inspect --format '{{.Size}}' "$IMAGE")"
say "image $IMAGE: $IMAGE_BYTES bytes, containerized in ${CONTAINERIZE_SECONDS}s"

# --- what the image carries ------------------------------------------------------------------------------------
# A package cache left in a layer (uv's, pip's) is dead weight in every pull.
CACHE_KB="$("$ENGINE" run --rm --user root --entrypoint sh "$IMAGE" -c \
    'du -sk /root/.cache /home/bentoml/.cache 2>/dev/null | awk "{ s += \$1 } END { print s + 0 }"')"
# torch.compile needs a C compiler and Python's headers at run time (Triton on a GPU, Inductor's C++ on a CPU):
# compiling a small function on the CPU here proves both are in the image.
started="$(now)"
"$ENGINE" run --rm "$IMAGE" python -c '
import torch
f = torch.compile(lambda x: torch.sin(x) * 2 + 1)
x = torch.randn(64)
assert torch.allclose(f(x), torch.sin(x) * 2 + 1)
print("ok", torch.__version__, torch.version.cuda)' >"$WORK/compile.log" 2>&1 || true
COMPILE_SECONDS="$(since "$started")"
COMPILE_OUT="$(tail -n 1 "$WORK/compile.log")"
[[ "$COMPILE_OUT" == ok* ]] || tail -n 8 "$WORK/compile.log" >&2
say "torch.compile in the image: $COMPILE_OUT (${COMPILE_SECONDS}s)"

# --- run it ----------------------------------------------------------------------------------------------------
PORT="${PORT:-$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
GPU_ARGS=()
if [[ "$GPUS" == 1 ]]; then
    if [[ "$ENGINE" == podman ]]; then GPU_ARGS=(--device nvidia.com/gpu=all); else GPU_ARGS=(--gpus all); fi
fi
RUN_ARGS=(-e PTBR_LOG_FORMAT=json)
if [[ "$READ_ONLY" == 1 ]]; then
    # Keep in step with deploy/helm/f5tts-ptbr (values.yaml readOnlyScratch, templates/deployment.yaml).
    RUN_ARGS+=(--read-only --tmpfs /tmp -e NUMBA_CACHE_DIR=/tmp/numba -e MPLCONFIGDIR=/tmp/matplotlib
              -e CUDA_CACHE_PATH=/tmp/nv -e BENTOML_RESULT_STORE=/tmp/bentoml-task-results.db)
    for dir in bentos models envs tmp; do RUN_ARGS+=(--tmpfs "/home/bentoml/$dir"); done
fi
started="$(now)"
"$ENGINE" run -d --name "$CONTAINER" -p "127.0.0.1:$PORT:3000" "${GPU_ARGS[@]}" "${RUN_ARGS[@]}" "$IMAGE" >/dev/null
COLD_START=""
deadline=$(( $(date +%s) + READY_TIMEOUT ))
while (( $(date +%s) < deadline )); do
    if [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/readyz" || true)" == 200 ]]; then
        COLD_START="$(since "$started")"; break
    fi
    if [[ "$("$ENGINE" inspect --format '{{.State.Running}}' "$CONTAINER")" != true ]]; then break; fi
    sleep 0.25
done
if [[ -z "$COLD_START" ]]; then
    "$ENGINE" logs --tail 80 "$CONTAINER" >&2 || true
    say "the container never became ready"; exit 1
fi
say "ready in ${COLD_START}s on port $PORT"

HTTP_STATUS=0
"$PYTHON" "$REPO/scripts/smoke_http.py" "http://127.0.0.1:$PORT" --nfe-step "$NFE_STEP" >"$WORK/http.json" \
    || HTTP_STATUS=$?
if [[ "$HTTP_STATUS" != 0 ]]; then "$ENGINE" logs --tail 60 "$CONTAINER" >&2 || true; fi

started="$(now)"
"$ENGINE" stop -t 30 "$CONTAINER" >/dev/null
STOP_SECONDS="$(since "$started")"
EXIT_CODE="$("$ENGINE" inspect --format '{{.State.ExitCode}}' "$CONTAINER")"
"$ENGINE" rm "$CONTAINER" >/dev/null

COMPOSE_STATUS=0
if [[ "$COMPOSE" == 1 ]]; then
    COMPOSE_ARGS=(--image "$IMAGE" --nfe-step "$NFE_STEP")
    if [[ -n "$OWN_HOME" ]]; then
        # The throw-away store holds only the demo model: serve it from there (compose.model-store.yaml), readable
        # by the image's user, to prove that override too.
        chmod -R a+rX "$OWN_HOME"
        COMPOSE_ARGS+=(--model-store "$OWN_HOME/models")
    fi
    PYTHON="$PYTHON" "$REPO/scripts/smoke_compose.sh" "${COMPOSE_ARGS[@]}" >"$WORK/compose.json" || COMPOSE_STATUS=$?
fi

export READ_ONLY BACKEND TORCH_INDEX MODEL BENTO IMAGE BUILD_SECONDS CONTAINERIZE_SECONDS IMAGE_BYTES CACHE_KB COMPILE_OUT \
    COMPILE_SECONDS COLD_START GPUS STOP_SECONDS EXIT_CODE
"$PYTHON" - "$WORK/http.json" "$WORK/compose.json" <<'EOF'
import json, os, sys

def load(path):
    try:
        return json.load(open(path))
    except (OSError, ValueError):
        return None

env = os.environ
print(json.dumps({
    "backend": env["BACKEND"], "torch_index": env["TORCH_INDEX"], "model": env["MODEL"], "bento": env["BENTO"],
    "image": env["IMAGE"], "build_seconds": float(env["BUILD_SECONDS"]),
    "containerize_seconds": float(env["CONTAINERIZE_SECONDS"]),
    "image_bytes": int(env["IMAGE_BYTES"]), "image_gb": round(int(env["IMAGE_BYTES"]) / 1e9, 2),
    "package_cache_kb_in_image": int(env["CACHE_KB"] or 0),
    "torch_compile_check": env["COMPILE_OUT"], "torch_compile_check_seconds": float(env["COMPILE_SECONDS"]),
    "cold_start_to_ready_seconds": float(env["COLD_START"]), "gpus": env["GPUS"] == "1", "read_only_root": env["READ_ONLY"] == "1",
    "stop_seconds": float(env["STOP_SECONDS"]), "container_exit_code": int(env["EXIT_CODE"] or -1),
    "http": load(sys.argv[1]), "compose": load(sys.argv[2]),
}, indent=1))
EOF
[[ "$RM_IMAGE" == 1 ]] || say "image $IMAGE kept (--rm-image removes it)"
[[ "$HTTP_STATUS" == 0 && "$COMPOSE_STATUS" == 0 && "$COMPILE_OUT" == ok* ]]
