"""Long-text and dubbing jobs through a real `bentoml serve` of the demo model: progress, results, a second
replica on the same data directory, cancel, interleaving with interactive requests, timed dubbing checked by
energy onsets, malformed subtitles, and a kill -9 in the middle of a job."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path

import bentoml
import httpx
import numpy as np
import pytest
import soundfile as sf

from served import ServedService, import_demo, kill_tree, start_demo
from signals import voice_like, wav_bytes

pytestmark = pytest.mark.served

REFERENCE_TEXT = "Esta é a voz de referência para o teste."
FAST = {"nfe_step": "2", "seed": "5"}
RATE = 24000


@pytest.fixture(scope="module")
def demo_tag() -> str:
    return import_demo()


@pytest.fixture(scope="module")
def reference_bytes() -> bytes:
    return wav_bytes(voice_like(3.0))


@pytest.fixture(scope="module")
def replicas(demo_tag, tmp_path_factory):
    """Two replicas on one data directory: A runs jobs, B only answers (PTBR_JOB_WORKERS=0), so every job seen
    through B was made by A."""
    data = tmp_path_factory.mktemp("jobs-data")
    logs = tmp_path_factory.mktemp("jobs-logs")
    env = {"PTBR_MODEL_TAG": demo_tag, "PTBR_LOG_FORMAT": "json", "PTBR_DATA_DIR": str(data),
           "PTBR_JOB_SCAN_INTERVAL_S": "0.5"}
    a = ServedService(env=env, log_path=logs / "a.log").start()
    b = ServedService(env={**env, "PTBR_JOB_WORKERS": "0"}, log_path=logs / "b.log").start()
    try:
        for served in (a, b):
            served.wait_listening()
            served.wait_ready()
        yield a, b, data
    finally:
        a.stop()
        b.stop()


@pytest.fixture(scope="module")
def voice(replicas, reference_bytes) -> str:
    a, _, _ = replicas
    response = httpx.post(f"{a.url}/create_voice", data={"name": "Narradora", "reference_text": REFERENCE_TEXT},
                          files={"reference_audio": ("ref.wav", reference_bytes)}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["id"]


def paragraphs(count: int) -> str:
    return "\n\n".join(f"Este é o parágrafo {n}, curto." for n in range(1, count + 1))


def submit_long(url: str, text: str, **fields) -> dict:
    response = httpx.post(f"{url}/synthesize_long/submit", data={"text": text, **FAST, **fields}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def status(url: str, task_id: str, kind: str = "synthesize_long") -> dict:
    response = httpx.get(f"{url}/{kind}/status", params={"task_id": task_id}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for(url: str, task_id: str, done: int = 0, kind: str = "synthesize_long", timeout: float = 120) -> dict:
    """Poll until the job has ``done`` units (or, with done=0, has finished)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = status(url, task_id, kind)
        if current["status"] != "in_progress" or (done and current["progress"]["done"] >= done):
            return current
        time.sleep(0.05)
    raise TimeoutError(f"job {task_id} did not get there: {current}")


def chunk_files(data: Path, task_id: str) -> list[Path]:
    return sorted((data / "jobs" / task_id / "chunks").glob("[0-9]*.wav"))


def metric(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.split()[-1])
    raise KeyError(name)


# ------------------------------------------------------------------------------------------------ long text


def test_long_job_progress_result_and_second_replica(replicas, voice):
    a, b, _ = replicas
    submitted = submit_long(a.url, paragraphs(20), voice=voice)
    assert submitted["status"] == "in_progress" and submitted["progress"] == {"done": 0, "total": 20}
    task_id = submitted["task_id"]
    seen, etas = [], []
    while True:
        for url in (a.url, b.url):  # the second replica reads the same files
            current = status(url, task_id)
            seen.append(current["progress"]["done"])
            if current["status"] == "in_progress" and current["eta_s"] is not None:
                etas.append(current["eta_s"])
        if current["status"] != "in_progress":
            break
        time.sleep(0.02)
    assert current["status"] == "completed", current
    assert seen == sorted(seen) and seen[-1] == 20 and len(set(seen)) >= 4, seen  # rising, seen mid-way
    assert etas, "no ETA was given while the job ran"

    report = httpx.get(f"{b.url}/synthesize_long/get", params={"task_id": task_id, "part": "report"}).json()
    chunks = report["chunks"]
    assert [c["index"] for c in chunks] == list(range(20)) and [c["paragraph"] for c in chunks] == list(range(20))
    assert all(later["start"] > earlier["start"] + earlier["duration"] for earlier, later in zip(chunks, chunks[1:]))
    wav = httpx.get(f"{b.url}/synthesize_long/get", params={"task_id": task_id})
    assert wav.status_code == 200 and wav.headers["content-type"] == "audio/wav"
    audio, rate = sf.read(io.BytesIO(wav.content))
    assert rate == RATE
    assert len(audio) / rate == pytest.approx(chunks[-1]["start"] + chunks[-1]["duration"], abs=1e-3)
    assert float(wav.headers["x-audio-duration"]) == pytest.approx(len(audio) / rate, abs=1e-3)
    mp3 = httpx.get(f"{b.url}/synthesize_long/get", params={"task_id": task_id, "response_format": "mp3"})
    assert mp3.status_code == 200 and mp3.headers["content-type"] == "audio/mpeg" and len(mp3.content) > 1000

    listed = httpx.get(f"{b.url}/synthesize_long/list").json()
    assert task_id in [task["task_id"] for task in listed["tasks"]]
    assert httpx.get(f"{b.url}/dub_subtitles/status", params={"task_id": task_id}).status_code == 404
    assert metric(a.url, 'ptbr_job_units_total{kind="long"}') >= 20
    assert metric(b.url, 'ptbr_jobs{state="completed"}') >= 1
    deleted = httpx.delete(f"{b.url}/synthesize_long/delete", params={"task_id": task_id})
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    assert httpx.get(f"{a.url}/synthesize_long/status", params={"task_id": task_id}).status_code == 404


def test_the_bentoml_async_client_submits_and_routes_refuse_clearly(replicas, voice):
    a, _, _ = replicas

    async def submit() -> dict:
        async with bentoml.AsyncHTTPClient(a.url, timeout=60) as client:
            return await client.synthesize_long_submit(text="Uma frase só.", voice=voice, nfe_step=2)

    task_id = asyncio.run(submit())["task_id"]
    assert wait_for(a.url, task_id)["status"] == "completed"
    assert httpx.get(f"{a.url}/synthesize_long/status").status_code == 400  # task_id missing
    assert httpx.get(f"{a.url}/synthesize_long/status", params={"task_id": "../x"}).status_code == 404
    too_long = httpx.post(f"{a.url}/synthesize_long/submit", json={"text": "a" * 200_001, "voice": voice})
    assert too_long.status_code == 400 and "PTBR_MAX_LONG_TEXT_CHARS" in too_long.text
    busy = submit_long(a.url, paragraphs(6), voice=voice)["task_id"]
    unfinished = httpx.get(f"{a.url}/synthesize_long/get", params={"task_id": busy})
    assert unfinished.status_code in (200, 409)  # 409 while it runs ("is in_progress"), 200 if already done
    wait_for(a.url, busy)


def test_an_interactive_sentence_slips_in_between_chunks(replicas, voice):
    a, _, _ = replicas
    task_id = submit_long(a.url, paragraphs(40), voice=voice)["task_id"]
    wait_for(a.url, task_id, done=2)
    before = status(a.url, task_id)["progress"]["done"]
    started = time.perf_counter()
    sentence = httpx.post(f"{a.url}/synthesize", data={"text": "Olá, tudo bem?", "voice": voice, **FAST}, timeout=60)
    latency = time.perf_counter() - started
    after = status(a.url, task_id)
    assert sentence.status_code == 200
    # It did not wait for the job: it got the device at the next chunk boundary.
    assert after["status"] == "in_progress", (latency, after)
    assert after["progress"]["done"] - before <= 3, (latency, before, after)
    httpx.put(f"{a.url}/synthesize_long/cancel", params={"task_id": task_id})


def test_cancel_stops_at_the_next_chunk_and_frees_the_device(replicas, voice):
    a, _, data = replicas
    task_id = submit_long(a.url, paragraphs(40), voice=voice)["task_id"]
    wait_for(a.url, task_id, done=3)
    canceled = httpx.put(f"{a.url}/synthesize_long/cancel", params={"task_id": task_id})
    at_cancel = len(chunk_files(data, task_id))
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    deadline = time.monotonic() + 10
    while status(a.url, task_id)["running"] or metric(a.url, "ptbr_queue_in_flight") != 0:
        assert time.monotonic() < deadline, "the job kept the device"
        time.sleep(0.05)
    time.sleep(0.5)
    assert len(chunk_files(data, task_id)) <= at_cancel + 1  # at most the chunk under way was finished
    assert status(a.url, task_id)["status"] == "canceled"
    again = httpx.put(f"{a.url}/synthesize_long/cancel", params={"task_id": task_id})
    assert again.status_code == 409 and "already canceled" in again.text
    result = httpx.get(f"{a.url}/synthesize_long/get", params={"task_id": task_id})
    assert result.status_code == 409


# ------------------------------------------------------------------------------------------------ dubbing

CUE_TEXTS = [
    "Bom dia.",  # fits: natural length
    "Hoje vamos falar de dublagem automática.",  # a bit long: sped up into its cue
    "Esta frase é comprida demais para caber.",  # overflows into the silence after its cue
    "Sim.",
    "Cada fala começa na hora exata da legenda.",
    "…",  # nothing to say: stays silent
    "Obrigado.",
    "E o silêncio entre as falas fica em silêncio.",
    "Até logo.",
    "Fim.",
]


def timestamp(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    return f"{millis // 3_600_000:02d}:{millis // 60_000 % 60:02d}:{millis // 1000 % 60:02d}{separator}{millis % 1000:03d}"


def subtitles(fmt: str) -> tuple[bytes, list[tuple[float, float]]]:
    times = [(0.4 + 3.0 * n, 0.4 + 3.0 * n + 1.5) for n in range(len(CUE_TEXTS))]
    separator = "," if fmt == "srt" else "."
    blocks = [f"{n + 1}\n{timestamp(s, separator)} --> {timestamp(e, separator)}\n{text}"
              for n, ((s, e), text) in enumerate(zip(times, CUE_TEXTS))]
    body = "\n\n".join(blocks) + "\n"
    if fmt == "vtt":
        body = "WEBVTT\n\nNOTE gerado pelo teste\n\n" + body
        return body.encode("utf-8"), times
    return body.encode("cp1252"), times  # Latin-1, detected


def onset(audio: np.ndarray, around: float, window: float = 0.3) -> float:
    """Where the energy rises near ``around``: the first 1 ms frame above 5 % of the loudest frame that follows."""
    first = max(0, int((around - window) * RATE))
    part = audio[first: int((around + window) * RATE)]
    frames = part[: len(part) // 24 * 24].reshape(-1, 24)
    energy = np.sqrt(np.mean(frames ** 2, axis=1))
    above = np.flatnonzero(energy > 0.05 * energy.max())
    return (first + above[0] * 24) / RATE


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_dubbing_starts_every_cue_on_time(replicas, voice, fmt):
    a, b, _ = replicas
    data, times = subtitles(fmt)
    response = httpx.post(f"{a.url}/dub_subtitles/submit", data={"voice": voice, **FAST},
                          files={"subtitles": (f"legendas.{fmt}", data)}, timeout=60)
    assert response.status_code == 200, response.text
    task_id = response.json()["task_id"]
    assert wait_for(b.url, task_id, kind="dub_subtitles")["status"] == "completed"
    report = httpx.get(f"{b.url}/dub_subtitles/get", params={"task_id": task_id, "part": "report"}).json()
    assert report["format"] == fmt and report["encoding"] == ("latin-1" if fmt == "srt" else "utf-8")
    audio, rate = sf.read(io.BytesIO(httpx.get(f"{b.url}/dub_subtitles/get", params={"task_id": task_id}).content))
    assert rate == RATE and len(audio) / rate == pytest.approx(max(times[-1][1], report["total_seconds"]), abs=1e-3)
    cues = report["cues"]
    assert [cue["index"] for cue in cues] == list(range(1, 11))
    assert [cue["text"] for cue in cues] == CUE_TEXTS
    spoken = [cue for cue in cues if cue["text_as_read"]]
    assert len(spoken) == 9 and cues[5]["generated_seconds"] == 0
    for position, cue in enumerate(cues):
        start, end = times[position]
        assert (cue["start"], cue["end"]) == (pytest.approx(start), pytest.approx(end))
        next_start = times[position + 1][0] if position + 1 < len(times) else None
        audio_end = cue["audio_start"] + cue["placed_seconds"]
        if not cue["text_as_read"]:
            continue
        assert abs(cue["audio_start"] - start) <= 0.02  # from the report
        assert abs(onset(audio, start) - start) <= 0.02, (cue, onset(audio, start))  # from the audio itself
        if next_start is not None:
            assert audio_end <= next_start + 1e-6  # never into the next cue
            gap = audio[int(np.ceil(audio_end * RATE)): int(next_start * RATE)]
            assert not np.any(gap), f"cue {cue['index']}: the gap before the next cue is not silent"
        assert cue["natural_seconds"] / cue["generated_seconds"] <= 1.3 * 1.01 or cue["beyond_speed_limit"]
    factors = [cue["speed_factor"] for cue in spoken]
    assert any(f == 1.0 for f in factors) and any(1.0 < f for f in factors)
    assert any(cue["overflow_seconds"] > 0 for cue in cues)  # the long line spilled into its gap (reported)


@pytest.mark.parametrize("name,body,line", [
    ("quebrado.srt", b"1\n00:00:01,000 --> 00:00:02,000\nok\n\n2\n00:00:03,000 -> 00:00:04,000\nseta errada\n", 6),
    ("quebrado.vtt", b"WEBVTT\n\n00:01.000 --> 00:02.000\nok\n\n00:05.000 --> 00:04.000\nao contrario\n", 6),
])
def test_malformed_subtitles_get_a_400_naming_the_line(replicas, voice, name, body, line):
    a, _, _ = replicas
    response = httpx.post(f"{a.url}/dub_subtitles/submit", data={"voice": voice, **FAST},
                          files={"subtitles": (name, body)}, timeout=60)
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(f"subtitles: line {line}:"), response.text


def test_duration_field_on_synthesize(replicas, voice):
    a, _, _ = replicas
    for target in (1.0, 3.0):
        response = httpx.post(f"{a.url}/synthesize", data={"text": "Olá, tudo bem?", "voice": voice,
                                                           "duration": str(target), **FAST}, timeout=60)
        assert response.status_code == 200, response.text
        assert abs(len(sf.read(io.BytesIO(response.content))[0]) / RATE - target) <= 0.006
        assert float(response.headers["x-speed-factor"]) == pytest.approx(
            float(response.headers["x-natural-seconds"]) / target, abs=1e-3)
    long_text = " ".join(["Esta é uma frase que se repete para passar do tamanho de um pedaço."] * 8)
    refused = httpx.post(f"{a.url}/synthesize", data={"text": long_text, "voice": voice, "duration": "5"}, timeout=60)
    assert refused.status_code == 400 and "duration" in refused.json()["error"]


# ------------------------------------------------------------------------------------------------ crash


def test_kill_9_mid_job_resumes_without_redoing_chunks(demo_tag, tmp_path, reference_bytes):
    data = tmp_path / "crash-data"
    # A pause after each chunk (device free meanwhile) so the kill lands mid-job on any machine.
    first = start_demo(demo_tag, tmp_path / "first.log", PTBR_DATA_DIR=str(data), PTBR_TEST_JOB_CHUNK_PAUSE_S="0.3")
    try:
        response = httpx.post(f"{first.url}/synthesize_long/submit",
                              data={"text": paragraphs(20), "reference_text": REFERENCE_TEXT, **FAST},
                              files={"reference_audio": ("ref.wav", reference_bytes)}, timeout=60)
        task_id = response.json()["task_id"]
        wait_for(first.url, task_id, done=4)
        kill_tree(first)
    finally:
        kill_tree(first)
    on_disk = len(chunk_files(data, task_id))
    assert 4 <= on_disk < 20

    restarted = start_demo(demo_tag, tmp_path / "restart.log", PTBR_DATA_DIR=str(data),
                           PTBR_JOB_SCAN_INTERVAL_S="0.5")
    try:
        final = wait_for(restarted.url, task_id)
        assert final["status"] == "completed", final
        runs = final["runs"]
        assert len(runs) == 2 and runs[0]["from"] == 0 and runs[0]["made"] <= on_disk
        assert runs[1]["from"] == on_disk and runs[1]["made"] == 20 - on_disk  # nothing made twice
        assert metric(restarted.url, 'ptbr_job_units_total{kind="long"}') == 20 - on_disk  # counted by the process
        report = httpx.get(f"{restarted.url}/synthesize_long/get", params={"task_id": task_id, "part": "report"})
        assert [c["index"] for c in report.json()["chunks"]] == list(range(20))
        print(f"\nresume: {on_disk} chunks on disk at kill -9, {runs[1]['made']} made after restart")
    finally:
        restarted.stop()
