"""Engine: parity with upstream's pipeline, determinism, the duration rule, OOM handling and FP16 fallback."""

from __future__ import annotations

import concurrent.futures
import functools
from pathlib import Path

import numpy as np
import pytest
import torch

from ptbr_model import f5, store
from ptbr_model.demo import write_demo_files
from ptbr_model.engine import (
    DeviceOutOfMemory,
    NothingToSay,
    SynthesisOptions,
    Synthesizer,
    cross_fade_concat,
    load_checked,
    reference_text_for_model,
)
from signals import voice_like

PARITY_TOLERANCE = 1e-4
TRANSCRIPT = "Este é um teste de referência."


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> store.StoredModel:
    workdir = tmp_path_factory.mktemp("engine-demo")
    checkpoint, vocoder_dir = write_demo_files(workdir)
    options = store.ImportOptions(checkpoint, "demo", f5.shipped_vocab_path(), vocoder_dir, store_dtype="float32",
                                  name="engine-test", demo=True)
    return store.load_stored(store.import_checkpoint(options))


@pytest.fixture(scope="module")
def engine(stored: store.StoredModel) -> Synthesizer:
    return Synthesizer.load(stored, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def reference_wave() -> np.ndarray:
    return voice_like(seconds=2.5)


def upstream_waveform(engine: Synthesizer, raw_wave: np.ndarray, ref_text: str, chunks: list[str],
                      options: SynthesisOptions, monkeypatch: pytest.MonkeyPatch) -> np.ndarray:
    """Upstream's infer_batch_process on the same model objects. Its thread pool would draw the chunks' noise in
    a racy order, so it runs with one worker, and each sample() call gets the seed our engine gives that chunk."""
    utils_infer = f5.upstream_module("infer.utils_infer")
    monkeypatch.setattr(utils_infer, "ThreadPoolExecutor",
                        functools.partial(concurrent.futures.ThreadPoolExecutor, max_workers=1))
    calls = iter(range(len(chunks)))
    original_sample = engine.model.sample

    def seeded_sample(*args, **kwargs):
        return original_sample(*args, seed=options.seed + next(calls), **kwargs)

    monkeypatch.setattr(engine.model, "sample", seeded_sample)
    try:
        wave, sample_rate, _ = next(f5.upstream_infer_batch_process(
            (torch.from_numpy(raw_wave).unsqueeze(0), engine.sample_rate), ref_text, chunks, engine.model,
            engine.vocoder, mel_spec_type="vocos", progress=None, target_rms=engine.target_rms,
            cross_fade_duration=options.cross_fade_duration, nfe_step=options.nfe_step,
            cfg_strength=options.cfg_strength, sway_sampling_coef=options.sway_sampling_coef, speed=options.speed,
            device="cpu",
        ))
    finally:
        monkeypatch.undo()
    assert sample_rate == engine.sample_rate
    return np.asarray(wave, dtype=np.float32)


@pytest.mark.parametrize("chunks", [
    ["Uma frase curta para comparar."],
    ["Primeira parte do texto,", "e a segunda parte, um pouco mais longa que a primeira.", "Fim."],
])
def test_engine_matches_upstream_infer_batch_process(engine, reference_wave, chunks, monkeypatch):
    options = SynthesisOptions(nfe_step=8, seed=1234, normalize_text=False)
    reference = engine.make_reference(reference_wave, TRANSCRIPT, normalize_text=False)
    ours = cross_fade_concat(list(engine.iter_chunk_waves(reference, chunks, options, options.seed)),
                             int(options.cross_fade_duration * engine.sample_rate))
    # upstream's preprocess_ref_audio_text turns the transcript into "….  " itself; we hand it its input form
    theirs = upstream_waveform(engine, reference_wave, TRANSCRIPT + " ", chunks, options, monkeypatch)
    assert ours.shape == theirs.shape
    assert float(np.max(np.abs(ours - theirs))) < PARITY_TOLERANCE


def test_reference_text_gets_upstreams_punctuation():
    assert reference_text_for_model("Olá mundo") == "Olá mundo.  "
    assert reference_text_for_model("Olá mundo.") == "Olá mundo.  "
    assert reference_text_for_model("Olá mundo!") == "Olá mundo!.  "


def test_same_seed_same_audio_other_seed_other_audio(engine, reference_wave):
    reference = engine.make_reference(reference_wave, TRANSCRIPT)
    first = engine.synthesize("Bom dia, tudo bem?", reference, SynthesisOptions(nfe_step=4, seed=42))
    again = engine.synthesize("Bom dia, tudo bem?", reference, SynthesisOptions(nfe_step=4, seed=42))
    other = engine.synthesize("Bom dia, tudo bem?", reference, SynthesisOptions(nfe_step=4, seed=43))
    assert first.seed == 42
    np.testing.assert_array_equal(first.wave, again.wave)
    assert not np.array_equal(first.wave, other.wave)


def test_a_seed_is_drawn_and_reported_when_none_is_given(engine, reference_wave):
    reference = engine.make_reference(reference_wave, TRANSCRIPT)
    result = engine.synthesize("Olá.", reference, SynthesisOptions(nfe_step=2))
    assert 0 <= result.seed <= 2**31 - 1
    replay = engine.synthesize("Olá.", reference, SynthesisOptions(nfe_step=2, seed=result.seed))
    np.testing.assert_array_equal(result.wave, replay.wave)


def test_duration_follows_upstreams_rule(engine, reference_wave):
    reference = engine.make_reference(reference_wave, TRANSCRIPT, normalize_text=False)
    chunk = "Uma frase com alguns bytes a mais."
    hop = engine.stored.mel["hop_length"]
    ref_frames = reference.wave.shape[-1] // hop
    expected_frames = int(ref_frames / len(reference.text.encode()) * len(chunk.encode()) / 1.5)
    options = SynthesisOptions(nfe_step=2, seed=0, speed=1.5, normalize_text=False)
    (wave,) = engine.iter_chunk_waves(reference, [chunk], options, 0)
    assert len(wave) == expected_frames * hop


def test_text_with_nothing_speakable_is_refused(engine, reference_wave):
    reference = engine.make_reference(reference_wave, TRANSCRIPT)
    with pytest.raises(NothingToSay):
        engine.synthesize("😀😀 ✨", reference, SynthesisOptions(nfe_step=2, seed=0))


def test_a_sequence_longer_than_the_models_position_table_is_refused_before_any_work(engine, reference_wave):
    """The text embedding's sinusoidal table (8192 frames in f5-tts 1.1.22, ≈ 87 s) bounds reference + speech;
    past it the DiT failed with a RuntimeError deep inside (a 500). Now it is a clear refusal naming the field."""
    from ptbr_model import f5
    from ptbr_model.engine import TooLongForModel

    reference = engine.make_reference(reference_wave, TRANSCRIPT)
    limit_s = f5.max_sequence_frames(engine.model) * engine.stored.mel["hop_length"] / engine.sample_rate
    with pytest.raises(TooLongForModel, match="at most") as refused:
        engine.plan("Uma frase curta.", reference, SynthesisOptions(nfe_step=2, seed=0, duration=limit_s))
    assert refused.value.field == "duration"
    engine.plan("Uma frase curta.", reference, SynthesisOptions(nfe_step=2, seed=0, duration=limit_s - 10))
    with pytest.raises(TooLongForModel) as refused:  # slow speech after a reference: the chunk outgrows the table
        engine.plan("Uma frase " * 12, reference, SynthesisOptions(nfe_step=2, seed=0, speed=0.01))
    assert refused.value.field == "reference_audio"


def test_out_of_memory_is_reported_and_the_next_request_succeeds(engine, reference_wave, monkeypatch):
    """No GPU here: the sampler raises what CUDA raises, once."""
    import ptbr_model.engine as engine_module

    reference = engine.make_reference(reference_wave, TRANSCRIPT)
    original = engine_module.sample_mel
    calls = {"n": 0}

    def fails_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(*args, **kwargs)

    monkeypatch.setattr(engine_module, "sample_mel", fails_once)
    with pytest.raises(DeviceOutOfMemory, match="out of memory"):
        engine.synthesize("Olá, mundo.", reference, SynthesisOptions(nfe_step=2, seed=1))
    result = engine.synthesize("Olá, mundo.", reference, SynthesisOptions(nfe_step=2, seed=1))
    assert len(result.wave) > 0 and np.isfinite(result.wave).all()


def test_weights_are_loaded_cast_and_finite(engine, stored):
    params = dict(engine.model.named_parameters())
    stored_weights = store.read_stored_weights(stored)
    for key, value in stored_weights.items():
        if key in params:
            torch.testing.assert_close(params[key].detach(), value.to(params[key].dtype))
    assert all(p.dtype == torch.float32 for p in engine.model.parameters())
    assert all(p.dtype == torch.float32 for p in engine.vocoder.parameters())
    assert engine.warm_up()


def test_fp16_non_finite_warm_up_falls_back_to_float32(stored, monkeypatch):
    """A GPU's FP16 overflow cannot happen here; the warm-up verdict is what the fallback acts on."""
    monkeypatch.setattr(Synthesizer, "warm_up", lambda self, nfe_step=4: self.dtype != torch.float16)
    fallbacks = []
    synthesizer = load_checked(stored, "cpu", "float16", on_fp16_fallback=lambda: fallbacks.append(1))
    assert synthesizer.dtype == torch.float32
    assert fallbacks == [1]


def test_float16_model_runs_on_cpu_and_is_finite(stored, reference_wave):
    half = Synthesizer.load(stored, device="cpu", dtype="float16")
    assert all(p.dtype == torch.float16 for p in half.model.parameters())
    reference = half.make_reference(reference_wave, TRANSCRIPT)
    result = half.synthesize("Teste em meia precisão.", reference, SynthesisOptions(nfe_step=2, seed=3))
    assert np.isfinite(result.wave).all()


def test_block_compilation_is_skipped_off_cuda_and_undoable(stored):
    """torch.compile needs Triton on a CUDA GPU of compute capability 7.0+; elsewhere blocks stay as they are."""
    from ptbr_model.engine import compile_dit_blocks, plain_dit_blocks

    synthesizer = Synthesizer.load(stored, device="cpu", dtype="float32", compile_blocks=True)
    blocks = list(synthesizer.model.transformer.transformer_blocks)
    assert not compile_dit_blocks(synthesizer.model.transformer, torch.device("cpu"))
    assert list(synthesizer.model.transformer.transformer_blocks) == blocks
    wrapped = torch.compile(blocks[0], dynamic=True)  # wrapping alone compiles nothing
    synthesizer.model.transformer.transformer_blocks[0] = wrapped
    plain_dit_blocks(synthesizer.model.transformer)
    assert synthesizer.model.transformer.transformer_blocks[0] is blocks[0]


def test_a_failing_compiled_warm_up_falls_back_to_plain_blocks(stored, monkeypatch, caplog):
    """Triton failing on a GPU (no C compiler in the image) cannot happen here: compilation is forced on the CPU
    (wrapping compiles nothing yet) and the first warm-up raises as Triton would."""
    import ptbr_model.engine as engine_module

    def wrap_blocks(transformer, device):
        for index, block in enumerate(transformer.transformer_blocks):
            transformer.transformer_blocks[index] = torch.compile(block, dynamic=True)
        return True

    monkeypatch.setattr(engine_module, "compile_decision", lambda mode, device: (mode != "false", "to compile"))
    monkeypatch.setattr(engine_module, "compile_dit_blocks", wrap_blocks)
    calls = {"n": 0}
    original = Synthesizer.warm_up

    def fails_first(self, nfe_step=4):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("triton: failed to find a C compiler")
        return original(self, nfe_step)

    monkeypatch.setattr(Synthesizer, "warm_up", fails_first)
    with caplog.at_level("INFO", logger="ptbr.engine"):
        synthesizer = load_checked(stored, "cpu", "float32", compile_blocks="auto")
    assert calls["n"] == 2
    assert not synthesizer.compiled
    assert not any(hasattr(block, "_orig_mod") for block in synthesizer.model.transformer.transformer_blocks)
    lines = [record for record in caplog.records if record.getMessage().startswith("DiT blocks:")]
    assert len(lines) == 1 and lines[0].levelname == "WARNING" and "C compiler" in lines[0].getMessage()
    with pytest.raises(RuntimeError, match="C compiler"):  # without compilation the same failure is a real one
        calls["n"] = 0
        load_checked(stored, "cpu", "float32", compile_blocks="false")
