"""Fuzzing the real service (the shared hardened server, API key sent): schemathesis over the served OpenAPI
document, and broken files of every accepted container as reference audio, must never give a 5xx.

Short here (bounded examples); ``scripts/fuzz.py`` runs the long version. The text front-end's property tests
(never raises, bounded time) live in test_text_properties.py."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import fuzz  # noqa: E402

pytestmark = pytest.mark.served

# PTBR_FUZZ_MAX_EXAMPLES raises the bound for a longer run inside the suite.
MAX_EXAMPLES = int(os.environ.get("PTBR_FUZZ_MAX_EXAMPLES", "12"))


def test_schemathesis_finds_no_server_error_on_any_route(hardened_service):
    report = fuzz.fuzz_schema(hardened_service.url, hardened_service.headers, max_examples=MAX_EXAMPLES, seed=20261128)
    print(f"\n[fuzz] schemathesis: {json.dumps({k: v for k, v in report.items() if k != 'output_tail'})}")
    # On failure, the server's own log too: a worker that restarted mid-run (503 "model is loading") shows why there.
    server_tail = "\n".join(hardened_service.log_path.read_text(errors="replace").splitlines()[-80:])
    assert report["returncode"] == 0, f"{report['output_tail']}\n--- server log (tail) ---\n{server_tail}"
    assert report["generated"] and report["generated"] == report["passed"]
    # Every operation of the served document was run: BentoML's APIs, the mounted /v1 app (merged into /docs.json)
    # and the job routes (FastAPI apps, merged too).
    schema = httpx.get(f"{hardened_service.url}/docs.json", headers=hardened_service.headers, timeout=10).json()
    served = {f"{method.upper()} {path}" for path, methods in schema["paths"].items() for method in methods}
    assert served <= set(report["operations"]), sorted(served - set(report["operations"]))
    expected = {"POST /v1/audio/speech", "GET /v1/audio/voices", "DELETE /v1/audio/voices/{voice_id}",
                "POST /synthesize_long/submit", "POST /dub_subtitles/submit"}
    expected |= {f"{method} /{route}/{name}" for route in ("synthesize_long", "dub_subtitles")
                 for method, name in (("GET", "status"), ("GET", "get"), ("PUT", "cancel"), ("DELETE", "delete"),
                                      ("GET", "list"))}
    assert expected <= served, sorted(expected - served)
    log = hardened_service.log_path.read_text(errors="replace")
    assert "status=500" not in log


def test_broken_reference_audio_of_every_container_never_gives_a_5xx(hardened_service):
    report = fuzz.fuzz_reference_audio(hardened_service.url, hardened_service.headers, seed=7, corrupted=1,
                                       random_blobs=3)
    print(f"\n[fuzz] reference audio: {json.dumps(report['statuses'])}")
    assert report["server_errors"] == []
    assert {"wav", "flac", "ogg-vorbis", "ogg-opus", "mp3"} <= set(report["containers"])
    assert report["statuses"]["valid"] == {"200": len(report["containers"])}  # the intact files all work
    assert sum(counts.get("400", 0) for counts in report["statuses"].values()) >= 30  # most mutations are refused
