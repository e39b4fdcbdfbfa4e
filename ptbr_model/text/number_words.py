"""Numbers as words, the way a Brazilian reads them aloud (num2words ``pt_BR`` plus fixes).

Everything here maps digit strings or ints to words; nothing here searches text.
"""

from __future__ import annotations

import re
from functools import lru_cache

from num2words import num2words

# Up to 999 trilhões as a number; longer digit runs are read digit by digit.
MAX_DIGITS_AS_NUMBER = 15
# Bounded caches: num2words costs tens of µs a call, and texts repeat numbers.
_CACHE_SIZE = 4096

# Names of the thousand-groups above the units, as (singular, plural).
GROUP_SCALES = (("mil", "mil"), ("milhão", "milhões"), ("bilhão", "bilhões"), ("trilhão", "trilhões"))

DIGIT_NAMES = ("zero", "um", "dois", "três", "quatro", "cinco", "seis", "sete", "oito", "nove")

MONTH_NAMES = (
    "janeiro", "fevereiro", "março", "abril", "maio", "junho",
    "julho", "agosto", "setembro", "outubro", "novembro", "dezembro",
)  # fmt: skip

# Words after which a cardinal stops agreeing with the noun: "dois milhões de pessoas".
MASCULINE_SCALE_WORDS = frozenset(
    {"milhão", "milhões", "bilhão", "bilhões", "trilhão", "trilhões", "quatrilhão", "quatrilhões"}
)

# Denominators read as ordinals ("três quartos"). Others are read with "avos" ("cinco treze avos"), except the
# powers of ten below (``POWER_OF_TEN_DENOMINATORS``), which have their own ordinal.
FRACTION_DENOMINATORS = {
    2: ("meio", "meios"),
    3: ("terço", "terços"),
    4: ("quarto", "quartos"),
    5: ("quinto", "quintos"),
    6: ("sexto", "sextos"),
    7: ("sétimo", "sétimos"),
    8: ("oitavo", "oitavos"),
    9: ("nono", "nonos"),
    10: ("décimo", "décimos"),
}
POWER_OF_TEN_DENOMINATORS = {100: ("centésimo", "centésimos"), 1000: ("milésimo", "milésimos")}

# Every word a spelled-out cardinal can contain: the chunker keeps runs of them together.
SPOKEN_NUMBER_WORDS = frozenset(
    """
    zero um uma dois duas três quatro cinco seis sete oito nove dez onze doze treze catorze quinze
    dezesseis dezessete dezoito dezenove vinte trinta quarenta cinquenta sessenta setenta oitenta noventa
    cem cento duzentos duzentas trezentos trezentas quatrocentos quatrocentas quinhentos quinhentas
    seiscentos seiscentas setecentos setecentas oitocentos oitocentas novecentos novecentas mil milhão
    milhões bilhão bilhões trilhão trilhões vírgula
    """.split()
)

_THOUSANDS_GROUPED = re.compile(r"\d{1,3}(?:\.\d{3})+(?:,\d+)?")
_PLAIN_OR_DECIMAL = re.compile(r"\d+(?:,\d+)?")
_DOT_SEPARATED = re.compile(r"\d+(?:\.\d+)+")


def digits_as_words(digits: str) -> str:
    """'0800' -> 'zero oito zero zero'."""
    return " ".join(DIGIT_NAMES[int(d)] for d in digits)


def feminine_cardinal(words: str) -> str:
    """Make a masculine cardinal agree with a feminine noun.

    Only the part after the last million-like word agrees: "um milhão e duzentas mil pessoas".
    """
    tokens = words.split()
    start = 0
    for index, token in enumerate(tokens):
        if token in MASCULINE_SCALE_WORDS:
            start = index + 1
    for index in range(start, len(tokens)):
        token = tokens[index]
        if token == "um":
            tokens[index] = "uma"
        elif token == "dois":
            tokens[index] = "duas"
        elif token.endswith("entos"):
            tokens[index] = token[:-5] + "entas"
    return " ".join(tokens)


@lru_cache(maxsize=1000)
def _group_words(number: int) -> str:
    """1..999 in words, from num2words ('cento e vinte e três')."""
    return num2words(number, lang="pt_BR")


def _compose_cardinal(number: int) -> str:
    """Join thousand-groups the pt-BR way: 'e' only before a last group under 100 or of round hundreds.

    num2words itself writes commas between groups (they would become pauses and chunk breaks) and
    odd joins ("um milhão e mil e um"); composing its group words keeps the words and fixes the joins.
    """
    groups = []
    while number:
        number, group = divmod(number, 1000)
        groups.append(group)
    last_nonzero = next(index for index, group in enumerate(groups) if group)
    spoken: list[str] = []
    for index in range(len(groups) - 1, -1, -1):
        group = groups[index]
        if not group:
            continue
        if index == 0:
            words = _group_words(group)
        elif index == 1:
            words = "mil" if group == 1 else f"{_group_words(group)} mil"
        else:
            singular, plural = GROUP_SCALES[index - 1]
            words = f"{_group_words(group)} {singular if group == 1 else plural}"
        if spoken and index == last_nonzero and (group < 100 or group % 100 == 0):
            words = f"e {words}"
        spoken.append(words)
    return " ".join(spoken)


@lru_cache(maxsize=_CACHE_SIZE)
def cardinal(number: int, *, feminine: bool = False) -> str:
    """1234 -> 'mil duzentos e trinta e quatro'; negative numbers start with 'menos'."""
    sign = "menos " if number < 0 else ""
    magnitude = abs(number)
    if magnitude >= 10**MAX_DIGITS_AS_NUMBER:
        return sign + digits_as_words(str(magnitude))
    words = "zero" if magnitude == 0 else _compose_cardinal(magnitude)
    return sign + (feminine_cardinal(words) if feminine else words)


@lru_cache(maxsize=_CACHE_SIZE)
def ordinal(number: int, *, feminine: bool = False) -> str:
    """3 -> 'terceiro' / 'terceira'.

    num2words orders words wrongly from 2000 up ("segundo milésimo"), so those fall back to the cardinal.
    """
    if number <= 0 or number >= 2000:
        return cardinal(number, feminine=feminine)
    words = num2words(number, lang="pt_BR", to="ordinal").replace(",", "")
    if feminine:
        words = " ".join(word[:-1] + "a" if word.endswith("o") else word for word in words.split())
    return words


def regnal_or_century(number: int, *, feminine: bool = False) -> str:
    """Kings, popes and centuries: ordinal up to ten, cardinal above ("Pedro segundo", "Luís catorze")."""
    return ordinal(number, feminine=feminine) if number <= 10 else cardinal(number)


def integer_words(digits: str, *, feminine: bool = False) -> str:
    """Read an unsigned digit string; leading zeros and very long runs are read digit by digit."""
    # The length test also keeps int() away from Python's 4300-digit conversion limit.
    if (len(digits) > 1 and digits.startswith("0")) or len(digits) > MAX_DIGITS_AS_NUMBER:
        return digits_as_words(digits)
    return cardinal(int(digits), feminine=feminine)


def fraction_digits_words(digits: str) -> str:
    """Digits after the decimal comma: '05' -> 'zero cinco', '25' -> 'vinte e cinco'."""
    significant = digits.lstrip("0")
    zeros = len(digits) - len(significant)
    spoken = ["zero"] * zeros
    if significant:
        spoken.append(cardinal(int(significant)) if len(significant) <= 3 else digits_as_words(significant))
    return " ".join(spoken)


def decimal_words(integer_digits: str, fraction_digits: str | None, *, feminine: bool = False) -> str:
    """'3', '5' -> 'três vírgula cinco'."""
    words = integer_words(integer_digits, feminine=feminine)
    if fraction_digits is None:
        return words
    return f"{words} vírgula {fraction_digits_words(fraction_digits)}"


def split_number(token: str) -> tuple[str, str | None] | None:
    """Split a pt-BR number ('1.234,56') into integer digits and decimal digits; None if not one."""
    if _THOUSANDS_GROUPED.fullmatch(token) or _PLAIN_OR_DECIMAL.fullmatch(token):
        integer, _, fraction = token.partition(",")
        return integer.replace(".", ""), fraction or None
    return None


def number_words(token: str, *, feminine: bool = False) -> str:
    """Read any run of digits joined by '.' or ',' ('1.500.000', '3,5', '1.2.3', '1,2,3')."""
    parts = split_number(token)
    if parts is not None:
        return decimal_words(parts[0], parts[1], feminine=feminine)
    if _DOT_SEPARATED.fullmatch(token):
        # Versions, IP addresses, dotted codes: "um ponto dois ponto três".
        return " ponto ".join(integer_words(part) for part in token.split("."))
    return " vírgula ".join(number_words(part) for part in token.split(","))


def is_exactly_one(token: str) -> bool:
    """True for '1', '1,0', '1,00': the noun that follows stays singular."""
    parts = split_number(token)
    if parts is None:
        return False
    integer, fraction = parts
    return integer == "1" and (fraction is None or set(fraction) == {"0"})


def fraction_words(numerator: int, denominator: int, *, feminine: bool = False) -> str:
    """1/2 -> 'meio' (or 'meia'), 3/4 -> 'três quartos', 5/13 -> 'cinco treze avos', 1/100 -> 'um centésimo'."""
    if denominator == 2 and numerator == 1:
        return "meia" if feminine else "meio"
    names = FRACTION_DENOMINATORS.get(denominator) or POWER_OF_TEN_DENOMINATORS.get(denominator)
    if names is None:
        return f"{cardinal(numerator)} {cardinal(denominator)} avos"
    singular, plural = names
    return f"{cardinal(numerator)} {singular if numerator == 1 else plural}"
