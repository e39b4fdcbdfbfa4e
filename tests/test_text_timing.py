"""ReDoS guard: 100,000 characters of adversarial input normalise in under a second.

A catastrophic-backtracking pattern turns these into minutes; linear patterns take a fraction of a
second. The best of two runs is kept so that a busy machine does not fail a linear pattern.
"""

import math
import time
from collections.abc import Callable

import pytest

from ptbr_model.text import Lexicon, chunk_text, fit_to_vocab, normalize

SIZE = 100_000
TIME_LIMIT_SECONDS = 1.0
ATTEMPTS = 2


def _repeat(piece: str) -> str:
    return (piece * (SIZE // len(piece) + 1))[:SIZE]


def _best_seconds(work: Callable[[], object]) -> float:
    best = math.inf
    for _ in range(ATTEMPTS):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
        if best < TIME_LIMIT_SECONDS:
            break
    return best


ADVERSARIAL_INPUTS = {
    "digit run": _repeat("1"),
    "digit runs with spaces": _repeat("1234567 "),
    "dotted digits": _repeat("1."),
    "comma digits": _repeat("1,"),
    "hyphenated digits": _repeat("1-"),
    "slashed digits": _repeat("1/"),
    "colon digits": _repeat("1:"),
    "currency signs": _repeat("R$"),
    "currency without amounts": _repeat("R$ US$ € "),
    "at signs": _repeat("a@"),
    "e-mail lookalike": _repeat("a" * 63 + "."),
    "www run": _repeat("www."),
    "spaces": " " * SIZE,
    "mixed whitespace": _repeat(" \t\n\u00a0"),
    "punctuation": _repeat(".,;:!?"),
    "dots": "." * SIZE,
    "roman numeral letters": "M" * SIZE,
    "century with huge numeral": "século " + "X" * SIZE,
    "name with huge numeral": "Pedro " + "I" * SIZE,
    "capitals": "A" * SIZE,
    "ordinals": _repeat("1º"),
    "degrees": _repeat("1°"),
    "abbreviation dots": _repeat("D. "),
    "signs": _repeat("+5"),
    "minus": _repeat("-1"),
    "brackets": _repeat("(1"),
    "long phone-like run": "98765-" + "9" * (SIZE - 6),
    "scores": _repeat("1x"),
    "realistic mix": _repeat("Sr. D. Pedro II 1.234,56 R$ 10,50 14h30 25/12/1990 CPF www.x.com.br a@b.com "),
    "mixed numbers": _repeat("1 1/2 "),
    "spaced thousands": _repeat("1 000 "),
    "spaced digit groups": _repeat("100 "),
    "gender-marked abbreviations": _repeat("Prof.ª "),
    "lexicon words": _repeat("show YouTube Wi-Fi e-mails "),
    "one hyphen chain": "a-" * (SIZE // 2),
    "apostrophe chain": "a'" * (SIZE // 2),
    "hyphenated lexicon words": _repeat("show-site-"),
    "lexicon words in addresses": _repeat("youtube.show@gmail."),
    "one long word": "w" * SIZE,
}
# The built-in lexicon with user entries over it, as a request with pronunciations uses it.
LEXICON = Lexicon.builtin().merged({"nubank": "nubânqui", "zé-lelé": "zé lelé"})


@pytest.mark.parametrize("text", ADVERSARIAL_INPUTS.values(), ids=ADVERSARIAL_INPUTS.keys())
def test_normalize_is_linear_on_adversarial_input(text: str) -> None:
    assert _best_seconds(lambda: normalize(text)) < TIME_LIMIT_SECONDS


@pytest.mark.parametrize("text", ADVERSARIAL_INPUTS.values(), ids=ADVERSARIAL_INPUTS.keys())
def test_normalize_with_the_lexicon_is_linear_on_adversarial_input(text: str) -> None:
    assert _best_seconds(lambda: normalize(text, lexicon=LEXICON)) < TIME_LIMIT_SECONDS


def test_fit_and_chunk_are_fast_on_long_text() -> None:
    text = _repeat("Olá, mundo! Ôi “teste” ☃ ")
    vocab = frozenset(" abcdefghijklmnopqrstuvwxyzáéíóúãõâêôçÁÉ,.!?\"")
    assert _best_seconds(lambda: chunk_text(fit_to_vocab(text, vocab)[0], 150)) < TIME_LIMIT_SECONDS


def test_chunking_a_long_unpunctuated_run_is_fast() -> None:
    text = _repeat("palavra mil duzentos e trinta e quatro ")
    assert _best_seconds(lambda: chunk_text(text, 60)) < TIME_LIMIT_SECONDS
