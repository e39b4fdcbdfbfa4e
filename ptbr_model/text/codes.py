"""Numbers that are codes, not quantities: phones, CPF, CNPJ, CEP. Read in digit groups.

"(11) 98765-4321" -> "onze, nove oito sete seis cinco, quatro três dois um": the area code as a number
(as Brazilians say it), the rest digit by digit, with a comma pause between groups.
"""

from __future__ import annotations

import re

from .number_words import cardinal, digits_as_words, integer_words
from .spacing import spaced

# Two four-digit numbers in these bounds joined by a hyphen are a year range ("2020-2024"), not a phone.
_YEAR_RANGE_BOUNDS = (1000, 2199)
# Without an area code, "NNN-NNNN", "NNNN-NNNN" and "NNNNN-NNNN" are phone numbers ("555-1234", "3456-7890",
# "98765-4321"), read digit by digit, never as a range or a subtraction. Two round numbers in increasing
# order ("500-1000", "3500-4000") are a range.
_ROUND = 10

_PHONE = re.compile(
    r"(?<![\w+(-])(?:\+(?P<country>\d{1,3}) ?)?"
    r"(?:\((?P<area_paren>\d{2})\) ?|(?P<area>\d{2}) (?=\d{4,5}-))?"
    r"(?P<prefix>\d{3,5})-(?P<line>\d{4})(?![\d-])"
)
_CPF = re.compile(r"(?<![\d.-])(\d{3})\.(\d{3})\.(\d{3})-(\d{2})(?![\d-])")
_CNPJ = re.compile(r"(?<![\d./-])(\d{2})\.(\d{3})\.(\d{3})/(\d{4})-(\d{2})(?![\d-])")
# Toll-free and premium numbers: "0800 123 4567".
_SERVICE_NUMBER = re.compile(r"(?<![\d.,-])(?P<prefix>0[3589]00)[ -]?(?P<middle>\d{3})[ -]?(?P<line>\d{4})(?![\d-])")
_CEP = re.compile(r"(?<![\d.-])(\d{2}\.?\d{3})-(\d{3})(?![\d-])")
# Three or more hyphen-joined digit groups: ISBNs, protocol numbers ("978-85-333-0227-3").
_HYPHENATED_GROUPS = re.compile(r"(?<![\d.,-])\d{1,12}(?:-\d{1,12}){2,12}(?![\d-])")


def _is_year_range(prefix: str, line: str) -> bool:
    low, high = _YEAR_RANGE_BOUNDS
    return len(prefix) == 4 and low <= int(prefix) <= high and low <= int(line) <= high


def _is_round_range(prefix: str, line: str) -> bool:
    low, high = int(prefix), int(line)
    return low < high and low % _ROUND == 0 and high % _ROUND == 0


def _read_phone(match: re.Match[str]) -> str:
    country = match.group("country")
    area = match.group("area_paren") or match.group("area")
    prefix, line = match.group("prefix"), match.group("line")
    if not (country or area) and (_is_year_range(prefix, line) or _is_round_range(prefix, line)):
        return match.group(0)
    groups = []
    if country:
        groups.append(f"mais {cardinal(int(country))}")
    if area:
        groups.append(integer_words(area))
    groups += [digits_as_words(prefix), digits_as_words(line)]
    return spaced(match, ", ".join(groups))


def _read_groups(match: re.Match[str]) -> str:
    return spaced(match, ", ".join(digits_as_words(group.replace(".", "")) for group in match.groups()))


def _read_hyphenated(match: re.Match[str]) -> str:
    return spaced(match, ", ".join(digits_as_words(group) for group in match.group(0).split("-")))


def expand_codes(text: str) -> str:
    """Phones, CPF, CNPJ and CEP first: their digits must not be read as quantities or dates."""
    text = _SERVICE_NUMBER.sub(_read_groups, text)
    if "-" not in text:
        return text
    text = _CNPJ.sub(_read_groups, text)
    text = _CPF.sub(_read_groups, text)
    text = _PHONE.sub(_read_phone, text)
    return _CEP.sub(_read_groups, text)


def expand_hyphenated_groups(text: str) -> str:
    """Digit groups joined by two or more hyphens, after dates have claimed '1990-12-25'."""
    if "-" not in text:
        return text
    return _HYPHENATED_GROUPS.sub(_read_hyphenated, text)
