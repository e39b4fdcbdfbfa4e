"""Decode uploaded audio and encode synthesized audio, entirely in memory.

Decoding: the soundfile wheel bundles libsndfile 1.2, which reads wav, flac, ogg (vorbis, opus) and mp3 by itself.
FFmpeg, driven through pipes, is only the fallback for what libsndfile does not know (webm from browsers, m4a, ...).

Encoding: soundfile writes wav and flac (16-bit, from our own integer samples, so wav, flac and pcm carry the same
values). PyAV (FFmpeg's libraries, bundled in its wheel) encodes mp3 (libmp3lame), opus (libopus in Ogg) and aac
(FFmpeg's native encoder in ADTS). CodecEncoder is incremental: ptbr_model.audio_stream drives the same class
chunk by chunk for streamed answers.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import subprocess
from dataclasses import dataclass, field

import av
import numpy as np
import soundfile as sf
import torch
import torchaudio.functional

SAMPLE_RATE = 24000
MEDIA_TYPES: dict[str, str] = {
    "wav": "audio/wav",
    "flac": "audio/flac",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",  # Ogg Opus
    "aac": "audio/aac",  # ADTS
    "pcm": "audio/pcm",  # raw s16le mono, SAMPLE_RATE unless another output rate is asked for
}
SUPPORTED_INPUTS = "wav, flac, ogg, mp3"
DEFAULT_MAX_DECODED_SECONDS = 600.0
FFMPEG_TIMEOUT_SECONDS = 60.0
OPUS_SAMPLE_RATES = (8000, 12000, 16000, 24000, 48000)
# Output rates a client may ask for: the standard rates from 8 to 48 kHz. Every one is a rate mp3 (MPEG-1/2/2.5)
# and AAC can carry, and each reduces against 24 kHz to a small ratio, so torchaudio's filter bank stays small (an
# arbitrary rate such as 47981 Hz would need a 47981 x 24014 bank, about 4.6 GB).
OUTPUT_SAMPLE_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
# torchaudio.functional.resample's defaults, which StreamResampler relies on.
_LOWPASS_FILTER_WIDTH = 6
_ROLLOFF = 0.99
_MAX_RESAMPLE_RATIO_TERM = 1000  # common rates stay far below: 44.1 -> 24 kHz is 147:80, 176.4 -> 24 kHz 147:20

# (libsndfile format, subtype) for the formats soundfile writes; pcm is raw samples (no header).
_SOUNDFILE_FORMATS: dict[str, tuple[str, str]] = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
}


@dataclass(frozen=True)
class _Codec:
    container: str  # FFmpeg muxer
    encoder: str  # FFmpeg encoder
    sample_format: str  # the encoder's float input format: no quantisation before the codec
    bit_rate: int
    rates: tuple[int, ...]  # ascending
    stream_options: dict[str, str] = field(default_factory=dict)  # muxer options when streaming


# Bit rates for mono speech: mp3 and AAC at 64 kb/s, Opus at 32 kb/s are close to transparent for a voice.
_CODECS: dict[str, _Codec] = {
    "mp3": _Codec("mp3", "libmp3lame", "fltp", 64000, OUTPUT_SAMPLE_RATES),
    "aac": _Codec("adts", "aac", "fltp", 64000, OUTPUT_SAMPLE_RATES),
    # The Ogg muxer gathers packets into pages and writes a page once it spans page_duration (default 1 s, too late
    # for streaming). With 100 ms pages all but the last 100-200 ms of a streamed chunk goes out at once (the page
    # under way waits for the next packet), for about 2 kb/s of page headers (measured: 4162 against 3919 B/s).
    "opus": _Codec("ogg", "libopus", "flt", 32000, OPUS_SAMPLE_RATES, {"page_duration": "100000"}),
}
CODEC_FORMATS = frozenset(_CODECS)  # what CodecEncoder encodes
# Zero frames make no readable file in these formats (libsndfile writes 0 bytes or a broken header; an mp3, Ogg or
# ADTS stream without a packet is unreadable): they get one silent sample instead.
_NEEDS_ONE_FRAME = frozenset({"flac", "mp3", "opus", "aac"})


class AudioError(ValueError):
    """Audio a client sent cannot be used; the message starts with the field's name and states the limit."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem

    def __reduce__(self) -> tuple[type[AudioError], tuple[str, str]]:
        # Keeps the two-argument constructor working when the error crosses a process boundary (pickling).
        return (type(self), (self.field, self.problem))


# ----------------------------------------------------------------------------------------------------- decoding


def decode_audio(
    data: bytes,
    *,
    field: str = "reference_audio",
    max_decoded_seconds: float = DEFAULT_MAX_DECODED_SECONDS,
) -> tuple[np.ndarray, int]:
    """Decode a whole audio file held in memory to float32 samples shaped (frames, channels) and its sample rate.

    Raises AudioError for empty, unrecognised or truncated-before-any-audio data, and for audio longer than
    max_decoded_seconds (a small compressed file can expand to gigabytes of samples).
    """
    if not data:
        raise AudioError(field, f"no audio data was sent (supported: {SUPPORTED_INPUTS})")
    data = bytes(data)
    try:
        samples, sample_rate = _decode_with_soundfile(data, max_decoded_seconds, field)
    except sf.SoundFileError:
        samples, sample_rate = _decode_with_ffmpeg(data, max_decoded_seconds, field)
    if samples.shape[0] == 0 or samples.shape[1] == 0:
        raise AudioError(field, "the file contains no audio samples")
    return samples, sample_rate


def _undecodable(field: str, reason: str) -> AudioError:
    return AudioError(field, f"could not decode audio ({reason}; supported: {SUPPORTED_INPUTS})")


def _too_long(field: str, max_seconds: float) -> AudioError:
    return AudioError(field, f"decoded audio is longer than the {max_seconds:g} s maximum")


def _max_frames(max_seconds: float, sample_rate: int) -> int:
    return int(max_seconds * sample_rate)


def _decode_with_soundfile(data: bytes, max_seconds: float, field: str) -> tuple[np.ndarray, int]:
    with sf.SoundFile(io.BytesIO(data)) as audio_file:
        sample_rate = audio_file.samplerate
        limit = _max_frames(max_seconds, sample_rate)
        if audio_file.frames > limit:
            raise _too_long(field, max_seconds)
        # Read one frame past the limit: the header's frame count is only an estimate for some formats.
        samples = audio_file.read(frames=limit + 1, dtype="float32", always_2d=True)
    if samples.shape[0] > limit:
        raise _too_long(field, max_seconds)
    return samples, sample_rate


def _decode_with_ffmpeg(data: bytes, max_seconds: float, field: str) -> tuple[np.ndarray, int]:
    ffmpeg, ffprobe = shutil.which("ffmpeg"), shutil.which("ffprobe")
    if ffmpeg is None or ffprobe is None:
        raise _undecodable(field, "format not recognised, and FFmpeg is not installed to try further")
    sample_rate, channels = _probe_audio_stream(ffprobe, data, field)
    # Decoding stops a second past the limit, so a decompression bomb never fills memory.
    command = [
        ffmpeg, "-v", "error", "-i", "pipe:0", "-map", "0:a:0", "-t", f"{max_seconds + 1:g}",
        "-f", "f32le", "-acodec", "pcm_f32le", "-ac", str(channels), "-ar", str(sample_rate), "pipe:1",
    ]  # fmt: skip
    result = _run_pipe(command, data, field)
    if result.returncode != 0:
        raise _undecodable(field, "not a recognised or complete audio file")
    samples = np.frombuffer(result.stdout, dtype="<f4")
    samples = samples[: samples.size - samples.size % channels].reshape(-1, channels).astype(np.float32)
    if samples.shape[0] > _max_frames(max_seconds, sample_rate):
        raise _too_long(field, max_seconds)
    return samples, sample_rate


def _probe_audio_stream(ffprobe: str, data: bytes, field: str) -> tuple[int, int]:
    command = [
        ffprobe, "-v", "error", "-select_streams", "a:0",
        "-show_entries", "stream=sample_rate,channels", "-of", "json", "pipe:0",
    ]  # fmt: skip
    result = _run_pipe(command, data, field)
    try:
        stream = json.loads(result.stdout)["streams"][0]
        sample_rate, channels = int(stream["sample_rate"]), int(stream["channels"])
    except (ValueError, KeyError, IndexError, TypeError):
        raise _undecodable(field, "no audio stream found") from None
    if result.returncode != 0 or sample_rate <= 0 or channels <= 0:
        raise _undecodable(field, "no usable audio stream found")
    return sample_rate, channels


def _run_pipe(command: list[str], data: bytes, field: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(command, input=data, capture_output=True, timeout=FFMPEG_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        raise _undecodable(field, f"decoding took longer than {FFMPEG_TIMEOUT_SECONDS:g} s") from None
    except OSError as error:
        raise _undecodable(field, f"FFmpeg could not run: {error.strerror}") from None


# ----------------------------------------------------------------------------------------------------- encoding


def output_rate(fmt: str, sample_rate: int, out_rate: int | None = None) -> int:
    """The sample rate that encode_audio (and a StreamEncoder) writes for these arguments.

    The wanted rate is out_rate, else SAMPLE_RATE for pcm and the samples' own rate for the others. mp3, aac and opus
    carry a fixed set of rates: they get the lowest one at or above the wanted rate (no bandwidth is lost; above
    their highest rate, that one). For opus that means 44.1 kHz -> 48 kHz and 22.05/32 kHz -> 24/48 kHz; Opus
    decoders (FFmpeg, browsers) output 48 kHz whatever rate the stream's header names anyway.
    """
    if fmt not in MEDIA_TYPES:
        raise ValueError(f"unknown audio format {fmt!r}; expected one of {', '.join(MEDIA_TYPES)}")
    if out_rate is not None:
        check_output_rate(out_rate)
    wanted = out_rate or (SAMPLE_RATE if fmt == "pcm" else sample_rate)
    codec = _CODECS.get(fmt)
    if codec is None:
        return wanted
    return next((rate for rate in codec.rates if rate >= wanted), codec.rates[-1])


def check_output_rate(out_rate: int, *, field: str = "sample_rate") -> int:
    """Return out_rate if it is one of OUTPUT_SAMPLE_RATES, else raise AudioError naming the field and the rates."""
    if isinstance(out_rate, bool) or not isinstance(out_rate, int) or out_rate not in OUTPUT_SAMPLE_RATES:
        allowed = ", ".join(str(rate) for rate in OUTPUT_SAMPLE_RATES)
        raise AudioError(field, f"{out_rate!r} Hz is not a supported output rate (one of {allowed})")
    return out_rate


def encode_audio(samples: np.ndarray, sample_rate: int, fmt: str, *, out_rate: int | None = None) -> bytes:
    """Encode 1-D float samples in [-1, 1] as a complete file (or raw stream for pcm) in the given format.

    Samples are cleaned (NaN to 0) and clipped to [-1, 1], then resampled (torchaudio, see resample) to
    output_rate(fmt, sample_rate, out_rate). wav, flac and pcm carry exactly the same 16-bit values. Empty input
    gives a header-only wav, empty pcm, and a one-silent-sample flac/mp3/opus/aac (the shortest file those formats
    can validly hold).
    """
    rate = output_rate(fmt, sample_rate, out_rate)
    mono = _prepare_samples(samples, sample_rate, rate)
    if fmt == "pcm":
        return to_pcm16(mono).tobytes()
    if mono.size == 0 and fmt in _NEEDS_ONE_FRAME:
        mono = np.zeros(1, dtype=np.float32)
    if fmt in _CODECS:
        # A seekable buffer lets the mp3 muxer go back and write its Xing/LAME header (frame count, encoder delay
        # and padding), so decoders trim the encoder's padding and report the true duration.
        encoder = CodecEncoder(fmt, rate, streaming=False)
        return encoder.start() + encoder.encode(mono) + encoder.finish()
    format_name, subtype = _SOUNDFILE_FORMATS[fmt]
    buffer = io.BytesIO()
    # 16-bit formats get our own integer samples, so wav, flac and pcm carry exactly the same values.
    sf.write(buffer, to_pcm16(mono), rate, format=format_name, subtype=subtype)
    return buffer.getvalue()


def _prepare_samples(samples: np.ndarray, sample_rate: int, rate: int) -> np.ndarray:
    """Clean 1-D samples (NaN to 0, clip to [-1, 1]), resample them to rate, and clip again (a band-limited
    resampler overshoots a little on full-scale edges)."""
    mono = clean_mono(samples)
    if rate == sample_rate:
        return mono
    return np.clip(resample(mono, sample_rate, rate, float64=True), -1.0, 1.0)


def clean_mono(samples: np.ndarray) -> np.ndarray:
    mono = np.asarray(samples, dtype=np.float32)
    if mono.ndim != 1:
        raise ValueError(f"expected 1-D mono samples, got shape {mono.shape}")
    # Clip before any integer conversion: libsndfile wraps out-of-range floats instead of saturating.
    return np.clip(np.nan_to_num(mono, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)


def to_pcm16(mono: np.ndarray) -> np.ndarray:
    # Scale by 32768, the inverse of decoding (int / 32768), so a decoded 16-bit signal re-encodes bit for bit;
    # only +1.0 itself saturates, to 32767.
    return np.clip(np.round(mono * 32768.0), -32768, 32767).astype("<i2")


class _ByteSink:
    """A write-only, unseekable file for PyAV: what the muxer writes is collected until drained.

    Without seek()/tell() PyAV marks the output unseekable: muxers then write what they can at once and never go
    back to patch a header."""

    def __init__(self) -> None:
        self._data = bytearray()

    def write(self, data: bytes) -> int:
        self._data += data
        return len(data)

    def drain(self) -> bytes:
        data = bytes(self._data)
        self._data.clear()
        return data


class CodecEncoder:
    """mp3, opus or aac through PyAV, fed float32 mono chunks at a fixed rate.

    streaming=True writes to an unseekable sink and every call returns the bytes muxed since the previous one;
    streaming=False writes to a seekable buffer (so the muxer can finish its header) and only finish() returns
    the whole file. Call start(), then encode() any number of times, then finish() once.
    """

    def __init__(self, fmt: str, sample_rate: int, *, streaming: bool) -> None:
        codec = _CODECS[fmt]
        if sample_rate not in codec.rates:
            raise ValueError(f"{fmt} cannot carry {sample_rate} Hz (rates: {codec.rates})")
        self._buffer: _ByteSink | io.BytesIO = _ByteSink() if streaming else io.BytesIO()
        # flush_packets: write each packet through to the sink at once (FFmpeg's "auto" does so for an unseekable
        # output too, but only by its own choice).
        options = {"flush_packets": "1", **codec.stream_options} if streaming else {}
        self._container = av.open(self._buffer, "w", format=codec.container, options=options)
        self._stream = self._container.add_stream(codec.encoder, rate=sample_rate, layout="mono")
        self._stream.codec_context.format = codec.sample_format
        self._stream.bit_rate = codec.bit_rate
        self._sample_rate = sample_rate
        self._next_pts = 0
        self._finished = False

    def start(self) -> bytes:
        """Open the encoder and write the container header (an ID3 tag for mp3, the OpusHead and OpusTags pages;
        nothing for ADTS)."""
        self._container.start_encoding()
        return self._drain()

    def encode(self, mono: np.ndarray) -> bytes:
        if self._finished:
            raise RuntimeError("the encoder is finished")
        if mono.size:
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(mono, dtype=np.float32)[np.newaxis, :], format="flt", layout="mono"
            )
            frame.sample_rate = self._sample_rate
            frame.pts = self._next_pts
            self._next_pts += mono.size
            self._container.mux(self._stream.encode(frame))
        return self._drain()

    def finish(self) -> bytes:
        """Flush the encoder's buffered samples and write the container trailer."""
        if self._finished:
            return b""
        self._finished = True
        self._container.mux(self._stream.encode(None))
        self._container.close()
        if isinstance(self._buffer, io.BytesIO):
            return self._buffer.getvalue()
        return self._buffer.drain()

    def close(self) -> None:
        """Abandon the encoding (a client went away): free the encoder; whatever it still held is dropped."""
        if not self._finished:
            self._finished = True
            self._container.close()

    def _drain(self) -> bytes:
        return self._buffer.drain() if isinstance(self._buffer, _ByteSink) else b""


# --------------------------------------------------------------------------------------------------- resampling


def resample(mono: np.ndarray, from_rate: int, to_rate: int, *, float64: bool = False) -> np.ndarray:
    """Band-limited resampling of 1-D float32 samples, the same filter as upstream's torchaudio Resample.

    float64=True computes in double precision and returns float32. Output audio uses it: torch's conv1d picks
    its algorithm by input length, so in float32 a signal resampled whole and in pieces differ in the last bit
    (then in a 16-bit sample now and then); in float64 those differences vanish when rounded to float32, so a
    streamed answer carries the same samples as the whole file (tests/test_audio_stream.py checks it).
    """
    if from_rate == to_rate or mono.size == 0:
        return mono.astype(np.float32, copy=False)
    waveform = torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float64 if float64 else np.float32))
    resampled = torchaudio.functional.resample(waveform, _tractable_rate(from_rate, to_rate), to_rate)
    return resampled.numpy().astype(np.float32, copy=False)


def _tractable_rate(from_rate: int, to_rate: int) -> int:
    """from_rate, or the nearest multiple of 100 Hz when the two rates share no useful common factor.

    torchaudio builds a (to/gcd) x (from/gcd) filter bank: 44101 -> 24000 Hz would need about 4 GB. Only broken or
    hostile files carry such rates; reading them 100 Hz-aligned shifts pitch by at most 0.6 % (at 8 kHz).
    """
    common = math.gcd(from_rate, to_rate)
    if max(from_rate, to_rate) // common <= _MAX_RESAMPLE_RATIO_TERM:
        return from_rate
    return max(100, round(from_rate / 100) * 100)


class StreamResampler:
    """``resample(..., float64=True)`` applied chunk by chunk, giving the same samples as on the whole signal.

    torchaudio's resampler computes its output in blocks: with the rates reduced by their gcd to ``o`` input and
    ``n`` output samples per block, block ``i`` depends only on input samples ``[i*o - width, (i+1)*o + width)``
    (zeros outside the signal). A block is computed once all its input has arrived, by resampling a slice that
    starts a whole number of blocks earlier (so the slice's blocks line up with the signal's) and reaches
    ``width`` past it; ``flush()`` computes the rest with the signal's true end. The only delay is ``width``
    input samples (under 1 ms for every supported output rate).
    """

    def __init__(self, from_rate: int, to_rate: int) -> None:
        self.from_rate, self.to_rate = from_rate, to_rate
        self._passthrough = from_rate == to_rate
        effective = _tractable_rate(from_rate, to_rate)  # the rate resample() itself will use
        common = math.gcd(effective, to_rate)
        self._block_in, self._block_out = effective // common, to_rate // common
        width = math.ceil(
            _LOWPASS_FILTER_WIDTH * self._block_in / (min(self._block_in, self._block_out) * _ROLLOFF)
        )
        self._context = width + 1  # one sample of margin against float rounding in the formula above
        self._context_blocks = math.ceil(self._context / self._block_in)
        self._pending = np.zeros(0, dtype=np.float32)  # input from sample self._pending_start on
        self._pending_start = 0
        self._received = 0
        self._next_block = 0

    def push(self, mono: np.ndarray) -> np.ndarray:
        """Add input; return every output sample that no later input can change."""
        if self._passthrough:
            return mono.astype(np.float32, copy=False)
        self._pending = np.concatenate([self._pending, mono.astype(np.float32, copy=False)])
        self._received += mono.size
        # Block i is final once the input reaches (i + 1) * o + context: blocks [next, complete) are final now.
        complete = (self._received - self._context) // self._block_in
        if complete <= self._next_block:
            return np.zeros(0, dtype=np.float32)
        return self._blocks(complete, end=complete * self._block_in + self._context)

    def flush(self) -> np.ndarray:
        """Return the rest of the output, computed with the signal's true end (zeros after it), as resample() does."""
        if self._passthrough:
            return np.zeros(0, dtype=np.float32)
        total_blocks = math.ceil(self._received / self._block_in)  # resample() keeps ceil(n * length / o) samples
        total_samples = math.ceil(self._block_out * self._received / self._block_in)
        if total_blocks <= self._next_block:
            return np.zeros(0, dtype=np.float32)
        done = self._next_block * self._block_out
        return self._blocks(total_blocks, end=self._received)[: total_samples - done]

    def _blocks(self, until: int, end: int) -> np.ndarray:
        """Output blocks [next, until), resampling the input from `context` blocks before them up to `end`."""
        first = max(0, self._next_block - self._context_blocks)  # a whole block earlier: slice blocks line up
        start = first * self._block_in
        piece = self._pending[start - self._pending_start : end - self._pending_start]
        resampled = resample(piece, self.from_rate, self.to_rate, float64=True)
        out = resampled[(self._next_block - first) * self._block_out : (until - first) * self._block_out]
        self._next_block = until
        keep_from = max(0, until - self._context_blocks) * self._block_in  # the next blocks' left context
        self._pending = self._pending[keep_from - self._pending_start :]
        self._pending_start = keep_from
        return out
