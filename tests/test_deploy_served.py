"""The deployment files against the real service: `bentoml serve` with the demo model answers the probe paths the
chart and compose use, and its /metrics exports every series the autoscaler and prometheus-adapter read."""

from __future__ import annotations

import httpx
import pytest
import yaml

from test_deploy_chart import ADAPTER_VALUES, VARIANTS, by_kind, container, render
from test_deploy_compose import compose_config

pytestmark = pytest.mark.served


@pytest.fixture(scope="module")
def service(demo_service):
    return demo_service


def metric_types(text: str) -> dict[str, str]:
    return {line.split()[2]: line.split()[3] for line in text.splitlines() if line.startswith("# TYPE ")}


def test_probe_paths_answer_200_once_ready(service):
    tts = container(by_kind(render(VARIANTS["defaults"])))
    compose_health = compose_config("compose.yaml")["services"]["tts"]["healthcheck"]["test"][-1]
    paths = {tts[probe]["httpGet"]["path"] for probe in ("startupProbe", "readinessProbe", "livenessProbe")}
    paths.add(compose_health.split("127.0.0.1:3000")[1].split("'")[0])
    assert paths == {"/readyz", "/livez"}
    for path in paths:
        assert httpx.get(service.url + path, timeout=10).status_code == 200, path


def test_metrics_the_autoscaler_reads_are_exported_gauges(service):
    objects = by_kind(render(VARIANTS["autoscaled"]))
    path = objects["PodMonitor"]["spec"]["podMetricsEndpoints"][0]["path"]
    response = httpx.get(service.url + path, timeout=10)
    assert response.status_code == 200
    types = metric_types(response.text)
    scaled_on = {metric["pods"]["metric"]["name"] for metric in objects["HorizontalPodAutoscaler"]["spec"]["metrics"]}
    published = {rule["name"]["as"] for rule in yaml.safe_load(ADAPTER_VALUES.read_text())["rules"]["custom"]}
    for name in scaled_on | published:
        assert types.get(name) == "gauge", f"{name} is not a gauge on {path}: {types.get(name)}"
