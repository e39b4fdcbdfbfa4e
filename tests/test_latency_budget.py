"""The latency budget: exact FLOPs from shapes (checked against FlopCounterMode), the latency model (fit, moving
average), the step choice, and the engine using them. No timed assertion: the choice logic is checked on a known
rate, and the engine's own prediction error is reported, not bounded (CPU timings here are shared and noisy)."""

from __future__ import annotations

import math

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from ptbr_model import cost, f5, store
from ptbr_model.bench_workloads import WORKLOADS, reference_transcript
from ptbr_model.cost import (
    NFE_CANDIDATES,
    CostModel,
    DitShape,
    LatencyModel,
    Observation,
    Work,
    attention_flops,
    choose_nfe,
    dit_forward_flops,
    text_embed_flops,
)
from ptbr_model.demo import DEMO_ARCH, write_demo_files
from ptbr_model.engine import SynthesisOptions, Synthesizer, load_checked
from ptbr_model.settings import Settings, resolve_latency_budget
from signals import voice_like

# The pt-BR checkpoint's DiT (F5TTS_Base) and the shipped vocab size.
REAL_ARCH = {"dim": 1024, "depth": 22, "heads": 16, "dim_head": 64, "ff_mult": 2, "mel_dim": 100, "text_dim": 512,
             "conv_layers": 4, "text_mask_padding": False, "pe_attn_head": 1, "qk_norm": None,
             "long_skip_connection": False, "text_num_embeds": 2545}


def _cpu_attention(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def counter() -> FlopCounterMode:
    # PyTorch has no formula for the CPU's fused attention op; give it the generic one (as scripts/benchmark.py).
    return FlopCounterMode(display=False,
                           custom_mapping={torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention})


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> store.StoredModel:
    checkpoint, vocoder_dir = write_demo_files(tmp_path_factory.mktemp("budget-demo"))
    options = store.ImportOptions(checkpoint, "demo", f5.shipped_vocab_path(), vocoder_dir, store_dtype="float32",
                                  name="budget-test", demo=True)
    return store.load_stored(store.import_checkpoint(options))


@pytest.fixture(scope="module")
def engine(stored) -> Synthesizer:
    return load_checked(stored, "cpu", "float32")  # warm-up and latency calibration, as the service loads


@pytest.fixture(scope="module")
def reference(engine):
    return engine.make_reference(voice_like(6.0), reference_transcript(6.0))


# --- FLOPs -------------------------------------------------------------------------------------------------------


def _dit_calls(transformer, frames: int, text_len: int, cfg: bool) -> tuple[int, int]:
    """FLOPs of the first call of a chunk (fills the text cache) and of a later one, as the sampler calls the DiT."""
    x = torch.zeros(1, frames, 100)
    text = torch.zeros(1, text_len, dtype=torch.long)
    t = torch.zeros(())
    counts = []
    transformer.clear_cache()
    for _ in range(2):
        with counter() as flops:
            if cfg:
                transformer(x=x, cond=x, text=text, time=t, cfg_infer=True, cache=True)
            else:
                transformer(x=x, cond=x, text=text, time=t, cache=True)
        counts.append(flops.get_total_flops())
    transformer.clear_cache()
    return counts[0], counts[1]


@pytest.mark.parametrize("arch", [DEMO_ARCH, REAL_ARCH], ids=["demo", "real-size"])
@pytest.mark.parametrize("frames,text_len,cfg", [(300, 120, True), (777, 900, True), (500, 40, False)])
def test_dit_formula_equals_flop_counter(arch, frames, text_len, cfg):
    """On fake tensors (shapes only): a real-size forward is counted in about a second, with no memory."""
    with FakeTensorMode():
        transformer = f5.build_cfm({**arch, "text_num_embeds": 2545}, f5.MEL_DEFAULTS).transformer
        first, later = _dit_calls(transformer, frames, text_len, cfg)
    shape = DitShape.from_arch(arch)
    step = dit_forward_flops(shape, frames, cfg=cfg)
    assert 0 < attention_flops(shape, frames, cfg=cfg) < step
    text = text_embed_flops(shape, frames)
    if cfg:  # the text embedding of both passes is computed once, then cached
        assert later == step and first == step + 2 * text
    else:  # without CFG upstream's DiT re-embeds the text at every step
        assert later == first == step + text


def test_vocoder_and_mel_formulas_equal_flop_counter(engine):
    frames = 123
    with counter() as flops, torch.inference_mode():
        engine.vocoder.decode(torch.zeros(1, 100, frames))
    assert flops.get_total_flops() == frames * engine.cost_model.vocoder_frame_flops > 0
    samples = 24000 * 3 + 77
    with counter() as flops, torch.inference_mode():
        mel = engine.model.mel_spec(torch.zeros(1, samples))
    assert mel.shape[-1] == cost.mel_frames(samples, 256)
    assert flops.get_total_flops() == cost.mel_flops(samples, engine.stored.mel) > 0


@pytest.mark.parametrize("cfg_strength", [2.0, 0.0])
def test_a_plans_flops_equal_a_counted_synthesis(engine, reference, cfg_strength):
    """Every chunk's sequence length is known before sampling; the plan's FLOPs are what the synthesis runs."""
    options = SynthesisOptions(nfe_step=3, seed=0, cfg_strength=cfg_strength)
    text = WORKLOADS["paragraph"].text
    plan = engine.plan(text, reference, options)
    with counter() as flops:
        result = engine.synthesize(text, reference, options)
    assert len(plan.chunks) > 1 and result.chunks == list(plan.chunks)
    assert plan.flops == result.flops == flops.get_total_flops()


# --- the latency model -------------------------------------------------------------------------------------------


WORKS = [Work(int(0.3e12), int(0.02e12), 2, 1), Work(int(0.9e12), int(0.06e12), 6, 1),
         Work(int(1.9e12), int(0.3e12), 2, 1), Work(int(2.2e12), int(0.9e12), 2, 1), Work(int(5e12), int(1e12), 32, 3)]


def test_fit_recovers_flops_steps_and_chunks():
    truth = LatencyModel(seconds_per_flop=1 / 2e12, seconds_per_attention_flop=1 / 2e12, seconds_per_step=0.004,
                         seconds_per_chunk=0.02)
    fitted = LatencyModel.fit(Observation(work, truth.predict(work)) for work in WORKS)
    for name in ("seconds_per_flop", "seconds_per_attention_flop", "seconds_per_step", "seconds_per_chunk"):
        assert getattr(fitted, name) == pytest.approx(getattr(truth, name), rel=1e-6), name


def test_fit_sees_slow_attention():
    """Attention four times slower than the GEMMs (a CPU, a Pascal card's memory-efficient kernel)."""
    truth = LatencyModel(seconds_per_flop=1 / 2e12, seconds_per_attention_flop=1 / 0.5e12, seconds_per_step=0.004,
                         seconds_per_chunk=0.02)
    fitted = LatencyModel.fit(Observation(work, truth.predict(work)) for work in WORKS)
    for name in ("seconds_per_flop", "seconds_per_attention_flop", "seconds_per_step", "seconds_per_chunk"):
        assert getattr(fitted, name) == pytest.approx(getattr(truth, name), rel=1e-6), name


def test_fit_never_gives_a_negative_term():
    # Timings that would need a negative per-chunk term (noise): that term is dropped, the rest refitted.
    points = [Observation(Work(int(1e12), 0, 2, 1), 0.1), Observation(Work(int(1e12), 0, 6, 1), 0.3),
              Observation(Work(int(2e12), 0, 2, 1), 0.25)]
    fitted = LatencyModel.fit(points)
    terms = (fitted.seconds_per_flop, fitted.seconds_per_attention_flop, fitted.seconds_per_step,
             fitted.seconds_per_chunk)
    assert min(terms) >= 0 and fitted.seconds_per_flop > 0
    assert fitted.seconds_per_attention_flop == fitted.seconds_per_flop  # no attention seen: the GEMM rate


def test_the_moving_average_follows_the_device_and_bounds_one_outlier():
    model = LatencyModel.from_flop_rate(1e12)
    work = Work(int(1e12), int(0.1e12), 16, 1)
    model.observe(work, 2.0)  # twice as slow as predicted
    assert model.scale == pytest.approx(1.2) and model.observations == 1
    for _ in range(40):
        model.observe(work, 2.0)
    assert model.predict(work) == pytest.approx(2.0, rel=0.01)
    before = model.scale
    model.observe(work, 1000.0)  # one absurd request moves it at most by the bounded step
    assert model.scale == pytest.approx(before * (1 + cost.EMA_WEIGHT * (cost.EMA_MAX_STEP - 1)))
    assert model.history[-1] == pytest.approx(model.base_seconds(work) * before / 1000.0 - 1)


# --- choosing the steps ------------------------------------------------------------------------------------------


def sentence_cost(reference_seconds: float) -> cost.RequestCost:
    """The benchmark sentence (≈ 390 generated frames) after a reference of ``reference_seconds``, real size."""
    model = CostModel(DitShape.from_arch(REAL_ARCH), vocoder_frame_flops=10_000_000, mel=f5.MEL_DEFAULTS)
    ref_frames = int(reference_seconds * 24000) // 256
    return model.request_cost([(ref_frames + 390, 390)], int(reference_seconds * 24000), cfg=True)


def test_the_largest_step_count_that_fits_is_chosen():
    latency = LatencyModel.from_flop_rate(1.5e12)  # the 1050 Ti estimate
    request = sentence_cost(6.0)
    for budget in (0.5, 5.0, 8.0, 10.0, 15.0, 40.0):
        step, predicted = choose_nfe(request, latency, budget, ceiling=32)
        fitting = [s for s in NFE_CANDIDATES if latency.predict_request(request, s) <= budget]
        assert step == (max(fitting) if fitting else min(NFE_CANDIDATES))
        assert predicted == pytest.approx(latency.predict_request(request, step))
    assert choose_nfe(request, latency, 10.0, ceiling=32)[0] == 16  # ≈ 9.5 s: the seed's sentence target


def test_longer_references_get_fewer_steps_under_the_same_budget():
    latency = LatencyModel.from_flop_rate(1.5e12)
    picks = [choose_nfe(sentence_cost(seconds), latency, 10.0, ceiling=16)[0] for seconds in (3, 6, 9, 12)]
    assert picks == sorted(picks, reverse=True) and picks[0] == 16 and picks[-1] < 16


def test_the_budget_never_raises_the_steps_and_a_custom_ceiling_is_a_candidate():
    latency = LatencyModel.from_flop_rate(1e18)  # everything fits
    request = sentence_cost(6.0)
    assert choose_nfe(request, latency, 10.0, ceiling=16)[0] == 16
    assert choose_nfe(request, latency, 10.0, ceiling=20)[0] == 20
    assert choose_nfe(request, latency, 10.0, ceiling=4)[0] == 4
    slow = LatencyModel.from_flop_rate(1.0)  # nothing fits: the fewest steps, never a refusal
    assert choose_nfe(request, slow, 10.0, ceiling=32)[0] == 7


# --- the engine --------------------------------------------------------------------------------------------------


def test_the_warm_up_calibrates_and_every_result_carries_a_prediction(engine, reference):
    assert engine.latency is not None and engine.latency.flop_rate > 0
    observed = engine.latency.observations
    options = SynthesisOptions(nfe_step=4, seed=0)
    result = engine.synthesize(WORKLOADS["sentence"].text, reference, options)
    assert result.nfe_step == 4 and result.predicted_seconds is not None and result.predicted_seconds > 0
    assert engine.latency.observations == observed + 1  # the request taught the moving average
    error = result.predicted_seconds / result.elapsed_seconds - 1
    print(f"CPU demo model: predicted {result.predicted_seconds:.3f} s, took {result.elapsed_seconds:.3f} s "
          f"({error:+.0%})")
    assert math.isfinite(error)


def test_the_engine_meets_a_budget_with_a_calibrated_rate(engine, reference):
    """A known rate in place of the measured one: the choice, not the clock, is under test."""
    measured = engine.latency
    text = WORKLOADS["paragraph"].text
    try:
        plan = engine.plan(text, reference, SynthesisOptions(nfe_step=32, seed=0))
        rate = plan.cost.flops(10) / 1.0  # 10 steps take exactly 1 s; 12 would take longer
        engine.latency = LatencyModel.from_flop_rate(rate)
        options = SynthesisOptions(nfe_step=32, seed=0, latency_budget_s=1.0)
        result = engine.synthesize(text, reference, options)
        assert result.nfe_step == 10 and result.predicted_seconds == pytest.approx(1.0)
        assert result.flops == plan.cost.flops(10)
        # Without a budget the steps asked for run even when predicted over 1 s (12, not 32: the same case for a
        # third of the sampling time).
        no_budget = engine.synthesize(text, reference, SynthesisOptions(nfe_step=12, seed=0))
        assert no_budget.nfe_step == 12 and no_budget.predicted_seconds > 1.0
        capped = engine.synthesize(text, reference, SynthesisOptions(nfe_step=7, seed=0, latency_budget_s=1.0))
        assert capped.nfe_step == 7  # the budget lowers the steps, it never raises them
    finally:
        engine.latency = measured


def test_without_calibration_the_budget_is_ignored(stored, reference, caplog):
    engine = Synthesizer.load(stored, device="cpu", dtype="float32")  # no warm-up: no latency model
    with caplog.at_level("WARNING", logger="ptbr.engine"):
        result = engine.synthesize("Olá, tudo bem?", reference, SynthesisOptions(nfe_step=4, latency_budget_s=0.001))
    assert result.nfe_step == 4 and result.predicted_seconds is None
    assert "latency budget ignored" in caplog.text


def test_settings_and_the_request_field(monkeypatch):
    monkeypatch.delenv("PTBR_LATENCY_BUDGET_S", raising=False)
    settings = Settings()
    assert settings.latency_budget_s is None
    assert resolve_latency_budget(settings, None, None) is None
    assert resolve_latency_budget(settings, 3.0, None) == 3.0
    monkeypatch.setenv("PTBR_LATENCY_BUDGET_S", "10")
    settings = Settings()
    assert resolve_latency_budget(settings, None, None) == 10.0
    assert resolve_latency_budget(settings, 2.5, None) == 2.5
    assert resolve_latency_budget(settings, 2.5, 16) is None  # an explicit nfe_step wins
    for bad in ("0", "-1", "4000"):
        monkeypatch.setenv("PTBR_LATENCY_BUDGET_S", bad)
        with pytest.raises(ValueError):
            Settings()


def test_the_planned_sequence_lengths_are_the_samplers(engine):
    """The plan's sequence length is CFM.sample's, growth to fit the text included: a fast talker's transcript (the
    12 s one on 1.5 s of audio) makes the text longer than upstream's duration rule."""
    import ptbr_model.sampler as sampler

    reference = engine.make_reference(voice_like(1.5), reference_transcript(12.0))
    options = SynthesisOptions(nfe_step=2, seed=0)
    text = WORKLOADS["paragraph"].text
    plan = engine.plan(text, reference, options)
    seen = []

    original = sampler.prepare_inputs

    def recording(*args, **kwargs):
        inputs = original(*args, **kwargs)
        seen.append(inputs.duration)
        return inputs

    sampler.prepare_inputs = recording
    try:
        engine.synthesize(text, reference, options)
    finally:
        sampler.prepare_inputs = original
    assert seen == [work.frames for work in plan.work]
    assert all(work.frames > work.duration for work in plan.work)  # the text, not the rule, set the length


# --- CUDA-graph captures -----------------------------------------------------------------------------------------


def test_the_graph_cache_tells_which_lengths_will_capture():
    from ptbr_model.sampler import StepGraphCache

    cache = StepGraphCache(capacity=2)
    cache._graphs[(100, 2.0)] = object()  # two cached lengths (least recently used first); no GPU needed to ask
    cache._graphs[(200, 2.0)] = object()
    assert cache.would_capture([100, 200], 2.0) == [False, False]
    assert cache.would_capture([100, 200], 0.0) == [True, True]  # another guidance is another graph
    # 300 evicts 100 (least recent); 100 then captures again and evicts 200
    assert cache.would_capture([300, 100, 200], 2.0) == [True, True, True]
    assert cache.would_capture([200, 300, 200], 2.0) == [False, True, False]
    assert len(cache) == 2  # asking changed nothing
    fresh = cache.fresh()
    assert len(fresh) == 0 and fresh.capacity == 2


def test_capture_terms_are_fitted_and_priced():
    truth_per_capture, truth_per_flop = 0.03, 1 / 50e12
    points = [(Work(0, 0, 2, 1, 1, flops), truth_per_capture + flops * truth_per_flop) for flops in (2e11, 9e11)]
    model = LatencyModel.from_flop_rate(1e12)
    model.fit_captures(points + [(Work(0, 0, 2, 1), 5.0)])  # a run that captured nothing says nothing
    assert model.seconds_per_capture == pytest.approx(truth_per_capture)
    assert model.seconds_per_capture_flop == pytest.approx(truth_per_flop)
    single = LatencyModel.from_flop_rate(1e12)
    single.fit_captures(points[:1])
    assert single.seconds_per_capture == 0  # one point cannot separate two terms: left unset


def test_a_plan_prices_the_captures_its_lengths_need(engine, reference):
    import dataclasses

    from ptbr_model.sampler import StepGraphCache

    graphs = dataclasses.replace(engine, step_graphs=StepGraphCache(capacity=8),
                                 latency=dataclasses.replace(engine.latency, seconds_per_capture=0.5))
    options = SynthesisOptions(nfe_step=4, seed=0)
    plan = graphs.plan(WORKLOADS["paragraph"].text, reference, options)
    assert plan.captures == (True,) * len(plan.chunks)
    without = engine.plan(WORKLOADS["paragraph"].text, reference, options)
    assert without.captures is None
    scale = graphs.latency.scale  # copied from the engine's, as the rest of its terms
    assert plan.predicted_seconds == pytest.approx(without.predicted_seconds + 0.5 * len(plan.chunks) * scale)
