"""The text front-end in one call: normalise, fit to the vocabulary, chunk."""

from __future__ import annotations

from dataclasses import dataclass

from .chunking import chunk_budget_bytes, chunk_text
from .lexicon import Lexicon
from .normalizer import normalize
from .vocab import fit_to_vocab


@dataclass(frozen=True)
class PreparedText:
    """What the engine synthesises: the full text, its chunks, and characters the vocabulary lacked."""

    text: str
    chunks: tuple[str, ...]
    removed: tuple[str, ...]


def prepare_text(
    text: str,
    vocab: frozenset[str],
    *,
    ref_text: str,
    ref_audio_seconds: float,
    speed: float,
    normalize_text: bool = True,
    lexicon: Lexicon | None = None,
    first_chunk_bytes: int | None = None,
) -> PreparedText:
    """normalize (when asked, with ``lexicon``) -> fit_to_vocab -> chunk.

    The lexicon is part of normalisation: with ``normalize_text=False`` the text goes to the model as written.

    The chunk budget is computed from the reference transcript as the model will see it (prepared the
    same way), because upstream's rule relates the reference's bytes to its seconds.
    ``first_chunk_bytes``: make the first chunk short for early streamed audio (chunking.chunk_text).
    """
    spoken = normalize(text, lexicon=lexicon) if normalize_text else text
    fitted, removed = fit_to_vocab(spoken, vocab)
    reference = normalize(ref_text, lexicon=lexicon) if normalize_text else ref_text
    fitted_reference, _ = fit_to_vocab(reference, vocab)
    budget = chunk_budget_bytes(fitted_reference, ref_audio_seconds, speed)
    chunks = chunk_text(fitted, budget, first_chunk_bytes)
    return PreparedText(text=fitted, chunks=tuple(chunks), removed=tuple(removed))
