"""Early first audio: the short first chunk (chunking), and the streamed synthesis that hands each chunk's audio out
as soon as it exists, cross-fade included, equal bit for bit to the whole waveform."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptbr_model import f5, store
from ptbr_model.bench_workloads import WORKLOADS, reference_transcript
from ptbr_model.demo import write_demo_files
from ptbr_model.engine import ChunkAudio, CrossFadeJoiner, NothingToSay, SynthesisOptions, Synthesizer, cross_fade_concat
from ptbr_model.text import chunk_text, normalize, prepare_text
from ptbr_model.text.chunking import DEFAULT_FIRST_CHUNK_BYTES, MIN_CHUNK_BYTES, split_first_chunk
from ptbr_model.text.number_words import SPOKEN_NUMBER_WORDS
from signals import voice_like

PARAGRAPH = normalize(WORKLOADS["paragraph"].text)
BUDGET = 256  # a 6 s reference's chunk budget (16 bytes/s × 16 s)


def size(text: str) -> int:
    return len(text.encode("utf-8"))


# --- chunking ----------------------------------------------------------------------------------------------------


def test_the_paragraph_starts_with_a_short_clause_and_keeps_normal_chunks_after():
    chunks = chunk_text(PARAGRAPH, BUDGET, DEFAULT_FIRST_CHUNK_BYTES)
    assert chunks[0] == "A cidade de Tiradentes, em Minas Gerais,"  # the longest clause cut within 48 bytes
    assert MIN_CHUNK_BYTES <= size(chunks[0]) <= DEFAULT_FIRST_CHUNK_BYTES
    rest = PARAGRAPH[len(chunks[0]) + 1:]
    assert chunks[1:] == chunk_text(rest, BUDGET)  # the rest is chunked exactly as it would be alone
    assert " ".join(chunks) == PARAGRAPH
    assert len(chunks) == len(chunk_text(PARAGRAPH, BUDGET)) + 1


def test_a_sentence_end_beats_a_longer_clause():
    text = "Bom dia a todos vocês. Hoje, na cidade grande, chove, e o trânsito está parado desde cedo na avenida principal."
    first, rest = split_first_chunk(text, 48)
    assert first == "Bom dia a todos vocês."  # 22 bytes; a clause cut could reach 45
    assert rest.startswith("Hoje,")


def test_a_spelled_out_number_is_never_split_even_past_the_limit():
    text = ("Eram três mil quatrocentas e cinquenta e seis pessoas esperando na fila do banco naquele dia de chuva "
            "forte, todas com pressa.")
    first, _ = split_first_chunk(text, 30)
    assert first == "Eram três mil quatrocentas e cinquenta e seis"  # 48 bytes: the number stays whole


@pytest.mark.parametrize("first_chunk_bytes", [None, 0])
def test_off_means_normal_chunking(first_chunk_bytes):
    assert chunk_text(PARAGRAPH, BUDGET, first_chunk_bytes) == chunk_text(PARAGRAPH, BUDGET)


def test_texts_up_to_twice_the_limit_are_not_split():
    sentence = normalize(WORKLOADS["sentence"].text)  # 66 bytes ≤ 2 × 48: an extra chunk would cost a reference pass
    assert chunk_text(sentence, BUDGET, DEFAULT_FIRST_CHUNK_BYTES) == [sentence]


def test_a_negative_limit_is_refused():
    with pytest.raises(ValueError, match="first_chunk_bytes"):
        chunk_text(PARAGRAPH, BUDGET, -1)


def test_prepare_text_passes_the_limit_on():
    vocab = frozenset(f5.shipped_vocab_path().read_text(encoding="utf-8"))
    kwargs = dict(ref_text=reference_transcript(6.0), ref_audio_seconds=6.0, speed=1.0)
    short = prepare_text(WORKLOADS["paragraph"].text, vocab, first_chunk_bytes=DEFAULT_FIRST_CHUNK_BYTES, **kwargs)
    normal = prepare_text(WORKLOADS["paragraph"].text, vocab, **kwargs)
    assert size(short.chunks[0]) <= DEFAULT_FIRST_CHUNK_BYTES < size(normal.chunks[0])
    assert " ".join(short.chunks) == " ".join(normal.chunks) == normal.text


WORDS = st.sampled_from(["casa", "rua,", "de", "pedra.", "e", "três", "mil", "cem", "vinte", "um", "azul;",
                         "ônibus", "quatrocentas", "dia!", "vale", "cinquenta"])


@settings(max_examples=200, deadline=None)
@given(st.lists(WORDS, min_size=1, max_size=60), st.integers(min_value=20, max_value=80))
def test_first_chunk_properties(words, limit):
    text = " ".join(words)
    chunks = chunk_text(text, BUDGET, limit)
    assert " ".join(chunks) == text
    if size(text) > 2 * limit:
        first = chunks[0]
        rest_words = text[len(first):].split()
        # never between two number words (nor between a number and an 'e' that joins another)
        last, following = first.split()[-1], rest_words[0] if rest_words else ""
        number = lambda token: token.rstrip(".,;:!?").lower() in SPOKEN_NUMBER_WORDS  # noqa: E731
        assert not (number(last) and (number(following) or (following == "e" and len(rest_words) > 1
                                                             and number(rest_words[1]))))
        if size(first) > limit:  # only a number group (or one long word) may push it over
            assert size(first) >= MIN_CHUNK_BYTES


# --- the cross-fade, handed out as chunks arrive -----------------------------------------------------------------


def upstream_join(waves: list[np.ndarray], fade: int) -> np.ndarray:
    """infer_batch_process's inline loop, copied verbatim (f5-tts 1.1.22)."""
    final_wave = waves[0]
    for i in range(1, len(waves)):
        prev_wave = final_wave
        next_wave = waves[i]
        cross_fade_samples = min(fade, len(prev_wave), len(next_wave))
        if cross_fade_samples <= 0:
            final_wave = np.concatenate([prev_wave, next_wave])
            continue
        prev_overlap = prev_wave[-cross_fade_samples:]
        next_overlap = next_wave[:cross_fade_samples]
        fade_out = np.linspace(1, 0, cross_fade_samples)
        fade_in = np.linspace(0, 1, cross_fade_samples)
        cross_faded_overlap = prev_overlap * fade_out + next_overlap * fade_in
        final_wave = np.concatenate([prev_wave[:-cross_fade_samples], cross_faded_overlap,
                                     next_wave[cross_fade_samples:]])
    return final_wave


@pytest.mark.parametrize("lengths,fade", [
    ([5000, 7000, 6000], 3600),
    ([5000, 100, 50, 6000], 3600),   # chunks shorter than the fade: the overlap reaches into earlier chunks
    ([20, 30, 10], 3600),            # everything shorter than the fade
    ([4000, 4000], 0),               # no fade
    ([4000], 3600),
])
def test_streamed_pieces_equal_upstreams_join_bit_for_bit(lengths, fade):
    rng = np.random.default_rng(sum(lengths) + fade)
    waves = [rng.standard_normal(n).astype(np.float32) for n in lengths]
    expected = upstream_join(waves, fade).astype(np.float32)
    joiner = CrossFadeJoiner(fade)
    pieces = [joiner.push(wave, index == len(waves) - 1) for index, wave in enumerate(waves)]
    assert all(piece.dtype == np.float32 for piece in pieces)
    np.testing.assert_array_equal(np.concatenate(pieces), expected)
    np.testing.assert_array_equal(cross_fade_concat(waves, fade), expected)
    if len(waves) > 1 and lengths[0] > fade:
        assert len(pieces[0]) == lengths[0] - fade  # all but the fade's tail is out after the first chunk


# --- the engine's stream -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Synthesizer:
    checkpoint, vocoder_dir = write_demo_files(tmp_path_factory.mktemp("first-chunk-demo"))
    options = store.ImportOptions(checkpoint, "demo", f5.shipped_vocab_path(), vocoder_dir, store_dtype="float32",
                                  name="first-chunk-test", demo=True)
    stored = store.load_stored(store.import_checkpoint(options))
    return Synthesizer.load(stored, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def reference(engine):
    return engine.make_reference(voice_like(6.0), reference_transcript(6.0))


@pytest.mark.parametrize("short", [True, False])
def test_streamed_pieces_concatenate_to_the_whole_waveform(engine, reference, short):
    options = SynthesisOptions(nfe_step=2, seed=11)
    stream = engine.iter_synthesis(WORKLOADS["paragraph"].text, reference, options, first_chunk_short=short)
    plan = stream.plan  # known before anything is sampled
    pieces = list(stream)
    whole = engine.synthesize(WORKLOADS["paragraph"].text, reference, options, first_chunk_short=short)
    assert [piece.text for piece in pieces] == list(plan.chunks) == whole.chunks
    assert [(piece.index, piece.total) for piece in pieces] == [(i, len(plan.chunks)) for i in range(len(pieces))]
    assert [piece.last for piece in pieces] == [False] * (len(pieces) - 1) + [True]
    assert all(isinstance(piece, ChunkAudio) and piece.sample_rate == engine.sample_rate for piece in pieces)
    np.testing.assert_array_equal(np.concatenate([piece.wave for piece in pieces]), whole.wave)
    assert stream.first_audio_seconds is not None and stream.first_audio_seconds <= stream.elapsed_seconds
    assert pieces[0].elapsed_seconds <= pieces[-1].elapsed_seconds
    assert (size(plan.chunks[0]) <= DEFAULT_FIRST_CHUNK_BYTES) is short


def test_the_stream_plans_before_it_samples(engine, reference, monkeypatch):
    import ptbr_model.engine as engine_module

    calls = []
    monkeypatch.setattr(engine_module, "sample_mel", lambda *a, **k: calls.append(1))
    stream = engine.iter_synthesis(WORKLOADS["paragraph"].text, reference, SynthesisOptions(nfe_step=2, seed=1))
    assert stream.seed == 1 and stream.nfe_step == 2 and len(stream.plan.chunks) > 2 and calls == []
    stream.close()  # abandoning a stream that never started is fine
    with pytest.raises(NothingToSay):  # refused at the call, before any response could start
        engine.iter_synthesis("😀 ✨", reference, SynthesisOptions(nfe_step=2))


def test_the_first_piece_costs_about_the_first_chunk_alone(engine, reference):
    """Not a timing test: the work before the first piece is the first chunk's (one sequence of its length)."""
    options = SynthesisOptions(nfe_step=2, seed=3)
    stream = engine.iter_synthesis(WORKLOADS["paragraph"].text, reference, options)
    alone = engine.plan(stream.plan.chunks[0], reference, options)
    assert stream.plan.work[0].frames == alone.work[0].frames
    assert stream.plan.cost.chunks[0] == alone.cost.chunks[0]
    first = next(stream)
    np.testing.assert_array_equal(
        first.wave, engine.synthesize(stream.plan.chunks[0], reference, options).wave[:len(first.wave)])
    stream.close()
