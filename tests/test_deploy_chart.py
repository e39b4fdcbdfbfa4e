"""The Helm chart (deploy/helm/f5tts-ptbr), checked offline: rendered by Helm's own Go library (helm-python-sdk),
validated against named Kubernetes versions' schemas (kubernetes-validate, strict), checked by checkov, and held to
the service's real contract (port, probe paths, image user, settings). The metric names it scales on are checked
against a running service in tests/test_deploy_served.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
CHART = REPO_ROOT / "deploy" / "helm" / "f5tts-ptbr"
ADAPTER_VALUES = REPO_ROOT / "deploy" / "helm" / "prometheus-adapter-values.yaml"
# The oldest version the chart declares (Chart.yaml kubeVersion) and a current one.
KUBERNETES_VERSIONS = ("1.29.0", "1.33.0")
# Kinds from CRDs (Prometheus operator): no schema in kubernetes-validate; their fields are asserted below.
CRD_KINDS = {"PodMonitor"}
VARIANTS = {
    "defaults": {},
    "autoscaled": {"autoscaling": {"enabled": True}, "metrics": {"podMonitor": {"enabled": True}}},
    "pinned-existing-claim": {
        "image": {"digest": "sha256:" + "ab" * 32},
        "persistence": {"existingClaim": "shared-tts-data"},
        "runtimeClassName": "nvidia",
        "extraEnv": [{"name": "PTBR_COMPILE", "value": "true"}],
        "networkPolicy": {"from": [{"namespaceSelector": {"matchLabels": {"name": "gateway"}}}]},
    },
}
# checkov findings the chart keeps on purpose (everything else must pass):
CHECKOV_SKIPS = {
    # Image digest: users build and push their own image; the chart takes image.digest when they have one.
    "CKV_K8S_43",
    # imagePullPolicy Always: the image is several GB and tags are per build; IfNotPresent avoids re-pulls.
    "CKV_K8S_15",
    # UID ≥ 10000: the uid is bentoml's image user (1034, fixed in its generated Dockerfile), not ours to choose.
    "CKV_K8S_40",
}


def render(values: dict, namespace: str = "speech") -> list[dict]:
    with helm.Chart.load(str(CHART)) as chart:
        manifests = chart.render(values, name="tts", namespace=namespace)
    documents = []
    for name, text in manifests.items():
        if name.endswith(".yaml"):
            documents.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return documents


def by_kind(documents: list[dict]) -> dict[str, dict]:
    kinds: dict[str, dict] = {}
    for doc in documents:
        assert doc["kind"] not in kinds, f"two {doc['kind']} objects"
        kinds[doc["kind"]] = doc
    return kinds


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict[str, dict]]:
    return {variant: by_kind(render(values)) for variant, values in VARIANTS.items()}


def test_helm_lint_finds_nothing_above_info():
    report = helm.lint(str(CHART))
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] > 1] == []  # 1 = INFO (an icon is recommended)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_object_validates_strictly(rendered, variant, version):
    checked = 0
    for kind, doc in rendered[variant].items():
        if kind in CRD_KINDS:
            continue
        kubernetes_validate.validate(doc, version, strict=True)  # raises ValidationError with the path
        checked += 1
    assert checked >= 5  # Deployment, Service, ServiceAccount, PodDisruptionBudget, NetworkPolicy at least


def test_strict_validation_rejects_a_misspelt_field(rendered):
    """The validator really checks strictly: an unknown field in the pod spec is an error."""
    deployment = json.loads(json.dumps(rendered["defaults"]["Deployment"]))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGets"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def container(objects: dict[str, dict]) -> dict:
    [tts] = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    return tts


def test_deployment_asks_for_one_gpu_and_probes_the_real_routes(rendered):
    from bentoml._internal.configuration.containers import BentoMLContainer

    objects = rendered["defaults"]
    tts = container(objects)
    assert tts["resources"]["limits"]["nvidia.com/gpu"] == 1
    [port] = tts["ports"]
    assert port["containerPort"] == BentoMLContainer.http.port.get() == 3000  # what the image's bentoml serves on
    assert tts["startupProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert tts["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert tts["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    startup = tts["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300  # a model load and a first compile
    service = objects["Service"]["spec"]
    assert service["ports"][0]["targetPort"] == "http"
    assert service["selector"] == objects["Deployment"]["spec"]["selector"]["matchLabels"]


def test_pod_runs_as_the_images_user_and_can_write_the_shared_volume(rendered):
    from bentoml._internal.container.generate import BENTO_UID_GID

    objects = rendered["defaults"]
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    context = pod["securityContext"]
    assert context["runAsUser"] == context["runAsGroup"] == context["fsGroup"] == BENTO_UID_GID
    env = {item["name"]: item.get("value") for item in container(objects)["env"]}
    mounts = {mount["name"]: mount["mountPath"] for mount in container(objects)["volumeMounts"]}
    assert mounts["data"] == env["PTBR_DATA_DIR"]
    assert env["TORCHINDUCTOR_CACHE_DIR"].startswith(env["PTBR_DATA_DIR"])
    [data] = [volume for volume in pod["volumes"] if volume["name"] == "data"]
    claim = objects["PersistentVolumeClaim"]
    assert data["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    existing = rendered["pinned-existing-claim"]
    assert "PersistentVolumeClaim" not in existing
    [data] = [v for v in existing["Deployment"]["spec"]["template"]["spec"]["volumes"] if v["name"] == "data"]
    assert data["persistentVolumeClaim"]["claimName"] == "shared-tts-data"
    assert container(existing)["image"] == "registry.example.com/f5tts-ptbr@sha256:" + "ab" * 32


def test_read_only_root_has_scratch_wherever_the_service_writes(rendered):
    """Proven by scripts/smoke_container.sh --read-only, which must run the image the same way."""
    tts = container(rendered["defaults"])
    assert tts["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {mount["mountPath"] for mount in tts["volumeMounts"]}
    # bentoml creates these under its home at start (bentoml._internal.configuration.containers.bentoml_home).
    bentoml_dirs = {f"/home/bentoml/{name}" for name in ("bentos", "models", "envs", "tmp")}
    assert bentoml_dirs | {"/tmp"} <= mounts
    env = {item["name"]: item.get("value") for item in tts["env"]}
    moved = {name: value for name, value in env.items()
             if name in {"NUMBA_CACHE_DIR", "MPLCONFIGDIR", "CUDA_CACHE_PATH", "BENTOML_RESULT_STORE"}}
    assert len(moved) == 4 and all(value.startswith("/tmp/") for value in moved.values())
    script = (REPO_ROOT / "scripts" / "smoke_container.sh").read_text()
    [dirs] = re.findall(r"for dir in ([a-z ]+); do RUN_ARGS", script)
    assert {f"/home/bentoml/{name}" for name in dirs.split()} == bentoml_dirs
    for name, value in moved.items():
        assert f"-e {name}={value}" in script


def test_disruption_budget_and_autoscaler_target_the_deployment(rendered):
    objects = rendered["autoscaled"]
    labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert objects["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    assert objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = objects["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == objects["Deployment"]["metadata"]["name"]
    assert "replicas" not in objects["Deployment"]["spec"]  # the autoscaler owns the count
    assert [metric["type"] for metric in hpa["metrics"]] == ["Pods"]  # a GPU queue signal, not CPU
    assert [metric["pods"]["metric"]["name"] for metric in hpa["metrics"]] == ["ptbr_queue_length"]
    monitor = objects["PodMonitor"]["spec"]
    assert monitor["podMetricsEndpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]
    assert monitor["selector"]["matchLabels"].items() <= labels.items()
    assert "HorizontalPodAutoscaler" not in rendered["defaults"]


def test_prometheus_adapter_publishes_every_metric_the_autoscaler_reads():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    adapter = yaml.safe_load(ADAPTER_VALUES.read_text())
    published = {rule["name"]["as"] for rule in adapter["rules"]["custom"]}
    for rule in adapter["rules"]["custom"]:
        assert rule["seriesQuery"].startswith(rule["name"]["as"] + "{")  # published under the series' own name
    assert {metric["name"] for metric in values["autoscaling"]["metrics"]} <= published


def test_chart_env_lists_the_settings_with_the_services_defaults():
    from ptbr_model.settings import Settings

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart_env = values["env"]
    assert_settings_listed(chart_env, exempt={"PTBR_DATA_DIR"})  # the data dir comes from the dataDir value
    defaults = Settings()
    for name, value in chart_env.items():
        field = name.removeprefix("PTBR_").lower()
        if name == "PTBR_LOG_FORMAT":
            assert value == "json"  # the one deliberate difference: collectors parse JSON
            continue
        assert getattr(Settings(**{field: value}), field) == getattr(defaults, field), name


# Settings a deployment does not set: how loud a reference is trained at is the model's, not the operator's;
# compile is being reworked (PTBR_COMPILE=auto) and goes in extraEnv; nfe_step unset means "from the preset".
# Not listed: no default to show (NFE_STEP, LOUDNESS, LEXICON_FILE, DEFAULT_VOICE, LATENCY_BUDGET_S,
# COMPILE_CACHE_DIR, CUDA_MEMORY_FRACTION: unset means "not set"), a model constant (TARGET_RMS), test hooks that must never be set in a
# deployment (TEST_*), COMPILE (see compose.yaml), API keys (secrets: from a Secret or .env, never a values file).
NOT_LISTED = {"PTBR_TARGET_RMS", "PTBR_COMPILE", "PTBR_NFE_STEP", "PTBR_LOUDNESS", "PTBR_TEST_VOICE_COMMIT_PAUSE_S",
              "PTBR_LEXICON_FILE", "PTBR_DEFAULT_VOICE", "PTBR_LATENCY_BUDGET_S", "PTBR_COMPILE_CACHE_DIR",
              "PTBR_TEST_JOB_CHUNK_PAUSE_S", "PTBR_API_KEYS", "PTBR_API_KEYS_FILE", "PTBR_TEST_OOM_TRIGGER",
              "PTBR_CUDA_MEMORY_FRACTION", "PTBR_TEST_OOM_ONCE_TRIGGER"}


def assert_settings_listed(env: dict, exempt: set[str] = frozenset()) -> None:
    from ptbr_model.settings import Settings

    expected = {f"PTBR_{name.upper()}" for name in Settings.model_fields} - NOT_LISTED - set(exempt)
    missing = expected - set(env)
    assert not missing, f"settings missing from the deployment's environment: {sorted(missing)}"


def test_checkov_passes_but_for_the_commented_skips(rendered, tmp_path: Path):
    for variant, objects in rendered.items():
        folder = tmp_path / variant
        folder.mkdir()
        for kind, doc in objects.items():
            (folder / f"{kind.lower()}.yaml").write_text(yaml.safe_dump(doc))
    uv = Path(sys.executable).parent / "uv"
    command = [
        str(uv), "tool", "run", "--from", "checkov==3.3.30", "--constraints", str(REPO_ROOT / "requirements-checkov.txt"),
        "checkov", "--directory", str(tmp_path), "--framework", "kubernetes", "--skip-download", "--quiet",
        "--output", "json", "--skip-check", ",".join(sorted(CHECKOV_SKIPS)),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode in (0, 1), result.stderr[-2000:]  # 1 = findings, reported below
    report = json.loads(result.stdout)
    summary = report["summary"]
    failed = [(check["check_id"], check["resource"]) for check in report["results"]["failed_checks"]]
    assert failed == [], failed
    assert summary["passed"] >= 100
