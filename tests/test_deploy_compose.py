"""deploy/compose.yaml and its override files, read the way podman-compose reads them (its own YAML tags,
normalisation, ${VAR:-default} interpolation and merge; podman itself is not needed). Bringing the image up is
scripts/smoke_compose.sh's job: it needs a container engine."""

from __future__ import annotations

from pathlib import Path

import podman_compose
import pytest
import yaml

from test_deploy_chart import CHART, NOT_LISTED, assert_settings_listed

REPO_ROOT = Path(__file__).resolve().parent.parent
DEPLOY = REPO_ROOT / "deploy"


def compose_config(*names: str, environ: dict[str, str] | None = None) -> dict:
    """Merge compose files in order as podman-compose's _parse_compose_file does."""
    merged: dict = {}
    for name in names:
        with open(DEPLOY / name, encoding="utf-8") as stream:
            content = podman_compose.normalize(yaml.safe_load(stream))  # !reset / !override registered on import
        content = podman_compose.rec_subs(content, dict(environ or {}))
        podman_compose.rec_merge(merged, content)
    return merged


def gpu_args(service: dict) -> list[str]:
    args: list[str] = []
    podman_compose.container_to_gpu_res_args(service, args)
    return args


def test_gpu_service_reserves_one_nvidia_gpu():
    tts = compose_config("compose.yaml")["services"]["tts"]
    [device] = tts["deploy"]["resources"]["reservations"]["devices"]
    assert device == {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    assert gpu_args(tts) == ["--device", "nvidia.com/gpu=0", "--security-opt=label=disable"]


def test_cpu_override_drops_the_gpu_and_forces_the_cpu():
    tts = compose_config("compose.yaml", "compose.cpu.yaml")["services"]["tts"]
    assert "deploy" not in tts
    assert gpu_args(tts) == []
    assert tts["environment"]["PTBR_DEVICE"] == "cpu"
    assert tts["volumes"] == compose_config("compose.yaml")["services"]["tts"]["volumes"]


def test_health_restart_and_data_volume():
    config = compose_config("compose.yaml")
    tts = config["services"]["tts"]
    assert tts["restart"] == "unless-stopped"
    health = tts["healthcheck"]
    assert health["test"][0] == "CMD" and "/readyz" in health["test"][-1]
    assert int(health["start_period"].removesuffix("s")) >= 300  # the model load may take minutes
    [data] = tts["volumes"]
    volume, path = data.split(":")
    assert volume in config["volumes"]
    assert path == tts["environment"]["PTBR_DATA_DIR"]
    # The image creates this directory for its user (deploy/image_setup.sh), so a fresh named volume is writable.
    assert path == "/home/bentoml/f5tts-ptbr-data"
    assert "mkdir -p \"${BENTOML_HOME:-/home/bentoml/}f5tts-ptbr-data\"" in (DEPLOY / "image_setup.sh").read_text()


def test_image_and_port_come_from_the_environment():
    tts = compose_config("compose.yaml", environ={"PTBR_IMAGE": "f5tts-ptbr:abc", "PTBR_PORT": "8080",
                                                  "PTBR_SPEED_PRESET": "fast"})["services"]["tts"]
    assert tts["image"] == "f5tts-ptbr:abc"
    assert tts["ports"] == ["8080:3000"]
    assert tts["environment"]["PTBR_SPEED_PRESET"] == "fast"


def test_model_store_override_needs_its_path_and_mounts_it_read_only():
    with pytest.raises(ValueError, match="PTBR_MODEL_STORE"):
        compose_config("compose.yaml", "compose.model-store.yaml")
    tts = compose_config("compose.yaml", "compose.model-store.yaml",
                         environ={"PTBR_MODEL_STORE": "/srv/models"})["services"]["tts"]
    assert "/srv/models:/home/bentoml/bento/models:ro" in tts["volumes"]
    assert len(tts["volumes"]) == 2  # the data volume stays


def test_every_setting_is_listed_with_the_services_default():
    from ptbr_model.settings import Settings

    environment = compose_config("compose.yaml")["services"]["tts"]["environment"]
    settings = {name: value for name, value in environment.items() if name.startswith("PTBR_")}
    assert_settings_listed(settings)
    commented = (DEPLOY / "compose.yaml").read_text()
    for name in {name for name in NOT_LISTED if not name.startswith("PTBR_TEST_")} - {"PTBR_TARGET_RMS"}:
        assert f"# {name}:" in commented, f"{name} should be shown (commented) in compose.yaml"
    defaults = Settings()
    for name, value in settings.items():
        field = name.removeprefix("PTBR_").lower()
        if name in {"PTBR_DATA_DIR", "PTBR_LOG_FORMAT"}:
            continue  # the volume's path; JSON logs for collectors (asserted below)
        assert getattr(Settings(**{field: value}), field) == getattr(defaults, field), name
    assert settings["PTBR_LOG_FORMAT"] == "json"


def test_compose_and_chart_set_the_same_values():
    environment = compose_config("compose.yaml")["services"]["tts"]["environment"]
    chart_env = yaml.safe_load((CHART / "values.yaml").read_text())["env"]
    shared = {name: value for name, value in environment.items() if name in chart_env}
    assert shared == chart_env
