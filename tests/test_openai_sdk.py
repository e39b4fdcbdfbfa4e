"""/v1 through the official openai Python SDK (3.57, built on httpx2) and LiteLLM, against a real `bentoml serve`
of the demo model."""

from __future__ import annotations

import base64
import json
import time

import httpx
import openai
import pytest

from openai_served import LONG_TEXT, SHORT_TEXT, VOICE_NAME, decode, in_flight, reference_wav, wait_idle

pytestmark = pytest.mark.served


@pytest.fixture(scope="module")
def served(openai_demo):
    return openai_demo


@pytest.fixture(scope="module")
def url(served) -> str:
    return served[0].url


@pytest.fixture(scope="module")
def voice(served) -> dict:
    return served[1]


@pytest.fixture(scope="module")
def client(url) -> openai.OpenAI:
    with openai.OpenAI(base_url=f"{url}/v1", api_key="sk-not-checked", max_retries=0, timeout=120) as sdk:
        yield sdk


def speak(client: openai.OpenAI, **fields):
    params = {"model": "tts-1", "input": SHORT_TEXT, "voice": VOICE_NAME, **fields}
    return client.audio.speech.with_raw_response.create(**params)


def test_speech_with_a_string_voice_an_object_voice_and_an_openai_name(client, voice):
    by_name = speak(client, extra_body={"seed": 11})
    by_object = speak(client, voice={"id": voice["id"]}, extra_body={"seed": 11})
    by_alias = speak(client, voice="alloy", extra_body={"seed": 11})
    by_default = speak(client, voice="shimmer", extra_body={"seed": 11})  # unmapped built-in → PTBR_DEFAULT_VOICE
    respelled = speak(client, extra_body={"seed": 11, "pronunciations": {"Olá": "Oláa"}})
    assert respelled.status_code == 200 and respelled.content != by_default.content
    for raw in (by_name, by_object, by_alias, by_default):
        assert raw.status_code == 200
        assert raw.headers["content-type"] == "audio/mpeg"  # OpenAI's default format
        assert raw.headers["x-voice-id"] == voice["id"] and raw.headers["x-seed"] == "11"
    assert by_alias.headers["x-voice-source"] == "alias:alloy"
    assert by_default.headers["x-voice-source"] == "default"
    assert by_name.content == by_object.content == by_alias.content == by_default.content
    samples, rate = decode(by_name.content)
    assert rate == 24000 and len(samples) > 0.3 * rate


def test_every_format_decodes_at_its_rate_and_length(client):
    pcm = speak(client, response_format="pcm", extra_body={"seed": 5}).content
    seconds = len(pcm) / 2 / 24000
    assert len(pcm) % 2 == 0 and seconds > 0.3
    for fmt, media_type, rate in [("mp3", "audio/mpeg", 24000), ("opus", "audio/ogg", 48000),
                                  ("aac", "audio/aac", 24000), ("flac", "audio/flac", 24000),
                                  ("wav", "audio/wav", 24000)]:
        raw = speak(client, response_format=fmt, extra_body={"seed": 5})
        assert raw.headers["content-type"] == media_type, fmt
        samples, decoded_rate = decode(raw.content)
        assert decoded_rate == rate, fmt
        assert len(samples) / rate == pytest.approx(seconds, abs=0.1), fmt
        if fmt == "flac":  # cannot be written incrementally: the one format answered whole, with its duration
            assert float(raw.headers["x-audio-duration"]) == pytest.approx(seconds, abs=0.01)
        else:
            assert raw.headers.get("transfer-encoding") == "chunked", fmt
    wav = speak(client, response_format="wav", extra_body={"seed": 5}).content
    assert wav[44:] == pcm  # streamed wav: the placeholder header, then exactly the pcm samples


def test_streamed_audio_arrives_while_the_synthesis_is_still_running(client, url):
    started = time.perf_counter()
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", input=LONG_TEXT, voice=VOICE_NAME, response_format="pcm", extra_body={"nfe_step": 8},
    ) as response:
        chunks = int(response.headers["x-chunks"])
        received, first_audio, busy_at_first = 0, None, None
        for piece in response.iter_bytes():
            received += len(piece)
            if first_audio is None and received:
                first_audio = time.perf_counter() - started
                busy_at_first = in_flight(url)
    total = time.perf_counter() - started
    print(f"\n[openai sdk] streamed /v1/audio/speech, {chunks} chunks: first audio {first_audio:.2f} s, "
          f"total {total:.2f} s, {received / 48000:.2f} s of audio")
    assert chunks >= 3
    assert busy_at_first == 1.0, "the synthesis had already ended when the first audio arrived"
    assert first_audio < total * 0.7
    assert received > 48000


def test_sse_events_carry_the_same_audio_and_close_with_usage(client):
    with client.audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts", input=SHORT_TEXT, voice=VOICE_NAME, response_format="pcm", stream_format="sse",
        extra_body={"seed": 21},
    ) as response:
        assert response.headers["content-type"].split(";")[0] == "text/event-stream"
        events = [json.loads(line[len("data: "):]) for line in response.iter_lines() if line.startswith("data: ")]
    deltas, done = events[:-1], events[-1]
    assert deltas and all(event["type"] == "speech.audio.delta" for event in deltas)
    audio = b"".join(base64.b64decode(event["audio"]) for event in deltas)
    assert audio == speak(client, response_format="pcm", extra_body={"seed": 21}).content
    assert done["type"] == "speech.audio.done" and set(done) == {"type", "usage"}
    usage = done["usage"]
    assert usage["input_tokens"] == len(SHORT_TEXT)  # characters read by the model
    assert usage["output_tokens"] == round(len(audio) / 2 / 256)  # mel frames: one per 256 samples
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_voice_created_used_listed_and_deleted_with_the_sdk(client, url):
    created = client.audio.voices.create(
        audio_sample=("bia.wav", reference_wav(), "audio/wav"), name="Bia Souza", consent="cons_local",
        extra_body={"ref_text": "Esta é a voz de referência para o teste."},
    )
    assert created.object == "audio.voice" and created.type == "audio_sample" and created.name == "Bia Souza"
    assert created.id.startswith("v_") and abs(created.created_at - time.time()) < 120
    spoken = speak(client, voice={"id": created.id})
    assert spoken.status_code == 200 and spoken.headers["x-voice-id"] == created.id
    listed = httpx.get(f"{url}/v1/audio/voices", timeout=10).json()["voices"]
    assert {"id": created.id, "name": "Bia Souza"}.items() <= next(v for v in listed if v["id"] == created.id).items()
    assert any(v["id"] == "alloy" and v["voice_id"] for v in listed)  # aliases are offered to pickers too
    deleted = client.audio.voices.delete(created.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (created.id, True, "audio.voice.deleted")
    with pytest.raises(openai.NotFoundError) as gone:
        speak(client, voice={"id": created.id})
    assert gone.value.code == "voice_not_found" and gone.value.param == "voice"
    with pytest.raises(openai.NotFoundError):
        client.audio.voices.delete(created.id)
    with pytest.raises(openai.BadRequestError) as no_transcript:
        client.audio.voices.create(audio_sample=("x.wav", reference_wav(), "audio/wav"), name="Sem Texto",
                                   consent="cons_local")
    assert no_transcript.value.param == "ref_text" and "recogniser" in no_transcript.value.message


def test_models_list_and_retrieve(client):
    assert [model.id for model in client.models.list()] == ["f5tts-ptbr"]
    assert client.models.retrieve("tts-1-hd").id == "tts-1-hd"
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("whisper-1")
    assert missing.value.code == "model_not_found"


def _oversized_voice(client):
    return client.audio.voices.create(audio_sample=("big.wav", reference_wav(4.0), "audio/wav"), name="Grande",
                                      consent="c", extra_body={"ref_text": "texto"})


@pytest.mark.parametrize("case,call,error_class,status,code,param", [
    ("format", lambda c: speak(c, response_format="ogg"), openai.BadRequestError, 400, "invalid_value",
     "response_format"),
    ("speed", lambda c: speak(c, speed=4.5), openai.BadRequestError, 400, "invalid_value", "speed"),
    ("blank input", lambda c: speak(c, input="   "), openai.BadRequestError, 400, "invalid_value", "input"),
    ("long input", lambda c: speak(c, input="a" * 2001), openai.BadRequestError, 400, "string_above_max_length",
     "input"),
    ("speed type", lambda c: speak(c, speed="fast"), openai.BadRequestError, 400, "invalid_type", "speed"),
    ("pronunciations", lambda c: speak(c, extra_body={"pronunciations": {"Olá": "😀"}}), openai.BadRequestError, 400,
     "invalid_value", "pronunciations"),
    ("unknown voice", lambda c: speak(c, voice="ninguém"), openai.NotFoundError, 404, "voice_not_found", "voice"),
    ("unknown model", lambda c: speak(c, model="tts-9"), openai.NotFoundError, 404, "model_not_found", "model"),
    ("too large", _oversized_voice, openai.APIStatusError, 413, "file_too_large", "audio_sample"),
    ("unspeakable", lambda c: speak(c, input="😀😀 🎉"), openai.UnprocessableEntityError, 422, "unspeakable_input",
     "input"),
])
def test_errors_are_openai_shaped(client, case, call, error_class, status, code, param):
    with pytest.raises(error_class) as caught:
        call(client)
    error = caught.value
    assert (error.status_code, error.code, error.param, error.type) == (status, code, param, "invalid_request_error")
    assert error.message and error.message != f"Error code: {status}"
    assert error.response.headers["x-should-retry"] == "false"
    assert error.response.headers["content-type"] == "application/json"


def test_full_device_answers_429_with_retry_after(client, url):
    body = {"model": "tts-1", "input": LONG_TEXT, "voice": VOICE_NAME, "response_format": "pcm", "nfe_step": 8}
    with httpx.stream("POST", f"{url}/v1/audio/speech", json=body, timeout=120) as holder:
        # The headers of a stream come once it holds the device (PTBR_QUEUE_MAX_WAITING=0: nobody may wait).
        assert holder.status_code == 200 and in_flight(url) == 1.0
        with pytest.raises(openai.RateLimitError) as refused:
            speak(client)
    error = refused.value
    assert (error.status_code, error.code, error.type) == (429, "rate_limit_exceeded", "rate_limit_error")
    assert "PTBR_QUEUE_MAX_WAITING" in error.message
    assert int(error.response.headers["retry-after"]) >= 1
    assert "x-should-retry" not in error.response.headers  # retrying later is the right thing to do
    wait_idle(url)


def test_litellm_speech(url, voice, monkeypatch):
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    monkeypatch.setenv("LITELLM_OFFLINE_MODE", "true")
    import litellm

    answer = litellm.speech(model="openai/f5tts-ptbr", input=SHORT_TEXT, voice=voice["id"], api_base=f"{url}/v1",
                            api_key="sk-not-checked", max_retries=0, timeout=120)
    samples, rate = decode(answer.content)
    assert rate == 24000 and len(samples) > 0.3 * rate
    with pytest.raises(openai.NotFoundError) as unknown:  # LiteLLM passes the SDK's error through for speech
        litellm.speech(model="openai/f5tts-ptbr", input=SHORT_TEXT, voice="ninguém", api_base=f"{url}/v1",
                       api_key="sk-not-checked", max_retries=0)
    assert unknown.value.code == "voice_not_found"



def test_the_sdk_does_not_retry_what_cannot_succeed(url):
    """The SDK retries 409 and 5xx twice unless told not to: a taken name is answered once, not three times."""

    def conflicts() -> float:
        metrics = httpx.get(f"{url}/metrics", timeout=5).text
        line = next((line for line in metrics.splitlines() if line.startswith(
            'ptbr_requests_total{endpoint="openai_create_voice",outcome="client_error"}')), None)
        return float(line.split()[1]) if line else 0.0

    before = conflicts()
    with openai.OpenAI(base_url=f"{url}/v1", api_key="sk-not-checked", max_retries=2) as retrying:
        with pytest.raises(openai.ConflictError) as taken:
            retrying.audio.voices.create(audio_sample=("ana.wav", reference_wav(), "audio/wav"),
                                         name=VOICE_NAME.upper(), consent="c", extra_body={"ref_text": "texto"})
    assert (taken.value.code, taken.value.param) == ("voice_name_taken", "name")
    assert conflicts() == before + 1
