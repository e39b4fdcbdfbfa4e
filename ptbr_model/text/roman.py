"""Roman numerals, converted only where they cannot be words or letters.

Contexts: after "século" ("século XXI" -> "século vinte e um"), after a numbered part such as
"capítulo" or "inciso" ("capítulo IV" -> "capítulo quatro"), after "artigo" (ordinal up to nine, as laws
are read: "artigo V" -> "artigo quinto", "artigo XII" -> "artigo doze"), after a capitalised name ("D. Pedro II" ->
"Dom Pedro segundo", up to XXXIX), and before a capitalised noun ("II Guerra" -> "segunda Guerra").
Capitals like "MIL", "DI", "VIVI" elsewhere are left to the all-caps reader.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .gender import is_feminine, is_feminine_name
from .number_words import cardinal, ordinal, regnal_or_century
from .spacing import spaced

_CANONICAL = re.compile(r"M{0,3}(?:CM|CD|D?C{0,3})(?:XC|XL|L?X{0,3})(?:IX|IV|V?I{0,3})")
_VALUES = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
# Kings and popes stop well below forty; a larger "numeral" after a name is more likely a word ("DI").
MAX_REGNAL_NUMBER = 39

# Nouns after which a roman numeral is read as a cardinal ("parte dois").
NUMBERED_PARTS = (
    "capítulo", "parte", "volume", "tomo", "livro", "ato", "cena", "título", "anexo", "seção", "subseção",
    "fase", "lição", "módulo", "unidade", "episódio", "temporada", "edição", "inciso", "nível", "etapa",
    "estágio",
)  # fmt: skip
# Nouns after which a roman numeral is an ordinal up to nine and a cardinal above, as Brazilian laws are read.
LEGAL_ORDINAL_PARTS = ("artigo", "parágrafo")
MAX_LEGAL_ORDINAL = 9
# Capitalised words that name a category, not a person: "Tipo X", "Vitamina D", "Geração X".
_NOT_NAMES = frozenset("Tipo Classe Letra Grupo Vitamina Geração Plano Bloco Modelo Raio Nota Série Item".split())

_NUMERAL = r"[IVXLCDM]{1,15}"
_NUMERAL_LIST = rf"{_NUMERAL}(?:(?:, | e | a | ao | até ){_NUMERAL}){{0,5}}"
_CENTURY = re.compile(rf"(?<![^\W\d_])(?P<noun>(?i:séculos?)) (?P<numerals>{_NUMERAL_LIST})(?![^\W\d_])")
_PART = re.compile(
    r"(?<![^\W\d_])(?P<noun>(?i:" + "|".join(NUMBERED_PARTS) + rf")s?) (?P<numerals>{_NUMERAL_LIST})(?![^\W\d_])"
)
_LEGAL_PART = re.compile(
    r"(?<![^\W\d_])(?P<noun>(?i:" + "|".join(LEGAL_ORDINAL_PARTS) + rf")s?) (?P<numerals>{_NUMERAL_LIST})(?![^\W\d_])"
)
_NAME_THEN_NUMERAL = re.compile(r"(?<![^\W\d_])(?P<name>[A-ZÀ-Ý][a-zà-ÿ]{1,40}) (?P<numeral>[IVX]{1,7})(?![^\W\d_])")
_NUMERAL_THEN_NOUN = re.compile(r"(?<![^\W\d_])(?P<numeral>[IVX]{2,7}|V|X) (?=(?P<noun>[A-ZÀ-Ý][a-zà-ÿ]{2,40}))")
_NUMERAL_IN_LIST = re.compile(_NUMERAL)
_ANY_STANDALONE_NUMERAL = re.compile(rf"(?<![^\W\d_]){_NUMERAL}(?![^\W\d_])")


def roman_value(numeral: str) -> int | None:
    """'XXI' -> 21; None for anything that is not a canonical roman numeral ('IIII', 'MIL', 'VIVI')."""
    if not numeral or _CANONICAL.fullmatch(numeral) is None:
        return None
    total = 0
    for index, char in enumerate(numeral):
        value = _VALUES[char]
        following = _VALUES[numeral[index + 1]] if index + 1 < len(numeral) else 0
        total += -value if value < following else value
    return total


def _convert_list(numerals: str, read: Callable[[int], str]) -> str:
    """Convert each canonical numeral in 'XIX e XX'; anything else ('MIL') is left as written."""

    def convert(match: re.Match[str]) -> str:
        value = roman_value(match.group(0))
        return match.group(0) if value is None else read(value)

    return _NUMERAL_IN_LIST.sub(convert, numerals)


def _read_century(match: re.Match[str]) -> str:
    return spaced(match, f"{match.group('noun')} {_convert_list(match.group('numerals'), regnal_or_century)}")


def _read_part(match: re.Match[str]) -> str:
    return spaced(match, f"{match.group('noun')} {_convert_list(match.group('numerals'), cardinal)}")


def _legal_ordinal(value: int) -> str:
    return ordinal(value) if value <= MAX_LEGAL_ORDINAL else cardinal(value)


def _read_legal_part(match: re.Match[str]) -> str:
    return spaced(match, f"{match.group('noun')} {_convert_list(match.group('numerals'), _legal_ordinal)}")


def _read_name_numeral(match: re.Match[str]) -> str:
    name, value = match.group("name"), roman_value(match.group("numeral"))
    if value is None or value > MAX_REGNAL_NUMBER or name in _NOT_NAMES:
        return match.group(0)
    return spaced(match, f"{name} {regnal_or_century(value, feminine=is_feminine_name(name))}")


def _read_numeral_before_noun(match: re.Match[str]) -> str:
    value = roman_value(match.group("numeral"))
    if value is None or value > MAX_REGNAL_NUMBER:
        return match.group(0)
    return regnal_or_century(value, feminine=is_feminine(match.group("noun"))) + " "


def expand_roman_numerals(text: str) -> str:
    """Convert roman numerals in the safe contexts listed in the module docstring."""
    if _ANY_STANDALONE_NUMERAL.search(text) is None:
        return text
    text = _CENTURY.sub(_read_century, text)
    text = _PART.sub(_read_part, text)
    text = _LEGAL_PART.sub(_read_legal_part, text)
    text = _NAME_THEN_NUMERAL.sub(_read_name_numeral, text)
    return _NUMERAL_THEN_NOUN.sub(_read_numeral_before_noun, text)
