"""Vocabulary coverage against f5-tts's shipped vocab.txt and small hand-made vocabularies."""

from pathlib import Path

import pytest

from ptbr_model.text import fit_to_vocab, load_vocab, normalize

ASCII_LOWER_AND_PUNCTUATION = frozenset(" abcdefghijklmnopqrstuvwxyz.,;:!?-'\"")



def test_load_vocab_reads_the_shipped_file_like_upstream(shipped_vocab: frozenset[str]) -> None:
    # Upstream keeps every line minus its newline: 2545 symbols, the space among them.
    assert len(shipped_vocab) == 2545
    assert " " in shipped_vocab
    assert all("\n" not in symbol for symbol in shipped_vocab)


def test_load_vocab_keeps_the_space_line_and_strips_only_the_newline(tmp_path: Path) -> None:
    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text(" \na\n b\ncd", encoding="utf-8")
    # Upstream cuts the last character of every line, newline or not: without a final newline "cd" becomes "c".
    assert load_vocab(vocab_file) == frozenset({" ", "a", " b", "c"})


@pytest.mark.parametrize("char", ["Ô", "Õ", "ª", "“", "”", "‘", "’"])
def test_the_shipped_vocab_lacks_these_portuguese_characters(shipped_vocab: frozenset[str], char: str) -> None:
    # The reason fit_to_vocab exists: upstream turns each of these into a silent space.
    assert char not in shipped_vocab


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PÔR DO SOL", "PôR DO SOL"),
        ("ÕES", "õES"),
        ("1ª vez", "1a vez"),
        ("“Olá”, disse ‘ele’", "\"Olá\", disse 'ele'"),
        ("a\u00a0b\u2009c", "a b c"),
        ("ﬁm", "fim"),
        ("ŷ", "y"),
        ("Ação é ótima", "Ação é ótima"),
        ("a\u0301gua", "água"),
    ],
)
def test_known_variants_are_mapped_not_removed(shipped_vocab: frozenset[str], text: str, expected: str) -> None:
    assert fit_to_vocab(text, shipped_vocab) == (expected, [])


def test_unknown_characters_are_removed_and_reported(shipped_vocab: frozenset[str]) -> None:
    fitted, removed = fit_to_vocab("Custa dez reais ☃. Olá 😀 mundo | fim}", shipped_vocab)
    assert fitted == "Custa dez reais. Olá mundo fim"
    assert removed == ["|", "}", "☃", "😀"]


def test_removed_characters_never_become_spaces(shipped_vocab: frozenset[str]) -> None:
    assert fit_to_vocab("ab☃cd", shipped_vocab) == ("abcd", ["☃"])


def test_dashes_and_ellipsis_map_when_the_vocab_lacks_them() -> None:
    assert fit_to_vocab("sim — não – talvez…", ASCII_LOWER_AND_PUNCTUATION) == ("sim - nao - talvez...", [])


def test_dashes_become_commas_when_the_vocab_has_no_hyphen() -> None:
    assert fit_to_vocab("sim — não", frozenset(" simnao,")) == ("sim, nao", [])


def test_accents_missing_from_the_vocab_fall_back_to_the_base_letter() -> None:
    assert fit_to_vocab("não é ÓTIMO", ASCII_LOWER_AND_PUNCTUATION) == ("nao e otimo", [])


def test_ordinal_indicators_outside_ordinals_become_letters() -> None:
    assert fit_to_vocab("nª sº", ASCII_LOWER_AND_PUNCTUATION) == ("na so", [])


def test_fit_to_vocab_is_idempotent(shipped_vocab: frozenset[str]) -> None:
    once, _ = fit_to_vocab("“ÔNIBUS” — ☃ ª…", shipped_vocab)
    assert fit_to_vocab(once, shipped_vocab) == (once, [])


def test_normalized_portuguese_fits_the_shipped_vocab(shipped_vocab: frozenset[str]) -> None:
    text = normalize("Às 14h30 do dia 25/12/1990, o Sr. Ôliver pagou R$ 1.500,00 à 2ª vara — “urgente”…")
    fitted, removed = fit_to_vocab(text, shipped_vocab)
    assert removed == []
    assert fitted == (
        "Às catorze horas e trinta minutos do dia vinte e cinco de dezembro de mil novecentos e noventa, "
        "o Senhor ôliver pagou mil e quinhentos reais à segunda vara — \"urgente\"…"
    )


def test_reference_transcripts_survive_the_same_path(shipped_vocab: frozenset[str]) -> None:
    fitted, removed = fit_to_vocab(normalize("Olá! Eu sou a Maria, tenho 30 anos."), shipped_vocab)
    assert (fitted, removed) == ("Olá! Eu sou a Maria, tenho trinta anos.", [])
