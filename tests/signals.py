"""Synthetic voice-like signals for tests (no real recordings exist here)."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf


def voice_like(seconds: float = 3.0, sample_rate: int = 24000, seed: int = 7, amplitude: float = 0.05) -> np.ndarray:
    """Harmonics of a wandering pitch with syllable-rate amplitude and short pauses: enough structure for the
    reference pipeline (loudness, pause detection) to behave as with speech."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    pitch = 140 + 25 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    wave = sum(np.sin(k * phase) / k for k in range(1, 6))
    syllables = np.clip(np.sin(2 * np.pi * 4.0 * t), 0, None)
    wave = wave * syllables + 0.01 * rng.standard_normal(len(t))
    return (amplitude * wave / np.max(np.abs(wave))).astype(np.float32)


def wav_bytes(samples: np.ndarray, sample_rate: int = 24000, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, sample_rate, subtype=subtype, format=fmt)
    return buffer.getvalue()
