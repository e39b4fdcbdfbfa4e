"""The README's `./scripts/serve.sh` on a machine whose model store is empty: it imports the demo model, prints
a curl and a Python-client example, and serves."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import httpx
import pytest

from served import free_port
from signals import voice_like, wav_bytes

pytestmark = pytest.mark.served


def test_serve_script_imports_the_demo_model_and_serves(repo_root, tmp_path):
    port = free_port()
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "PTBR_PORT": str(port)}
    env.pop("PTBR_MODEL_TAG", None)
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([str(repo_root / "scripts" / "serve.sh")], cwd=repo_root, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        status = None
        while time.monotonic() < deadline and status != 200:
            assert process.poll() is None, log_path.read_text(errors="replace")
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        assert status == 200, log_path.read_text(errors="replace")
        response = httpx.post(f"http://127.0.0.1:{port}/synthesize",
                              data={"text": "Olá!", "reference_text": "Voz de teste.", "nfe_step": "2"},
                              files={"reference_audio": ("r.wav", wav_bytes(voice_like(2.0)))}, timeout=60)
        assert response.status_code == 200, response.text
        info = httpx.post(f"http://127.0.0.1:{port}/model_info", json={}, timeout=10).json()
        assert info["demo"] is True
        printed = log_path.read_text(errors="replace")
        assert "importing the demo model" in printed
        assert f"curl -s -o out.wav -D - http://127.0.0.1:{port}/synthesize" in printed
        assert "bentoml.SyncHTTPClient" in printed
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
