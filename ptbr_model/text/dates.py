"""Dates ("25/12/1990" -> "vinte e cinco de dezembro de mil novecentos e noventa") and the fractions that
share their slash notation ("1/2" -> "meio", "3/4" -> "três quartos", "5/13" -> "cinco treze avos"), mixed
numbers included ("1 1/2 hora" -> "uma hora e meia").

Day-first, as written in Brazil. The first day of a month is "primeiro".

Date or fraction? A pair with a year is a date. Without one, a numerator smaller than a denominator up to 10
is a fraction ("3/4"); a denominator of 11 or 12 is a month ("1/12" is the first of December); from 13 up
the pair cannot be a date, and it is read as a fraction when written in lowest terms or over 100 or 1000
("5/13", "1/100"), otherwise left to be read with "barra" ("10/40" is a ratio or a code, not a fraction).
"""

from __future__ import annotations

import re

from math import gcd

from .gender import FUNCTION_WORDS, feminine_follows, is_feminine
from .number_words import (
    FRACTION_DENOMINATORS,
    MONTH_NAMES,
    POWER_OF_TEN_DENOMINATORS,
    cardinal,
    digits_as_words,
    fraction_words,
)
from .spacing import spaced
from .units import UNIT_PATTERN, UNITS

_SLASHED = re.compile(
    r"(?<![\d/.,])(?P<day>\d{1,3}|1º)/(?P<month>\d{1,4})(?:/(?P<year>\d{4}|\d{2}))?(?![\d/]|[.,]\d)"
    r"(?P<unit_text> ?" + UNIT_PATTERN + ")?"
)
# "1 1/2", "2 3/4": a whole number, one space, a fraction; then maybe a unit or the noun counted.
_MIXED_NUMBER = re.compile(
    r"(?<![\d/.,])(?P<whole>\d{1,3}) (?P<numerator>[1-9]\d{0,2})/(?P<denominator>[1-9]\d{0,3})(?![\d/]|[.,]\d)"
    r"(?:(?P<unit_text> ?" + UNIT_PATTERN + r")|(?P<noun_text> (?P<noun>[^\W\d_]{2,40})(?![^\W\d_])))?"
)
# Months have at most 12 days' worth of denominators: from 13 up a slashed pair cannot be a date.
_LAST_MONTH = 12
_DASHED_OR_DOTTED = re.compile(
    r"(?<![\d/.,-])(?P<day>\d{1,2})(?P<sep>[-.])(?P<month>\d{1,2})(?P=sep)(?P<year>\d{4})(?![\d/.-]|,\d)"
)
_ISO = re.compile(r"(?<![\d/.,-])(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})(?![\d/.-]|,\d)")


def _valid_day_month(day: int, month: int) -> bool:
    return 1 <= day <= 31 and 1 <= month <= 12


def _year_words(year: str) -> str:
    # A two-digit year with a leading zero ("05") is read as written: "zero cinco".
    return digits_as_words(year) if year.startswith("0") else cardinal(int(year))


def date_words(day: int, month: int, year: str | None) -> str:
    day_words = "primeiro" if day == 1 else cardinal(day)
    words = f"{day_words} de {MONTH_NAMES[month - 1]}"
    return f"{words} de {_year_words(year)}" if year else words


def _is_simple_fraction(numerator: str, denominator: str) -> bool:
    """See the module docstring: "3/4", "5/13", "1/100" are fractions; "01/02", "25/12", "1/12", "10/40" are not."""
    if numerator.startswith("0") or denominator.startswith("0"):
        return False
    top, bottom = int(numerator), int(denominator)
    if not 0 < top < bottom:
        return False
    if bottom in FRACTION_DENOMINATORS:
        return True
    if bottom <= _LAST_MONTH:
        return False
    return gcd(top, bottom) == 1 or bottom in POWER_OF_TEN_DENOMINATORS


# Plural -> singular for the noun after "1 1/2" ("1 1/2 horas" -> "uma hora e meia"): the regular endings only.
_SINGULAR_ENDINGS = (("ões", "ão"), ("ães", "ão"), ("ãos", "ão"), ("res", "r"), ("zes", "z"))


def _singular(noun: str) -> str:
    lowered = noun.lower()
    for plural, singular in _SINGULAR_ENDINGS:
        if lowered.endswith(plural):
            return noun[: -len(plural)] + singular
    if len(noun) > 2 and lowered.endswith("s") and lowered[-2] in "aeiouáéíóúâêô":
        return noun[:-1]
    return noun


def _and_fraction(numerator: int, denominator: int, feminine: bool) -> str:
    return "e " + fraction_words(numerator, denominator, feminine=feminine)


def _read_mixed_number(match: re.Match[str]) -> str:
    """'1 1/2 hora' -> 'uma hora e meia', '2 1/4 xícaras' -> 'duas xícaras e um quarto', '3 3/4' -> 'três e
    três quartos', '2 1/2 kg' -> 'dois quilos e meio'. The fraction follows the noun, as it is said."""
    numerator, denominator = match.group("numerator"), match.group("denominator")
    if not _is_simple_fraction(numerator, denominator):
        return match.group(0)
    whole, top, bottom = int(match.group("whole")), int(numerator), int(denominator)
    if match.group("unit_text"):
        unit = UNITS[match.group("unit")]
        noun = unit.singular if whole == 1 else unit.plural
        words = f"{cardinal(whole, feminine=unit.feminine)} {noun} {_and_fraction(top, bottom, unit.feminine)}"
        return spaced(match, words)
    noun = match.group("noun")
    if noun and noun.lower() not in FUNCTION_WORDS and noun.lower() not in MONTH_NAMES:
        feminine = is_feminine(noun)
        counted = _singular(noun) if whole == 1 else noun
        words = f"{cardinal(whole, feminine=feminine)} {counted} {_and_fraction(top, bottom, feminine)}"
        return spaced(match, words)
    words = f"{cardinal(whole)} {_and_fraction(top, bottom, False)}"
    return spaced(match, words) + (match.group("noun_text") or "")


def _fraction_of_unit(numerator: int, denominator: int, unit_symbol: str) -> str:
    """'1/2 kg' -> 'meio quilo', '3/4 h' -> 'três quartos de hora'."""
    unit = UNITS[unit_symbol]
    if (numerator, denominator) == (1, 2):
        return f"{fraction_words(1, 2, feminine=unit.feminine)} {unit.singular}"
    return f"{fraction_words(numerator, denominator)} de {unit.singular}"


def _read_slashed(match: re.Match[str]) -> str:
    day_text, month_text, year = match.group("day"), match.group("month"), match.group("year")
    unit_text = match.group("unit_text") or ""
    if year is None and day_text != "1º" and _is_simple_fraction(day_text, month_text):
        numerator, denominator = int(day_text), int(month_text)
        if unit_text:
            return spaced(match, _fraction_of_unit(numerator, denominator, match.group("unit")))
        feminine = feminine_follows(match.string, match.end())
        return spaced(match, fraction_words(numerator, denominator, feminine=feminine))
    day = 1 if day_text == "1º" else int(day_text)
    month = int(month_text)
    if len(day_text) > 2 or len(month_text) > 2 or not _valid_day_month(day, month):
        return match.group(0)
    # A unit symbol after a date is not a measurement of it: leave it as written.
    return spaced(match, date_words(day, month, year)) + unit_text


def _read_full_date(match: re.Match[str]) -> str:
    day, month = int(match.group("day")), int(match.group("month"))
    if not _valid_day_month(day, month):
        return match.group(0)
    return spaced(match, date_words(day, month, match.group("year")))


def expand_dates(text: str) -> str:
    """ISO and dashed dates, then slashed dates and fractions."""
    if "-" in text or "." in text:
        text = _ISO.sub(_read_full_date, text)
        text = _DASHED_OR_DOTTED.sub(_read_full_date, text)
    if "/" in text:
        text = _MIXED_NUMBER.sub(_read_mixed_number, text)
        text = _SLASHED.sub(_read_slashed, text)
    return text
