"""The split sampler equals upstream's CFM.sample (same ops, same grid, same noise)."""

from __future__ import annotations

import pytest
import torch

from ptbr_model import f5
from ptbr_model.text import vocab_indices
from ptbr_model.demo import DEMO_ARCH
from ptbr_model.sampler import sample_mel


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    vocab = vocab_indices(f5.shipped_vocab_path())
    cfm = f5.build_cfm({**DEMO_ARCH, "text_num_embeds": len(vocab)}, f5.MEL_DEFAULTS, vocab_char_map=vocab)
    with torch.no_grad():
        for parameter in cfm.parameters():
            if torch.count_nonzero(parameter) == 0:
                parameter.normal_(0.0, 0.02)
    return cfm.eval()


@pytest.mark.parametrize("steps,cfg,sway,dtype", [
    (16, 2.0, -1.0, torch.float32),   # EPSS grid
    (7, 2.0, -1.0, torch.float32),    # EPSS grid, the fast preset
    (9, 2.0, None, torch.float32),    # uniform grid, no sway
    (4, 0.0, -1.0, torch.float32),    # no guidance: single forward per step
    (16, 2.0, -1.0, torch.float16),
])
def test_sample_mel_equals_cfm_sample(model, steps, cfg, sway, dtype):
    model = model.to(dtype)
    torch.manual_seed(1)
    wave = 0.1 * torch.randn(1, 24000)
    text = f5.to_model_text(["Referência de teste.  Olá, mundo!"])
    expected, _ = model.sample(cond=wave, text=text, duration=160, steps=steps, cfg_strength=cfg,
                               sway_sampling_coef=sway, seed=5)
    actual = sample_mel(model, wave, text, 160, steps=steps, cfg_strength=cfg, sway_sampling_coef=sway, seed=5)
    assert actual.shape == expected.shape == (1, 160, 100)
    assert actual.dtype == dtype
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def test_duration_grows_to_fit_the_text(model):
    model = model.to(torch.float32)
    wave = 0.1 * torch.randn(1, 2400)  # ~10 frames of reference
    text = f5.to_model_text(["x" * 50])
    mel = sample_mel(model, wave, text, 5, steps=2, cfg_strength=2.0, sway_sampling_coef=-1.0, seed=0)
    assert mel.shape[1] == 51  # at least text length + 1, as CFM.sample
