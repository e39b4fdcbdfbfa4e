"""Every default and limit of the service, read from ``PTBR_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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

    # Synthesis defaults (NFE 16 on the seed's GPU; cfg, sway and cross-fade as upstream)
    speed_preset: SpeedPreset = Field("balanced", description="default speed preset: quality (NFE 32), balanced (16), fast (7)")
    nfe_step: int | None = Field(None, ge=1, le=64, description="default flow steps; overrides the preset when set")
    cfg_strength: float = Field(2.0, ge=0.0, le=10.0)
    sway_sampling_coef: float = Field(-1.0, ge=-1.0, le=1.0)
    speed: float = Field(1.0, ge=0.3, le=3.0)
    cross_fade_duration: float = Field(0.15, ge=0.0, le=1.0)
    target_rms: float = Field(0.1, gt=0.0, le=1.0, description="reference loudness the model was trained at")
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

    # Storage: everything the service writes (voices, jobs, caches) lives under one directory, so one volume holds it
    data_dir: Path = Field(
        default_factory=lambda: default_data_dir(),
        description="where voices, jobs and caches live; several replicas may share it",
    )

    # Serving
    max_concurrency: int = Field(8, ge=1, description="requests in flight before BentoML answers 429")
    traffic_timeout: float = Field(300.0, gt=0.0, description="seconds to the first byte of a response")
    oom_retry_after_seconds: int = Field(5, ge=1)
    log_format: Literal["text", "json"] = "text"

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

    @property
    def compile_cache_path(self) -> Path:
        if self.compile_cache_dir is not None:
            return self.compile_cache_dir
        return self.data_dir / "cache" / "torch-compile"


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
