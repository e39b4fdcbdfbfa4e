"""Saved voices through a real `bentoml serve` of the demo model: lifecycle, reuse, crashes, corruption (two replicas
on one data directory: test_replicas_served.py)."""

from __future__ import annotations

import io
import json
import os
import threading
import time
from pathlib import Path

import bentoml
import httpx
import numpy as np
import pytest
import soundfile as sf

from served import import_demo, kill_tree, start_demo
from signals import voice_like, wav_bytes

pytestmark = pytest.mark.served

REFERENCE_TEXT = "Esta é a voz de referência para o teste."
FAST = {"nfe_step": "2"}


@pytest.fixture(scope="module")
def demo_tag() -> str:
    return import_demo()


@pytest.fixture(scope="module")
def service(demo_service):
    return demo_service


@pytest.fixture(scope="module")
def data_dir(demo_service) -> Path:
    return demo_service.data_dir


@pytest.fixture(scope="module")
def reference_bytes() -> bytes:
    return wav_bytes(voice_like(3.0, sample_rate=44100), sample_rate=44100)


def create(url: str, name: str, reference: bytes, reference_text: str = REFERENCE_TEXT, **fields: str) -> httpx.Response:
    return httpx.post(f"{url}/create_voice", data={"name": name, "reference_text": reference_text, **fields},
                      files={"reference_audio": ("ref.wav", reference)}, timeout=60)


def post(url: str, route: str, **body) -> httpx.Response:
    return httpx.post(f"{url}/{route}", json=body, timeout=60)


def speak(url: str, **fields: str) -> httpx.Response:
    return httpx.post(f"{url}/synthesize", data={"text": "Olá, tudo bem com você?", **FAST, **fields}, timeout=120)


def test_voice_lifecycle_with_the_bentoml_client(service, reference_bytes, tmp_path):
    path = tmp_path / "ana.wav"
    path.write_bytes(reference_bytes)
    with bentoml.SyncHTTPClient(service.url, timeout=60) as client:
        voice = client.create_voice(name="Ana Júlia", reference_audio=path, reference_text=REFERENCE_TEXT,
                                    description="narradora", language="pt-BR")
        assert voice["id"].startswith("v_") and voice["name"] == "Ana Júlia"
        assert voice["reference_text"] == REFERENCE_TEXT
        assert voice["model_text"].startswith("Esta é a voz")
        assert voice["duration_s"] == pytest.approx(3.05, abs=0.2)  # prepared: trimmed, 50 ms tail, 24 kHz
        assert voice["source_format"] == "wav" and voice["language"] == "pt-BR"
        assert len(voice["sha256"]) == 64 and voice["created_at"].endswith(("Z", "+00:00"))
        assert "path" not in json.dumps(voice).lower()

        listed = client.list_voices()
        assert listed["total"] >= 1 and voice["id"] in [v["id"] for v in listed["voices"]]
        assert client.get_voice(voice="ana júlia")["id"] == voice["id"]  # names match case-insensitively
        assert client.rename_voice(voice=voice["id"], name="Ana")["name"] == "Ana"
        output = client.synthesize(text="Bom dia!", voice="Ana", nfe_step=2, seed=1)
        samples, rate = sf.read(str(output))
        assert rate == 24000 and len(samples) > 2400
        assert client.delete_voice(voice="Ana")["deleted"] is True
    assert post(service.url, "get_voice", voice=voice["id"]).status_code == 404


def test_synthesis_by_voice_equals_synthesis_by_upload(service, reference_bytes):
    voice = create(service.url, "Igual", reference_bytes).json()
    by_voice = speak(service.url, voice=voice["id"], seed="42")
    by_upload = httpx.post(f"{service.url}/synthesize",
                           data={"text": "Olá, tudo bem com você?", "reference_text": REFERENCE_TEXT, "seed": "42", **FAST},
                           files={"reference_audio": ("r.wav", reference_bytes)}, timeout=120)
    assert by_voice.status_code == by_upload.status_code == 200, (by_voice.text, by_upload.text)
    assert by_voice.content == by_upload.content
    assert by_voice.headers["x-seed"] == "42"
    again = speak(service.url, voice=voice["name"].upper(), seed="42")  # served from the memory cache
    assert again.content == by_voice.content
    metrics = httpx.get(f"{service.url}/metrics").text
    assert 'ptbr_voice_cache_total{result="hit"}' in metrics


def test_listing_pages(service, reference_bytes):
    for index in range(3):
        assert create(service.url, f"Pagina {index}", reference_bytes).status_code == 200
    everything = post(service.url, "list_voices", limit=1000).json()
    first = post(service.url, "list_voices", offset=0, limit=2).json()
    second = post(service.url, "list_voices", offset=2, limit=2).json()
    assert first["total"] == second["total"] == everything["total"] >= 3
    assert [v["id"] for v in first["voices"] + second["voices"]] == [v["id"] for v in everything["voices"]][:4]


@pytest.mark.parametrize("case,fields,status,fragments", [
    ("voice and upload", {"voice": "x", "reference_text": REFERENCE_TEXT}, 400, ("voice", "reference_audio")),
    ("neither", {}, 400, ("voice", "reference_audio")),
    ("unknown voice", {"voice": "ninguém"}, 404, ("voice", "ninguém")),
    ("path as voice", {"voice": "../../etc/passwd"}, 404, ("voice",)),
])
def test_voice_field_errors(service, reference_bytes, case, fields, status, fragments):
    files = {"reference_audio": ("r.wav", reference_bytes)} if "reference_text" in fields else None
    response = httpx.post(f"{service.url}/synthesize", data={"text": "Olá", **FAST, **fields}, files=files, timeout=60)
    assert response.status_code == status, (case, response.text)
    for fragment in fragments:
        assert fragment in response.json()["error"], (case, response.text)


def test_create_voice_errors(service, reference_bytes):
    assert create(service.url, "Duplicada", reference_bytes).status_code == 200
    taken = create(service.url, "DUPLICADA", reference_bytes)
    assert taken.status_code == 409 and "name" in taken.json()["error"]
    bad_name = create(service.url, "a/b", reference_bytes)
    assert bad_name.status_code == 400 and "name" in bad_name.json()["error"]
    silent = create(service.url, "Muda", wav_bytes(np.zeros(48000, dtype=np.float32)))
    assert silent.status_code == 400 and "reference_audio" in silent.json()["error"]
    unreadable = create(service.url, "Emoji", reference_bytes, reference_text="😀")
    assert unreadable.status_code == 400 and "reference_text" in unreadable.json()["error"]
    renamed = post(service.url, "rename_voice", voice="Duplicada", name="Pagina 0")
    assert renamed.status_code in (409, 404)  # 404 when the paging test did not run first
    assert post(service.url, "delete_voice", voice="v_doesnotexist").status_code == 404


def test_normalize_sizes_chunks_for_a_saved_voice(service, reference_bytes):
    duration = create(service.url, "Ritmo", reference_bytes).json()["duration_s"]
    text = " ".join(f"Esta é a frase número {n}, que vem logo depois da anterior." for n in range(1, 9))
    by_voice = post(service.url, "normalize", text=text, voice="Ritmo").json()
    by_fields = post(service.url, "normalize", text=text, reference_text=REFERENCE_TEXT,
                     reference_seconds=duration).json()
    assert by_voice["chunks"] == by_fields["chunks"]
    assert post(service.url, "normalize", text=text, voice="ninguém").status_code == 404


def test_a_corrupt_entry_is_skipped_and_reported(service, data_dir, reference_bytes):
    broken = data_dir / "voices" / "v_corrupt000"
    broken.mkdir(parents=True)
    (broken / "meta.json").write_text("{not json")
    (data_dir / "voices" / ".generation").write_text(str(time.time_ns()))  # make every index rescan
    create(service.url, "Depois Da Corrupcao", reference_bytes)
    listed = post(service.url, "list_voices", limit=1000)
    assert listed.status_code == 200
    assert "v_corrupt000" not in [v["id"] for v in listed.json()["voices"]]
    assert post(service.url, "get_voice", voice="v_corrupt000").status_code == 404
    metrics = httpx.get(f"{service.url}/metrics").text
    corrupt = [line for line in metrics.splitlines() if line.startswith("ptbr_voices_corrupt ")]
    assert corrupt and float(corrupt[0].split()[1]) >= 1


def test_kill_9_while_writing_a_voice_leaves_no_partial_voice(demo_tag, tmp_path, reference_bytes):
    data = tmp_path / "crash-data"
    served = start_demo(demo_tag, tmp_path / "crash.log", PTBR_DATA_DIR=str(data),
                        PTBR_TEST_VOICE_COMMIT_PAUSE_S="60")
    marker = data / "voice-commit-paused"
    outcome: dict = {}
    writer = threading.Thread(target=lambda: outcome.setdefault("response", _try_create(served.url, reference_bytes)))
    try:
        writer.start()
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert time.monotonic() < deadline, served.log_tail()
            time.sleep(0.05)
        assert any(name.startswith(".tmp") for name in os.listdir(data / "voices"))  # caught mid-write
        kill_tree(served)
        writer.join(timeout=30)
        assert isinstance(outcome.get("response"), Exception)  # the client saw the connection die
    finally:
        kill_tree(served)
    restarted = start_demo(demo_tag, tmp_path / "restart.log", PTBR_DATA_DIR=str(data))
    try:
        listed = post(restarted.url, "list_voices").json()
        assert listed["total"] == 0 and listed["voices"] == []
        assert post(restarted.url, "get_voice", voice="Interrompida").status_code == 404
        assert create(restarted.url, "Interrompida", reference_bytes).status_code == 200  # the name is free
    finally:
        restarted.stop()


def _try_create(url: str, reference: bytes):
    try:
        return create(url, "Interrompida", reference)
    except httpx.HTTPError as error:
        return error


def test_every_format_decodes_with_the_right_rate_and_duration(service, reference_bytes):
    voice = create(service.url, "Formatos", reference_bytes).json()["id"]
    reference = sf.read(io.BytesIO(speak(service.url, voice=voice, seed="9").content))[0]
    natural = len(reference) / 24000
    for fmt, media_type, rate in [("wav", "audio/wav", 24000), ("flac", "audio/flac", 24000),
                                  ("mp3", "audio/mpeg", 24000), ("opus", "audio/ogg", 48000),
                                  ("aac", "audio/aac", 24000), ("wav", "audio/wav", 16000),
                                  ("mp3", "audio/mpeg", 44100)]:
        fields = {"response_format": fmt, "seed": "9"}
        if rate not in (24000, 48000):
            fields["sample_rate"] = str(rate)
        response = speak(service.url, voice=voice, **fields)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == media_type
        decoded, decoded_rate = decode_with_ffmpeg(response.content)
        assert decoded_rate == rate, fmt
        assert len(decoded) / decoded_rate == pytest.approx(natural, abs=0.08), (fmt, rate)


def decode_with_ffmpeg(data: bytes) -> tuple[np.ndarray, int]:
    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        frames = [frame.to_ndarray().reshape(-1) for frame in container.decode(stream)]
        return np.concatenate(frames), stream.rate
