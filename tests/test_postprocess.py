"""Post-processing (ptbr_model.postprocess): pause removal checked against upstream's pydub code, loudness checked
with pyloudnorm's meter."""

from __future__ import annotations

import numpy as np
import pytest

from ptbr_model.bench_workloads import voice_like
from ptbr_model.postprocess import (
    StreamLoudness,
    integrated_loudness,
    normalize_loudness_lufs,
    remove_silences,
)

RATE = 24000


def quantized(wave: np.ndarray) -> np.ndarray:
    """Samples on the 16-bit grid, so pydub (which works on integers) sees exactly the same audio."""
    return (np.clip(np.round(wave * 32768), -32768, 32767) / 32768).astype(np.float32)


def pause(seconds: float, seed: int = 0) -> np.ndarray:
    """Near silence: noise at about -70 dBFS, under upstream's -50 dBFS threshold."""
    return (3e-4 * np.random.default_rng(seed).standard_normal(round(seconds * RATE))).astype(np.float32)


def upstream_remove_silence(wave: np.ndarray) -> np.ndarray:
    """f5_tts.infer.utils_infer.remove_silence_for_generated_wav (f5-tts 1.1.22) on 16-bit samples, minus the file."""
    from pydub import AudioSegment, silence

    pcm = np.round(wave * 32768).astype("<i2")
    aseg = AudioSegment(data=pcm.tobytes(), sample_width=2, frame_rate=RATE, channels=1)
    non_silent_segs = silence.split_on_silence(
        aseg, min_silence_len=1000, silence_thresh=-50, keep_silence=500, seek_step=10
    )
    non_silent_wave = AudioSegment.silent(duration=0)
    for non_silent_seg in non_silent_segs:
        non_silent_wave += non_silent_seg
    return np.frombuffer(non_silent_wave.raw_data, "<i2") / 32768


# ------------------------------------------------------------------------------------------------ remove_silences

SILENCE_CASES = {
    "2 s gap": [voice_like(1.5, seed=1), pause(2.0), voice_like(1.5, seed=2)],
    "long edges": [pause(1.7, 3), voice_like(1.2, seed=4), pause(2.3, 5)],
    "two gaps and a short one": [
        voice_like(1.0, seed=6), pause(1.4, 7), voice_like(0.8, seed=8), pause(0.6, 9), voice_like(0.9, seed=10),
        pause(3.1, 11), voice_like(0.5, seed=12),
    ],
}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pydub imports audioop
@pytest.mark.parametrize("parts", SILENCE_CASES.values(), ids=SILENCE_CASES.keys())
def test_remove_silences_matches_upstream_pydub_sample_for_sample(parts):
    wave = quantized(np.concatenate(parts))
    ours = remove_silences(wave, RATE)
    expected = upstream_remove_silence(wave)
    assert len(ours) < len(wave)
    assert len(ours) == len(expected)
    np.testing.assert_array_equal(ours, expected.astype(np.float32))


def longest_pause_s(wave: np.ndarray, threshold_dbfs: float = -50.0) -> float:
    """The longest run of 10 ms frames whose RMS is at or under threshold_dbfs, in seconds."""
    frames = wave[: len(wave) // 240 * 240].reshape(-1, 240).astype(np.float64)
    quiet = np.sqrt(np.mean(frames**2, axis=1)) <= 10 ** (threshold_dbfs / 20)
    longest = run = 0
    for is_quiet in quiet:
        run = run + 1 if is_quiet else 0
        longest = max(longest, run)
    return longest * 0.01


def test_a_2_s_gap_becomes_a_1_s_pause():
    wave = np.concatenate([voice_like(1.5, seed=1), pause(2.0), voice_like(1.5, seed=2)])
    assert longest_pause_s(wave) >= 2.0
    shortened = remove_silences(wave, RATE)
    # pydub finds a pause with 1 s RMS windows, so its edges reach a little into the phrases' quiet ends: the
    # pause left is at most 1 s, a little less measured with 10 ms frames
    assert 0.85 <= longest_pause_s(shortened) <= 1.01
    assert 0.95 * RATE <= len(wave) - len(shortened) <= 1.3 * RATE
    np.testing.assert_array_equal(shortened[:RATE], wave[:RATE])  # the first phrase is untouched


def test_a_gapless_signal_is_left_alone():
    wave = voice_like(3.0)  # syllables with 125 ms troughs, no pause of a second
    np.testing.assert_array_equal(remove_silences(wave, RATE), wave)


def test_max_pause_sets_the_longest_pause_kept():
    wave = np.concatenate([voice_like(1.0, seed=1), pause(1.2), voice_like(1.0, seed=2)])
    assert len(remove_silences(wave, RATE, max_pause_s=1.5)) == len(wave)  # a 1.3 s pause is under 1.5 s: kept
    shortened = remove_silences(wave, RATE, max_pause_s=0.3)
    assert longest_pause_s(wave) > 1.2
    assert 0.2 <= longest_pause_s(shortened) <= 0.31


def test_all_silent_audio_is_returned_unchanged_and_bad_arguments_are_refused():
    silent = pause(2.5)
    np.testing.assert_array_equal(remove_silences(silent, RATE), silent)
    assert remove_silences(np.zeros(0, np.float32), RATE).size == 0
    with pytest.raises(ValueError, match="max_pause_s"):
        remove_silences(silent, RATE, max_pause_s=0)
    with pytest.raises(ValueError, match="1-D mono"):
        remove_silences(np.zeros((10, 2), np.float32), RATE)


# ------------------------------------------------------------------------------------------ loudness (whole file)


@pytest.mark.parametrize("amplitude", [0.003, 0.05, 0.5, 0.99])
@pytest.mark.parametrize("target", [-16.0, -23.0])
def test_normalisation_reaches_the_target_within_half_a_lu(amplitude, target):
    wave = voice_like(3.0, amplitude=amplitude)
    normalized = normalize_loudness_lufs(wave, RATE, target_lufs=target)
    assert normalized.dtype == np.float32 and normalized.shape == wave.shape
    assert integrated_loudness(normalized, RATE) == pytest.approx(target, abs=0.5)
    assert 20 * np.log10(np.max(np.abs(normalized))) <= -1.0


def test_the_peak_limit_wins_over_the_target():
    wave = voice_like(3.0)
    normalized = normalize_loudness_lufs(wave, RATE, target_lufs=-6.0, peak_dbfs=-1.0)
    peak_db = 20 * np.log10(np.max(np.abs(normalized)))
    assert peak_db <= -1.0
    assert peak_db == pytest.approx(-1.0, abs=0.01)  # as loud as the limit allows...
    assert integrated_loudness(normalized, RATE) < -6.0 - 0.5  # ...which is short of the target


def test_silence_gets_no_gain():
    np.testing.assert_array_equal(normalize_loudness_lufs(np.zeros(RATE, np.float32), RATE), np.zeros(RATE))
    hiss = (1e-5 * np.random.default_rng(0).standard_normal(RATE)).astype(np.float32)  # about -100 LUFS
    assert integrated_loudness(hiss, RATE) is None
    np.testing.assert_array_equal(normalize_loudness_lufs(hiss, RATE), hiss)
    assert normalize_loudness_lufs(np.zeros(0, np.float32), RATE).size == 0


@pytest.mark.parametrize("seconds", [0.05, 0.2, 0.399])
def test_clips_shorter_than_a_gating_block_are_normalised_without_error(seconds):
    clip = voice_like(seconds, amplitude=0.05)
    normalized = normalize_loudness_lufs(clip, RATE)
    # measured as the clip held (repeated): the same gain a long stretch of the same sound gets
    held = np.tile(normalized, 20)
    assert integrated_loudness(held, RATE) == pytest.approx(-16.0, abs=0.5)
    assert np.max(np.abs(normalized)) <= 10 ** (-1.0 / 20)


# ---------------------------------------------------------------------------------------------- loudness (stream)


def test_stream_loudness_fixes_the_gain_from_the_first_chunk_and_never_clips():
    wave = voice_like(6.0, amplitude=0.05)
    chunks = np.array_split(wave, [RATE, 3 * RATE, int(4.5 * RATE)])
    meter = StreamLoudness(-16.0, -1.0, RATE)
    out = [meter.process(chunk) for chunk in chunks]
    gains = {float(np.max(np.abs(o)) / np.max(np.abs(c))) for o, c in zip(out, chunks, strict=True)}
    assert max(gains) / min(gains) == pytest.approx(1.0, abs=1e-5)  # one gain for the whole stream
    assert integrated_loudness(np.concatenate(out), RATE) == pytest.approx(-16.0, abs=1.0)
    assert max(np.max(np.abs(o)) for o in out) <= 10 ** (-1.0 / 20)


def test_stream_loudness_lowers_its_gain_for_a_loud_chunk_and_keeps_it_low():
    quiet, loud = voice_like(1.0, amplitude=0.02, seed=1), voice_like(1.0, amplitude=0.5, seed=2)
    again = voice_like(1.0, amplitude=0.02, seed=3)
    meter = StreamLoudness(-16.0, -1.0, RATE)
    meter.process(quiet)
    first_gain = meter.gain
    loud_out = meter.process(loud)
    assert np.max(np.abs(loud_out)) <= 10 ** (-1.0 / 20)
    assert meter.gain < first_gain
    lowered = meter.gain
    meter.process(again)
    assert meter.gain == lowered  # the gain never goes back up


def test_stream_loudness_passes_leading_silence_and_measures_the_first_sound():
    meter = StreamLoudness(sample_rate=RATE)
    silence = np.zeros(RATE // 2, np.float32)
    np.testing.assert_array_equal(meter.process(silence), silence)
    assert meter.gain is None
    speech = voice_like(1.0, amplitude=0.05)
    assert integrated_loudness(meter.process(speech), RATE) == pytest.approx(-16.0, abs=0.5)
