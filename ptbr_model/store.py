"""Import a checkpoint, with its vocabulary and vocoder, into the BentoML model store, and read it back.

A stored model is self-contained (nothing is fetched at run time) and canonical:

    model.safetensors        CFM keys without the ``ema_model.`` prefix, float16 by default
    vocab.txt                the symbol table the text embedding was trained with
    config.json              architecture (nulls kept), mel config, preset, dtype
    vocoder/config.yaml      vocos-mel-24khz layout
    vocoder/pytorch_model.bin

The version is derived from what was imported (file hashes + options), so importing the same thing twice finds the
existing model instead of creating a copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

from ptbr_model import f5
from ptbr_model.checkpoint import (
    DEFAULT_PRESET,
    Architecture,
    CheckpointError,
    load_validated,
    require_file,
    sha256_file,
)
from ptbr_model.text import vocab_indices

MODEL_NAME = "f5tts-ptbr"
STORE_DTYPES = {"float16": torch.float16, "float32": torch.float32}
VOCOS_HUB_REPO = "charactr/vocos-mel-24khz"
VOCODER_FILES = ("config.yaml", "pytorch_model.bin")
# Buffers that are recomputed constants, not learnt weights: keep them exact whatever the storage dtype.
_KEEP_FLOAT32_SUFFIXES = ("rotary_embed.inv_freq",)


@dataclass(frozen=True)
class ImportOptions:
    checkpoint: Path
    source_name: str
    vocab: Path
    vocoder_dir: Path
    preset: str = DEFAULT_PRESET
    store_dtype: str = "float16"
    name: str = MODEL_NAME
    demo: bool = False


@dataclass(frozen=True)
class StoredModel:
    """What the engine needs to rebuild the model from the store."""

    tag: str
    path: Path
    arch: dict[str, Any]
    mel: dict[str, Any]
    metadata: dict[str, Any]

    @property
    def weights_path(self) -> Path:
        return self.path / "model.safetensors"

    @property
    def vocab_path(self) -> Path:
        return self.path / "vocab.txt"

    @property
    def vocoder_dir(self) -> Path:
        return self.path / "vocoder"


@dataclass(frozen=True)
class ValidatedImport:
    """A checkpoint that passed every check, ready to be written; ``version`` identifies what was imported."""

    options: ImportOptions
    state: dict[str, torch.Tensor]
    arch: Architecture
    mel: dict[str, Any]
    vocab_size: int
    source_sha256: str
    vocab_sha256: str
    version: str

    def metadata(self) -> dict[str, Any]:
        return {
            "arch": {key: value for key, value in self.arch.as_kwargs().items() if value is not None},
            "mel": self.mel,
            "preset": self.options.preset,
            "source_name": self.options.source_name,
            "source_sha256": self.source_sha256,
            "vocab_sha256": self.vocab_sha256,
            "stored_dtype": self.options.store_dtype,
            "vocab_size": self.vocab_size,
            "demo": self.options.demo,
            "f5_tts_version": f5.f5_tts_version(),
        }


def validate_import(options: ImportOptions, progress: Callable[[str], None] | None = None) -> ValidatedImport:
    """Every check an import makes, before anything is written."""
    if options.store_dtype not in STORE_DTYPES:
        raise CheckpointError(f"--store-dtype must be one of {', '.join(STORE_DTYPES)}, not {options.store_dtype!r}")
    require_file(options.checkpoint)
    source_sha256 = sha256_file(options.checkpoint, progress)
    mel = dict(f5.MEL_DEFAULTS)
    state, arch = load_validated(options.checkpoint, options.preset, mel)
    vocab_size = _validate_vocab(options.vocab, arch)
    _validate_vocoder(options.vocoder_dir, mel)
    vocab_sha256 = sha256_file(options.vocab)
    fingerprint = {
        "source_sha256": source_sha256,
        "vocab_sha256": vocab_sha256,
        "vocoder_sha256": [sha256_file(options.vocoder_dir / name) for name in VOCODER_FILES],
        "preset": options.preset,
        "store_dtype": options.store_dtype,
        "mel": mel,
    }
    version = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]
    return ValidatedImport(options, state, arch, mel, vocab_size, source_sha256, vocab_sha256, version)


def write_model_dir(validated: ValidatedImport, target: Path) -> None:
    """The canonical model folder (see the module docstring) into ``target``, which must exist."""
    options = validated.options
    _write_weights(validated.state, target / "model.safetensors", STORE_DTYPES[options.store_dtype])
    shutil.copyfile(options.vocab, target / "vocab.txt")
    (target / "vocoder").mkdir(exist_ok=True)
    for name in VOCODER_FILES:
        shutil.copyfile(options.vocoder_dir / name, target / "vocoder" / name)
    config = {
        "arch": validated.arch.as_kwargs(),
        "mel": validated.mel,
        "preset": options.preset,
        "stored_dtype": options.store_dtype,
        "vocab_size": validated.vocab_size,
    }
    (target / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (target / "metadata.json").write_text(json.dumps(validated.metadata(), indent=2) + "\n")


def import_checkpoint(options: ImportOptions, progress: Callable[[str], None] | None = None) -> str:
    """Validate everything first, then write the model into the BentoML store; returns the tag (existing or new)."""
    import bentoml

    validated = validate_import(options, progress)
    tag = bentoml.Tag(options.name, validated.version)
    with contextlib.suppress(bentoml.exceptions.NotFound):
        return str(bentoml.models.get(tag).tag)  # the same import was done before: nothing to write
    if progress is not None:
        progress(f"writing {tag} ({options.store_dtype})")
    with bentoml.models.create(tag, metadata=validated.metadata(), labels={"preset": options.preset}) as model:
        write_model_dir(validated, Path(model.path))
        apply_umask(Path(model.path))
    return str(model.tag)


def apply_umask(root: Path) -> None:
    """Give the model folder the modes the user's umask asks for (usually 0755/0644). BentoML builds a model in a
    ``mkdtemp`` folder (0700) and safetensors writes 0600, whatever the umask: a store imported by one user was
    unreadable by the service's own user (uid 1034 in the image), e.g. a host store mounted with
    compose.model-store.yaml."""
    umask = os.umask(0)
    os.umask(umask)
    root.chmod(0o777 & ~umask)
    for path in root.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def load_model_dir(path: Path, tag: str | None = None) -> StoredModel:
    """A model folder written by ``write_model_dir``, without the BentoML store (benchmarks, GPU machines)."""
    config = json.loads((path / "config.json").read_text())
    metadata = json.loads((path / "metadata.json").read_text())
    return StoredModel(tag=tag or f"dir:{path}", path=path, arch=config["arch"], mel=config["mel"], metadata=metadata)


def load_stored(tag: str) -> StoredModel:
    """Resolve a tag (``name:latest`` works) to the files and config of a stored model."""
    import bentoml

    model = bentoml.models.get(tag)
    path = Path(model.path)
    config = json.loads((path / "config.json").read_text())
    return StoredModel(
        tag=str(model.tag),
        path=path,
        arch=config["arch"],
        mel=config["mel"],
        metadata=dict(model.info.metadata),
    )


def read_stored_weights(stored: StoredModel) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(stored.weights_path), device="cpu")


def download_vocos_from_hub() -> Path:
    """The vocos-mel-24khz folder from the hub (cached by huggingface_hub); a clear error when unreachable."""
    try:
        from huggingface_hub import hf_hub_download

        paths = [Path(hf_hub_download(repo_id=VOCOS_HUB_REPO, filename=name)) for name in VOCODER_FILES]
    except Exception as exc:
        raise CheckpointError(
            f"cannot download the vocoder {VOCOS_HUB_REPO} from the hub ({_short(exc)}); "
            "download its config.yaml and pytorch_model.bin and pass --vocoder DIR"
        ) from exc
    return paths[0].parent


def download_checkpoint_from_hub(uri: str) -> Path:
    """``hf://owner/repo/path/in/repo`` → a local file (huggingface_hub's cache)."""
    parts = uri.removeprefix("hf://").split("/", 2)
    if len(parts) != 3 or not all(parts):
        raise CheckpointError(f"hub checkpoint must look like hf://owner/repo/path/in/repo, got {uri!r}")
    owner, repo, filename = parts
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo_id=f"{owner}/{repo}", filename=filename))
    except Exception as exc:
        raise CheckpointError(
            f"cannot download {uri} ({_short(exc)}); download the file and pass its local path instead"
        ) from exc


def _write_weights(state: dict[str, torch.Tensor], path: Path, dtype: torch.dtype) -> None:
    from safetensors.torch import save_file

    def stored(key: str, tensor: torch.Tensor) -> torch.Tensor:
        if tensor.is_floating_point() and not key.endswith(_KEEP_FLOAT32_SUFFIXES):
            tensor = tensor.to(dtype)
        return tensor.contiguous()

    save_file({key: stored(key, tensor) for key, tensor in state.items()}, str(path))


def _validate_vocab(path: Path, arch: Architecture) -> int:
    if not path.is_file():
        raise CheckpointError(f"vocab file not found: {path}")
    try:
        vocab = vocab_indices(path)
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"vocab file {path.name} is not UTF-8 text") from exc
    size = len(vocab)  # upstream sizes the embedding by distinct symbols (len of its char map)
    if size != arch.text_num_embeds:
        raise CheckpointError(
            f"vocab {path.name} has {size} symbols but the checkpoint's text embedding expects "
            f"{arch.text_num_embeds}: pass the vocab.txt the model was trained with (--vocab FILE)"
        )
    if vocab.get(" ") != 0:
        raise CheckpointError(f"vocab {path.name} must have the space symbol on its first line (index 0)")
    return size


def _validate_vocoder(directory: Path, mel: dict[str, Any]) -> None:
    missing = [name for name in VOCODER_FILES if not (directory / name).is_file()]
    if missing:
        raise CheckpointError(f"vocoder folder {directory} lacks {', '.join(missing)} (expected a vocos-mel-24khz folder)")
    try:
        config = yaml.safe_load((directory / "config.yaml").read_text())
        features = config["feature_extractor"]["init_args"]
    except Exception as exc:
        raise CheckpointError(f"vocoder config.yaml is not a vocos config ({_short(exc)})") from exc
    expected = {"sample_rate": mel["target_sample_rate"], "n_mels": mel["n_mel_channels"], "hop_length": mel["hop_length"]}
    wrong = {key: features.get(key) for key, value in expected.items() if features.get(key) != value}
    if wrong:
        raise CheckpointError(f"vocoder does not match the model's mel config: {wrong} (expected {expected})")
    try:
        f5.load_vocos(directory / "config.yaml", directory / "pytorch_model.bin")
    except Exception as exc:
        raise CheckpointError(f"vocoder weights do not load ({_short(exc)})") from exc


def _short(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:200]
