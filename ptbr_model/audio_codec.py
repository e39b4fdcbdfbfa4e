"""Decode uploaded audio and encode synthesized audio, entirely in memory.

The soundfile wheel bundles libsndfile 1.2, which reads and writes wav, flac, ogg (vorbis, opus) and mp3 by itself.
FFmpeg, driven through pipes, is only the fallback for what libsndfile does not know (webm from browsers, m4a, ...).
"""

from __future__ import annotations

import io
import json
import math
import shutil
import subprocess

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
    "pcm": "audio/pcm",  # raw s16le, SAMPLE_RATE, mono
}
SUPPORTED_INPUTS = "wav, flac, ogg, mp3"
DEFAULT_MAX_DECODED_SECONDS = 600.0
FFMPEG_TIMEOUT_SECONDS = 60.0
OPUS_SAMPLE_RATES = (8000, 12000, 16000, 24000, 48000)
_MAX_RESAMPLE_RATIO_TERM = 1000  # common rates stay far below: 44.1 -> 24 kHz is 147:80, 176.4 -> 24 kHz 147:20

# (libsndfile format, subtype) per response format; pcm is written by hand (no header).
_SOUNDFILE_FORMATS: dict[str, tuple[str, str]] = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
    "opus": ("OGG", "OPUS"),
}
# Same formats through FFmpeg, for a libsndfile built without mp3/opus.
_FFMPEG_OUTPUT_ARGS: dict[str, list[str]] = {
    "mp3": ["-c:a", "libmp3lame", "-f", "mp3"],
    "opus": ["-c:a", "libopus", "-f", "ogg"],
}
# libsndfile cannot write a readable zero-frame stream in these formats (it writes 0 bytes or a broken header).
_NEEDS_ONE_FRAME = frozenset({"flac", "mp3", "opus"})


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


def encode_audio(samples: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """Encode 1-D float samples in [-1, 1] as a complete file (or raw stream for pcm) in the given format.

    Samples are cleaned (NaN to 0) and clipped to [-1, 1] first. pcm is always SAMPLE_RATE and opus always one of
    OPUS_SAMPLE_RATES, so other rates are resampled for those two. Empty input gives a header-only wav, empty pcm,
    and a one-silent-sample flac/mp3/opus (the shortest file those formats can validly hold).
    """
    if fmt not in MEDIA_TYPES:
        raise ValueError(f"unknown audio format {fmt!r}; expected one of {', '.join(MEDIA_TYPES)}")
    mono = _clean_mono(samples)
    if fmt == "pcm":
        return _to_pcm16(resample(mono, sample_rate, SAMPLE_RATE)).tobytes()
    if fmt == "opus" and sample_rate not in OPUS_SAMPLE_RATES:
        mono, sample_rate = resample(mono, sample_rate, 48000), 48000
    if mono.size == 0 and fmt in _NEEDS_ONE_FRAME:
        mono = np.zeros(1, dtype=np.float32)
    format_name, subtype = _SOUNDFILE_FORMATS[fmt]
    if not sf.check_format(format_name, subtype):
        return _encode_with_ffmpeg(mono, sample_rate, fmt)
    # 16-bit formats get our own integer samples, so wav, flac and pcm carry exactly the same values.
    data = _to_pcm16(mono) if subtype == "PCM_16" else mono
    buffer = io.BytesIO()
    sf.write(buffer, data, sample_rate, format=format_name, subtype=subtype)
    return buffer.getvalue()


def _clean_mono(samples: np.ndarray) -> np.ndarray:
    mono = np.asarray(samples, dtype=np.float32)
    if mono.ndim != 1:
        raise ValueError(f"expected 1-D mono samples, got shape {mono.shape}")
    # Clip before any integer conversion: libsndfile wraps out-of-range floats instead of saturating.
    return np.clip(np.nan_to_num(mono, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)


def _to_pcm16(mono: np.ndarray) -> np.ndarray:
    # Scale by 32768, the inverse of decoding (int / 32768), so a decoded 16-bit signal re-encodes bit for bit;
    # only +1.0 itself saturates, to 32767.
    return np.clip(np.round(mono * 32768.0), -32768, 32767).astype("<i2")


def _encode_with_ffmpeg(mono: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None or fmt not in _FFMPEG_OUTPUT_ARGS:
        raise RuntimeError(f"cannot encode {fmt}: this libsndfile lacks it and FFmpeg is not installed")
    command = [
        ffmpeg, "-v", "error", "-f", "f32le", "-ar", str(sample_rate), "-ac", "1", "-i", "pipe:0",
        *_FFMPEG_OUTPUT_ARGS[fmt], "pipe:1",
    ]  # fmt: skip
    result = subprocess.run(
        command, input=mono.astype("<f4").tobytes(), capture_output=True, timeout=FFMPEG_TIMEOUT_SECONDS, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"FFmpeg failed to encode {fmt}: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout


# --------------------------------------------------------------------------------------------------- resampling


def resample(mono: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Band-limited resampling of 1-D float32 samples, the same filter as upstream's torchaudio Resample."""
    if from_rate == to_rate or mono.size == 0:
        return mono.astype(np.float32, copy=False)
    waveform = torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float32))
    return torchaudio.functional.resample(waveform, _tractable_rate(from_rate, to_rate), to_rate).numpy()


def _tractable_rate(from_rate: int, to_rate: int) -> int:
    """from_rate, or the nearest multiple of 100 Hz when the two rates share no useful common factor.

    torchaudio builds a (to/gcd) x (from/gcd) filter bank: 44101 -> 24000 Hz would need about 4 GB. Only broken or
    hostile files carry such rates; reading them 100 Hz-aligned shifts pitch by at most 0.6 % (at 8 kHz).
    """
    common = math.gcd(from_rate, to_rate)
    if max(from_rate, to_rate) // common <= _MAX_RESAMPLE_RATIO_TERM:
        return from_rate
    return max(100, round(from_rate / 100) * 100)
