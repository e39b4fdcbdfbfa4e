"""Fixed pt-BR inputs (and a synthetic voice-like reference, shared with the tests) for the benchmark (``scripts/benchmark.py``), so runs on different machines and commits
compare like with like.

The sizes follow DESIGN.md's measured anchors: a sentence of about 64 characters (about 4 s of audio from a 6 s
reference) and a paragraph of about 500 characters (about 30 s of audio, several chunks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A reference transcript is spoken at a steady rate: upstream's duration rule scales the generated length by
# reference seconds / reference bytes, so a transcript that does not grow with the reference would make longer
# references produce longer (slower) speech. 16 bytes per second of model text gives the anchors' 4.1 s for the
# sentence from a 6 s reference.
REFERENCE_BYTES_PER_SECOND = 16.0
# What the engine appends to a transcript ending in '.' (see engine.reference_text_for_model): two spaces.
_MODEL_SUFFIX_BYTES = 2
DEFAULT_REFERENCE_SECONDS = 6.0

_LONG_TRANSCRIPT = (
    "Bom dia a todos. Hoje eu vou ler um pequeno texto em voz alta para testar a clonagem de voz. "
    "Vou falar devagar e com calma, como quem conversa com um amigo numa tarde tranquila de domingo, sentado "
    "na varanda, olhando o movimento da rua e esperando o café ficar pronto na cozinha."
)


@dataclass(frozen=True)
class Workload:
    name: str
    text: str


WORKLOADS: dict[str, Workload] = {
    workload.name: workload
    for workload in (
        Workload("sentence", "O ônibus das 8 horas atrasou de novo por causa da chuva forte."),
        Workload(
            "paragraph",
            "A cidade de Tiradentes, em Minas Gerais, recebe todos os anos mais de 100 mil visitantes. "
            "Fundada no começo do século dezoito, ela guarda casarões coloniais, igrejas barrocas e ruas de pedra "
            "que parecem ter parado no tempo. Nos fins de semana, o trem a vapor faz o trajeto de 12 quilômetros "
            "até São João del-Rei, passando por vales e pequenas fazendas. À noite, os restaurantes servem pão de "
            "queijo, feijão tropeiro e doce de leite, e a praça principal se enche de música.",
        ),
    )
}
# The longest text the service accepts by default (PTBR_MAX_TEXT_CHARS = 2000): the memory bound's workload.
WORKLOADS["long"] = Workload("long", " ".join([WORKLOADS["paragraph"].text] * 4)[:2000].rsplit(" ", 1)[0] + ".")
DEFAULT_WORKLOADS = ("sentence", "paragraph")


def reference_transcript(seconds: float) -> str:
    """The first words of a fixed transcript, as many as a speaker says in ``seconds``, ending in a full stop."""
    budget = round(REFERENCE_BYTES_PER_SECOND * seconds) - _MODEL_SUFFIX_BYTES
    if budget > len(_LONG_TRANSCRIPT.encode("utf-8")):
        raise ValueError(f"no transcript for a {seconds:g} s reference: the fixed transcript covers "
                         f"{max_reference_seconds():g} s at most")
    words: list[str] = []
    for word in _LONG_TRANSCRIPT.split():
        candidate = " ".join([*words, word]).rstrip(",.") + "."
        if words and len(candidate.encode("utf-8")) > budget:
            break
        words.append(word)
    return " ".join(words).rstrip(",.") + "."


def max_reference_seconds() -> float:
    return (len(_LONG_TRANSCRIPT.encode("utf-8")) + _MODEL_SUFFIX_BYTES) / REFERENCE_BYTES_PER_SECOND


def voice_like(seconds: float = 3.0, sample_rate: int = 24000, seed: int = 7, amplitude: float = 0.05) -> np.ndarray:
    """Harmonics of a wandering pitch with syllable-rate amplitude and short pauses: enough structure for the
    reference pipeline (loudness, pause detection) to behave as with speech."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    pitch = 140 + 25 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    wave = sum(np.sin(k * phase) / k for k in range(1, 6))
    syllables = np.clip(np.sin(2 * np.pi * 4.0 * t), 0, None)
    wave = wave * syllables + 0.01 * rng.standard_normal(len(t))
    return (amplitude * wave / np.max(np.abs(wave))).astype(np.float32)
