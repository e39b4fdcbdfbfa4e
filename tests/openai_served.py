"""A served demo model set up for the /v1 tests (the session fixture ``openai_demo``): one saved voice, OpenAI's
built-in names mapped onto it, a small upload limit (so a 413 needs no big file) and no waiting room on the device
(so a 429 needs one busy request)."""

from __future__ import annotations

import io
import time
from pathlib import Path

import av
import httpx
import numpy as np
import pytest

from served import ServedService, import_demo, start_demo
from signals import voice_like, wav_bytes

REFERENCE_TEXT = "Esta é a voz de referência para o teste."
VOICE_NAME = "Ana"
UPLOAD_LIMIT = 160_000  # bytes; the 3 s reference below is 144 kB
# Three chunks with the 3 s reference: long enough on the demo model that the device is visibly busy for a few seconds.
LONG_TEXT = " ".join(f"Esta é a frase número {n}, que mantém o modelo ocupado por mais um tempo." for n in range(1, 9))
SHORT_TEXT = "Olá, tudo bem com você?"


def start_openai_demo(workdir: Path) -> tuple[ServedService, dict]:
    served = start_demo(
        import_demo(), workdir / "serve.log", PTBR_DATA_DIR=str(workdir / "data"), PTBR_NFE_STEP="2",
        PTBR_VOICE_ALIASES=f"alloy={VOICE_NAME}", PTBR_DEFAULT_VOICE=VOICE_NAME, PTBR_QUEUE_MAX_WAITING="0",
        PTBR_MAX_UPLOAD_BYTES=str(UPLOAD_LIMIT),
    )
    try:
        response = httpx.post(f"{served.url}/create_voice", data={"name": VOICE_NAME, "reference_text": REFERENCE_TEXT},
                              files={"reference_audio": ("ana.wav", reference_wav())}, timeout=60)
        assert response.status_code == 200, response.text
    except BaseException:
        served.stop()
        raise
    return served, response.json()


@pytest.fixture(scope="session")
def openai_demo(tmp_path_factory):
    """(service, the saved voice "Ana"): one server for test_openai_sdk.py and test_openai_clients.py, which need
    the same settings (registered in conftest.py). Voices they create are their own names and deleted again."""
    service, voice = start_openai_demo(tmp_path_factory.mktemp("openai-demo"))
    yield service, voice
    service.stop()


def reference_wav(seconds: float = 3.0) -> bytes:
    return wav_bytes(voice_like(seconds))


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """(mono float samples, rate) as FFmpeg's libraries (PyAV) decode a file or stream."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        frames = [frame.to_ndarray().reshape(-1) for frame in container.decode(stream)]
        return np.concatenate(frames), stream.rate


def in_flight(url: str) -> float:
    metrics = httpx.get(f"{url}/metrics", timeout=5).text
    return float(next(line.split()[1] for line in metrics.splitlines() if line.startswith("ptbr_queue_in_flight ")))


def wait_idle(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while in_flight(url) != 0.0:
        assert time.monotonic() < deadline, "the device stayed busy"
        time.sleep(0.05)
