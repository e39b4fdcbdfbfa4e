"""Chunking: upstream's byte budget, sentence-first splitting, no tiny tails."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptbr_model.text import chunk_budget_bytes, chunk_text, normalize
from ptbr_model.text.chunking import MIN_BUDGET_BYTES, MIN_CHUNK_BYTES


def size(text: str) -> int:
    return len(text.encode("utf-8"))


def test_budget_follows_upstreams_rule() -> None:
    # int(len(ref_text.encode("utf-8")) / seconds * (22 - seconds) * speed)
    ref_text = "a" * 60
    assert chunk_budget_bytes(ref_text, 6.0, 1.0) == 160
    assert chunk_budget_bytes(ref_text, 6.0, 0.5) == 80
    assert chunk_budget_bytes(ref_text, 10.0, 1.2) == int(60 / 10.0 * 12.0 * 1.2)


def test_budget_counts_utf8_bytes_not_characters() -> None:
    ref_text = "ação" * 10  # 40 characters, 60 bytes
    assert chunk_budget_bytes(ref_text, 5.0, 1.0) == int(60 / 5.0 * 17.0)


@pytest.mark.parametrize(
    ("ref_text", "seconds"), [("Olá, tudo bem?", 22.0), ("Olá, tudo bem?", 30.0), ("", 5.0), ("a", 21.9)]
)
def test_budget_never_falls_below_the_floor(ref_text: str, seconds: float) -> None:
    assert chunk_budget_bytes(ref_text, seconds, 1.0) == MIN_BUDGET_BYTES


@pytest.mark.parametrize(
    ("seconds", "speed"),
    [(0.0, 1.0), (-1.0, 1.0), (math.nan, 1.0), (math.inf, 1.0), (5.0, 0.0), (5.0, -1.0), (5.0, math.nan)],
)
def test_budget_rejects_impossible_inputs(seconds: float, speed: float) -> None:
    with pytest.raises(ValueError):
        chunk_budget_bytes("Olá.", seconds, speed)


def test_short_text_is_one_chunk() -> None:
    assert chunk_text("Olá, mundo. Tudo bem?", 100) == ["Olá, mundo. Tudo bem?"]


def test_empty_text_has_no_chunks() -> None:
    assert chunk_text("   \n ", 100) == []


def test_rejects_a_non_positive_budget() -> None:
    with pytest.raises(ValueError):
        chunk_text("Olá.", 0)


def test_splits_at_sentence_ends_first() -> None:
    text = "Primeira frase aqui, com vírgula. Segunda frase também longa. Terceira frase final!"
    assert chunk_text(text, 70) == [
        "Primeira frase aqui, com vírgula. Segunda frase também longa.",
        "Terceira frase final!",
    ]


def test_splits_a_long_sentence_at_clause_punctuation() -> None:
    text = "Ele comprou pão, leite e café; depois foi ao parque: lá encontrou os amigos de escola"
    assert chunk_text(text, 40) == [
        "Ele comprou pão, leite e café;",
        "depois foi ao parque:",
        "lá encontrou os amigos de escola",
    ]


def test_splits_long_text_without_punctuation_at_spaces() -> None:
    text = " ".join(["palavra"] * 100)
    chunks = chunk_text(text, 50)
    assert len(chunks) > 1
    assert all(size(chunk) <= 50 + MIN_CHUNK_BYTES + 1 for chunk in chunks)
    assert " ".join(chunks) == text


def test_a_word_longer_than_the_budget_is_never_cut() -> None:
    word = "a" * 120
    assert chunk_text(f"o começo de toda a história {word} e o fim de tudo aqui", 50) == [
        "o começo de toda a história",
        word,
        "e o fim de tudo aqui",
    ]


@settings(max_examples=100, deadline=None)
@given(text=st.lists(st.sampled_from(["a", "bb", "ccc", "ç", "d."]), min_size=1, max_size=60).map(" ".join),
       max_bytes=st.integers(min_value=1, max_value=MIN_CHUNK_BYTES))
def test_budgets_below_the_tiny_limit_still_give_back_the_text(text: str, max_bytes: int) -> None:
    chunks = chunk_text(text, max_bytes)
    assert " ".join(chunks) == text
    assert len(chunks) == 1 or all(size(chunk) >= MIN_CHUNK_BYTES for chunk in chunks)


def test_a_tiny_tail_joins_the_previous_chunk() -> None:
    text = "Esta é uma frase razoavelmente longa para encher o orçamento. Sim."
    chunks = chunk_text(text, 64)
    assert chunks == [text]
    assert size(chunks[0]) > 64


def test_a_tiny_first_chunk_joins_the_next() -> None:
    text = "Oi. Esta é uma frase razoavelmente longa que enche o orçamento todo."
    assert chunk_text(text, 66) == [text]


def test_expanded_numbers_are_not_split() -> None:
    text = normalize("Comprei 1.234 laranjas, 2.345 maçãs e 3.456 peras, tudo por R$ 1.234,56 na feira.")
    chunks = chunk_text(text, 60)
    for phrase in ["mil duzentas e trinta e quatro laranjas", "duas mil trezentas e quarenta e cinco maçãs",
                   "três mil quatrocentas e cinquenta e seis peras", "mil duzentos e trinta e quatro reais",
                   "cinquenta e seis centavos"]:
        assert any(phrase in chunk for chunk in chunks), (phrase, chunks)


def test_chunks_end_at_punctuation_when_punctuation_allows() -> None:
    text = normalize("Às 8h, saí. Às 14h30, almocei. Às 22h, dormi cedo porque estava cansado.")
    chunks = chunk_text(text, 50)
    assert all(chunk[-1] in ".,;:!?" for chunk in chunks)


words = st.text(alphabet=st.sampled_from(list("abcdeçãé")), min_size=1, max_size=12)
punctuation = st.sampled_from(["", "", "", ",", ".", ";", ":", "!", "?"])
sentences = st.lists(st.tuples(words, punctuation).map("".join), min_size=1, max_size=80).map(" ".join)


@settings(max_examples=200, deadline=None)
@given(text=sentences, max_bytes=st.integers(min_value=MIN_BUDGET_BYTES, max_value=300))
def test_chunks_give_back_the_text_and_leave_no_tiny_chunk(text: str, max_bytes: int) -> None:
    chunks = chunk_text(text, max_bytes)
    assert " ".join(chunks) == text
    assert all(chunk == chunk.strip() and chunk for chunk in chunks)
    if len(chunks) > 1:
        assert all(size(chunk) >= MIN_CHUNK_BYTES for chunk in chunks)
    longest_word = max(size(word) for word in text.split())
    assert all(size(chunk) <= max(max_bytes, longest_word) + 2 * (MIN_CHUNK_BYTES + 1) for chunk in chunks)
