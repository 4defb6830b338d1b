"""The Helm chart: lint, render with each example, validate against Kubernetes 1.32 schemas,
run the helm-unittest suites, and check that the Ingress is the gateway's routing table."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.gateway.routes import ingress_routes
from tests.deploy.route_cases import NEAR_MISSES, ROUTED

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "murmur"
EXAMPLES = ROOT / "deploy" / "helm" / "examples"
KUBE_VERSION = "1.32.0"
SERVICES = ("auth", "post", "network", "feed", "email")
# From the project venv (a dev dependency), not whatever is on PATH.
KUBERNETES_VALIDATE = (sys.executable, "-m", "kubernetes_validate")

# A cold build of Helm and helm-unittest takes a few minutes on two cores.
pytestmark = pytest.mark.timeout(1800)

VALUE_SETS: dict[str, list[str]] = {
    "default": [],
    "production": ["-f", str(EXAMPLES / "values-production.yaml")],
    "minimal": ["-f", str(EXAMPLES / "values-minimal.yaml")],
}


@pytest.fixture(scope="session")
def tools() -> Path:
    result = subprocess.run(
        ["bash", str(ROOT / "deploy" / "tools" / "install-helm-tools.sh")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return Path(result.stdout.strip().splitlines()[-1])


def run(cmd: Sequence[object], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)


def helm_template(tools: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run([tools / "helm", "template", "t", CHART, "--kube-version", KUBE_VERSION, *args])


def template(tools: Path, *args: str) -> list[dict[str, Any]]:
    result = helm_template(tools, *args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="session")
def rendered(tools: Path) -> dict[str, list[dict[str, Any]]]:
    return {name: template(tools, *args) for name, args in VALUE_SETS.items()}


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def containers(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = doc["spec"]["template"]["spec"]
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def test_tools_are_cached_and_current(tools: Path) -> None:
    again = run(["bash", ROOT / "deploy" / "tools" / "install-helm-tools.sh"])
    assert again.returncode == 0
    assert "building" not in again.stderr, "second run rebuilt instead of using the cache"
    version = run([tools / "helm", "version", "--short"]).stdout
    assert version.startswith("v3.")
    # Built with a current default Kubernetes version, so the chart's kubeVersion constraint
    # holds without --kube-version.
    plain = run([tools / "helm", "template", "t", CHART, "--show-only", "templates/configmap.yaml"])
    assert plain.returncode == 0, plain.stderr


@pytest.mark.parametrize("values", list(VALUE_SETS))
def test_helm_lint_strict(tools: Path, values: str) -> None:
    result = run(
        [tools / "helm", "lint", "--strict", CHART, "--kube-version", KUBE_VERSION]
        + VALUE_SETS[values]
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values", list(VALUE_SETS))
def test_manifests_validate_against_kubernetes_schemas(
    tools: Path, values: str, tmp_path: Path
) -> None:
    out = tmp_path / f"{values}.yaml"
    result = helm_template(tools, *VALUE_SETS[values])
    assert result.returncode == 0, result.stderr
    out.write_text(result.stdout)
    check = run([*KUBERNETES_VALIDATE, "--strict", "-k", KUBE_VERSION, out])
    assert check.returncode == 0, check.stdout + check.stderr
    assert "passed for resource" in check.stdout + check.stderr


def test_validator_catches_a_bad_manifest(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n"
        "spec: {selector: {matchLabels: {a: b}}, replica: 2, template: {metadata: {labels: {a: b}},"
        " spec: {containers: [{name: c, image: i}]}}}\n"
    )
    check = run([*KUBERNETES_VALIDATE, "--strict", "-k", KUBE_VERSION, bad])
    assert check.returncode != 0


def test_helm_unittest_suites(tools: Path) -> None:
    result = run([tools / "helm-unittest", "--color=false", CHART])
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"Tests:\s+\d+ passed, \d+ total", result.stdout), result.stdout
    assert "failed" not in result.stdout.split("Tests:")[1].splitlines()[0]


def test_chart_routes_file_is_the_gateway_table() -> None:
    committed = json.loads((CHART / "files" / "routes.json").read_text())
    assert committed == ingress_routes(), (
        "regenerate: python -m deploy.gateway export-ingress "
        "--out deploy/helm/murmur/files/routes.json"
    )


def _ingress_table(docs: list[dict[str, Any]]) -> list[tuple[str, str, bool]]:
    table = []
    for ingress in of_kind(docs, "Ingress"):
        streaming = ingress["metadata"]["name"].endswith("-stream")
        for path in ingress["spec"]["rules"][0]["http"]["paths"]:
            service = path["backend"]["service"]["name"].removeprefix("t-murmur-")
            table.append((path["path"], service, streaming))
    return table


def test_ingress_paths_equal_the_gateway_table(rendered: dict[str, list[dict[str, Any]]]) -> None:
    expected = sorted((r["path"], r["service"], r["streaming"]) for r in ingress_routes()["routes"])
    for name in ("default", "production"):
        assert sorted(_ingress_table(rendered[name])) == expected, name
    stream = [
        i
        for i in of_kind(rendered["default"], "Ingress")
        if i["metadata"]["name"].endswith("-stream")
    ]
    annotations = stream[0]["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600


def _ingress_nginx_route(table: list[tuple[str, str, bool]], path: str) -> set[str]:
    # ingress-nginx writes `location ~* "^<path>"`: case-insensitive, anchored at the start.
    return {svc for pattern, svc, _ in table if re.match("^" + pattern, path, re.IGNORECASE)}


@pytest.mark.parametrize(("path", "service"), ROUTED)
def test_ingress_regexes_route_like_the_gateway(
    rendered: dict[str, list[dict[str, Any]]], path: str, service: str
) -> None:
    table = _ingress_table(rendered["default"])
    assert _ingress_nginx_route(table, path.split("?")[0]) == {service}


@pytest.mark.parametrize("path", [p for p in NEAR_MISSES if p != "/API/V1/ME"])
def test_ingress_regexes_miss_like_the_gateway(
    rendered: dict[str, list[dict[str, Any]]], path: str
) -> None:
    assert _ingress_nginx_route(_ingress_table(rendered["default"]), path) == set()


@pytest.mark.parametrize("values", list(VALUE_SETS))
def test_every_service_deployment_is_probed_and_locked_down(
    rendered: dict[str, list[dict[str, Any]]], values: str
) -> None:
    deployments = {
        d["metadata"]["name"].removeprefix("t-murmur-"): d
        for d in of_kind(rendered[values], "Deployment")
    }
    for name in SERVICES:
        pod = deployments[name]["spec"]["template"]
        (container,) = pod["spec"]["containers"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["resources"]["requests"] and container["resources"]["limits"]
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert pod["spec"]["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
        assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    kinds = {d["kind"] for d in rendered[values]}
    assert "ServiceAccount" in kinds and "ConfigMap" in kinds


def _env(doc: dict[str, Any], name: str) -> dict[str, Any] | None:
    (container,) = doc["spec"]["template"]["spec"]["containers"]
    return next((e for e in container.get("env", []) if e["name"] == name), None)


@pytest.mark.parametrize("values", list(VALUE_SETS))
def test_feed_reads_write_marks_from_post_services_redis(
    rendered: dict[str, list[dict[str, Any]]], values: str
) -> None:
    """Without FEED_WRITE_MARKS_REDIS_URL every first feed page calls post_service."""
    deployments = {d["metadata"]["name"]: d for d in of_kind(rendered[values], "Deployment")}
    post_redis = _env(deployments["t-murmur-post"], "POST_REDIS_URL")
    assert post_redis is not None
    feeds = [d for name, d in deployments.items() if name.startswith("t-murmur-feed")]
    assert feeds
    for feed in feeds:
        marks = _env(feed, "FEED_WRITE_MARKS_REDIS_URL")
        assert marks is not None, feed["metadata"]["name"]
        assert marks["valueFrom"] == post_redis["valueFrom"]


def test_production_scales(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["production"]
    hpas = {h["spec"]["scaleTargetRef"]["name"] for h in of_kind(docs, "HorizontalPodAutoscaler")}
    assert {"t-murmur-auth", "t-murmur-post", "t-murmur-network", "t-murmur-feed"} <= hpas
    assert all(
        h["apiVersion"] == "autoscaling/v2" for h in of_kind(docs, "HorizontalPodAutoscaler")
    )
    assert len(of_kind(docs, "PodDisruptionBudget")) == 5
    workers = [d for d in of_kind(docs, "Deployment") if d["metadata"]["name"].endswith("-worker")]
    assert any(
        w["metadata"]["name"] == "t-murmur-feed-worker" and w["spec"]["replicas"] >= 2
        for w in workers
    )


def test_external_mode_renders_no_bundled_backing_services(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["production"]
    assert of_kind(docs, "StatefulSet") == []
    names = {d["metadata"]["name"] for d in docs}
    for backing in ("postgresql", "redis", "rabbitmq", "neo4j", "mailpit"):
        assert f"t-murmur-{backing}" not in names
    # existingSecret: the chart renders no Secret and every reference points at the given one.
    assert of_kind(docs, "Secret") == []
    refs = {
        env["valueFrom"]["secretKeyRef"]["name"]
        for d in docs
        if d["kind"] in ("Deployment", "Job")
        for c in containers(d)
        for env in c.get("env", [])
        if "valueFrom" in env
    }
    assert refs == {"murmur-credentials"}


@pytest.mark.parametrize("values", list(VALUE_SETS))
def test_no_credentials_outside_the_secret(
    rendered: dict[str, list[dict[str, Any]]], values: str
) -> None:
    secret_values = {
        v
        for s in of_kind(rendered[values], "Secret")
        for k, v in s["stringData"].items()
        if v and k != "smtp-password"
    }
    for doc in rendered[values]:
        if doc["kind"] == "Secret":
            continue
        text = yaml.safe_dump(doc)
        for value in secret_values:
            for line in value.splitlines():
                if len(line) > 8:
                    assert line not in text, (
                        f"{doc['kind']}/{doc['metadata']['name']} inlines a secret"
                    )
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            for c in containers(doc):
                for env in c.get("env", []):
                    if (
                        re.search(r"PASSWORD|PASS$|_URL$|SIGNING|AUTH$", env["name"])
                        and "value" in env
                    ):
                        assert "@" not in env["value"], env
                        assert not re.search(r"PASSWORD|PASS$|SIGNING", env["name"]), env


def test_external_services_without_credentials_are_refused(tools: Path) -> None:
    result = helm_template(
        tools, "--set", "rabbitmq.bundled=false", "--set", "rabbitmq.host=mq.example.com"
    )
    assert result.returncode != 0
    assert "secrets.rabbitmqPassword is required" in result.stderr


def test_values_schema_rejects_unknown_keys(tools: Path) -> None:
    result = helm_template(tools, "--set", "services.feed.replicaz=3")
    assert result.returncode != 0
    assert "replicaz" in result.stderr
