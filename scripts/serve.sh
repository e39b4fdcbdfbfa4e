#!/usr/bin/env bash
# Set up, make sure a model is in the BentoML store, then serve on http://127.0.0.1:${PTBR_PORT:-3000}.
#
#   PTBR_CHECKPOINT   import this checkpoint first (path or hf://owner/repo/file); extra import flags in
#                     PTBR_IMPORT_ARGS, e.g. "--vocoder /models/vocos --preset f5tts-base-v0"
#   (neither)         serve the newest imported model, or import the tiny demo model when the store has none
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
VENV="${PTBR_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
cd "$ROOT"

if [ -n "${PTBR_CHECKPOINT:-}" ]; then
    # shellcheck disable=SC2086  # PTBR_IMPORT_ARGS is a list of flags on purpose
    PTBR_MODEL_TAG="$("$PY" scripts/import_model.py "$PTBR_CHECKPOINT" ${PTBR_IMPORT_ARGS:-})"
    export PTBR_MODEL_TAG
elif [ -z "${PTBR_MODEL_TAG:-}" ] && ! "$VENV/bin/bentoml" models get f5tts-ptbr:latest >/dev/null 2>&1; then
    echo "[serve] no model imported yet: importing the demo model (random weights; it sounds like noise)" >&2
    PTBR_MODEL_TAG="$("$PY" scripts/import_model.py --demo)"
    export PTBR_MODEL_TAG
fi
echo "[serve] model: ${PTBR_MODEL_TAG:-f5tts-ptbr:latest}" >&2

PORT="${PTBR_PORT:-3000}"
cat >&2 <<HELP
[serve] once ready (curl -s http://127.0.0.1:$PORT/readyz), try:
  curl -s -o out.wav -D - http://127.0.0.1:$PORT/synthesize \\
       -F text='Olá! Hoje é dia 25/12 e a entrada custa R\$ 10,50.' \\
       -F reference_audio=@reference.wav -F reference_text='Transcrição exata da referência.'
  python -c "import bentoml, pathlib; c = bentoml.SyncHTTPClient('http://127.0.0.1:$PORT'); \\
print(c.synthesize(text='Bom dia!', reference_audio=pathlib.Path('reference.wav'), reference_text='Transcrição.'))"
HELP
exec "$VENV/bin/bentoml" serve service:PtBrTTS --host "${PTBR_HOST:-127.0.0.1}" --port "$PORT"
