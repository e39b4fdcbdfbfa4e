"""The pt-BR normaliser: text as a Brazilian would read it aloud, with no digits left.

A fixed sequence of passes, each one concern. Order matters: codes, dates and money claim their digits
before plain numbers do; abbreviations run before roman numerals ("séc. XXI", "D. Pedro II"); the
all-caps reader runs last, after numerals and units have taken their capitals.

A pass can free a neighbour for an earlier pass ("nºR$" -> "nº reais": now "nº" stands alone), so the
passes are repeated until the text stops changing (in practice one extra round that changes nothing).
That makes the normaliser idempotent by construction: its result is a fixed point.

A pronunciation lexicon, when given, is applied at the start of every round, before the passes: the
user's respellings win over the readers ("OK" -> the lexicon's "okei"), and words the passes produce
("gmail" from an e-mail address) are respelled in the next round, so the result is still a fixed point.

Every pattern is linear: bounded or guarded quantifiers, no nested repeats, and whitespace is
collapsed first so no pattern has to scan a run of spaces.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from .abbreviations import expand_abbreviations
from .acronyms import expand_all_caps
from .codes import expand_codes, expand_hyphenated_groups
from .dates import expand_dates
from .lexicon import Lexicon
from .money import expand_money
from .numbers import expand_numbers, expand_ordinals, spell_remaining_digits, split_ranges
from .roman import expand_roman_numerals
from .scores import expand_scores
from .symbols import expand_symbols
from .times import expand_times
from .units import expand_units
from .web import expand_web_addresses

# Unicode fractions, rewritten with a slash so the fraction reader says them ("1½ hora" -> "uma hora e meia").
VULGAR_FRACTIONS = {
    "½": "1/2", "⅓": "1/3", "⅔": "2/3", "¼": "1/4", "¾": "3/4",
    "⅕": "1/5", "⅛": "1/8", "⅜": "3/8", "⅝": "5/8", "⅞": "7/8",
}  # fmt: skip

# Superscript digits other than ² and ³ (which mean squared/cubed) are ordinary digits.
_SUPERSCRIPT_DIGITS = str.maketrans("⁰¹⁴⁵⁶⁷⁸⁹", "01456789")
_INVISIBLE = re.compile("[\u00ad\u200b-\u200f\u2060\ufeff]")
_WHITESPACE = re.compile(r"\s+")
# "Olá , mundo" -> "Olá, mundo"; only before punctuation that ends a word, so ".com" is left alone.
_SPACE_BEFORE_PUNCTUATION = re.compile(r" (?=[.,;:!?]+(?: |$))")
_NON_ASCII_DIGIT = re.compile(r"(?![0-9])\d")
_MINUS_SIGN = re.compile("\u2212")
_DASH_BETWEEN_DIGITS = re.compile(r"(?<=\d)[\u2010-\u2015](?=\d)")
_FRACTION_SLASH = re.compile("\u2044")
# "1 000 000" and "10 000" (a space, or a no-break or thin space, between groups of three): thousands, as
# "1.000.000" is. Read as one number only when every group after the first has exactly three digits.
_SPACED_THOUSANDS = re.compile(r"(?<![\d.,])[1-9]\d{0,2}(?: \d{3})+(?!\d| \d|[.,]\d{3})")
_VULGAR_FRACTION = re.compile(r"(?P<whole>\d)? ?(?P<fraction>[" + "".join(VULGAR_FRACTIONS) + "])")

NormalizerPass = Callable[[str], str]


def _read_vulgar_fraction(match: re.Match[str]) -> str:
    slashed = VULGAR_FRACTIONS[match.group("fraction")]
    return f"{match.group('whole')} {slashed} " if match.group("whole") else f" {slashed} "


def clean_unicode(text: str) -> str:
    """NFC, one kind of space, ASCII digits, plain minus and slash; collapse whitespace."""
    text = unicodedata.normalize("NFC", text)
    text = _INVISIBLE.sub("", text)
    text = _NON_ASCII_DIGIT.sub(lambda match: str(unicodedata.decimal(match.group(0))), text)
    text = text.translate(_SUPERSCRIPT_DIGITS)
    text = _MINUS_SIGN.sub("-", text)
    text = _DASH_BETWEEN_DIGITS.sub("-", text)
    text = _FRACTION_SLASH.sub("/", text)
    text = _VULGAR_FRACTION.sub(_read_vulgar_fraction, text)
    text = collapse_whitespace(text)
    return _SPACED_THOUSANDS.sub(lambda match: match.group(0).replace(" ", "."), text)


def collapse_whitespace(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


# (pass, whether it only acts on digits): digit passes are skipped once no digit is left.
PASSES: tuple[tuple[NormalizerPass, bool], ...] = (
    (expand_web_addresses, False),
    (expand_codes, True),
    (expand_dates, True),
    (expand_hyphenated_groups, True),
    (split_ranges, True),
    (expand_money, True),
    (expand_times, True),
    (expand_units, True),
    (expand_ordinals, True),
    (expand_scores, True),
    (expand_abbreviations, False),
    (expand_roman_numerals, False),
    (expand_numbers, True),
    (expand_symbols, False),
    (expand_all_caps, False),
    (spell_remaining_digits, True),
)
_ASCII_DIGIT = re.compile("[0-9]")


# Rounds of all passes before giving up on reaching a fixed point (real text needs two).
MAX_ROUNDS = 6


def _run_passes(text: str, lexicon: Lexicon | None = None) -> str:
    if lexicon is not None:
        text = lexicon.apply(text)
    has_digits = _ASCII_DIGIT.search(text) is not None
    for normalizer_pass, acts_on_digits in PASSES:
        if acts_on_digits and not has_digits:
            continue
        text = normalizer_pass(text)
        if acts_on_digits:
            has_digits = _ASCII_DIGIT.search(text) is not None
        if "  " in text:
            text = collapse_whitespace(text)
    return _SPACE_BEFORE_PUNCTUATION.sub("", collapse_whitespace(text))


def normalize(text: str, *, lexicon: Lexicon | None = None) -> str:
    """Spell out numbers, money, dates, times, units, abbreviations, symbols and acronyms for pt-BR TTS.

    Pure, deterministic and idempotent; keeps sentence punctuation (. , ; : ! ?) for prosody and
    leaves no ASCII digit behind. ``lexicon``: respell its words first (``Lexicon.builtin()`` for the
    shipped loanwords); None applies no lexicon.
    """
    text = clean_unicode(text)
    for _ in range(MAX_ROUNDS):
        normalized = _run_passes(text, lexicon)
        if normalized == text:
            break
        text = normalized
    return text
