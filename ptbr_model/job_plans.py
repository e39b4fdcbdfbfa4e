"""What a job will do, decided once at submit time and stored with it: the units (text chunks or cues) in order,
each with the exact text the model reads, its seed and its duration target.

- long text: paragraphs (blank lines) are chunked like ``/synthesize`` chunks (sentences packed up to the
  reference's budget); the silence after a chunk is the paragraph pause at a paragraph's end, the sentence pause
  after a sentence end, the clause pause after a chunk cut inside a sentence;
- subtitles: one unit per cue, its length chosen by ``subtitles.fit_cue`` from the natural length the engine
  would give it (the same rule it generates with).

Seeds: unit ``i`` gets ``seed + i``, as the engine seeds chunk ``i`` of a request, so a job is reproducible and a
resumed job makes the units it still lacks exactly as an uninterrupted run would have.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ptbr_model.jobs import Unit
from ptbr_model.subtitles import SubtitleTrack, fit_cue

__all__ = ["Pauses", "plan_dub", "plan_long", "split_paragraphs"]

MAX_SEED = 2**31 - 1
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n")
_SENTENCE_END = re.compile(r"[.!?…][\"')\]»”]*$")


@dataclass(frozen=True)
class Pauses:
    paragraph: float = 0.8
    sentence: float = 0.3
    clause: float = 0.1


def split_paragraphs(text: str) -> list[str]:
    """Paragraphs are separated by one or more blank lines; single line breaks stay inside a paragraph."""
    return [part.strip() for part in _PARAGRAPH_BREAK.split(text.replace("\r\n", "\n")) if part.strip()]


def plan_long(text: str, vocab: frozenset[str], *, reference_text: str, reference_seconds: float, speed: float,
              normalize_text: bool, seed: int, pauses: Pauses) -> tuple[list[Unit], list[str]]:
    """(units, characters removed because the vocabulary lacks them). Empty units when nothing is readable."""
    from ptbr_model.text import prepare_text

    units: list[Unit] = []
    removed: list[str] = []
    for paragraph_index, paragraph in enumerate(split_paragraphs(text)):
        prepared = prepare_text(paragraph, vocab, ref_text=reference_text, ref_audio_seconds=reference_seconds,
                                speed=speed, normalize_text=normalize_text)
        removed += [character for character in prepared.removed if character not in removed]
        for position, chunk in enumerate(prepared.chunks):
            if position == len(prepared.chunks) - 1:
                pause = pauses.paragraph
            elif _SENTENCE_END.search(chunk):
                pause = pauses.sentence
            else:
                pause = pauses.clause
            index = len(units)
            units.append(Unit(index=index, text=chunk, seed=(seed + index) % (MAX_SEED + 1),
                              place={"paragraph": paragraph_index, "pause_after": pause}))
    return units, removed


def plan_dub(track: SubtitleTrack, engine: Any, reference: Any, options: Any, *, seed: int, min_speed: float,
             max_speed: float, fill: bool) -> tuple[list[Unit], list[str]]:
    """One unit per cue (cues in start order). ``engine.natural_seconds`` gives each cue's natural length."""
    from ptbr_model.text import fit_to_vocab, normalize

    units: list[Unit] = []
    removed: list[str] = []
    cues = track.cues
    for position, cue in enumerate(cues):
        spoken, lost = fit_to_vocab(normalize(cue.text) if options.normalize_text else cue.text, engine.vocab)
        spoken = " ".join(spoken.split())
        if not any(character.isalnum() for character in spoken):  # "♪", "…", "--": nothing to say, the cue stays silent
            spoken = ""
        removed += [character for character in lost if character not in removed]
        next_start = cues[position + 1].start if position + 1 < len(cues) else None
        place: dict[str, Any] = {"cue": cue.index, "line": cue.line, "start": cue.start, "end": cue.end,
                                 "text": cue.text, "natural_seconds": None, "beyond_speed_limit": False}
        duration = None
        if spoken:
            natural = engine.natural_seconds(reference, spoken, options)
            fit = fit_cue(natural, cue.start, cue.end, next_start, min_speed=min_speed, max_speed=max_speed,
                          fill=fill)
            duration = fit.target_seconds
            place.update(natural_seconds=round(natural, 4), beyond_speed_limit=fit.beyond_speed_limit)
        units.append(Unit(index=position, text=spoken, seed=(seed + position) % (MAX_SEED + 1), duration=duration,
                          place=place))
    return units, removed
