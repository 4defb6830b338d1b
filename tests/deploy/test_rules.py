"""The alert rules (deploy/helm/murmur/rules): promtool checks them and runs their unit tests,
and the chart ships them unchanged in a PrometheusRule, with a ServiceMonitor, each behind a
value that is off by default."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.local import install
from tests.deploy.test_chart import CHART, of_kind, run, template, tools

__all__ = ["tools"]  # the session fixture, shared with the chart tests

RULES = CHART / "rules" / "murmur.rules.yaml"
RULE_TESTS = CHART / "rules" / "tests" / "murmur_test.yaml"
MONITORING_ON = [
    "--set",
    "metrics.serviceMonitor.enabled=true",
    "--set",
    "metrics.prometheusRule.enabled=true",
    "--set",
    "metrics.serviceMonitor.labels.release=kube-prometheus-stack",
]

# A cold Go build of promtool takes minutes on two cores (.ci/run builds it up front).
pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="session")
def promtool() -> Path:
    return install.ensure_promtool()


def _alerts() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


def test_promtool_is_the_pinned_release(promtool: Path) -> None:
    version = run([promtool, "--version"])
    assert version.returncode == 0, version.stderr
    assert "promtool, version 3.16.0" in version.stdout


def test_rules_pass_promtool_check(promtool: Path) -> None:
    result = run([promtool, "check", "rules", RULES])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 30 rules found" in result.stdout, result.stdout


def test_every_alert_fires_and_stays_quiet_in_promtool_unit_tests(promtool: Path) -> None:
    result = run([promtool, "test", "rules", RULE_TESTS])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    checks = [check for case in cases for check in case["alert_rule_test"]]
    firing = {c["alertname"] for c in checks if c["exp_alerts"]}
    quiet = {c["alertname"] for c in checks if not c["exp_alerts"]}
    assert firing == quiet == _alerts()
    assert _alerts() == {
        "MurmurApiErrorBudgetBurn",
        "MurmurApiLatencyBudgetBurn",
        "MurmurFanoutLag",
        "MurmurDeadLetters",
        "MurmurOutboxBacklog",
        "MurmurServiceNotReady",
        "MurmurPodNotReady",
        "MurmurServiceDown",
    }


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ('{queue="feed.events"}) > 10', '{queue="feed.events"}) > 1000'),
        ("(murmur_outbox_oldest_unpublished_age_seconds) > 60", "(murmur_outbox_age) > 60"),
        ("> (14.4 * 0.001)", "> (14.4 * 0.1)"),
    ],
    ids=["threshold", "metric-name", "burn-factor"],
)
def test_the_unit_tests_catch_a_broken_rule(
    promtool: Path, tmp_path: Path, before: str, after: str
) -> None:
    text = RULES.read_text()
    assert before in text
    (tmp_path / "tests").mkdir()
    (tmp_path / RULES.name).write_text(text.replace(before, after, 1))
    shutil.copy(RULE_TESTS, tmp_path / "tests" / RULE_TESTS.name)
    result = run([promtool, "test", "rules", tmp_path / "tests" / RULE_TESTS.name])
    assert result.returncode != 0, result.stdout
    assert "FAILED" in result.stdout + result.stderr


def test_monitoring_is_off_by_default(tools: Path) -> None:
    docs = template(tools)
    assert not of_kind(docs, "PrometheusRule")
    assert not of_kind(docs, "ServiceMonitor")


def test_the_chart_ships_the_checked_rules_unchanged(
    tools: Path, promtool: Path, tmp_path: Path
) -> None:
    docs = template(tools, *MONITORING_ON)
    (rule,) = of_kind(docs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    # What the operator would load passes promtool too.
    rendered = tmp_path / "rendered.rules.yaml"
    rendered.write_text(yaml.safe_dump(rule["spec"]))
    result = run([promtool, "check", "rules", rendered])
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_service_monitor_scrapes_the_five_services_and_labels_them(tools: Path) -> None:
    docs = template(tools, *MONITORING_ON)
    (monitor,) = of_kind(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    assert endpoint["relabelings"] == [
        {
            "sourceLabels": ["__meta_kubernetes_service_label_app_kubernetes_io_component"],
            "targetLabel": "murmur_service",
        }
    ]
    selected = _selected_services(monitor, of_kind(docs, "Service"))
    assert selected == {"auth", "post", "network", "feed", "email"}
    for service in of_kind(docs, "Service"):
        if service["metadata"]["labels"]["app.kubernetes.io/component"] in selected:
            assert [p["name"] for p in service["spec"]["ports"]] == ["http"]


def _selected_services(monitor: dict[str, Any], services: list[dict[str, Any]]) -> set[str]:
    selector = monitor["spec"]["selector"]
    chosen = set()
    for service in services:
        labels = service["metadata"]["labels"]
        if any(labels.get(k) != v for k, v in selector["matchLabels"].items()):
            continue
        if all(labels.get(e["key"]) in e["values"] for e in selector["matchExpressions"]):
            chosen.add(labels["app.kubernetes.io/component"])
    return chosen


def test_tracing_env_only_with_an_endpoint(tools: Path) -> None:
    def env_of(docs: list[dict[str, Any]]) -> tuple[dict[str, str], dict[str, list[str]]]:
        (config,) = [
            c for c in of_kind(docs, "ConfigMap") if c["metadata"]["name"] == "t-murmur-config"
        ]
        names = {
            d["metadata"]["name"]: [
                e.get("value", "")
                for e in d["spec"]["template"]["spec"]["containers"][0]["env"]
                if e["name"] == "OTEL_SERVICE_NAME"
            ]
            for d in of_kind(docs, "Deployment")
            if d["spec"]["template"]["metadata"]["labels"].get("murmur.io/role")
        }
        return config["data"], names

    data, names = env_of(template(tools))
    assert not any(key.startswith("OTEL_") for key in data)
    assert all(value == [] for value in names.values())

    data, names = env_of(
        template(
            tools,
            "--set",
            "tracing.otlpEndpoint=http://otel-collector.monitoring:4318",
            "--set",
            "tracing.sampler=parentbased_traceidratio",
            "--set-string",
            "tracing.samplerArg=0.01",
            "--set",
            "services.feed.workers.enabled=true",
        )
    )
    assert data["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.monitoring:4318"
    assert data["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    assert data["OTEL_TRACES_SAMPLER_ARG"] == "0.01"
    assert names["t-murmur-feed"] == ["feed_service"]
    assert names["t-murmur-feed-worker"] == ["feed_service"]
    assert names["t-murmur-auth"] == ["auth_service"]


def test_schema_rejects_a_bad_tracing_value(tools: Path) -> None:
    result = run(
        [tools / "helm", "template", "t", CHART, "--set", "tracing.otlpEndpoint=collector:4318"]
    )
    assert result.returncode != 0
    assert "otlpEndpoint" in result.stderr
