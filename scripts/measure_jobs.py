"""Measure jobs against a running service: sentence latency idle vs while a long job runs, and job throughput.

Prints one JSON object. Usage: python scripts/measure_jobs.py --url http://127.0.0.1:3000 [--chunks 40]
[--sentences 8] [--nfe-step 16] [--reference ref.wav --reference-text '…']
Without --reference a 3 s voice-like test signal is used (ptbr_model.bench_workloads.voice_like). The long job is
made of one short paragraph per chunk, so --chunks is exactly its number of chunks. Latencies are medians and
maxima of --sentences requests of one short sentence each, sent one after another.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ptbr_model.bench_workloads import voice_like  # noqa: E402

SENTENCE = "Olá, tudo bem com você?"
DEFAULT_REFERENCE_TEXT = "Esta é a voz de referência para a medição."


def sentence_latencies(http: httpx.Client, voice: str, count: int, nfe_step: int,
                       while_running: str | None = None) -> list[float]:
    latencies = []
    for _ in range(count):
        if while_running is not None:
            status = http.get("/synthesize_long/status", params={"task_id": while_running}).json()
            if status["status"] != "in_progress":
                break
        started = time.perf_counter()
        response = http.post("/synthesize", data={"text": SENTENCE, "voice": voice, "nfe_step": str(nfe_step)})
        response.raise_for_status()
        latencies.append(time.perf_counter() - started)
    return latencies


def summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {"n": len(values), "median_s": round(statistics.median(values), 4), "max_s": round(max(values), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:3000")
    parser.add_argument("--chunks", type=int, default=40)
    parser.add_argument("--sentences", type=int, default=8)
    parser.add_argument("--nfe-step", type=int, default=16)
    parser.add_argument("--reference", type=Path)
    parser.add_argument("--reference-text", default=DEFAULT_REFERENCE_TEXT)
    args = parser.parse_args()

    if args.reference is not None:
        reference = args.reference.read_bytes()
    else:
        import soundfile as sf

        buffer = io.BytesIO()
        sf.write(buffer, voice_like(3.0), 24000, format="WAV")
        reference = buffer.getvalue()
    with httpx.Client(base_url=args.url, timeout=600) as http:
        name = f"measure-jobs-{int(time.time())}"
        voice = http.post("/create_voice", data={"name": name, "reference_text": args.reference_text},
                          files={"reference_audio": ("ref.wav", reference)})
        voice.raise_for_status()
        voice_id = voice.json()["id"]
        try:
            idle = sentence_latencies(http, voice_id, args.sentences, args.nfe_step)
            text = "\n\n".join(f"Este é o parágrafo número {n}, que é curto." for n in range(1, args.chunks + 1))
            submitted = time.perf_counter()
            job = http.post("/synthesize_long/submit", data={"text": text, "voice": voice_id,
                                                              "nfe_step": str(args.nfe_step)})
            job.raise_for_status()
            task_id = job.json()["task_id"]
            while http.get("/synthesize_long/status", params={"task_id": task_id}).json()["progress"]["done"] < 1:
                time.sleep(0.01)
            busy = sentence_latencies(http, voice_id, args.sentences, args.nfe_step, while_running=task_id)
            while (status := http.get("/synthesize_long/status", params={"task_id": task_id}).json())["status"] == \
                    "in_progress":
                time.sleep(0.05)
            job_seconds = time.perf_counter() - submitted
            report = http.get("/synthesize_long/get", params={"task_id": task_id, "part": "report"}).json()
            http.delete("/synthesize_long/delete", params={"task_id": task_id})
        finally:
            http.post("/delete_voice", json={"voice": voice_id})
    print(json.dumps({
        "url": args.url, "nfe_step": args.nfe_step, "job_chunks": args.chunks, "job_status": status["status"],
        "sentence_idle": summary(idle), "sentence_during_job": summary(busy),
        "job_wall_s": round(job_seconds, 3), "job_audio_s": report.get("total_seconds"),
        "job_chunks_per_s": round(args.chunks / job_seconds, 3),
        "job_audio_s_per_wall_s": round(report.get("total_seconds", 0) / job_seconds, 3),
        "note": "the job's wall time includes the sentences served while it ran",
    }, indent=1))


if __name__ == "__main__":
    main()
