"""Amounts of money: "R$ 10,50" -> "dez reais e cinquenta centavos", "R$ 2 milhões" -> "dois milhões de reais"."""

from __future__ import annotations

import re

from .number_words import MASCULINE_SCALE_WORDS, cardinal, is_exactly_one, number_words, split_number
from .gender import CountedNoun
from .spacing import spaced


Currency = CountedNoun  # one shape for every counted noun (see units.Unit)

REAL = Currency("real", "reais")
DOLLAR = Currency("dólar", "dólares")
EURO = Currency("euro", "euros")
POUND = Currency("libra", "libras", feminine=True)

CURRENCY_SYMBOLS = {"R$": REAL, "US$": DOLLAR, "U$": DOLLAR, "$": DOLLAR, "€": EURO, "£": POUND}

# Written scale words after the amount ("R$ 2 milhões", "R$ 5 bi"), as (singular, plural).
SCALE_WORDS = {
    "mil": ("mil", "mil"),
    "milhão": ("milhão", "milhões"), "milhões": ("milhão", "milhões"), "mi": ("milhão", "milhões"),
    "bilhão": ("bilhão", "bilhões"), "bilhões": ("bilhão", "bilhões"), "bi": ("bilhão", "bilhões"),
    "trilhão": ("trilhão", "trilhões"), "trilhões": ("trilhão", "trilhões"), "tri": ("trilhão", "trilhões"),
}  # fmt: skip

_SYMBOL_ALTERNATION = "|".join(re.escape(symbol) for symbol in sorted(CURRENCY_SYMBOLS, key=len, reverse=True))
_SCALE_ALTERNATION = "|".join(sorted(SCALE_WORDS, key=len, reverse=True))
# The scale word may be glued to the amount: "R$10mil", "R$ 1,5mi".
_AMOUNT = r"(?P<amount>\d+(?:[.,]\d+)*)(?: ?(?P<scale>" + _SCALE_ALTERNATION + r")(?![^\W\d_]))?"
_SYMBOL_FIRST = re.compile(
    r"(?:(?<![^\s(\[])(?P<sign>-) ?)?(?<![^\W\d_])(?P<symbol>" + _SYMBOL_ALTERNATION + r") ?"
    r"(?<![\d.,])" + _AMOUNT
)
# "10 €", "10€": the euro and pound signs are also written after the amount.
_SYMBOL_AFTER = re.compile(r"(?<![\d.,])" + _AMOUNT + r" ?(?P<symbol>[€£])")
_CENTS_DIGITS = 2


def _ends_with_scale_noun(words: str) -> bool:
    # "um milhão de reais" but "mil reais": million-like nouns take "de".
    return words.rsplit(" ", 1)[-1] in MASCULINE_SCALE_WORDS


def _with_currency(amount_words: str, currency: Currency, one: bool) -> str:
    noun = currency.singular if one else currency.plural
    joiner = " de " if _ends_with_scale_noun(amount_words) else " "
    return amount_words + joiner + noun


def money_words(amount: str, currency: Currency, scale: str | None = None) -> str:
    """Read an amount ('10,50') in a currency, with an optional written scale word ('milhões')."""
    if scale is not None:
        singular_scale, plural_scale = SCALE_WORDS[scale]
        one = is_exactly_one(amount) or amount.startswith("1,")
        scale_word = singular_scale if one else plural_scale
        # "duzentas mil libras" but "dois milhões de libras": only "mil" lets the number agree with the noun.
        feminine = currency.feminine and scale == "mil"
        return _with_currency(f"{number_words(amount, feminine=feminine)} {scale_word}", currency, False)
    parts = split_number(amount)
    if parts is None or (parts[1] is not None and len(parts[1]) > _CENTS_DIGITS):
        return _with_currency(number_words(amount, feminine=currency.feminine), currency, is_exactly_one(amount))
    integer_digits, cents_digits = parts
    cents = int(cents_digits.ljust(_CENTS_DIGITS, "0")) if cents_digits else 0
    spoken = []
    if integer_digits.strip("0") or cents == 0:
        units = number_words(integer_digits, feminine=currency.feminine)
        spoken.append(_with_currency(units, currency, integer_digits == "1"))
    if cents:
        spoken.append(f"{cardinal(cents)} {'centavo' if cents == 1 else 'centavos'}")
    return " e ".join(spoken)


def _read_money(match: re.Match[str]) -> str:
    currency = CURRENCY_SYMBOLS[match.group("symbol")]
    words = money_words(match.group("amount"), currency, match.group("scale"))
    sign = match.groupdict().get("sign")
    return spaced(match, f"menos {words}" if sign else words)


def expand_money(text: str) -> str:
    """Amounts with a currency sign before ('R$ 10') or, for € and £, after ('10 €')."""
    if "$" not in text and "€" not in text and "£" not in text:
        return text
    text = _SYMBOL_FIRST.sub(_read_money, text)
    return _SYMBOL_AFTER.sub(_read_money, text)
