"""Numbers joined by an "x": scores ("3 x 1" -> "três a um"), sizes ("1920x1080" -> "... por ...")
and multipliers ("3x" -> "três vezes", "1x" -> "uma vez")."""

from __future__ import annotations

import re

from .number_words import cardinal, number_words
from .spacing import spaced

# Scores have at most two digits a side; longer pairs are sizes ("1920x1080", "100 x 200").
_MAX_SCORE_DIGITS = 2

_PAIR = re.compile(r"(?<![\d.,])(?P<left>\d{1,5}) ?[xX] ?(?P<right>\d{1,5})(?![\d.,]\d|\d)")
_MULTIPLIER = re.compile(r"(?<![\d.,])(?P<number>\d{1,9}(?:,\d{1,9})?)x(?![^\W_])")


def _read_pair(match: re.Match[str]) -> str:
    left, right = match.group("left"), match.group("right")
    joiner = " a " if max(len(left), len(right)) <= _MAX_SCORE_DIGITS else " por "
    return spaced(match, cardinal(int(left)) + joiner + cardinal(int(right)))


def _read_multiplier(match: re.Match[str]) -> str:
    number = match.group("number")
    if number == "1":
        return spaced(match, "uma vez")
    return spaced(match, number_words(number, feminine=True) + " vezes")


def expand_scores(text: str) -> str:
    """'3 x 1', '3x1', '1920x1080', '3x'. The sign × is multiplication and is left to the symbols."""
    if "x" not in text and "X" not in text:
        return text
    text = _PAIR.sub(_read_pair, text)
    return _MULTIPLIER.sub(_read_multiplier, text)
