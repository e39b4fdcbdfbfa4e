"""Every default and limit of the service, read from ``PTBR_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


# Speed presets: flow steps. NFE 7 and 16 use upstream's empirically pruned step schedule (EPSS), which
# CFM.sample applies to those step counts by itself; NFE 32 is upstream's default uniform schedule.
SPEED_PRESETS: dict[str, int] = {"quality": 32, "balanced": 16, "fast": 7}
SpeedPreset = Literal["quality", "balanced", "fast"]


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
    compile: bool = Field(
        False, description="torch.compile the DiT blocks on CUDA GPUs of compute capability 7.0+ (needs a C compiler; "
        "about 30 s more at load)"
    )
    warmup: bool = Field(True, description="run one short synthesis at load; checks FP16 output is finite")

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
    open_listing: bool = Field(
        True, description="with keys set, GET /v1/models, /v1/audio/models and /v1/audio/voices still answer "
        "without a key (Open WebUI lists models and voices without sending one)"
    )
    metrics_require_key: bool = Field(False, description="with keys set, /metrics needs a key too")
    # Test hook only: sleep this long after a voice's files are written and before they are committed, so a test
    # can kill the process in the middle of a write. Never set it in production.
    test_voice_commit_pause_s: float = Field(0.0, ge=0.0)
    # Test hook only: a text chunk containing this word raises a (CUDA) out-of-memory error inside the engine, at the
    # point a real one would come from, so the 503 path can be exercised on a CPU. Never set it in production.
    test_oom_trigger: str | None = Field(None, min_length=4)


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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
