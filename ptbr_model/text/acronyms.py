"""Words written in capitals: shouted words are read as words, short acronyms letter by letter.

"ATENÇÃO" -> "atenção", "CPF" -> "cê pê efe", "ONU" -> "onu", "CDs" -> "cê dês".
"""

from __future__ import annotations

import re
import unicodedata

from .spacing import spaced

LETTER_NAMES = {
    "a": "á", "b": "bê", "c": "cê", "d": "dê", "e": "é", "f": "efe", "g": "gê", "h": "agá", "i": "i",
    "j": "jota", "k": "cá", "l": "ele", "m": "eme", "n": "ene", "o": "ó", "p": "pê", "q": "quê",
    "r": "erre", "s": "esse", "t": "tê", "u": "u", "v": "vê", "w": "dáblio", "x": "xis", "y": "ípsilon",
    "z": "zê", "ç": "cê cedilha",
}  # fmt: skip

# Acronyms Brazilians say as words although the syllable rule below would spell them, or the reverse.
ACRONYMS_READ_AS_WORDS = {
    "ONU": "onu", "UNESCO": "unesco", "PETROBRAS": "petrobras", "NASA": "nasa", "FIFA": "fifa",
    "USP": "usp", "PIB": "pib", "MEC": "méc", "ONG": "ong", "ENEM": "enem", "SUS": "sus",
    "UNICAMP": "unicamp", "UNICEF": "unicef", "OTAN": "otan", "FUNAI": "funai", "IBAMA": "ibama",
    "ANVISA": "anvisa", "DETRAN": "detran", "INMETRO": "inmetro", "EMBRAPA": "embrapa", "COVID": "covid",
    "AIDS": "aids", "CEP": "cep", "OK": "okei", "PROCON": "procon", "SEBRAE": "sebrae", "SENAI": "senai",
    "SESC": "sesc",
}  # fmt: skip
ACRONYMS_SPELLED = frozenset({"EUA", "CEO", "UE", "IA", "UTI", "OEA", "ABC", "EAD"})

# Words up to this length are checked for pronounceability; longer ones are simply read.
MAX_SPELLED_LENGTH = 4
# Five- and six-letter words with fewer vowels than this share are spelled ("BNDES").
MIN_VOWEL_SHARE = 1 / 3
READ_AS_WORD_FROM_LENGTH = 7

_VOWELS = frozenset("AEIOUY")
# One Portuguese syllable: optional onset (incl. clusters), 1-3 vowels, optional coda.
_PRONOUNCEABLE = re.compile(
    r"(?:(?:[BCDFGKPTV][RL]|CH|LH|NH|QU|GU|PN|PS|GN|[BCDFGHJKLMNPQRSTVWXZ])?[AEIOUY]{1,3}(?:NS|RS|[LMNRSXZ])?)+"
)
_CAPITALISED_TOKEN = re.compile(r"(?<![^\W\d_])([A-ZÀ-ÖØ-Þ]{2,})(s?)(?![^\W\d_])")


def _base_letters(word: str) -> str:
    """'AÇÃO' -> 'ACAO' (accents off, for the syllable test)."""
    decomposed = unicodedata.normalize("NFD", word)
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def spell_letters(letters: str) -> str:
    """'cpf' -> 'cê pê efe'; letters without a name are kept as they are."""
    names = []
    for char in letters.lower():
        if char in LETTER_NAMES:
            names.append(LETTER_NAMES[char])
        else:
            base = _base_letters(char)
            names.append(LETTER_NAMES.get(base, char))
    return " ".join(names)


def should_spell(word: str) -> bool:
    """Decide whether an all-capitals word is spelled letter by letter."""
    if word in ACRONYMS_SPELLED:
        return True
    if word in ACRONYMS_READ_AS_WORDS or len(word) >= READ_AS_WORD_FROM_LENGTH:
        return False
    base = _base_letters(word)
    if len(word) <= MAX_SPELLED_LENGTH:
        return _PRONOUNCEABLE.fullmatch(base) is None
    vowels = sum(char in _VOWELS for char in base)
    return vowels / len(base) < MIN_VOWEL_SHARE


def _read_capitalised(match: re.Match[str]) -> str:
    word, plural = match.group(1), match.group(2)
    if word in ACRONYMS_READ_AS_WORDS:
        spoken = ACRONYMS_READ_AS_WORDS[word]
    elif should_spell(word):
        spoken = spell_letters(word)
    else:
        spoken = word.lower()
    return spaced(match, spoken + plural)


def expand_all_caps(text: str) -> str:
    """Lower-case shouted words and spell acronyms."""
    return _CAPITALISED_TOKEN.sub(_read_capitalised, text)
