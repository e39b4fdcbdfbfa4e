"""Streaming encoders (ptbr_model.audio_stream): real PyAV encoders, decoded back by FFmpeg's command line, PyAV,
soundfile and Python's wave module.

Duration tolerances for a complete stream (decoded - expected samples, never negative): pcm, wav, opus exact;
mp3 <= 1105 + 1152 (LAME's encoder delay plus one frame of padding: an unseekable stream has no LAME tag to announce
them); aac <= 2048 (1024 priming samples plus padding to a whole frame, as for whole files).
"""

from __future__ import annotations

import io
import math
import wave

import numpy as np
import pytest

from decoders import SOUNDFILE_READS, dominant_hz, ffmpeg_decode, pyav_decode, sine, soundfile_decode
from ptbr_model.audio_codec import (
    MEDIA_TYPES,
    OUTPUT_SAMPLE_RATES,
    SAMPLE_RATE,
    StreamResampler,
    encode_audio,
    output_rate,
    resample,
)
from ptbr_model.audio_stream import STREAM_FORMATS, StreamEncoder, stream_media_type, wav_stream_header
from ptbr_model.bench_workloads import voice_like

MAX_EXTRA_SAMPLES = {"wav": 0, "opus": 0, "mp3": 1105 + 1152, "aac": 2048}
CODEC_FORMATS = ("mp3", "opus", "aac")
# Chunk sizes in seconds: a short first chunk as the service sends, ordinary ones, a tiny one, an odd-sized one.
CHUNK_SECONDS = (0.5, 2.0, 0.01, 1.0, 0.7371)


def chunked(wave_: np.ndarray, seconds: tuple[float, ...] = CHUNK_SECONDS, rate: int = SAMPLE_RATE) -> list[np.ndarray]:
    bounds = np.cumsum([0, *[round(s * rate) for s in seconds]])
    return [wave_[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def stream(fmt: str, chunks: list[np.ndarray], out_rate: int | None = None) -> tuple[StreamEncoder, list[bytes]]:
    """Encode chunks; returns the encoder and the byte pieces [start, encode..., finish]."""
    encoder = StreamEncoder(fmt, SAMPLE_RATE, out_rate)
    pieces = [encoder.start()]
    pieces += [encoder.encode(chunk) for chunk in chunks]
    pieces.append(encoder.finish())
    return encoder, pieces


def test_stream_formats_and_media_types():
    assert STREAM_FORMATS == ("pcm", "wav", "mp3", "opus", "aac")
    for fmt in STREAM_FORMATS:
        assert stream_media_type(fmt) == MEDIA_TYPES[fmt]
        assert StreamEncoder(fmt).media_type == MEDIA_TYPES[fmt]
    for unknown in ("flac", "ogg", ""):
        with pytest.raises(ValueError, match="unknown stream format"):
            StreamEncoder(unknown)
        with pytest.raises(ValueError, match="unknown stream format"):
            stream_media_type(unknown)


@pytest.mark.parametrize("out_rate", [None, 8000, 22050, 44100])
@pytest.mark.parametrize("fmt", ["wav", *CODEC_FORMATS])
def test_a_whole_stream_decodes_at_the_right_rate_and_duration(fmt, out_rate):
    signal = sine(sum(CHUNK_SECONDS))
    encoder, pieces = stream(fmt, chunked(signal), out_rate)
    data = b"".join(pieces)
    rate = output_rate(fmt, SAMPLE_RATE, out_rate)
    assert encoder.rate == rate
    encoded = math.ceil(len(signal) * rate / SAMPLE_RATE)  # samples the resampler makes (torchaudio rounds up)
    second_decoder = soundfile_decode if fmt in SOUNDFILE_READS else pyav_decode
    for decode in (ffmpeg_decode, second_decoder):
        decoded_rate, decoded = decode(data)
        # libsndfile reports an Opus stream at the rate its header names; FFmpeg decodes Opus at 48 kHz.
        expected_rate = 48000 if fmt == "opus" and decode is not soundfile_decode else rate
        assert decoded_rate == expected_rate
        extra = len(decoded) - encoded * decoded_rate // rate
        assert 0 <= extra <= MAX_EXTRA_SAMPLES[fmt], (decode.__name__, extra)
        assert dominant_hz(decoded, decoded_rate) == pytest.approx(440, abs=2)


@pytest.mark.parametrize("fmt", ["wav", *CODEC_FORMATS])
def test_a_stream_cut_after_any_chunk_plays_its_first_part(fmt):
    signal = voice_like(sum(CHUNK_SECONDS))
    chunks = chunked(signal)
    _, pieces = stream(fmt, chunks)
    _, whole = ffmpeg_decode(b"".join(pieces))
    sent_seconds = 0.0
    for count, chunk in enumerate(chunks, start=1):
        sent_seconds += len(chunk) / SAMPLE_RATE
        if len(chunk) < SAMPLE_RATE // 2:
            continue  # a 10 ms chunk may stay in the codec's buffer
        rate, prefix = ffmpeg_decode(b"".join(pieces[: count + 1]))
        assert len(prefix) > 0
        # The first part of the audio, exactly as the complete stream decodes it...
        np.testing.assert_array_equal(prefix, whole[: len(prefix)])
        # ...up to at most 250 ms before the cut: a codec frame, the encoder's look-ahead, the Ogg page under way.
        assert len(prefix) / rate >= sent_seconds - 0.25, (count, len(prefix) / rate, sent_seconds)
        assert len(prefix) / rate <= sent_seconds + MAX_EXTRA_SAMPLES[fmt] / rate


@pytest.mark.parametrize("fmt", CODEC_FORMATS)
def test_every_half_second_chunk_yields_bytes_at_once(fmt):
    encoder = StreamEncoder(fmt)
    encoder.start()
    for index in range(6):
        assert encoder.encode(voice_like(0.5, seed=index)), f"chunk {index} produced no bytes"
    assert encoder.finish()


@pytest.mark.parametrize("out_rate", [None, 8000, 16000, 22050, 44100, 48000])
def test_streamed_pcm_and_wav_carry_exactly_the_samples_of_the_whole_file(out_rate):
    rng = np.random.default_rng(5)
    signal = voice_like(3.3, amplitude=0.9)
    signal[100:110] = [1.5, -2.0, np.nan, 0.99, -0.99, 1.0, -1.0, 0.0, np.inf, -np.inf]  # cleaned the same way
    sizes = rng.integers(1, 9000, size=40)
    bounds = np.minimum(np.cumsum([0, *sizes]), len(signal))
    chunks = [signal[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)] + [signal[bounds[-1] :]]

    _, pcm_pieces = stream("pcm", chunks, out_rate)
    assert b"".join(pcm_pieces) == encode_audio(signal, SAMPLE_RATE, "pcm", out_rate=out_rate)

    encoder, wav_pieces = stream("wav", chunks, out_rate)
    whole_wav = encode_audio(signal, SAMPLE_RATE, "wav", out_rate=out_rate)
    with wave.open(io.BytesIO(whole_wav)) as reader:
        whole_frames = reader.readframes(reader.getnframes())
    streamed = b"".join(wav_pieces)
    assert streamed[:44] == wav_stream_header(encoder.rate)
    assert streamed[44:] == whole_frames


@pytest.mark.parametrize("out_rate", [None, 44100])
def test_streamed_wav_header_has_placeholder_sizes_and_every_reader_takes_it(out_rate):
    signal = voice_like(2.0)
    _, pieces = stream("wav", chunked(signal, (0.5, 1.5)), out_rate)
    data = b"".join(pieces)
    rate = out_rate or SAMPLE_RATE
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE" and data[36:40] == b"data"
    assert data[4:8] == b"\xff\xff\xff\xff" and data[40:44] == b"\xff\xff\xff\xff"
    expected = np.frombuffer(encode_audio(signal, SAMPLE_RATE, "pcm", out_rate=out_rate), "<i2")

    # Python's wave module, as wyoming-openai parses a TTS answer: the header first, then frames until the end.
    with wave.open(io.BytesIO(data)) as reader:
        assert (reader.getframerate(), reader.getnchannels(), reader.getsampwidth()) == (rate, 1, 2)
        frames = np.frombuffer(reader.readframes(reader.getnframes()), "<i2")
    np.testing.assert_array_equal(frames, expected)
    with wave.open(io.BytesIO(pieces[0])) as header_only:  # the first bytes sent are a parseable header already
        assert header_only.getframerate() == rate

    for decode in (soundfile_decode, ffmpeg_decode, pyav_decode):
        decoded_rate, decoded = decode(data)
        assert decoded_rate == rate
        np.testing.assert_array_equal(np.round(decoded * 32768).astype(np.int16), expected)


@pytest.mark.parametrize("fmt", STREAM_FORMATS)
def test_an_empty_stream_is_still_a_valid_one(fmt):
    _, pieces = stream(fmt, [])
    data = b"".join(pieces)
    if fmt == "pcm":
        assert data == b""
        return
    if fmt == "wav":
        assert data == wav_stream_header(SAMPLE_RATE)
        with wave.open(io.BytesIO(data)) as reader:
            assert reader.readframes(10) == b""
        return
    rate, decoded = ffmpeg_decode(data)
    assert len(decoded) <= rate // SAMPLE_RATE + MAX_EXTRA_SAMPLES[fmt]  # one silent sample, and the codec's extra
    assert np.max(np.abs(decoded), initial=0.0) < 1e-4


def test_opus_streams_at_a_rate_opus_carries():
    encoder, pieces = stream("opus", chunked(sine(1.0), (1.0,)), out_rate=44100)
    assert encoder.rate == 48000
    rate, decoded = soundfile_decode(b"".join(pieces))
    assert rate == 48000 and len(decoded) == 48000


def test_the_encoder_must_be_used_in_order():
    encoder = StreamEncoder("mp3")
    with pytest.raises(RuntimeError, match="start"):
        encoder.encode(sine(0.1))
    with pytest.raises(RuntimeError, match="start"):
        encoder.finish()
    encoder.start()
    with pytest.raises(RuntimeError, match="already"):
        encoder.start()
    encoder.encode(sine(0.1))
    assert encoder.finish()
    assert encoder.finish() == b""
    with pytest.raises(RuntimeError, match="after finish"):
        encoder.encode(sine(0.1))
    abandoned = StreamEncoder("opus")
    abandoned.start()
    assert abandoned.encode(voice_like(1.0))
    abandoned.close()  # a client went away: the encoder is freed, nothing more comes out
    assert abandoned.finish() == b""
    with pytest.raises(RuntimeError, match="after finish"):
        abandoned.encode(sine(0.1))
    pcm = StreamEncoder("pcm")
    pcm.start()
    with pytest.raises(ValueError, match="1-D mono"):
        pcm.encode(np.zeros((10, 2), np.float32))


@pytest.mark.parametrize("to_rate", OUTPUT_SAMPLE_RATES)
@pytest.mark.parametrize("pattern", ["tiny", "random", "one"])
def test_stream_resampler_equals_resampling_the_whole_signal(to_rate, pattern):
    rng = np.random.default_rng(11)
    signal = (0.3 * rng.standard_normal(SAMPLE_RATE + 1234)).astype(np.float32)
    if pattern == "tiny":
        sizes = [1, 2, 3, 5, 7, 11, 13, 997, 1, 1]
    elif pattern == "random":
        sizes = list(rng.integers(1, 7000, size=8))
    else:
        sizes = [len(signal)]
    resampler = StreamResampler(SAMPLE_RATE, to_rate)
    pieces, position = [], 0
    for size in sizes:
        pieces.append(resampler.push(signal[position : position + size]))
        position += size
    pieces.append(resampler.push(signal[position:]))
    pieces.append(resampler.flush())
    streamed = np.concatenate(pieces)
    np.testing.assert_array_equal(streamed, resample(signal, SAMPLE_RATE, to_rate, float64=True))
    assert resampler.flush().size == 0
