"""Synthetic voice-like signals for tests (no real recordings exist here)."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from ptbr_model.bench_workloads import voice_like  # noqa: F401  (shared with the benchmark)


def wav_bytes(samples: np.ndarray, sample_rate: int = 24000, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, sample_rate, subtype=subtype, format=fmt)
    return buffer.getvalue()
