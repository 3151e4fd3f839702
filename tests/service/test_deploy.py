"""Deployment files agree with the app: compose validates, probes hit real routes,
ConfigMap keys are real settings, dashboard queries name real metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from service.app import create_app
from service.metrics import ServiceMetrics
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"


def app_routes() -> set[str]:
    """Every path the app serves (FastAPI >= 0.16x nests included routers)."""
    app = create_app(Settings(artifacts=None, reload_enabled=True, reload_token="x" * 16))

    def walk(routes) -> set[str]:
        out = set()
        for route in routes:
            if hasattr(route, "path"):
                out.add(route.path)
            inner = getattr(route, "original_router", None) or getattr(route, "router", None)
            if inner is not None:
                out |= walk(inner.routes)
        return out

    paths = walk(app.routes)
    assert set(app.openapi()["paths"]) <= paths
    return paths


def k8s_docs() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def find(kind: str, name: str) -> dict:
    return next(d for d in k8s_docs() if d["kind"] == kind and d["metadata"]["name"] == name)


def compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_docker_compose_config_is_valid():
    cli = compose_cli()
    if cli is None:
        pytest.skip("neither `docker compose` (plugin) nor `docker-compose` is installed")
    result = subprocess.run(
        [*cli, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr


def test_compose_wires_redis_prometheus_and_grafana_to_files_that_exist():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"retrieval", "redis", "prometheus", "grafana"} <= set(services)
    retrieval = services["retrieval"]
    assert retrieval["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "healthcheck" in services["redis"]
    assert retrieval["environment"]["REDIS_URL"].startswith("redis://redis:")
    for svc in ("prometheus", "grafana"):
        for volume in services[svc]["volumes"]:
            host = volume.split(":")[0]
            assert (ROOT / host).exists(), host
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    job = prom["scrape_configs"][0]
    assert job["metrics_path"] in app_routes()
    assert job["static_configs"][0]["targets"] == ["retrieval:8000"]


def test_dockerfiles_probe_a_real_route_and_run_as_non_root():
    routes = app_routes()
    for name in ("Dockerfile", "Dockerfile.gpu"):
        text = (ROOT / name).read_text()
        health = re.search(r"HEALTHCHECK.*?(/v2/health/\w+)", text, re.S)
        assert health and health.group(1) in routes, name
        assert re.search(r"^USER 10001", text, re.M), name
        assert '".[serve]"' in text and "[train" not in text, name
        assert '! python -c "import torch"' in text, name  # the build fails if torch sneaks in
        assert 'ENTRYPOINT ["python", "-m", "service"]' in text


def test_k8s_probes_point_at_real_routes_and_ports():
    routes = app_routes()
    deployment = find("Deployment", "seater-retrieval")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    probes = {k: container[k] for k in ("startupProbe", "livenessProbe", "readinessProbe")}
    for probe in probes.values():
        assert probe["httpGet"]["path"] in routes
        assert probe["httpGet"]["port"] in ports
    assert probes["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert probes["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert (
        container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
    )


def test_k8s_objects_reference_each_other():
    deployment = find("Deployment", "seater-retrieval")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = find("Service", "seater-retrieval")
    assert service["spec"]["selector"].items() <= labels.items()
    hpa = find("HorizontalPodAutoscaler", "seater-retrieval")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "seater-retrieval"
    redis_svc = find("Service", "seater-redis")
    redis_dep = find("Deployment", "seater-redis")
    assert (
        redis_svc["spec"]["selector"].items()
        <= redis_dep["spec"]["template"]["metadata"]["labels"].items()
    )
    config = find("ConfigMap", "seater-retrieval")["data"]
    assert config["REDIS_URL"].startswith(f"redis://{redis_svc['metadata']['name']}:")
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert set(kustomization["resources"]) == {p.name for p in K8S.glob("*.yaml")} - {
        "kustomization.yaml"
    }


def test_k8s_configmap_keys_are_settings_and_validate(monkeypatch):
    config = find("ConfigMap", "seater-retrieval")["data"]
    fields = {f"SEATER_{name.upper()}" for name in Settings.model_fields} | {"REDIS_URL"}
    assert set(config) <= fields, set(config) - fields
    for key, value in config.items():
        monkeypatch.setenv(key, value)
    settings = Settings()  # the deployed values pass the validators
    assert settings.redis_url == config["REDIS_URL"] and settings.host == "0.0.0.0"


def test_grafana_dashboard_queries_only_real_metrics():
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/seater-retrieval.json").read_text())
    exposed = ServiceMetrics().render()[0].decode()
    types = dict(re.findall(r"^# TYPE (seater_\w+) (\w+)$", exposed, re.M))
    names = set(types) | {
        n + suffix
        for n, t in types.items()
        if t == "histogram"
        for suffix in ("_bucket", "_sum", "_count")
    }
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\bseater_\w+", e)}
    assert used and used <= names, used - names
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("latency", "queue", "encoder", "beam", "batch", "cache", "errors"):
        assert topic in titles
