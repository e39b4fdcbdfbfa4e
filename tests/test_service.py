"""The real service: `bentoml serve service:PtBrTTS` on 127.0.0.1 with the demo model, driven by real clients."""

from __future__ import annotations

import io
import json
import shutil
import threading
import time
from pathlib import Path

import bentoml
import httpx
import numpy as np
import pytest
import soundfile as sf

from served import ServedService, import_demo
from signals import voice_like, wav_bytes

pytestmark = pytest.mark.served

MAX_UPLOAD_BYTES = 1_000_000
MAX_TEXT_CHARS = 600
REFERENCE_TEXT = "Esta é a voz de referência para o teste."
FAST = {"nfe_step": "2"}


@pytest.fixture(scope="module")
def service(repo_root: Path, tmp_path_factory: pytest.TempPathFactory):
    tag = import_demo()
    served = ServedService(
        env={"PTBR_MODEL_TAG": tag, "PTBR_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
             "PTBR_MAX_TEXT_CHARS": str(MAX_TEXT_CHARS), "PTBR_LOG_FORMAT": "json"},
        log_path=tmp_path_factory.mktemp("served") / "serve.log",
    ).start()
    try:
        served.wait_listening()
        served.cold_start_seconds = served.wait_ready()
        print(f"\n[served] cold start to ready: {served.cold_start_seconds:.2f} s")
        yield served
    finally:
        served.stop()


@pytest.fixture(scope="module")
def reference_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("reference") / "reference.wav"
    path.write_bytes(wav_bytes(voice_like(3.0)))
    return path


def synthesize(service: ServedService, reference: bytes | Path, *, text: str = "Olá, tudo bem com você?",
               reference_text: str = REFERENCE_TEXT, filename: str = "reference.wav", **fields: str) -> httpx.Response:
    data = reference.read_bytes() if isinstance(reference, Path) else reference
    form = {"text": text, "reference_text": reference_text, **FAST, **fields}
    return httpx.post(f"{service.url}/synthesize", data=form, files={"reference_audio": (filename, data)}, timeout=120)


def decode(body: bytes) -> tuple[np.ndarray, int]:
    samples, rate = sf.read(io.BytesIO(body), dtype="float32")
    return samples, rate


def test_readyz_was_503_while_loading_then_200(service):
    assert service.readyz_statuses[0] == 503
    assert service.readyz_statuses[-1] == 200
    assert httpx.get(f"{service.url}/livez").status_code == 200


def test_bentoml_client_synthesizes_a_wav(service, reference_file):
    with bentoml.SyncHTTPClient(service.url, timeout=120) as client:
        output = client.synthesize(text="Bom dia! Hoje é 25/12.", reference_audio=reference_file,
                                   reference_text=REFERENCE_TEXT, nfe_step=2, seed=5)
    samples, rate = sf.read(str(output), dtype="float32")
    assert rate == 24000
    assert samples.ndim == 1 and len(samples) > 2400
    assert np.isfinite(samples).all()


def test_http_response_has_seed_and_duration_headers(service, reference_file):
    response = synthesize(service, reference_file, seed="77")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/wav"
    assert response.headers["x-seed"] == "77"
    samples, rate = decode(response.content)
    assert rate == 24000 and samples.ndim == 1
    assert float(response.headers["x-audio-duration"]) == pytest.approx(len(samples) / rate, abs=1e-3)


def test_seed_is_returned_when_not_given_and_replays_identically(service, reference_file):
    first = synthesize(service, reference_file)
    seed = first.headers["x-seed"]
    assert 0 <= int(seed) <= 2**31 - 1
    replay = synthesize(service, reference_file, seed=seed)
    assert replay.content == first.content


def test_removed_characters_are_reported(service, reference_file):
    response = synthesize(service, reference_file, text="Olá 😀 mundo!")
    assert response.status_code == 200, response.text
    assert json.loads(response.headers["x-removed-characters"]) == ["😀"]


@pytest.mark.parametrize("fmt,media_type", [("wav", "audio/wav"), ("flac", "audio/flac"), ("mp3", "audio/mpeg"),
                                            ("opus", "audio/ogg"), ("pcm", "audio/pcm")])
def test_every_response_format(service, reference_file, fmt, media_type):
    response = synthesize(service, reference_file, response_format=fmt, seed="3")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == media_type
    duration = float(response.headers["x-audio-duration"])
    if fmt == "pcm":
        assert len(response.content) == pytest.approx(duration * 24000 * 2, abs=4)
    else:
        samples, _ = decode(response.content)
        assert len(samples) / 24000 == pytest.approx(duration, abs=0.08)


def reference_in(fmt: str, subtype: str | None, rate: int, channels: int) -> bytes:
    wave = voice_like(2.0, sample_rate=rate)
    if channels == 2:
        wave = np.stack([wave, wave * 0.8], axis=1)
    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt,subtype,rate,channels", [
    ("WAV", "PCM_U8", 16000, 1), ("WAV", "PCM_16", 44100, 2), ("WAV", "PCM_24", 48000, 1),
    ("WAV", "PCM_32", 22050, 1), ("WAV", "FLOAT", 8000, 1), ("FLAC", "PCM_16", 32000, 2),
    ("OGG", "VORBIS", 44100, 1), ("OGG", "OPUS", 48000, 1), ("MP3", "MPEG_LAYER_III", 44100, 2),
])
def test_reference_formats_rates_and_channels_are_accepted(service, fmt, subtype, rate, channels):
    response = synthesize(service, reference_in(fmt, subtype, rate, channels), filename=f"ref.{fmt.lower()}")
    assert response.status_code == 200, response.text


def bad_requests(reference: bytes) -> list[tuple[str, dict, bytes, int, tuple[str, ...]]]:
    silent = wav_bytes(np.zeros(48000, dtype=np.float32))
    nan = voice_like(2.0)
    nan[100:200] = np.nan
    too_big = wav_bytes(voice_like(30.0, sample_rate=48000), sample_rate=48000, subtype="FLOAT")
    return [
        ("empty text", {"text": ""}, reference, 400, ("text", "empty")),
        ("blank text", {"text": "   \n\t"}, reference, 400, ("text", "blank")),
        ("text too long", {"text": "a" * (MAX_TEXT_CHARS + 1)}, reference, 400, ("text", f"{MAX_TEXT_CHARS}-character limit")),
        ("blank transcript", {"reference_text": "  "}, reference, 400, ("reference_text", "blank")),
        ("not audio", {}, b"this is not audio at all" * 10, 400, ("reference_audio", "decode")),
        ("too short", {}, wav_bytes(voice_like(0.5)), 400, ("reference_audio", "1.0 s")),
        ("silent", {}, silent, 400, ("reference_audio", "silent")),
        ("nan samples", {}, wav_bytes(nan, subtype="FLOAT"), 400, ("reference_audio", "NaN")),
        ("upload too large", {}, too_big, 413, ("reference_audio", str(MAX_UPLOAD_BYTES))),
        ("nfe too low", {"nfe_step": "0"}, reference, 400, ("nfe_step", "1")),
        ("nfe too high", {"nfe_step": "65"}, reference, 400, ("nfe_step", "64")),
        ("speed too low", {"speed": "0.2"}, reference, 400, ("speed", "0.3")),
        ("speed too high", {"speed": "3.5"}, reference, 400, ("speed", "3")),
        ("cfg too high", {"cfg_strength": "11"}, reference, 400, ("cfg_strength", "10")),
        ("cross-fade too long", {"cross_fade_duration": "1.5"}, reference, 400, ("cross_fade_duration", "1")),
        ("negative seed", {"seed": "-1"}, reference, 400, ("seed", "0")),
        ("seed too large", {"seed": str(2**31)}, reference, 400, ("seed", "2147483647")),
        ("unknown format", {"response_format": "aiff"}, reference, 400, ("response_format",)),
        ("only emoji", {"text": "😀😀"}, reference, 400, ("text", "nothing left to read")),
        ("unreadable transcript", {"reference_text": "😀"}, reference, 400, ("reference_text", "nothing left to read")),
    ]


@pytest.mark.parametrize("index", range(20))
def test_bad_input_gets_a_clear_4xx_naming_field_and_limit(service, reference_file, index):
    name, fields, audio, status, fragments = bad_requests(reference_file.read_bytes())[index]
    response = synthesize(service, audio, **fields)
    assert response.status_code == status, (name, response.text)
    body = response.text
    for fragment in fragments:
        assert fragment in body, (name, body)
    error = response.json()["error"]
    field = fragments[0]
    if not error.startswith("1 validation error"):  # ours, not pydantic's: "field: problem", the field named once
        assert error.startswith(f"{field}: ") and not error.startswith(f"{field}: {field}"), error


def test_missing_transcript_is_a_400_naming_it(service, reference_file):
    response = httpx.post(f"{service.url}/synthesize", data={"text": "Olá"},
                          files={"reference_audio": ("r.wav", reference_file.read_bytes())}, timeout=60)
    assert response.status_code == 400
    assert "reference_text" in response.text


def test_server_keeps_serving_after_bad_input(service, reference_file):
    for _ in range(3):
        synthesize(service, b"garbage")
    assert synthesize(service, reference_file).status_code == 200


def test_model_info_describes_the_loaded_model(service):
    info = httpx.post(f"{service.url}/model_info", json={}, timeout=10).json()
    assert info["status"] == "ready"
    assert info["tag"].startswith("f5tts-ptbr:")
    assert info["demo"] is True
    assert info["preset"] == "f5tts-base-v0"
    assert info["dtype"] == "float32" and info["device"] == "cpu"
    assert info["vocab_size"] == 2545
    assert info["arch"]["pe_attn_head"] == 1
    assert info["defaults"]["nfe_step"] == 16
    assert info["limits"]["max_upload_bytes"] == MAX_UPLOAD_BYTES


def test_metrics_are_exposed(service, reference_file):
    synthesize(service, reference_file)
    text = httpx.get(f"{service.url}/metrics", timeout=10).text
    for name in ("ptbr_synthesis_latency_seconds_bucket", "ptbr_synthesis_rtf_bucket",
                 "ptbr_generated_audio_seconds_total", "ptbr_requests_total", "ptbr_device_memory_allocated_bytes",
                 "ptbr_device_memory_peak_bytes", "ptbr_model_load_seconds", "ptbr_fp16_fallbacks_total"):
        assert name in text, name
    assert 'ptbr_requests_total{endpoint="synthesize",outcome="ok"}' in text
    assert 'outcome="client_error"' in text
    assert_each_series_once(text)


def assert_each_series_once(text: str) -> None:
    """Every ptbr_* sample once, without a pid label: BentoML's multiprocess collector already exports our
    series, merged over the workers; appending our own registry as well showed each one twice."""
    from prometheus_client.parser import text_string_to_metric_families

    seen: list[tuple] = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("ptbr_"):
                assert "pid" not in sample.labels, sample
                seen.append((sample.name, tuple(sorted(sample.labels.items()))))
    assert seen and len(seen) == len(set(seen)), sorted(item for item in seen if seen.count(item) > 1)[:5]


def test_request_log_is_json_without_the_text(service, reference_file):
    secret = "Frase secreta que não pode aparecer no log."
    assert synthesize(service, reference_file, text=secret).status_code == 200
    time.sleep(0.3)
    log = service.log_path.read_text(errors="replace")
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{") and '"event"' in line]
    ok = [line for line in lines if line.get("outcome") == "ok"]
    assert ok and {"text_chars", "chunks", "audio_s", "latency_s", "rtf", "seed"} <= set(ok[-1])
    assert secret not in log


def test_health_and_info_answer_quickly_during_a_long_synthesis(service, reference_file):
    long_text = " ".join(["Esta frase longa mantém o modelo ocupado por um bom tempo, sem pausa."] * 4)
    finished = threading.Event()
    outcome: dict = {}

    def long_request() -> None:
        outcome["response"] = synthesize(service, reference_file, text=long_text, nfe_step="48")
        finished.set()

    worker = threading.Thread(target=long_request)
    worker.start()
    time.sleep(1.0)
    latencies: dict[str, float] = {}
    rounds_while_busy = 0
    while not finished.is_set() and rounds_while_busy < 20:
        for method, path in (("GET", "/livez"), ("GET", "/readyz"), ("GET", "/metrics"), ("POST", "/model_info")):
            started = time.perf_counter()
            response = httpx.request(method, service.url + path, json={} if method == "POST" else None, timeout=5)
            latencies[path] = max(latencies.get(path, 0.0), time.perf_counter() - started)
            assert response.status_code == 200
        rounds_while_busy += not finished.is_set()  # the whole round ran while the synthesis was still going
    worker.join(timeout=300)
    print(f"\n[served] worst probe latency during synthesis: {latencies}")
    assert outcome["response"].status_code == 200
    assert rounds_while_busy >= 2, "the synthesis finished before the probes ran"
    assert max(latencies.values()) < 0.5, latencies


def test_readyz_reports_why_loading_failed(repo_root, tmp_path):
    tag = import_demo(name="broken-model")
    weights = Path(bentoml.models.get(tag).path) / "model.safetensors"
    weights.write_bytes(b"corrupted")
    served = ServedService(env={"PTBR_MODEL_TAG": tag}, log_path=tmp_path / "broken.log").start()
    try:
        served.wait_listening()
        deadline = time.monotonic() + 120
        body = {}
        while time.monotonic() < deadline:
            response = httpx.get(f"{served.url}/readyz", timeout=5)
            body = response.json()
            assert response.status_code == 503
            if body["status"] == "failed":
                break
            time.sleep(0.2)
        assert body["status"] == "failed"
        assert "model failed to load" in body["error"]
        assert httpx.get(f"{served.url}/livez", timeout=5).status_code == 200
    finally:
        served.stop()
        shutil.rmtree(Path(bentoml.models.get(tag).path).parent, ignore_errors=True)


def test_speed_presets_choose_the_flow_steps(service, reference_file):
    def run(**fields: str) -> bytes:
        form = {"text": "Olá!", "reference_text": REFERENCE_TEXT, "seed": "11", **fields}
        response = httpx.post(f"{service.url}/synthesize", data=form,
                              files={"reference_audio": ("r.wav", reference_file.read_bytes())}, timeout=120)
        assert response.status_code == 200, response.text
        return response.content

    fast = run(speed_preset="fast")
    assert fast == run(nfe_step="7")
    assert fast != run(speed_preset="balanced")
    assert run(speed_preset="quality", nfe_step="7") == fast  # an explicit nfe_step wins


def test_normalize_shows_what_the_model_reads(service):
    response = httpx.post(f"{service.url}/normalize", json={"text": "Às 14h30 paguei R$ 10,50 😀 ao Sr. Silva."},
                          timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["text"] == "Às catorze horas e trinta minutos paguei dez reais e cinquenta centavos ao Senhor Silva."
    assert body["removed_characters"] == ["😀"]
    assert body["chunks"] == [body["text"]]
    assert body["chunk_budget_bytes"] == 256


def test_normalize_chunks_by_the_reference_speaking_rate(service):
    text = " ".join(f"Esta é a frase número {n}, que vem logo depois da anterior." for n in range(1, 9))
    short_ref = httpx.post(f"{service.url}/normalize", json={"text": text, "reference_text": "Olá, tudo bem.",
                                                              "reference_seconds": 4.0}, timeout=10).json()
    long_ref = httpx.post(f"{service.url}/normalize", json={"text": text}, timeout=10).json()
    assert len(short_ref["chunks"]) > len(long_ref["chunks"]) > 1
    assert " ".join(long_ref["chunks"]) == long_ref["text"]
    assert not any(ch.isdigit() for ch in long_ref["text"])


def test_normalize_rejects_blank_text(service):
    response = httpx.post(f"{service.url}/normalize", json={"text": "  "}, timeout=10)
    assert response.status_code == 400
    assert "text" in response.json()["error"]


def test_pronunciations_respell_words_for_this_request(service, reference_file):
    plain = httpx.post(f"{service.url}/normalize", json={"text": "O Xuxa chegou."}, timeout=10).json()
    respelled = httpx.post(f"{service.url}/normalize", timeout=10,
                           json={"text": "O Xuxa chegou.", "pronunciations": {"Xuxa": "Chucha"}}).json()
    assert plain["text"] == "O Xuxa chegou." and respelled["text"] == "O Chucha chegou."
    loanword = httpx.post(f"{service.url}/normalize", json={"text": "Vi no YouTube."}, timeout=10).json()
    assert loanword["text"] == "Vi no Iutúbi."  # the built-in loanword lexicon (keeps the capital)
    # Multipart forms carry the map as JSON text; the synthesis reads the respelling.
    response = synthesize(service, reference_file, text="O Xuxa chegou.", seed="4",
                          pronunciations=json.dumps({"Xuxa": "Chucha"}))
    assert response.status_code == 200, response.text
    assert response.content == synthesize(service, reference_file, text="O Chucha chegou.", seed="4").content


@pytest.mark.parametrize("entries,fragment", [
    ({"show": "☃"}, "☃"),
    ({f"palavra{n}": "x" for n in range(101)}, "PTBR_MAX_PRONUNCIATIONS"),
    ("não é json", "JSON object"),
])
def test_bad_pronunciations_are_a_400_naming_the_problem(service, reference_file, entries, fragment):
    value = entries if isinstance(entries, str) else json.dumps(entries)
    response = synthesize(service, reference_file, pronunciations=value)
    assert response.status_code == 400, response.text
    assert "pronunciations" in response.text and fragment in response.text
