"""Checkpoint import: every released layout, strict validation, the store contract, and the CLI's errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from ptbr_model import f5, store
from ptbr_model.checkpoint import (
    CheckpointError,
    extract_state_dict,
    infer_architecture,
    validate_state_dict,
)
from ptbr_model.demo import DEMO_ARCH, write_demo_files
from served import import_demo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import import_model  # noqa: E402

VOCAB_SIZE = 2545
# The real checkpoint's size (DESIGN.md): dim 1024, depth 22, heads 16, ff_mult 2, text_dim 512, conv_layers 4.
REAL_BASE_ARCH = {
    "dim": 1024, "depth": 22, "heads": 16, "dim_head": 64, "ff_mult": 2, "mel_dim": 100,
    "text_num_embeds": VOCAB_SIZE, "text_dim": 512, "conv_layers": 4, "text_mask_padding": False,
    "pe_attn_head": 1, "qk_norm": None, "long_skip_connection": False,
}


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_demo_files(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def weights(demo_files: tuple[Path, Path]) -> dict[str, torch.Tensor]:
    """Canonical float32 weights of a tiny model (transformer.* keys)."""
    return load_file(str(demo_files[0]))


@pytest.fixture(scope="module")
def vocoder_dir(demo_files: tuple[Path, Path]) -> Path:
    return demo_files[1]


def ema_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What upstream's released .safetensors hold: ema_model.-prefixed keys plus EMA bookkeeping."""
    out = {f"ema_model.{key}": value for key, value in state.items()}
    out["initted"] = torch.tensor(True)
    out["step"] = torch.tensor(1200000)
    return out


def layouts(state: dict[str, torch.Tensor]) -> dict[str, tuple[str, object]]:
    mel_buffers = {
        "mel_spec.mel_stft.mel_scale.fb": torch.zeros(513, 100),
        "mel_spec.mel_stft.spectrogram.window": torch.ones(1024),
    }
    return {
        "ema_safetensors": (".safetensors", ema_layout(state)),
        "plain_safetensors": (".safetensors", dict(state)),
        "training_pt": (".pt", {
            "ema_model_state_dict": {**ema_layout(state), **{f"ema_model.{k}": v for k, v in mel_buffers.items()}},
            "model_state_dict": {key: value * 0 for key, value in state.items()},  # EMA weights must win
            "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 1e-4}]},
            "update": 1200000,
        }),
        "model_state_dict_pt": (".pt", {"model_state_dict": {**state, **mel_buffers}}),
        "state_dict_ckpt": (".ckpt", {"state_dict": dict(state)}),
        "flat_pth": (".pth", dict(state)),
    }


def save_layout(path: Path, payload: object) -> None:
    if path.suffix == ".safetensors":
        save_file(payload, str(path))  # type: ignore[arg-type]
    else:
        torch.save(payload, path)


def import_file(path: Path, vocoder: Path, **kwargs: object) -> str:
    options = store.ImportOptions(path, path.name, f5.shipped_vocab_path(), vocoder, **kwargs)  # type: ignore[arg-type]
    return store.import_checkpoint(options)


@pytest.mark.parametrize("layout", list(layouts({})))
def test_every_released_layout_imports_and_round_trips(layout, weights, vocoder_dir, tmp_path):
    suffix, payload = layouts(weights)[layout]
    path = tmp_path / f"model_{layout}{suffix}"
    save_layout(path, payload)

    tag = import_file(path, vocoder_dir, name=f"rt-{layout.replace('_', '-')}")

    stored = store.load_stored(tag)
    read_back = store.read_stored_weights(stored)
    assert set(read_back) == set(weights)
    for key, original in weights.items():
        assert read_back[key].shape == original.shape
        if key.endswith("inv_freq"):
            assert read_back[key].dtype == torch.float32
        else:
            assert read_back[key].dtype == torch.float16
        torch.testing.assert_close(read_back[key].float(), original, rtol=1e-3, atol=1e-4)
    assert stored.arch["dim"] == DEMO_ARCH["dim"]
    assert (stored.vocoder_dir / "config.yaml").is_file() and (stored.vocoder_dir / "pytorch_model.bin").is_file()


def test_metadata_and_config_follow_the_design_contract(weights, vocoder_dir, tmp_path):
    path = tmp_path / "model_last.safetensors"
    save_file(ema_layout(weights), str(path))
    tag = import_file(path, vocoder_dir, name="meta-check")

    import bentoml

    metadata = bentoml.models.get(tag).info.metadata
    expected_arch = {**DEMO_ARCH, "text_num_embeds": VOCAB_SIZE}
    assert metadata["arch"] == {k: v for k, v in expected_arch.items() if v is not None}
    assert "qk_norm" not in metadata["arch"]  # None cannot be stored in BentoML metadata
    assert metadata["mel"] == f5.MEL_DEFAULTS
    assert metadata["preset"] == "f5tts-base-v0"
    assert metadata["source_name"] == "model_last.safetensors"
    assert metadata["source_sha256"] == store.sha256_file(path)
    assert metadata["stored_dtype"] == "float16"
    assert metadata["vocab_size"] == VOCAB_SIZE
    assert metadata["demo"] is False
    config = json.loads((store.load_stored(tag).path / "config.json").read_text())
    assert config["arch"]["qk_norm"] is None  # config.json keeps the null
    assert config["arch"]["pe_attn_head"] == 1


def test_v1_preset_records_its_behavioural_fields(weights, vocoder_dir, tmp_path):
    path = tmp_path / "v1.safetensors"
    save_file(dict(weights), str(path))
    tag = import_file(path, vocoder_dir, name="preset-v1", preset="f5tts-v1-base")
    stored = store.load_stored(tag)
    assert stored.arch["text_mask_padding"] is True
    assert stored.arch["pe_attn_head"] is None
    assert "pe_attn_head" not in stored.metadata["arch"]
    assert stored.metadata["preset"] == "f5tts-v1-base"


def test_reimport_with_same_options_creates_nothing(weights, vocoder_dir, tmp_path):
    import bentoml

    path = tmp_path / "same.safetensors"
    save_file(dict(weights), str(path))
    first = import_file(path, vocoder_dir, name="idempotent")
    second = import_file(path, vocoder_dir, name="idempotent")
    assert first == second
    assert len(bentoml.models.list("idempotent")) == 1
    third = import_file(path, vocoder_dir, name="idempotent", store_dtype="float32")
    assert third != first  # other options are another model
    assert len(bentoml.models.list("idempotent")) == 2


def test_float16_storage_is_about_half_of_float32(weights, vocoder_dir, tmp_path):
    path = tmp_path / "size.safetensors"
    save_file(dict(weights), str(path))
    half = store.load_stored(import_file(path, vocoder_dir, name="size16")).weights_path.stat().st_size
    full = store.load_stored(import_file(path, vocoder_dir, name="size32", store_dtype="float32")).weights_path.stat().st_size
    assert 0.45 < half / full < 0.55


def test_architecture_of_the_real_checkpoint_size_is_inferred_from_shapes():
    # Meta tensors: the real 337 M-parameter layout without allocating it.
    with torch.device("meta"):
        model = f5.build_cfm(REAL_BASE_ARCH, f5.MEL_DEFAULTS)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("mel_spec.")}
    arch = infer_architecture(ema_and_back(state))
    assert arch.as_kwargs() == REAL_BASE_ARCH
    validate_state_dict(state, arch, f5.MEL_DEFAULTS)


def ema_and_back(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return extract_state_dict(ema_layout(state))


def test_qk_norm_and_long_skip_are_inferred():
    arch = {**REAL_BASE_ARCH, "dim": 64, "depth": 1, "heads": 2, "dim_head": 32, "text_dim": 32, "conv_layers": 0,
            "qk_norm": "rms_norm", "long_skip_connection": True}
    with torch.device("meta"):
        state = {k: v for k, v in f5.build_cfm(arch, f5.MEL_DEFAULTS).state_dict().items() if not k.startswith("mel_spec.")}
    inferred = infer_architecture(state)
    assert inferred.qk_norm == "rms_norm"
    assert inferred.long_skip_connection is True
    assert inferred.conv_layers == 0


# --- errors: the CLI exits 1 with one line on stderr and no traceback -------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = import_model.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def broken_checkpoints(weights: dict[str, torch.Tensor], tmp: Path) -> dict[str, tuple[Path, tuple[str, ...]]]:
    cases: dict[str, tuple[Path, tuple[str, ...]]] = {}

    full = tmp / "full.safetensors"
    save_file(dict(weights), str(full))
    truncated = tmp / "truncated.safetensors"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    cases["truncated"] = (truncated, ("truncated or not a checkpoint",))

    garbage = tmp / "garbage.pt"
    garbage.write_bytes(os.urandom(4096))
    cases["unreadable"] = (garbage, ("cannot read checkpoint",))

    no_state = tmp / "no_state.pt"
    torch.save({"epoch": 3, "note": "no weights"}, no_state)
    cases["no_state_dict"] = (no_state, ("holds no state dict",))

    a_list = tmp / "a_list.pt"
    torch.save([torch.zeros(2)], a_list)
    cases["not_a_dict"] = (a_list, ("not a state dict",))

    unett = tmp / "e2tts.safetensors"
    save_file({"transformer.layers.0.0.weight": torch.zeros(4, 4), "transformer.time_embed.w": torch.zeros(4)}, str(unett))
    cases["e2tts_unett"] = (unett, ("E2-TTS",))

    renamed = tmp / "renamed.safetensors"
    save_file({f"model.{key}": value for key, value in weights.items()}, str(renamed))
    cases["renamed_prefix"] = (renamed, ("no F5-TTS DiT keys",))

    missing = tmp / "missing.safetensors"
    save_file({k: v for k, v in weights.items() if "transformer_blocks.1.ff.ff.2.bias" not in k}, str(missing))
    cases["missing_key"] = (missing, ("1 missing keys", "transformer_blocks.1.ff.ff.2.bias"))

    extra = tmp / "extra.safetensors"
    save_file({**weights, "transformer.surprise.weight": torch.zeros(3)}, str(extra))
    cases["extra_key"] = (extra, ("1 unexpected keys", "transformer.surprise.weight"))

    reshaped = dict(weights)
    reshaped["transformer.transformer_blocks.1.attn.to_k.weight"] = torch.zeros(32, 64)
    shape = tmp / "shape.safetensors"
    save_file(reshaped, str(shape))
    cases["shape_mismatch"] = (shape, ("shape mismatches", "to_k.weight (32, 64) != (64, 64)"))

    cases["missing_file"] = (tmp / "nope.safetensors", ("checkpoint not found",))
    return cases


@pytest.mark.parametrize(
    "case",
    ["truncated", "unreadable", "no_state_dict", "not_a_dict", "e2tts_unett", "renamed_prefix", "missing_key",
     "extra_key", "shape_mismatch", "missing_file"],
)
def test_bad_checkpoints_fail_with_one_clear_line(case, weights, vocoder_dir, tmp_path, capsys):
    path, fragments = broken_checkpoints(weights, tmp_path)[case]
    code, out, err = run_cli(capsys, str(path), "--vocoder", str(vocoder_dir), "--name", "never-created")
    assert_one_line_error(code, err, *fragments)
    assert out == ""


def test_vocab_size_mismatch_fails(weights, vocoder_dir, tmp_path, capsys):
    path = tmp_path / "ok.safetensors"
    save_file(dict(weights), str(path))
    small_vocab = tmp_path / "vocab.txt"
    small_vocab.write_text(" \na\nb\n", encoding="utf-8")
    code, _, err = run_cli(capsys, str(path), "--vocoder", str(vocoder_dir), "--vocab", str(small_vocab))
    assert_one_line_error(code, err, "has 3 symbols", "expects 2545", "--vocab")


def test_missing_vocoder_files_fail(weights, tmp_path, capsys):
    path = tmp_path / "ok.safetensors"
    save_file(dict(weights), str(path))
    empty = tmp_path / "empty_vocoder"
    empty.mkdir()
    code, _, err = run_cli(capsys, str(path), "--vocoder", str(empty))
    assert_one_line_error(code, err, "lacks config.yaml, pytorch_model.bin")


def test_vocoder_from_unreachable_hub_names_the_local_option(weights, tmp_path, capsys):
    path = tmp_path / "ok.safetensors"
    save_file(dict(weights), str(path))
    code, _, err = run_cli(capsys, str(path), "--vocoder", "hub")
    assert_one_line_error(code, err, "charactr/vocos-mel-24khz", "--vocoder DIR")


def test_checkpoint_from_unreachable_hub_fails_clearly(vocoder_dir, capsys):
    code, _, err = run_cli(capsys, "hf://someone/f5-tts-ptbr/model_last.safetensors", "--vocoder", str(vocoder_dir))
    assert_one_line_error(code, err, "cannot download hf://someone/f5-tts-ptbr/model_last.safetensors")


def test_nothing_is_stored_after_a_failed_import(weights, vocoder_dir, tmp_path, capsys):
    import bentoml

    path, _ = broken_checkpoints(weights, tmp_path)["shape_mismatch"]
    code, _, _ = run_cli(capsys, str(path), "--vocoder", str(vocoder_dir), "--name", "after-failure")
    assert code == 1
    with pytest.raises(bentoml.exceptions.NotFound):
        bentoml.models.get("after-failure:latest")


def test_demo_import_through_the_real_command_line(repo_root):
    """The README's own command, in a fresh process: prints a tag, is idempotent, and marks the model as demo."""
    command = [sys.executable, str(repo_root / "scripts" / "import_model.py"), "--demo"]
    tag = import_demo()  # this command run by tests/served.py: once per session, shared with the served tests
    second = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    assert tag.startswith("f5tts-ptbr:")
    assert second.stdout.strip() == tag
    stored = store.load_stored(tag)
    assert stored.metadata["demo"] is True
    assert stored.metadata["source_name"] == "demo"
    assert stored.arch["text_num_embeds"] == VOCAB_SIZE


def test_verbose_shows_the_traceback(tmp_path):
    command = [sys.executable, str(Path(import_model.__file__)), str(tmp_path / "missing.pt"), "--vocoder",
               str(tmp_path), "--verbose"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "Traceback" in result.stderr
    assert "checkpoint not found" in result.stderr
