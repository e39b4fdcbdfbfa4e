"""E-mail addresses and web addresses, read the way they are dictated.

"joao.silva@gmail.com" -> "joao ponto silva arroba gmail ponto com",
"https://www.gov.br/saude" -> "dáblio dáblio dáblio ponto gov ponto bê erre barra saude".
"""

from __future__ import annotations

import re

from .acronyms import spell_letters
from .number_words import digits_as_words
from .spacing import spaced

SEPARATOR_NAMES = {
    ".": "ponto", "@": "arroba", "/": "barra", "-": "hífen", "_": "underline", "+": "mais",
    ":": "dois pontos", "?": "interrogação", "=": "igual", "&": "e", "#": "hashtag", "~": "til", "%": "por cento",
}  # fmt: skip

# Top-level domains that make a bare lower-case "name.tld" a web address; anything else needs www. or
# a scheme. Domains that are also Portuguese words ("de", "me", "ai") are left out: "gostei.de" is a typo.
KNOWN_TOP_LEVEL_DOMAINS = (
    "com", "br", "org", "net", "gov", "edu", "io", "app", "dev", "info", "tv", "co", "uk", "pt", "us",
    "fr", "it", "jp", "xyz", "online", "site", "tech",
)  # fmt: skip

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PATH = r"(?:/(?:[\w\-.~%?=&#+/]{0,300}[\w\-~=#/])?)?"
_EMAIL = re.compile(rf"(?<![\w.+-])[\w.+-]{{1,64}}@{_LABEL}(?:\.{_LABEL}){{1,8}}(?![\w-])")
_URL_WITH_PREFIX = re.compile(
    rf"(?<![\w.@/-])(?:(?:https?|ftp)://(?:www\.)?|www\.){_LABEL}(?:\.{_LABEL}){{0,8}}(?::\d{{1,5}})?{_PATH}(?![\w-])",
    re.IGNORECASE,
)
_TLD_ALTERNATION = "|".join(KNOWN_TOP_LEVEL_DOMAINS)
_BARE_DOMAIN = re.compile(
    rf"(?<![\w.@/-])(?:[a-z][a-z0-9-]{{0,62}}\.){{1,4}}(?:{_TLD_ALTERNATION})(?![\w-]){_PATH}"
)
_SCHEME = re.compile(r"^(?:https?|ftp)://", re.IGNORECASE)
_PIECES = re.compile(r"[^\W\d_]+|[0-9]+|[^\w\s]|_")
_VOWELS = frozenset("aeiouyáéíóúâêôãõà")


def _read_piece(piece: str) -> str:
    if piece.isascii() and piece.isdigit():
        return digits_as_words(piece)
    if piece in SEPARATOR_NAMES:
        return SEPARATOR_NAMES[piece]
    if piece[0].isalpha():
        lowered = piece.lower()
        # "br", "www", "sp": no vowel, so they are spelled ("bê erre").
        return lowered if any(char in _VOWELS for char in lowered) else spell_letters(lowered)
    return ""


def read_address(address: str) -> str:
    """Read an e-mail or web address piece by piece; the scheme (https://) is not read aloud."""
    address = _SCHEME.sub("", address)
    spoken = (_read_piece(piece) for piece in _PIECES.findall(address))
    return " ".join(word for word in spoken if word)


def _replace_address(match: re.Match[str]) -> str:
    return spaced(match, read_address(match.group(0)))


def expand_web_addresses(text: str) -> str:
    """Spell out e-mail addresses first, then URLs with a scheme or www., then bare domains."""
    if "@" in text:
        text = _EMAIL.sub(_replace_address, text)
    if "://" in text or "www." in text.lower():
        text = _URL_WITH_PREFIX.sub(_replace_address, text)
    if "." in text:
        text = _BARE_DOMAIN.sub(_replace_address, text)
    return text
