"""The /v1 application without a server or a model: error shapes and retry hints, voice resolution, listings,
settings parsing and the SSE framing (FastAPI's TestClient on a real SynthesisCore whose model is not loaded)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from ptbr_model.metrics import ServiceMetrics
from ptbr_model.settings import Settings, parse_aliases
from serving.guards import LoadStatus
from serving.openai_api import ENGINE_SPEED_RANGE, OpenAIError, SpeechEvents, create_app, resolve_voice
from serving.streaming import StreamSummary
from serving.synthesis import SynthesisCore


def make_core(tmp_path, **settings) -> SynthesisCore:
    fields = {"data_dir": tmp_path, "voice_aliases": "alloy=Ana,nova=Ninguém", "max_upload_bytes": 4096, **settings}
    return SynthesisCore(Settings(**fields), ServiceMetrics(), LoadStatus())


def save_voice(core: SynthesisCore, name: str):
    wave = (0.1 * np.sin(np.arange(24000) / 10)).astype(np.float32)
    return core.voices.create(name=name, wave=wave, reference_text="texto", model_text="texto",
                              removed_characters=[], source_format="wav")


@pytest.fixture
def core(tmp_path) -> SynthesisCore:
    return make_core(tmp_path)


@pytest.fixture
def client(core) -> TestClient:
    return TestClient(create_app(lambda: core))


def speech(client: TestClient, **fields):
    return client.post("/audio/speech", json={"model": "tts-1", "input": "Olá", "voice": "alloy", **fields})


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


def test_loading_model_is_a_retryable_503_and_a_failed_one_is_not(client, core):
    save_voice(core, "Ana")
    loading = speech(client)
    assert loading.status_code == 503 and error_of(loading)["code"] == "model_loading"
    assert loading.headers["retry-after"] == "5" and "x-should-retry" not in loading.headers
    core.status.fail("RuntimeError: bad weights")
    failed = speech(client)
    assert failed.status_code == 503 and error_of(failed)["code"] == "model_failed"
    assert failed.headers["x-should-retry"] == "false"
    assert "bad weights" in error_of(failed)["message"]
    assert error_of(failed)["type"] == "server_error"


@pytest.mark.parametrize("body,param,code", [
    (None, None, "missing_required_parameter"),
    ({"input": "a", "voice": "alloy"}, "model", "missing_required_parameter"),
    ({"model": "tts-1", "voice": "alloy"}, "input", "missing_required_parameter"),
    ({"model": "tts-1", "input": "a"}, "voice", "missing_required_parameter"),
    ({"model": "tts-1", "input": "a", "voice": 3}, "voice", "invalid_type"),
    ({"model": "tts-1", "input": "a", "voice": "alloy", "speed": 0.2}, "speed", "invalid_value"),
    ({"model": "tts-1", "input": "a", "voice": "alloy", "stream_format": "chunks"}, "stream_format",
     "invalid_value"),
    ({"model": "tts-1", "input": "a", "voice": "alloy", "nfe_step": 65}, "nfe_step", "invalid_value"),
    ({"model": "tts-1", "input": "a", "voice": "alloy", "seed": "x"}, "seed", "invalid_type"),
])
def test_request_validation_is_openai_shaped(client, body, param, code):
    response = client.post("/audio/speech", json=body) if body is not None else client.post("/audio/speech")
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")
    assert response.headers["x-should-retry"] == "false"


def test_malformed_json_unknown_paths_and_methods(client):
    broken = client.post("/audio/speech", content=b'{"model": "tts-1",', headers={"content-type": "application/json"})
    assert broken.status_code == 400 and error_of(broken)["code"] == "invalid_json"
    unknown = client.get("/audio/transcriptions/foo")
    assert unknown.status_code == 404 and error_of(unknown)["code"] == "unknown_url"
    wrong_method = client.post("/models")
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "GET"
    assert error_of(wrong_method)["code"] == "method_not_allowed"


def test_upload_over_the_limit_is_refused_before_reading(client):
    response = client.post("/audio/voices", files={"audio_sample": ("a.wav", b"\0" * 200_000)},
                           data={"name": "Grande", "ref_text": "texto"})
    assert response.status_code == 413
    error = error_of(response)
    assert (error["param"], error["code"]) == ("audio_sample", "file_too_large")
    assert "PTBR_MAX_UPLOAD_BYTES" in error["message"]


def test_voice_creation_needs_multipart_and_a_transcript(client):
    as_json = client.post("/audio/voices", json={"name": "Ana"})
    assert as_json.status_code == 400 and error_of(as_json)["code"] == "invalid_content_type"
    prompt = client.post("/audio/voices", data={"name": "Ana", "type": "prompt", "prompt": "grave"},
                         files={"x": ("x", b"")})
    assert prompt.status_code == 400 and error_of(prompt)["param"] == "type"


def test_voice_resolution_order(core, tmp_path):
    ana, alloy_named = save_voice(core, "Ana"), save_voice(core, "alloy")
    assert resolve_voice(core, "alloy") == (ana.id, "alias:alloy")  # the operator's alias wins over a saved name
    assert resolve_voice(core, "ALLOY") == (ana.id, "alias:alloy")
    assert resolve_voice(core, alloy_named.id) == (alloy_named.id, "saved")
    with pytest.raises(OpenAIError) as dangling:
        resolve_voice(core, "nova")  # mapped to a voice that does not exist
    assert dangling.value.status == 404 and "PTBR_VOICE_ALIASES" in dangling.value.message
    with pytest.raises(OpenAIError) as builtin:
        resolve_voice(core, "echo")  # a built-in name, no alias, no default
    assert builtin.value.code == "voice_not_found" and "PTBR_DEFAULT_VOICE" in builtin.value.message
    with_default = make_core(tmp_path, default_voice="Ana")
    assert resolve_voice(with_default, "echo") == (ana.id, "default")
    with pytest.raises(OpenAIError) as not_builtin:
        resolve_voice(with_default, "Zé Ninguém")  # the default covers OpenAI's names only
    assert not_builtin.value.status == 404


def test_listings_answer_while_the_model_loads(client, core):
    ana = save_voice(core, "Ana")
    models = client.get("/models").json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["f5tts-ptbr"]
    assert set(models["data"][0]) == {"id", "object", "created", "owned_by"}
    assert client.get("/audio/models").json() == {"models": [{"id": "f5tts-ptbr"}]}
    assert client.get("/models/gpt-4o-mini-tts").json()["id"] == "gpt-4o-mini-tts"
    missing = client.get("/models/whisper-1")
    assert missing.status_code == 404 and error_of(missing)["code"] == "model_not_found"
    voices = client.get("/audio/voices").json()["voices"]
    assert [(v["id"], v["name"]) for v in voices] == [(ana.id, "Ana"), ("alloy", "alloy (Ana)")]  # nova dangles
    assert client.get("/audio/voices", params={"limit": 1, "offset": 1}).json() == {"voices": []}
    bad_limit = client.get("/audio/voices", params={"limit": 0})
    assert bad_limit.status_code == 400 and error_of(bad_limit)["param"] == "limit"


def test_unknown_model_and_long_input_are_refused_before_the_model_is_needed(client):
    assert error_of(speech(client, model="tts-2"))["code"] == "model_not_found"
    too_long = speech(client, input="a" * 2001)
    assert too_long.status_code == 400 and "PTBR_MAX_TEXT_CHARS" in error_of(too_long)["message"]


def test_settings_parse_aliases_and_names(monkeypatch):
    assert parse_aliases(" alloy = Ana Júlia , NOVA=v_abcdefghij,") == {"alloy": "Ana Júlia", "nova": "v_abcdefghij"}
    assert parse_aliases('{"Echo": "Bia"}') == {"echo": "Bia"}
    for bad in ("alloy", "alloy=", "=Ana", '{"a": 1}'):
        with pytest.raises(ValueError):
            parse_aliases(bad)
    monkeypatch.setenv("PTBR_VOICE_ALIASES", "alloy=Ana")
    monkeypatch.setenv("PTBR_OPENAI_MODEL_ALIASES", "tts-1, meu-modelo")
    monkeypatch.setenv("PTBR_DEFAULT_VOICE", " ")
    settings = Settings()
    assert settings.voice_aliases == {"alloy": "Ana"} and settings.openai_model_aliases == ("tts-1", "meu-modelo")
    assert settings.default_voice is None and settings.open_listing is True
    monkeypatch.setenv("PTBR_VOICE_ALIASES", "alloy")
    with pytest.raises(ValidationError):
        Settings()


def test_sse_framing():
    events = SpeechEvents(hop_length=256)
    delta = events.piece(b"\x01\x02\x03")
    assert delta.startswith(b"data: ") and delta.endswith(b"\n\n")
    assert json.loads(delta[6:]) == {"type": "speech.audio.delta", "audio": base64.b64encode(b"\x01\x02\x03").decode()}
    assert events.piece(b"") == b""
    done = json.loads(events.done(StreamSummary(text_chars=10, chunks=1, audio_seconds=2.0, sample_rate=24000,
                                                seed=1))[6:])
    assert done == {"type": "speech.audio.done",
                    "usage": {"input_tokens": 10, "output_tokens": 188, "total_tokens": 198}}
    failed = json.loads(events.error(RuntimeError("boom"))[6:])
    assert failed["type"] == "error" and failed["error"]["type"] == "server_error"
    assert ENGINE_SPEED_RANGE == (0.3, 3.0)


def test_client_text_in_headers_is_made_safe():
    from serving.openai_api import header_safe

    assert header_safe("alias:joão") == "alias:jo\\xe3o"
    assert header_safe("seeed,x\r\nSet-Cookie: a=b") == "seeed,xSet-Cookie: a=b"  # no line break reaches a header
