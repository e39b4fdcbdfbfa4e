"""Decode encoded audio back with independent decoders: the FFmpeg command line, PyAV (FFmpeg's libraries in its
wheel, another FFmpeg version) and soundfile (libsndfile). Shared by the codec and stream tests."""

from __future__ import annotations

import io
import json
import subprocess

import av
import numpy as np
import soundfile as sf

# What soundfile (libsndfile 1.2) can read of our formats: not ADTS AAC, not raw pcm.
SOUNDFILE_READS = frozenset({"wav", "flac", "mp3", "opus"})


def ffmpeg_decode(data: bytes) -> tuple[int, np.ndarray]:
    """(sample rate, float32 mono samples) as the ffmpeg/ffprobe command-line tools decode data."""
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries", "stream=sample_rate",
         "-of", "json", "pipe:0"],
        input=data, capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    rate = int(json.loads(probe.stdout)["streams"][0]["sample_rate"])
    decoded = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", "pipe:0", "-map", "0:a:0", "-f", "f32le", "-ac", "1", "pipe:1"],
        input=data, capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    return rate, np.frombuffer(decoded.stdout, dtype="<f4")


def pyav_decode(data: bytes) -> tuple[int, np.ndarray]:
    """(sample rate, float32 mono samples) as PyAV decodes data."""
    frames, rate = [], 0
    to_float = av.AudioResampler(format="flt", layout="mono")  # format conversion only: the rate is kept
    with av.open(io.BytesIO(data)) as container:
        for frame in container.decode(audio=0):
            rate = frame.sample_rate
            frames += [converted.to_ndarray().reshape(-1) for converted in to_float.resample(frame)]
    frames += [converted.to_ndarray().reshape(-1) for converted in to_float.resample(None)]
    return rate, np.concatenate(frames).astype(np.float32) if frames else np.zeros(0, np.float32)


def soundfile_decode(data: bytes) -> tuple[int, np.ndarray]:
    samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return rate, samples[:, 0]


def dominant_hz(mono: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono))))
    return float(np.argmax(spectrum) * rate / len(mono))


def sine(seconds: float, rate: int = 24000, hz: float = 440.0, level: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (level * np.sin(2 * np.pi * hz * t)).astype(np.float32)
