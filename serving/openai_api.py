"""The OpenAI-compatible surface, mounted at ``/v1`` beside the BentoML routes (service.py).

Clients built for OpenAI's speech API (the openai SDKs, LiteLLM, Open WebUI, Home Assistant, LiveKit, Pipecat,
wyoming-openai) work with only their base URL changed. Every route runs the shared synthesis path of
``serving/synthesis.py`` (``SynthesisCore``), reached at request time through ``bentoml.get_current_service()``;
only the request and answer shapes are OpenAI's:

- ``POST /v1/audio/speech`` — JSON ``model``, ``input``, ``voice`` (a saved voice id or name, ``{"id": …}``, or one
  of OpenAI's built-in names through ``PTBR_VOICE_ALIASES`` / ``PTBR_DEFAULT_VOICE``), ``response_format`` (default
  mp3), ``speed`` (OpenAI's 0.25–4.0, clamped onto the engine's range), ``instructions`` (ignored, said in a
  header), ``stream_format``; our own options (``seed``, ``nfe_step``, …) as extra body fields. Like OpenAI's, the
  answer streams audio as it is generated unless ``stream_format`` says ``sse`` (server-sent events) — except flac,
  which cannot be written incrementally and comes whole.
- ``GET /v1/models``, ``/v1/models/{id}``, ``/v1/audio/models``, ``GET /v1/audio/voices``.
- ``POST /v1/audio/voices`` (what ``client.audio.voices.create`` sends: multipart ``audio_sample``, ``name``,
  ``consent``, plus our transcript ``ref_text``) and ``DELETE /v1/audio/voices/{id}``.

Every error is OpenAI-shaped, ``{"error": {"message", "type", "param", "code"}}``, FastAPI's own validation errors
and unknown paths included, so the SDKs show the message instead of a bare "Error code: 400". Errors the SDK must
not retry carry ``x-should-retry: false`` (it retries 408/409/429/5xx twice by default).

FastAPI rather than bare Starlette: the speech body is a pydantic model (the native API's option fields and their
limits are reused as they are), and ``/v1/docs`` documents the surface for free.
"""

from __future__ import annotations

import base64
import inspect
import json
import os
import re
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Optional, Union

import anyio
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, create_model
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from serving.errors import ApiError, as_api_error
from serving.schemas import SpeechFields

if TYPE_CHECKING:
    from serving.streaming import StreamSummary
    from serving.synthesis import SynthesisCore

SPEECH_ENDPOINT = "openai_speech"
# OpenAI's built-in voice names (the openai SDK 3.57 documents these thirteen).
OPENAI_VOICES = frozenset({"alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer",
                           "verse", "marin", "cedar"})
OPENAI_INPUT_LIMIT = 4096  # characters, OpenAI's documented limit for `input`
OPENAI_SPEED_RANGE = (0.25, 4.0)
# Routes a client may read without an API key when PTBR_OPEN_LISTING is on (the key itself arrives with the
# reliability work; this is the list it consults).
LISTING_PATHS = frozenset({"/v1/models", "/v1/audio/models", "/v1/audio/voices"})
# Our error messages name the native API's fields; /v1 clients know them by OpenAI's names.
PARAM_NAMES = {"text": "input", "reference_audio": "audio_sample", "reference_text": "ref_text"}
HIDDEN_PARAMS = frozenset({"model", "device", "server", "storage"})  # not a request field: param null
OWNER = "f5tts-ptbr"
# Options of the native API accepted as extra body fields, with the same types, limits and descriptions.
SHARED_OPTIONS = ("speed_preset", "nfe_step", "cfg_strength", "sway_sampling_coef", "seed", "cross_fade_duration",
                  "normalize_text", "sample_rate", "remove_silence", "loudness", "pronunciations", "latency_budget_s")


def _engine_speed_range() -> tuple[float, float]:
    """The native API's `speed` limits (serving/schemas.py), which the engine is known to handle."""
    low, high = None, None
    for rule in SpeechFields.model_fields["speed"].metadata:
        low = getattr(rule, "ge", low)
        high = getattr(rule, "le", high)
    return float(low), float(high)


ENGINE_SPEED_RANGE = _engine_speed_range()


# ------------------------------------------------------------------------------------------------------ errors


class OpenAIError(Exception):
    """An answer in OpenAI's error shape. ``retryable=False`` adds ``x-should-retry: false``."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str | None = None, retry_after: int | None = None, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or _error_type(status)
        self.retry_after = retry_after
        self.retryable = retryable if retryable is not None else status == 429 or (status >= 500 and bool(retry_after))

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self, extra_headers: dict[str, str] | None = None) -> JSONResponse:
        headers = dict(extra_headers or {})
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        if not self.retryable:
            headers["x-should-retry"] = "false"
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def _error_type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 429:
        return "rate_limit_error"
    return "server_error" if status >= 500 else "invalid_request_error"


def _code_for(error: ApiError, model_failed: bool) -> str:
    status, field = error.status, error.field
    if status == 404:
        return "voice_not_found" if field == "voice" else "not_found"
    if status == 409:
        return "voice_name_taken" if field == "name" else "conflict"
    if status == 413:
        return "file_too_large"
    if status == 422:
        return "unspeakable_input"
    if status == 429:
        return "rate_limit_exceeded"
    if status == 503:
        if field == "model":
            return "model_failed" if model_failed else "model_loading"
        return "device_out_of_memory" if "memory" in error.message else "device_busy"
    if status == 507:
        return "storage_full"
    if status >= 500:
        return "internal_error"
    return "invalid_value"


def to_openai_error(core: SynthesisCore | None, endpoint: str, exc: BaseException) -> OpenAIError:
    """Any exception of a /v1 route as an OpenAI error; counted and logged like every other route's errors."""
    if isinstance(exc, OpenAIError):
        if core is not None:
            core.reject(endpoint, ApiError(exc.status, exc.param or "request", exc.message, exc.retry_after))
        return exc
    from ptbr_model.engine import NothingToSay

    if isinstance(exc, NothingToSay):
        # Valid JSON of the right types, but nothing in it the model can read: unprocessable, not malformed.
        error = ApiError(422, exc.field, str(exc))
    elif core is not None:
        error = as_api_error(exc, oom_retry_after=core.settings.oom_retry_after_seconds,
                             queue_retry_after=core.settings.queue_retry_after_seconds)
    else:
        error = as_api_error(exc)
    model_failed = core is not None and core.status.state == "failed"
    if core is not None:
        core.reject(endpoint, error)  # counts the outcome and logs one line
    param = None if error.field in HIDDEN_PARAMS else PARAM_NAMES.get(error.field, error.field)
    message = error.message if param is None else f"{param}: {error.message}"
    retryable = error.status == 429 or (error.status == 503 and not model_failed)
    return OpenAIError(error.status, message, param=param, code=_code_for(error, model_failed),
                       retry_after=error.retry_after, retryable=retryable)


def _validation_error(exc: RequestValidationError) -> OpenAIError:
    """FastAPI's request validation as OpenAI's 400 invalid_request_error naming the parameter."""
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": "value_error"}
    loc = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
    param = loc[0] if loc else None
    kind = first.get("type", "")
    if kind == "json_invalid":
        return OpenAIError(400, f"the body is not valid JSON ({first.get('msg')})", code="invalid_json")
    if kind == "missing":
        if param is None:
            return OpenAIError(400, "the request needs a JSON body", code="missing_required_parameter")
        return OpenAIError(400, f"you must provide '{param}'", param=param, code="missing_required_parameter")
    if param == "voice":
        return OpenAIError(400, "voice: give a saved voice's id or name as a string, or an object {\"id\": ...}",
                           param="voice", code="invalid_type")
    code = "invalid_type" if kind.endswith("_type") or kind.endswith("_parsing") else "invalid_value"
    where = ".".join(loc) if loc else "body"
    return OpenAIError(400, f"{where}: {first.get('msg')} (got {_shown(first.get('input'))})", param=param,
                       code=code)


def _shown(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + "…"


# ----------------------------------------------------------------------------------------------------- schemas


class VoiceObject(BaseModel):
    """A voice given as an object, as the openai SDK types custom voices: ``{"id": "v_..."}``."""

    model_config = ConfigDict(extra="ignore")
    id: str


class _SpeechBase(BaseModel):
    model_config = ConfigDict(extra="allow")  # unknown fields are ignored and named in X-Ignored-Fields

    model: str = Field(description="the served model's id (GET /v1/models) or an alias: tts-1, tts-1-hd, "
                                   "gpt-4o-mini-tts (PTBR_OPENAI_MODEL_ALIASES)")
    input: str = Field(description=f"Portuguese text, at most {OPENAI_INPUT_LIMIT} characters or "
                                   "PTBR_MAX_TEXT_CHARS if lower")
    voice: Union[str, VoiceObject] = Field(description="a saved voice's id or name, {\"id\": ...}, or an OpenAI "
                                                       "built-in name mapped by PTBR_VOICE_ALIASES/PTBR_DEFAULT_VOICE")
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = Field(
        "mp3", description="pcm is raw 16-bit little-endian mono at 24 kHz")
    speed: Optional[float] = Field(None, ge=OPENAI_SPEED_RANGE[0], le=OPENAI_SPEED_RANGE[1],
                                   description=f"0.25–4.0, clamped onto the engine's {ENGINE_SPEED_RANGE[0]}–"
                                               f"{ENGINE_SPEED_RANGE[1]} (X-Speed-Applied says what was used)")
    instructions: Optional[str] = Field(None, description="accepted and ignored (X-Instructions-Ignored)")
    stream_format: Optional[Literal["audio", "sse"]] = Field(
        None, description="audio (the default, as OpenAI's): bytes as they are generated; sse: server-sent events")


SpeechRequest = create_model(  # the native API's options keep their exact limits and descriptions
    "SpeechRequest", __base__=_SpeechBase,
    **{name: (SpeechFields.model_fields[name].annotation, SpeechFields.model_fields[name]) for name in SHARED_OPTIONS},
)


# ----------------------------------------------------------------------------------------------- SSE framing


def sse_event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


class SpeechEvents:
    """``stream_format="sse"``: each encoded piece becomes ``speech.audio.delta`` (base64 audio), and the stream
    closes with ``speech.audio.done`` carrying OpenAI's ``usage`` (not speaches' ``token_usage``).

    Tokens, as this model counts them: input tokens are the characters the model read (F5-TTS reads text
    character by character, after normalisation), output tokens the mel frames it generated (one per
    ``hop_length`` samples)."""

    media_type = "text/event-stream"

    def __init__(self, hop_length: int) -> None:
        self.hop_length = hop_length

    def piece(self, data: bytes) -> bytes:
        if not data:
            return b""
        return sse_event({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode("ascii")})

    def done(self, summary: StreamSummary) -> bytes:
        return sse_event({"type": "speech.audio.done", "usage": self.usage(
            summary.text_chars, summary.audio_seconds, summary.sample_rate)})

    def error(self, exc: BaseException) -> bytes:
        # The cause is logged and counted by the stream itself; the client learns that the audio is incomplete.
        message = (exc.message if isinstance(exc, ApiError)
                   else f"the synthesis failed after the stream started ({type(exc).__name__}); the audio is incomplete")
        return sse_event({"type": "error", "error": {"message": message, "type": "server_error", "param": None,
                                                     "code": "stream_failed"}})

    def usage(self, text_chars: int, audio_seconds: float, sample_rate: int) -> dict[str, int]:
        output_tokens = round(audio_seconds * sample_rate / self.hop_length)
        return {"input_tokens": text_chars, "output_tokens": output_tokens, "total_tokens": text_chars + output_tokens}


# -------------------------------------------------------------------------------------------------------- app


def service_core() -> SynthesisCore:
    """The running service's SynthesisCore (BentoML sets the current service before any request is served)."""
    import bentoml
    from bentoml.exceptions import BentoMLException

    try:
        return bentoml.get_current_service().core
    except BentoMLException:
        raise OpenAIError(503, "the service is starting", code="service_starting", retry_after=2) from None


def create_app(get_core: Callable[[], SynthesisCore] = service_core) -> FastAPI:
    """The /v1 application. ``get_core`` gives the shared synthesis path at request time."""
    app = FastAPI(title="f5tts-ptbr — OpenAI-compatible speech API", version="1", docs_url="/docs", redoc_url=None,
                  openapi_url="/openapi.json")

    def core_or_none() -> SynthesisCore | None:
        try:
            return get_core()
        except OpenAIError:
            return None

    @app.exception_handler(RequestValidationError)
    async def validation_failed(request: Request, exc: RequestValidationError) -> JSONResponse:
        return to_openai_error(core_or_none(), _endpoint(request), _validation_error(exc)).response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__context__, BodyTooLarge):  # FastAPI wraps what failed while reading a JSON body
            return exc.__context__.response()
        code = {404: "unknown_url", 405: "method_not_allowed"}.get(exc.status_code)
        error = OpenAIError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", code=code)
        return error.response(dict(exc.headers or {}))

    async def guarded(request: Request, endpoint: str, handler: Callable[[SynthesisCore], Any]) -> Response:
        core = None
        try:
            core = get_core()
            answer = handler(core)
            return await answer if inspect.isawaitable(answer) else answer
        except Exception as exc:  # noqa: BLE001 - every failure becomes an OpenAI-shaped answer
            return to_openai_error(core, endpoint, exc).response()

    # --- models ------------------------------------------------------------------------------------------------

    @app.get("/models")
    async def list_models(request: Request) -> Response:
        """The served model, in OpenAI's list shape."""
        return await guarded(request, "openai_models", lambda core: _json(
            {"object": "list", "data": [_model_object(core, served_model_id(core))]}))

    @app.get("/models/{model_id:path}")
    async def get_model(model_id: str, request: Request) -> Response:
        """One model: the served one or an accepted alias (tts-1, …); 404 model_not_found otherwise."""

        async def handler(core: SynthesisCore) -> Response:
            check_model(core, model_id, param=None)
            return _json(_model_object(core, model_id))

        return await guarded(request, "openai_models", handler)

    @app.get("/audio/models")
    async def list_audio_models(request: Request) -> Response:
        """What Open WebUI asks first: ``{"models": [{"id"}]}``."""
        return await guarded(request, "openai_models", lambda core: _json(
            {"models": [{"id": served_model_id(core)}]}))

    # --- voices ------------------------------------------------------------------------------------------------

    @app.get("/audio/voices")
    async def list_voices(request: Request, limit: Optional[int] = Query(None, ge=1, le=10000),
                          offset: int = Query(0, ge=0)) -> Response:
        """Saved voices, then the aliases of PTBR_VOICE_ALIASES: ``{"voices": [{"id", "name"}]}`` (the shape of
        Open WebUI, Home Assistant and Kokoro). ``limit``/``offset`` page the saved voices."""

        async def handler(core: SynthesisCore) -> Response:
            page = limit if limit is not None else core.settings.max_voices
            voices, _ = await anyio.to_thread.run_sync(lambda: core.voices.list(offset=offset, limit=page))
            listed = [{"id": v.id, "name": v.name, "object": "audio.voice", "type": "audio_sample",
                       "created_at": _unix(v.created_at)} for v in voices]
            if offset == 0:
                listed += await anyio.to_thread.run_sync(_alias_entries, core)
            return _json({"voices": listed})

        return await guarded(request, "openai_voices", handler)

    @app.post("/audio/voices")
    async def create_voice(request: Request) -> Response:
        """``client.audio.voices.create(audio_sample=..., name=..., consent=..., extra_body={"ref_text": ...})``:
        the sample is prepared and saved exactly as POST /create_voice does."""
        return await guarded(request, "openai_create_voice", lambda core: _create_voice(core, request))

    @app.delete("/audio/voices/{voice_id}")
    async def delete_voice(voice_id: str, request: Request) -> Response:
        async def handler(core: SynthesisCore) -> Response:
            deleted = await core.delete_voice_request(voice_id)
            return _json({"id": deleted["voice"]["id"], "deleted": True, "object": "audio.voice.deleted"})

        return await guarded(request, "openai_delete_voice", handler)

    # --- speech ------------------------------------------------------------------------------------------------

    @app.post("/audio/speech")
    async def speech(body: SpeechRequest, request: Request) -> Response:  # type: ignore[valid-type]
        """OpenAI's speech endpoint on the shared synthesis path."""
        return await guarded(request, SPEECH_ENDPOINT, lambda core: _speech(core, body))

    # Last: any other path under /v1 answers in OpenAI's shape too (without this route the mount would not match
    # and BentoML's plain-text 404 would reach the client).
    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    async def unknown(path: str, request: Request) -> Response:
        allowed = sorted({method for route in app.routes if getattr(route, "endpoint", None) is not unknown
                          and getattr(route, "path_regex", None) is not None
                          and route.path_regex.match("/" + path) for method in (route.methods or ())})
        if allowed:
            return OpenAIError(405, f"{request.method} /v1/{path} is not allowed; use {', '.join(allowed)}",
                               code="method_not_allowed").response({"Allow": ", ".join(allowed)})
        return OpenAIError(404, f"/v1/{path} is not a route of this API (see /v1/docs)", code="unknown_url").response()

    app.add_middleware(UploadLimit, get_core=get_core)
    return app


def _endpoint(request: Request) -> str:
    path = request.url.path
    return SPEECH_ENDPOINT if path.endswith("/audio/speech") else "openai_" + path.rstrip("/").rsplit("/", 1)[-1]


def header_safe(text: str) -> str:
    """A client's or an operator's text as a header value: printable ASCII only (non-ASCII escaped, control
    characters dropped), so it can neither break the answer (latin-1) nor inject a header line."""
    return re.sub(r"[\x00-\x1f\x7f]", "", text.encode("ascii", "backslashreplace").decode("ascii"))


def _json(payload: Any, status: int = 200) -> Response:
    return JSONResponse(payload, status_code=status)


# ------------------------------------------------------------------------------------------------ route bodies


def served_model_id(core: SynthesisCore) -> str:
    """The model store name of the served model (``f5tts-ptbr`` unless imported under another name)."""
    return core.settings.model_tag.split(":", 1)[0]


def check_model(core: SynthesisCore, model: str, param: str | None = "model") -> None:
    accepted = {served_model_id(core), *core.settings.openai_model_aliases}
    if core.stored is not None:
        accepted.add(core.stored.tag)
    if model not in accepted:
        raise OpenAIError(404, f"the model {_shown(model)} does not exist; use {served_model_id(core)!r} "
                          f"(or one of {', '.join(sorted(core.settings.openai_model_aliases))})",
                          param=param, code="model_not_found")


def _model_object(core: SynthesisCore, model_id: str) -> dict[str, Any]:
    created = 0
    if core.stored is not None:
        try:
            created = int(os.stat(core.stored.path / "config.json").st_mtime)
        except OSError:
            pass
    return {"id": model_id, "object": "model", "created": created, "owned_by": OWNER}


def _unix(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


def _alias_entries(core: SynthesisCore) -> list[dict[str, Any]]:
    """One entry per alias whose target exists, so pickers (Open WebUI, Home Assistant) offer them too."""
    from ptbr_model.voices import VoiceError

    entries = []
    for alias, target in core.settings.voice_aliases.items():
        try:
            voice = core.voices.get(target)
        except VoiceError:
            continue
        entries.append({"id": alias, "name": f"{alias} ({voice.name})", "object": "audio.voice", "type": "alias",
                        "voice_id": voice.id})
    return entries


def resolve_voice(core: SynthesisCore, voice: str | VoiceObject) -> tuple[str, str]:
    """(saved voice id, how it was found). An alias of PTBR_VOICE_ALIASES wins over a saved voice of the same
    name (the operator said so explicitly); OpenAI's built-in names fall back to PTBR_DEFAULT_VOICE."""
    from ptbr_model.voices import VoiceNotFound

    key = (voice.id if isinstance(voice, VoiceObject) else voice).strip()
    if not key:
        raise OpenAIError(400, "voice: must not be empty; give a saved voice's id or name", param="voice",
                          code="invalid_value")
    folded = key.casefold()
    settings = core.settings
    if folded in settings.voice_aliases:
        target = settings.voice_aliases[folded]
        try:
            return core.voices.get(target).id, f"alias:{folded}"
        except VoiceNotFound:
            raise OpenAIError(404, f"voice: {_shown(key)} is mapped to {_shown(target)} by PTBR_VOICE_ALIASES, "
                              "which is not a saved voice", param="voice", code="voice_not_found") from None
    try:
        return core.voices.get(key).id, "saved"
    except VoiceNotFound:
        pass
    if folded in OPENAI_VOICES:
        if settings.default_voice:
            try:
                return core.voices.get(settings.default_voice).id, "default"
            except VoiceNotFound:
                raise OpenAIError(404, f"voice: {_shown(key)} falls back to PTBR_DEFAULT_VOICE="
                                  f"{_shown(settings.default_voice)}, which is not a saved voice", param="voice",
                                  code="voice_not_found") from None
        raise OpenAIError(404, f"voice: {_shown(key)} is one of OpenAI's built-in voices, which this service does "
                          f"not have: map it to a saved voice with PTBR_VOICE_ALIASES (e.g. {folded}=<voice name>), "
                          "set PTBR_DEFAULT_VOICE, or use a saved voice's id or name (GET /v1/audio/voices)",
                          param="voice", code="voice_not_found")
    raise OpenAIError(404, f"voice: no saved voice has the id or name {_shown(key)} (GET /v1/audio/voices lists "
                      "them)", param="voice", code="voice_not_found")


async def _speech(core: SynthesisCore, body: Any) -> Response:
    started = time.perf_counter()
    settings = core.settings
    check_model(core, body.model)
    limit = min(OPENAI_INPUT_LIMIT, settings.max_text_chars)
    if not body.input.strip():
        raise OpenAIError(400, "input: must not be empty or blank", param="input", code="invalid_value")
    if len(body.input) > limit:
        source = "PTBR_MAX_TEXT_CHARS" if settings.max_text_chars < OPENAI_INPUT_LIMIT else "OpenAI's limit"
        raise OpenAIError(400, f"input: {len(body.input)} characters is over the {limit}-character limit ({source})",
                          param="input", code="string_above_max_length")
    core.require_ready()
    voice_id, found_by = await anyio.to_thread.run_sync(resolve_voice, core, body.voice)

    headers = {"X-Voice-Id": voice_id, "X-Voice-Source": header_safe(found_by)}  # saved, alias:<name>, default
    speed = body.speed
    if speed is not None:
        applied = min(max(speed, ENGINE_SPEED_RANGE[0]), ENGINE_SPEED_RANGE[1])
        headers["X-Speed-Applied"] = f"{applied:g}"
        if applied != speed:
            headers["X-Speed-Requested"] = f"{speed:g}"
        speed = applied
    if body.instructions:
        headers["X-Instructions-Ignored"] = "true"
    if body.model_extra:
        headers["X-Ignored-Fields"] = header_safe(",".join(sorted(body.model_extra)))[:200]

    options = core.synthesis_options(
        speed_preset=body.speed_preset, nfe_step=body.nfe_step, cfg_strength=body.cfg_strength,
        sway_sampling_coef=body.sway_sampling_coef, speed=speed, seed=body.seed,
        cross_fade_duration=body.cross_fade_duration, normalize_text=body.normalize_text,
        pronunciations=body.pronunciations, latency_budget_s=body.latency_budget_s,
    )
    output = core.output_options(body.response_format, body.sample_rate, body.remove_silence, body.loudness)
    reference = await core.reference(voice=voice_id, reference_audio=None, reference_text=None,
                                     normalize_text=options.normalize_text, pronunciations=options.pronunciations)
    fmt = body.response_format
    hop = int((core.stored.mel if core.stored is not None else {}).get("hop_length", 256))
    from ptbr_model.audio_stream import STREAM_FORMATS

    streamable = fmt in STREAM_FORMATS
    if body.stream_format == "sse":
        events = SpeechEvents(hop)
        headers.update({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        if streamable:
            return await core.stream_response(SPEECH_ENDPOINT, body.input, reference, options, output, started,
                                              headers, framing=events)
        # flac: libsndfile and FFmpeg cannot write it incrementally to a pipe: one delta with the whole file.
        result = await core.synthesize(body.input, reference, options)
        whole = core.audio_response(SPEECH_ENDPOINT, result, output, started, len(body.input), headers)
        usage = events.usage(sum(len(chunk) for chunk in result.chunks), result.audio_seconds, result.sample_rate)
        payload = events.piece(whole.body) + sse_event({"type": "speech.audio.done", "usage": usage})
        kept = {name: value for name, value in whole.headers.items() if name.lower().startswith("x-")}
        return Response(payload, media_type=events.media_type, headers=kept)
    stream = body.stream_format == "audio" or (body.stream_format is None and settings.openai_stream_by_default)
    if stream and streamable:
        return await core.stream_response(SPEECH_ENDPOINT, body.input, reference, options, output, started, headers)
    result = await core.synthesize(body.input, reference, options)
    return core.audio_response(SPEECH_ENDPOINT, result, output, started, len(body.input), headers)


async def _create_voice(core: SynthesisCore, request: Request) -> Response:
    started = time.perf_counter()
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise OpenAIError(400, "POST /v1/audio/voices takes multipart/form-data: audio_sample (file), name, and the "
                          "sample's exact transcript as ref_text", code="invalid_content_type")
    form = await request.form(max_files=1, max_fields=16)
    try:
        kind = form.get("type") or "audio_sample"
        if kind != "audio_sample":
            raise OpenAIError(400, f"type: {_shown(kind)} is not supported; voices are cloned from an audio_sample",
                              param="type", code="invalid_value")
        sample = form.get("audio_sample")
        if not isinstance(sample, UploadFile):
            raise OpenAIError(400, "audio_sample: send the voice sample as a file", param="audio_sample",
                              code="missing_required_parameter")
        name = form.get("name")
        if not isinstance(name, str) or not name.strip():
            raise OpenAIError(400, "name: you must provide a name for the voice", param="name",
                              code="missing_required_parameter")
        transcript = form.get("ref_text") or form.get("reference_text")
        if not isinstance(transcript, str) or not transcript.strip():
            raise OpenAIError(400, "ref_text: send the sample's exact transcript (extra_body={'ref_text': ...}); "
                              "this service has no speech recogniser", param="ref_text",
                              code="missing_required_parameter")
        description, language = form.get("description"), form.get("language")
        with tempfile.TemporaryDirectory(prefix="ptbr-voice-") as folder:
            path = Path(folder) / "audio_sample"
            await anyio.to_thread.run_sync(_save_upload, sample, path)
            voice = await core.create_voice(
                name=name, reference_audio=path, reference_text=transcript,
                description=description if isinstance(description, str) else None,
                language=language if isinstance(language, str) else None,
            )
    finally:
        await form.close()
    core.log_ok("openai_create_voice", started, voice_id=voice.id, audio_s=voice.duration_s)
    return _json({"id": voice.id, "object": "audio.voice", "name": voice.name, "created_at": _unix(voice.created_at),
                  "type": "audio_sample"})


def _save_upload(upload: UploadFile, path: Path) -> None:
    upload.file.seek(0)
    with open(path, "wb") as out:
        while block := upload.file.read(1 << 20):
            out.write(block)


# -------------------------------------------------------------------------------------------------- body limit


class BodyTooLarge(OpenAIError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over the {limit}-byte upload limit (PTBR_MAX_UPLOAD_BYTES)",
                         param="audio_sample", code="file_too_large")


class UploadLimit:
    """Refuses a /v1 request body over PTBR_MAX_UPLOAD_BYTES (plus multipart framing) with OpenAI's 413: from
    Content-Length before anything is read, and while reading when the length is not announced (chunked).
    (serving/guards.RequestGuards leaves /v1 to this, so the answer keeps OpenAI's shape.)"""

    def __init__(self, app: Any, get_core: Callable[[], SynthesisCore]) -> None:
        self.app = app
        self.get_core = get_core

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        from serving.guards import UPLOAD_OVERHEAD_BYTES

        try:
            limit = self.get_core().settings.max_upload_bytes
        except OpenAIError as exc:
            await exc.response()(scope, receive, send)
            return
        allowed = limit + UPLOAD_OVERHEAD_BYTES
        length = next((value for name, value in scope.get("headers", []) if name == b"content-length"), None)
        too_large = BodyTooLarge(limit)
        if length is not None and length.isdigit() and int(length) > allowed:
            await too_large.response()(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > allowed:
                    raise too_large
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await too_large.response()(scope, receive, send)
