"""BentoML service: the list of routes. Validation and the synthesis path live in serving/, the model in ptbr_model/."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Annotated, AsyncGenerator, Optional

import bentoml
from pydantic import Field

from ptbr_model.gpus import bind_worker, service_resources, visible_gpus, worker_count
from ptbr_model.settings import get_settings
from serving.guards import LoadStatus, RequestGuards
from serving.jobs_api import create_jobs_app
from serving.openai_api import create_app as create_openai_app
from serving.schemas import DubInput, LongInput, Pronunciations, StreamInput, SynthesizeInput
from serving.synthesis import run_route
from serving.ui_app import create_ui_app

# The decorator needs limits and the model tag when the class is defined: read the settings once, here.
SETTINGS = get_settings()
# PTBR_GPU_WORKERS: worker processes, one per GPU with 'auto' (ptbr_model/gpus.py). With several, every worker is
# given all GPUs (resources) and narrows itself to one in __init__.
GPUS = visible_gpus() if SETTINGS.gpu_workers != 1 else []
WORKERS = worker_count(SETTINGS.gpu_workers, GPUS)
LOAD_STATUS = LoadStatus()
VoiceKey = Annotated[str, Field(description="a saved voice's id or name")]


def _jobs():
    # The mounted job apps reach this worker's service instance (and its SynthesisCore) through BentoML.
    return bentoml.get_current_service().jobs


# GET/PUT/DELETE routes of the jobs (BentoML APIs are POST only); …/submit is an API below.
@bentoml.asgi_app(create_jobs_app("long", _jobs), path="/synthesize_long")
@bentoml.asgi_app(create_jobs_app("dub", _jobs), path="/dub_subtitles")
@bentoml.asgi_app(create_openai_app(), path="/v1")  # OpenAI-compatible API; reaches self.core at request time
@bentoml.service(
    name="f5tts-ptbr",
    resources=service_resources(WORKERS, GPUS),
    workers=WORKERS,
    traffic={"timeout": SETTINGS.traffic_timeout, "max_concurrency": SETTINGS.max_concurrency},
)
@bentoml.asgi_app(create_ui_app(SETTINGS.ui_enabled), path="/ui")  # the web page (PTBR_UI_ENABLED)
class PtBrTTS:
    model_ref = bentoml.models.BentoModel(SETTINGS.model_tag)

    def __init__(self) -> None:
        # Before anything starts CUDA in this process: take this worker's GPU (no-op with one worker).
        self.gpu = bind_worker(bentoml.server_context.worker_index, WORKERS)
        from ptbr_model.metrics import ServiceMetrics
        from serving.workers import WorkerRoll, server_run_dir
        from serving.hardening import harden_bentoml
        from serving.request_log import configure_request_log
        from serving.jobs_api import JobsService
        from serving.synthesis import SynthesisCore

        self.settings = get_settings()
        self.metrics = ServiceMetrics()
        self.status = LOAD_STATUS
        self.status.roll = WorkerRoll(server_run_dir(), bentoml.server_context.worker_index, WORKERS)
        configure_request_log(self.settings.log_format)
        if self.gpu is not None:
            logging.getLogger("ptbr.engine").info(
                "worker %s of %s bound to GPU %s", bentoml.server_context.worker_index, WORKERS, self.gpu)
        harden_bentoml()  # no URL fetching, no client file names on disk, malformed forms as 400 (serving/hardening.py)
        self.core = SynthesisCore(self.settings, self.metrics, self.status)
        # Job runner threads start now and wait for the model: they resume jobs interrupted anywhere.
        self.jobs = JobsService(self.core).start()
        # Loading takes seconds to minutes; BentoML's /readyz would hang while __init__ runs, so load in the
        # background and report readiness through __is_ready__.
        threading.Thread(target=self._load_model, name="ptbr-model-loader", daemon=True).start()

    def _load_model(self) -> None:
        from ptbr_model.engine import load_checked
        from ptbr_model.store import load_stored
        from ptbr_model.text import load_lexicon, load_vocab

        started = time.perf_counter()
        try:
            self.core.stored = load_stored(str(self.model_ref.tag))
            try:
                lexicon = load_lexicon(self.settings.lexicon_file, load_vocab(self.core.stored.vocab_path))
            except (ValueError, OSError) as exc:
                raise RuntimeError(f"PTBR_LEXICON_FILE: {exc}") from exc
            self.core.engine = load_checked(
                self.core.stored,
                self.settings.device,
                self.settings.dtype,
                target_rms=self.settings.target_rms,
                warmup=self.settings.warmup,
                cuda_graphs=self.settings.cuda_graphs,
                compile_blocks=self.settings.compile,
                compile_cache_dir=self.settings.compile_cache_path,
                first_chunk_bytes=self.settings.first_chunk_bytes,
                on_fp16_fallback=self.metrics.fp16_fallbacks.inc,
                lexicon=lexicon,
                memory_fraction=self.settings.cuda_memory_fraction,
            )
        except Exception as exc:  # any failure must surface on /readyz, not kill the worker silently
            logging.getLogger("ptbr.engine").exception("model failed to load")
            self.status.fail(f"{type(exc).__name__}: {exc}".splitlines()[0])
            return
        if self.settings.test_oom_trigger or self.settings.test_oom_once_trigger:  # test hooks only: never in production
            from ptbr_model.engine import out_of_memory_on

            self.core.engine.fault_hook = out_of_memory_on(self.settings.test_oom_trigger,
                                                           self.settings.test_oom_once_trigger)
        self.metrics.model_load_seconds.set(time.perf_counter() - started)
        self.metrics.observe_memory(self.core.engine.memory_stats())
        self.metrics.model_ready.set(1)
        self.status.ready()

    @bentoml.on_shutdown
    def _stop_jobs(self) -> None:
        # A running job stops at its next chunk and is handed back: restarts never count as failed attempts.
        self.jobs.stop()

    def __is_ready__(self) -> bool:
        return self.status.server_ready

    def __metrics__(self, content: str) -> str:
        from serving.scrape import scrape

        self.core.observe_voices()
        self.jobs.observe()
        return scrape(content, self.metrics)  # collected again: the gauges just refreshed are in it

    # --- speech ----------------------------------------------------------------------------------------------

    @bentoml.api(input_spec=SynthesizeInput)
    async def synthesize(self, **fields) -> Annotated[Path, bentoml.validators.ContentType("audio/wav")]:
        """Speak `text` in a saved `voice`, or in the voice of `reference_audio` (with its exact `reference_text`).
        Answers the whole audio file with headers X-Seed and X-Audio-Duration, plus X-Removed-Characters when the
        model's vocabulary lacked some characters."""
        return await run_route(self.core, "synthesize", lambda: self.core.synthesize_request(SynthesizeInput.model_construct(**fields)))

    @bentoml.api(input_spec=StreamInput)
    async def synthesize_stream(self, **fields) -> AsyncGenerator[bytes, None]:
        """Same input as /synthesize; the audio is sent chunk by chunk as it is generated (the first chunk is kept
        short so playback starts early). Formats: pcm (s16le, 24 kHz mono), wav (streaming header), mp3, opus, aac."""
        return await run_route(self.core, "synthesize_stream", lambda: self.core.stream_request(StreamInput.model_construct(**fields)))

    @bentoml.api
    async def normalize(
        self,
        text: Annotated[str, Field(description="Portuguese text")],
        voice: Annotated[Optional[str], Field(description="size the chunks for this saved voice")] = None,
        reference_text: Annotated[Optional[str], Field(description="transcript of the reference you will use")] = None,
        # ge, not gt: BentoML serves OpenAPI 3.0, where pydantic's numeric exclusiveMinimum is invalid (schemathesis
        # refuses the whole document); no reference is shorter than a tenth of a second anyway.
        reference_seconds: Annotated[Optional[float], Field(ge=0.1, le=60, description="its length in seconds")] = None,
        speed: Annotated[Optional[float], Field(ge=0.3, le=3.0)] = None,
        normalize_text: bool = True,
        pronunciations: Pronunciations = None,
    ) -> dict:
        """Exactly what the model will read: the normalised text, the chunks it is synthesised in (sized by the
        voice's or reference's speaking rate when given, else by a typical 6 s reference) and the characters
        removed because the model's vocabulary lacks them."""
        return await run_route(self.core, "normalize", lambda: self.core.normalize_request(
            text, voice=voice, reference_text=reference_text, reference_seconds=reference_seconds, speed=speed,
            normalize_text=normalize_text, pronunciations=pronunciations))

    @bentoml.api
    async def model_info(self) -> dict:
        """The loaded model: tag, architecture, preset, dtype, device, demo flag, vocabulary size, defaults, limits."""
        return self.core.model_info()

    # --- jobs: POST …/submit here; …/status, …/get, …/cancel, …/delete, …/list in serving/jobs_api.py -----------

    @bentoml.api(route="/synthesize_long/submit", input_spec=LongInput)
    async def synthesize_long_submit(self, **fields) -> dict:
        """Start a job that reads a long `text` (a chapter, a transcript) into one audio file: paragraphs pause longer
        than sentences. Answers {"task_id", "status"}; follow it with GET /synthesize_long/status?task_id=… and fetch
        the audio (GET /synthesize_long/get?task_id=…, any response_format) or its report (&part=report)."""
        return await run_route(self.core, "synthesize_long_submit",
                               lambda: self.jobs.submit("long", LongInput.model_construct(**fields)))

    @bentoml.api(route="/dub_subtitles/submit", input_spec=DubInput)
    async def dub_subtitles_submit(self, **fields) -> dict:
        """Start a dubbing job from an .srt or .vtt file: each cue is spoken from its start time and fitted to its
        slot (natural length, else faster within PTBR_DUB_MAX_SPEED, else overflowing into the silence before the
        next cue, never into it). Answers {"task_id", "status"}; the report lists every cue's timing."""
        return await run_route(self.core, "dub_subtitles_submit",
                               lambda: self.jobs.submit("dub", DubInput.model_construct(**fields)))

    # --- saved voices ----------------------------------------------------------------------------------------

    @bentoml.api
    async def create_voice(
        self,
        name: Annotated[str, Field(description="unique name (letters, digits, space, - _ .)")],
        reference_audio: Annotated[Path, Field(description="a few seconds of the voice")],
        reference_text: Annotated[str, Field(description="exact transcript of reference_audio")],
        description: Optional[str] = None,
        language: Annotated[Optional[str], Field(description="language tag, e.g. pt-BR")] = None,
    ) -> dict:
        """Save a voice: the upload is prepared exactly as /synthesize prepares a reference and stored with its
        transcript. Use its `id` (or name) as `voice` afterwards."""
        return await run_route(self.core, "create_voice", lambda: self.core.create_voice_request(
            name=name, reference_audio=reference_audio, reference_text=reference_text, description=description,
            language=language))

    @bentoml.api
    async def list_voices(
        self, offset: Annotated[int, Field(ge=0)] = 0, limit: Annotated[int, Field(ge=1, le=1000)] = 100
    ) -> dict:
        """Saved voices, oldest first: {"voices": [...], "total": N, "offset", "limit"}."""
        return await run_route(self.core, "list_voices", lambda: self.core.list_voices_request(offset, limit))

    @bentoml.api
    async def get_voice(self, voice: VoiceKey) -> dict:
        """One saved voice's metadata (404 when unknown)."""
        return await run_route(self.core, "get_voice", lambda: self.core.get_voice_request(voice))

    @bentoml.api
    async def rename_voice(self, voice: VoiceKey, name: Annotated[str, Field(description="the new name")]) -> dict:
        """Give a saved voice a new unique name (409 when taken)."""
        return await run_route(self.core, "rename_voice", lambda: self.core.rename_voice_request(voice, name))

    @bentoml.api
    async def delete_voice(self, voice: VoiceKey) -> dict:
        """Delete a saved voice; answers what was deleted."""
        return await run_route(self.core, "delete_voice", lambda: self.core.delete_voice_request(voice))


PtBrTTS.add_asgi_middleware(RequestGuards, status=LOAD_STATUS, settings=SETTINGS)
