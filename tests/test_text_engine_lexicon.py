"""The lexicon threaded through the synthesizer (tiny demo model on the CPU): the built-in one by default, a
lexicon given at load (PTBR_LEXICON_FILE's), and a request's pronunciations over both, for the text and for the
reference transcript alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ptbr_model import f5, store
from ptbr_model.demo import write_demo_files
from ptbr_model.engine import SynthesisOptions, Synthesizer
from ptbr_model.text import Lexicon, load_lexicon
from signals import voice_like

FAST = {"nfe_step": 2, "seed": 7}


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> store.StoredModel:
    workdir = tmp_path_factory.mktemp("lexicon-demo")
    checkpoint, vocoder_dir = write_demo_files(workdir)
    options = store.ImportOptions(checkpoint, "demo", f5.shipped_vocab_path(), vocoder_dir, store_dtype="float32",
                                  name="lexicon-test", demo=True)
    return store.load_stored(store.import_checkpoint(options))


@pytest.fixture(scope="module")
def engine(stored: store.StoredModel) -> Synthesizer:
    return Synthesizer.load(stored, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def wave() -> np.ndarray:
    return voice_like(seconds=2.0)


def test_the_builtin_lexicon_is_the_default(engine: Synthesizer, wave: np.ndarray) -> None:
    assert engine.lexicon_for() is Lexicon.builtin()
    reference = engine.make_reference(wave, "Eu vi o show.")
    assert reference.text.startswith("Eu vi o xou.")
    result = engine.synthesize("Baixe o app no YouTube.", reference, SynthesisOptions(**FAST))
    assert result.normalized_text == "Baixe o ép no Iutúbi."


def test_request_pronunciations_override_the_lexicon(engine: Synthesizer, wave: np.ndarray) -> None:
    pronunciations = (("show", "xôu"), ("Nubank", "nubânqui"))
    reference = engine.make_reference(wave, "Eu vi o show.", pronunciations=pronunciations)
    assert reference.text.startswith("Eu vi o xôu.")
    options = SynthesisOptions(pronunciations=pronunciations, **FAST)
    hash(options)  # still usable as a cache key
    result = engine.synthesize("O show do Nubank no YouTube.", reference, options)
    assert result.normalized_text == "O xôu do Nubânqui no Iutúbi."


def test_without_normalisation_no_lexicon_applies(engine: Synthesizer, wave: np.ndarray) -> None:
    reference = engine.make_reference(wave, "Eu vi o show.", normalize_text=False)
    options = SynthesisOptions(normalize_text=False, pronunciations=(("show", "xôu"),), **FAST)
    result = engine.synthesize("O show.", reference, options)
    assert result.normalized_text == "O show."


def test_a_lexicon_file_given_at_load_is_used(stored: store.StoredModel, wave: np.ndarray, tmp_path: Path) -> None:
    path = tmp_path / "lexicon.tsv"
    path.write_text("show\tchou\nNubank\tnubanque\n", encoding="utf-8")
    engine = Synthesizer.load(stored, device="cpu", dtype="float32", lexicon=load_lexicon(path))
    reference = engine.make_reference(wave, "Eu vi o show.")
    result = engine.synthesize("O show do Nubank no YouTube.", reference, SynthesisOptions(**FAST))
    assert result.normalized_text == "O chou do Nubanque no Iutúbi."
    options = SynthesisOptions(pronunciations=(("nubank", "nubânqui"),), **FAST)
    assert engine.synthesize("O Nubank.", reference, options).normalized_text == "O Nubânqui."
