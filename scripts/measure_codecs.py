"""Measure the output encoders: encode time per second of audio and bytes per second, whole file and streamed.

Prints one JSON object. Usage: python scripts/measure_codecs.py [--seconds 30] [--repeats 5] [--out-rate 44100]
The signal is the benchmark's voice-like test signal (ptbr_model.bench_workloads.voice_like) at 24 kHz; streams are
fed in chunks the way the service sends them (a short first chunk, then ~4 s chunks). Times are medians.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ptbr_model.audio_codec import MEDIA_TYPES, SAMPLE_RATE, encode_audio  # noqa: E402
from ptbr_model.audio_stream import STREAM_FORMATS, StreamEncoder  # noqa: E402
from ptbr_model.bench_workloads import voice_like  # noqa: E402


def median_seconds(run, repeats: int) -> tuple[float, bytes]:
    times, data = [], b""
    for _ in range(repeats):
        started = time.perf_counter()
        data = run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out-rate", type=int, default=None)
    args = parser.parse_args()

    wave = voice_like(args.seconds, SAMPLE_RATE, amplitude=0.3)
    first = int(1.5 * SAMPLE_RATE)
    chunks = [wave[:first]] + [wave[i : i + 4 * SAMPLE_RATE] for i in range(first, len(wave), 4 * SAMPLE_RATE)]

    def streamed(fmt: str) -> bytes:
        encoder = StreamEncoder(fmt, SAMPLE_RATE, args.out_rate)
        return encoder.start() + b"".join(encoder.encode(chunk) for chunk in chunks) + encoder.finish()

    results = {}
    for fmt in MEDIA_TYPES:
        whole_s, whole = median_seconds(lambda fmt=fmt: encode_audio(wave, SAMPLE_RATE, fmt, out_rate=args.out_rate),
                                        args.repeats)
        entry = {
            "whole_ms_per_audio_s": round(1000 * whole_s / args.seconds, 3),
            "whole_bytes_per_s": round(len(whole) / args.seconds),
        }
        if fmt in STREAM_FORMATS:
            stream_s, stream_bytes = median_seconds(lambda fmt=fmt: streamed(fmt), args.repeats)
            entry["stream_ms_per_audio_s"] = round(1000 * stream_s / args.seconds, 3)
            entry["stream_bytes_per_s"] = round(len(stream_bytes) / args.seconds)
        results[fmt] = entry
    print(json.dumps({
        "audio_seconds": args.seconds, "input_rate": SAMPLE_RATE, "out_rate": args.out_rate, "repeats": args.repeats,
        "chunks": len(chunks), "machine": platform.processor() or platform.machine(), "formats": results,
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
