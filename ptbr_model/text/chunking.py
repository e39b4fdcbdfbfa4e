"""Split text into chunks the model can say in one go, sized in UTF-8 bytes like upstream f5-tts.

Upstream (f5_tts.infer.utils_infer.infer_process) sizes chunks so that reference plus chunk stay
under ~22 s of audio, and speaks chunks under 10 bytes at speed 0.3. Here chunks break at sentence
ends first, then at clause punctuation (, ; :), then at spaces; short tails join their neighbour.

For streaming, the first chunk can be made deliberately short (``first_chunk_bytes``): the listener hears
the first clause while the rest is synthesised. The chunks after it keep the normal size.
"""

from __future__ import annotations

import math
import re

from .number_words import SPOKEN_NUMBER_WORDS

# Upstream's rule: the reference and one chunk together should stay under this much audio.
TOTAL_AUDIO_SECONDS = 22
# Floor for the budget when the reference is 22 s or longer (or the rule gives nothing usable).
MIN_BUDGET_BYTES = 50
# Chunks shorter than this join a neighbour: upstream would speak them at speed 0.3 below 10 bytes,
# and a couple of words alone sound clipped. The merged chunk may exceed the budget by this much.
MIN_CHUNK_BYTES = 20

# PTBR_FIRST_CHUNK_BYTES' default: about one clause ("A cidade de Tiradentes, em Minas Gerais," is 40 bytes),
# about 2-3 s of speech, so first audio costs a fraction of a full chunk.
DEFAULT_FIRST_CHUNK_BYTES = 48

_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|(?<=[.!?…][\"')\]»])\s+")
_CLAUSE_END = re.compile(r"(?<=[,;:])\s+")
_WHITESPACE = re.compile(r"\s+")
_SENTENCE_TOKEN_END = re.compile(r"[.!?…][\"')\]»]?$")
_CLAUSE_TOKEN_END = re.compile(r"[,;:]$")


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def chunk_budget_bytes(ref_text: str, ref_audio_seconds: float, speed: float) -> int:
    """Upstream's rule: bytes/second of the reference times the seconds left of 22 s, times speed."""
    if not (math.isfinite(ref_audio_seconds) and ref_audio_seconds > 0):
        raise ValueError(f"ref_audio_seconds must be a positive number, got {ref_audio_seconds!r}")
    if not (math.isfinite(speed) and speed > 0):
        raise ValueError(f"speed must be a positive number, got {speed!r}")
    bytes_per_second = _size(ref_text) / ref_audio_seconds
    budget = int(bytes_per_second * (TOTAL_AUDIO_SECONDS - ref_audio_seconds) * speed)
    return max(budget, MIN_BUDGET_BYTES)


def _pack(pieces: list[str], max_bytes: int) -> list[str]:
    """Greedily join pieces with spaces while the result fits; an oversized piece stands alone."""
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        candidate = f"{current} {piece}" if current else piece
        if current and _size(candidate) > max_bytes:
            chunks.append(current)
            current = piece
        else:
            current = candidate
    if current:
        chunks.append(current)
    return chunks


def _is_number_word(token: str) -> bool:
    return token.rstrip(".,;:!?").lower() in SPOKEN_NUMBER_WORDS


def _word_groups(clause: str) -> list[str]:
    """Words of a clause, with each spelled-out number kept as one group.

    "três mil quatrocentas e cinquenta e seis" stays whole: an "e" joins the group only between
    two number words.
    """
    tokens = clause.split(" ")
    groups: list[str] = []
    previous_is_number = False
    for index, token in enumerate(tokens):
        is_number = _is_number_word(token)
        following_is_number = index + 1 < len(tokens) and _is_number_word(tokens[index + 1])
        joins_number = previous_is_number and (is_number or (token == "e" and following_is_number))
        if groups and joins_number:
            groups[-1] = f"{groups[-1]} {token}"
        else:
            groups.append(token)
        previous_is_number = is_number or (joins_number and token == "e")
        if token[-1:] in ".,;:!?":
            previous_is_number = False
    return groups


def _split_sentence(sentence: str, max_bytes: int) -> list[str]:
    """Clauses of an over-long sentence; clauses still too long are split between words (not numbers)."""
    pieces: list[str] = []
    for clause in _CLAUSE_END.split(sentence):
        if _size(clause) <= max_bytes:
            pieces.append(clause)
        else:
            pieces += _pack(_word_groups(clause), max_bytes)
    return pieces


def _merge_short(chunks: list[str]) -> list[str]:
    """Join chunks under MIN_CHUNK_BYTES to the previous chunk (the first one to the next)."""
    merged: list[str] = []
    for chunk in chunks:
        if merged and (_size(chunk) < MIN_CHUNK_BYTES or _size(merged[-1]) < MIN_CHUNK_BYTES):
            merged[-1] = f"{merged[-1]} {chunk}"
        else:
            merged.append(chunk)
    return merged


def _boundary_strength(group: str) -> int:
    if _SENTENCE_TOKEN_END.search(group):
        return 2
    return 1 if _CLAUSE_TOKEN_END.search(group) else 0


def split_first_chunk(text: str, first_chunk_bytes: int) -> tuple[str, str]:
    """The short first chunk and the rest: the cut with the strongest boundary (sentence end, then clause end,
    then a space) among those leaving the first chunk between MIN_CHUNK_BYTES and ``first_chunk_bytes``; on a tie
    the longest. Cuts fall between word groups, so a spelled-out number is never split. When no cut fits (a
    first word longer than the limit), the first cut past MIN_CHUNK_BYTES. ``text`` is whitespace-collapsed."""
    groups = _word_groups(text)
    best: tuple[int, int, int] | None = None  # (strength, size, index of the last group of the first chunk)
    fallback: int | None = None
    size = -1
    for index, group in enumerate(groups[:-1]):  # at least one group stays for the rest
        size += 1 + _size(group)
        if size < MIN_CHUNK_BYTES:
            continue
        if fallback is None:
            fallback = index
        if size > first_chunk_bytes:
            break
        candidate = (_boundary_strength(group), size, index)
        if best is None or candidate[:2] >= best[:2]:
            best = candidate
    cut = best[2] if best is not None else fallback
    if cut is None:
        return text, ""
    return " ".join(groups[: cut + 1]), " ".join(groups[cut + 1:])


def chunk_text(text: str, max_bytes: int, first_chunk_bytes: int | None = None) -> list[str]:
    """Split ``text`` into chunks of at most ``max_bytes`` UTF-8 bytes where possible.

    Chunks are stripped; joined with single spaces they give back the text (whitespace collapsed).
    A single word (or spelled-out number) longer than the budget is never cut; a short tail may push
    a chunk a little over.

    ``first_chunk_bytes`` (None or 0: off) makes the first chunk short (see ``split_first_chunk``) when the text is
    longer than twice that: for shorter texts an extra chunk would cost a second pass over the reference for
    little earlier audio.
    """
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be positive, got {max_bytes}")
    if first_chunk_bytes is not None and first_chunk_bytes < 0:
        raise ValueError(f"first_chunk_bytes must be positive (or 0/None: off), got {first_chunk_bytes}")
    text = _WHITESPACE.sub(" ", text).strip()
    if not text:
        return []
    if first_chunk_bytes and _size(text) > 2 * first_chunk_bytes:
        first, rest = split_first_chunk(text, first_chunk_bytes)
        return [first, *chunk_text(rest, max_bytes)] if rest else [first]
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        if _size(sentence) <= max_bytes:
            pieces.append(sentence)
        else:
            pieces += _split_sentence(sentence, max_bytes)
    return _merge_short(_pack(pieces, max_bytes))
