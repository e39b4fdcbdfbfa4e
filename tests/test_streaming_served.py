"""/synthesize_stream and the device queue through a real `bentoml serve` of the demo model."""

from __future__ import annotations

import io
import struct
import threading
import time
import wave

import httpx
import pytest

from served import import_demo, start_demo
from signals import voice_like, wav_bytes
from test_voices_served import decode_with_ffmpeg

pytestmark = pytest.mark.served

REFERENCE_TEXT = "Esta é a voz de referência para o teste."
# Eight sentences: several chunks, each long enough that the demo model takes a while per chunk at NFE 32.
LONG_TEXT = " ".join(f"Esta é a frase número {n}, que mantém o modelo ocupado por mais um tempo." for n in range(1, 9))


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    tag = import_demo()
    lexicon = tmp_path_factory.mktemp("lexicon") / "lexicon.tsv"
    lexicon.write_text("Zé-Bento\tZé Bento\nYouTube\tiútube\n", encoding="utf-8")
    served = start_demo(tag, tmp_path_factory.mktemp("stream") / "serve.log",
                        PTBR_DATA_DIR=str(tmp_path_factory.mktemp("data")), PTBR_QUEUE_MAX_WAITING="1",
                        PTBR_LEXICON_FILE=str(lexicon))
    reference = wav_bytes(voice_like(3.0))
    response = httpx.post(f"{served.url}/create_voice", data={"name": "Fluxo", "reference_text": REFERENCE_TEXT},
                          files={"reference_audio": ("r.wav", reference)}, timeout=60)
    assert response.status_code == 200, response.text
    yield served
    served.stop()


def form(**fields: str) -> dict[str, str]:
    return {"text": "Olá, tudo bem com você? Hoje o dia está bonito.", "voice": "Fluxo", "nfe_step": "2", **fields}


def stream(service, **fields: str) -> httpx.Response:
    return httpx.post(f"{service.url}/synthesize_stream", data=form(**fields), timeout=120)


def in_flight(service) -> float:
    metrics = httpx.get(f"{service.url}/metrics", timeout=5).text
    return float(next(line.split()[1] for line in metrics.splitlines() if line.startswith("ptbr_queue_in_flight ")))


def test_pcm_stream_equals_the_whole_answer(service):
    streamed = stream(service, response_format="pcm", seed="5")
    whole = httpx.post(f"{service.url}/synthesize", data=form(response_format="pcm", seed="5"), timeout=120)
    assert streamed.status_code == whole.status_code == 200, streamed.text
    assert streamed.headers["content-type"] == "audio/pcm"
    assert streamed.headers["x-seed"] == "5"
    assert len(streamed.content) % 2 == 0
    assert len(streamed.content) == pytest.approx(len(whole.content), rel=0.25)


def test_wav_stream_has_placeholder_sizes_and_reads_with_the_wave_module(service):
    response = stream(service, response_format="wav", seed="5")
    assert response.status_code == 200
    body = response.content
    assert body[:4] == b"RIFF" and body[8:12] == b"WAVE"
    assert struct.unpack("<I", body[4:8])[0] == 0xFFFFFFFF
    data_at = body.index(b"data")
    assert struct.unpack("<I", body[data_at + 4:data_at + 8])[0] == 0xFFFFFFFF
    with wave.open(io.BytesIO(body)) as reader:
        assert reader.getframerate() == 24000 and reader.getnchannels() == 1 and reader.getsampwidth() == 2
        frames = reader.readframes(10**9)
    assert len(frames) == len(body) - (data_at + 8)
    pcm = stream(service, response_format="pcm", seed="5").content
    assert frames == pcm


@pytest.mark.parametrize("fmt,media_type,rate", [("mp3", "audio/mpeg", 24000), ("opus", "audio/ogg", 48000),
                                                 ("aac", "audio/aac", 24000)])
def test_compressed_streams_decode_to_the_right_length(service, fmt, media_type, rate):
    pcm = stream(service, response_format="pcm", seed="8").content
    response = stream(service, response_format=fmt, seed="8")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == media_type
    samples, decoded_rate = decode_with_ffmpeg(response.content)
    assert decoded_rate == rate
    assert len(samples) / rate == pytest.approx(len(pcm) / 2 / 24000, abs=0.1)


def test_first_audio_arrives_while_later_chunks_are_still_being_generated(service):
    started = time.perf_counter()
    with httpx.stream("POST", f"{service.url}/synthesize_stream", timeout=120,
                      data=form(text=LONG_TEXT, nfe_step="32", response_format="pcm")) as response:
        assert response.status_code == 200
        chunks = int(response.headers["x-chunks"])
        assert chunks >= 3
        received = 0
        busy_when_first_audio = None
        first_audio = None
        for piece in response.iter_bytes():
            received += len(piece)
            if first_audio is None and received > 0:
                first_audio = time.perf_counter() - started
                busy_when_first_audio = in_flight(service)
        total = time.perf_counter() - started
    print(f"\n[served] stream of {chunks} chunks: first audio {first_audio:.2f} s, total {total:.2f} s")
    assert busy_when_first_audio == 1.0, "the device had already finished when the first audio arrived"
    assert received > 24000 * 2


def test_a_disconnected_client_frees_the_device_at_the_next_chunk(service):
    # Twice the long text: seven or more chunks, so one chunk finishing after the hang-up is a small share of the run.
    text = f"{LONG_TEXT} {LONG_TEXT}"
    started = time.perf_counter()
    full = stream(service, text=text, nfe_step="32", seed="1")
    full_seconds = time.perf_counter() - started
    with httpx.stream("POST", f"{service.url}/synthesize_stream", timeout=120,
                      data=form(text=text, nfe_step="32", seed="1")) as response:
        next(response.iter_bytes())  # first audio, then hang up
    hung_up = time.perf_counter()
    follow_up = httpx.post(f"{service.url}/synthesize", data=form(), timeout=120)
    waited = time.perf_counter() - hung_up
    print(f"\n[served] abandoned stream: full run {full_seconds:.2f} s, next request answered after {waited:.2f} s")
    assert full.status_code == follow_up.status_code == 200
    assert waited < full_seconds * 0.6, "the abandoned stream kept the device"
    deadline = time.monotonic() + 10
    while in_flight(service) != 0.0:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_errors_come_before_the_first_byte(service):
    unknown = stream(service, voice="ninguém")
    assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/json"
    bad_format = stream(service, response_format="flac")
    assert bad_format.status_code == 400 and "response_format" in bad_format.text
    empty = stream(service, text="   ")
    assert empty.status_code == 400 and empty.json()["error"].startswith("text: ")


def test_full_queue_answers_429_with_retry_after_and_light_routes_stay_fast(service):
    results: dict[str, httpx.Response] = {}

    def request(name: str, **fields: str) -> threading.Thread:
        def send() -> None:
            results[name] = httpx.post(f"{service.url}/synthesize", data=form(**fields), timeout=300)
        thread = threading.Thread(target=send)
        thread.start()
        return thread

    # A long synthesis on the device, then a short one in the only waiting place (started once the long one holds
    # the device, so the order is certain and only one long synthesis is paid for).
    holders = [request("on the device", text=LONG_TEXT, nfe_step="32")]
    deadline = time.monotonic() + 20
    while in_flight(service) != 1.0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    holders.append(request("waiting"))
    time.sleep(0.3)  # let the second request take its place in line
    refused = httpx.post(f"{service.url}/synthesize", data=form(), timeout=60)
    light: dict[str, float] = {}
    for method, path, body in [("POST", "/list_voices", {}), ("POST", "/normalize", {"text": "Às 14h30."}),
                               ("POST", "/model_info", {}), ("GET", "/metrics", None), ("GET", "/readyz", None)]:
        for _ in range(3):
            began = time.perf_counter()
            response = httpx.request(method, service.url + path, json=body, timeout=10)
            light[path] = max(light.get(path, 0.0), time.perf_counter() - began)
            assert response.status_code == 200, (path, response.text)
    busy = in_flight(service) == 1.0
    for thread in holders:
        thread.join(timeout=300)
    print(f"\n[served] worst light-route latency while the device was busy: {light}")
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["retry-after"]) >= 1
    assert "PTBR_QUEUE_MAX_WAITING" in refused.json()["error"]
    assert {name: r.status_code for name, r in results.items()} == {"on the device": 200, "waiting": 200}
    assert busy, "the long requests ended before the light routes were measured"
    assert max(light.values()) < 0.5, light


def test_the_lexicon_file_from_the_settings_is_read(service):
    body = httpx.post(f"{service.url}/normalize", json={"text": "O Zé-Bento viu no YouTube."}, timeout=10).json()
    assert body["text"] == "O Zé Bento viu no Iútube."  # the file's entries win over the built-in ones
