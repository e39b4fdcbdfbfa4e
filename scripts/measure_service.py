#!/usr/bin/env python3
"""Measure a running service over HTTP and print JSON: what a saved voice saves against uploading the same reference
every time, and the time to the first audio byte of a streamed paragraph against the whole answer.

    .venv/bin/python scripts/measure_service.py --url http://127.0.0.1:3000 [--runs 7] [--nfe 16]

Loopback only by default; it creates one voice (deleted at the end) and sends a bounded number of requests.
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
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ptbr_model.bench_workloads import voice_like  # noqa: E402

REFERENCE_TEXT = "Esta é a voz de referência, gravada para medir o serviço com calma."
SENTENCE = "Olá! Hoje vamos medir quanto tempo leva para sintetizar uma frase."
PARAGRAPH = (
    "A cidade acordou devagar naquela manhã de domingo. As padarias abriram as portas, e o cheiro de pão quente "
    "tomou conta das ruas. Crianças corriam pela praça enquanto os mais velhos liam o jornal nos bancos. No fim da "
    "tarde, uma chuva fina caiu sobre os telhados, e todos voltaram para casa com a sensação de que o dia tinha "
    "passado rápido demais. À noite, as luzes da avenida se acenderam uma a uma, e o silêncio voltou."
)


def median_seconds(run, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:3000")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--nfe", type=int, default=16)
    parser.add_argument("--reference-seconds", type=float, default=6.0)
    args = parser.parse_args()
    if not args.url.startswith(("http://127.", "http://localhost", "http://[::1]")):
        parser.error("--url must be a loopback address")

    buffer = io.BytesIO()
    sf.write(buffer, voice_like(args.reference_seconds, sample_rate=44100), 44100, format="WAV", subtype="PCM_16")
    reference = buffer.getvalue()
    client = httpx.Client(base_url=args.url, timeout=600)
    voice = client.post("/create_voice", data={"name": f"medida-{time.time_ns()}", "reference_text": REFERENCE_TEXT},
                        files={"reference_audio": ("ref.wav", reference)})
    voice.raise_for_status()
    voice_id = voice.json()["id"]
    common = {"nfe_step": str(args.nfe), "seed": "1"}
    try:
        def by_upload(text: str) -> None:
            client.post("/synthesize", data={"text": text, "reference_text": REFERENCE_TEXT, **common},
                        files={"reference_audio": ("ref.wav", reference)}).raise_for_status()

        def by_voice(text: str) -> None:
            client.post("/synthesize", data={"text": text, "voice": voice_id, **common}).raise_for_status()

        by_voice(SENTENCE)  # warm the voice cache and the model
        upload_s = median_seconds(lambda: by_upload(SENTENCE), args.runs)
        voice_s = median_seconds(lambda: by_voice(SENTENCE), args.runs)

        first, totals = [], []
        for _ in range(max(3, args.runs // 2)):
            started = time.perf_counter()
            first_at = None
            with client.stream("POST", "/synthesize_stream",
                               data={"text": PARAGRAPH, "voice": voice_id, "response_format": "pcm", **common}) as response:
                response.raise_for_status()
                chunks = int(response.headers.get("x-chunks", "0"))
                for piece in response.iter_bytes():
                    if piece and first_at is None:
                        first_at = time.perf_counter() - started
            first.append(first_at)
            totals.append(time.perf_counter() - started)
        print(json.dumps({
            "url": args.url, "nfe_step": args.nfe, "runs": args.runs, "reference_seconds": args.reference_seconds,
            "sentence_by_upload_s": round(upload_s, 4), "sentence_by_voice_s": round(voice_s, 4),
            "voice_saves_s": round(upload_s - voice_s, 4),
            "voice_saves_percent": round(100 * (upload_s - voice_s) / upload_s, 1),
            "paragraph_chunks": chunks, "paragraph_first_audio_s": round(statistics.median(first), 4),
            "paragraph_total_s": round(statistics.median(totals), 4),
        }, indent=2))
    finally:
        client.post("/delete_voice", json={"voice": voice_id})


if __name__ == "__main__":
    main()
