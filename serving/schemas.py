"""Request schemas shared by several routes (BentoML ``input_spec``): the same speech fields, the same defaults,
the same limits and descriptions on /synthesize, /synthesize_stream and the jobs.

BentoML 1.4.40: an optional file must be declared ``Path = None`` (``Optional[Path]`` breaks the input-spec
inference and the Python client); everything else optional is ``Optional[...] = None`` and falls back to settings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal, Optional

from pydantic import BaseModel, BeforeValidator, Field

from ptbr_model.settings import SpeedPreset

ResponseFormat = Literal["wav", "flac", "mp3", "opus", "aac", "pcm"]
StreamFormat = Literal["pcm", "wav", "mp3", "opus", "aac"]


def _json_object(value: object) -> object:
    """Multipart forms carry every field as a string: accept a JSON object written as text too."""
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            return json.loads(value)
        except ValueError:
            raise ValueError("must be a JSON object mapping words to respellings") from None
    return value


Pronunciations = Annotated[
    Optional[dict[str, str]],
    BeforeValidator(_json_object),
    Field(description='respellings for this request, e.g. {"Xuxa": "Chucha"}; applied before normalisation'),
]


class VoiceFields(BaseModel):
    """The voice to speak with: a saved ``voice``, or ``reference_audio`` with its ``reference_text``."""

    voice: Annotated[Optional[str], Field(description="a saved voice's id or name (instead of reference_audio)")] = None
    reference_audio: Annotated[Path, Field(description="a few seconds of the voice: wav, flac, ogg, mp3, webm, m4a")] = None
    reference_text: Annotated[Optional[str], Field(description="exact transcript of reference_audio")] = None


class SynthesisFields(VoiceFields):
    """How to speak, shared by every synthesis route (the text, or the subtitles, come on top)."""

    speed_preset: Annotated[Optional[SpeedPreset], Field(description="quality (NFE 32), balanced (16), fast (7)")] = None
    nfe_step: Annotated[Optional[int], Field(ge=1, le=64, description="flow steps; overrides speed_preset")] = None
    cfg_strength: Annotated[Optional[float], Field(ge=0.0, le=10.0)] = None
    sway_sampling_coef: Annotated[Optional[float], Field(ge=-1.0, le=1.0)] = None
    speed: Annotated[Optional[float], Field(ge=0.3, le=3.0)] = None
    seed: Annotated[Optional[int], Field(ge=0, le=2**31 - 1, description="same input + seed = same audio")] = None
    cross_fade_duration: Annotated[Optional[float], Field(ge=0.0, le=1.0)] = None
    normalize_text: Annotated[bool, Field(description="spell out numbers, dates, currency, …")] = True
    pronunciations: Pronunciations = None
    # ge, not gt, here and below: BentoML serves OpenAPI 3.0, where pydantic's numeric exclusiveMinimum is invalid.
    latency_budget_s: Annotated[Optional[float], Field(
        ge=0.01, le=3600, description="seconds the synthesis may take: fewer flow steps (never above the preset's) until "
        "the predicted time fits; ignored when nfe_step is given")] = None
    sample_rate: Annotated[Optional[int], Field(ge=8000, le=48000, description="resample the answer (Hz)")] = None
    loudness: Annotated[Optional[float], Field(ge=-70.0, le=-5.0, description="output loudness target, LUFS")] = None

    def synthesis_fields(self) -> dict:
        return self.model_dump(include={"speed_preset", "nfe_step", "cfg_strength", "sway_sampling_coef", "speed",
                                        "seed", "cross_fade_duration", "normalize_text",
                                        "pronunciations", "latency_budget_s"})


class SpeechFields(SynthesisFields):
    text: Annotated[str, Field(description="Portuguese text to speak")]
    remove_silence: Annotated[Optional[bool], Field(description="trim silent edges and shorten long pauses")] = None


class SynthesizeInput(SpeechFields):
    response_format: ResponseFormat = "wav"
    duration: Annotated[Optional[float], Field(
        ge=0.01, le=300.0, description="seconds the speech should last (F5-TTS duration control); the text must fit "
        "in one chunk")] = None


class StreamInput(SpeechFields):
    response_format: Annotated[StreamFormat, Field(description="pcm (s16le), wav (streaming header), mp3, opus, aac")] = "pcm"


class LongInput(SpeechFields):
    """``/synthesize_long/submit``: a chapter or a whole transcript, synthesised as a job."""

    text: Annotated[str, Field(description="Portuguese text, up to PTBR_MAX_LONG_TEXT_CHARS; blank lines separate "
                               "paragraphs")]
    response_format: Annotated[ResponseFormat, Field(description="default format of the result (…/get can ask for "
                                                     "another)")] = "wav"
    paragraph_pause_s: Annotated[Optional[float], Field(ge=0.0, le=5.0, description="silence between paragraphs")] = None
    sentence_pause_s: Annotated[Optional[float], Field(ge=0.0, le=5.0, description="silence after a chunk ending a "
                                                       "sentence")] = None


class DubInput(SynthesisFields):
    """``/dub_subtitles/submit``: an SRT or WebVTT file, dubbed into one timed track."""

    subtitles: Annotated[Path, Field(description=".srt or .vtt file, UTF-8 or Latin-1")]
    response_format: Annotated[ResponseFormat, Field(description="default format of the result (…/get can ask for "
                                                     "another)")] = "wav"
    fill: Annotated[bool, Field(description="slow short lines down (to PTBR_DUB_MIN_SPEED) to fill their cue")] = False
