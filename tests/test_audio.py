"""Audio module: real encoders and decoders (libsndfile, FFmpeg), signals made with numpy, no mocks."""

from __future__ import annotations

import io
import pickle
import subprocess

import numpy as np
import pytest
import soundfile as sf

from ptbr_model.audio import (
    SAMPLE_RATE,
    AudioError,
    decode_audio,
    normalize_loudness,
    prepare_reference,
    validate_reference,
)



def tone(seconds: float, rate: int, channels: int = 1, hz: float = 440.0, level: float = 0.5) -> np.ndarray:
    """A sine with a little noise, shaped (frames, channels)."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(0)
    wave = level * np.sin(2 * np.pi * hz * t)[:, None] + 0.01 * rng.standard_normal((len(t), channels))
    return wave.astype(np.float32)


def speech_like(seconds: float, rate: int, pauses: list[tuple[float, float]], channels: int = 1) -> np.ndarray:
    """A warbling tone (phrases) broken by near-silent pauses (about -66 dBFS noise), quantised to 16 bits."""
    rng = np.random.default_rng(1)
    t = np.arange(int(seconds * rate)) / rate
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    wave = (0.3 * np.sin(2 * np.pi * 150 * t) * envelope)[:, None] + 0.02 * rng.standard_normal((len(t), channels))
    for start, end in pauses:
        a, b = int(start * rate), int(end * rate)
        wave[a:b] = 0.0005 * rng.standard_normal((b - a, channels))
    return (np.round(wave * 32768).clip(-32768, 32767) / 32768).astype(np.float32)


def write(samples: np.ndarray, rate: int, fmt: str, subtype: str) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def ffmpeg_encode(samples: np.ndarray, rate: int, *output_args: str) -> bytes:
    command = ["ffmpeg", "-v", "error", "-f", "f32le", "-ar", str(rate), "-ac", str(samples.shape[1]), "-i", "pipe:0"]
    command += [*output_args, "pipe:1"]
    return subprocess.run(command, input=samples.tobytes(), capture_output=True, check=True).stdout


def dominant_hz(mono: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono))))
    return float(np.fft.rfftfreq(len(mono), 1 / rate)[np.argmax(spectrum)])


# ------------------------------------------------------------------------------------------------------ decoding

LOSSLESS = [
    ("WAV", "PCM_U8", 16000, 1, 1 / 64),
    ("WAV", "PCM_16", 8000, 1, 1e-4),
    ("WAV", "PCM_24", 44100, 2, 1e-6),
    ("WAV", "PCM_32", 48000, 1, 1e-6),
    ("WAV", "FLOAT", 24000, 2, 0.0),
    ("FLAC", "PCM_16", 44100, 2, 1e-4),
    ("FLAC", "PCM_24", 48000, 1, 1e-6),
]
LOSSY = [
    ("OGG", "VORBIS", 44100, 2),
    ("OGG", "OPUS", 48000, 1),
    ("OGG", "OPUS", 16000, 2),
    ("MP3", "MPEG_LAYER_III", 44100, 2),
    ("MP3", "MPEG_LAYER_III", 22050, 1),
]


@pytest.mark.parametrize(("fmt", "subtype", "rate", "channels", "tolerance"), LOSSLESS)
def test_decode_lossless_keeps_rate_channels_and_samples(fmt, subtype, rate, channels, tolerance):
    original = tone(0.5, rate, channels)
    samples, decoded_rate = decode_audio(write(original, rate, fmt, subtype))
    assert decoded_rate == rate
    assert samples.dtype == np.float32
    assert samples.shape == original.shape
    np.testing.assert_allclose(samples, original, atol=tolerance)


@pytest.mark.parametrize(("fmt", "subtype", "rate", "channels"), LOSSY)
def test_decode_lossy_keeps_rate_channels_duration_and_pitch(fmt, subtype, rate, channels):
    original = tone(1.0, rate, channels)
    samples, decoded_rate = decode_audio(write(original, rate, fmt, subtype))
    assert decoded_rate == rate
    assert samples.dtype == np.float32
    assert samples.shape[1] == channels
    assert abs(samples.shape[0] - original.shape[0]) / rate < 0.05
    assert dominant_hz(samples[:, 0], rate) == pytest.approx(440, abs=3)


def test_decode_falls_back_to_ffmpeg_for_webm_opus():
    # Browsers record webm/opus, which libsndfile cannot read.
    webm = ffmpeg_encode(tone(1.0, 48000, 2), 48000, "-c:a", "libopus", "-f", "webm")
    with pytest.raises(sf.LibsndfileError):
        sf.read(io.BytesIO(webm))
    samples, rate = decode_audio(webm)
    assert rate == 48000
    assert samples.shape[1] == 2
    assert samples.dtype == np.float32
    assert abs(samples.shape[0] / rate - 1.0) < 0.05
    assert dominant_hz(samples[:, 0], rate) == pytest.approx(440, abs=3)


def truncated_files() -> dict[str, bytes]:
    signal = tone(1.0, 24000)
    wav, flac = write(signal, 24000, "WAV", "PCM_16"), write(signal, 24000, "FLAC", "PCM_16")
    vorbis, mp3 = write(signal, 24000, "OGG", "VORBIS"), write(signal, 24000, "MP3", "MPEG_LAYER_III")
    return {
        "wav cut in its header": wav[:30],
        "wav header without data": wav[:44],
        "flac cut in its metadata": flac[:60],
        "ogg cut before the first audio page": vorbis[: len(vorbis) // 2],
        "mp3 cut in its first frame": mp3[:200],
    }


BAD_INPUTS = {
    "empty": b"",
    "text": b"this is not audio at all " * 40,
    "random bytes": np.random.default_rng(7).bytes(4096),
    "fake mp3 sync word": b"\xff\xfb" + np.random.default_rng(8).bytes(4096),
    "zeros": bytes(4096),
    **truncated_files(),
}


@pytest.mark.parametrize("data", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_decode_rejects_unusable_bytes_naming_the_field(data):
    with pytest.raises(AudioError) as caught:
        decode_audio(data, field="reference_audio")
    assert caught.value.field == "reference_audio"
    assert str(caught.value).startswith("reference_audio: ")


def test_decode_error_names_supported_formats_and_custom_field():
    with pytest.raises(AudioError, match=r"^voice_sample: could not decode audio \(.*supported: wav, flac, ogg, mp3\)"):
        decode_audio(b"garbage" * 100, field="voice_sample")


@pytest.mark.parametrize(("fmt", "subtype"), [("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("MP3", "MPEG_LAYER_III")])
def test_decode_refuses_audio_longer_than_the_limit(fmt, subtype):
    data = write(np.zeros(3 * 8000, dtype=np.float32), 8000, fmt, subtype)
    with pytest.raises(AudioError, match=r"^reference_audio: decoded audio is longer than the 2 s maximum$"):
        decode_audio(data, max_decoded_seconds=2.0)
    samples, _ = decode_audio(data, max_decoded_seconds=3.5)
    assert samples.shape[0] == 3 * 8000


def test_decode_refuses_long_audio_through_ffmpeg_too():
    webm = ffmpeg_encode(np.zeros((3 * 48000, 1), dtype=np.float32), 48000, "-c:a", "libopus", "-f", "webm")
    with pytest.raises(AudioError, match="longer than the 2 s maximum"):
        decode_audio(webm, max_decoded_seconds=2.0)


def test_audio_error_is_a_value_error_that_survives_pickling():
    error = AudioError("reference_audio", "0.4 s is shorter than the 1.0 s minimum")
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, ValueError)
    assert (copy.field, str(copy)) == ("reference_audio", "reference_audio: 0.4 s is shorter than the 1.0 s minimum")


# ---------------------------------------------------------------------------------------------------- validation


def test_validate_accepts_a_normal_reference():
    validate_reference(tone(3.0, 44100, 2), 44100, min_seconds=1.0)
    validate_reference(tone(3.0, 24000)[:, 0], 24000, min_seconds=1.0)


@pytest.mark.parametrize(
    ("samples", "rate", "message"),
    [
        (tone(0.4, 24000), 24000, r"^reference_audio: 0\.4 s is shorter than the 1\.0 s minimum$"),
        (tone(0.99, 16000), 16000, r"^reference_audio: 0\.9 s is shorter than the 1\.0 s minimum$"),
        (np.zeros((0, 1), np.float32), 24000, r"^reference_audio: the audio is empty"),
        (np.zeros((48000, 1), np.float32), 24000, r"^reference_audio: the audio is silent .*1e-04.*1e-05"),
        (np.full((48000, 2), 5e-5, np.float32), 24000, r"^reference_audio: the audio is silent \(peak 5\.0e-05"),
        (tone(2.0, 4000), 4000, r"^reference_audio: sample rate 4000 Hz is below the 8000 Hz minimum$"),
        (tone(0.1, 768000), 768000, r"^reference_audio: sample rate 768000 Hz is above the 384000 Hz maximum$"),
    ],
    ids=["too short", "just under the minimum", "empty", "digital silence", "below -80 dBFS", "low rate", "high rate"],
)
def test_validate_rejects_with_a_message_naming_field_and_limit(samples, rate, message):
    with pytest.raises(AudioError, match=message) as caught:
        validate_reference(samples, rate, min_seconds=1.0)
    assert caught.value.field == "reference_audio"


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_validate_rejects_non_finite_samples(bad_value):
    samples = tone(2.0, 24000)
    samples[100, 0] = bad_value
    with pytest.raises(AudioError, match=r"^voice: the audio contains NaN or infinite samples$"):
        validate_reference(samples, 24000, min_seconds=1.0, field="voice")


# --------------------------------------------------------------------------------------------------- preparation


def upstream_clip_and_trim(samples: np.ndarray, rate: int, max_ms: int) -> np.ndarray:
    """f5-tts 1.1.22 preprocess_ref_audio_text (steps 1-3, remove_silence_edges), with pydub as upstream runs it."""
    from pydub import AudioSegment, silence  # imported here: pydub warns on import (audioop is deprecated)

    pcm = np.round(samples * 32768).clip(-32768, 32767).astype("<i2")
    audio = AudioSegment(data=pcm.tobytes(), sample_width=2, frame_rate=rate, channels=samples.shape[1])

    def join(min_silence_len: int, silence_thresh: int) -> AudioSegment:
        wave = AudioSegment.silent(duration=0)
        for segment in silence.split_on_silence(audio, min_silence_len, silence_thresh, 1000, seek_step=10):
            if len(wave) > max_ms / 2 and len(wave + segment) > max_ms:
                break
            wave += segment
        return wave

    wave = join(1000, -50)
    if len(wave) > max_ms:
        wave = join(100, -40)
    if len(wave) > max_ms:
        wave = wave[:max_ms]
    wave = wave[silence.detect_leading_silence(wave, silence_threshold=-42) :]
    end = silence.detect_leading_silence(wave.reverse(), silence_threshold=-42)
    wave = wave[: len(wave) - end] if end > 0 else wave
    return np.frombuffer(wave.raw_data, "<i2").reshape(-1, samples.shape[1]).mean(axis=1, dtype=np.float32) / 32768


PARITY_CASES = {
    "1.5 s pauses": (20, 24000, 1, [(0, 0.4), (4, 5.5), (9, 10.6), (14.2, 15.5), (19.5, 20)]),
    "only short pauses": (20, 24000, 1, [(3, 3.3), (7, 7.25), (11, 11.4), (13, 13.2), (17, 17.3)]),
    "no pause": (15, 24000, 1, []),
    "short clip": (5, 24000, 2, [(0, 0.5), (4.3, 5)]),
}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pydub imports audioop
@pytest.mark.parametrize(("seconds", "rate", "channels", "pauses"), PARITY_CASES.values(), ids=PARITY_CASES.keys())
def test_prepare_matches_upstream_pydub_pipeline_sample_for_sample(seconds, rate, channels, pauses):
    samples = speech_like(seconds, rate, pauses, channels)
    expected = upstream_clip_and_trim(samples, rate, max_ms=12000)
    prepared = prepare_reference(samples, rate, max_seconds=12.0)
    tail = int(0.05 * rate)
    np.testing.assert_array_equal(prepared[:-tail], expected)
    assert not prepared[-tail:].any()


def test_prepare_clips_a_long_reference_at_a_pause():
    # Phrases 0.3-4.0, 5.5-9.0, 10.5-14.0, 15.5-19.7 s; the 1.5 s pauses are kept whole, and the reference is cut
    # before the third phrase (it would pass 12 s), then the silent edges are trimmed: 0.3-9.0 s plus 50 ms.
    rate = 44100
    samples = speech_like(20.0, rate, [(0, 0.3), (4.0, 5.5), (9.0, 10.5), (14.0, 15.5), (19.7, 20)], channels=2)
    prepared = prepare_reference(samples, rate, max_seconds=12.0)
    assert prepared.dtype == np.float32
    assert prepared.ndim == 1
    assert len(prepared) / SAMPLE_RATE == pytest.approx(8.7 + 0.05, abs=0.03)
    unclipped = prepare_reference(samples, rate, max_seconds=25.0)
    assert len(unclipped) / SAMPLE_RATE == pytest.approx(19.7 - 0.3 + 0.05, abs=0.03)


def test_prepare_cuts_hard_at_max_seconds_without_pauses():
    prepared = prepare_reference(tone(15.0, 16000), 16000, max_seconds=10.0)
    assert len(prepared) == round(10.05 * SAMPLE_RATE)


def test_prepare_resamples_averages_channels_and_keeps_loudness():
    left = tone(2.0, 16000, hz=300.0, level=0.4)
    stereo = np.concatenate([left, np.zeros_like(left)], axis=1)
    prepared = prepare_reference(stereo, 16000, max_seconds=12.0)
    assert len(prepared) == round(2.05 * SAMPLE_RATE)
    assert dominant_hz(prepared, SAMPLE_RATE) == pytest.approx(300, abs=1)
    assert np.max(np.abs(prepared)) == pytest.approx(0.2, abs=0.02)  # mean of the channels, not normalised


def test_prepare_rejects_audio_that_is_all_below_the_trim_threshold():
    quiet = tone(3.0, 24000, level=0.003) * 0.1  # about -70 dBFS: passes validation, but upstream trims it all
    validate_reference(quiet, 24000, min_seconds=1.0)
    with pytest.raises(AudioError, match=r"^reference_audio: nothing in the audio is louder than -42 dBFS"):
        prepare_reference(quiet, 24000, max_seconds=12.0)


def test_prepare_handles_odd_sample_rates_quickly():
    # 44101 and 24000 Hz share no factor: an exact filter bank would need gigabytes, so the rate is read 100 Hz-aligned.
    prepared = prepare_reference(tone(1.0, 44101, hz=1000.0), 44101, max_seconds=12.0)
    assert abs(len(prepared) - round(1.05 * SAMPLE_RATE)) <= 2
    assert dominant_hz(prepared, SAMPLE_RATE) == pytest.approx(1000, abs=2)


def test_normalize_loudness_raises_quiet_audio_only_and_reports_the_original_rms():
    quiet = tone(1.0, SAMPLE_RATE, level=0.05)[:, 0]
    normalized, rms = normalize_loudness(quiet, target_rms=0.1)
    assert rms == pytest.approx(float(np.sqrt(np.mean(quiet.astype(np.float64) ** 2))))
    assert np.sqrt(np.mean(normalized.astype(np.float64) ** 2)) == pytest.approx(0.1, rel=1e-5)
    assert normalized.dtype == np.float32
    loud = tone(1.0, SAMPLE_RATE, level=0.8)[:, 0]
    unchanged, loud_rms = normalize_loudness(loud, target_rms=0.1)
    assert loud_rms > 0.1
    np.testing.assert_array_equal(unchanged, loud)
    silent, silent_rms = normalize_loudness(np.zeros(100, np.float32), target_rms=0.1)
    assert silent_rms == 0.0
    assert not silent.any()


# Encoding (every output format, rate and the streaming encoders): tests/test_audio_codec_formats.py,
# tests/test_audio_stream.py.
