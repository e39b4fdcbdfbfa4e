"""Properties of the normaliser over generated text: never raises, no digit left, idempotent,
and after fit_to_vocab only vocabulary characters remain; with no lexicon, and with the built-in
lexicon plus user entries."""

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptbr_model.text import Lexicon, fit_to_vocab, normalize

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ASCII_DIGIT = re.compile("[0-9]")

# Pieces the passes react to, glued together in any order: this finds interactions between passes
# ("nºR$", "D. D. Pedro", "séc.XXI2") that uniformly random text almost never produces.
TRIGGER_TOKENS = [
    "0", "1", "2", "10", "21", "200", "007", "1.234", "1.500.000", "3,5", "1,00", "-", "−", ".", ",", "/", ":", ";",
    "h", "x", "X", "×", " ", " ", " ", "\n", "R$", "US$", "$", "€", "£", "%", "º", "ª", "°", "C", "km", "km/h", "kg",
    "m", "min", "Sr.", "Dra.", "D.", "R.", "S.", "p.", "ex.", "etc.", "nº", "#", "Pedro", "Maria", "II", "I", "V",
    "XXI", "MIL", "DI", "VIVI", "século", "séc.", "capítulo", "Guerra", "CPF", "ONU", "INSS", "ATENÇÃO", "@", "a",
    "gmail", "com", "br", "www.", "https://", "(", ")", "+", "=", "&", "<", "casas", "horas", "pessoas", "de",
    "janeiro", "dia", "e", "ou", "mil", "milhões", "vc", "1/2", "3/4", "25/12", "25/12/1990", "14h30", "14:30",
    "2020", "98765-4321", "(11)", "01310-100", "é", "Ô", "Õ", "…", "–", "“", "”", "½", "²", "١", "\t", "S.A.",
    "a.C.", "Ltda.", "A", "Z", "!", "?", "ǅ", "①", "\u200b", "\u00a0",
    # Round 2: fractions, spaced thousands, gender-marked abbreviations, slash shorthands.
    "1 1/2", "5/13", "1/100", "000", " 000", "Profª", "Prof.ª", "Eng.º", "V. Exª", "§§", "c/", "p/", "inciso",
    "artigo", "mil", "mi", "01", "dia", "555-1234",
    # Lexicon words, their plurals, hyphens, apostrophes, capitals, and addresses around them.
    "YouTube", "show", "shows", "SHOW", "Wi-Fi", "e-mail", "e-mails", "-", "'", "’", "McDonald's", "site", "website",
    "gmail", "youtube.com", "live", "Amazonas", "nubank", "OK", "ok", "hashtag", "_", "dj",
]  # fmt: skip
# The built-in lexicon, with user entries over it (an identity entry, a plural override, a hyphenated word).
LEXICON = Lexicon.builtin().merged({"nubank": "nubânqui", "ok": "ok", "shows": "xôus", "zé-lelé": "zé lelé"})
lexicons = pytest.mark.parametrize("lexicon", [None, LEXICON], ids=["no lexicon", "lexicon"])
triggers = st.lists(st.sampled_from(TRIGGER_TOKENS), max_size=14).map("".join)
spaced_triggers = st.lists(st.sampled_from(TRIGGER_TOKENS), max_size=14).map(" ".join)
any_text = st.text(max_size=80)
portuguese_like_text = st.text(
    alphabet=st.sampled_from(list("0123456789 .,;:/-%$ºªxhRSUDIVXLCMaeioucçãõáéíóúâêôABCÔÕ@&+=()")), max_size=60
)
texts = st.one_of(any_text, portuguese_like_text, triggers, spaced_triggers)



@lexicons
@PROPERTY_SETTINGS
@given(text=texts)
def test_normalize_never_raises_and_leaves_no_ascii_digit(lexicon: Lexicon | None, text: str) -> None:
    assert ASCII_DIGIT.search(normalize(text, lexicon=lexicon)) is None


@lexicons
@PROPERTY_SETTINGS
@given(text=texts)
def test_normalize_is_idempotent(lexicon: Lexicon | None, text: str) -> None:
    once = normalize(text, lexicon=lexicon)
    assert normalize(once, lexicon=lexicon) == once


@lexicons
@PROPERTY_SETTINGS
@given(text=texts)
def test_normalize_is_deterministic_and_collapses_whitespace(lexicon: Lexicon | None, text: str) -> None:
    result = normalize(text, lexicon=lexicon)
    assert result == normalize(text, lexicon=lexicon)
    assert result == result.strip()
    assert "  " not in result and "\n" not in result and "\t" not in result


@lexicons
@PROPERTY_SETTINGS
@given(text=texts)
def test_fitted_text_uses_only_vocabulary_characters(
    shipped_vocab: frozenset[str], lexicon: Lexicon | None, text: str
) -> None:
    fitted, removed = fit_to_vocab(normalize(text, lexicon=lexicon), shipped_vocab)
    assert all(char in shipped_vocab for char in fitted)
    assert removed == sorted(set(removed))
    assert not any(char in shipped_vocab for char in removed)
