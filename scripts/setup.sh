#!/usr/bin/env bash
# Idempotent environment setup: FFmpeg and Chromium (apt-get) + a virtualenv with the pinned packages + the
# openai npm package for the Node client test (tests/node, npm ci).
# A second run with unchanged pins is a no-op that returns in well under a second.
#
#   PTBR_SETUP_BROWSER=0  skip Debian's chromium + chromium-driver (only the /ui browser tests need them)
#   PTBR_VENV         where the virtualenv lives (default: <repo>/.venv)
#   PTBR_PYTHON       interpreter to build it with (default: first of python3.11, python3.12, python3.10, python3)
#   PTBR_TORCH_INDEX  install torch/torchaudio from this index first, e.g. https://download.pytorch.org/whl/cu126
#                     for Pascal GPUs (GTX 10xx): PyPI's default CUDA wheels ship no Pascal kernels.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PTBR_VENV:-$ROOT/.venv}"
TORCH_INDEX="${PTBR_TORCH_INDEX:-}"

log() { echo "[setup] $*" >&2; }

apt_install() {
    # apt_install WHAT PACKAGE...: install Debian packages (as root, or through sudo).
    local what="$1"; shift
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { log "$what is missing and this user cannot apt-get: install $*"; exit 1; }
        sudo="sudo"
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

ensure_ffmpeg() {
    command -v ffmpeg >/dev/null 2>&1 && return 0
    log "installing FFmpeg with apt-get (torchaudio, pydub and mp3/ogg references need it)"
    apt_install FFmpeg ffmpeg
}

ensure_node_client() {
    # tests/test_openai_clients.py runs the official openai npm package (tests/node, pinned by its lock file).
    local dir="$ROOT/tests/node"
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        log "installing Node.js and npm with apt-get (the openai npm package's client test)"
        apt_install Node.js nodejs npm
    fi
    local stamp="$dir/node_modules/.ptbr-lock-sha256" want
    want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
    [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && return 0
    log "installing the openai npm package into tests/node (npm ci)"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
    echo "$want" > "$stamp"
}

ensure_browser() {
    # tests/test_ui_browser.py drives Debian's own Chromium through its chromedriver (Selenium): never a browser
    # download, and the driver always matches the browser's version.
    [ "${PTBR_SETUP_BROWSER:-1}" = "0" ] && return 0
    [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && return 0
    log "installing Chromium and chromedriver with apt-get (the /ui page's browser tests need them)"
    apt_install Chromium chromium chromium-driver
}

pick_python() {
    if [ -n "${PTBR_PYTHON:-}" ]; then echo "$PTBR_PYTHON"; return; fi
    for candidate in python3.11 python3.12 python3.10 python3; do
        if command -v "$candidate" >/dev/null 2>&1; then echo "$candidate"; return; fi
    done
    log "no python3 found"; exit 1
}

requirements_fingerprint() {
    # Anything that changes what gets installed changes the fingerprint.
    { cat "$ROOT/requirements.txt" "$ROOT/requirements-test.txt" "$ROOT/constraints.txt"
      echo "torch-index=$TORCH_INDEX"
      "$VENV/bin/python" -c 'import sys; print(sys.version)'
    } | sha256sum | cut -d' ' -f1
}

ensure_ffmpeg
ensure_node_client
ensure_browser

STAMP="$VENV/.ptbr-setup-stamp"
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(requirements_fingerprint)" ]; then
    exit 0
fi

PYTHON="$(pick_python)"
if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtualenv $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV"
fi

CONSTRAINTS="$ROOT/constraints.txt"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
if [ -n "$TORCH_INDEX" ]; then
    # The index's torch build brings its own nvidia-* runtime pins; ours (PyPI's build) would clash.
    log "installing torch from $TORCH_INDEX"
    "${PIP[@]}" install -q --index-url "$TORCH_INDEX" "torch==2.9.1" "torchaudio==2.9.1"
    CONSTRAINTS="$(mktemp)"
    grep -v -E '^(nvidia-|triton==|torch==|torchaudio==)' "$ROOT/constraints.txt" > "$CONSTRAINTS"
fi
log "installing pinned packages into $VENV (first time: a few minutes, ~8 GB)"
# This workplace's pip config lists local mirrors that warn for every package they lack: keep the log readable.
"${PIP[@]}" install -q -r "$ROOT/requirements.txt" -r "$ROOT/requirements-test.txt" -c "$CONSTRAINTS" 2>&1 \
    | { grep -v '^WARNING: Location' || true; }
requirements_fingerprint > "$STAMP"
log "environment ready: $VENV"
