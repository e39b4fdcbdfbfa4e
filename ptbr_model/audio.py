"""Reference audio for voice cloning: check it, then prepare it exactly as upstream F5-TTS does, in memory.

Upstream (f5_tts/infer/utils_infer.py, f5-tts 1.1.22) prepares a reference in two places:

1. ``preprocess_ref_audio_text`` (pydub, on the file's own rate and channels): cut a long reference at a pause so
   it stays under 12 s, trim silent edges, append 50 ms of silence, write a temporary wav;
2. ``infer_batch_process``: average the channels to mono, raise the loudness to ``target_rms`` if it is below it,
   resample to 24 kHz.

``prepare_reference`` does step 1 and the mono/resample part of step 2. The loudness step is ``normalize_loudness``,
left to the engine because the engine must also undo it on the generated audio (upstream multiplies the output by
``rms / target_rms`` when ``rms < target_rms``). The 12 s limit is the ``max_seconds`` argument.

pydub's silence functions are ported to numpy below: same thresholds, millisecond grid and truncated 16-bit RMS,
so the cut points match pydub's sample for sample (tests/test_audio.py checks it against pydub). pydub slices one
window per 10 ms step in Python (a second per 2 minutes of stereo audio) and relies on audioop, removed in Python
3.13. The cuts are applied to the original float samples. f5-tts itself is imported only by ``ptbr_model.f5``.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import numpy as np

from ptbr_model.audio_codec import (
    MEDIA_TYPES,
    SAMPLE_RATE,
    AudioError,
    decode_audio,
    encode_audio,
    resample,
)

__all__ = [
    "MEDIA_TYPES",
    "SAMPLE_RATE",
    "AudioError",
    "decode_audio",
    "encode_audio",
    "normalize_loudness",
    "prepare_reference",
    "split_on_silence",
    "validate_reference",
]

MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 384000
SILENT_PEAK = 1e-4  # about -80 dBFS: below this the "reference" is digital silence or a dead microphone
SILENT_RMS = 1e-5  # about -100 dBFS


class _PauseSearch(NamedTuple):
    min_silence_ms: int
    silence_thresh_dbfs: float


# Upstream's constants from preprocess_ref_audio_text and remove_silence_edges.
_LONG_PAUSES = _PauseSearch(min_silence_ms=1000, silence_thresh_dbfs=-50)
_SHORT_PAUSES = _PauseSearch(min_silence_ms=100, silence_thresh_dbfs=-40)
_KEEP_SILENCE_MS = 1000
_SEEK_STEP_MS = 10
_EDGE_SILENCE_DBFS = -42
_EDGE_CHUNK_MS = 10
_TAIL_SILENCE_SECONDS = 0.05
_PCM16_FULL_SCALE = 32768.0  # pydub's max_possible_amplitude for 16-bit audio


# --------------------------------------------------------------------------------------------------- validation


def validate_reference(
    samples: np.ndarray, sample_rate: int, *, min_seconds: float, field: str = "reference_audio"
) -> None:
    """Raise AudioError if samples (frames[, channels]) cannot serve as a voice reference."""
    samples = np.asarray(samples)
    if sample_rate < MIN_SAMPLE_RATE:
        raise AudioError(field, f"sample rate {sample_rate} Hz is below the {MIN_SAMPLE_RATE} Hz minimum")
    if sample_rate > MAX_SAMPLE_RATE:
        raise AudioError(field, f"sample rate {sample_rate} Hz is above the {MAX_SAMPLE_RATE} Hz maximum")
    if samples.size == 0:
        raise AudioError(field, f"the audio is empty; at least {min_seconds:.1f} s is needed")
    if not np.isfinite(samples).all():
        raise AudioError(field, "the audio contains NaN or infinite samples")
    duration = samples.shape[0] / sample_rate
    if duration < min_seconds:
        shown = math.floor(duration * 10) / 10  # rounding down never shows a too-short clip as long enough
        raise AudioError(field, f"{shown:.1f} s is shorter than the {min_seconds:.1f} s minimum")
    peak = float(np.max(np.abs(samples)))
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    if peak < SILENT_PEAK or rms < SILENT_RMS:
        raise AudioError(
            field,
            f"the audio is silent (peak {peak:.1e}, RMS {rms:.1e}; "
            f"a reference needs a peak of at least {SILENT_PEAK:.0e} and an RMS of at least {SILENT_RMS:.0e})",
        )


# -------------------------------------------------------------------------------------------------- preparation


def prepare_reference(
    samples: np.ndarray, sample_rate: int, *, max_seconds: float, field: str = "reference_audio"
) -> np.ndarray:
    """Turn decoded reference samples into the model's conditioning audio: 1-D float32 mono at SAMPLE_RATE.

    Same order as upstream: clip at a pause to at most max_seconds, trim silent edges, append 50 ms of silence
    (all on the original rate and channels), then average to mono and resample. Loudness is NOT normalised here:
    call normalize_loudness on the result, as upstream's infer_batch_process does.

    Raises AudioError when nothing is louder than upstream's -42 dBFS edge threshold: upstream would condition the
    model on 50 ms of silence (and divide by a zero RMS). The result can be much shorter than the input; check its
    length against the minimum again if that matters.
    """
    frames = _as_frames(samples)
    clipped = _clip_at_pause(frames, sample_rate, max_ms=round(max_seconds * 1000))
    trimmed = _trim_silent_edges(clipped, sample_rate)
    if len(trimmed) == 0:
        raise AudioError(
            field, f"nothing in the audio is louder than {_EDGE_SILENCE_DBFS} dBFS, the level trimmed as silence"
        )
    tail = np.zeros((int(sample_rate * _TAIL_SILENCE_SECONDS), frames.shape[1]), dtype=np.float32)
    mono = np.concatenate([trimmed, tail]).mean(axis=1, dtype=np.float32)
    return resample(mono, sample_rate, SAMPLE_RATE)


def normalize_loudness(wave: np.ndarray, target_rms: float) -> tuple[np.ndarray, float]:
    """Raise a quiet reference to target_rms; return (wave, its original RMS).

    Mirrors upstream: only references quieter than target_rms are scaled, never louder ones. When the original
    RMS is below target_rms the engine must scale the generated audio by original_rms / target_rms.
    """
    wave = np.asarray(wave, dtype=np.float32)
    rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64)))) if wave.size else 0.0
    if 0.0 < rms < target_rms:
        wave = wave * np.float32(target_rms / rms)
    return wave, rms


def _as_frames(samples: np.ndarray) -> np.ndarray:
    frames = np.asarray(samples, dtype=np.float32)
    if frames.ndim == 1:
        return frames[:, np.newaxis]
    if frames.ndim != 2:
        raise ValueError(f"expected samples shaped (frames,) or (frames, channels), got {frames.shape}")
    return frames


def _clip_at_pause(frames: np.ndarray, sample_rate: int, max_ms: int) -> np.ndarray:
    # Upstream: keep whole phrases split at 1 s pauses; failing that at 0.1 s pauses; failing that a hard cut.
    loudness = _Loudness(frames, sample_rate)
    clipped = _join_until_full(frames, sample_rate, _phrases_ms(loudness, _LONG_PAUSES), max_ms)
    if _length_ms(len(clipped), sample_rate) > max_ms:
        clipped = _join_until_full(frames, sample_rate, _phrases_ms(loudness, _SHORT_PAUSES), max_ms)
    if _length_ms(len(clipped), sample_rate) > max_ms:
        clipped = _slice_ms(clipped, sample_rate, 0, max_ms)
    return clipped


def _join_until_full(
    frames: np.ndarray, sample_rate: int, phrases_ms: list[tuple[int, int]], max_ms: int
) -> np.ndarray:
    # Upstream's loop: stop before a phrase that would pass max_ms, once at least half of max_ms is kept.
    pieces: list[np.ndarray] = []
    kept_frames = 0
    for start_ms, end_ms in phrases_ms:
        piece = _slice_ms(frames, sample_rate, start_ms, end_ms)
        if (
            _length_ms(kept_frames, sample_rate) > max_ms / 2
            and _length_ms(kept_frames + len(piece), sample_rate) > max_ms
        ):
            break
        pieces.append(piece)
        kept_frames += len(piece)
    return np.concatenate(pieces) if pieces else frames[:0]


def _trim_silent_edges(frames: np.ndarray, sample_rate: int) -> np.ndarray:
    # Upstream's remove_silence_edges: leading silence, then leading silence of the reversed audio.
    start_ms = _leading_silence_ms(frames, sample_rate)
    frames = _slice_ms(frames, sample_rate, start_ms, _length_ms(len(frames), sample_rate))
    end_ms = _leading_silence_ms(frames[::-1], sample_rate)
    if end_ms > 0:
        frames = _slice_ms(frames, sample_rate, 0, _length_ms(len(frames), sample_rate) - end_ms)
    return frames


# ------------------------------------------------------------------ pydub.silence, ported to numpy (pydub 0.25.1)


def _length_ms(frame_count: int, sample_rate: int) -> int:
    # AudioSegment.__len__
    return round(1000 * (frame_count / sample_rate))


def _frame_index(ms: np.ndarray | int, sample_rate: int) -> np.ndarray:
    # AudioSegment._parse_position: int(ms * rate / 1000), truncating
    return (np.asarray(ms) * (sample_rate / 1000.0)).astype(np.int64)


def _slice_ms(frames: np.ndarray, sample_rate: int, start_ms: int, end_ms: int) -> np.ndarray:
    # AudioSegment[start:end]: positions clamp to the length in ms; frames missing past the end become silence.
    length = _length_ms(len(frames), sample_rate)
    start, end = (int(_frame_index(min(ms, length), sample_rate)) for ms in (start_ms, end_ms))
    piece = frames[start:end]
    missing = (end - start) - len(piece)
    if missing > 0:
        piece = np.concatenate([piece, np.zeros((missing, frames.shape[1]), dtype=frames.dtype)])
    return piece


class _Loudness:
    """RMS of any millisecond window, as audioop.rms computes it on 16-bit samples, from a running energy sum."""

    def __init__(self, frames: np.ndarray, sample_rate: int) -> None:
        # Integer energies keep window sums exact (float64 would round past 2**53 on long, loud uploads).
        cumulative = np.zeros(len(frames) + 1, dtype=np.int64)
        for channel in frames.T:
            pcm = np.clip(np.round(channel * _PCM16_FULL_SCALE), -32768, 32767).astype(np.int64)
            cumulative[1:] += pcm * pcm
        self._cumulative = np.cumsum(cumulative, out=cumulative)
        self._channels = frames.shape[1]
        self.sample_rate = sample_rate
        self.length_ms = _length_ms(len(frames), sample_rate)

    def rms(self, start_ms: np.ndarray, end_ms: np.ndarray) -> np.ndarray:
        start = _frame_index(np.minimum(start_ms, self.length_ms), self.sample_rate)
        end = _frame_index(np.minimum(end_ms, self.length_ms), self.sample_rate)
        last = len(self._cumulative) - 1  # padded frames past the end add no energy but still count
        energy = self._cumulative[np.minimum(end, last)] - self._cumulative[np.minimum(start, last)]
        count = (end - start) * self._channels
        mean_square = np.divide(energy, count, out=np.zeros(len(count)), where=count > 0)
        return np.floor(np.sqrt(mean_square))  # audioop.rms truncates to an integer

    def dbfs(self, start_ms: np.ndarray, end_ms: np.ndarray) -> np.ndarray:
        rms = self.rms(start_ms, end_ms)
        with np.errstate(divide="ignore"):
            return 20 * np.log10(rms / _PCM16_FULL_SCALE)  # 0 -> -inf, as AudioSegment.dBFS


def _silent_ranges_ms(loudness: _Loudness, search: _PauseSearch) -> list[list[int]]:
    # silence.detect_silence(seek_step=10)
    min_ms = search.min_silence_ms
    if loudness.length_ms < min_ms:
        return []
    last_start = loudness.length_ms - min_ms
    starts = np.arange(0, last_start + 1, _SEEK_STEP_MS)
    if last_start % _SEEK_STEP_MS:
        starts = np.append(starts, last_start)
    threshold = 10 ** (search.silence_thresh_dbfs / 20) * _PCM16_FULL_SCALE
    silent_starts = starts[loudness.rms(starts, starts + min_ms) <= threshold].tolist()
    if not silent_starts:
        return []
    ranges: list[list[int]] = []
    range_start = previous = silent_starts[0]
    for start in silent_starts[1:]:
        continuous = start == previous + _SEEK_STEP_MS
        has_gap = start > previous + min_ms  # overlapping windows belong to one silence
        if not continuous and has_gap:
            ranges.append([range_start, previous + min_ms])
            range_start = start
        previous = start
    ranges.append([range_start, previous + min_ms])
    return ranges


def _voiced_ranges_ms(loudness: _Loudness, search: _PauseSearch) -> list[list[int]]:
    # silence.detect_nonsilent
    length = loudness.length_ms
    silent = _silent_ranges_ms(loudness, search)
    if not silent:
        return [[0, length]]
    if silent[0] == [0, length]:
        return []
    voiced: list[list[int]] = []
    previous_end = 0
    for start, end in silent:
        voiced.append([previous_end, start])
        previous_end = end
    if silent[-1][1] != length:
        voiced.append([previous_end, length])
    if voiced[0] == [0, 0]:
        voiced.pop(0)
    return voiced


def split_on_silence(
    samples: np.ndarray,
    sample_rate: int,
    *,
    min_silence_ms: int,
    silence_thresh_dbfs: float,
    keep_silence_ms: int,
) -> list[np.ndarray]:
    """pydub.silence.split_on_silence(seek_step=10) on float samples: the voiced phrases, each with up to
    keep_silence_ms of the silence around it (a shared pause split in the middle). Pieces keep the input's shape
    ((frames,) or (frames, channels)); no voiced phrase gives an empty list, as pydub does."""
    frames = _as_frames(samples)
    loudness = _Loudness(frames, sample_rate)
    search = _PauseSearch(min_silence_ms=min_silence_ms, silence_thresh_dbfs=silence_thresh_dbfs)
    pieces = [
        _slice_ms(frames, sample_rate, start, end) for start, end in _phrases_ms(loudness, search, keep_silence_ms)
    ]
    return [piece[:, 0] for piece in pieces] if np.ndim(samples) == 1 else pieces


def _phrases_ms(
    loudness: _Loudness, search: _PauseSearch, keep_silence_ms: int = _KEEP_SILENCE_MS
) -> list[tuple[int, int]]:
    # silence.split_on_silence(keep_silence=...), returning positions instead of audio
    ranges = [[start - keep_silence_ms, end + keep_silence_ms] for start, end in _voiced_ranges_ms(loudness, search)]
    for left, right in itertools.pairwise(ranges):
        if right[0] < left[1]:  # kept silences overlap: split the pause between the two phrases
            left[1] = (left[1] + right[0]) // 2
            right[0] = left[1]
    return [(max(start, 0), min(end, loudness.length_ms)) for start, end in ranges]


def _leading_silence_ms(frames: np.ndarray, sample_rate: int) -> int:
    # silence.detect_leading_silence(silence_threshold=-42, chunk_size=10)
    loudness = _Loudness(frames, sample_rate)
    starts = np.arange(0, loudness.length_ms, _EDGE_CHUNK_MS)
    loud = np.flatnonzero(~(loudness.dbfs(starts, starts + _EDGE_CHUNK_MS) < _EDGE_SILENCE_DBFS))
    trim_ms = int(starts[loud[0]]) if loud.size else len(starts) * _EDGE_CHUNK_MS
    return min(trim_ms, loudness.length_ms)
