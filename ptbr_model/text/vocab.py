"""Vocabulary coverage: every character the model sees must be a symbol of its vocab.txt.

f5-tts turns unknown characters into index 0 (a space) without a word. Here known variants are mapped
first (curly quotes, odd dashes, missing capitals or accents), and whatever is still unknown is removed
and reported.
"""

from __future__ import annotations

import os
import re
import unicodedata

# Tried in order; a replacement is used only if all of its characters are in the vocabulary.
KNOWN_VARIANTS: dict[str, tuple[str, ...]] = {
    "“": ('"',), "”": ('"',), "„": ('"',), "‟": ('"',), "«": ('"',), "»": ('"',),
    "‘": ("'",), "’": ("'",), "‚": ("'",), "‛": ("'",), "`": ("'",), "´": ("'",),
    "–": ("-", ","), "—": ("-", ","), "―": ("-", ","), "‒": ("-", ","), "‐": ("-",), "‑": ("-",), "−": ("-",),
    "…": ("...",), "ª": ("a",), "º": ("o",), "•": (",",), "·": (",",),
}  # fmt: skip

_SPACES = re.compile(r" {2,}")
# Removals and dash-to-comma mappings can leave "centavos ☃." -> "centavos ." or "sim , não".
_SPACE_BEFORE_PUNCTUATION = re.compile(r" (?=[.,;:!?])")


def vocab_indices(path: str | os.PathLike[str]) -> dict[str, int]:
    """Symbol → index exactly as f5-tts's ``get_tokenizer(path, "custom")`` builds it: the last character of
    every line is cut (the newline), so a file without a final newline loses its last symbol's last character,
    and a repeated symbol keeps its last index. The model's text embedding is indexed by this map."""
    indices: dict[str, int] = {}
    with open(path, encoding="utf-8") as vocab_file:
        for index, line in enumerate(vocab_file):
            indices[line[:-1]] = index
    return indices


def load_vocab(path: str | os.PathLike[str]) -> frozenset[str]:
    """The symbols the model can read (the space line included), as the model's own map has them."""
    return frozenset(symbol for symbol in vocab_indices(path) if symbol)


def _strip_marks(char: str) -> str:
    decomposed = unicodedata.normalize("NFD", char)
    return "".join(part for part in decomposed if not unicodedata.combining(part))


def _candidates(char: str) -> list[str]:
    """Replacements to try for a character the vocabulary lacks, best first."""
    if char.isspace():
        return [" "]
    candidates = list(KNOWN_VARIANTS.get(char, ()))
    lowered = char.lower()
    if lowered != char:
        candidates.append(lowered)
    compatible = unicodedata.normalize("NFKC", char)
    # NFKC can turn "①" into "1": digits must never come back after normalisation.
    if compatible != char and not any(part.isdigit() for part in compatible):
        candidates.append(compatible)
    base = _strip_marks(char)
    if base and base != char:
        candidates += [base, base.lower()]
    return candidates


def _replacement(char: str, vocab: frozenset[str]) -> str | None:
    for candidate in _candidates(char):
        if candidate and all(part in vocab for part in candidate):
            return candidate
    return None


def fit_to_vocab(text: str, vocab: frozenset[str]) -> tuple[str, list[str]]:
    """Return the text with only vocabulary characters, and the sorted unique characters removed.

    Spaces are tidied on the way: runs collapse to one, none is left before , . ; : ! ?
    """
    text = unicodedata.normalize("NFC", text)
    replacements: dict[str, str | None] = {}
    kept: list[str] = []
    removed: set[str] = set()
    for char in text:
        if char in vocab:
            kept.append(char)
            continue
        if char not in replacements:
            replacements[char] = _replacement(char, vocab)
        replacement = replacements[char]
        if replacement is None:
            removed.add(char)
        else:
            kept.append(replacement)
    fitted = _SPACE_BEFORE_PUNCTUATION.sub("", _SPACES.sub(" ", "".join(kept))).strip()
    return fitted, sorted(removed)
