"""The one adapter to f5-tts: every import of the f5_tts package lives in this module.

Upstream quirks kept here so no other module sees them:
- ``f5_tts.model`` pulls the training stack (Trainer → accelerate, wandb, datasets) on import; ``_model_classes``
  loads the backbone and CFM modules without it, lazily, so importing ``ptbr_model`` stays cheap.
- ``f5_tts.infer.utils_infer`` picks a device, sets environment variables and imports matplotlib and
  transformers at import time; only the parity test and the benchmark import it (``upstream_infer``).
- Its vocab reader (``get_tokenizer``) cuts the last character of every line; ``ptbr_model.text.vocab_indices``
  reproduces that exactly so indices match the checkpoint.
"""

from __future__ import annotations

import importlib.metadata
import sys
import types
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


def _model_classes():
    """CFM and DiT without running ``f5_tts/model/__init__.py``: it imports the Trainer (wandb, accelerate,
    datasets), which inference never uses and which costs about a second of every cold start. A bare package
    module stands in for it; CFM and DiT are set on it so ``from f5_tts.model import CFM`` (utils_infer) works."""
    if "f5_tts.model" not in sys.modules:
        import f5_tts

        package = types.ModuleType("f5_tts.model")
        package.__path__ = [str(Path(next(iter(f5_tts.__path__))) / "model")]  # a namespace package: no __file__
        package.__package__ = "f5_tts.model"
        sys.modules["f5_tts.model"] = package
    from f5_tts.model.backbones.dit import DiT
    from f5_tts.model.cfm import CFM

    package = sys.modules["f5_tts.model"]
    if not hasattr(package, "CFM"):
        package.CFM, package.DiT = CFM, DiT
    return CFM, DiT


def build_cfm(arch: dict[str, Any], mel: dict[str, Any], vocab_char_map: dict[str, int] | None = None):
    """Upstream's model object (CFM wrapping DiT) on the current default device; use ``torch.device('meta')``
    as a context to build it without allocating weights."""
    CFM, DiT = _model_classes()
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


def max_sequence_frames(model) -> int | None:
    """The longest sequence (reference + generated mel frames) the DiT can take: its text embedding adds sinusoidal
    positions from a table precomputed for ``precompute_max_pos`` frames (4096 by default, ≈ 43.7 s at 24 kHz with
    hop 256), and a longer sequence fails inside ``TextEmbedding.forward``. Upstream never checks it; None when the
    model has no such table."""
    table = getattr(getattr(getattr(model, "transformer", None), "text_embed", None), "freqs_cis", None)
    return int(table.shape[0]) if table is not None else None


def load_vocos(config_path: str | Path, weights_path: str | Path):
    """A vocos vocoder on the CPU in float32, loaded strictly (as upstream's ``load_vocoder(is_local=True)``)."""
    import torch
    from vocos import Vocos

    vocoder = Vocos.from_hparams(str(config_path))
    state_dict = torch.load(str(weights_path), map_location="cpu", weights_only=True)
    vocoder.load_state_dict(state_dict, strict=True)
    return vocoder.eval()


def to_model_text(texts: list[str]) -> list[list[str]]:
    """Upstream's text → symbol-list conversion (``convert_char_to_pinyin``), reused as is so the engine feeds the
    model exactly what upstream would: it maps ';' to ',' and curly quotes to straight ones, and inserts a space
    between adjacent multi-character ASCII segments of its word splitter."""
    _model_classes()
    from f5_tts.model.utils import convert_char_to_pinyin

    return convert_char_to_pinyin(texts)


def upstream_infer_batch_process(*args: Any, **kwargs: Any):
    """Upstream's whole-pipeline inference, for the parity test and the benchmark only. Importing
    ``utils_infer`` has side effects (device detection, env vars, matplotlib), hence never on the serving path."""
    _model_classes()
    from f5_tts.infer import utils_infer

    return utils_infer.infer_batch_process(*args, **kwargs)


def upstream_module(name: str):
    """An upstream module by dotted name under ``f5_tts`` (tests patch its globals, e.g. the thread pool)."""
    import importlib

    _model_classes()
    return importlib.import_module(f"f5_tts.{name}")


def text_to_ids(texts: list[list[str]], vocab_char_map: dict[str, int]):
    """Upstream's symbol → index tensor (unknown symbols → 0, the space; batch padding −1)."""
    _model_classes()
    from f5_tts.model.utils import list_str_to_idx

    return list_str_to_idx(texts, vocab_char_map)


def flow_timesteps(steps: int, device, dtype):
    """Upstream's ODE time grid: the empirically pruned schedule (EPSS) for the step counts it tabulates
    (5, 6, 7, 10, 12, 16), else uniform — exactly what ``CFM.sample`` uses by default."""
    _model_classes()
    from f5_tts.model.utils import get_epss_timesteps

    return get_epss_timesteps(steps, device=device, dtype=dtype)
