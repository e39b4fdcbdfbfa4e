"""`bentoml build` packs the service, its code and the imported model; the generated Dockerfile installs FFmpeg and
torch from the cu126 index (Pascal kernels). `bentoml containerize` needs a Docker engine, which CI lacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import bentoml
import yaml


def test_bentoml_build_packs_service_code_and_model(repo_root: Path):
    bin_dir = Path(sys.executable).parent
    tag = subprocess.run([sys.executable, str(repo_root / "scripts" / "import_model.py"), "--demo"],
                         capture_output=True, text=True, timeout=180, check=True).stdout.strip()
    built = subprocess.run([str(bin_dir / "bentoml"), "build", "--output", "tag"], cwd=repo_root,
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-2000:]
    bento_tag = built.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    bento = bentoml.bentos.get(bento_tag)
    root = Path(bento.path)

    manifest = yaml.safe_load((root / "bento.yaml").read_text())
    assert manifest["name"] == "f5tts-ptbr"
    assert manifest["service"] == "service:PtBrTTS"
    packed_models = [model["tag"] for service in manifest["services"] for model in service["models"]]
    assert packed_models == [tag]
    assert (root / "src" / "service.py").is_file()
    assert (root / "src" / "ptbr_model" / "engine.py").is_file()
    assert (root / "src" / "ptbr_model" / "text" / "normalizer.py").is_file()
    assert not (root / "src" / "tests").exists()
    assert (Path(bentoml.models.get(tag).path) / "model.safetensors").is_file()

    requirements = (root / "env" / "python" / "requirements.txt").read_text()
    assert "--extra-index-url https://download.pytorch.org/whl/cu126" in requirements
    assert "torch==2.9.1" in requirements and "f5-tts==1.1.22" in requirements
    dockerfile = (root / "env" / "docker" / "Dockerfile").read_text()
    assert "ffmpeg" in dockerfile
    assert "UV_INDEX_STRATEGY=unsafe-best-match" in dockerfile
