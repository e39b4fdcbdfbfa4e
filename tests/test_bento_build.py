"""`bentoml build` packs the service, its code and the imported model; the generated Dockerfile installs FFmpeg, a C
compiler and torch from the cu126 index (Pascal kernels), and leaves no package cache in the image.
`bentoml containerize` needs a container engine, which CI lacks: scripts/smoke_container.sh builds and runs the
image where one is (README "Deploy")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import bentoml
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from bentofile_variant import variant  # noqa: E402


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
    # bentoml mounts uv's cache only under BuildKit; any other builder would write it into the image.
    assert "ENV UV_NO_CACHE=$UV_NO_CACHE" in dockerfile and "ARG UV_NO_CACHE=1" in dockerfile
    # torch.compile needs a C compiler, Python's headers (the setup script) and setuptools at run time.
    assert "build-essential" in dockerfile
    [script] = [line for line in dockerfile.splitlines() if "./env/docker/script__" in line]
    script_name = script.split("&& ./env/docker/")[1].strip()
    assert (root / "env" / "docker" / script_name).read_text() == (repo_root / "deploy" / "image_setup.sh").read_text()
    assert "setuptools==" in requirements


def test_pypi_variant_drops_only_the_torch_index(repo_root: Path, tmp_path: Path):
    """scripts/smoke_container.sh --torch-index pypi builds from this variant: the same bento without the cu126 index."""
    config = yaml.safe_load((repo_root / "bentofile.yaml").read_text())
    pypi = variant(config, "pypi")
    assert "extra_index_url" not in pypi["python"]
    assert {**pypi, "python": None} == {**config, "python": None}
    assert {k: v for k, v in config["python"].items() if k != "extra_index_url"} == pypi["python"]
    assert variant(config, "cu126") == config
    out = tmp_path / "bentofile.yaml"
    script = repo_root / "scripts" / "bentofile_variant.py"
    subprocess.run([sys.executable, str(script), "--torch-index", "pypi", str(out)], check=True, timeout=60)
    assert yaml.safe_load(out.read_text()) == pypi
