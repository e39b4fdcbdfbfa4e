"""Faults inside jobs, against the real service (the shared hardened server of tests/hardened.py: a real 4 MiB
tmpfs as the data directory, the out-of-memory test hooks, keys on, job retries within a second).

- a full data directory at submit time → 507 naming it, nothing half-written, other jobs and voices intact (and a
  finished job's result asked in a new format → 507, no partial file);
- a full data directory while a job writes its chunks, then while it assembles its result → the job waits
  (``in_progress`` with ``retry.code`` ``insufficient_storage``), keeps every finished chunk, shows no result, and
  completes once space is freed without making any chunk twice; the service serves meanwhile;
- out of device memory in a job's chunk → retried after a backoff (the device is free meanwhile) and completed, or,
  when it runs out at every try, failed with ``error_code`` ``out_of_memory`` after PTBR_JOB_MAX_ATTEMPTS.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import httpx
import pytest
import soundfile as sf

import hardened
from hardened import OOM_ONCE_TRIGGER, OOM_TRIGGER
from signals import voice_like, wav_bytes

pytestmark = pytest.mark.served

REFERENCE_TEXT = "Esta é a voz de referência para o teste."
FAST = {"nfe_step": "2", "seed": "5"}
PAGE = 4096
SUBTITLES = b"1\n00:00:00,500 --> 00:00:02,000\nBom dia.\n\n2\n00:00:03,000 --> 00:00:04,500\nAte logo.\n"


@pytest.fixture(scope="module")
def service(hardened_service):
    return hardened_service


def call(service, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(method, service.url + path, headers=service.headers, timeout=120, **kwargs)


@pytest.fixture(scope="module")
def voice(service) -> str:
    response = call(service, "POST", "/create_voice", data={"name": "Falha de Job", "reference_text": REFERENCE_TEXT},
                    files={"reference_audio": ("r.wav", wav_bytes(voice_like(3.0)))})
    assert response.status_code == 200, response.text
    yield response.json()["id"]
    call(service, "POST", "/delete_voice", json={"voice": response.json()["id"]})


def paragraphs(count: int, marked: dict[int, str] | None = None) -> str:
    return "\n\n".join(f"Este é o parágrafo {(marked or {}).get(n, n)}, curto." for n in range(1, count + 1))


def submit(service, text: str, voice: str) -> httpx.Response:
    return call(service, "POST", "/synthesize_long/submit", data={"text": text, "voice": voice, **FAST})


def status(service, task_id: str) -> dict:
    response = call(service, "GET", "/synthesize_long/status", params={"task_id": task_id})
    assert response.status_code == 200, response.text
    return response.json()


def wait_until(service, task_id: str, done, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = status(service, task_id)
        if done(current):
            return current
        time.sleep(0.05)
    raise TimeoutError(f"job {task_id}: {current}")


def finished(current: dict) -> bool:
    return current["status"] != "in_progress"


def waiting(code: str):
    return lambda current: finished(current) or (current["retry"] or {}).get("code") == code


def pages(size: int) -> int:
    return -(-size // PAGE) * PAGE


def fill(mount: Path, leave: int) -> Path:
    return hardened.fill(mount, leave, "job-filler")  # its own name: the reliability tests fill the same tmpfs


def jobs_folder(service) -> Path:
    return service.data_dir / "jobs"


def entries(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def still_serving(service, voice: str) -> None:
    spoken = call(service, "POST", "/synthesize", data={"text": "Ainda aqui.", "voice": voice, "nfe_step": "1"})
    assert spoken.status_code == 200 and spoken.content.startswith(b"RIFF")
    assert call(service, "POST", "/get_voice", json={"voice": voice}).status_code == 200
    assert httpx.get(f"{service.url}/readyz", timeout=5).status_code == 200


def in_flight(service) -> float:
    text = httpx.get(f"{service.url}/metrics", timeout=10).text
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith("ptbr_queue_in_flight ")))


@pytest.fixture(scope="module")
def finished_job(service, voice) -> dict:
    """A completed job (4 chunks) whose files tell how much room a job of the same text takes, and whose result
    must come through every fault below unchanged."""
    for task in call(service, "GET", "/synthesize_long/list", params={"limit": 1000}).json()["tasks"]:
        call(service, "DELETE", "/synthesize_long/delete", params={"task_id": task["task_id"]})  # room on 4 MiB
    response = submit(service, paragraphs(4), voice)
    assert response.status_code == 200, response.text
    task_id = response.json()["task_id"]
    assert wait_until(service, task_id, finished)["status"] == "completed"
    folder = jobs_folder(service) / task_id
    report = call(service, "GET", "/synthesize_long/get", params={"task_id": task_id, "part": "report"}).json()
    audio = call(service, "GET", "/synthesize_long/get", params={"task_id": task_id}).content
    return {
        "task_id": task_id, "audio": audio,
        # what a new job of this text writes at submit: the reference, job.json, state.json (+ its replacement)
        "create_bytes": sum(pages((folder / name).stat().st_size) for name in ("reference.wav", "job.json",
                                                                             "state.json")) + PAGE,
        # each chunk: its float WAV and its facts (one page)
        "chunk_bytes": [pages(44 + 4 * round(chunk["duration"] * 24000)) + PAGE for chunk in report["chunks"]],
    }


def assert_intact(service, finished_job: dict, voice: str) -> None:
    again = call(service, "GET", "/synthesize_long/get", params={"task_id": finished_job["task_id"]})
    assert again.status_code == 200 and again.content == finished_job["audio"]
    assert (service.data_dir / "voices" / voice / "reference.wav").is_file()


def test_a_full_disk_at_submit_is_a_507_and_leaves_nothing(service, voice, finished_job):
    if service.tmpfs is None:
        pytest.skip("needs root to mount a small tmpfs as the data directory")
    before = entries(jobs_folder(service))
    # Full before anything is written; then room for the reference but not for the job's description.
    reference_room = finished_job["create_bytes"] - 3 * PAGE
    for leave in (16 * 1024, reference_room):
        filler = fill(service.tmpfs, leave)
        try:
            long = submit(service, paragraphs(4), voice)
            dub = call(service, "POST", "/dub_subtitles/submit", data={"voice": voice, **FAST},
                       files={"subtitles": ("legendas.srt", SUBTITLES)})
            for response in (long, dub):
                assert response.status_code == 507, (leave, response.text)
                assert response.headers["content-type"] == "application/json"
                error = response.json()["error"]
                assert error.startswith("storage: the data directory is full") and "PTBR_DATA_DIR" in error
            assert entries(jobs_folder(service)) == before, "a half-written job was left on disk"
            if leave == 16 * 1024:  # a finished job's result in a format not made yet: 507 too, nothing partial
                transcoded = call(service, "GET", "/synthesize_long/get", params={
                    "task_id": finished_job["task_id"], "response_format": "flac", "sample_rate": "16000"})
                assert transcoded.status_code == 507 and "PTBR_DATA_DIR" in transcoded.text, transcoded.text
                assert not [name for name in entries(jobs_folder(service) / finished_job["task_id"])
                            if name.startswith((".tmp", "result-16000"))]
            still_serving(service, voice)
            assert_intact(service, finished_job, voice)
        finally:
            filler.unlink()
    flac = call(service, "GET", "/synthesize_long/get",
                params={"task_id": finished_job["task_id"], "response_format": "flac", "sample_rate": "16000"})
    assert flac.status_code == 200 and flac.content.startswith(b"fLaC")
    accepted = submit(service, paragraphs(2), voice)  # with room again, the same request is taken
    assert accepted.status_code == 200, accepted.text
    assert wait_until(service, accepted.json()["task_id"], finished)["status"] == "completed"
    call(service, "DELETE", "/synthesize_long/delete", params={"task_id": accepted.json()["task_id"]})


def test_a_full_disk_mid_job_keeps_its_chunks_and_it_resumes_when_space_returns(service, voice, finished_job):
    if service.tmpfs is None:
        pytest.skip("needs root to mount a small tmpfs as the data directory")
    chunks = finished_job["chunk_bytes"]
    # Room for the job, two chunks and half of the third.
    filler = fill(service.tmpfs, finished_job["create_bytes"] + chunks[0] + chunks[1] + chunks[2] // 2)
    try:
        response = submit(service, paragraphs(4), voice)
        assert response.status_code == 200, response.text
        task_id = response.json()["task_id"]
        stuck = wait_until(service, task_id, waiting("insufficient_storage"))
        assert stuck["status"] == "in_progress", stuck
        done = stuck["progress"]["done"]
        assert 1 <= done < 4, stuck  # the chunks made before the disk filled are kept
        assert stuck["retry"]["message"].startswith("the data directory is full (PTBR_DATA_DIR): part "), stuck
        assert stuck["attempts"] == 0 and stuck["error"] is None and stuck["error_code"] is None
        folder = jobs_folder(service) / task_id
        assert len(list((folder / "chunks").glob("[0-9]*.wav"))) == done
        assert not [name for name in entries(folder) if name.startswith(("result", "report", ".tmp"))]
        assert not list((folder / "chunks").glob(".tmp*"))
        result = call(service, "GET", "/synthesize_long/get", params={"task_id": task_id})
        assert result.status_code == 409 and "in_progress" in result.text
        still_serving(service, voice)
        assert_intact(service, finished_job, voice)
    finally:
        filler.unlink()
    final = wait_until(service, task_id, finished)
    assert final["status"] == "completed" and final["retry"] is None, final
    runs = final["runs"]
    assert runs[0]["ended"] == "insufficient_storage" and runs[0]["made"] == done
    assert runs[-1]["from"] == done and runs[-1]["made"] == 4 - done  # nothing made twice
    assert final["attempts"] == 1  # waiting for space used no attempt
    audio = call(service, "GET", "/synthesize_long/get", params={"task_id": task_id}).content
    assert audio == finished_job["audio"]  # same text, seed and voice: the resumed job is the same track
    call(service, "DELETE", "/synthesize_long/delete", params={"task_id": task_id})


def test_a_full_disk_while_assembling_shows_no_result_and_it_completes_later(service, voice, finished_job):
    if service.tmpfs is None:
        pytest.skip("needs root to mount a small tmpfs as the data directory")
    # Room for the job and all its chunks (with slack), not for the 16-bit result (half the chunks' size).
    room = finished_job["create_bytes"] + sum(finished_job["chunk_bytes"]) + 8 * PAGE
    filler = fill(service.tmpfs, room)
    try:
        task_id = submit(service, paragraphs(4), voice).json()["task_id"]
        stuck = wait_until(service, task_id, waiting("insufficient_storage"))
        assert stuck["status"] == "in_progress" and stuck["progress"]["done"] == 4, stuck
        assert "the result could not be stored" in stuck["retry"]["message"]
        folder = jobs_folder(service) / task_id
        assert not [name for name in entries(folder) if name.startswith(("result", "report", ".tmp"))]
        assert call(service, "GET", "/synthesize_long/get", params={"task_id": task_id}).status_code == 409
        still_serving(service, voice)
    finally:
        filler.unlink()
    final = wait_until(service, task_id, finished)
    assert final["status"] == "completed" and sum(run["made"] for run in final["runs"]) == 4, final
    assert call(service, "GET", "/synthesize_long/get", params={"task_id": task_id}).content == finished_job["audio"]
    assert not (jobs_folder(service) / task_id / "chunks").exists()
    call(service, "DELETE", "/synthesize_long/delete", params={"task_id": task_id})
    assert_intact(service, finished_job, voice)


def test_out_of_memory_in_a_job_chunk_is_retried_and_the_job_completes(service, voice):
    response = submit(service, paragraphs(3, marked={2: OOM_ONCE_TRIGGER}), voice)
    assert response.status_code == 200, response.text
    task_id = response.json()["task_id"]
    final = wait_until(service, task_id, finished)
    assert final["status"] == "completed", final
    assert final["attempts"] == 2 and final["runs"][0]["ended"] == "out_of_memory"
    assert [(run["from"], run["made"]) for run in final["runs"]] == [(0, 1), (1, 2)]  # chunk 1 kept, 2 redone
    report = call(service, "GET", "/synthesize_long/get", params={"task_id": task_id, "part": "report"}).json()
    assert [chunk["index"] for chunk in report["chunks"]] == [0, 1, 2]
    audio, rate = sf.read(io.BytesIO(call(service, "GET", "/synthesize_long/get", params={"task_id": task_id}).content))
    assert rate == 24000 and len(audio) / rate == pytest.approx(report["total_seconds"], abs=1e-3)
    assert in_flight(service) == 0.0
    call(service, "DELETE", "/synthesize_long/delete", params={"task_id": task_id})


def test_out_of_memory_at_every_try_fails_the_job_clearly_and_frees_the_device(service, voice):
    task_id = submit(service, paragraphs(3, marked={2: OOM_TRIGGER}), voice).json()["task_id"]
    waited = wait_until(service, task_id, waiting("out_of_memory"))
    if waited["status"] == "in_progress":  # between tries: the device is free for interactive requests
        still_serving(service, voice)
    final = wait_until(service, task_id, finished)
    assert final["status"] == "failed" and final["error_code"] == "out_of_memory", final
    assert final["error"].startswith("out of device memory while making part 2 of 3; tried 3 times "
                                     "(PTBR_JOB_MAX_ATTEMPTS=3), not retried again; 1 of 3 parts were done"), final
    assert final["attempts"] == 3 and [run["ended"] for run in final["runs"]] == ["out_of_memory"] * 3
    result = call(service, "GET", "/synthesize_long/get", params={"task_id": task_id})
    assert result.status_code == 409 and "out of device memory" in result.text
    assert in_flight(service) == 0.0
    still_serving(service, voice)
    call(service, "DELETE", "/synthesize_long/delete", params={"task_id": task_id})
