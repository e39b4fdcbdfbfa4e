"""The synthesis path every route shares: request → validate → reference (upload or saved voice) → device queue →
engine → post-processing → encoder → response. service.py declares the routes and calls this; /v1 and jobs reuse it.

Everything here runs on the event loop except what touches the model or decodes audio, which runs in worker threads
(``anyio.to_thread``), so probes, listings and ``/normalize`` keep answering while the device is busy.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import anyio
import numpy as np
from starlette.responses import JSONResponse, Response

from ptbr_model.settings import Settings, resolve_latency_budget, resolve_nfe_step
from serving.device_queue import DeviceQueue
from serving.errors import ApiError, api_error_response, as_api_error
from serving.guards import LoadStatus

if TYPE_CHECKING:
    from ptbr_model.engine import Reference, SynthesisOptions, SynthesisResult, Synthesizer
    from ptbr_model.metrics import ServiceMetrics
    from ptbr_model.voices import Voice, VoiceLibrary
    from serving.schemas import SpeechFields, StreamInput, SynthesizeInput
    from serving.streaming import StreamFraming

log = logging.getLogger("ptbr.requests")
# A typical reference for /normalize without one: 6 s at about 16 UTF-8 bytes of transcript per second.
TYPICAL_REFERENCE_SECONDS = 6.0
TYPICAL_REFERENCE_BYTES = 96


@dataclass(frozen=True)
class OutputOptions:
    """What happens to the waveform after synthesis: post-processing and encoding."""

    response_format: str = "wav"
    sample_rate: int | None = None  # None: the model's 24 kHz
    remove_silence: bool = False
    loudness: float | None = None  # LUFS target; None leaves the level as generated


class ReferenceCache:
    """Prepared saved-voice references (engine ``Reference`` objects) by (voice id, audio hash, normalize flag,
    request respellings: they change how the transcript is read).

    Bounded LRU. The key carries the audio's sha256, so a voice deleted and re-created under the same id can never
    be served from a stale entry; deletes and renames also drop the voice's entries explicitly."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[tuple, Reference] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> Reference | None:
        with self._lock:
            reference = self._entries.get(key)
            if reference is not None:
                self._entries.move_to_end(key)
            return reference

    def put(self, key: tuple, reference: Reference) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._entries[key] = reference
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def drop_voice(self, voice_id: str) -> None:
        with self._lock:
            for key in [key for key in self._entries if key[0] == voice_id]:
                del self._entries[key]


class SynthesisCore:
    def __init__(self, settings: Settings, metrics: ServiceMetrics, status: LoadStatus) -> None:
        from ptbr_model.voices import VoiceLibrary

        self.settings = settings
        self.metrics = metrics
        self.status = status
        self.engine: Synthesizer | None = None
        self.stored = None
        self.queue = DeviceQueue(
            settings.queue_max_waiting, settings.queue_timeout_s,
            on_change=metrics.observe_queue, on_granted=metrics.queue_wait.observe,
        )
        self.voices: VoiceLibrary = VoiceLibrary(
            Path(settings.data_dir) / "voices",
            max_voices=settings.max_voices,
            name_max_chars=settings.voice_name_max_chars,
            before_commit=self._pause_before_commit if settings.test_voice_commit_pause_s > 0 else None,
        )
        self.references = ReferenceCache(settings.voice_cache_size)
        self.observe_voices()

    # --- request checks --------------------------------------------------------------------------------------

    def require_ready(self) -> Synthesizer:
        if not self.status.is_ready or self.engine is None:
            raise ApiError(503, "model", self.status.describe(), retry_after=5)
        return self.engine

    def check_text(self, field: str, value: str | None, limit: int, setting: str) -> str:
        if value is None or not value.strip():
            raise ApiError(400, field, "must not be empty or blank")
        if len(value) > limit:
            raise ApiError(400, field, f"{len(value)} characters is over the {limit}-character limit ({setting})")
        return value

    def check_upload_size(self, path: Path, field: str = "reference_audio") -> None:
        size = path.stat().st_size
        limit = self.settings.max_upload_bytes
        if size > limit:
            raise ApiError(413, field, f"{size} bytes is over the {limit}-byte limit (PTBR_MAX_UPLOAD_BYTES)")

    def synthesis_options(
        self, *, speed_preset: str | None = None, nfe_step: int | None = None, cfg_strength: float | None = None,
        sway_sampling_coef: float | None = None, speed: float | None = None, seed: int | None = None,
        cross_fade_duration: float | None = None, normalize_text: bool = True,
        pronunciations: dict[str, str] | None = None, latency_budget_s: float | None = None,
    ) -> SynthesisOptions:
        from ptbr_model.engine import SynthesisOptions

        defaults = self.settings
        return SynthesisOptions(
            nfe_step=resolve_nfe_step(defaults, nfe_step, speed_preset),
            cfg_strength=defaults.cfg_strength if cfg_strength is None else cfg_strength,
            sway_sampling_coef=defaults.sway_sampling_coef if sway_sampling_coef is None else sway_sampling_coef,
            speed=defaults.speed if speed is None else speed,
            cross_fade_duration=defaults.cross_fade_duration if cross_fade_duration is None else cross_fade_duration,
            seed=seed,
            normalize_text=normalize_text,
            pronunciations=self.check_pronunciations(pronunciations),
            latency_budget_s=resolve_latency_budget(defaults, latency_budget_s, nfe_step),
        )

    def check_pronunciations(self, entries: dict[str, str] | None) -> tuple[tuple[str, str], ...]:
        """A request's respellings, validated against the model's vocabulary and the limits (400 naming the word)."""
        from ptbr_model.text import validate_pronunciations

        if not entries:
            return ()
        engine = self.require_ready()
        limits = self.settings
        try:
            validate_pronunciations(entries, engine.vocab, max_entries=limits.max_pronunciations,
                                    max_chars=limits.max_pronunciation_chars, lexicon=engine.lexicon)
        except ValueError as exc:
            raise ApiError(400, "pronunciations", f"{exc} (limits: PTBR_MAX_PRONUNCIATIONS="
                           f"{limits.max_pronunciations}, PTBR_MAX_PRONUNCIATION_CHARS={limits.max_pronunciation_chars})")
        return tuple(entries.items())

    def output_options(
        self, response_format: str = "wav", sample_rate: int | None = None, remove_silence: bool | None = None,
        loudness: float | None = None,
    ) -> OutputOptions:
        if sample_rate is not None:
            from ptbr_model.audio_codec import check_output_rate

            check_output_rate(sample_rate)
        return OutputOptions(
            response_format=response_format,
            sample_rate=sample_rate,
            remove_silence=self.settings.remove_silence if remove_silence is None else remove_silence,
            loudness=self.settings.loudness if loudness is None else loudness,
        )

    # --- references ------------------------------------------------------------------------------------------

    async def reference(
        self, *, voice: str | None, reference_audio: Path | None, reference_text: str | None, normalize_text: bool,
        pronunciations: tuple[tuple[str, str], ...] = (),
    ) -> Reference:
        """Exactly one way to give the voice: a saved ``voice``, or ``reference_audio`` with ``reference_text``."""
        engine = self.require_ready()
        has_voice = voice is not None and voice.strip() != ""
        has_upload = reference_audio is not None
        if has_voice and (has_upload or reference_text):
            raise ApiError(400, "voice", "give either `voice` (a saved voice id or name) or `reference_audio` with "
                           "`reference_text`, not both")
        if not has_voice and not has_upload:
            raise ApiError(400, "voice", "give either `voice` (a saved voice id or name) or `reference_audio` with "
                           "`reference_text`")
        if has_voice:
            return await anyio.to_thread.run_sync(self._voice_reference, engine, voice.strip(), normalize_text,
                                                  pronunciations)
        self.check_upload_size(reference_audio)
        text = self.check_text("reference_text", reference_text, self.settings.max_reference_text_chars,
                               "PTBR_MAX_REFERENCE_TEXT_CHARS")
        wave = await anyio.to_thread.run_sync(self.prepare_upload, reference_audio)
        return engine.make_reference(wave, text, normalize_text=normalize_text, pronunciations=pronunciations)

    def prepare_upload(self, path: Path, field: str = "reference_audio") -> np.ndarray:
        """Decode, validate and prepare an uploaded reference exactly as /synthesize does (worker thread)."""
        from ptbr_model.audio import SAMPLE_RATE, decode_audio, prepare_reference, validate_reference

        limits = self.settings
        samples, rate = decode_audio(path.read_bytes(), field=field, max_decoded_seconds=limits.max_decoded_seconds)
        validate_reference(samples, rate, min_seconds=limits.min_reference_seconds, field=field)
        wave = prepare_reference(samples, rate, max_seconds=limits.max_reference_seconds, field=field)
        # Trimming silent edges can leave less than the minimum: check the prepared reference again.
        validate_reference(wave, SAMPLE_RATE, min_seconds=limits.min_reference_seconds, field=field)
        return wave

    def _voice_reference(self, engine: Synthesizer, key: str, normalize_text: bool,
                         pronunciations: tuple[tuple[str, str], ...] = ()) -> Reference:
        voice = self.voices.get(key)  # revalidated against the shared directory: never a deleted voice
        cache_key = (voice.id, voice.sha256, normalize_text, pronunciations)
        reference = self.references.get(cache_key)
        if reference is not None:
            self.metrics.voice_cache.labels("hit").inc()
            return reference
        self.metrics.voice_cache.labels("miss").inc()
        reference = engine.make_reference(self.voices.load_wave(voice), voice.reference_text,
                                          normalize_text=normalize_text, pronunciations=pronunciations)
        self.references.put(cache_key, reference)
        return reference

    # --- route bodies ----------------------------------------------------------------------------------------

    async def synthesize_request(self, request: SynthesizeInput) -> Response:
        started = time.perf_counter()
        text, reference, options, output = await self._speech(request)
        headers = None
        if getattr(request, "duration", None) is not None:
            options, headers = self.timed_options(text, reference, options, request.duration)
        result = await self.synthesize(text, reference, options)
        return self.audio_response("synthesize", result, output, started, len(text), extra_headers=headers)

    def timed_options(self, text: str, reference: Reference, options: SynthesisOptions,
                      duration: float) -> tuple[SynthesisOptions, dict[str, str]]:
        """``duration`` (seconds) for one utterance, the mechanism dubbing uses: the text must be one chunk."""
        from dataclasses import replace

        from ptbr_model.text import prepare_text

        engine = self.require_ready()
        limit = self.settings.max_duration_s
        if duration > limit:
            raise ApiError(400, "duration", f"{duration:g} s is over the {limit:g}-second limit (PTBR_MAX_DURATION_S)")
        prepared = prepare_text(text, engine.vocab, ref_text=reference.text, ref_audio_seconds=reference.seconds,
                                speed=options.speed, normalize_text=options.normalize_text,
                                lexicon=engine.lexicon_for(options.pronunciations))
        if len(prepared.chunks) > 1:
            raise ApiError(400, "duration", f"applies to one utterance, and this text makes {len(prepared.chunks)} "
                           "chunks for this voice: send one sentence (or use /synthesize_long)")
        natural = engine.natural_seconds(reference, prepared.chunks[0], options) if prepared.chunks else duration
        return replace(options, duration=duration), {"X-Natural-Seconds": f"{natural:.3f}",
                                                     "X-Speed-Factor": f"{natural / duration:.3f}"}

    async def stream_request(self, request: StreamInput) -> Response:
        started = time.perf_counter()
        text, reference, options, output = await self._speech(request)
        return await self.stream_response("synthesize_stream", text, reference, options, output, started)

    async def _speech(self, request: SpeechFields) -> tuple[str, Reference, SynthesisOptions, OutputOptions]:
        self.require_ready()
        text = self.check_text("text", request.text, self.settings.max_text_chars, "PTBR_MAX_TEXT_CHARS")
        options = self.synthesis_options(**request.synthesis_fields())
        output = self.output_options(request.response_format, request.sample_rate, request.remove_silence,
                                     request.loudness)
        reference = await self.reference(voice=request.voice, reference_audio=request.reference_audio,
                                         reference_text=request.reference_text, normalize_text=options.normalize_text,
                                         pronunciations=options.pronunciations)
        return text, reference, options, output

    async def normalize_request(self, text: str, *, voice: str | None, reference_text: str | None,
                                reference_seconds: float | None, speed: float | None, normalize_text: bool,
                                pronunciations: dict[str, str] | None = None) -> dict:
        from ptbr_model.text import chunk_budget_bytes, chunk_text, fit_to_vocab
        from ptbr_model.text import normalize as normalize_pt

        engine = self.require_ready()
        self.check_text("text", text, self.settings.max_text_chars, "PTBR_MAX_TEXT_CHARS")
        lexicon = engine.lexicon_for(self.check_pronunciations(pronunciations))
        vocab = engine.vocab

        def read(value: str) -> str:
            return normalize_pt(value, lexicon=lexicon) if normalize_text else value

        spoken, removed = fit_to_vocab(read(text), vocab)
        rate_speed = speed or self.settings.speed
        if voice is not None and voice.strip():
            saved = await anyio.to_thread.run_sync(self.voices.get, voice.strip())
            reference_text, reference_seconds = saved.reference_text, saved.duration_s
        if reference_text and reference_seconds:
            reference, _ = fit_to_vocab(read(reference_text), vocab)
            budget = chunk_budget_bytes(reference, reference_seconds, rate_speed)
        else:
            budget = chunk_budget_bytes("x" * TYPICAL_REFERENCE_BYTES, TYPICAL_REFERENCE_SECONDS, rate_speed)
        return {"text": spoken, "chunks": chunk_text(spoken, budget), "removed_characters": removed,
                "chunk_budget_bytes": budget}

    def model_info(self) -> dict:
        stored, engine, settings = self.stored, self.engine, self.settings
        info: dict = {"status": self.status.state, "error": self.status.error}
        if stored is not None:
            metadata = stored.metadata
            info.update(tag=stored.tag, arch=stored.arch, preset=metadata.get("preset"),
                        demo=bool(metadata.get("demo", False)), vocab_size=metadata.get("vocab_size"),
                        stored_dtype=metadata.get("stored_dtype"), source_name=metadata.get("source_name"))
        if engine is not None:
            info.update(dtype=str(engine.dtype).removeprefix("torch."), device=str(engine.device),
                        sample_rate=engine.sample_rate, load_seconds=round(engine.load_seconds, 3),
                        compile_status=engine.compile_status, first_chunk_bytes=engine.first_chunk_bytes,
                        latency_calibrated=engine.latency is not None)
        info["defaults"] = {
            "speed_preset": settings.speed_preset, "nfe_step": resolve_nfe_step(settings, None, None),
            "cfg_strength": settings.cfg_strength, "sway_sampling_coef": settings.sway_sampling_coef,
            "speed": settings.speed, "cross_fade_duration": settings.cross_fade_duration,
            "remove_silence": settings.remove_silence, "loudness": settings.loudness,
            "latency_budget_s": settings.latency_budget_s,
        }
        info["limits"] = {
            "max_text_chars": settings.max_text_chars, "max_reference_text_chars": settings.max_reference_text_chars,
            "max_upload_bytes": settings.max_upload_bytes, "min_reference_seconds": settings.min_reference_seconds,
            "max_reference_seconds": settings.max_reference_seconds, "max_voices": settings.max_voices,
            "queue_max_waiting": settings.queue_max_waiting, "queue_timeout_s": settings.queue_timeout_s,
        }
        return info

    async def create_voice_request(self, **fields: Any) -> dict:
        started = time.perf_counter()
        voice = await self.create_voice(**fields)
        self.log_ok("create_voice", started, voice_id=voice.id, audio_s=voice.duration_s)
        return voice.to_dict()

    async def list_voices_request(self, offset: int, limit: int) -> dict:
        voices, total = await anyio.to_thread.run_sync(lambda: self.voices.list(offset=offset, limit=limit))
        return {"voices": [voice.to_dict() for voice in voices], "total": total, "offset": offset, "limit": limit}

    async def get_voice_request(self, key: str) -> dict:
        return (await anyio.to_thread.run_sync(self.voices.get, key.strip())).to_dict()

    async def rename_voice_request(self, key: str, name: str) -> dict:
        voice = await anyio.to_thread.run_sync(self.voices.rename, key.strip(), name)
        self.forget_voice(voice.id)
        self.log_ok("rename_voice", time.perf_counter(), voice_id=voice.id)
        return voice.to_dict()

    async def delete_voice_request(self, key: str) -> dict:
        voice = await anyio.to_thread.run_sync(self.voices.delete, key.strip())
        self.forget_voice(voice.id)
        self.log_ok("delete_voice", time.perf_counter(), voice_id=voice.id)
        return {"deleted": True, "voice": voice.to_dict()}

    # --- synthesis -------------------------------------------------------------------------------------------

    async def synthesize(self, text: str, reference: Reference, options: SynthesisOptions) -> SynthesisResult:
        """Wait for the device (429 when the line is full, 503 after PTBR_QUEUE_TIMEOUT_S), then synthesise."""
        engine = self.require_ready()
        ticket = self.queue.enter()
        await ticket.wait_async()
        try:
            result = await anyio.to_thread.run_sync(engine.synthesize, text, reference, options)
        finally:
            ticket.release()
            self.metrics.observe_memory(engine.memory_stats())  # after an out-of-memory failure too
        return result

    def finish_wave(self, wave: np.ndarray, sample_rate: int, output: OutputOptions) -> np.ndarray:
        """Post-processing of a whole waveform: pauses, then loudness (so the level is measured on what is kept)."""
        if output.remove_silence:
            from ptbr_model.postprocess import remove_silences

            wave = remove_silences(wave, sample_rate)
        if output.loudness is not None:
            from ptbr_model.postprocess import normalize_loudness_lufs

            wave = normalize_loudness_lufs(wave, sample_rate, target_lufs=output.loudness)
        return wave

    def audio_response(self, endpoint: str, result: SynthesisResult, output: OutputOptions, started: float,
                       text_chars: int, extra_headers: dict[str, str] | None = None) -> Response:
        from ptbr_model.audio_codec import MEDIA_TYPES, encode_audio

        wave = self.finish_wave(result.wave, result.sample_rate, output)
        body = encode_audio(wave, result.sample_rate, output.response_format, out_rate=output.sample_rate)
        self.metrics.observe_synthesis(result.elapsed_seconds, result.audio_seconds)
        self.log_ok(endpoint, started, text_chars=text_chars, chunks=len(result.chunks),
                    audio_s=len(wave) / result.sample_rate, seed=result.seed)
        headers = {"X-Seed": str(result.seed), "X-Audio-Duration": f"{len(wave) / result.sample_rate:.3f}",
                   "X-NFE-Step": str(result.nfe_step),
                   **({"X-Predicted-Seconds": f"{result.predicted_seconds:.3f}"}
                      if result.predicted_seconds is not None else {}),
                   **audio_headers(result.removed_characters), **(extra_headers or {})}
        return Response(body, media_type=MEDIA_TYPES[output.response_format], headers=headers)

    async def stream_response(self, endpoint: str, text: str, reference: Reference, options: SynthesisOptions,
                              output: OutputOptions, started: float,
                              extra_headers: dict[str, str] | None = None, framing: StreamFraming | None = None,
                              ) -> Response:
        from serving.streaming import stream_synthesis

        return await stream_synthesis(self, endpoint, text, reference, options, output, started, extra_headers,
                                      framing=framing)

    # --- voices ----------------------------------------------------------------------------------------------

    async def create_voice(self, *, name: str, reference_audio: Path, reference_text: str,
                           description: str | None, language: str | None) -> Voice:
        engine = self.require_ready()
        if not name or not name.strip():
            raise ApiError(400, "name", "must not be empty or blank")
        self.check_upload_size(reference_audio)
        transcript = self.check_text("reference_text", reference_text, self.settings.max_reference_text_chars,
                                     "PTBR_MAX_REFERENCE_TEXT_CHARS")
        if description is not None and len(description) > 500:
            raise ApiError(400, "description", f"{len(description)} characters is over the 500-character limit")
        if language is not None and not (0 < len(language) <= 35):
            raise ApiError(400, "language", "must be a language tag of 1 to 35 characters, e.g. pt-BR")

        def create() -> Voice:
            from ptbr_model.engine import NothingToSay
            from ptbr_model.text import fit_to_vocab, normalize

            wave = self.prepare_upload(reference_audio)
            model_text, removed = fit_to_vocab(normalize(transcript, lexicon=engine.lexicon_for()), engine.vocab)
            if not model_text.strip():
                raise NothingToSay("reference_text", "".join(removed))
            return self.voices.create(
                name=name, wave=wave, reference_text=transcript, model_text=model_text.strip(),
                removed_characters=list(removed), source_format=upload_format(reference_audio),
                description=description, language=language,
            )

        voice = await anyio.to_thread.run_sync(create)
        self.observe_voices()
        return voice

    def forget_voice(self, voice_id: str) -> None:
        self.references.drop_voice(voice_id)
        self.observe_voices()

    def observe_voices(self) -> None:
        self.metrics.voices_stored.set(self.voices.count())
        self.metrics.voices_corrupt.set(len(self.voices.corrupt_entries()))

    def _pause_before_commit(self, temporary: Path) -> None:
        # Test hook (PTBR_TEST_VOICE_COMMIT_PAUSE_S): the files are written and synced, the rename has not happened.
        (Path(self.settings.data_dir) / "voice-commit-paused").touch()
        time.sleep(self.settings.test_voice_commit_pause_s)

    # --- outcomes ----------------------------------------------------------------------------------------------

    def reject(self, endpoint: str, exc: BaseException) -> JSONResponse:
        error = as_api_error(exc, oom_retry_after=self.settings.oom_retry_after_seconds,
                             queue_retry_after=self.settings.queue_retry_after_seconds)
        outcome = {413: "too_large", 429: "busy", 503: "unavailable", 507: "storage_full"}.get(
            error.status, "client_error" if error.status < 500 else "server_error"
        )
        self.metrics.requests.labels(endpoint, outcome).inc()
        log.info(json.dumps({"event": endpoint, "outcome": outcome, "status": error.status}))
        return api_error_response(error)

    def log_ok(self, endpoint: str, started: float, **fields: Any) -> None:
        self.metrics.requests.labels(endpoint, "ok").inc()
        latency = time.perf_counter() - started
        audio_s = fields.get("audio_s")
        line = {"event": endpoint, "outcome": "ok", **fields, "latency_s": round(latency, 3)}
        if audio_s:
            line["audio_s"] = round(audio_s, 3)
            line["rtf"] = round(latency / audio_s, 4)
        log.info(json.dumps(line))


def audio_headers(removed_characters: list[str] | tuple[str, ...]) -> dict[str, str]:
    if not removed_characters:
        return {}
    return {"X-Removed-Characters": json.dumps(list(removed_characters), ensure_ascii=True)}


def upload_format(path: Path) -> str:
    """The container of an upload as libsndfile names it (WAV, FLAC, OGG, MP3), else the file name's suffix."""
    import soundfile as sf

    try:
        return sf.info(str(path)).format.lower()
    except (sf.SoundFileError, RuntimeError):
        return path.suffix.lstrip(".").lower()[:16] or "unknown"


async def run_route(core: SynthesisCore, endpoint: str, handler: Callable[[], Any]) -> Any:
    """Run a route's body; any exception becomes the one JSON error shape (and is counted and logged)."""
    try:
        return await handler()
    except Exception as exc:  # noqa: BLE001 - every failure must become a clear answer, never a bare 500 page
        return core.reject(endpoint, exc)
