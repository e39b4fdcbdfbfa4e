"""Two real `bentoml serve` replicas of the demo model on one data directory, behind one address: a round-robin
proxy (tests/rr_proxy.py) with no stickiness sends each request to the next replica. Voices and jobs must work
whichever replica answers: made through one, used, renamed, deleted and read through the other at once.

Both replicas are configured alike (both run jobs), as a Deployment's pods would be. Every scenario also asserts
on the proxy's record that both replicas answered its requests, so a silently unused replica fails the test."""

from __future__ import annotations

import io
import time
import httpx
import psutil
import pytest
import soundfile as sf

from rr_proxy import BACKEND_HEADER, RoundRobinProxy
from served import ServedService, import_demo, start_replicas
from signals import voice_like, wav_bytes

pytestmark = pytest.mark.served

REFERENCE_TEXT = "Esta é a voz de referência para o teste."
RATE = 24000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(proxy, data directory, replicas): both replicas at NFE 2 (PTBR_NFE_STEP, so /v1 needs no extra field) and
    scanning for jobs every 0.5 s."""
    data = tmp_path_factory.mktemp("replicas-data")
    replicas = start_replicas(import_demo(), data, tmp_path_factory.mktemp("replicas-logs"), count=2,
                              PTBR_NFE_STEP="2", PTBR_JOB_SCAN_INTERVAL_S="0.5")
    proxy = RoundRobinProxy([served.url for served in replicas]).start()
    try:
        yield proxy, data, replicas
    finally:
        proxy.stop()
        for served in replicas:
            served.stop()


@pytest.fixture
def proxy(cluster) -> RoundRobinProxy:
    return cluster[0]


def backend(response: httpx.Response) -> int:
    return int(response.headers[BACKEND_HEADER])


def post(proxy: RoundRobinProxy, route: str, **body) -> httpx.Response:
    return httpx.post(f"{proxy.url}/{route}", json=body, timeout=60)


def create_voice(proxy: RoundRobinProxy, name: str) -> httpx.Response:
    return httpx.post(f"{proxy.url}/create_voice", data={"name": name, "reference_text": REFERENCE_TEXT},
                      files={"reference_audio": ("ref.wav", wav_bytes(voice_like(3.0)))}, timeout=60)


def test_the_proxy_alternates(proxy):
    answered = [backend(httpx.get(f"{proxy.url}/readyz", timeout=10)) for _ in range(4)]
    assert answered in ([0, 1, 0, 1], [1, 0, 1, 0])


def test_a_voice_made_on_one_replica_is_used_renamed_and_deleted_through_the_other(proxy):
    mark = len(proxy.record)
    created = create_voice(proxy, "Compartilhada")
    assert created.status_code == 200, created.text
    voice, maker = created.json()["id"], backend(created)

    listed = post(proxy, "list_voices", limit=1000)
    assert backend(listed) != maker and voice in [v["id"] for v in listed.json()["voices"]]
    fetched = post(proxy, "get_voice", voice="compartilhada")  # by name, case-insensitively
    assert fetched.status_code == 200 and fetched.json()["id"] == voice
    assert {backend(listed), backend(fetched)} == {0, 1}

    # Synthesis by the voice, once on each replica: same seed, same model, same stored reference → same audio.
    spoken = [httpx.post(f"{proxy.url}/synthesize", data={"text": "Bom dia!", "voice": voice, "seed": "7"},
                         timeout=60) for _ in range(2)]
    assert [s.status_code for s in spoken] == [200, 200], [s.text for s in spoken]
    assert {backend(s) for s in spoken} == {0, 1}
    assert spoken[0].content == spoken[1].content
    audio, rate = sf.read(io.BytesIO(spoken[0].content))
    assert rate == RATE and len(audio) > RATE // 10

    # The OpenAI route, streamed (its default) through the proxy, on each replica.
    for _ in range(2):
        with httpx.stream("POST", f"{proxy.url}/v1/audio/speech", timeout=60,
                          json={"model": "tts-1", "input": "Olá!", "voice": voice, "response_format": "wav"}) as s:
            body = s.read()
            assert s.status_code == 200, body
            assert s.headers["content-type"] == "audio/wav"
        assert body[:4] == b"RIFF" and len(body) > 44 + RATE // 10 * 2, len(body)

    renamed = post(proxy, "rename_voice", voice=voice, name="Renomeada")
    assert renamed.status_code == 200 and renamed.json()["name"] == "Renomeada"
    seen = post(proxy, "get_voice", voice="Renomeada")
    assert backend(seen) != backend(renamed) and seen.json()["id"] == voice
    old_name = post(proxy, "get_voice", voice="Compartilhada")
    assert old_name.status_code == 404  # the old name is gone on the replica that renamed it, too

    deleted = post(proxy, "delete_voice", voice=voice)
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    # At once, on the other replica — which has this voice's reference in its memory cache from the synthesis.
    gone = httpx.post(f"{proxy.url}/synthesize", data={"text": "Bom dia!", "voice": voice}, timeout=60)
    assert backend(gone) != backend(deleted)
    assert gone.status_code == 404, "a replica served a deleted voice from its cache"
    also_gone = post(proxy, "get_voice", voice=voice)
    assert also_gone.status_code == 404 and backend(also_gone) == backend(deleted)
    assert proxy.backends_since(mark) == {0, 1}


def paragraphs(count: int) -> str:
    return "\n\n".join(f"Este é o parágrafo {n}, curto." for n in range(1, count + 1))


def status(proxy: RoundRobinProxy, task_id: str) -> httpx.Response:
    response = httpx.get(f"{proxy.url}/synthesize_long/status", params={"task_id": task_id}, timeout=10)
    assert response.status_code == 200, response.text
    return response


def test_a_long_job_runs_and_is_read_whichever_replica_answers(proxy):
    mark = len(proxy.record)
    voice = create_voice(proxy, "Narradora").json()["id"]
    submitted = httpx.post(f"{proxy.url}/synthesize_long/submit",
                           data={"text": paragraphs(6), "voice": voice, "seed": "5"}, timeout=60)
    assert submitted.status_code == 200, submitted.text
    task_id = submitted.json()["task_id"]
    answered_by, progress = set(), []
    deadline = time.monotonic() + 60
    while True:
        current = status(proxy, task_id)
        answered_by.add(backend(current))
        progress.append(current.json()["progress"]["done"])
        if current.json()["status"] != "in_progress" and len(answered_by) == 2:  # followed through both
            break
        assert time.monotonic() < deadline, (answered_by, current.json())
        time.sleep(0.05)
    assert current.json()["status"] == "completed", current.json()
    again = status(proxy, task_id)  # and the end is the same through the other one ("running" may just drop)
    assert backend(again) != backend(current)
    assert {**again.json(), "running": None} == {**current.json(), "running": None}
    assert progress == sorted(progress) and progress[-1] == 6, progress  # both replicas see the same files

    reports = [httpx.get(f"{proxy.url}/synthesize_long/get", params={"task_id": task_id, "part": "report"},
                         timeout=30) for _ in range(2)]
    assert {backend(r) for r in reports} == {0, 1} and reports[0].json() == reports[1].json()
    chunks = reports[0].json()["chunks"]
    assert [c["index"] for c in chunks] == list(range(6))
    results = [httpx.get(f"{proxy.url}/synthesize_long/get", params={"task_id": task_id}, timeout=30)
               for _ in range(2)]
    assert {backend(r) for r in results} == {0, 1}
    assert [r.status_code for r in results] == [200, 200] and results[0].content == results[1].content
    audio, rate = sf.read(io.BytesIO(results[0].content))
    assert rate == RATE
    assert len(audio) / rate == pytest.approx(chunks[-1]["start"] + chunks[-1]["duration"], abs=1e-3)

    listings = [httpx.get(f"{proxy.url}/synthesize_long/list", timeout=10) for _ in range(2)]
    assert all(task_id in [t["task_id"] for t in listing.json()["tasks"]] for listing in listings)
    deleted = httpx.delete(f"{proxy.url}/synthesize_long/delete", params={"task_id": task_id}, timeout=10)
    assert deleted.status_code == 200
    after = httpx.get(f"{proxy.url}/synthesize_long/status", params={"task_id": task_id}, timeout=10)
    assert after.status_code == 404 and backend(after) != backend(deleted)
    assert proxy.backends_since(mark) == {0, 1}


def running_on(replicas: list[ServedService], worker: str) -> int:
    """Which replica's process tree holds the job worker ``host:pid`` (the job's ``runs[-1]["worker"]``)."""
    pid = int(worker.rsplit(":", 1)[1])
    for index, served in enumerate(replicas):
        tree = psutil.Process(served.process.pid)
        if pid in [tree.pid, *(child.pid for child in tree.children(recursive=True))]:
            return index
    raise AssertionError(f"no replica runs worker {worker}")


def test_a_cancel_through_the_proxy_stops_the_job_on_the_other_replica(proxy, cluster):
    _, data, replicas = cluster
    mark = len(proxy.record)
    submitted = httpx.post(f"{proxy.url}/synthesize_long/submit", timeout=60,
                           data={"text": paragraphs(40), "reference_text": REFERENCE_TEXT, "seed": "5"},
                           files={"reference_audio": ("ref.wav", wav_bytes(voice_like(3.0)))})
    assert submitted.status_code == 200, submitted.text
    task_id = submitted.json()["task_id"]
    deadline = time.monotonic() + 60
    while (current := status(proxy, task_id).json())["progress"]["done"] < 2:
        assert time.monotonic() < deadline, "the job did not start"
        time.sleep(0.05)
    runner = running_on(replicas, current["runs"][-1]["worker"])
    if proxy.peek() == runner:  # one cheap request so that the cancel lands on the replica NOT running the job
        httpx.get(f"{proxy.url}/livez", timeout=10)

    canceled = httpx.put(f"{proxy.url}/synthesize_long/cancel", params={"task_id": task_id}, timeout=10)
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled", canceled.text
    assert backend(canceled) != runner
    at_cancel = len(list((data / "jobs" / task_id / "chunks").glob("[0-9]*.wav")))
    seen = status(proxy, task_id)
    assert backend(seen) != backend(canceled) and seen.json()["status"] == "canceled"
    deadline = time.monotonic() + 10
    while status(proxy, task_id).json()["running"]:  # the runner, on the other replica, lets go of the job
        assert time.monotonic() < deadline, "the job kept running after the cancel"
        time.sleep(0.05)
    made = len(list((data / "jobs" / task_id / "chunks").glob("[0-9]*.wav")))
    assert made <= at_cancel + 1 < 40  # at most the chunk under way was finished
    again = httpx.put(f"{proxy.url}/synthesize_long/cancel", params={"task_id": task_id}, timeout=10)
    assert again.status_code == 409 and "already canceled" in again.text
    assert proxy.backends_since(mark) == {0, 1}
