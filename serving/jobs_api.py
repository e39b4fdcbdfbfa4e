"""Jobs over HTTP: ``/synthesize_long/*`` (a long text) and ``/dub_subtitles/*`` (a subtitle file), in the route
shape of a BentoML task::

    POST   …/submit                 → {"task_id", "status", …}        (a BentoML API in service.py)
    GET    …/status?task_id=        → {"task_id", "status", "progress": {"done", "total"}, "audio_seconds", "eta_s", …}
    GET    …/get?task_id=[&response_format=mp3][&sample_rate=][&part=report]  → the audio, or the JSON report
    PUT    …/cancel?task_id=        → the status, now "canceled"
    DELETE …/delete?task_id=        → the status it had; the job and its files are gone
    GET    …/list[?offset=&limit=]  → {"tasks": [...], "total"}

Submit goes through BentoML (typed input, uploads, the Python client); the others live in a small FastAPI app
per kind (described in the service's ``/docs.json``), mounted with ``bentoml.asgi_app`` (BentoML's own APIs are POST only). The app reaches the service
instance's ``JobsService`` through a resolver given by service.py (``bentoml.get_current_service().jobs``).

``JobsService`` ties the framework-free job store (ptbr_model/jobs.py) to this process: its runner threads, the
device queue (one BACKGROUND ticket per unit, so interactive requests slip in between a job's chunks) and metrics.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal, Optional

import anyio
from fastapi import FastAPI, Query
from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from serving.device_queue import BACKGROUND, QueueTimeout
from serving.errors import ApiError
from serving.schemas import ResponseFormat

if TYPE_CHECKING:
    from serving.schemas import DubInput, LongInput
    from serving.synthesis import SynthesisCore

log = logging.getLogger("ptbr.jobs")
ROUTES = {"long": "synthesize_long", "dub": "dub_subtitles"}
# How often a job waiting for the device checks whether it was canceled meanwhile.
_TURN_POLL_S = 0.5


class JobsService:
    def __init__(self, core: SynthesisCore) -> None:
        from ptbr_model.jobs import JobExecutor, JobRunner, JobStore

        settings = core.settings
        self.core = core
        self.settings = settings
        self.store = JobStore(
            Path(settings.data_dir) / "jobs", max_jobs=settings.max_jobs, max_active=settings.max_active_jobs,
            max_attempts=settings.job_max_attempts, retention_s=settings.job_retention_hours * 3600.0,
            retry_backoff_s=settings.job_retry_backoff_s, retry_backoff_max_s=settings.job_retry_backoff_max_s,
            max_wait_s=settings.job_storage_wait_hours * 3600.0,
        )
        self.executor = JobExecutor(self.store, core.require_ready, self.device_turn,
                                    pause_after_unit_s=settings.test_job_chunk_pause_s, on_unit=self._observe_unit)
        self.runners = [
            JobRunner(self.store, self.executor, is_ready=lambda: core.status.is_ready,
                      scan_interval_s=settings.job_scan_interval_s, name=f"ptbr-jobs-{number}")
            for number in range(settings.job_workers)
        ]

    def start(self) -> JobsService:
        for runner in self.runners:
            runner.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """On shutdown: running jobs stop at the next chunk boundary and are handed back (no attempt is used)."""
        self.executor.shutting_down.set()
        deadline = time.monotonic() + timeout
        for runner in self.runners:
            runner.stop(max(0.0, deadline - time.monotonic()))

    def wake(self) -> None:
        for runner in self.runners:
            runner.wake()

    @contextlib.contextmanager
    def device_turn(self, stopped: Callable[[], bool]) -> Iterator[bool]:
        """Hold the device for one unit at background priority; yields False (without it) once ``stopped()``."""
        ticket = None
        while ticket is None and not stopped():
            candidate = self.core.queue.enter(BACKGROUND)
            try:
                candidate.wait(_TURN_POLL_S)
                ticket = candidate
            except QueueTimeout:  # left the line; look at the job and queue up again
                continue
        try:
            yield ticket is not None
        finally:
            if ticket is not None:
                ticket.release()

    def _observe_unit(self, kind: str, device_seconds: float, audio_seconds: float) -> None:
        metrics = self.core.metrics
        metrics.job_units.labels(kind).inc()
        if device_seconds:
            metrics.job_unit_seconds.observe(device_seconds)
        metrics.job_audio_seconds.inc(audio_seconds)

    def observe(self) -> None:
        for state, count in self.store.counts().items():
            self.core.metrics.jobs.labels(state).set(count)

    # --- submit ------------------------------------------------------------------------------------------------

    async def submit(self, kind: str, request: Any) -> dict:
        """Submit a job of ``kind``; subtitle and job refusals come out as ApiErrors (400 naming the line, 429)."""
        try:
            return await (self.submit_long(request) if kind == "long" else self.submit_dub(request))
        except Exception as exc:
            raise as_job_api_error(exc) from exc

    async def submit_long(self, request: LongInput) -> dict:
        from ptbr_model.engine import NothingToSay, draw_seed
        from ptbr_model.job_plans import Pauses, plan_long

        core, settings = self.core, self.settings
        started = time.perf_counter()
        engine = core.require_ready()
        text = core.check_text("text", request.text, settings.max_long_text_chars, "PTBR_MAX_LONG_TEXT_CHARS")
        options = core.synthesis_options(**request.synthesis_fields())
        output = core.output_options(request.response_format, request.sample_rate, request.remove_silence,
                                     request.loudness)
        reference = await core.reference(voice=request.voice, reference_audio=request.reference_audio,
                                         reference_text=request.reference_text, normalize_text=options.normalize_text)
        seed = draw_seed() if options.seed is None else options.seed
        pauses = Pauses(
            paragraph=settings.paragraph_pause_s if request.paragraph_pause_s is None else request.paragraph_pause_s,
            sentence=settings.sentence_pause_s if request.sentence_pause_s is None else request.sentence_pause_s,
            clause=settings.clause_pause_s,
        )
        units, removed = await anyio.to_thread.run_sync(lambda: plan_long(
            text, engine.vocab, reference_text=reference.text, reference_seconds=reference.seconds,
            speed=options.speed, normalize_text=options.normalize_text, seed=seed, pauses=pauses))
        if not units:
            raise NothingToSay("text", "".join(removed))
        info = {"seed": seed, "voice": request.voice, "removed_characters": removed,
                "pauses": {"paragraph": pauses.paragraph, "sentence": pauses.sentence, "clause": pauses.clause}}
        return await self._create("long", units, options, output, reference, engine, info, started)

    async def submit_dub(self, request: DubInput) -> dict:
        from ptbr_model.engine import draw_seed
        from ptbr_model.job_plans import plan_dub
        from ptbr_model.subtitles import parse_subtitles

        core, settings = self.core, self.settings
        started = time.perf_counter()
        engine = core.require_ready()
        path = request.subtitles
        if path is None:
            raise ApiError(400, "subtitles", "an .srt or .vtt file is required")
        size = path.stat().st_size
        if size > settings.max_subtitle_bytes:
            raise ApiError(413, "subtitles", f"{size} bytes is over the {settings.max_subtitle_bytes}-byte limit "
                           "(PTBR_MAX_SUBTITLE_BYTES)")
        track = await anyio.to_thread.run_sync(lambda: parse_subtitles(
            path.read_bytes(), filename=path.name, max_cues=settings.max_subtitle_cues,
            max_cue_chars=settings.max_cue_chars, max_seconds=settings.max_track_seconds))
        options = core.synthesis_options(**request.synthesis_fields())
        output = core.output_options(request.response_format, request.sample_rate, False, request.loudness)
        reference = await core.reference(voice=request.voice, reference_audio=request.reference_audio,
                                         reference_text=request.reference_text, normalize_text=options.normalize_text)
        seed = draw_seed() if options.seed is None else options.seed
        units, removed = await anyio.to_thread.run_sync(lambda: plan_dub(
            track, engine, reference, options, seed=seed, min_speed=settings.dub_min_speed,
            max_speed=settings.dub_max_speed, fill=request.fill))
        info = {"seed": seed, "voice": request.voice, "removed_characters": removed, "format": track.format,
                "encoding": track.encoding, "speed_limits": [settings.dub_min_speed, settings.dub_max_speed],
                "fill": request.fill}
        return await self._create("dub", units, options, output, reference, engine, info, started)

    async def _create(self, kind: str, units: list, options: Any, output: Any, reference: Any, engine: Any,
                      info: dict, started: float) -> dict:
        from ptbr_model.jobs import JobSpec

        synthesis = {"nfe_step": options.nfe_step, "cfg_strength": options.cfg_strength,
                     "sway_sampling_coef": options.sway_sampling_coef, "speed": options.speed,
                     "cross_fade_duration": options.cross_fade_duration, "normalize_text": options.normalize_text}
        spec = JobSpec(kind=kind, units=tuple(units), synthesis=synthesis,
                       output={"response_format": output.response_format, "sample_rate": output.sample_rate,
                               "remove_silence": output.remove_silence, "loudness": output.loudness},
                       reference_text=reference.text, reference_rms=reference.rms, model_tag=engine.stored.tag,
                       info=info)
        wave = reference.wave.squeeze(0).numpy()
        status = await anyio.to_thread.run_sync(self.store.create, spec, wave)
        self.wake()
        self.core.log_ok(f"{ROUTES[kind]}_submit", started, task_id=status["task_id"], units=len(units))
        return {"task_id": status["task_id"], "status": status["status"], "progress": status["progress"],
                "seed": info["seed"], "removed_characters": info["removed_characters"]}


# --- the GET/PUT/DELETE routes ------------------------------------------------------------------------------


def as_job_api_error(exc: BaseException) -> BaseException:
    """Job and subtitle refusals as ApiErrors (status and field); anything else unchanged."""
    from ptbr_model.jobs import JobError
    from ptbr_model.subtitles import SubtitleError

    if isinstance(exc, JobError):
        return ApiError(exc.status_code, exc.field, exc.problem)
    if isinstance(exc, SubtitleError):
        return ApiError(400, "subtitles", str(exc))
    return exc


# Query parameters of the job routes, described once for the OpenAPI document.
TASK_ID_DOC = "the task_id that …/submit answered"


def create_jobs_app(kind: str, resolve: Callable[[], JobsService]) -> FastAPI:
    """The status/get/cancel/delete/list routes of one job kind ("long" or "dub"), for mounting at its path.

    FastAPI rather than bare Starlette for its OpenAPI description alone: BentoML merges a mounted FastAPI app's
    routes into ``/docs.json`` (a Starlette app's stay invisible), so the docs list these routes and the fuzzing run
    (scripts/fuzz.py) reaches them. Its own ``/openapi.json`` and docs pages are off (the service's ``/docs.json`` has
    it all), and a request FastAPI refuses (an integer that is not one) gets the service's 400 naming the field."""
    from ptbr_model.audio_codec import MEDIA_TYPES

    endpoint = ROUTES[kind]
    app = FastAPI(title=f"f5tts-ptbr {endpoint} jobs", version="1", openapi_url=None, docs_url=None, redoc_url=None)

    async def answer(name: str, body: Callable[[JobsService], Any]) -> Response:
        jobs = resolve()
        try:
            return await body(jobs)
        except Exception as exc:  # noqa: BLE001 - one JSON error shape for everything
            return jobs.core.reject(f"{endpoint}_{name}", as_job_api_error(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = [str(part) for part in first.get("loc", ()) if part not in ("query", "path", "body")]
        problem = str(first.get("msg", "invalid value")) if first.get("type") != "missing" else "is required"
        name = request.url.path.rstrip("/").rsplit("/", 1)[-1] or "route"
        return resolve().core.reject(f"{endpoint}_{name}", ApiError(400, where[0] if where else "query", problem))

    @app.get("/status", summary=f"Progress of a {endpoint} job")
    async def status(task_id: str = Query(..., description=TASK_ID_DOC)) -> Response:
        async def body(jobs: JobsService) -> Response:
            return JSONResponse(await anyio.to_thread.run_sync(jobs.store.status, task_id, kind))
        return await answer("status", body)

    @app.get("/get", summary=f"The audio of a completed {endpoint} job, or its JSON report")
    async def get(
        task_id: str = Query(..., description=TASK_ID_DOC),
        part: Literal["audio", "report"] = Query("audio", description="the audio, or the JSON report"),
        response_format: Optional[ResponseFormat] = Query(None, description="default: the job's own"),
        sample_rate: Optional[int] = Query(None, ge=8000, le=48000, description="resample (Hz); default: the job's own"),
    ) -> Response:
        async def body(jobs: JobsService) -> Response:
            if part == "report":
                return JSONResponse(await anyio.to_thread.run_sync(jobs.store.report, task_id, kind))
            spec_output = (await anyio.to_thread.run_sync(jobs.store.spec, task_id)).output
            fmt = response_format or spec_output["response_format"]
            out_rate = sample_rate if sample_rate is not None else spec_output["sample_rate"]
            if out_rate:
                from ptbr_model.audio_codec import check_output_rate

                check_output_rate(out_rate)
            path = await anyio.to_thread.run_sync(lambda: jobs.store.result(task_id, fmt, out_rate or None, kind))
            current = await anyio.to_thread.run_sync(jobs.store.status, task_id, kind)
            extension = "pcm" if fmt == "pcm" else fmt
            return FileResponse(path, media_type=MEDIA_TYPES[fmt], filename=f"{task_id}.{extension}",
                                headers={"X-Audio-Duration": f"{current['audio_seconds']:.3f}"})
        return await answer("get", body)

    @app.put("/cancel", summary=f"Cancel a {endpoint} job (it stops before its next chunk)")
    async def cancel(task_id: str = Query(..., description=TASK_ID_DOC)) -> Response:
        async def body(jobs: JobsService) -> Response:
            result = await anyio.to_thread.run_sync(jobs.store.cancel, task_id, kind)
            jobs.core.log_ok(f"{endpoint}_cancel", time.perf_counter(), task_id=result["task_id"])
            return JSONResponse(result)
        return await answer("cancel", body)

    @app.delete("/delete", summary=f"Delete a {endpoint} job and its files (canceled first if unfinished)")
    async def delete(task_id: str = Query(..., description=TASK_ID_DOC)) -> Response:
        async def body(jobs: JobsService) -> Response:
            result = await anyio.to_thread.run_sync(jobs.store.delete, task_id, kind)
            return JSONResponse({"deleted": True, "task": result})
        return await answer("delete", body)

    @app.get("/list", summary=f"{endpoint} jobs, newest first")
    async def listing(offset: int = Query(0, ge=0, le=10**9), limit: int = Query(100, ge=1, le=1000)) -> Response:
        async def body(jobs: JobsService) -> Response:
            tasks, total = await anyio.to_thread.run_sync(
                lambda: jobs.store.list(kind=kind, offset=offset, limit=limit))
            return JSONResponse({"tasks": tasks, "total": total, "offset": offset, "limit": limit})
        return await answer("list", body)

    return app
