"""Incremental encoders for streamed answers: one StreamEncoder per response, fed chunk by chunk.

Every format's bytes can be played as they arrive, and a stream cut after any ``encode()`` still decodes up to
about where it was cut:

- ``pcm``: raw s16le mono, the same values ``encode_audio(..., "pcm")`` writes.
- ``wav``: a RIFF header whose two sizes are the placeholder 0xFFFFFFFF (the length is not known when the header
  is sent), then the same 16-bit samples. FFmpeg, libsndfile and Python's ``wave`` module (which wyoming-openai
  uses to parse a TTS answer's header) read it up to the end of the data.
- ``mp3``, ``opus`` (Ogg), ``aac`` (ADTS): PyAV encoders and muxers (``audio_codec.CodecEncoder``)
  writing into memory that is drained after every call. Codecs hold back up to a frame (mp3 and aac) or the Ogg
  page under way (opus, at most 100 ms), which ``finish()`` flushes.

Resampling to another output rate is done by ``audio_codec.StreamResampler``, which gives exactly the samples that
``encode_audio`` gets by resampling the whole signal, so a streamed and a whole answer carry the same audio.
"""

from __future__ import annotations

import io
import wave
from typing import Literal

import numpy as np

from ptbr_model.audio_codec import (
    CODEC_FORMATS,
    MEDIA_TYPES,
    SAMPLE_RATE,
    CodecEncoder,
    StreamResampler,
    clean_mono,
    output_rate,
    to_pcm16,
)

StreamFormat = Literal["pcm", "wav", "mp3", "opus", "aac"]
# No flac: FFmpeg's FLAC muxer cannot fill in the sample count on an unseekable output, and libsndfile (soundfile)
# then cannot read the stream at all.
STREAM_FORMATS: tuple[str, ...] = ("pcm", "wav", "mp3", "opus", "aac")
WAV_UNKNOWN_SIZE = 0xFFFFFFFF


def stream_media_type(fmt: str) -> str:
    """Content-Type of a streamed answer: the same as the whole file's (wav streams say audio/wav)."""
    _check_stream_format(fmt)
    return MEDIA_TYPES[fmt]


def wav_stream_header(sample_rate: int) -> bytes:
    """A 16-bit mono WAV header for audio of unknown length: RIFF and data sizes are 0xFFFFFFFF."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:  # the standard 44-byte PCM header, with sizes for zero frames
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(sample_rate)
    header = bytearray(buffer.getvalue())
    if len(header) != 44 or header[36:40] != b"data":
        raise RuntimeError("unexpected WAV header layout from the wave module")
    header[4:8] = WAV_UNKNOWN_SIZE.to_bytes(4, "little")
    header[40:44] = WAV_UNKNOWN_SIZE.to_bytes(4, "little")
    return bytes(header)


class StreamEncoder:
    """Encode one streamed answer: ``start()``, then ``encode(chunk)`` per chunk, then ``finish()``.

    Chunks are 1-D float samples at ``sample_rate``; they are cleaned and clipped as ``encode_audio`` does and
    resampled to ``output_rate(fmt, sample_rate, out_rate)`` (``self.rate``). Each method returns the bytes to send
    now (possibly empty). For mp3, opus and aac a chunk of 0.5 s or more always yields bytes.
    """

    def __init__(self, fmt: StreamFormat, sample_rate: int = SAMPLE_RATE, out_rate: int | None = None) -> None:
        _check_stream_format(fmt)
        self.fmt = fmt
        self.media_type = MEDIA_TYPES[fmt]
        self.rate = output_rate(fmt, sample_rate, out_rate)
        self._resampler = StreamResampler(sample_rate, self.rate)
        self._codec = CodecEncoder(fmt, self.rate, streaming=True) if fmt in CODEC_FORMATS else None
        self._state = "new"
        self.samples_in = 0  # samples received, at sample_rate
        self.samples_out = 0  # samples passed to the encoder, at self.rate

    def start(self) -> bytes:
        """The bytes that open the stream: the WAV header, the codec's container header, nothing for pcm."""
        if self._state != "new":
            raise RuntimeError("start() was already called")
        self._state = "started"
        if self.fmt == "wav":
            return wav_stream_header(self.rate)
        if self._codec is not None:
            return self._codec.start()
        return b""

    def encode(self, chunk: np.ndarray) -> bytes:
        """Encode one chunk of float32 mono samples; returns the bytes ready to send."""
        if self._state == "new":
            raise RuntimeError("call start() before encode()")
        if self._state == "finished":
            raise RuntimeError("encode() after finish()")
        mono = clean_mono(chunk)
        self.samples_in += mono.size
        return self._write(self._resampler.push(mono))

    def finish(self) -> bytes:
        """Flush the resampler, the encoder and the container trailer; the stream is complete after these bytes."""
        if self._state == "new":
            raise RuntimeError("call start() before finish()")
        if self._state == "finished":
            return b""
        self._state = "finished"
        data = self._write(self._resampler.flush())
        if self._codec is not None:
            if self.samples_out == 0:  # an mp3, Ogg or ADTS stream needs one packet to be readable at all
                data += self._codec.encode(np.zeros(1, dtype=np.float32))
            data += self._codec.finish()
        return data

    def close(self) -> None:
        """Abandon the stream without finishing it (the client disconnected): frees the encoder at once rather than
        when it is garbage-collected. finish() after close() returns nothing; encode() raises."""
        if self._state != "finished":
            self._state = "finished"
            if self._codec is not None:
                self._codec.close()

    def _write(self, mono: np.ndarray) -> bytes:
        if mono.size == 0:
            return self._codec.encode(mono) if self._codec is not None else b""
        # The band-limited resampler overshoots a little on full-scale edges: clip again, as encode_audio does.
        mono = np.clip(mono, -1.0, 1.0)
        self.samples_out += mono.size
        if self._codec is not None:
            return self._codec.encode(mono)
        return to_pcm16(mono).tobytes()


def _check_stream_format(fmt: str) -> None:
    if fmt not in STREAM_FORMATS:
        raise ValueError(f"unknown stream format {fmt!r}; expected one of {', '.join(STREAM_FORMATS)}")
