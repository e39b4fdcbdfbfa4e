"""Read an F5-TTS checkpoint in any released layout, normalise its keys, infer the architecture from tensor
shapes and validate it strictly against the model upstream would build.

Upstream's ``load_checkpoint`` (f5_tts/infer/utils_infer.py) needs the architecture written by hand and, for
.safetensors, assumes EMA keys; a wrong guess fails late or, for the v0/v1 behavioural fields, not at all. Here
the shapes decide everything they can, and the two fields they cannot decide come from a named preset.
"""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ptbr_model import f5

PRESETS: dict[str, dict[str, Any]] = {
    # The pt-BR fine-tune was trained from the v0 base model: no text padding mask, position-embedded first head only.
    "f5tts-base-v0": {"text_mask_padding": False, "pe_attn_head": 1},
    "f5tts-v1-base": {"text_mask_padding": True, "pe_attn_head": None},
}
DEFAULT_PRESET = "f5tts-base-v0"

# Entries a training checkpoint carries that are not model weights.
_TRAINING_ONLY_KEYS = {"initted", "step", "update"}
# The mel front-end is rebuilt from the mel config; old checkpoints saved its buffers (upstream drops them too).
_MEL_BUFFER_PREFIX = "mel_spec."
_STATE_DICT_CONTAINERS = ("ema_model_state_dict", "model_state_dict", "state_dict")
_BLOCK_INDEX = re.compile(r"^transformer\.transformer_blocks\.(\d+)\.")
_TEXT_BLOCK_INDEX = re.compile(r"^transformer\.text_embed\.text_blocks\.(\d+)\.")
_HASH_CHUNK = 8 * 1024 * 1024
_PROGRESS_MIN_BYTES = 256 * 1024 * 1024


class CheckpointError(ValueError):
    """A checkpoint that cannot be imported; the message is one line meant for the user."""


@dataclass(frozen=True)
class Architecture:
    """Exactly the DiT keyword arguments the service builds the model with."""

    dim: int
    depth: int
    heads: int
    dim_head: int
    ff_mult: int
    mel_dim: int
    text_num_embeds: int
    text_dim: int
    conv_layers: int
    text_mask_padding: bool
    pe_attn_head: int | None
    qk_norm: str | None
    long_skip_connection: bool

    def as_kwargs(self) -> dict[str, Any]:
        return asdict(self)


def sha256_file(path: Path, progress: Callable[[str], None] | None = None) -> str:
    """Hash in chunks; large files report progress so a 1.35 GB import does not look hung."""
    size = path.stat().st_size
    report = progress if (progress is not None and size >= _PROGRESS_MIN_BYTES) else None
    digest = hashlib.sha256()
    done, last_percent = 0, -10
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
            done += len(chunk)
            percent = done * 100 // size
            if report is not None and percent >= last_percent + 10:
                report(f"hashing {path.name}: {percent}%")
                last_percent = percent
    return digest.hexdigest()


def require_file(path: Path) -> None:
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint is not a file: {path}")


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The raw object stored in a .safetensors or .pt/.pth/.ckpt file, on the CPU."""
    require_file(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        if suffix in (".pt", ".pth", ".ckpt", ".bin"):
            loaded = torch.load(str(path), map_location="cpu", weights_only=True)
        else:
            raise CheckpointError(f"unsupported checkpoint extension {suffix!r} (use .safetensors, .pt, .pth or .ckpt)")
    except CheckpointError:
        raise
    except Exception as exc:  # every reader error means the same thing to the user: the file is not readable
        raise CheckpointError(f"cannot read checkpoint {path.name}: truncated or not a checkpoint ({_first_line(exc)})") from exc
    if not isinstance(loaded, dict):
        raise CheckpointError(f"{path.name} holds a {type(loaded).__name__}, not a state dict")
    return loaded


def extract_state_dict(raw: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Canonical CFM keys (``transformer.*``): unwrap containers, strip ``ema_model.``, drop training entries
    and mel buffers."""
    state = raw
    for container in _STATE_DICT_CONTAINERS:
        if isinstance(raw.get(container), dict):
            state = raw[container]
            break
    tensors = {key: value for key, value in state.items() if isinstance(value, torch.Tensor)}
    if not tensors:
        raise CheckpointError("the file holds no state dict (no tensors found)")
    canonical: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        name = key.removeprefix("ema_model.")
        if name in _TRAINING_ONLY_KEYS or name.startswith(_MEL_BUFFER_PREFIX):
            continue
        canonical[name] = value
    _reject_foreign_layouts(canonical)
    return canonical


def _reject_foreign_layouts(state: dict[str, torch.Tensor]) -> None:
    keys = list(state)
    if any(key.startswith("transformer.layers.") for key in keys):
        raise CheckpointError("keys belong to an E2-TTS / UNetT model (transformer.layers.*), not F5-TTS DiT")
    if any(".attn.to_q_c." in key or ".attn_norm_c." in key for key in keys):
        raise CheckpointError("keys belong to an MMDiT model (joint attention), not F5-TTS DiT")
    if not any(key.startswith("transformer.transformer_blocks.") for key in keys):
        sample = ", ".join(sorted(keys)[:3])
        raise CheckpointError(
            f"no F5-TTS DiT keys (expected 'transformer.transformer_blocks.*', found e.g. {sample}); "
            "renamed prefixes are not accepted"
        )


def infer_architecture(state: dict[str, torch.Tensor], preset: str = DEFAULT_PRESET) -> Architecture:
    """Every shape-determined DiT argument from the weights; the behavioural two from the preset."""
    if preset not in PRESETS:
        raise CheckpointError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    try:
        proj_out = state["transformer.proj_out.weight"]
        to_q = state["transformer.transformer_blocks.0.attn.to_q.weight"]
        ff_in = state["transformer.transformer_blocks.0.ff.ff.0.0.weight"]
        text_table = state["transformer.text_embed.text_embed.weight"]
        inv_freq = state["transformer.rotary_embed.inv_freq"]
    except KeyError as exc:
        raise CheckpointError(f"missing key {exc.args[0]!r}: not a complete F5-TTS DiT checkpoint") from exc
    mel_dim, dim = proj_out.shape
    inner_dim = to_q.shape[0]
    dim_head = inv_freq.shape[0] * 2  # x_transformers' RotaryEmbedding keeps dim_head / 2 frequencies
    if inner_dim % dim_head:
        raise CheckpointError(f"attention width {inner_dim} is not a multiple of head size {dim_head}")
    return Architecture(
        dim=int(dim),
        depth=_count_indexed(state, _BLOCK_INDEX),
        heads=int(inner_dim // dim_head),
        dim_head=int(dim_head),
        ff_mult=_ratio(ff_in.shape[0], dim, "feed-forward width"),
        mel_dim=int(mel_dim),
        text_num_embeds=int(text_table.shape[0] - 1),  # row 0 is the filler token
        text_dim=int(text_table.shape[1]),
        conv_layers=_count_indexed(state, _TEXT_BLOCK_INDEX),
        text_mask_padding=PRESETS[preset]["text_mask_padding"],
        pe_attn_head=PRESETS[preset]["pe_attn_head"],
        qk_norm="rms_norm" if "transformer.transformer_blocks.0.attn.q_norm.weight" in state else None,
        long_skip_connection="transformer.long_skip_connection.weight" in state,
    )


def validate_state_dict(state: dict[str, torch.Tensor], arch: Architecture, mel: dict[str, Any]) -> None:
    """Build upstream's model on the meta device and demand identical keys and shapes."""
    with torch.device("meta"):
        expected = {
            key: tuple(value.shape)
            for key, value in f5.build_cfm(arch.as_kwargs(), mel).state_dict().items()
            if not key.startswith(_MEL_BUFFER_PREFIX)
        }
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{key} {tuple(state[key].shape)} != {expected[key]}"
        for key in set(expected) & set(state)
        if tuple(state[key].shape) != expected[key]
    )
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (first: {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (first: {', '.join(unexpected[:3])})")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches (first: {'; '.join(mismatched[:3])})")
    if problems:
        raise CheckpointError("checkpoint does not match the inferred architecture: " + "; ".join(problems))


def load_validated(path: Path, preset: str, mel: dict[str, Any]) -> tuple[dict[str, torch.Tensor], Architecture]:
    state = extract_state_dict(read_checkpoint(path))
    arch = infer_architecture(state, preset)
    if arch.mel_dim != mel["n_mel_channels"]:
        raise CheckpointError(f"model outputs {arch.mel_dim} mel channels but the mel config has {mel['n_mel_channels']}")
    validate_state_dict(state, arch, mel)
    return state, arch


def _count_indexed(state: dict[str, torch.Tensor], pattern: re.Pattern[str]) -> int:
    indices = {int(match.group(1)) for key in state if (match := pattern.match(key))}
    if indices and indices != set(range(len(indices))):
        raise CheckpointError(f"layer indices are not contiguous: {sorted(indices)[:10]}")
    return len(indices)


def _ratio(width: int, dim: int, what: str) -> int:
    if width % dim:
        raise CheckpointError(f"{what} {width} is not a multiple of the model width {dim}")
    return int(width // dim)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def progress_to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
