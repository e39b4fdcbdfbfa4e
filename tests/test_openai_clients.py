"""/v1 as real clients use it, against a real `bentoml serve` of the demo model: the `openai` npm package run by
Node, and byte-for-byte replays (plain httpx) of what Open WebUI, Home Assistant's openai_tts, LiveKit, Pipecat and
wyoming-openai send — their own code is too heavy to run here. What each replay sends and how it reads the answer
was read from the client's source at the version named in its test."""

from __future__ import annotations

import base64
import io
import json
import shutil
import struct
import subprocess
import time
import wave
from pathlib import Path

import httpx
import pytest

from openai_served import SHORT_TEXT, VOICE_NAME, decode

pytestmark = pytest.mark.served

NODE_DIR = Path(__file__).parent / "node"
# Headers the openai Python SDK 2.x (httpx) puts on every request; LiveKit, Pipecat and wyoming-openai use it.
OPENAI_PY2_HEADERS = {
    "Accept": "application/octet-stream",  # speech.create adds it
    "Content-Type": "application/json",
    "User-Agent": "AsyncOpenAI/Python 2.15.0",
    "X-Stainless-Lang": "python",
    "X-Stainless-Package-Version": "2.15.0",
    "X-Stainless-OS": "Linux",
    "X-Stainless-Arch": "x64",
    "X-Stainless-Runtime": "CPython",
    "X-Stainless-Runtime-Version": "3.12.8",
    "X-Stainless-Async": "async:asyncio",
    "x-stainless-retry-count": "0",
    "Authorization": "Bearer sk-local",
}
OPEN_WEBUI_AUDIO_TYPES = {"audio/mpeg", "audio/wav", "audio/ogg", "audio/opus", "audio/flac", "audio/aac"}


@pytest.fixture(scope="module")
def served(openai_demo):
    return openai_demo


@pytest.fixture(scope="module")
def url(served) -> str:
    return served[0].url


@pytest.fixture(scope="module")
def voice(served) -> dict:
    return served[1]


def sdk2_body(**fields) -> bytes:
    """What openai-python 2.x sends for speech.create: its parameter order, omitted ones dropped, compact JSON."""
    order = ("input", "model", "voice", "instructions", "response_format", "speed", "stream_format")
    return json.dumps({name: fields[name] for name in order if name in fields}, ensure_ascii=False,
                      separators=(",", ":")).encode()


def pcm_for_seed(url: str, seed: str, voice: str = VOICE_NAME) -> bytes:
    body = {"model": "tts-1", "input": SHORT_TEXT, "voice": voice, "response_format": "pcm", "seed": int(seed)}
    response = httpx.post(f"{url}/v1/audio/speech", json=body, timeout=60)
    assert response.status_code == 200, response.text
    return response.content


# ---------------------------------------------------------------------------------------------------- Node


@pytest.fixture(scope="module")
def node() -> str:
    """Node with the pinned openai package in tests/node: scripts/setup.sh installs both; a run of pytest without
    it installs the package here (npm ci, a few seconds) rather than skip."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "Node.js and npm are required (scripts/setup.sh installs them with apt-get)"
    installed = NODE_DIR / "node_modules" / "openai" / "package.json"
    locked = json.loads((NODE_DIR / "package-lock.json").read_text())["packages"]["node_modules/openai"]["version"]
    if not installed.exists() or json.loads(installed.read_text())["version"] != locked:
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_DIR, check=True,
                       capture_output=True, timeout=300)
    return node


def test_the_openai_npm_package(node, url, voice):
    """openai@6.49.0 (tests/node/package-lock.json) run by Node: models, speech, a streamed body, errors."""
    run = subprocess.run([node, "openai_client.mjs", f"{url}/v1", voice["id"]], cwd=NODE_DIR, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["models"] == [{"id": "f5tts-ptbr", "object": "model", "owned_by": "f5tts-ptbr"}]
    mp3 = report["mp3"]
    assert (mp3["status"], mp3["contentType"]) == (200, "audio/mpeg") and mp3["seed"].isdigit()
    samples, rate = decode(base64.b64decode(mp3["base64"]))
    assert rate == 24000 and len(samples) > 0.3 * rate
    pcm = report["pcm"]
    assert (pcm["status"], pcm["contentType"], pcm["seed"]) == (200, "audio/pcm", "7")
    assert (pcm["speedApplied"], pcm["speedRequested"]) == ("3", "4")  # OpenAI's 4.0 clamped onto the engine's 3.0
    assert pcm["bytes"] > 0 and pcm["bytes"] % 2 == 0
    for case, cls, status, code, param in [("unknown_voice", "NotFoundError", 404, "voice_not_found", "voice"),
                                           ("bad_format", "BadRequestError", 400, "invalid_value", "response_format"),
                                           ("unknown_model", "NotFoundError", 404, "model_not_found", "model")]:
        error = report[case]
        assert (error["class"], error["status"], error["code"], error["param"], error["type"]) == (
            cls, status, code, param, "invalid_request_error"), error
        assert error["shouldRetry"] == "false"
        assert len(error["message"]) > len(f"{status} ") + 10  # the message itself, not just the status


# ---------------------------------------------------------------------------------------------- Open WebUI


def test_open_webui(url, voice):
    """open-webui backend/open_webui/routers/audio.py (commit 6adde203) and src/lib/apis/audio/index.ts
    (feba5bfa): models and voices are fetched with `requests.get(url)` and no Authorization header (any error
    makes it fall back to OpenAI's list silently); speech is the browser's {input, voice} with the configured model
    added server-side, posted with aiohttp `json=`; the answer is saved whole and served as audio."""
    requests_headers = {"User-Agent": "python-requests/2.32.3", "Accept-Encoding": "gzip, deflate",
                        "Accept": "*/*", "Connection": "keep-alive"}
    models = httpx.get(f"{url}/v1/audio/models", headers=requests_headers, timeout=10)
    assert models.status_code == 200
    assert {"id": "f5tts-ptbr"} in models.json().get("models", [])
    voices = httpx.get(f"{url}/v1/audio/voices", headers=requests_headers, timeout=10)
    assert voices.status_code == 200
    available = {entry["id"]: entry["name"] for entry in voices.json().get("voices", [])}
    assert available[voice["id"]] == VOICE_NAME

    payload = {"input": "Olá! Esta resposta veio do Open WebUI.", "voice": voice["id"]}
    payload["model"] = "f5tts-ptbr"
    aiohttp_headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-local",
                       "Accept": "*/*", "Accept-Encoding": "gzip, deflate", "User-Agent": "Python/3.11 aiohttp/3.12.15"}
    speech = httpx.post(f"{url}/v1/audio/speech", content=json.dumps(payload).encode(), headers=aiohttp_headers,
                        timeout=300)
    assert speech.status_code == 200, speech.text
    assert speech.headers["content-type"].split(";")[0] in OPEN_WEBUI_AUDIO_TYPES
    samples, rate = decode(speech.content)
    assert rate == 24000 and len(samples) > 0.5 * rate


# ---------------------------------------------------------------------------------------------- Home Assistant


def test_home_assistant_openai_tts(url, voice):
    """sfortis/openai_tts 3.7 (commit 5c8b3beb) custom_components/openai_tts/openaitts_engine.py: a whole mp3 with
    urllib (30 s timeout), then opus streamed with aiohttp (60 s total timeout, 4 KiB reads, the first 1 KiB
    buffered); voices from voice_listing.py (25f66648): GET <speech url>/../voices?limit=100. Setting up the
    integration (config_flow.py) first posts {"input": ".", "voice": "alloy"} and calls any status >= 400 "cannot
    connect": that needs "alloy" mapped (PTBR_VOICE_ALIASES or PTBR_DEFAULT_VOICE) and "." to be speakable."""
    speech_url = f"{url}/v1/audio/speech"
    probe = {"model": "tts-1", "input": ".", "voice": "alloy", "response_format": "mp3"}
    validation = httpx.post(speech_url, content=json.dumps(probe).encode(), timeout=10,
                            headers={"Content-Type": "application/json", "Authorization": "Bearer None",
                                     "Accept": "*/*", "Accept-Encoding": "gzip, deflate",
                                     "User-Agent": "Python/3.13 aiohttp/3.12.15"})
    assert validation.status_code == 200, validation.text
    listing = httpx.get(speech_url.rsplit("/", 1)[0] + "/voices", params={"limit": 100},
                        headers={"User-Agent": "HomeAssistant-OpenAI-TTS"}, timeout=8)
    assert listing.status_code == 200
    items = listing.json().get("items") or listing.json().get("data") or listing.json().get("voices")
    options = {str(v.get("id") or v.get("voice_id")): v.get("name") for v in items}
    assert options[voice["id"]] == VOICE_NAME and "alloy" in options

    headers = {"Content-Type": "application/json", "User-Agent": "HomeAssistant-OpenAI-TTS",
               "Authorization": "Bearer sk-local"}
    payload = {"model": "tts-1", "input": "Atenção: a porta da garagem está aberta.", "voice": "alloy",
               "response_format": "mp3", "speed": 1.0}
    urllib_headers = {**headers, "Accept-Encoding": "identity", "Connection": "close"}
    mp3 = httpx.post(speech_url, content=json.dumps(payload).encode("utf-8"), headers=urllib_headers, timeout=30)
    assert mp3.status_code == 200 and mp3.headers["content-type"] == "audio/mpeg"
    samples, rate = decode(mp3.content)
    assert rate == 24000 and len(samples) > 0.5 * rate

    payload["response_format"] = "opus"
    started = time.monotonic()
    received, first = bytearray(), None
    aiohttp_headers = {**headers, "Accept": "*/*", "Accept-Encoding": "gzip, deflate",
                       "User-Agent": "HomeAssistant-OpenAI-TTS"}
    with httpx.stream("POST", speech_url, content=json.dumps(payload).encode(), headers=aiohttp_headers,
                      timeout=httpx.Timeout(60.0)) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes(4096):
            received += chunk
            if first is None and len(received) >= 1024:
                first = time.monotonic() - started
    total = time.monotonic() - started
    assert total < 60 and first is not None
    assert received[:4] == b"OggS"
    samples, rate = decode(bytes(received))
    assert rate == 48000 and len(samples) > 0.5 * rate


# ----------------------------------------------------------------------------------------------------- LiveKit


def test_livekit(url):
    """livekit-plugins-openai 1.7.0 (livekit/agents commit da6af86a) tts.py: openai AsyncClient with httpx read
    timeout 5 s; model gpt-4o-mini-tts and voice "ash" (defaults), mp3, stream_format="sse"; the answer's
    Content-Type, not the request, decides: text/event-stream → lines "data: {...}", speech.audio.delta audio
    pushed in order, speech.audio.done usage recorded."""
    body = sdk2_body(input="Bem-vindo à sala. Como posso ajudar?", model="gpt-4o-mini-tts", voice="ash",
                     response_format="mp3", speed=1.0, stream_format="sse")
    audio, usage = bytearray(), None
    timeout = httpx.Timeout(30, connect=10.0, read=5.0, write=5.0, pool=5.0)
    with httpx.stream("POST", f"{url}/v1/audio/speech", content=body,
                      headers={**OPENAI_PY2_HEADERS, "x-stainless-read-timeout": "30"}, timeout=timeout) as stream:
        assert stream.status_code == 200
        media_type = stream.headers.get("content-type", "").split(";")[0].strip().lower()
        assert media_type == "text/event-stream"
        assert stream.headers["x-voice-source"] == "default"  # "ash" is unmapped: PTBR_DEFAULT_VOICE speaks it
        for line in stream.iter_lines():
            if not line or not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            if event.get("type") == "speech.audio.delta":
                audio += base64.b64decode(event.get("delta", "") or event.get("audio", ""))
            elif event.get("type") == "speech.audio.done":
                usage = event.get("usage", {})
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    samples, rate = decode(bytes(audio))
    assert rate == 24000 and len(samples) > 0.5 * rate


# ----------------------------------------------------------------------------------------------------- Pipecat


def test_pipecat(url, voice):
    """pipecat v1.7.0+771 (commit acead050) src/pipecat/services/openai/tts.py: voice must be one of OpenAI's
    thirteen names ("alloy" by default), model gpt-4o-mini-tts, response_format pcm, speed only when set; the
    bytes are played as 24 kHz 16-bit mono, in pieces as they come."""
    body = sdk2_body(input=SHORT_TEXT, model="gpt-4o-mini-tts", voice="alloy", response_format="pcm")
    pieces = []
    with httpx.stream("POST", f"{url}/v1/audio/speech", content=body, headers=OPENAI_PY2_HEADERS,
                      timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["x-voice-source"] == "alias:alloy"
        seed = response.headers["x-seed"]
        pieces = [piece for piece in response.iter_bytes(4800) if piece]
    pcm = b"".join(pieces)
    assert len(pcm) % 2 == 0 and len(pcm) / 2 / 24000 > 0.3
    wav = httpx.post(f"{url}/v1/audio/speech", json={"model": "tts-1", "input": SHORT_TEXT, "voice": voice["id"],
                                                      "response_format": "wav", "seed": int(seed)}, timeout=60)
    with wave.open(io.BytesIO(wav.content)) as reader:  # the same audio, now with a header that states its format
        assert (reader.getframerate(), reader.getnchannels(), reader.getsampwidth()) == (24000, 1, 2)
        assert reader.readframes(10**9) == pcm


# ------------------------------------------------------------------------------------------------ wyoming-openai


def test_wyoming_openai(url):
    """wyoming-openai 0.4.1 (roryeckel/wyoming_openai commit 614b6dfa) handler.py: response_format wav without
    stream_format, read with iter_bytes(2048); the first chunk's header is parsed with the `wave` module (rate,
    channels, width, and the data offset from the file position), every later chunk is raw samples."""
    body = sdk2_body(input=SHORT_TEXT, model="tts-1", voice=VOICE_NAME, response_format="wav")
    first_chunk, params, audio = None, None, bytearray()
    with httpx.stream("POST", f"{url}/v1/audio/speech", content=body, headers=OPENAI_PY2_HEADERS,
                      timeout=60) as response:
        assert response.status_code == 200
        seed = response.headers["x-seed"]
        for chunk in response.iter_bytes(2048):
            if first_chunk is None:
                first_chunk = chunk
                wav_io = io.BytesIO(chunk)
                with wave.open(wav_io, "rb") as wav_file:
                    params = (wav_file.getframerate(), wav_file.getnchannels(), wav_file.getsampwidth())
                    offset = wav_io.tell()
                audio += chunk[offset:]
            else:
                audio += chunk
    assert params == (24000, 1, 2) and offset == 44
    # The header went out before the length was known: both sizes are the streaming placeholder.
    assert struct.unpack("<I", first_chunk[4:8])[0] == struct.unpack("<I", first_chunk[40:44])[0] == 0xFFFFFFFF
    assert bytes(audio) == pcm_for_seed(url, seed)
