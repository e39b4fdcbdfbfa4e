#!/usr/bin/env python3
"""Fuzz the service over loopback HTTP and print JSON: zero 5xx is the expectation.

    .venv/bin/python scripts/fuzz.py                                  # start a demo-model server, the long run
    .venv/bin/python scripts/fuzz.py --url http://127.0.0.1:3000 --api-key KEY --max-examples 50

Two parts:
- **schema**: schemathesis against the served OpenAPI document (``/docs.json``: BentoML's APIs, and the mounted
  FastAPI apps BentoML merges into it, ``/v1`` and the job routes), every operation, positive and negative data,
  check ``not_a_server_error`` (and the schema must be valid OpenAPI: a schema error fails too); the operations run
  are read back from schemathesis's JUnit report;
- **reference audio**: random bytes, and truncated and corrupted files of every container the service accepts (wav,
  flac, ogg/vorbis, ogg/opus, mp3, and webm/opus and m4a/aac where FFmpeg here encodes them) sent as
  ``reference_audio`` to ``/synthesize``.

The test suite runs a short version (tests/test_fuzz_served.py); this script's defaults are the long run.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import httpx
import soundfile as sf

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ptbr_model.bench_workloads import voice_like  # noqa: E402

REFERENCE_TEXT = "Esta é a voz de referência para o teste."
# libsndfile writes these; FFmpeg (CLI) the two browser/phone containers.
SOUNDFILE_CONTAINERS = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "ogg-vorbis": ("OGG", "VORBIS"),
                        "ogg-opus": ("OGG", "OPUS"), "mp3": ("MP3", "MPEG_LAYER_III")}
FFMPEG_CONTAINERS = {"webm-opus": ("webm", ["-c:a", "libopus"]), "m4a-aac": ("m4a", ["-c:a", "aac"])}


def container_samples(seconds: float = 2.5, rate: int = 48000) -> tuple[dict[str, bytes], list[str]]:
    """One valid file per accepted container; the names FFmpeg here could not encode come back as ``missing``."""
    wave = voice_like(seconds, sample_rate=rate)
    files: dict[str, bytes] = {}
    missing: list[str] = []
    for name, (fmt, subtype) in SOUNDFILE_CONTAINERS.items():
        buffer = io.BytesIO()
        sf.write(buffer, wave, rate, format=fmt, subtype=subtype)
        files[name] = buffer.getvalue()
    ffmpeg = shutil.which("ffmpeg")
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "source.wav"
        sf.write(source, wave, rate, subtype="PCM_16")
        for name, (suffix, codec) in FFMPEG_CONTAINERS.items():
            target = Path(folder) / f"out.{suffix}"
            if ffmpeg is None or subprocess.run([ffmpeg, "-v", "error", "-y", "-i", str(source), *codec, str(target)],
                                                capture_output=True, timeout=120).returncode != 0:
                missing.append(name)
                continue
            files[name] = target.read_bytes()
    return files, missing


def mutations(data: bytes, rng: random.Random, corrupted: int = 2) -> list[tuple[str, bytes]]:
    """Truncations (inside the header, just after it, and at 10/50/90 %), corrupted copies (1 % of the bytes after
    the first 64 replaced), the header with a random tail, and random bytes of the same length."""
    cases = [(f"cut{cut}", data[:cut]) for cut in (12, 44, 200) if cut < len(data)]
    cases += [(f"cut{int(fraction * 100)}%", data[: int(len(data) * fraction)]) for fraction in (0.1, 0.5, 0.9)]
    for index in range(corrupted):
        mutable = bytearray(data)
        for _ in range(max(1, len(data) // 100)):
            mutable[rng.randrange(64, len(data))] = rng.randrange(256)
        cases.append((f"corrupt{index}", bytes(mutable)))
    cases.append(("header+random", data[:64] + rng.randbytes(len(data) - 64)))
    cases.append(("random", rng.randbytes(len(data))))
    return cases


def fuzz_reference_audio(url: str, headers: dict[str, str], *, seed: int = 0, corrupted: int = 2,
                         random_blobs: int = 4) -> dict:
    """Every mutation of every container, plus pure random blobs, as ``reference_audio``; statuses per container."""
    rng = random.Random(seed)
    files, missing = container_samples()
    cases = [(name, label, blob) for name, data in files.items() for label, blob in mutations(data, rng, corrupted)]
    cases += [("random", f"blob{index}", rng.randbytes(rng.choice((1, 100, 4096, 60000)))) for index in range(random_blobs)]
    cases += [("valid", name, data) for name, data in files.items()]
    statuses: dict[str, Counter] = {}
    server_errors = []
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        for container, label, blob in cases:
            response = client.post("/synthesize", data={"text": "Oi.", "reference_text": REFERENCE_TEXT, "nfe_step": "1"},
                                   files={"reference_audio": (f"ref.{container.split('-')[0]}", blob)})
            statuses.setdefault(container, Counter())[str(response.status_code)] += 1
            if response.status_code >= 500:
                server_errors.append({"container": container, "case": label, "status": response.status_code,
                                      "body": response.text[:200]})
            elif response.status_code == 200 and not response.content.startswith(b"RIFF"):
                server_errors.append({"container": container, "case": label, "status": 200, "body": "not a WAV"})
    return {"cases": len(cases), "containers": sorted(files), "not_encodable_here": missing,
            "statuses": {name: dict(counter) for name, counter in statuses.items()}, "server_errors": server_errors}


def fuzz_schema(url: str, headers: dict[str, str], *, max_examples: int = 200, seed: int = 1,
                max_time: float | None = None, workers: int = 1) -> dict:
    """schemathesis over ``/docs.json``: every operation, check ``not_a_server_error``; returncode 0 means no 5xx
    and a valid schema."""
    st = Path(sys.executable).parent / "st"
    command = [str(st), "run", f"{url}/docs.json", "--checks", "not_a_server_error", "--max-examples", str(max_examples),
               "--seed", str(seed), "--generation-database", "none", "--no-color", "--workers", str(workers),
               "--request-timeout", "120", "--suppress-health-check", "all", "--output-truncate", "true"]
    for name, value in headers.items():
        command += ["--header", f"{name}: {value}"]
    if max_time:
        command += ["--max-time", str(int(max_time))]
    # Headers (the API key) go on the command line of a local child only; schemathesis masks Authorization itself.
    with tempfile.TemporaryDirectory(prefix="ptbr-schemathesis-") as folder:  # it writes a cache where it runs
        junit = Path(folder) / "junit.xml"
        command += ["--report", "junit", "--report-junit-path", str(junit)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=(max_time or 600) + 300,
                                env={**os.environ, "NO_COLOR": "1"}, cwd=folder)
        tested = tested_operations(junit)
    output = result.stdout + result.stderr
    cases = re.search(r"(\d+) generated, (\d+) passed", output)
    failing = re.findall(r"^_+ (\w+ \S+) _+$", output, flags=re.MULTILINE)
    return {"returncode": result.returncode, "generated": int(cases.group(1)) if cases else None,
            "passed": int(cases.group(2)) if cases else None, "failing_operations": failing,
            "operations": tested, "output_tail": output[-3000:] if result.returncode else ""}


def tested_operations(junit: Path) -> list[str]:
    """The operations schemathesis ran ("GET /synthesize_long/status", …), from its JUnit report."""
    import xml.etree.ElementTree as ElementTree

    if not junit.is_file():
        return []
    return sorted({case.get("name", "") for case in ElementTree.parse(junit).iter("testcase")})


def main(argv: list[str] | None = None) -> int:
    from loadtest import LocalServer, require_loopback

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running service (loopback only); default: start a demo-model server")
    parser.add_argument("--api-key", default=os.environ.get("PTBR_API_KEY"), help="default: $PTBR_API_KEY")
    parser.add_argument("--max-examples", type=int, default=200, help="schemathesis examples per operation")
    parser.add_argument("--max-time", type=float, default=900.0, help="schemathesis time budget (s)")
    parser.add_argument("--corrupted", type=int, default=8, help="corrupted copies per container")
    parser.add_argument("--random-blobs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    server = workdir = None
    if args.url:
        require_loopback(args.url)
        url = args.url.rstrip("/")
    else:
        workdir = Path(tempfile.mkdtemp(prefix="ptbr-fuzz-"))
        server = LocalServer(workdir).start()
        url = server.url
    try:
        report = {
            "schema": fuzz_schema(url, headers, max_examples=args.max_examples, seed=args.seed + 1,
                                  max_time=args.max_time),
            "reference_audio": fuzz_reference_audio(url, headers, seed=args.seed, corrupted=args.corrupted,
                                                    random_blobs=args.random_blobs),
        }
        if server is not None:
            log = (workdir / "serve.log").read_text(errors="replace")
            report["server_log_500s"] = log.count("status=500")
    finally:
        if server is not None:
            server.stop()
            shutil.rmtree(workdir, ignore_errors=True)
    report["zero_5xx"] = report["schema"]["returncode"] == 0 and not report["reference_audio"]["server_errors"]
    print(json.dumps(report, indent=2))
    return 0 if report["zero_5xx"] else 1


if __name__ == "__main__":
    sys.exit(main())
