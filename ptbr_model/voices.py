"""Saved voices on the data directory: crash-safe, and shared by several service processes (replicas) at once.

Layout under ``root`` (``<PTBR_DATA_DIR>/voices``)::

    <id>/reference.wav   the prepared reference, 24 kHz mono, WAV FLOAT (lossless: samples come back bit-exact)
    <id>/meta.json       the metadata (``schema`` 1), written last inside the temporary folder
    .lock                flock(2) target: every create/rename/delete holds it exclusively
    .generation          "<counter> <random>", replaced under the lock after every change: other processes read it
                         (one small read per call) to know their in-memory index is stale
    .tmp-*               a voice or a meta.json being written (ignored; removed once older than ``stale_tmp_age_s``)
    .trash-*             a deleted voice being removed (ignored; removed by whoever sees it)

Crash safety: a voice is written into ``.tmp-<random>/``, each file and the folder are fsynced, then one
``rename(2)`` makes it appear whole and the root is fsynced; a kill at any moment leaves the whole voice or none.
A rename rewrites meta.json through a temporary file and ``os.replace``; a delete renames the folder to ``.trash-…``
(the voice vanishes in one step) before removing it.

Nothing a client sends is used as a path: ids are server-made slugs matched against ``ID_PATTERN`` before any path
is built, and names are only compared with stored metadata.

Cost of a call: the index lives in memory; every call reads ``.generation`` and stats the root (tens of µs) and
re-scans only when either changed. A re-scan stats each voice's two files and re-reads only the meta.json files
whose (inode, mtime, size) changed, so a change costs a few ms even with 1000 voices. Folders edited by hand
(not through a VoiceLibrary) are caught too: a hit whose meta.json changed re-scans, and so does a miss, at most
once a second (a stream of unknown names cannot force a re-scan per request). Listing does not hash audio:
the scan checks the audio file's size against meta.json, and ``load_wave`` checks its sha256 before returning it.

Needs flock(2) to work between the processes sharing the folder: true on a local filesystem (replicas on one node)
and on NFSv4 from Linux clients; check it before putting the folder on another network filesystem.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import logging
import os
import re
import secrets
import shutil
import stat
import string
import threading
import time
import unicodedata
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import soundfile as sf

from ptbr_model.durable import fsync_dir as _fsync_dir

__all__ = [
    "ID_PATTERN",
    "SAMPLE_RATE",
    "InvalidVoiceName",
    "Voice",
    "VoiceError",
    "VoiceLibrary",
    "VoiceLimitReached",
    "VoiceNameTaken",
    "VoiceNotFound",
]

log = logging.getLogger("ptbr.voices")

# Same value as ptbr_model.audio_codec.SAMPLE_RATE (a test checks it); not imported from there because that module
# pulls in torch, and this one stays stdlib + numpy + soundfile.
SAMPLE_RATE = 24000

ID_PREFIX = "v_"
_ID_ALPHABET = string.ascii_lowercase + string.digits
_ID_LENGTH = 10
ID_PATTERN = re.compile(r"v_[a-z0-9]{10}")

SCHEMA_VERSION = 1
META_FILE = "meta.json"
AUDIO_FILE = "reference.wav"
_LOCK_FILE = ".lock"
_GENERATION_FILE = ".generation"
_TMP_PREFIX = ".tmp-"
_TRASH_PREFIX = ".trash-"

# Characters allowed in a name besides letters, digits (and the combining marks of decomposed accents).
_NAME_PUNCTUATION = frozenset(" -_.")
_MISS_RESCAN_INTERVAL_S = 1.0
_SIZE_MISMATCH = "reference.wav size differs from meta.json (truncated or replaced)"
_NAME_RULE = "letters (accents allowed), digits, spaces, '-', '_' and '.', with no space at either end"


# ---------------------------------------------------------------------------------------------------- errors


class VoiceError(ValueError):
    """A voice request cannot be done; the message starts with the field's name and states the limit.

    ``status_code`` is the HTTP status the service should answer with (a hint: this module knows no HTTP)."""

    status_code = 400

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem

    def __reduce__(self) -> tuple[type[VoiceError], tuple[str, str]]:
        # Keeps the two-argument constructor working when the error crosses a process boundary (pickling).
        return (type(self), (self.field, self.problem))


class VoiceNotFound(VoiceError):
    status_code = 404


class VoiceNameTaken(VoiceError):
    status_code = 409


class VoiceLimitReached(VoiceError):
    status_code = 400


class InvalidVoiceName(VoiceError):
    status_code = 400


def _shown(text: str, limit: int = 80) -> str:
    """A client's string quoted for an error message, cut so a huge value cannot bloat the answer."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


# ---------------------------------------------------------------------------------------------------- the record


@dataclass(frozen=True)
class Voice:
    """One saved voice. ``sha256`` is the hex digest of the stored ``reference.wav`` file's bytes."""

    id: str
    name: str
    reference_text: str
    model_text: str
    removed_characters: tuple[str, ...]
    duration_s: float
    sha256: str
    created_at: str  # ISO 8601, UTC, microseconds, "Z" suffix: sorts as text in time order
    source_format: str
    description: str | None = None
    language: str | None = None
    sample_rate: int = SAMPLE_RATE

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; holds no filesystem path."""
        data = asdict(self)
        data["removed_characters"] = list(self.removed_characters)
        return data


@dataclass(frozen=True)
class _Entry:
    voice: Voice
    audio_bytes: int
    signature: tuple[int, ...]  # (inode, mtime_ns, size) of meta.json then of reference.wav


def _name_key(name: str) -> str:
    """What uniqueness compares: NFC then casefold, so "ANA JÚLIA", "ana júlia" and a decomposed "u+◌́" all clash."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


def is_voice_id(text: str) -> bool:
    return ID_PATTERN.fullmatch(text) is not None


def _new_id() -> str:
    return ID_PREFIX + "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------------------------------------------- fs helpers


def _write_file(path: Path, data: bytes) -> None:
    """Create ``path`` (it must not exist), write ``data`` and fsync it."""
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _meta_bytes(meta: dict[str, Any]) -> bytes:
    return (json.dumps(meta, ensure_ascii=False, indent=1, sort_keys=True) + "\n").encode("utf-8")


def _regular_file_stat(path: str, dir_fd: int) -> os.stat_result:
    """lstat that refuses anything but a regular file (a symlink planted in the volume is never followed)."""
    st = os.lstat(path, dir_fd=dir_fd)
    if not stat.S_ISREG(st.st_mode):
        raise _Corrupt(f"{os.path.basename(path)} is not a regular file")
    return st


class _Corrupt(Exception):
    """An entry on disk cannot be served; the message says why (never holds transcripts)."""


_META_TYPES: dict[str, tuple[type, ...]] = {
    "schema": (int,),
    "id": (str,),
    "name": (str,),
    "reference_text": (str,),
    "model_text": (str,),
    "removed_characters": (list,),
    "duration_s": (int, float),
    "num_samples": (int,),
    "sha256": (str,),
    "audio_bytes": (int,),
    "created_at": (str,),
    "source_format": (str,),
    "description": (str, type(None)),
    "language": (str, type(None)),
    "sample_rate": (int,),
}


def _parse_meta(raw: bytes, folder: str) -> tuple[Voice, int]:
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _Corrupt(f"meta.json is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(meta, dict):
        raise _Corrupt("meta.json is not an object")
    for key, types in _META_TYPES.items():
        if key not in meta:
            raise _Corrupt(f"meta.json lacks {key!r}")
        value = meta[key]
        if isinstance(value, bool) or not isinstance(value, types):
            raise _Corrupt(f"meta.json field {key!r} has the wrong type")
    if meta["schema"] != SCHEMA_VERSION:
        raise _Corrupt(f"meta.json schema {meta['schema']} is not {SCHEMA_VERSION}")
    if meta["id"] != folder:
        raise _Corrupt("meta.json id does not match its folder")
    if not meta["name"] or meta["name"] != meta["name"].strip():
        raise _Corrupt("meta.json name is empty or padded")
    if not all(isinstance(c, str) for c in meta["removed_characters"]):
        raise _Corrupt("meta.json removed_characters is not a list of strings")
    if re.fullmatch(r"[0-9a-f]{64}", meta["sha256"]) is None:
        raise _Corrupt("meta.json sha256 is not a hex digest")
    if meta["sample_rate"] != SAMPLE_RATE or meta["num_samples"] <= 0 or meta["audio_bytes"] <= 0:
        raise _Corrupt("meta.json audio description is impossible")
    try:
        datetime.fromisoformat(meta["created_at"])
    except ValueError:
        raise _Corrupt("meta.json created_at is not ISO 8601") from None
    voice = Voice(
        id=meta["id"],
        name=meta["name"],
        reference_text=meta["reference_text"],
        model_text=meta["model_text"],
        removed_characters=tuple(meta["removed_characters"]),
        duration_s=float(meta["duration_s"]),
        sha256=meta["sha256"],
        created_at=meta["created_at"],
        source_format=meta["source_format"],
        description=meta["description"],
        language=meta["language"],
        sample_rate=meta["sample_rate"],
    )
    return voice, meta["audio_bytes"]


def _voice_meta(voice: Voice, audio_bytes: int, num_samples: int) -> dict[str, Any]:
    meta = voice.to_dict()
    meta.update(schema=SCHEMA_VERSION, audio_bytes=audio_bytes, num_samples=num_samples)
    return meta


# ---------------------------------------------------------------------------------------------------- the library


class VoiceLibrary:
    """Saved voices in ``root``; safe to use from several threads and from several processes on the same folder.

    ``before_commit`` is a test hook: called with the temporary folder once its files are written and fsynced, just
    before the rename that publishes the voice (the lock is not held then, so a paused writer blocks nobody).
    ``stale_tmp_age_s``: leftover ``.tmp-*`` entries older than this are removed (at start and during later scans);
    younger ones may belong to another live process still writing.
    """

    def __init__(
        self,
        root: Path,
        *,
        max_voices: int = 1000,
        name_max_chars: int = 64,
        before_commit: Callable[[Path], None] | None = None,
        stale_tmp_age_s: float = 60.0,
    ) -> None:
        if max_voices < 0:
            raise ValueError(f"max_voices must be >= 0, not {max_voices}")
        if name_max_chars < 1:
            raise ValueError(f"name_max_chars must be >= 1, not {name_max_chars}")
        self.root = Path(root)
        self.max_voices = max_voices
        self.name_max_chars = name_max_chars
        self.stale_tmp_age_s = stale_tmp_age_s
        self._before_commit = before_commit

        self._mutex = threading.RLock()  # guards the fields below; never held while waiting for the file lock
        self._token: tuple[Any, ...] | None = None  # (generation text, root mtime_ns) at the last scan
        self._entries: dict[str, _Entry] = {}
        self._by_name: dict[str, str] = {}  # name key -> id (the oldest voice when hand-copied folders clash)
        self._ordered: list[Voice] = []  # by (created_at, id)
        self._corrupt: dict[str, tuple[tuple[int, ...] | None, str]] = {}  # folder -> (signature, reason)
        self._bad_audio: dict[str, tuple[tuple[int, ...], str]] = {}  # id -> (audio signature, why) failed at load
        self._last_cleanup = 0.0
        self._scanned_at = 0.0  # time.monotonic() of the last re-scan

        existed = self.root.is_dir()
        self.root.mkdir(parents=True, exist_ok=True)
        if not existed:
            _fsync_dir(self.root.parent)
        self._cleanup()
        with self._mutex:
            self._refresh(force=True)

    # ------------------------------------------------------------------------------------------ public: read

    def list(self, offset: int = 0, limit: int = 50) -> tuple[list[Voice], int]:
        """One page of voices, oldest first (by created_at, then id), and the number of valid voices."""
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise VoiceError("offset", f"must be an integer >= 0, not {offset!r}")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise VoiceError("limit", f"must be an integer >= 0, not {limit!r}")
        with self._mutex:
            self._refresh()
            return self._ordered[offset : offset + limit], len(self._ordered)

    def count(self) -> int:
        with self._mutex:
            self._refresh()
            return len(self._ordered)

    def get(self, id_or_name: str) -> Voice:
        """The voice whose id is ``id_or_name`` exactly, else whose name matches it case-insensitively."""
        with self._mutex:
            entry = self._lookup(id_or_name)
            return entry.voice

    def corrupt_entries(self) -> list[str]:
        """Folder names skipped at the last scan (bad or missing files), plus voices whose audio failed its sha256."""
        with self._mutex:
            self._refresh()
            return sorted(set(self._corrupt) | set(self._bad_audio))

    def load_wave(self, voice: Voice) -> np.ndarray:
        """The stored reference: 1-D float32 at 24 kHz, bit-exact what ``create`` got, checked against its sha256.

        A file that fails the check is treated as corrupt (warning, reported by ``corrupt_entries``) and never
        returned: ``VoiceNotFound``."""
        if not isinstance(voice, Voice) or not is_voice_id(voice.id):
            raise VoiceNotFound("voice", "not a saved voice")
        try:  # neither the folder nor the file may be a symlink planted in the volume
            folder_fd = os.open(self.root / voice.id, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                fd = os.open(AUDIO_FILE, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=folder_fd)
            finally:
                os.close(folder_fd)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                raise self._not_found(voice.id) from None
            raise
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            expected = self._expected_audio_bytes(voice)
            data = f.read() if expected is None or st.st_size == expected else None
        signature = (st.st_ino, st.st_mtime_ns, st.st_size)
        if data is None:
            self._mark_bad_audio(voice.id, signature, _SIZE_MISMATCH)
            raise self._not_found(voice.id)
        if hashlib.sha256(data).hexdigest() != voice.sha256:
            self._mark_bad_audio(voice.id, signature, "reference.wav fails its sha256 (changed after it was stored)")
            raise self._not_found(voice.id)
        try:
            wave, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
        except (sf.LibsndfileError, RuntimeError) as exc:  # cannot happen unless meta.json's digest was forged too
            self._mark_bad_audio(voice.id, signature, f"reference.wav does not decode ({type(exc).__name__})")
            raise self._not_found(voice.id) from None
        if rate != SAMPLE_RATE or wave.ndim != 1:
            self._mark_bad_audio(voice.id, signature, "reference.wav is not 24 kHz mono")
            raise self._not_found(voice.id)
        return wave

    # ------------------------------------------------------------------------------------------ public: write

    def create(
        self,
        name: str,
        wave: np.ndarray,
        reference_text: str,
        model_text: str,
        removed_characters: list[str],
        source_format: str,
        description: str | None = None,
        language: str | None = None,
    ) -> Voice:
        """Store a prepared reference (1-D float32, 24 kHz) under a new server-made id; the voice appears whole."""
        name = self._check_name(name)
        wave = self._check_wave(wave)
        for field, value in (("reference_text", reference_text), ("model_text", model_text),
                             ("source_format", source_format)):
            if not isinstance(value, str):
                raise VoiceError(field, "must be a string")
        for field, value in (("description", description), ("language", language)):
            if value is not None and not isinstance(value, str):
                raise VoiceError(field, "must be a string or absent")
        if not isinstance(removed_characters, (list, tuple)) or not all(isinstance(c, str) for c in removed_characters):
            raise VoiceError("removed_characters", "must be a list of strings")

        # Fail early, before writing anything, when the answer is already known; re-checked under the lock.
        with self._mutex:
            self._refresh()
            self._check_room_and_name(name, exclude_id=None)

        buffer = io.BytesIO()
        sf.write(buffer, wave, SAMPLE_RATE, subtype="FLOAT", format="WAV")
        audio = buffer.getvalue()
        voice_id = _new_id()
        voice = Voice(
            id=voice_id,
            name=name,
            reference_text=reference_text,
            model_text=model_text,
            removed_characters=tuple(removed_characters),
            duration_s=round(wave.shape[0] / SAMPLE_RATE, 6),
            sha256=hashlib.sha256(audio).hexdigest(),
            created_at=_utc_now(),
            source_format=source_format,
            description=description,
            language=language,
        )

        tmp = self.root / f"{_TMP_PREFIX}{secrets.token_hex(8)}"
        tmp.mkdir()
        try:
            _write_file(tmp / AUDIO_FILE, audio)
            _write_file(tmp / META_FILE, _meta_bytes(_voice_meta(voice, len(audio), int(wave.shape[0]))))
            _fsync_dir(tmp)
            if self._before_commit is not None:
                self._before_commit(tmp)
            with self._file_lock():
                with self._mutex:
                    self._refresh(force=True)
                    self._check_room_and_name(name, exclude_id=None)
                    if os.path.lexists(self.root / voice_id):  # 36^10 ids: only a planted folder gets here
                        raise RuntimeError(f"voice id {voice_id} already on disk")
                os.rename(tmp, self.root / voice_id)
                self._bump_generation()
                _fsync_dir(self.root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("voice %s created (%.2f s of audio)", voice_id, voice.duration_s)
        with self._mutex:
            self._refresh()
        return voice

    def rename(self, id_or_name: str, new_name: str) -> Voice:
        new_name = self._check_name(new_name)
        with self._file_lock():
            with self._mutex:
                self._refresh(force=True)
                entry = self._lookup(id_or_name, refreshed=True)
                self._check_name_free(new_name, exclude_id=entry.voice.id)
            old = entry.voice
            voice = replace(old, name=new_name)
            folder = self.root / old.id
            try:  # rewrite the stored meta.json (the scan just validated it), keeping any field we do not know
                meta = {**json.loads((folder / META_FILE).read_bytes()), "name": new_name}
            except (OSError, ValueError):
                raise self._not_found(old.id) from None
            # The temporary file sits in the root so the start-up cleanup finds it after a crash.
            tmp = self.root / f"{_TMP_PREFIX}{secrets.token_hex(8)}.json"
            try:
                _write_file(tmp, _meta_bytes(meta))
                os.replace(tmp, folder / META_FILE)
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
            _fsync_dir(folder)
            self._bump_generation()
            _fsync_dir(self.root)
        log.info("voice %s renamed", old.id)
        with self._mutex:
            self._refresh()
        return voice

    def delete(self, id_or_name: str) -> Voice:
        """Remove a voice; it vanishes in one rename, then its files are removed. Returns what was deleted."""
        with self._file_lock():
            with self._mutex:
                self._refresh(force=True)
                entry = self._lookup(id_or_name, refreshed=True)
            trash = self.root / f"{_TRASH_PREFIX}{entry.voice.id}-{secrets.token_hex(4)}"
            os.rename(self.root / entry.voice.id, trash)
            self._bump_generation()
            _fsync_dir(self.root)
        shutil.rmtree(trash, ignore_errors=True)
        log.info("voice %s deleted", entry.voice.id)
        with self._mutex:
            self._bad_audio.pop(entry.voice.id, None)
            self._refresh()
        return entry.voice

    # ------------------------------------------------------------------------------------------ validation

    def _check_name(self, name: Any) -> str:
        if not isinstance(name, str):
            raise InvalidVoiceName("name", f"must be a string of 1 to {self.name_max_chars} characters: {_NAME_RULE}")
        rule = f"must be 1 to {self.name_max_chars} characters: {_NAME_RULE}"
        if len(name) > 4 * self.name_max_chars:  # hopeless: answer before normalising a huge string
            raise InvalidVoiceName("name", f"has {len(name)} characters; it {rule}")
        name = unicodedata.normalize("NFC", name)
        if not name:
            raise InvalidVoiceName("name", f"is empty; it {rule}")
        if len(name) > self.name_max_chars:
            raise InvalidVoiceName("name", f"has {len(name)} characters; it {rule}")
        if name != name.strip(" "):
            raise InvalidVoiceName("name", f"starts or ends with a space; it {rule}")
        for char in name:
            category = unicodedata.category(char)
            if not (category[0] in "LM" or category == "Nd" or char in _NAME_PUNCTUATION):
                shown = repr(char) if category[0] != "C" else f"U+{ord(char):04X}"
                raise InvalidVoiceName("name", f"contains {shown}; it {rule}")
        if unicodedata.category(name[0])[0] == "M":
            raise InvalidVoiceName("name", f"starts with a combining mark; it {rule}")
        if not any(unicodedata.category(c)[0] == "L" or c.isdigit() for c in name):
            raise InvalidVoiceName("name", f"has no letter or digit; it {rule}")
        if ID_PATTERN.fullmatch(name.casefold()):
            raise InvalidVoiceName("name", "looks like a voice id (v_ and 10 letters or digits); choose another name")
        return name

    @staticmethod
    def _check_wave(wave: Any) -> np.ndarray:
        if not isinstance(wave, np.ndarray) or wave.dtype != np.float32 or wave.ndim != 1:
            raise VoiceError("reference_audio", "must be prepared 1-D float32 samples at 24 kHz")
        if wave.size == 0:
            raise VoiceError("reference_audio", "is empty")
        if not np.isfinite(wave).all():
            raise VoiceError("reference_audio", "holds NaN or infinite samples")
        return np.ascontiguousarray(wave)

    def _check_room_and_name(self, name: str, exclude_id: str | None) -> None:
        if len(self._entries) >= self.max_voices:
            raise VoiceLimitReached(
                "voice",
                f"the library holds {len(self._entries)} voices, the maximum (PTBR_MAX_VOICES={self.max_voices}); "
                "delete one first",
            )
        self._check_name_free(name, exclude_id)

    def _check_name_free(self, name: str, exclude_id: str | None) -> None:
        owner = self._by_name.get(_name_key(name))
        if owner is not None and owner != exclude_id:
            raise VoiceNameTaken(
                "name", f"a voice named {_shown(self._entries[owner].voice.name)} already exists "
                "(names are unique, ignoring case)"
            )

    # ------------------------------------------------------------------------------------------ lookup

    def _not_found(self, id_or_name: str) -> VoiceNotFound:
        return VoiceNotFound("voice", f"no saved voice has the id or name {_shown(id_or_name)}")

    def _lookup(self, id_or_name: Any, refreshed: bool = False) -> _Entry:
        """Caller holds ``_mutex``. A miss, or a hit whose files changed under us, re-scans once before answering."""
        if not isinstance(id_or_name, str) or not id_or_name:
            raise VoiceNotFound("voice", "give a voice id or name")
        if not refreshed:
            self._refresh()
        while True:
            if is_voice_id(id_or_name):
                entry = self._entries.get(id_or_name)
            else:  # only ever compared with stored names; never part of a path
                owner = self._by_name.get(_name_key(id_or_name))
                entry = self._entries.get(owner) if owner else None
            if entry is not None and (refreshed or self._still_there(entry)):
                return entry
            # Changes made through any VoiceLibrary are already seen (``_refresh`` checked the generation); a re-scan
            # here only catches hand-made edits, so a stream of unknown names cannot make every request re-scan.
            recent = time.monotonic() - self._scanned_at < _MISS_RESCAN_INTERVAL_S
            if refreshed or (entry is None and recent):
                raise self._not_found(id_or_name)
            self._refresh(force=True)
            refreshed = True

    def _still_there(self, entry: _Entry) -> bool:
        """One lstat: the folder's meta.json is the one we indexed (catches changes made behind the library's back)."""
        try:
            st = os.lstat(self.root / entry.voice.id / META_FILE)
        except OSError:
            return False
        return (st.st_ino, st.st_mtime_ns, st.st_size) == entry.signature[:3]

    def _expected_audio_bytes(self, voice: Voice) -> int | None:
        with self._mutex:
            entry = self._entries.get(voice.id)
            return entry.audio_bytes if entry is not None and entry.voice.sha256 == voice.sha256 else None

    def _mark_bad_audio(self, voice_id: str, signature: tuple[int, ...], reason: str) -> None:
        log.warning("voice folder %s is skipped as corrupt: %s", voice_id, reason)
        with self._mutex:
            self._bad_audio[voice_id] = (signature, reason)
            entry = self._entries.get(voice_id)
            if entry is not None and entry.signature[3:] == signature:
                self._corrupt[voice_id] = (entry.signature, reason)  # so the next scan does not warn twice
            self._token = None  # the next call re-scans and drops it from the index

    # ------------------------------------------------------------------------------------------ index

    def _current_token(self) -> tuple[Any, ...]:
        try:
            generation = (self.root / _GENERATION_FILE).read_bytes()
        except FileNotFoundError:
            generation = b""
        return generation, os.stat(self.root).st_mtime_ns

    def _refresh(self, force: bool = False) -> None:
        """Caller holds ``_mutex``. Re-scan when another process (or we) changed the library since the last scan."""
        token = self._current_token()
        if not force and token == self._token:
            return
        entries: dict[str, _Entry] = {}
        corrupt: dict[str, tuple[tuple[int, ...] | None, str]] = {}
        leftovers = False
        # Paths relative to a descriptor of the root: no pathlib objects on this hot path (a re-scan of 1000 voices
        # is mostly 2000 lstat calls), and the root cannot be swapped under us halfway.
        root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with os.scandir(root_fd) as it:
                for item in it:
                    folder = item.name
                    if folder.startswith("."):
                        leftovers = leftovers or folder.startswith((_TMP_PREFIX, _TRASH_PREFIX))
                        continue
                    if not is_voice_id(folder):
                        continue  # not ours (e.g. lost+found); never a voice
                    try:
                        entries[folder] = self._read_entry(folder, item, root_fd)
                    except _Corrupt as exc:
                        reason = exc.args[0]
                        signature = exc.args[1] if len(exc.args) > 1 else None
                        if self._corrupt.get(folder) != (signature, reason):
                            log.warning("voice folder %s is skipped as corrupt: %s", folder, reason)
                        corrupt[folder] = (signature, reason)
        finally:
            os.close(root_fd)
        for voice_id in [v for v in self._bad_audio if v not in corrupt]:
            del self._bad_audio[voice_id]  # gone from disk, or its audio file changed and passed the scan again
        ordered = sorted((e.voice for e in entries.values()), key=lambda v: (v.created_at, v.id))
        by_name: dict[str, str] = {}
        for voice in ordered:
            key = _name_key(voice.name)
            if key in by_name:
                log.warning("voices %s and %s share a name; by name, the older one is used", by_name[key], voice.id)
                continue
            by_name[key] = voice.id
        self._entries, self._by_name, self._ordered, self._corrupt = entries, by_name, ordered, corrupt
        self._token = token
        self._scanned_at = time.monotonic()
        if leftovers and time.monotonic() - self._last_cleanup > max(self.stale_tmp_age_s, 1.0):
            self._cleanup()

    def _read_entry(self, folder: str, item: os.DirEntry[str], root_fd: int) -> _Entry:
        if not item.is_dir(follow_symlinks=False):
            raise _Corrupt("not a folder")
        meta_path, audio_path = f"{folder}/{META_FILE}", f"{folder}/{AUDIO_FILE}"
        try:
            meta_st = _regular_file_stat(meta_path, root_fd)
            audio_st = _regular_file_stat(audio_path, root_fd)
        except FileNotFoundError as exc:
            raise _Corrupt(f"{os.path.basename(exc.filename)} is missing") from None
        signature = (meta_st.st_ino, meta_st.st_mtime_ns, meta_st.st_size,
                     audio_st.st_ino, audio_st.st_mtime_ns, audio_st.st_size)
        previous = self._entries.get(folder)
        bad = self._bad_audio.get(folder)
        if bad is not None and bad[0] == signature[3:]:
            raise _Corrupt(bad[1], signature)
        if previous is not None and previous.signature == signature:
            return previous
        known = self._corrupt.get(folder)
        if known is not None and known[0] == signature:
            raise _Corrupt(known[1], signature)
        try:
            fd = os.open(meta_path, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=root_fd)
            with os.fdopen(fd, "rb") as f:
                raw = f.read(1 << 20)  # a meta.json is ~1 kB; a huge one is not ours
        except OSError as exc:
            raise _Corrupt(f"meta.json cannot be read ({exc.strerror})", signature) from None
        try:
            voice, audio_bytes = _parse_meta(raw, folder)
        except _Corrupt as exc:
            raise _Corrupt(exc.args[0], signature) from None
        if audio_st.st_size != audio_bytes:
            raise _Corrupt(_SIZE_MISMATCH, signature)
        return _Entry(voice=voice, audio_bytes=audio_bytes, signature=signature)

    # ------------------------------------------------------------------------------------------ locking

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        """Exclusive flock on ``root/.lock``: one writer at a time across threads and processes.

        The kernel drops it when the holder dies (kill -9 included), so a crash never leaves the library locked."""
        fd = os.open(self.root / _LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _bump_generation(self) -> None:
        """Caller holds the file lock. The random part keeps the text unique even if the file is ever lost."""
        path = self.root / _GENERATION_FILE
        try:
            counter = int(path.read_bytes().split()[0])
        except (FileNotFoundError, IndexError, ValueError):
            counter = 0
        tmp = self.root / f"{_TMP_PREFIX}generation"
        with open(tmp, "wb") as f:
            f.write(f"{counter + 1} {secrets.token_hex(8)}\n".encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    # ------------------------------------------------------------------------------------------ cleanup

    def _cleanup(self) -> None:
        """Remove ``.trash-*`` (already invisible) and ``.tmp-*`` older than ``stale_tmp_age_s`` (crashed writers)."""
        self._last_cleanup = time.monotonic()
        now = time.time()
        with os.scandir(self.root) as it:
            items = [(item.name, item) for item in it if item.name.startswith((_TMP_PREFIX, _TRASH_PREFIX))]
        for name, item in items:
            path = self.root / name
            if name.startswith(_TMP_PREFIX):
                if name == f"{_TMP_PREFIX}generation":
                    continue  # rewritten in place under the lock; harmless
                try:
                    age = now - _newest_mtime(path, item)
                except FileNotFoundError:
                    continue
                if age < self.stale_tmp_age_s:
                    continue
                log.warning("removing %s left by an interrupted voice write (%.0f s old)", name, age)
            if item.is_dir(follow_symlinks=False):
                shutil.rmtree(path, ignore_errors=True)  # another process may be removing it too
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()


def _newest_mtime(path: Path, item: os.DirEntry[str]) -> float:
    """Latest modification inside a temporary entry: a writer still filling it keeps it young."""
    newest = item.stat(follow_symlinks=False).st_mtime
    if item.is_dir(follow_symlinks=False):
        for child in os.scandir(path):
            with contextlib.suppress(FileNotFoundError):
                newest = max(newest, child.stat(follow_symlinks=False).st_mtime)
    return newest
