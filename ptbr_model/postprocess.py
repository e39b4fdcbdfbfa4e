"""Optional post-processing of generated speech, in memory: shorten long pauses, normalise loudness (LUFS).

``remove_silences`` is upstream's ``remove_silence_for_generated_wav`` (f5_tts/infer/utils_infer.py, f5-tts
1.1.22), which writes the wav, reloads it with pydub and keeps ``split_on_silence(min_silence_len=1000,
silence_thresh=-50, keep_silence=500, seek_step=10)``. Here the same split runs on the float samples through the
numpy port in ``ptbr_model.audio`` (same thresholds and millisecond grid, so the same cut points).

``normalize_loudness_lufs`` measures integrated loudness (ITU-R BS.1770-4, gated, with pyloudnorm), applies the
gain that reaches the target, and lowers that gain if needed so the sample peak stays at or under ``peak_dbfs``
(a plain gain, no compressor or limiter: speech keeps its dynamics and nothing clips). ``StreamLoudness`` does the
same for a stream, chunk by chunk.
"""

from __future__ import annotations

import math

import numpy as np
import pyloudnorm

from ptbr_model.audio import split_on_silence

# Upstream's remove_silence_for_generated_wav: silences of 1 s or more at -50 dBFS, 500 ms kept on each side.
DEFAULT_MAX_PAUSE_S = 1.0
DEFAULT_SILENCE_THRESHOLD_DBFS = -50.0
DEFAULT_TARGET_LUFS = -16.0  # speech for streaming and podcasts (AES TD1004, Apple, Spotify: -16 to -14)
DEFAULT_PEAK_DBFS = -1.0  # headroom for lossy codecs, whose decoded peaks overshoot the sample peak a little
ABSOLUTE_GATE_LUFS = -70.0  # BS.1770's absolute gate: anything quieter counts as silence and gets no gain


def remove_silences(
    wave: np.ndarray,
    sample_rate: int,
    *,
    max_pause_s: float = DEFAULT_MAX_PAUSE_S,
    threshold_dbfs: float = DEFAULT_SILENCE_THRESHOLD_DBFS,
) -> np.ndarray:
    """Shorten every pause longer than max_pause_s to max_pause_s, and silent edges longer than that to half of it.

    A pause is audio whose RMS over max_pause_s windows stays at or under threshold_dbfs. With the defaults this
    is exactly upstream's option (pauses found at 1 s / -50 dBFS, 0.5 s kept on each side of every phrase).
    Divergences from upstream: the samples stay float (upstream round-trips through a 16-bit wav file), and audio
    with no phrase at all is returned unchanged (upstream writes an empty file).
    """
    if not max_pause_s > 0:
        raise ValueError(f"max_pause_s must be positive, got {max_pause_s!r}")
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"expected 1-D mono samples, got shape {wave.shape}")
    pause_ms = round(max_pause_s * 1000)
    phrases = split_on_silence(
        wave,
        sample_rate,
        min_silence_ms=pause_ms,
        silence_thresh_dbfs=threshold_dbfs,
        keep_silence_ms=pause_ms // 2,
    )
    if not phrases:
        return wave
    return np.concatenate(phrases)


def integrated_loudness(wave: np.ndarray, sample_rate: int) -> float | None:
    """Integrated loudness in LUFS (BS.1770-4 via pyloudnorm), or None for silence (under the -70 LUFS gate).

    pyloudnorm needs at least one 400 ms gating block: a shorter clip is measured repeated end to end up to one
    block, which gives the loudness the clip would have if it were held (its K-weighted mean square).
    """
    wave = np.asarray(wave, dtype=np.float64)
    if wave.size == 0 or not np.any(wave):
        return None
    meter = pyloudnorm.Meter(sample_rate)
    block = math.ceil(meter.block_size * sample_rate)
    if wave.size < block:
        wave = np.tile(wave, math.ceil(block / wave.size))
    loudness = float(meter.integrated_loudness(wave))
    if not math.isfinite(loudness) or loudness < ABSOLUTE_GATE_LUFS:
        return None
    return loudness


def normalize_loudness_lufs(
    wave: np.ndarray,
    sample_rate: int,
    *,
    target_lufs: float = DEFAULT_TARGET_LUFS,
    peak_dbfs: float = DEFAULT_PEAK_DBFS,
) -> np.ndarray:
    """Scale 1-D audio to target_lufs integrated loudness, with the gain lowered as needed so that the sample peak
    is at most peak_dbfs. Silence (and anything under the -70 LUFS gate) is returned unchanged."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"expected 1-D mono samples, got shape {wave.shape}")
    loudness = integrated_loudness(wave, sample_rate)
    if loudness is None:
        return wave
    gain = _peak_limited(_db_to_gain(target_lufs - loudness), wave, peak_dbfs)
    return (wave * np.float32(gain)).astype(np.float32)


class StreamLoudness:
    """Loudness normalisation for a stream, whose whole is never known in advance.

    The gain is set once, from the loudness of the first chunk that is not silent (measured as in
    ``normalize_loudness_lufs``), and kept for the rest of the stream, so the level does not pump from chunk to
    chunk. A chunk whose peak would pass ``peak_dbfs`` at that gain lowers the gain, for itself and every later
    chunk: the gain only ever goes down, so nothing clips and the level never jumps back up. Chunks before the
    first measurable one (silence) pass unchanged.
    """

    def __init__(
        self,
        target_lufs: float = DEFAULT_TARGET_LUFS,
        peak_dbfs: float = DEFAULT_PEAK_DBFS,
        sample_rate: int = 24000,
    ) -> None:
        self.target_lufs = target_lufs
        self.peak_dbfs = peak_dbfs
        self.sample_rate = sample_rate
        self.gain: float | None = None  # None until a chunk could be measured

    def process(self, chunk: np.ndarray) -> np.ndarray:
        chunk = np.asarray(chunk, dtype=np.float32)
        if self.gain is None:
            loudness = integrated_loudness(chunk, self.sample_rate)
            if loudness is None:
                return chunk
            self.gain = _db_to_gain(self.target_lufs - loudness)
        self.gain = _peak_limited(self.gain, chunk, self.peak_dbfs)
        return (chunk * np.float32(self.gain)).astype(np.float32)


def _db_to_gain(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def _peak_limited(gain: float, wave: np.ndarray, peak_dbfs: float) -> float:
    peak = float(np.max(np.abs(wave), initial=0.0))
    limit = _db_to_gain(peak_dbfs)
    if peak * gain > limit:
        return limit / peak * (1.0 - 1e-6)  # a hair under, so float32 rounding cannot take the peak past the limit
    return gain
