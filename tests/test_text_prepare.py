"""prepare_text end to end, and the package's promise to stay free of torch and f5-tts."""

import dataclasses
import subprocess
import sys

import pytest

from ptbr_model.text import PreparedText, chunk_budget_bytes, chunk_text, fit_to_vocab, normalize, prepare_text

VOCAB = frozenset(" abcdefghijklmnopqrstuvwxyzáéíóúãõâêôçàABCDEFGHIJKLMNOPQRSTUVWXYZÁÉÍÓÚÂÊ.,;:!?-'\"")
REFERENCE = {"ref_text": "Olá, eu sou a voz de referência deste teste.", "ref_audio_seconds": 4.0, "speed": 1.0}


def test_prepare_text_normalises_fits_and_chunks() -> None:
    prepared = prepare_text("Às 14h30 paguei R$ 10,50 ☃ ao Sr. Silva.", VOCAB, **REFERENCE)
    # "À" is missing from this small vocabulary, so it becomes "à" instead of a silent space.
    expected = "às catorze horas e trinta minutos paguei dez reais e cinquenta centavos ao Senhor Silva."
    assert prepared == PreparedText(text=expected, chunks=(expected,), removed=("☃",))


def test_prepare_text_can_skip_normalisation() -> None:
    prepared = prepare_text("Custa R$ 10 “já”.", VOCAB, normalize_text=False, **REFERENCE)
    assert prepared == PreparedText(text='Custa R "já".', chunks=('Custa R "já".',), removed=("$", "0", "1"))


def test_prepare_text_budget_uses_the_prepared_reference() -> None:
    long_text = " ".join(["Esta é uma frase de teste com algumas palavras."] * 20)
    prepared = prepare_text(long_text, VOCAB, **REFERENCE)
    reference, _ = fit_to_vocab(normalize(REFERENCE["ref_text"]), VOCAB)
    budget = chunk_budget_bytes(reference, REFERENCE["ref_audio_seconds"], REFERENCE["speed"])
    assert list(prepared.chunks) == chunk_text(prepared.text, budget)
    assert len(prepared.chunks) > 1
    assert " ".join(prepared.chunks) == prepared.text


def test_prepared_text_is_frozen() -> None:
    prepared = prepare_text("Olá.", VOCAB, **REFERENCE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        prepared.text = "outro"  # type: ignore[misc]


def test_empty_text_prepares_to_nothing() -> None:
    assert prepare_text("  ☃ ", VOCAB, **REFERENCE) == PreparedText(text="", chunks=(), removed=("☃",))


def test_the_text_package_imports_without_torch_or_f5_tts() -> None:
    # Blocking the modules makes any import of them fail loudly inside the child interpreter.
    script = (
        "import sys\n"
        "sys.modules['torch'] = None\n"
        "sys.modules['f5_tts'] = None\n"
        "from ptbr_model.text import normalize, fit_to_vocab, chunk_text, chunk_budget_bytes, prepare_text, "
        "PreparedText, load_vocab\n"
        "assert normalize('2 casas') == 'duas casas'\n"
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr
