"""The README's `./scripts/serve.sh` on a machine whose model store is empty: it imports the demo model, prints
a curl and a Python-client example, and serves."""

from __future__ import annotations


import httpx
import pytest

from served import ServedService
from signals import voice_like, wav_bytes

pytestmark = pytest.mark.served


def test_serve_script_imports_the_demo_model_and_serves(repo_root, tmp_path, monkeypatch):
    monkeypatch.delenv("PTBR_MODEL_TAG", raising=False)
    served = ServedService(env={"BENTOML_HOME": str(tmp_path / "bentoml")}, log_path=tmp_path / "serve.log")
    served.env["PTBR_PORT"] = str(served.port)
    served.command = [str(repo_root / "scripts" / "serve.sh")]
    served.start()
    try:
        served.wait_ready()
        response = httpx.post(f"{served.url}/synthesize",
                              data={"text": "Olá!", "reference_text": "Voz de teste.", "nfe_step": "2"},
                              files={"reference_audio": ("r.wav", wav_bytes(voice_like(2.0)))}, timeout=60)
        assert response.status_code == 200, response.text
        assert httpx.post(f"{served.url}/model_info", json={}, timeout=10).json()["demo"] is True
        printed = served.log_path.read_text(errors="replace")
        assert "importing the demo model" in printed
        assert f"curl -s -o out.wav -D - {served.url}/synthesize" in printed
        assert "bentoml.SyncHTTPClient" in printed
    finally:
        served.stop()
