"""Dates ("25/12/1990" -> "vinte e cinco de dezembro de mil novecentos e noventa") and the simple
fractions that share their slash notation ("1/2" -> "meio", "3/4" -> "três quartos").

Day-first, as written in Brazil. The first day of a month is "primeiro".
"""

from __future__ import annotations

import re

from .gender import feminine_follows
from .number_words import FRACTION_DENOMINATORS, MONTH_NAMES, cardinal, digits_as_words, fraction_words
from .spacing import spaced
from .units import UNIT_PATTERN, UNITS

_SLASHED = re.compile(
    r"(?<![\d/.,])(?P<day>\d{1,2}|1º)/(?P<month>\d{1,2})(?:/(?P<year>\d{4}|\d{2}))?(?![\d/]|[.,]\d)"
    r"(?P<unit_text> ?" + UNIT_PATTERN + ")?"
)
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
    # "3/4" is three quarters; "01/02" (leading zero) and "25/12" are dates.
    if numerator.startswith("0") or denominator.startswith("0"):
        return False
    return int(denominator) in FRACTION_DENOMINATORS and 0 < int(numerator) < int(denominator)


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
    if not _valid_day_month(day, month):
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
        text = _SLASHED.sub(_read_slashed, text)
    return text
