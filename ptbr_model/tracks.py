"""Long audio tracks on disk: written piece by piece (a job's result can last hours, more than memory should hold)
and transcoded block by block into any output format.

A track is a mono 16-bit WAV (what ``encode_audio(..., "wav")`` answers too). ``TrackWriter`` writes it under a
temporary name and publishes it with fsync + rename, so a crash never leaves half a track under the real name. A
full disk comes out as the OSError (ENOSPC/EDQUOT) it is, not as libsndfile's "System error." (durable.py).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import numpy as np
import soundfile as sf

from ptbr_model.durable import ErrnoKeepingFile
from ptbr_model.durable import fsync_dir as _fsync_dir

__all__ = ["EDGE_FADE_S", "TrackWriter", "edge_faded", "transcode_track"]

# Chunks are generated separately and joined by silence: a few ms of fade at each edge keeps the cut from clicking.
EDGE_FADE_S = 0.005
_BLOCK_SECONDS = 10


def edge_faded(wave: np.ndarray, sample_rate: int, fade_s: float = EDGE_FADE_S) -> np.ndarray:
    """``wave`` with linear fades of ``fade_s`` at both ends (shorter waves get shorter fades)."""
    wave = np.array(wave, dtype=np.float32)
    fade = min(int(fade_s * sample_rate), len(wave) // 2)
    if fade > 0:
        ramp = np.linspace(0.0, 1.0, fade, endpoint=False, dtype=np.float32)
        wave[:fade] *= ramp
        wave[-fade:] *= ramp[::-1]
    return wave


class TrackWriter:
    """Append audio and silence to a new WAV at ``path``; ``commit()`` publishes it, ``abort()`` drops it."""

    def __init__(self, path: Path, sample_rate: int, subtype: str = "PCM_16") -> None:
        self.path = Path(path)
        self.sample_rate = sample_rate
        self._temporary = self.path.with_name(f".tmp-{secrets.token_hex(4)}-{self.path.name}")
        self._raw = ErrnoKeepingFile(open(self._temporary, "xb", buffering=0))
        try:
            self._file = sf.SoundFile(self._raw, "w", samplerate=sample_rate, channels=1, format="WAV",
                                      subtype=subtype)
        except BaseException as exc:
            self._raw.close()
            self._temporary.unlink(missing_ok=True)
            self._raw.raise_kept(exc)
            raise
        self.samples = 0
        if self._raw.error is not None:  # libsndfile does not check the header's first write
            error = self._raw.error
            self.abort()
            raise error

    @property
    def seconds(self) -> float:
        return self.samples / self.sample_rate

    def write(self, wave: np.ndarray) -> None:
        wave = np.clip(np.nan_to_num(np.asarray(wave, dtype=np.float32)), -1.0, 1.0)
        if wave.size:
            try:
                self._file.write(wave)
            except (sf.LibsndfileError, AssertionError) as exc:  # AssertionError: soundfile's short-write check
                self._raw.raise_kept(exc)
                raise
            self.samples += wave.size

    def silence(self, samples: int) -> None:
        block = self.sample_rate * _BLOCK_SECONDS
        while samples > 0:
            size = min(samples, block)
            self.write(np.zeros(size, dtype=np.float32))
            samples -= size

    def pad_to(self, sample: int) -> None:
        """Silence up to ``sample`` (nothing when the track is already there)."""
        self.silence(sample - self.samples)

    def commit(self) -> None:
        try:
            self._file.close()  # writes the WAV header's sizes
        except (sf.LibsndfileError, AssertionError) as exc:  # AssertionError: soundfile's short-write check
            self._raw.raise_kept(exc)
            raise
        self._raw.raise_kept(RuntimeError("the WAV header could not be written"))
        os.fsync(self._raw.fileno())
        self._raw.close()
        os.replace(self._temporary, self.path)
        _fsync_dir(self.path.parent)

    def abort(self) -> None:
        try:
            if not self._file.closed:
                self._file.close()
        except (sf.LibsndfileError, AssertionError, OSError):
            pass  # the file is dropped anyway
        finally:
            self._raw.close()  # unbuffered: nothing left to write
            self._temporary.unlink(missing_ok=True)


def transcode_track(source: Path, target: Path, fmt: str, out_rate: int | None = None) -> None:
    """Encode the WAV track ``source`` as ``fmt`` (wav, flac, pcm, mp3, opus, aac) at ``target``, block by block,
    resampled to ``output_rate(fmt, rate, out_rate)`` exactly as a whole-file ``encode_audio`` would resample."""
    from ptbr_model.audio_codec import StreamResampler, output_rate
    from ptbr_model.audio_stream import StreamEncoder

    info = sf.info(str(source))
    rate = output_rate(fmt, info.samplerate, out_rate)
    temporary = target.with_name(f".tmp-{secrets.token_hex(4)}-{target.name}")
    block = info.samplerate * _BLOCK_SECONDS
    try:
        if fmt in ("wav", "flac"):
            resampler = StreamResampler(info.samplerate, rate)
            with open(temporary, "xb", buffering=0) as raw_file:
                raw = ErrnoKeepingFile(raw_file)
                try:
                    with sf.SoundFile(raw, "w", samplerate=rate, channels=1, format=fmt.upper(),
                                      subtype="PCM_16") as out:
                        for piece in sf.blocks(str(source), blocksize=block, dtype="float32"):
                            out.write(np.clip(resampler.push(piece), -1.0, 1.0))
                        out.write(np.clip(resampler.flush(), -1.0, 1.0))
                except (sf.LibsndfileError, AssertionError) as exc:  # AssertionError: soundfile's short-write check
                    raw.raise_kept(exc)
                    raise
                raw.raise_kept(RuntimeError(f"the {fmt} file could not be finished"))
        else:
            encoder = StreamEncoder(fmt, info.samplerate, out_rate=out_rate)
            with open(temporary, "wb") as out:
                out.write(encoder.start())
                for piece in sf.blocks(str(source), blocksize=block, dtype="float32"):
                    out.write(encoder.encode(piece))
                out.write(encoder.finish())
        with open(temporary, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
