"""PTBR_GPU_WORKERS on a CPU-only box: several worker processes behind one `bentoml serve`, each with its own
model. /readyz speaks for all of them, /metrics merges them, and a worker that dies reads as not ready until
BentoML's supervisor has restarted it and it has loaded again. (The GPU binding itself is measured on a 2-GPU
machine by scripts/measure_gpu_workers.py.)"""

from __future__ import annotations

import time

import httpx
import psutil
import pytest

from served import import_demo, start_demo
from test_service import FAST, REFERENCE_TEXT, assert_each_series_once, reference_file  # noqa: F401 (fixture)


def workers_of(served) -> list[psutil.Process]:
    parent = psutil.Process(served.process.pid)
    return [child for child in parent.children(recursive=True)
            if any("_bentoml_impl.worker.service" in part for part in child.cmdline())]


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    directory = tmp_path_factory.mktemp("workers")
    served = start_demo(import_demo(), directory / "serve.log", PTBR_GPU_WORKERS="2",
                        PTBR_DATA_DIR=str(directory / "data"))
    try:
        yield served
    finally:
        served.stop()


def synthesize(url: str, reference: bytes) -> httpx.Response:
    form = {"text": "Olá, tudo bem?", "reference_text": REFERENCE_TEXT, **FAST}
    # A fresh connection each time, so the kernel may hand it to either worker.
    return httpx.post(f"{url}/synthesize", data=form, files={"reference_audio": ("r.wav", reference)}, timeout=120)


def test_two_workers_answer_and_metrics_merge_them(two_workers, reference_file):
    assert len(workers_of(two_workers)) == 2
    reference = reference_file.read_bytes()
    for _ in range(4):
        assert synthesize(two_workers.url, reference).status_code == 200
    text = httpx.get(f"{two_workers.url}/metrics", timeout=10).text
    assert_each_series_once(text)
    values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
              if line.startswith(("ptbr_model_ready ", "ptbr_queue_length ", "ptbr_requests_total{"))}
    assert values["ptbr_model_ready"] == 1.0 and values["ptbr_queue_length"] == 0.0
    # Counters are summed over both workers, whichever answered each request.
    assert values['ptbr_requests_total{endpoint="synthesize",outcome="ok"}'] == 4.0


def test_a_dead_worker_makes_readyz_503_until_it_is_back(two_workers):
    victim = workers_of(two_workers)[0]
    victim.kill()
    try:  # the signal lands asynchronously: wait until the process is dead (a zombie or reaped)
        while victim.status() != psutil.STATUS_ZOMBIE:
            time.sleep(0.02)
    except psutil.NoSuchProcess:
        pass  # already reaped by BentoML's supervisor: dead, as waited for
    seen = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{two_workers.url}/readyz", timeout=5)
        except httpx.TransportError:
            time.sleep(0.1)
            continue
        seen.append(response.status_code)
        if response.status_code == 503:
            assert "not ready" in response.json()["error"] or "loading" in response.json()["error"]
        if 503 in seen and response.status_code == 200:
            break
        time.sleep(0.1)
    assert seen[0] == 503, seen[:5]
    assert seen[-1] == 200, seen[-5:]
    pids = {process.pid for process in workers_of(two_workers)}
    assert len(pids) == 2 and victim.pid not in pids
