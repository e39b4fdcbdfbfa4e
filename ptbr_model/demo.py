"""The demo model: a tiny, randomly initialised F5 model and vocos vocoder built with the real classes and the
real vocabulary, so the whole service runs (and is tested) where no real weights can be downloaded.

It sounds like noise. It is deterministic: the same package versions give byte-identical files, hence the same
store tag, so ``import_model.py --demo`` is idempotent like any other import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml

from ptbr_model import f5
from ptbr_model.text import vocab_indices

DEMO_SEED = 0
# Small enough to import in seconds and synthesise on 2 CPU cores; every structural feature of the real model
# (text conv blocks, position-embedded head, several blocks) is present.
DEMO_ARCH: dict[str, Any] = {
    "dim": 64,
    "depth": 2,
    "heads": 2,
    "dim_head": 32,
    "ff_mult": 2,
    "mel_dim": 100,
    "text_dim": 32,
    "conv_layers": 1,
    "text_mask_padding": False,
    "pe_attn_head": 1,
    "qk_norm": None,
    "long_skip_connection": False,
}
DEMO_VOCOS_CONFIG: dict[str, Any] = {
    "feature_extractor": {
        "class_path": "vocos.feature_extractors.MelSpectrogramFeatures",
        "init_args": {"sample_rate": 24000, "n_fft": 1024, "hop_length": 256, "n_mels": 100, "padding": "center"},
    },
    "backbone": {
        "class_path": "vocos.models.VocosBackbone",
        "init_args": {"input_channels": 100, "dim": 32, "intermediate_dim": 64, "num_layers": 2},
    },
    "head": {
        "class_path": "vocos.heads.ISTFTHead",
        "init_args": {"dim": 32, "n_fft": 1024, "hop_length": 256, "padding": "same"},  # as vocos-mel-24khz
    },
}


def write_demo_files(directory: Path, vocab_path: Path | None = None) -> tuple[Path, Path]:
    """Write ``demo_model.safetensors`` and a ``vocoder/`` folder; returns (checkpoint, vocoder_dir)."""
    from safetensors.torch import save_file

    vocab = vocab_indices(vocab_path or f5.shipped_vocab_path())
    torch.manual_seed(DEMO_SEED)
    model = f5.build_cfm({**DEMO_ARCH, "text_num_embeds": len(vocab)}, f5.MEL_DEFAULTS)
    # Upstream zero-initialises the output projections (a trained model never has them at zero); with zeros the
    # flow is constant and the output ignores the text. Give them small random values so outputs depend on input.
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if torch.count_nonzero(parameter) == 0:
                parameter.normal_(0.0, 0.02)
    state = {key: value.contiguous() for key, value in model.state_dict().items() if not key.startswith("mel_spec.")}
    checkpoint = directory / "demo_model.safetensors"
    save_file(state, str(checkpoint))

    vocoder_dir = directory / "vocoder"
    vocoder_dir.mkdir(parents=True, exist_ok=True)
    (vocoder_dir / "config.yaml").write_text(yaml.safe_dump(DEMO_VOCOS_CONFIG, sort_keys=True))
    torch.manual_seed(DEMO_SEED)
    from vocos import Vocos

    vocoder = Vocos.from_hparams(str(vocoder_dir / "config.yaml"))
    torch.save(vocoder.state_dict(), vocoder_dir / "pytorch_model.bin")
    return checkpoint, vocoder_dir
