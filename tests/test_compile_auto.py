"""PTBR_COMPILE=auto: compile the DiT blocks where the GPU and toolchain allow, else eager with one log line; the
compile cache lives under the data directory. No GPU here: the decisions are checked with the device's answers
(capability, compiler on PATH) stood in for; the compiled path itself is measured on a GPU (README, Performance)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import ptbr_model.engine as engine_module
from ptbr_model.engine import compile_decision, compile_toolchain_problem, use_compile_cache
from ptbr_model.settings import Settings

CUDA = torch.device("cuda")


@pytest.fixture
def capability(monkeypatch):
    """Pretend torch sees a CUDA GPU of the given compute capability."""
    def set_capability(major: int, minor: int) -> None:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (major, minor))
    return set_capability


def test_auto_is_the_default_and_old_boolean_values_still_work(monkeypatch):
    monkeypatch.delenv("PTBR_COMPILE", raising=False)
    assert Settings().compile == "auto"
    for value, expected in (("true", "true"), ("1", "true"), ("yes", "true"), ("False", "false"), ("0", "false"),
                            ("off", "false"), ("AUTO", "auto")):
        monkeypatch.setenv("PTBR_COMPILE", value)
        assert Settings().compile == expected, value
    monkeypatch.setenv("PTBR_COMPILE", "sometimes")
    with pytest.raises(ValueError):
        Settings()


def test_the_compile_cache_lives_under_the_data_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("PTBR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("PTBR_COMPILE_CACHE_DIR", raising=False)
    assert Settings().compile_cache_path == tmp_path / "data" / "cache" / "torch-compile"
    monkeypatch.setenv("PTBR_COMPILE_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert Settings().compile_cache_path == tmp_path / "elsewhere"


def test_off_the_gpu_and_on_pascal_the_blocks_stay_eager(capability):
    assert compile_decision("auto", torch.device("cpu")) == (False, "eager: cpu is not a CUDA device")
    assert compile_decision(True, torch.device("cpu"))[0] is False
    capability(6, 1)  # GTX 1050 Ti
    wanted, reason = compile_decision("true", CUDA)
    assert not wanted and "6.1" in reason and "Pascal" in reason
    assert compile_decision("false", CUDA) == (False, "eager: PTBR_COMPILE=false")
    with pytest.raises(ValueError):
        compile_decision("maybe", CUDA)


def test_auto_compiles_on_volta_and_newer_only_with_a_working_toolchain(capability, monkeypatch):
    capability(9, 0)
    monkeypatch.setattr(engine_module, "compile_toolchain_problem", lambda: None)
    assert compile_decision("auto", CUDA) == (True, "to compile")
    monkeypatch.setattr(engine_module, "compile_toolchain_problem", lambda: "no C compiler (gcc/clang; …)")
    wanted, reason = compile_decision("auto", CUDA)
    assert not wanted and reason == "eager: PTBR_COMPILE=auto found no C compiler (gcc/clang; …)"
    assert compile_decision("true", CUDA) == (True, "to compile")  # true tries anyway; the warm-up decides


def test_the_toolchain_check_names_what_is_missing(monkeypatch):
    import torch.utils._triton as triton_utils

    monkeypatch.setattr(triton_utils, "has_triton", lambda: True)
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(engine_module.shutil, "which", lambda name: None)
    assert "no C compiler" in compile_toolchain_problem()
    monkeypatch.setenv("CC", "/nonexistent/cc")
    assert "$CC=/nonexistent/cc is not there" in compile_toolchain_problem()
    monkeypatch.setattr(engine_module.shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(engine_module.sysconfig, "get_paths", lambda: {"include": "/nonexistent/include"})
    assert "Python headers" in compile_toolchain_problem()
    monkeypatch.setattr(triton_utils, "has_triton", lambda: False)
    assert compile_toolchain_problem() == "no working Triton"


def test_the_cache_variables_point_under_the_folder_unless_already_set(monkeypatch, tmp_path):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setenv("TRITON_CACHE_DIR", "/operator/choice")
    use_compile_cache(tmp_path / "cache")
    assert (tmp_path / "cache").is_dir()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "cache" / "inductor")
    assert os.environ["TRITON_CACHE_DIR"] == "/operator/choice"


def test_an_unwritable_cache_folder_is_reported_not_fatal(monkeypatch, tmp_path, caplog):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with caplog.at_level("WARNING", logger="ptbr.engine"):
        use_compile_cache(Path(blocker) / "cache")
    assert "not writable" in caplog.text and "TORCHINDUCTOR_CACHE_DIR" not in os.environ
