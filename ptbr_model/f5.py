"""The one adapter to f5-tts: every import of the f5_tts package lives in this module.

Upstream quirks kept here so no other module sees them:
- ``f5_tts.model`` pulls the training stack (Trainer → accelerate, wandb, datasets) on import; we import the
  backbone and CFM modules lazily, inside functions, so importing ``ptbr_model`` stays cheap.
- ``f5_tts.infer.utils_infer`` picks a device, sets environment variables and imports matplotlib and
  transformers at import time; only the parity test and the benchmark import it (``upstream_infer``).
- Its vocab reader (``get_tokenizer``) cuts the last character of every line, so a vocab file without a final
  newline loses a symbol; ``read_vocab`` reproduces that exactly so indices match the checkpoint.
"""

from __future__ import annotations

import importlib.metadata
from importlib.resources import files
from pathlib import Path
from typing import Any

MEL_DEFAULTS: dict[str, Any] = {
    "target_sample_rate": 24000,
    "n_mel_channels": 100,
    "hop_length": 256,
    "win_length": 1024,
    "n_fft": 1024,
    "mel_spec_type": "vocos",
}


def f5_tts_version() -> str:
    return importlib.metadata.version("f5-tts")


def shipped_vocab_path() -> Path:
    """The vocab.txt that f5-tts ships (2545 symbols): the base models and the pt-BR fine-tune use it."""
    return Path(str(files("f5_tts").joinpath("infer/examples/vocab.txt")))


def read_vocab(path: str | Path) -> dict[str, int]:
    """Symbol → index exactly as upstream's ``get_tokenizer(path, "custom")`` builds it."""
    vocab: dict[str, int] = {}
    with open(path, encoding="utf-8") as handle:
        for index, line in enumerate(handle):
            vocab[line[:-1]] = index
    return vocab


def build_cfm(arch: dict[str, Any], mel: dict[str, Any], vocab_char_map: dict[str, int] | None = None):
    """Upstream's model object (CFM wrapping DiT) on the current default device; use ``torch.device('meta')``
    as a context to build it without allocating weights."""
    from f5_tts.model.backbones.dit import DiT
    from f5_tts.model.cfm import CFM

    transformer = DiT(**arch)
    return CFM(
        transformer=transformer,
        mel_spec_kwargs={
            "n_fft": mel["n_fft"],
            "hop_length": mel["hop_length"],
            "win_length": mel["win_length"],
            "n_mel_channels": mel["n_mel_channels"],
            "target_sample_rate": mel["target_sample_rate"],
            "mel_spec_type": mel["mel_spec_type"],
        },
        odeint_kwargs={"method": "euler"},
        vocab_char_map=vocab_char_map,
    )


def load_vocos(config_path: str | Path, weights_path: str | Path):
    """A vocos vocoder on the CPU in float32, loaded strictly (as upstream's ``load_vocoder(is_local=True)``)."""
    import torch
    from vocos import Vocos

    vocoder = Vocos.from_hparams(str(config_path))
    state_dict = torch.load(str(weights_path), map_location="cpu", weights_only=True)
    vocoder.load_state_dict(state_dict, strict=True)
    return vocoder.eval()
