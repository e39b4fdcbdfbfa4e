"""Faults and load against the real service (the shared hardened server of tests/hardened.py).

Here: out of memory inside synthesis (injected at the engine boundary by PTBR_TEST_OOM_TRIGGER) → 503 with
Retry-After and the next request succeeds; a full data directory (a real 4 MiB tmpfs) during voice creation → 507,
nothing partial, still serving; a short load run → only 200/429/503-with-Retry-After and no descriptor or temp-file
leak. Faults tested elsewhere, on purpose not repeated: model load failure → /readyz 503 with the reason and /livez
200 (test_service.py::test_readyz_reports_why_loading_failed); a corrupt voice entry
(test_voices_served.py::test_a_corrupt_entry_is_skipped_and_reported); a client dropping mid-stream
(test_streaming_served.py::test_a_disconnected_client_frees_the_device_at_the_next_chunk); kill -9 during voice
creation (test_voices_served.py::test_kill_9_while_writing_a_voice_leaves_no_partial_voice).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import httpx
import pytest

from hardened import OOM_TRIGGER, fill
from signals import voice_like, wav_bytes

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import loadtest  # noqa: E402

pytestmark = pytest.mark.served

REFERENCE_TEXT = "Esta é a voz de referência para o teste."
LONG_TEXT = " ".join(f"Esta é a frase número {n}, que vem depois da anterior sem pressa." for n in range(1, 7))


@pytest.fixture(scope="module")
def service(hardened_service):
    return hardened_service


@pytest.fixture(scope="module")
def reference() -> bytes:
    return wav_bytes(voice_like(3.0))


def post(service, path: str, **kwargs) -> httpx.Response:
    return httpx.post(service.url + path, headers=service.headers, timeout=120, **kwargs)


@pytest.fixture(scope="module")
def voice(service, reference) -> str:
    response = post(service, "/create_voice", data={"name": "Falha", "reference_text": REFERENCE_TEXT},
                    files={"reference_audio": ("r.wav", reference)})
    assert response.status_code == 200, response.text
    yield response.json()["id"]
    post(service, "/delete_voice", json={"voice": response.json()["id"]})


def metric(service, name: str) -> float:
    text = httpx.get(f"{service.url}/metrics", timeout=10).text
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith(name)))


@pytest.mark.parametrize("route", ["/synthesize", "/synthesize_stream"])
def test_out_of_memory_is_a_503_with_retry_after_and_the_next_request_succeeds(service, voice, route):
    failed = post(service, route, data={"text": f"Olá {OOM_TRIGGER} agora.", "voice": voice, "nfe_step": "2"})
    assert failed.status_code == 503, failed.text
    assert failed.headers["retry-after"] == "3"  # PTBR_OOM_RETRY_AFTER_SECONDS
    assert failed.headers["content-type"] == "application/json"  # before the first audio byte, streaming too
    assert failed.json()["error"].startswith("device: out of device memory")
    after = post(service, route, data={"text": "Olá de novo.", "voice": voice, "nfe_step": "2"})
    assert after.status_code == 200 and len(after.content) > 4800
    assert metric(service, "ptbr_queue_in_flight ") == 0.0


def test_out_of_memory_in_a_later_chunk_ends_the_stream_and_frees_the_device(service, voice):
    whole = post(service, "/synthesize_stream", data={"text": LONG_TEXT, "voice": voice, "nfe_step": "2", "seed": "1"})
    failing = post(service, "/synthesize_stream",
                   data={"text": f"{LONG_TEXT} E no fim {OOM_TRIGGER}.", "voice": voice, "nfe_step": "2", "seed": "1"})
    assert whole.status_code == failing.status_code == 200  # the headers were gone when the last chunk failed
    assert int(failing.headers["x-chunks"]) > 1
    assert 0 < len(failing.content) <= len(whole.content)  # the chunks before the failure, then the end
    assert post(service, "/synthesize", data={"text": "Olá.", "voice": voice, "nfe_step": "2"}).status_code == 200
    assert metric(service, "ptbr_queue_in_flight ") == 0.0


def voices_on_disk(service) -> list[str]:
    return sorted(os.listdir(service.data_dir / "voices"))


def test_a_full_disk_during_voice_creation_is_a_507_with_nothing_partial(service, voice, reference):
    if service.tmpfs is None:
        pytest.skip("needs root to mount a small tmpfs as the data directory")
    audio_bytes = (service.data_dir / "voices" / voice / "reference.wav").stat().st_size
    before = voices_on_disk(service)
    listed = post(service, "/list_voices", json={"limit": 1000}).json()["total"]
    # Full before anything is written; then room for the audio but not for its metadata.
    for leave in (16 * 1024, (audio_bytes // 4096 + 1) * 4096):
        filler = fill(service.tmpfs, leave)
        try:
            response = post(service, "/create_voice", data={"name": "Disco Cheio", "reference_text": REFERENCE_TEXT},
                            files={"reference_audio": ("r.wav", reference)})
            assert response.status_code == 507, (leave, response.text)
            assert response.json()["error"].startswith("storage: ") and "PTBR_DATA_DIR" in response.text
            assert voices_on_disk(service) == before, "a partial voice was left on disk"
            # Still serving while the disk is full: synthesis, listing, health.
            assert post(service, "/synthesize", data={"text": "Ainda aqui.", "voice": voice, "nfe_step": "1"}).status_code == 200
            assert post(service, "/list_voices", json={"limit": 1000}).json()["total"] == listed
            assert httpx.get(f"{service.url}/readyz", timeout=5).status_code == 200
        finally:
            filler.unlink()
    created = post(service, "/create_voice", data={"name": "Disco Cheio", "reference_text": REFERENCE_TEXT},
                   files={"reference_audio": ("r.wav", reference)})
    assert created.status_code == 200, created.text  # the name was never taken by the failed attempts
    post(service, "/delete_voice", json={"voice": created.json()["id"]})


def test_a_short_load_run_answers_only_200_429_503_and_leaks_nothing(service):
    ctx = loadtest.prepare(service.url, nfe_step=1, api_key=service.headers["Authorization"].split()[1])
    try:
        routes = [route for route in loadtest.ROUTES.values() if route.available(ctx.client(service.url))]
        loadtest.warm_up(service.url, ctx, routes)
        phase = loadtest.load_phase(service.url, ctx, requests=40, concurrency=8, max_seconds=120, routes=routes,
                                    pid=service.served.process.pid, tmpdir=service.tmpdir, progress=False)
    finally:
        loadtest.finish(service.url, ctx)
    print(f"\n[load] {json.dumps({k: phase[k] for k in ('wall_s', 'growth', 'light_routes_p99_ms_max')})}")
    print(f"[load] {json.dumps({name: r['statuses'] for name, r in phase['routes'].items()})}")
    assert phase["requests_done"] == 40
    assert phase["unexpected"] == [], phase["unexpected"]
    assert phase["server_before"]["fds"] > 0 and len(phase["server_before"]["processes"]) >= 2  # the whole tree
    assert phase["growth"]["fds"] <= 2, phase["growth"]  # sockets of the last requests may still be closing
    assert phase["growth"]["temp_files"] <= 0, phase["growth"]


def test_the_load_tool_refuses_a_non_loopback_url():
    with pytest.raises(SystemExit, match="loopback"):
        loadtest.require_loopback("http://192.0.2.10:3000")
    loadtest.require_loopback("http://127.0.0.1:3000")
    loadtest.require_loopback("http://localhost:3000")


def test_a_load_summary_counts_429_without_retry_after_as_unexpected():
    outcomes = [loadtest.Outcome("synthesize", 200, 0.1), loadtest.Outcome("synthesize", 429, 0.01, True),
                loadtest.Outcome("synthesize", 429, 0.01, False), loadtest.Outcome("normalize", 500, 0.01),
                loadtest.Outcome("normalize", "ReadTimeout", 300.0)]
    found = {(item["route"], item["status"], item["why"]) for item in loadtest.unexpected(outcomes)}
    assert found == {("synthesize", "429", "no Retry-After"), ("normalize", "500", "unexpected status"),
                     ("normalize", "ReadTimeout", "unexpected status")}
    summary = loadtest.summarize(outcomes)
    assert summary["synthesize"]["statuses"] == {"200": 1, "429": 2}
    assert summary["synthesize"]["p50_ms"] == 10.0 and summary["normalize"]["max_ms"] == 300000.0
