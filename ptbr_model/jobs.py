"""Long-form and dubbing jobs on the data directory: durable, resumable, and shared by every replica.

Why not BentoML's ``@bentoml.task`` (1.4.40, checked in its source): results are the whole HTTP response stored
base64 in a SQLite file under ``$BENTOML_HOME`` for 24 h; ``/cancel`` answers 400 on the local server and the task
runs on; ``/status`` has no progress; a task interrupted by a crash stays ``in_progress`` forever; and a running
task holds a ``max_concurrency`` slot for its whole run. So jobs keep BentoML's route shape and live here.

Layout under ``root`` (``<PTBR_DATA_DIR>/jobs``)::

    <id>/job.json            what to do, written once: the units (text chunks or cues) with their seeds and
                             duration targets, synthesis and output options, the model tag, report fields
    <id>/reference.wav       the reference as the engine uses it (24 kHz mono float, levelled), so a deleted
                             voice cannot stop a job and a resumed job speaks with exactly the same voice
    <id>/state.json          status, progress, runs, error: replaced atomically under ``state.lock``
    <id>/chunks/NNNNNN.json  a finished unit's facts, then NNNNNN.wav its audio (float, lossless): a unit is done
                             when both exist; both are fsynced temp files renamed into place, the .wav last
    <id>/result.wav          the whole track (16-bit), and report.json, written once every unit is done
    <id>/result.<fmt>[-<rate>]  other formats, transcoded on first request and kept
    <id>/run.lock            flock(2) held by the process running the job; the kernel drops it when that process
                             dies (kill -9 included), which is how an interrupted job is recognised
    <id>/state.lock          flock(2) target for read-modify-write of state.json (cancel vs progress)
    .tmp-*, .trash-*         a job being created / deleted (ignored; cleaned up)

Running: every replica with ``job_workers`` > 0 scans for jobs that are ``in_progress`` and whose run lock is free
(new ones, and ones whose process died) and claims the oldest with a non-blocking flock. The claimant counts the
units already on disk and carries on from there: finished units are never made again. Each claim is one attempt;
after ``max_attempts`` claims a job is failed with the reason instead of being retried forever (a job that kills
its process would otherwise do so again at every start). A job whose model or reference is gone is failed too.

Faults inside a run that pass (``retry_later``): the job stays ``in_progress`` with ``retry`` = {code, message, at,
since, count} in its status, its finished units stay on disk, and it is claimed again at ``retry.at`` (the backoff
doubles from ``retry_backoff_s`` up to ``retry_backoff_max_s``; a unit made ends the streak):

- out of device memory (``out_of_memory``): the engine has emptied the CUDA cache and the device ticket is given
  back, so interactive requests go first; the claim counts as an attempt, and the one that runs out at
  ``max_attempts`` fails the job with ``error_code`` ``out_of_memory`` instead of waiting for one more claim;
- a full data directory, ENOSPC or EDQUOT (``insufficient_storage``): the temporary file of the unit or of the
  result is removed (no partial file is ever under a real name, and nothing is served before ``completed``), the
  claim uses no attempt (the disk is not the job's fault, and failing a job that is 90 % done because the disk
  filled for a minute loses hours of device time: a user expects it to carry on once space is freed), and the job
  waits, retried with backoff, up to ``max_wait_s``, then fails with ``error_code`` ``insufficient_storage``. If
  even the state cannot be written, the job stays as it was and is claimed again at the next scan.

Every failed job has an ``error_code`` (``out_of_memory``, ``insufficient_storage``, ``interrupted``,
``model_changed``, ``unreadable``, ``internal_error``) beside its ``error`` message.

Nothing a client sends becomes a path: ids are server-made and matched against ``JOB_ID_PATTERN`` first.
Needs flock(2) between the processes sharing the folder (local filesystems; NFSv4 from Linux), as voices do.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import re
import secrets
import shutil
import socket
import string
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator

import numpy as np
import soundfile as sf

from ptbr_model.durable import fsync_dir as _fsync_dir
from ptbr_model.durable import storage_full

__all__ = [
    "CANCELED",
    "COMPLETED",
    "FAILED",
    "IN_PROGRESS",
    "JOB_ID_PATTERN",
    "Claim",
    "JobConflict",
    "JobError",
    "JobExecutor",
    "JobLimitReached",
    "JobNotFound",
    "JobRunner",
    "JobSpec",
    "JobStore",
    "Unit",
]

log = logging.getLogger("ptbr.jobs")

IN_PROGRESS, COMPLETED, FAILED, CANCELED = "in_progress", "completed", "failed", "canceled"
# ``error_code`` of a failed job, and ``retry.code`` of one waiting to be claimed again.
OUT_OF_MEMORY, INSUFFICIENT_STORAGE, INTERRUPTED = "out_of_memory", "insufficient_storage", "interrupted"
MODEL_CHANGED, UNREADABLE, INTERNAL_ERROR = "model_changed", "unreadable", "internal_error"
TERMINAL = frozenset({COMPLETED, FAILED, CANCELED})
KINDS = ("long", "dub")
JOB_ID_PATTERN = re.compile(r"j_[a-z0-9]{16}")
SCHEMA_VERSION = 1
SAMPLE_RATE = 24000

_JOB_FILE, _STATE_FILE, _REFERENCE_FILE = "job.json", "state.json", "reference.wav"
_RESULT_FILE, _REPORT_FILE = "result.wav", "report.json"
_RUN_LOCK, _STATE_LOCK, _CHUNKS = "run.lock", "state.lock", "chunks"
_TMP_PREFIX, _TRASH_PREFIX = ".tmp-", ".trash-"
_STALE_TMP_S = 3600.0
_RESULT_FORMATS = ("wav", "flac", "mp3", "opus", "aac", "pcm")


# ---------------------------------------------------------------------------------------------------- errors


class JobError(ValueError):
    """A job request that cannot be done; ``status_code`` is the HTTP status it maps to (this module knows no HTTP)."""

    status_code = 400

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem

    def __reduce__(self):
        return (type(self), (self.field, self.problem))


class JobNotFound(JobError):
    status_code = 404


class JobConflict(JobError):
    """The job is not in a state that allows this (a result before completion, cancelling a finished job)."""

    status_code = 409


class JobLimitReached(JobError):
    status_code = 429


class _Stop(Exception):
    """The job was canceled or deleted while running: stop quietly."""


class _ShuttingDown(Exception):
    """This process is stopping (SIGTERM): leave the job for the next claimant without counting an attempt."""


# ---------------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Unit:
    """One piece of work: a chunk of a long text, or one subtitle cue."""

    index: int
    text: str  # exactly what the model reads (normalised, in vocabulary); "" for a silent cue
    seed: int
    duration: float | None = None  # seconds to generate (F5-TTS duration control); None = natural length
    place: dict[str, Any] = field(default_factory=dict)  # where it goes in the track and what the report says

    @property
    def work(self) -> int:
        """Its share of the job's work, for progress and ETA: UTF-8 bytes of text (at least 1)."""
        return max(1, len(self.text.encode("utf-8")))


@dataclass(frozen=True)
class JobSpec:
    kind: str  # "long" or "dub"
    units: tuple[Unit, ...]
    synthesis: dict[str, Any]  # SynthesisOptions fields except seed and duration
    output: dict[str, Any]  # response_format, sample_rate, remove_silence, loudness
    reference_text: str  # the reference transcript as the model reads it (engine ``Reference.text``)
    reference_rms: float  # the reference's loudness before the engine levelled it (``Reference.rms``)
    model_tag: str
    info: dict[str, Any] = field(default_factory=dict)  # copied into the report (seed, voice, encoding, …)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["units"] = [asdict(unit) for unit in self.units]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobSpec:
        units = tuple(Unit(**unit) for unit in data["units"])
        return cls(**{**{key: data[key] for key in cls.__dataclass_fields__ if key != "units"}, "units": units})


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_time(text: str | None) -> float | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _retry_at(state: dict[str, Any]) -> float | None:
    retry = state.get("retry")
    return _parse_time(retry.get("at")) if isinstance(retry, dict) else None


def _new_id() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "j_" + "".join(secrets.choice(alphabet) for _ in range(16))


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# ---------------------------------------------------------------------------------------------------- fs helpers


def _write_new(path: Path, data: bytes) -> None:
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _replace_file(path: Path, data: bytes) -> None:
    """Atomically replace ``path``: temp file in the same folder, fsync, rename."""
    temporary = path.with_name(f"{_TMP_PREFIX}{secrets.token_hex(4)}-{path.name}")
    try:
        _write_new(temporary, data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _json_bytes(data: Any) -> bytes:
    return (json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def _wav_bytes(wave: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    sf.write(buffer, np.asarray(wave, dtype=np.float32), SAMPLE_RATE, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


@contextlib.contextmanager
def _flocked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


# ---------------------------------------------------------------------------------------------------- claims


class Claim:
    """The right to run one job: an exclusive flock on its run.lock, held until ``release()`` or process death."""

    def __init__(self, store: JobStore, job_id: str, fd: int, spec: JobSpec, done: int, worker: str) -> None:
        self.store = store
        self.job_id = job_id
        self.spec = spec
        self.done = done  # units finished (on disk), counted when claimed
        self.worker = worker
        self._fd: int | None = fd
        self.run_started = time.time()
        self.run_done = 0  # units made by this run
        self.run_work = 0
        self.stage = "starting"  # what the run is doing, for an error message: "part 3 of 10", "the result"

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def stopped(self) -> bool:
        """True once the job is no longer in progress (canceled, deleted)."""
        try:
            return self.store._read_state(self.job_id)["status"] != IN_PROGRESS
        except (JobNotFound, OSError, ValueError):
            return True


# ---------------------------------------------------------------------------------------------------- the store


class JobStore:
    """Jobs in ``root``; safe from several threads and several processes sharing the folder."""

    def __init__(self, root: Path, *, max_jobs: int = 1000, max_active: int = 100, max_attempts: int = 3,
                 retention_s: float = 72 * 3600.0, retry_backoff_s: float = 5.0, retry_backoff_max_s: float = 300.0,
                 max_wait_s: float = 24 * 3600.0) -> None:
        self.root = Path(root)
        self.max_jobs = max_jobs
        self.max_active = max_active
        self.max_attempts = max_attempts
        self.retention_s = retention_s
        self.retry_backoff_s = retry_backoff_s
        self.retry_backoff_max_s = retry_backoff_max_s
        self.max_wait_s = max_wait_s
        existed = self.root.is_dir()
        self.root.mkdir(parents=True, exist_ok=True)
        if not existed:
            _fsync_dir(self.root.parent)
        self._create_lock = self.root / ".create.lock"

    # ------------------------------------------------------------------------------------------ paths

    def _folder(self, job_id: str) -> Path:
        if not isinstance(job_id, str) or JOB_ID_PATTERN.fullmatch(job_id) is None:
            raise JobNotFound("task_id", f"no job {_shown(job_id)}")
        return self.root / job_id

    def job_ids(self) -> list[str]:
        return [name for name in os.listdir(self.root) if JOB_ID_PATTERN.fullmatch(name)]

    # ------------------------------------------------------------------------------------------ create

    def create(self, spec: JobSpec, reference_wave: np.ndarray) -> dict[str, Any]:
        """Write a new job (whole or not at all) and return its status."""
        if spec.kind not in KINDS:
            raise ValueError(f"unknown job kind {spec.kind!r}")
        with _flocked(self._create_lock):  # the limits are checked and the job added as one step
            states = self._states()
            if len(states) >= self.max_jobs:
                raise JobLimitReached("task", f"{len(states)} jobs are stored, the limit is {self.max_jobs} "
                                      "(PTBR_MAX_JOBS): delete finished jobs or wait for their retention to end")
            active = sum(1 for state in states if state["status"] == IN_PROGRESS)
            if active >= self.max_active:
                raise JobLimitReached("task", f"{active} jobs are unfinished, the limit is {self.max_active} "
                                      "(PTBR_MAX_ACTIVE_JOBS): try again when some have finished")
            job_id = _new_id()
            now = _utc_now()
            state = {
                "schema": SCHEMA_VERSION, "id": job_id, "kind": spec.kind, "status": IN_PROGRESS,
                "created_at": now, "updated_at": now, "finished_at": None, "error": None, "error_code": None,
                "retry": None,
                "done": 0, "total": len(spec.units), "work_done": 0, "work_total": sum(u.work for u in spec.units),
                "audio_seconds": 0.0, "seconds_per_work": None, "attempts": 0, "runs": [],
            }
            temporary = self.root / f"{_TMP_PREFIX}{job_id}"
            temporary.mkdir()
            try:
                (temporary / _CHUNKS).mkdir()
                _write_new(temporary / _REFERENCE_FILE, _wav_bytes(reference_wave))
                _write_new(temporary / _JOB_FILE, _json_bytes({"schema": SCHEMA_VERSION, "id": job_id,
                                                               "created_at": now, **spec.to_json()}))
                _write_new(temporary / _STATE_FILE, _json_bytes(state))
                _fsync_dir(temporary / _CHUNKS)
                _fsync_dir(temporary)
                os.rename(temporary, self.root / job_id)
                _fsync_dir(self.root)
            except BaseException:
                shutil.rmtree(temporary, ignore_errors=True)
                raise
        return self._status(state, running=False)

    # ------------------------------------------------------------------------------------------ read

    def _read_state(self, job_id: str) -> dict[str, Any]:
        path = self._folder(job_id) / _STATE_FILE
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            raise JobNotFound("task_id", f"no job {_shown(job_id)}") from None
        if not isinstance(data, dict) or data.get("id") != job_id or data.get("status") not in (IN_PROGRESS, *TERMINAL):
            raise ValueError(f"job {job_id}: state.json is corrupt")
        return data

    def _states(self) -> list[dict[str, Any]]:
        states = []
        for job_id in self.job_ids():
            try:
                states.append(self._read_state(job_id))
            except JobNotFound:
                continue  # deleted meanwhile
            except (ValueError, OSError) as exc:
                log.warning("skipping job %s: %s", job_id, exc)
        return states

    def spec(self, job_id: str) -> JobSpec:
        try:
            data = json.loads((self._folder(job_id) / _JOB_FILE).read_bytes())
        except FileNotFoundError:
            raise JobNotFound("task_id", f"no job {_shown(job_id)}") from None
        return JobSpec.from_json(data)

    def status(self, job_id: str, kind: str | None = None) -> dict[str, Any]:
        try:
            state = self._read_state(job_id)
        except JobNotFound:  # (a JobError is a ValueError too): unknown or malformed, never echoed to the log
            raise
        except ValueError as exc:  # corrupt on disk: skipped with a warning, never served
            log.warning("job %s: %s", job_id, exc)
            raise JobNotFound("task_id", f"job {_shown(job_id)} is unreadable (corrupt state) and is skipped") from None
        if kind is not None and state["kind"] != kind:
            raise JobNotFound("task_id", f"no {kind} job {_shown(job_id)}")
        return self._status(state, running=self.is_running(job_id))

    def list(self, *, kind: str | None = None, offset: int = 0, limit: int = 100) -> tuple[list[dict[str, Any]], int]:
        """Jobs newest first, and how many there are."""
        states = [state for state in self._states() if kind is None or state["kind"] == kind]
        states.sort(key=lambda state: (state["created_at"], state["id"]), reverse=True)
        page = states[offset: offset + limit]
        return [self._status(state, running=self.is_running(state["id"])) for state in page], len(states)

    def counts(self) -> dict[str, int]:
        counts = {status: 0 for status in (IN_PROGRESS, *sorted(TERMINAL))}
        for state in self._states():
            counts[state["status"]] += 1
        return counts

    def is_running(self, job_id: str) -> bool:
        """Whether some process holds the job's run lock (tested with a shared non-blocking flock, dropped at once;
        a claimant that tries at that very instant just waits for the next scan)."""
        try:
            fd = os.open(self._folder(job_id) / _RUN_LOCK, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    @staticmethod
    def _status(state: dict[str, Any], running: bool) -> dict[str, Any]:
        eta = None
        if state["status"] == IN_PROGRESS and state.get("seconds_per_work") is not None:
            remaining = state["seconds_per_work"] * (state["work_total"] - state["work_done"])
            since = time.time() - (_parse_time(state["updated_at"]) or time.time())
            eta = round(max(0.0, remaining - since), 1)
        return {
            "task_id": state["id"], "kind": state["kind"], "status": state["status"],
            "progress": {"done": state["done"], "total": state["total"]},
            "audio_seconds": round(state["audio_seconds"], 3), "eta_s": eta, "error": state["error"],
            "error_code": state.get("error_code"), "retry": state.get("retry"), "running": running,
            "created_at": state["created_at"], "updated_at": state["updated_at"],
            "finished_at": state["finished_at"], "attempts": state["attempts"], "runs": state["runs"],
        }

    # ------------------------------------------------------------------------------------------ state changes

    def _update(self, job_id: str, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        folder = self._folder(job_id)
        if not folder.is_dir():
            raise JobNotFound("task_id", f"no job {_shown(job_id)}")
        with _flocked(folder / _STATE_LOCK):
            state = self._read_state(job_id)
            change(state)
            state["updated_at"] = _utc_now()
            _replace_file(folder / _STATE_FILE, _json_bytes(state))
        return state

    def cancel(self, job_id: str, kind: str | None = None) -> dict[str, Any]:
        """Stop a job: it is ``canceled`` at once; a process running it stops before its next unit."""
        self.status(job_id, kind)

        def change(state: dict[str, Any]) -> None:
            if state["status"] != IN_PROGRESS:
                raise JobConflict("task_id", f"job {job_id} is already {state['status']}")
            state.update(status=CANCELED, finished_at=_utc_now(), seconds_per_work=None, retry=None)

        return self._status(self._update(job_id, change), running=self.is_running(job_id))

    def delete(self, job_id: str, kind: str | None = None) -> dict[str, Any]:
        """Cancel if unfinished, then remove the job and its files."""
        status = self.status(job_id, kind)
        if status["status"] == IN_PROGRESS:
            with contextlib.suppress(JobConflict):
                status = self.cancel(job_id)
        trash = self.root / f"{_TRASH_PREFIX}{job_id}-{secrets.token_hex(4)}"
        try:
            os.rename(self._folder(job_id), trash)
        except FileNotFoundError:
            raise JobNotFound("task_id", f"no job {_shown(job_id)}") from None
        _fsync_dir(self.root)
        shutil.rmtree(trash, ignore_errors=True)
        return status

    def hand_back(self, claim: Claim) -> None:
        """A clean stop (the service is shutting down): the run is marked so, and does not count as an attempt, so
        restarts and deploys never use up ``max_attempts``; only deaths (crash, kill -9, OOM kill) do."""
        def change(state: dict[str, Any]) -> None:
            if state["runs"] and state["attempts"] > 0:
                state["attempts"] -= 1
                state["runs"][-1]["ended"] = "shutdown"

        with contextlib.suppress(JobNotFound, ValueError):
            self._update(claim.job_id, change)

    def fail(self, job_id: str, reason: str, code: str = INTERNAL_ERROR) -> None:
        def change(state: dict[str, Any]) -> None:
            if state["status"] == IN_PROGRESS:
                _failed(state, reason, code)

        with contextlib.suppress(JobNotFound):
            self._update(job_id, change)

    # ------------------------------------------------------------------------------------------ running

    def retry_later(self, claim: Claim, code: str, message: str, *, counts_attempt: bool) -> dict[str, Any]:
        """A fault that may pass stopped this run (module docstring): the job waits for its next try, or fails
        with ``code`` once its attempts (``counts_attempt``) or its waiting time (otherwise) are used up. Answers
        the job's status; raises _Stop when it was canceled or deleted meanwhile."""
        now = time.time()

        def change(state: dict[str, Any]) -> None:
            if state["status"] != IN_PROGRESS:
                raise _Stop
            previous = state.get("retry") or {}
            same = previous.get("code") == code
            since = previous.get("since") if same else _iso(now)
            count = previous.get("count", 0) + 1 if same else 1
            if state["runs"]:
                state["runs"][-1]["ended"] = code
            kept = f"{state['done']} of {state['total']} parts were done"
            if counts_attempt:
                if state["attempts"] >= self.max_attempts:
                    _failed(state, f"{message}; tried {state['attempts']} times (PTBR_JOB_MAX_ATTEMPTS="
                                   f"{self.max_attempts}), not retried again; {kept}", code)
                    return
            else:
                state["attempts"] = max(0, state["attempts"] - 1)  # the disk, not the job: no attempt used
                waited = now - (_parse_time(since) or now)
                if waited >= self.max_wait_s:
                    _failed(state, f"{message}; waited {waited / 3600:.2f} h for it to pass "
                                   f"(PTBR_JOB_STORAGE_WAIT_HOURS={self.max_wait_s / 3600:g}), not retried again; "
                                   f"{kept}", code)
                    return
            delay = min(self.retry_backoff_max_s, self.retry_backoff_s * 2 ** (count - 1))
            state["seconds_per_work"] = None
            state["retry"] = {"code": code, "message": f"{message}; {kept} and are kept, the job carries on by itself",
                              "at": _iso(now + delay), "since": since, "count": count}

        try:
            return self._status(self._update(claim.job_id, change), running=True)
        except JobNotFound:
            raise _Stop from None

    def claimable(self, now: float | None = None) -> list[str]:
        """Unfinished jobs not waiting for a retry, oldest first (whether their run lock is free is found out by
        ``claim``)."""
        now = time.time() if now is None else now
        states = [state for state in self._states()
                  if state["status"] == IN_PROGRESS and (_retry_at(state) or 0.0) <= now]
        states.sort(key=lambda state: (state["created_at"], state["id"]))
        return [state["id"] for state in states]

    def next_retry_in(self, now: float | None = None) -> float | None:
        """Seconds until the earliest waiting job may be claimed again; None when none waits."""
        now = time.time() if now is None else now
        times = [at for state in self._states() if state["status"] == IN_PROGRESS and (at := _retry_at(state))]
        return max(0.0, min(times) - now) if times else None

    def claim(self, job_id: str, worker: str | None = None) -> Claim | None:
        """Take the job's run lock without waiting; None when another process runs it or it is finished.

        Each claim counts as an attempt; the claim past ``max_attempts`` fails the job instead."""
        worker = worker or worker_name()
        try:
            fd = os.open(self._folder(job_id) / _RUN_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except (FileNotFoundError, JobNotFound):
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            try:
                spec = self.spec(job_id)
            except (ValueError, KeyError, TypeError) as exc:
                self.fail(job_id, f"the job's description is unreadable ({type(exc).__name__}); it cannot be resumed",
                          UNREADABLE)
                raise _Stop from None
            done = self.done_units(job_id, len(spec.units))
            claimed: dict[str, Any] = {}

            def change(state: dict[str, Any]) -> None:
                if state["status"] != IN_PROGRESS:
                    raise _Stop
                if state["attempts"] >= self.max_attempts:
                    _failed(state, f"interrupted {state['attempts']} times (PTBR_JOB_MAX_ATTEMPTS="
                                   f"{self.max_attempts}): not retried again; {done} of {len(spec.units)} "
                                   "parts were done", INTERRUPTED)
                    claimed["failed"] = True
                    return
                state["attempts"] += 1
                state["done"] = done
                state["work_done"] = sum(unit.work for unit in spec.units[:done])
                state["runs"].append({"worker": worker, "started_at": _utc_now(), "from": done, "made": 0})

            self._update(job_id, change)
            if claimed.get("failed"):
                raise _Stop
        except (_Stop, JobNotFound):
            os.close(fd)
            return None
        except OSError as exc:
            os.close(fd)
            if not storage_full(exc):
                raise
            log.warning("job %s not claimed: the data directory is full (%s); tried again at the next scan",
                        job_id, exc.strerror)
            return None
        except BaseException:
            os.close(fd)
            raise
        return Claim(self, job_id, fd, spec, done, worker)

    def done_units(self, job_id: str, total: int) -> int:
        """Units finished, counted from the first one: both files there and the audio readable."""
        chunks = self._folder(job_id) / _CHUNKS
        for index in range(total):
            wav = chunks / f"{index:06d}.wav"
            if not (chunks / f"{index:06d}.json").is_file() or not wav.is_file():
                return index
            try:
                sf.info(str(wav))
            except (sf.SoundFileError, RuntimeError):
                log.warning("job %s: unit %d audio is unreadable; making it again", job_id, index)
                return index
        return total

    def reference_wave(self, job_id: str) -> np.ndarray:
        wave, _ = sf.read(str(self._folder(job_id) / _REFERENCE_FILE), dtype="float32")
        return wave

    def write_unit(self, claim: Claim, index: int, wave: np.ndarray, facts: dict[str, Any]) -> None:
        chunks = self._folder(claim.job_id) / _CHUNKS
        if not chunks.is_dir():
            raise _Stop  # deleted while running
        _replace_file(chunks / f"{index:06d}.json", _json_bytes(facts))
        _replace_file(chunks / f"{index:06d}.wav", _wav_bytes(wave))
        _fsync_dir(chunks)

    def read_unit(self, job_id: str, index: int) -> tuple[np.ndarray, dict[str, Any]]:
        chunks = self._folder(job_id) / _CHUNKS
        wave, _ = sf.read(str(chunks / f"{index:06d}.wav"), dtype="float32")
        return wave, json.loads((chunks / f"{index:06d}.json").read_bytes())

    def progress(self, claim: Claim, unit: Unit, audio_seconds: float) -> None:
        """Record one more finished unit; raises _Stop when the job was canceled or deleted meanwhile."""
        claim.done += 1
        claim.run_done += 1
        claim.run_work += unit.work

        def change(state: dict[str, Any]) -> None:
            if state["status"] != IN_PROGRESS:
                raise _Stop
            state["done"] = claim.done
            state["retry"] = None  # a unit made: whatever stopped the last run has passed
            state["work_done"] += unit.work
            state["audio_seconds"] += audio_seconds
            state["seconds_per_work"] = (time.time() - claim.run_started) / claim.run_work
            state["runs"][-1]["made"] = claim.run_done

        try:
            self._update(claim.job_id, change)
        except JobNotFound:
            raise _Stop from None

    def result_writer_path(self, claim: Claim) -> Path:
        """Where the result goes; what an earlier try of the assembly left there (never served: the job is not
        completed) is removed first, so a retry after a full disk does not need room for two copies."""
        folder = self._folder(claim.job_id)
        for leftover in (_REPORT_FILE, _RESULT_FILE):
            (folder / leftover).unlink(missing_ok=True)
        return folder / _RESULT_FILE

    def complete(self, claim: Claim, report: dict[str, Any], audio_seconds: float) -> None:
        """Publish the report, mark the job completed and drop the per-unit audio (the result holds it all)."""
        folder = self._folder(claim.job_id)
        _replace_file(folder / _REPORT_FILE, _json_bytes(report))
        _fsync_dir(folder)

        def change(state: dict[str, Any]) -> None:
            if state["status"] != IN_PROGRESS:
                raise _Stop
            state.update(status=COMPLETED, finished_at=_utc_now(), audio_seconds=audio_seconds,
                         seconds_per_work=None, done=state["total"], work_done=state["work_total"], retry=None)

        self._update(claim.job_id, change)
        shutil.rmtree(folder / _CHUNKS, ignore_errors=True)

    # ------------------------------------------------------------------------------------------ results

    def _completed_folder(self, job_id: str, kind: str | None) -> Path:
        status = self.status(job_id, kind)
        if status["status"] != COMPLETED:
            detail = f": {status['error']}" if status["error"] else ""
            raise JobConflict("task_id", f"job {job_id} is {status['status']}{detail}; the result exists once it is "
                              "completed")
        return self._folder(job_id)

    def report(self, job_id: str, kind: str | None = None) -> dict[str, Any]:
        return json.loads((self._completed_folder(job_id, kind) / _REPORT_FILE).read_bytes())

    def result(self, job_id: str, fmt: str = "wav", out_rate: int | None = None, kind: str | None = None) -> Path:
        """The result file in ``fmt`` at ``out_rate`` (transcoded once, then kept beside the job)."""
        from ptbr_model.tracks import transcode_track

        if fmt not in _RESULT_FORMATS:
            raise JobError("response_format", f"{fmt!r} is not one of {', '.join(_RESULT_FORMATS)}")
        folder = self._completed_folder(job_id, kind)
        source = folder / _RESULT_FILE
        if fmt == "wav" and out_rate in (None, SAMPLE_RATE):
            return source
        target = folder / f"result.{fmt}" if out_rate is None else folder / f"result-{out_rate}.{fmt}"
        if not target.is_file():
            transcode_track(source, target, fmt, out_rate)
        return target

    # ------------------------------------------------------------------------------------------ cleanup

    def cleanup(self, now: float | None = None) -> list[str]:
        """Delete finished jobs past their retention, and leftovers of interrupted creates and deletes."""
        now = time.time() if now is None else now
        removed = []
        for state in self._states():
            finished = _parse_time(state.get("finished_at"))
            if state["status"] in TERMINAL and finished is not None and now - finished > self.retention_s:
                with contextlib.suppress(JobNotFound, OSError):
                    self.delete(state["id"])
                    removed.append(state["id"])
        for name in os.listdir(self.root):
            path = self.root / name
            stale = name.startswith(_TRASH_PREFIX) or (
                name.startswith(_TMP_PREFIX) and now - path.stat().st_mtime > _STALE_TMP_S)
            if stale:
                shutil.rmtree(path, ignore_errors=True)
        return removed


def _failed(state: dict[str, Any], reason: str, code: str) -> None:
    state.update(status=FAILED, error=reason, error_code=code, finished_at=_utc_now(), seconds_per_work=None,
                 retry=None)


def _shown(text: object, limit: int = 40) -> str:
    text = str(text)
    return repr(text if len(text) <= limit else text[:limit] + "…")


# ---------------------------------------------------------------------------------------------------- running


DeviceTurn = Callable[[Callable[[], bool]], ContextManager[bool]]


class JobExecutor:
    """Runs one claimed job to its end: unit by unit (one device turn each), then the track and the report.

    ``engine()`` gives the loaded Synthesizer; ``device_turn(stopped)`` is a context manager that waits for the
    device at background priority, yielding False (without the device) if ``stopped()`` turns true meanwhile.
    ``on_unit(kind, device_seconds, audio_seconds)`` is told about every unit made (metrics)."""

    def __init__(self, store: JobStore, engine: Callable[[], Any], device_turn: DeviceTurn, *,
                 pause_after_unit_s: float = 0.0, on_unit: Callable[[str, float, float], None] | None = None) -> None:
        self.store = store
        self.engine = engine
        self.device_turn = device_turn
        self.pause_after_unit_s = pause_after_unit_s
        self.on_unit = on_unit
        self.shutting_down = threading.Event()  # set by the service on shutdown: stop at the next unit boundary

    def _stopped(self, claim: Claim) -> bool:
        if self.shutting_down.is_set():
            raise _ShuttingDown
        return claim.stopped()

    def run(self, claim: Claim) -> None:
        job_id = claim.job_id
        try:
            self._run(claim)
        except _ShuttingDown:
            self.store.hand_back(claim)
            log.info("job %s handed back at a chunk boundary: this process is stopping", job_id)
        except _Stop:
            log.info("job %s stopped (canceled or deleted)", job_id)
        except Exception as exc:  # noqa: BLE001 - a job must end failed with its reason, never stay in progress
            if claim.stopped():
                return
            fault = _passing_fault(exc, claim.stage)
            if fault is not None:
                self._retry_later(claim, *fault)
                return
            log.error("job %s failed", job_id, exc_info=exc)
            self.store.fail(job_id, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".strip())
        finally:
            claim.release()

    def _retry_later(self, claim: Claim, code: str, message: str, counts_attempt: bool) -> None:
        try:
            status = self.store.retry_later(claim, code, message, counts_attempt=counts_attempt)
        except _Stop:
            return
        except OSError as exc:
            if not storage_full(exc):
                raise
            log.warning(json.dumps({"event": "job", "outcome": "retry", "task_id": claim.job_id, "code": code,
                                    "note": "the state could not be written either; claimed again at the next scan"}))
            return
        outcome = "retry" if status["status"] == IN_PROGRESS else status["status"]
        log.warning(json.dumps({"event": "job", "outcome": outcome, "task_id": claim.job_id, "code": code,
                                "done": status["progress"]["done"], "total": status["progress"]["total"],
                                "attempts": status["attempts"],
                                "retry_at": (status["retry"] or {}).get("at")}))

    def _run(self, claim: Claim) -> None:
        import torch

        from ptbr_model.engine import Reference, SynthesisOptions

        spec = claim.spec
        engine = self.engine()
        if spec.model_tag != engine.stored.tag:
            self.store.fail(claim.job_id, f"made with model {spec.model_tag}; this service runs {engine.stored.tag}, "
                            "and one track is never made with two models: submit the job again", MODEL_CHANGED)
            return
        wave = torch.from_numpy(self.store.reference_wave(claim.job_id)).unsqueeze(0)
        reference = Reference(wave=wave, text=spec.reference_text, rms=spec.reference_rms,
                              sample_rate=engine.sample_rate)
        options = SynthesisOptions(**spec.synthesis)
        for unit in spec.units[claim.done:]:
            if self._stopped(claim):
                raise _Stop
            claim.stage = f"part {unit.index + 1} of {len(spec.units)}"
            device_seconds = 0.0
            if unit.text:
                unit_options = replace(options, seed=unit.seed, duration=unit.duration)
                with self.device_turn(lambda: self.shutting_down.is_set() or claim.stopped()) as granted:
                    if self.shutting_down.is_set():
                        raise _ShuttingDown
                    if not granted:
                        raise _Stop
                    started = time.perf_counter()
                    wave = next(iter(engine.iter_chunk_waves(reference, [unit.text], unit_options, unit.seed)))
                    device_seconds = time.perf_counter() - started
            else:
                wave = np.zeros(0, dtype=np.float32)
            audio_seconds = len(wave) / SAMPLE_RATE
            self.store.write_unit(claim, unit.index, wave, {"device_seconds": round(device_seconds, 4),
                                                            "worker": claim.worker})
            self.store.progress(claim, unit, audio_seconds)
            if self.on_unit is not None:
                self.on_unit(spec.kind, device_seconds, audio_seconds)
            if self.pause_after_unit_s:
                time.sleep(self.pause_after_unit_s)
        if self._stopped(claim):
            raise _Stop
        claim.stage = "the result"
        report, seconds = assemble(self.store, claim)
        self.store.complete(claim, report, seconds)
        log.info(json.dumps({"event": "job", "outcome": "completed", "task_id": claim.job_id, "kind": spec.kind,
                             "units": len(spec.units), "audio_s": round(seconds, 3)}))


def _passing_fault(exc: BaseException, stage: str) -> tuple[str, str, bool] | None:
    """(code, message, counts as an attempt) for a fault the job waits out (module docstring); None otherwise."""
    from ptbr_model.engine import DeviceOutOfMemory

    if isinstance(exc, DeviceOutOfMemory):
        return OUT_OF_MEMORY, f"out of device memory while making {stage}", True
    if storage_full(exc):
        return (INSUFFICIENT_STORAGE, f"the data directory is full (PTBR_DATA_DIR): {stage} could not be stored; "
                "free space there", False)
    return None


def assemble(store: JobStore, claim: Claim) -> tuple[dict[str, Any], float]:
    """Write result.wav from the finished units and return (report, seconds of audio)."""
    from ptbr_model.tracks import TrackWriter

    spec = claim.spec
    writer = TrackWriter(store.result_writer_path(claim), SAMPLE_RATE)
    try:
        loudness = None
        if spec.output.get("loudness") is not None:
            from ptbr_model.postprocess import StreamLoudness

            loudness = StreamLoudness(spec.output["loudness"], sample_rate=SAMPLE_RATE)
        entries = _place_dub(store, claim, writer, loudness) if spec.kind == "dub" else \
            _place_long(store, claim, writer, loudness)
        seconds = writer.seconds
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    runs = store.status(claim.job_id)["runs"]
    report = {"task_id": claim.job_id, "kind": spec.kind, "model": spec.model_tag, "sample_rate": SAMPLE_RATE,
              "total_seconds": round(seconds, 4), **spec.info,
              "synthesis": spec.synthesis, "output": spec.output, "runs": runs,
              ("cues" if spec.kind == "dub" else "chunks"): entries}
    return report, seconds


def _place_long(store: JobStore, claim: Claim, writer: Any, loudness: Any) -> list[dict[str, Any]]:
    from ptbr_model.tracks import edge_faded

    remove_silence = bool(claim.spec.output.get("remove_silence"))
    entries = []
    units = claim.spec.units
    for unit in units:
        wave, _ = store.read_unit(claim.job_id, unit.index)
        if remove_silence and len(wave):
            from ptbr_model.postprocess import remove_silences

            wave = remove_silences(wave, SAMPLE_RATE)
        wave = edge_faded(wave, SAMPLE_RATE)
        if loudness is not None:
            wave = loudness.process(wave)
        start = writer.seconds
        writer.write(wave)
        entries.append({"index": unit.index, "paragraph": unit.place.get("paragraph"), "text": unit.text,
                        "start": round(start, 4), "duration": round(len(wave) / SAMPLE_RATE, 4)})
        if unit.index < len(units) - 1:
            writer.silence(round(unit.place.get("pause_after", 0.0) * SAMPLE_RATE))
    return entries


def _place_dub(store: JobStore, claim: Claim, writer: Any, loudness: Any) -> list[dict[str, Any]]:
    """Each cue's audio starts exactly at its start sample; it is cut (with a short fade) at the next cue's start
    if the model made a few samples more than asked, so no cue ever runs into the next."""
    from ptbr_model.tracks import edge_faded

    entries = []
    units = claim.spec.units
    for position, unit in enumerate(units):
        place = unit.place
        wave, _ = store.read_unit(claim.job_id, unit.index)
        start_sample = round(place["start"] * SAMPLE_RATE)
        limit = round(units[position + 1].place["start"] * SAMPLE_RATE) if position + 1 < len(units) else None
        generated = len(wave) / SAMPLE_RATE
        cut = 0.0
        if limit is not None and start_sample + len(wave) > limit:
            cut = (start_sample + len(wave) - limit) / SAMPLE_RATE
            wave = wave[: limit - start_sample]
        wave = edge_faded(wave, SAMPLE_RATE)
        if loudness is not None:
            wave = loudness.process(wave)
        if writer.samples > start_sample:  # impossible by construction; never let a cue start late silently
            raise RuntimeError(f"cue {place['cue']} would start late ({writer.samples} > {start_sample})")
        writer.pad_to(start_sample)
        writer.write(wave)
        placed = len(wave) / SAMPLE_RATE
        natural = place.get("natural_seconds")
        entries.append({
            "index": place["cue"], "line": place["line"], "start": place["start"], "end": place["end"],
            "text": place["text"], "text_as_read": unit.text, "natural_seconds": natural,
            "target_seconds": unit.duration, "generated_seconds": round(generated, 4),
            "placed_seconds": round(placed, 4),
            "speed_factor": round(natural / generated, 4) if natural and generated else None,
            "overflow_seconds": round(max(0.0, place["start"] + placed - place["end"]), 4),
            "beyond_speed_limit": place.get("beyond_speed_limit", False), "cut_seconds": round(cut, 4),
            "audio_start": round(start_sample / SAMPLE_RATE, 4),
        })
    end = max(units[-1].place["end"], writer.seconds) if units else writer.seconds
    writer.pad_to(round(end * SAMPLE_RATE))
    return entries


class JobRunner:
    """The background thread of one process: finds claimable jobs (new ones, or interrupted anywhere) and runs
    them one at a time; also deletes expired jobs. ``wake()`` makes it look now (after a submit)."""

    def __init__(self, store: JobStore, executor: JobExecutor, *, is_ready: Callable[[], bool],
                 scan_interval_s: float = 5.0, cleanup_interval_s: float = 300.0, name: str = "ptbr-jobs") -> None:
        self.store = store
        self.executor = executor
        self.is_ready = is_ready
        self.scan_interval_s = scan_interval_s
        self.cleanup_interval_s = cleanup_interval_s
        self.worker = worker_name()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._last_cleanup = -math.inf

    def start(self) -> JobRunner:
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def run_once(self) -> bool:
        """Claim and run one job if there is one; True when a job was run."""
        if time.monotonic() - self._last_cleanup > self.cleanup_interval_s:
            self._last_cleanup = time.monotonic()
            removed = self.store.cleanup()
            if removed:
                log.info("deleted %d expired jobs", len(removed))
        for job_id in self.store.claimable():
            claim = self.store.claim(job_id, self.worker)
            if claim is not None:
                self.executor.run(claim)
                return True
        return False

    def _loop(self) -> None:
        while not self._stop.is_set():
            ran = False
            if self.is_ready():
                try:
                    ran = self.run_once()
                except Exception:  # noqa: BLE001 - the loop must survive a bad folder or a full disk
                    log.exception("job scan failed")
            if not ran:
                self._wake.wait(self._idle_wait())
                self._wake.clear()

    def _idle_wait(self) -> float:
        """Until the next scan, or sooner when a job waiting out a fault may be tried again before that."""
        try:
            retry_in = self.store.next_retry_in()
        except OSError:
            retry_in = None
        return self.scan_interval_s if retry_in is None else min(self.scan_interval_s, retry_in + 0.01)
