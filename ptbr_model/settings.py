"""Every default and limit of the service, read from ``PTBR_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ptbr_model.text.chunking import DEFAULT_FIRST_CHUNK_BYTES


# Speed presets: flow steps. NFE 7 and 16 use upstream's empirically pruned step schedule (EPSS), which
# CFM.sample applies to those step counts by itself; NFE 32 is upstream's default uniform schedule.
SPEED_PRESETS: dict[str, int] = {"quality": 32, "balanced": 16, "fast": 7}
SpeedPreset = Literal["quality", "balanced", "fast"]
CompileMode = Literal["auto", "true", "false"]
_COMPILE_ALIASES = {"1": "true", "yes": "true", "on": "true", "0": "false", "no": "false", "off": "false"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PTBR_", extra="ignore")

    # Model and device
    model_tag: str = Field("f5tts-ptbr:latest", description="model store tag the service loads")
    device: str = Field("auto", description="'auto' (first CUDA GPU, else CPU), 'cpu', 'cuda', 'cuda:1', …")
    dtype: Literal["auto", "float16", "float32"] = Field(
        "auto", description="'auto' = float16 on any CUDA GPU (Pascal included), float32 on CPU"
    )
    cuda_graphs: int = Field(
        4, ge=0, le=64, description="CUDA graphs of the transformer step kept (one per utterance length); 0 = off"
    )
    compile: CompileMode = Field(
        "auto", description="torch.compile the DiT blocks: 'auto' = on CUDA GPUs of compute capability 7.0+ when "
        "Triton, a C compiler and Python headers are there, verified by the warm-up (else eager, one log line); "
        "'true' = try even without the toolchain check; 'false' = never. Pascal is always eager"
    )
    compile_cache_dir: Path | None = Field(
        None, description="torch.compile's cache (Inductor and Triton), kept across restarts; "
        "default <data_dir>/cache/torch-compile"
    )
    warmup: bool = Field(True, description="run one short synthesis at load; checks FP16 output is finite")
    gpu_workers: Literal["auto"] | Annotated[int, Field(ge=1, le=64)] = Field(
        1, description="service worker processes: 'auto' = one per visible GPU, each bound to its own GPU with its "
        "own model copy and device queue (one on a CPU-only box); a number = that many, spread over the GPUs in turn"
    )
    cuda_memory_fraction: float | None = Field(
        None, gt=0.0, le=1.0, description="cap this process's share of its GPU's memory "
        "(torch.cuda.set_per_process_memory_fraction); beyond it a synthesis fails as out of memory (503) instead of "
        "taking memory another process on the GPU needs. Unset: no cap"
    )

    # Synthesis defaults (NFE 16 on the seed's GPU; cfg, sway and cross-fade as upstream)
    speed_preset: SpeedPreset = Field("balanced", description="default speed preset: quality (NFE 32), balanced (16), fast (7)")
    nfe_step: int | None = Field(None, ge=1, le=64, description="default flow steps; overrides the preset when set")
    cfg_strength: float = Field(2.0, ge=0.0, le=10.0)
    sway_sampling_coef: float = Field(-1.0, ge=-1.0, le=1.0)
    speed: float = Field(1.0, ge=0.3, le=3.0)
    cross_fade_duration: float = Field(0.15, ge=0.0, le=1.0)
    target_rms: float = Field(0.1, gt=0.0, le=1.0, description="reference loudness the model was trained at")
    remove_silence: bool = Field(False, description="default: trim silent edges and shorten long pauses of the output")
    loudness: float | None = Field(
        None, ge=-70.0, le=-5.0, description="default output loudness target in LUFS (None: leave the level as generated)"
    )
    lexicon_file: Path | None = Field(
        None, description="pronunciation lexicon (TSV word<TAB>respelling, or a JSON object) merged over the "
        "built-in loanword lexicon; README, Pronunciation"
    )
    first_chunk_bytes: int = Field(
        DEFAULT_FIRST_CHUNK_BYTES, ge=0, le=1000,
        description="streamed responses: make the first text chunk at most this many UTF-8 bytes (a clause) so audio "
        "starts early; 0 = off",
    )
    latency_budget_s: float | None = Field(
        None, gt=0.0, le=3600.0,
        description="default latency budget: lower the flow steps (32/16/12/10/7, never above the preset's) until "
        "the predicted synthesis time fits; unset = off; an explicit nfe_step wins",
    )

    # Limits on what a client may send
    max_text_chars: int = Field(2000, ge=1, description="longest text accepted by /synthesize")
    max_reference_text_chars: int = Field(1000, ge=1)
    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="largest reference upload (413 above)")
    min_reference_seconds: float = Field(1.0, gt=0.0)
    max_reference_seconds: float = Field(12.0, gt=1.0, description="longer references are clipped at a pause")
    max_decoded_seconds: float = Field(120.0, gt=0.0, description="refuse uploads that decode to more audio")
    max_pronunciations: int = Field(100, ge=0, description="entries in one request's `pronunciations`")
    max_pronunciation_chars: int = Field(64, ge=1, description="longest word or respelling in `pronunciations`")

    # Saved voices (under data_dir/voices)
    max_voices: int = Field(1000, ge=1, description="saved voices kept at most")
    voice_name_max_chars: int = Field(64, ge=1, le=256)
    voice_cache_size: int = Field(16, ge=0, description="prepared saved-voice references kept in memory (0 = off)")

    # Storage: everything the service writes (voices, jobs, caches) lives under one directory, so one volume holds it
    data_dir: Path = Field(
        default_factory=lambda: default_data_dir(),
        description="where voices, jobs and caches live; several replicas may share it",
    )

    # Long-form and dubbing jobs (under data_dir/jobs)
    max_long_text_chars: int = Field(200_000, ge=1, description="longest text accepted by /synthesize_long")
    paragraph_pause_s: float = Field(0.8, ge=0.0, le=5.0, description="silence between paragraphs of a long text")
    sentence_pause_s: float = Field(0.3, ge=0.0, le=5.0, description="silence between chunks ending a sentence")
    clause_pause_s: float = Field(0.1, ge=0.0, le=5.0, description="silence between chunks cut inside a sentence")
    dub_min_speed: float = Field(
        0.8, gt=0.0, le=1.0, description="dubbing: slowest speech, as a factor of natural, when `fill` stretches a line"
    )
    dub_max_speed: float = Field(
        1.3, ge=1.0, le=4.0, description="dubbing: fastest speech, as a factor of natural, to fit a cue's slot"
    )
    max_subtitle_bytes: int = Field(2 * 1024 * 1024, ge=1024, description="largest .srt/.vtt upload")
    max_subtitle_cues: int = Field(5000, ge=1, description="most cues in one subtitle file")
    max_cue_chars: int = Field(500, ge=1, description="longest text of one cue")
    max_track_seconds: float = Field(6 * 3600.0, gt=0.0, description="longest dubbing track (last cue's end)")
    max_duration_s: float = Field(30.0, gt=0.0, le=300.0, description="longest `duration` one utterance may ask for")
    job_workers: int = Field(
        1, ge=0, le=8, description="jobs this process runs at once (each takes the device one chunk at a time); "
        "0 = this replica only answers job routes and leaves the running to others"
    )
    job_retention_hours: float = Field(72.0, gt=0.0, description="finished jobs are deleted this long after they end")
    job_scan_interval_s: float = Field(
        5.0, gt=0.0, description="how often a replica looks for jobs to run (new, or interrupted elsewhere)"
    )
    job_max_attempts: int = Field(
        3, ge=1, description="claims of one job before it is failed (a job that kills its service is not retried forever)"
    )
    job_retry_backoff_s: float = Field(
        5.0, gt=0.0, description="a job stopped by a fault that may pass (out of device memory, a full data directory) "
        "is tried again after this long, doubled at each repeat of the fault"
    )
    job_retry_backoff_max_s: float = Field(300.0, gt=0.0, description="the longest of those waits")
    job_storage_wait_hours: float = Field(
        24.0, gt=0.0, description="how long a job waits for space on a full data directory before it is failed "
        "(insufficient_storage); its finished chunks are kept meanwhile"
    )
    max_jobs: int = Field(1000, ge=1, description="jobs kept at most (finished ones count until deleted or expired)")
    max_active_jobs: int = Field(100, ge=1, description="unfinished jobs at most; more submissions get 429")
    # Test hook only: sleep this long after each finished job chunk (the device is free then), so a test can act in
    # the middle of a job on a fast machine. Never set it in production.
    test_job_chunk_pause_s: float = Field(0.0, ge=0.0)

    # Serving
    max_concurrency: int = Field(
        64, ge=1, description="requests in flight on every route together before BentoML answers 429 (a safety valve; "
        "the device queue below is what limits syntheses)"
    )
    queue_max_waiting: int = Field(8, ge=0, description="syntheses waiting for the device before 429")
    queue_timeout_s: float = Field(120.0, gt=0.0, description="longest wait for the device before 503")
    queue_retry_after_seconds: int = Field(2, ge=1, description="Retry-After on a full queue")
    traffic_timeout: float = Field(300.0, gt=0.0, description="seconds to the first byte of a response")
    oom_retry_after_seconds: int = Field(5, ge=1)
    log_format: Literal["text", "json"] = "text"

    # OpenAI-compatible API (/v1, serving/openai_api.py)
    voice_aliases: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="names a /v1 client may send as `voice`, each mapped to a saved voice's id or name: "
        "'alloy=ana,nova=bia' (or a JSON object); a mapping wins over a saved voice of the same name",
    )
    default_voice: str | None = Field(
        None, description="saved voice (id or name) spoken for OpenAI's built-in voice names (alloy, nova, …) that "
        "voice_aliases does not map; unset: those names answer 404"
    )
    openai_model_aliases: Annotated[tuple[str, ...], NoDecode] = Field(
        ("tts-1", "tts-1-hd", "gpt-4o-mini-tts"),
        description="`model` names /v1 accepts besides the served model's own (comma-separated)",
    )
    openai_stream_by_default: bool = Field(
        True, description="/v1/audio/speech without stream_format streams the audio as it is generated, as OpenAI's "
        "does (flac excepted); false answers one whole file with Content-Length and X-Audio-Duration"
    )
    open_listing: bool = Field(
        True, description="once an API key is configured, GET /v1/models, /v1/audio/models and /v1/audio/voices "
        "stay readable without it (Open WebUI lists voices and models with no Authorization header)"
    )
    ui_enabled: bool = Field(True, description="serve the web page at /ui (false: /ui answers 404)")
    ui_require_key: bool = Field(
        False, description="with keys set, the web page's own files (GET /ui…) need a key too (a browser sends none: "
        "only behind a proxy that adds it); the routes the page calls always need one"
    )

    max_json_bytes: int = Field(
        1024 * 1024, ge=1024, description="largest request body that is not a multipart upload (JSON, url-encoded "
        "forms); 413 above, counted as it streams in when there is no Content-Length"
    )

    # Access (README, Operations): with no key set, every route is open, as before.
    api_keys: SecretStr = Field(
        SecretStr(""), description="API keys, comma-separated; when any key is set (here or in api_keys_file) every "
        "route but the probes needs `Authorization: Bearer <key>`"
    )
    api_keys_file: Path | None = Field(
        None, description="a file of API keys, one per line (# comments); re-read when it changes, so keys rotate "
        "without a restart"
    )
    metrics_require_key: bool = Field(False, description="with keys set, /metrics needs a key too")
    # Test hook only: sleep this long after a voice's files are written and before they are committed, so a test
    # can kill the process in the middle of a write. Never set it in production.
    test_voice_commit_pause_s: float = Field(0.0, ge=0.0)
    # Test hook only: a text chunk containing this word raises a (CUDA) out-of-memory error inside the engine, at the
    # point a real one would come from, so the 503 path can be exercised on a CPU. Never set it in production.
    test_oom_trigger: str | None = Field(None, min_length=4)
    # Test hook only: like test_oom_trigger, but a chunk raises only the first time its exact text is seen (per
    # process), so a retry of the same chunk succeeds. Never set it in production.
    test_oom_once_trigger: str | None = Field(None, min_length=4)

    @field_validator("voice_aliases", mode="before")
    @classmethod
    def _parse_aliases(cls, value: Any) -> Any:
        return parse_aliases(value) if isinstance(value, str) else value

    @field_validator("openai_model_aliases", mode="before")
    @classmethod
    def _parse_names(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(",") if name.strip())
        return value

    @field_validator("default_voice", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value


    @field_validator("compile", mode="before")
    @classmethod
    def _compile_accepts_booleans(cls, value: object) -> object:
        # PTBR_COMPILE was a boolean before 'auto' existed: true/false/1/0/yes/no/on/off keep working.
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str):
            lowered = value.strip().lower()
            return _COMPILE_ALIASES.get(lowered, lowered)
        return value

    @field_validator("gpu_workers", mode="before")
    @classmethod
    def _auto_is_lowercase(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) and value.strip().lower() == "auto" else value

    @model_validator(mode="after")
    def _workers_pick_their_gpu(self) -> "Settings":
        # Each worker narrows CUDA_VISIBLE_DEVICES to its own GPU, which it then sees as cuda:0; a device index
        # named here would point elsewhere (or nowhere) in every worker.
        if self.gpu_workers != 1 and self.device not in ("auto", "cuda", "cpu"):
            raise ValueError(
                f"PTBR_GPU_WORKERS={self.gpu_workers} binds each worker to its own GPU: PTBR_DEVICE must be auto, "
                f"cuda or cpu, not {self.device!r} (use CUDA_VISIBLE_DEVICES to choose the GPUs)"
            )
        return self

    @property
    def compile_cache_path(self) -> Path:
        if self.compile_cache_dir is not None:
            return self.compile_cache_dir
        return self.data_dir / "cache" / "torch-compile"


def parse_aliases(text: str) -> dict[str, str]:
    """'alloy=ana, nova = Bia Souza' (or a JSON object) → {"alloy": "ana", "nova": "Bia Souza"}. Keys are matched
    case-insensitively, so they are stored lower-cased."""
    import json

    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        pairs = json.loads(text)
        if not isinstance(pairs, dict) or not all(isinstance(v, str) for v in pairs.values()):
            raise ValueError("PTBR_VOICE_ALIASES as JSON must be an object of strings")
        items = list(pairs.items())
    else:
        items = []
        for part in text.split(","):
            if not part.strip():
                continue
            name, sep, target = part.partition("=")
            if not sep:
                raise ValueError(f"PTBR_VOICE_ALIASES entry {part.strip()!r} is not name=voice")
            items.append((name, target))
    aliases: dict[str, str] = {}
    for name, target in items:
        name, target = name.strip().casefold(), target.strip()
        if not name or not target:
            raise ValueError(f"PTBR_VOICE_ALIASES entry {name!r}={target!r} needs both a name and a voice")
        aliases[name] = target
    return aliases


def default_data_dir() -> Path:
    """``$BENTOML_HOME/f5tts-ptbr-data`` (BentoML's home defaults to ~/bentoml): beside the model store, so a
    container's one volume for BentoML's home can carry the data too."""
    home = os.environ.get("BENTOML_HOME") or os.path.join(os.path.expanduser("~"), "bentoml")
    return Path(home) / "f5tts-ptbr-data"


def resolve_nfe_step(settings: Settings, nfe_step: int | None, preset: str | None) -> int:
    """A request's explicit nfe_step, else its preset, else PTBR_NFE_STEP, else PTBR_SPEED_PRESET."""
    if nfe_step is not None:
        return nfe_step
    if preset is not None:
        return SPEED_PRESETS[preset]
    return settings.nfe_step if settings.nfe_step is not None else SPEED_PRESETS[settings.speed_preset]


def resolve_latency_budget(settings: Settings, latency_budget_s: float | None, nfe_step: int | None) -> float | None:
    """A request's latency_budget_s, else PTBR_LATENCY_BUDGET_S; none when the request named nfe_step (it wins)."""
    if nfe_step is not None:
        return None
    return latency_budget_s if latency_budget_s is not None else settings.latency_budget_s


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
