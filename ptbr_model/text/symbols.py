"""Symbols read aloud ("&" -> "e", "@" -> "arroba", "+" -> "mais", "=" -> "igual a", "/" -> "barra")
and currency signs left without an amount ("R$" -> "reais")."""

from __future__ import annotations

import re

SYMBOL_WORDS = {
    "R$": "reais", "US$": "dólares", "U$": "dólares", "$": "dólares", "€": "euros", "£": "libras",
    "&": "e", "@": "arroba", "+": "mais", "=": "igual a", "/": "barra", "%": "por cento",
    "‰": "por mil", "#": "hashtag", "§§": "parágrafos", "§": "parágrafo", "×": "vezes", "÷": "dividido por", "±": "mais ou menos",
    "≤": "menor ou igual a", "≥": "maior ou igual a", "≠": "diferente de", "≈": "aproximadamente",
    "<": "menor que", ">": "maior que", "²": "ao quadrado", "³": "ao cubo",
}  # fmt: skip

_SYMBOL = re.compile("|".join(re.escape(symbol) for symbol in sorted(SYMBOL_WORDS, key=len, reverse=True)))
_AND_OR = re.compile(r"(?<![^\W\d_])e/ou(?![^\W\d_])", re.IGNORECASE)
# A slash before a unit of time or a counted thing is a rate: "R$ 50/mês" -> "cinquenta reais por mês".
_RATE_SLASH = re.compile(
    r" ?/ ?(?=(?:mês|meses|ano|dia|noite|hora|semana|pessoa|unidade|cabeça|litro|quilo)s?(?![^\W\d_]))",
    re.IGNORECASE,
)
_OPENERS = "([{\"'"
_CLOSERS = ".,;:!?)]}\"'"


def _read_symbol(match: re.Match[str]) -> str:
    words = SYMBOL_WORDS[match.group(0)]
    text, start, end = match.string, match.start(), match.end()
    # Symbols stand between words: make sure each side is separated by a space.
    before = " " if start > 0 and not text[start - 1].isspace() and text[start - 1] not in _OPENERS else ""
    after = " " if end < len(text) and not text[end].isspace() and text[end] not in _CLOSERS else ""
    return f"{before}{words}{after}"


def expand_symbols(text: str) -> str:
    """Replace every symbol in SYMBOL_WORDS with its reading ("e/ou" is "e ou", "/mês" is "por mês")."""
    if "/" in text:
        text = _AND_OR.sub("e ou", text)
        text = _RATE_SLASH.sub(" por ", text)
    return _SYMBOL.sub(_read_symbol, text)
