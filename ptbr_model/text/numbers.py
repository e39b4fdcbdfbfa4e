"""Numbers left in running text after the specialised readers: ordinals ("2ª" -> "segunda"),
ranges ("10-20" -> "dez a vinte") and cardinals that agree with their noun ("2 casas" -> "duas casas").
"""

from __future__ import annotations

import re

from .gender import feminine_follows
from .number_words import MONTH_NAMES, cardinal, digits_as_words, number_words, ordinal, split_number
from .spacing import spaced

_MAX_ORDINAL_DIGITS = 6

_ORDINAL = re.compile(r"(?<![\d.,])(?P<number>\d{1,40})\.?(?P<indicator>[ºª])")
_RANGE = re.compile(r"(?<![\d.,-])(?P<low>\d+(?:[.,]\d+)*)-(?P<high>\d+(?:[.,]\d+)*)(?![\d-])")
_HYPHEN_BETWEEN_LETTER_AND_DIGIT = re.compile(r"(?<=[^\W\d_])-(?=\d)|(?<=\d)-(?=[^\W\d_])")
_NUMBER = re.compile(r"(?:(?<![^\s(\[])(?P<sign>-))?(?<!\d)(?<!\d[.,])(?P<number>\d+(?:[.,]\d+)*)")
_ANY_DIGITS = re.compile(r"\d+")
# "1 de maio", "1 e 2 de maio", "1 a 5 de maio": the number is a day of the month.
_FOLLOWED_BY_MONTH = re.compile(
    r"(?: (?:e|a|ou|até) \d{1,2})? de (?:" + "|".join(MONTH_NAMES) + r")(?![^\W\d_])", re.IGNORECASE
)
_PRECEDED_BY_DIA = re.compile(r"(?<![^\W\d_])dia $", re.IGNORECASE)
_DAY_OF_MONTH = re.compile(r"0?[1-9]|[12]\d|3[01]")
_LOOK_BACK_CHARS = 6


def _read_ordinal(match: re.Match[str]) -> str:
    number = match.group("number")
    feminine = match.group("indicator") == "ª"
    if len(number) > _MAX_ORDINAL_DIGITS:
        return spaced(match, number_words(number))
    return spaced(match, ordinal(int(number), feminine=feminine))


def expand_ordinals(text: str) -> str:
    """'1º' -> 'primeiro', '2ª' -> 'segunda', '10ª' -> 'décima', '3.º' -> 'terceiro'."""
    if "º" not in text and "ª" not in text:
        return text
    return _ORDINAL.sub(_read_ordinal, text)


def split_ranges(text: str) -> str:
    """'10-20' -> '10 a 20' and 'COVID-19' -> 'COVID 19', so each number is read on its own."""
    if "-" not in text:
        return text
    text = _RANGE.sub(lambda match: f"{match.group('low')} a {match.group('high')}", text)
    return _HYPHEN_BETWEEN_LETTER_AND_DIGIT.sub(" ", text)


def _day_of_month(match: re.Match[str]) -> int | None:
    """The day in '1 de janeiro', '01 de setembro', 'dia 1', 'dia 05', 'dias 1 e 2'; None for other numbers."""
    number = match.group("number")
    if len(number) > 2 or match.group("sign") or _DAY_OF_MONTH.fullmatch(number) is None:
        return None
    text, start = match.string, match.start()
    if _FOLLOWED_BY_MONTH.match(text, match.end()):
        return int(number)
    if _PRECEDED_BY_DIA.search(text[max(0, start - _LOOK_BACK_CHARS) : start]) is not None:
        return int(number)
    return None


def _read_number(match: re.Match[str]) -> str:
    day = _day_of_month(match)
    if day is not None:
        # The first day is "primeiro", as Brazilians say it; a leading zero ("01 de setembro") is not read.
        return spaced(match, "primeiro" if day == 1 else cardinal(day))
    number = match.group("number")
    feminine = split_number(number) is not None and feminine_follows(match.string, match.end())
    words = number_words(number, feminine=feminine)
    return spaced(match, f"menos {words}" if match.group("sign") else words)


def expand_numbers(text: str) -> str:
    """Read every remaining number; the noun that follows decides the gender."""
    return _NUMBER.sub(_read_number, text)


def spell_remaining_digits(text: str) -> str:
    """Last resort: no ASCII digit may reach the model."""
    return _ANY_DIGITS.sub(lambda match: spaced(match, digits_as_words(match.group(0))), text)
