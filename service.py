"""BentoML service: HTTP concerns only (validation, status codes, routes). The model work is in ptbr_model."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Annotated, Literal, Optional

import anyio
import bentoml
from pydantic import Field
from starlette.responses import JSONResponse, Response

from serving.guards import LoadStatus, RequestGuards, error_response
from ptbr_model.settings import SpeedPreset, get_settings, resolve_nfe_step

# The decorator needs limits and the model tag when the class is defined: read the settings once, here.
SETTINGS = get_settings()
LOAD_STATUS = LoadStatus()
# A typical reference for /normalize without one: 6 s at about 16 UTF-8 bytes of transcript per second.
TYPICAL_REFERENCE_SECONDS = 6.0
TYPICAL_REFERENCE_BYTES = 96
ResponseFormat = Literal["wav", "flac", "mp3", "opus", "pcm"]
log = logging.getLogger("ptbr.requests")


@bentoml.service(
    name="f5tts-ptbr",
    resources={"gpu": 1},
    workers=1,
    traffic={"timeout": SETTINGS.traffic_timeout, "max_concurrency": SETTINGS.max_concurrency},
)
class PtBrTTS:
    model_ref = bentoml.models.BentoModel(SETTINGS.model_tag)

    def __init__(self) -> None:
        from ptbr_model.metrics import ServiceMetrics
        from serving.request_log import configure_request_log

        self.settings = get_settings()
        self.metrics = ServiceMetrics()
        self.status = LOAD_STATUS
        self.engine = None
        self.stored = None
        self.device_lock = threading.Lock()  # one synthesis on the device at a time
        configure_request_log(self.settings.log_format)
        # Loading takes seconds to minutes; BentoML's /readyz would hang while __init__ runs, so load in the
        # background and report readiness through __is_ready__.
        threading.Thread(target=self._load_model, name="ptbr-model-loader", daemon=True).start()

    def _load_model(self) -> None:
        from ptbr_model.engine import load_checked
        from ptbr_model.store import load_stored

        started = time.perf_counter()
        try:
            self.stored = load_stored(str(self.model_ref.tag))
            self.engine = load_checked(
                self.stored,
                self.settings.device,
                self.settings.dtype,
                target_rms=self.settings.target_rms,
                warmup=self.settings.warmup,
                cuda_graphs=self.settings.cuda_graphs,
                compile_blocks=self.settings.compile,
                on_fp16_fallback=self.metrics.fp16_fallbacks.inc,
            )
        except Exception as exc:  # any failure must surface on /readyz, not kill the worker silently
            logging.getLogger("ptbr.engine").exception("model failed to load")
            self.status.fail(f"{type(exc).__name__}: {exc}".splitlines()[0])
            return
        self.metrics.model_load_seconds.set(time.perf_counter() - started)
        self.metrics.observe_memory(self.engine.memory_stats())
        self.metrics.model_ready.set(1)
        self.status.ready()

    def __is_ready__(self) -> bool:
        return self.status.is_ready

    def __metrics__(self, content: str) -> str:
        return content + self.metrics.render()

    @bentoml.api
    async def synthesize(
        self,
        text: Annotated[str, Field(description="Portuguese text to speak")],
        reference_audio: Annotated[Path, Field(description="a few seconds of the voice: wav, flac, ogg or mp3")],
        reference_text: Annotated[str, Field(description="exact transcript of reference_audio")],
        speed_preset: Annotated[Optional[SpeedPreset], Field(description="quality (NFE 32), balanced (16), fast (7)")] = None,
        nfe_step: Annotated[Optional[int], Field(ge=1, le=64, description="flow steps; overrides speed_preset")] = None,
        cfg_strength: Annotated[Optional[float], Field(ge=0.0, le=10.0)] = None,
        sway_sampling_coef: Annotated[Optional[float], Field(ge=-1.0, le=1.0)] = None,
        speed: Annotated[Optional[float], Field(ge=0.3, le=3.0)] = None,
        seed: Annotated[Optional[int], Field(ge=0, le=2**31 - 1, description="same input + seed = same audio")] = None,
        cross_fade_duration: Annotated[Optional[float], Field(ge=0.0, le=1.0)] = None,
        normalize_text: Annotated[bool, Field(description="spell out numbers, dates, currency, …")] = True,
        response_format: ResponseFormat = "wav",
    ) -> Annotated[Path, bentoml.validators.ContentType("audio/wav")]:
        """Speak `text` in the voice of `reference_audio`. Answers audio (24 kHz mono) with headers X-Seed and
        X-Audio-Duration, plus X-Removed-Characters when the model's vocabulary lacked some characters."""
        from ptbr_model.engine import SynthesisOptions

        started = time.perf_counter()
        problem = self._check_request(text, reference_text, reference_audio)
        if problem is not None:
            return self._reject("synthesize", problem)
        options = SynthesisOptions(
            nfe_step=resolve_nfe_step(self.settings, nfe_step, speed_preset),
            cfg_strength=self.settings.cfg_strength if cfg_strength is None else cfg_strength,
            sway_sampling_coef=self.settings.sway_sampling_coef if sway_sampling_coef is None else sway_sampling_coef,
            speed=speed or self.settings.speed,
            cross_fade_duration=(
                self.settings.cross_fade_duration if cross_fade_duration is None else cross_fade_duration
            ),
            seed=seed,
            normalize_text=normalize_text,
        )
        try:
            result = await anyio.to_thread.run_sync(
                self._synthesize_blocking, text, reference_audio, reference_text, options
            )
        except Exception as exc:
            return self._reject("synthesize", self._error_for(exc))
        return self._audio_response(result, response_format, started, len(text))

    @bentoml.api
    async def normalize(
        self,
        text: Annotated[str, Field(description="Portuguese text")],
        reference_text: Annotated[Optional[str], Field(description="transcript of the reference you will use")] = None,
        reference_seconds: Annotated[Optional[float], Field(gt=0, le=60, description="its length in seconds")] = None,
        speed: Annotated[Optional[float], Field(ge=0.3, le=3.0)] = None,
        normalize_text: bool = True,
    ) -> dict:
        """Exactly what the model will read: the normalised text, the chunks it is synthesised in (sized by the
        reference's speaking rate when reference_text and reference_seconds are given, else by a typical 6 s
        reference) and the characters removed because the model's vocabulary lacks them."""
        from ptbr_model.text import chunk_budget_bytes, chunk_text, fit_to_vocab, load_vocab
        from ptbr_model.text import normalize as normalize_pt

        if self.stored is None:
            return error_response(503, "model", self.status.describe(), retry_after=5)
        if not text.strip():
            return error_response(400, "text", "must not be empty or blank")
        if len(text) > self.settings.max_text_chars:
            return error_response(400, "text", f"{len(text)} characters is over the "
                                  f"{self.settings.max_text_chars}-character limit (PTBR_MAX_TEXT_CHARS)")
        vocab = self.engine.vocab if self.engine is not None else load_vocab(self.stored.vocab_path)
        spoken, removed = fit_to_vocab(normalize_pt(text) if normalize_text else text, vocab)
        rate_speed = speed or self.settings.speed
        if reference_text and reference_seconds:
            reference, _ = fit_to_vocab(normalize_pt(reference_text) if normalize_text else reference_text, vocab)
            budget = chunk_budget_bytes(reference, reference_seconds, rate_speed)
        else:
            budget = chunk_budget_bytes("x" * TYPICAL_REFERENCE_BYTES, TYPICAL_REFERENCE_SECONDS, rate_speed)
        return {"text": spoken, "chunks": chunk_text(spoken, budget), "removed_characters": removed,
                "chunk_budget_bytes": budget}

    @bentoml.api
    async def model_info(self) -> dict:
        """The loaded model: tag, architecture, preset, dtype, device, demo flag, vocabulary size, defaults."""
        stored, engine = self.stored, self.engine
        info: dict = {"status": self.status.state, "error": self.status.error}
        if stored is not None:
            metadata = stored.metadata
            info.update(
                tag=stored.tag,
                arch=stored.arch,
                preset=metadata.get("preset"),
                demo=bool(metadata.get("demo", False)),
                vocab_size=metadata.get("vocab_size"),
                stored_dtype=metadata.get("stored_dtype"),
                source_name=metadata.get("source_name"),
            )
        if engine is not None:
            info.update(dtype=str(engine.dtype).removeprefix("torch."), device=str(engine.device),
                        sample_rate=engine.sample_rate, load_seconds=round(engine.load_seconds, 3))
        info["defaults"] = {
            "speed_preset": self.settings.speed_preset,
            "nfe_step": resolve_nfe_step(self.settings, None, None),
            "cfg_strength": self.settings.cfg_strength,
            "sway_sampling_coef": self.settings.sway_sampling_coef,
            "speed": self.settings.speed,
            "cross_fade_duration": self.settings.cross_fade_duration,
        }
        info["limits"] = {
            "max_text_chars": self.settings.max_text_chars,
            "max_reference_text_chars": self.settings.max_reference_text_chars,
            "max_upload_bytes": self.settings.max_upload_bytes,
            "min_reference_seconds": self.settings.min_reference_seconds,
            "max_reference_seconds": self.settings.max_reference_seconds,
        }
        return info

    # --- helpers (no routes) -------------------------------------------------------------------------------

    def _check_request(self, text: str, reference_text: str, reference_audio: Path) -> JSONResponse | None:
        limits = self.settings
        if not self.status.is_ready:
            return error_response(503, "model", self.status.describe(), retry_after=5)
        size = reference_audio.stat().st_size
        if size > limits.max_upload_bytes:
            return error_response(
                413, "reference_audio", f"{size} bytes is over the {limits.max_upload_bytes}-byte limit (PTBR_MAX_UPLOAD_BYTES)"
            )
        for field, value, limit, setting in (
            ("text", text, limits.max_text_chars, "PTBR_MAX_TEXT_CHARS"),
            ("reference_text", reference_text, limits.max_reference_text_chars, "PTBR_MAX_REFERENCE_TEXT_CHARS"),
        ):
            if not value.strip():
                return error_response(400, field, "must not be empty or blank")
            if len(value) > limit:
                return error_response(400, field, f"{len(value)} characters is over the {limit}-character limit ({setting})")
        return None

    def _synthesize_blocking(self, text: str, reference_audio: Path, reference_text: str, options):
        from ptbr_model.audio import SAMPLE_RATE, decode_audio, prepare_reference, validate_reference

        limits = self.settings
        # Runs in a worker thread: reading and decoding the upload never blocks the event loop.
        samples, rate = decode_audio(reference_audio.read_bytes(), max_decoded_seconds=limits.max_decoded_seconds)
        validate_reference(samples, rate, min_seconds=limits.min_reference_seconds)
        wave = prepare_reference(samples, rate, max_seconds=limits.max_reference_seconds)
        # Trimming silent edges can leave less than the minimum: check the prepared reference again.
        validate_reference(wave, SAMPLE_RATE, min_seconds=limits.min_reference_seconds)
        with self.device_lock:
            reference = self.engine.make_reference(wave, reference_text, normalize_text=options.normalize_text)
            result = self.engine.synthesize(text, reference, options)
            self.metrics.observe_memory(self.engine.memory_stats())
        return result

    def _error_for(self, exc: Exception) -> JSONResponse:
        from ptbr_model.audio import AudioError
        from ptbr_model.engine import DeviceOutOfMemory, NothingToSay

        if isinstance(exc, AudioError):
            return error_response(400, exc.field, exc.problem)
        if isinstance(exc, NothingToSay):
            return error_response(400, exc.field, str(exc))
        if isinstance(exc, DeviceOutOfMemory):
            return error_response(
                503, "device", f"out of device memory, try again shortly or send shorter text ({exc})",
                retry_after=self.settings.oom_retry_after_seconds,
            )
        logging.getLogger("ptbr.engine").exception("synthesis failed")
        return error_response(500, "server", f"synthesis failed: {type(exc).__name__}")

    def _reject(self, endpoint: str, response: JSONResponse) -> JSONResponse:
        outcome = "client_error" if response.status_code < 500 else "server_error"
        if response.status_code in (413, 503):
            outcome = {413: "too_large", 503: "unavailable"}[response.status_code]
        self.metrics.requests.labels(endpoint, outcome).inc()
        log.info(json.dumps({"event": endpoint, "outcome": outcome, "status": response.status_code}))
        return response

    def _audio_response(self, result, response_format: str, started: float, text_chars: int) -> Response:
        from ptbr_model.audio import MEDIA_TYPES, encode_audio

        body = encode_audio(result.wave, result.sample_rate, response_format)
        self.metrics.observe_synthesis(result.elapsed_seconds, result.audio_seconds)
        self.metrics.requests.labels("synthesize", "ok").inc()
        latency = time.perf_counter() - started
        log.info(json.dumps({
            "event": "synthesize", "outcome": "ok", "text_chars": text_chars, "chunks": len(result.chunks),
            "audio_s": round(result.audio_seconds, 3), "latency_s": round(latency, 3),
            "rtf": round(latency / result.audio_seconds, 4) if result.audio_seconds else None, "seed": result.seed,
        }))
        headers = {"X-Seed": str(result.seed), "X-Audio-Duration": f"{result.audio_seconds:.3f}"}
        if result.removed_characters:
            headers["X-Removed-Characters"] = json.dumps(result.removed_characters, ensure_ascii=True)
        return Response(body, media_type=MEDIA_TYPES[response_format], headers=headers)


PtBrTTS.add_asgi_middleware(RequestGuards, status=LOAD_STATUS, max_upload_bytes=SETTINGS.max_upload_bytes)
