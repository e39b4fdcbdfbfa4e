"""Whole-file output formats (ptbr_model.audio_codec.encode_audio): every format and output rate is decoded back by
FFmpeg's command line and by a second decoder (soundfile where it reads the format, else PyAV), and checked for
rate, duration and content.

Duration tolerances, measured (samples at the decoded rate; 'extra' = decoded - expected, never negative):
wav, flac, opus: exact (Ogg Opus carries its pre-skip and end granule). mp3: exact with libsndfile and PyAV, which
read the LAME tag's encoder delay and padding; FFmpeg 5.1's command line trims the delay but keeps up to one
1152-sample frame of padding. aac (ADTS): ADTS cannot announce the encoder's 1024 priming samples, and the last
frame is padded to 1024 samples: extra <= 2048.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from ptbr_model.audio_codec import (
    MEDIA_TYPES,
    OUTPUT_SAMPLE_RATES,
    SAMPLE_RATE,
    AudioError,
    decode_audio,
    encode_audio,
    output_rate,
    to_pcm16,
)
from decoders import SOUNDFILE_READS, dominant_hz, ffmpeg_decode, pyav_decode, sine, soundfile_decode

FILE_FORMATS = ("wav", "flac", "mp3", "opus", "aac")
# Most samples a decoder may add to a whole file, per format (see the module docstring).
MAX_EXTRA_SAMPLES = {"wav": 0, "flac": 0, "opus": 0, "mp3": 1152, "aac": 2048}
# Bit rates the lossy encoders are set to (bits per second of mono audio).
BIT_RATES = {"mp3": 64000, "aac": 64000, "opus": 32000}


def decoded_rate(fmt: str, rate: int) -> int:
    return 48000 if fmt == "opus" else rate  # FFmpeg decodes Opus at 48 kHz, whatever rate the header names


def check_duration(fmt: str, decoded: np.ndarray, rate: int, seconds: float) -> None:
    extra = len(decoded) - round(seconds * rate)
    assert 0 <= extra <= MAX_EXTRA_SAMPLES[fmt], (fmt, rate, extra)


def test_media_types_cover_every_response_format():
    assert MEDIA_TYPES == {
        "wav": "audio/wav",
        "flac": "audio/flac",
        "mp3": "audio/mpeg",
        "opus": "audio/ogg",
        "aac": "audio/aac",
        "pcm": "audio/pcm",
    }


@pytest.mark.parametrize("out_rate", [None, *OUTPUT_SAMPLE_RATES])
@pytest.mark.parametrize("fmt", FILE_FORMATS)
def test_every_format_and_rate_decodes_back_with_ffmpeg_and_a_second_decoder(fmt, out_rate):
    seconds = 1.5
    data = encode_audio(sine(seconds), SAMPLE_RATE, fmt, out_rate=out_rate)
    rate = output_rate(fmt, SAMPLE_RATE, out_rate)
    assert rate == (out_rate or SAMPLE_RATE) or fmt == "opus"

    ffmpeg_rate, decoded = ffmpeg_decode(data)
    assert ffmpeg_rate == decoded_rate(fmt, rate)
    check_duration(fmt, decoded, ffmpeg_rate, seconds)
    assert dominant_hz(decoded, ffmpeg_rate) == pytest.approx(440, abs=2)

    second_rate, second = soundfile_decode(data) if fmt in SOUNDFILE_READS else pyav_decode(data)
    # libsndfile reports the rate an Opus header names (the encoder's input rate); FFmpeg/PyAV decode at 48 kHz.
    assert second_rate == (rate if fmt in SOUNDFILE_READS else decoded_rate(fmt, rate))
    if fmt == "mp3":
        assert len(second) == round(seconds * second_rate)  # libsndfile honours the LAME tag exactly
    else:
        check_duration(fmt, second, second_rate, seconds)
    assert dominant_hz(second, second_rate) == pytest.approx(440, abs=2)


@pytest.mark.parametrize("fmt", ["wav", "flac"])
@pytest.mark.parametrize("out_rate", [None, 16000, 44100])
def test_lossless_formats_carry_exactly_the_pcm_samples(fmt, out_rate):
    wave = sine(1.0, level=0.7) + np.float32(0.01)
    pcm = np.frombuffer(encode_audio(wave, SAMPLE_RATE, "pcm", out_rate=out_rate), "<i2")
    samples, rate = sf.read(io.BytesIO(encode_audio(wave, SAMPLE_RATE, fmt, out_rate=out_rate)), dtype="int16")
    assert rate == (out_rate or SAMPLE_RATE)
    np.testing.assert_array_equal(samples, pcm)
    _, ffmpeg_samples = ffmpeg_decode(encode_audio(wave, SAMPLE_RATE, fmt, out_rate=out_rate))
    np.testing.assert_array_equal(np.round(ffmpeg_samples * 32768).astype(np.int16), pcm)


@pytest.mark.parametrize("out_rate", [None, *OUTPUT_SAMPLE_RATES])
def test_pcm_is_raw_little_endian_16_bit_at_the_output_rate(out_rate):
    wave = sine(1.0)
    pcm = encode_audio(wave, SAMPLE_RATE, "pcm", out_rate=out_rate)
    rate = out_rate or SAMPLE_RATE
    assert len(pcm) == 2 * rate
    samples = np.frombuffer(pcm, "<i2") / 32768
    assert dominant_hz(samples, rate) == pytest.approx(440, abs=1)
    if out_rate in (None, SAMPLE_RATE):
        np.testing.assert_array_equal(np.frombuffer(pcm, "<i2"), to_pcm16(wave))


def test_pcm_is_24_khz_whatever_the_input_rate():
    assert len(encode_audio(sine(1.0, 48000), 48000, "pcm")) == 2 * SAMPLE_RATE
    assert len(encode_audio(sine(1.0, 48000), 48000, "pcm", out_rate=16000)) == 2 * 16000


@pytest.mark.parametrize("fmt", ["mp3", "aac", "opus"])
def test_lossy_formats_use_their_bit_rate(fmt):
    seconds = 4.0
    rng = np.random.default_rng(3)
    noisy = (sine(seconds, level=0.3) + 0.05 * rng.standard_normal(round(seconds * SAMPLE_RATE))).astype(np.float32)
    bits_per_second = 8 * len(encode_audio(noisy, SAMPLE_RATE, fmt)) / seconds
    assert bits_per_second == pytest.approx(BIT_RATES[fmt], rel=0.2)


@pytest.mark.parametrize(
    ("fmt", "sample_rate", "out_rate", "expected"),
    [
        ("wav", 24000, None, 24000),
        ("wav", 44100, None, 44100),
        ("flac", 24000, 8000, 8000),
        ("pcm", 48000, None, 24000),
        ("pcm", 24000, 11025, 11025),
        ("mp3", 24000, 22050, 22050),
        ("mp3", 96000, None, 48000),  # above the highest rate mp3 carries: that rate
        ("aac", 24000, 44100, 44100),
        ("opus", 24000, None, 24000),
        ("opus", 24000, 44100, 48000),  # opus has no 44.1 kHz: the next rate up
        ("opus", 24000, 22050, 24000),
        ("opus", 24000, 11025, 12000),
        ("opus", 24000, 32000, 48000),
        ("opus", 44100, None, 48000),
    ],
)
def test_output_rate_is_the_wanted_rate_or_the_next_one_the_codec_carries(fmt, sample_rate, out_rate, expected):
    assert output_rate(fmt, sample_rate, out_rate) == expected


@pytest.mark.parametrize("bad_rate", [7999, 10000, 44101, 96000, 0, -8000, 16000.0, True])
def test_unsupported_output_rates_are_refused_naming_the_field_and_the_rates(bad_rate):
    with pytest.raises(AudioError) as error:
        encode_audio(sine(0.1), SAMPLE_RATE, "wav", out_rate=bad_rate)
    assert error.value.field == "sample_rate"
    assert "8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000" in str(error.value)


def test_encode_opus_from_a_rate_opus_cannot_carry():
    data = encode_audio(sine(1.0, 44100), 44100, "opus")
    samples, rate = decode_audio(data)
    assert rate == 48000
    assert len(samples) == 48000


def test_encode_clips_and_cleans_out_of_range_samples():
    wave = np.array([2.0, -3.0, np.nan, np.inf, 0.5] * 100, dtype=np.float32)
    decoded, _ = sf.read(io.BytesIO(encode_audio(wave, SAMPLE_RATE, "wav")), dtype="float32")
    np.testing.assert_array_equal(decoded[:5], [32767 / 32768, -1.0, 0.0, 32767 / 32768, 0.5])
    for fmt in ("mp3", "opus", "aac"):
        _, lossy = ffmpeg_decode(encode_audio(wave, SAMPLE_RATE, fmt))
        assert np.isfinite(lossy).all()


@pytest.mark.parametrize("fmt", FILE_FORMATS)
def test_encode_empty_input_gives_a_valid_file(fmt):
    data = encode_audio(np.zeros(0, np.float32), SAMPLE_RATE, fmt)
    rate, samples = soundfile_decode(data) if fmt in SOUNDFILE_READS else pyav_decode(data)
    assert rate == SAMPLE_RATE
    # wav: no frame; the others one silent sample, plus what the decoder adds (libsndfile gives 47 for this mp3)
    assert len(samples) <= (0 if fmt == "wav" else 1 + MAX_EXTRA_SAMPLES[fmt])
    assert np.max(np.abs(samples), initial=0.0) < 1e-4
    if fmt != "wav":
        ffmpeg_decode(data)  # raises if FFmpeg cannot read it
    assert encode_audio(np.zeros(0, np.float32), SAMPLE_RATE, "pcm") == b""


def test_encode_rejects_unknown_formats_and_multichannel_input():
    with pytest.raises(ValueError, match="unknown audio format 'ogg'"):
        encode_audio(np.zeros(10, np.float32), SAMPLE_RATE, "ogg")
    with pytest.raises(ValueError, match="1-D mono"):
        encode_audio(np.zeros((10, 2), np.float32), SAMPLE_RATE, "wav")
