"""deploy/compose.yaml: schema-valid, and structured the way the services need."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from deploy.gateway.render import (
    COMPOSE_CONFIG,
    default_upstreams,
    nginx_command,
    render_nginx_conf,
)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose.yaml"
SCHEMA = Path(__file__).parent / "schemas" / "compose_spec.json"
APP_SERVICES = {"auth": 8001, "post": 8002, "network": 8003, "feed": 8004, "email": 8005}
MIGRATIONS = {"auth-migrate", "post-migrate", "network-migrate"}
BACKING = {"postgres", "redis", "rabbitmq", "neo4j", "mailpit"}
PREFIX = {
    "auth": "AUTH_",
    "post": "POST_",
    "network": "NETWORK_",
    "feed": "FEED_",
    "email": "EMAIL_",
}
_VAR = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def _interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?error}` with the given environment."""
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if env.get(name):
            return env[name]
        if op in (":-", "-"):
            return arg
        if op in (":?", "?"):
            raise KeyError(f"{name} is required: {arg}")
        return ""

    return _VAR.sub(sub, value.replace("$$", "\0")).replace("\0", "$")


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any]) -> dict[str, Any]:
    resolved = _interpolate(raw, {})
    # YAML anchors are resolved by the loader; the x- blocks only serve as anchors.
    return {k: v for k, v in resolved.items() if not k.startswith("x-")}


def test_matches_the_compose_specification(raw: dict[str, Any], compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validate(raw, schema)
    jsonschema.validate(compose, schema)


def test_schema_rejects_a_broken_file(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    broken = json.loads(json.dumps(compose))
    broken["services"]["auth"]["healthcheck"]["intervall"] = "5s"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_all_parts_are_there(compose: dict[str, Any]) -> None:
    services = set(compose["services"])
    assert services >= set(APP_SERVICES) | MIGRATIONS | BACKING | {"gateway"}
    images = {name: svc.get("image", "") for name, svc in compose["services"].items()}
    assert images["neo4j"] == "neo4j:5.26-community"
    assert images["rabbitmq"] == "rabbitmq:3.10-management"
    assert images["mailpit"] == "axllent/mailpit:v1.33.1"


def test_every_long_running_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        if name in MIGRATIONS:
            assert svc["restart"] == "no"
            continue
        check = svc.get("healthcheck")
        assert check and not check.get("disable"), f"{name} has no healthcheck"
        assert check["test"], name


def test_services_wait_for_their_migrations_and_backing_services(compose: dict[str, Any]) -> None:
    needs = {"auth": "auth-migrate", "post": "post-migrate", "network": "network-migrate"}
    for name in APP_SERVICES:
        deps = compose["services"][name]["depends_on"]
        assert deps["rabbitmq"]["condition"] == "service_healthy"
        if name in needs:
            assert deps[needs[name]]["condition"] == "service_completed_successfully"
        assert any(d.endswith("-migrate") for d in deps), name
        for dep, rule in deps.items():
            expected = "service_completed_successfully" if dep in MIGRATIONS else "service_healthy"
            assert rule["condition"] == expected, (name, dep)
    for job in MIGRATIONS:
        for rule in compose["services"][job]["depends_on"].values():
            assert rule["condition"] == "service_healthy"
    gateway_deps = compose["services"]["gateway"]["depends_on"]
    assert set(gateway_deps) == {"auth", "post", "network", "feed"}


def test_services_run_their_own_module_with_prefixed_settings(compose: dict[str, Any]) -> None:
    for name, port in APP_SERVICES.items():
        svc = compose["services"][name]
        assert svc["command"][:4] == ["python", "-m", f"{name}_service", "serve"]
        assert svc["command"][-1] == str(port)
        env = svc["environment"]
        assert env["SERVICE_PORT"] == str(port)
        settings = {k for k in env if k != "SERVICE_PORT" and not k.startswith("OTEL_")}
        assert settings and all(k.startswith(PREFIX[name]) for k in settings), settings
        assert f"{PREFIX[name]}AMQP_URL" in env
    assert "AUTH_DATABASE_URL" in compose["services"]["auth"]["environment"]
    assert "POST_DATABASE_URL" in compose["services"]["post"]["environment"]
    assert "NETWORK_NEO4J_PASSWORD" in compose["services"]["network"]["environment"]
    assert compose["services"]["feed"]["environment"]["FEED_POST_SERVICE_URL"] == "http://post:8002"
    assert compose["services"]["email"]["environment"]["EMAIL_SMTP_HOST"] == "mailpit"
    for job in MIGRATIONS:
        assert compose["services"][job]["command"][-1] == "migrate"


def test_tracing_is_off_unless_an_endpoint_is_given(raw: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        env = _interpolate(raw, {})["services"][name]["environment"]
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == ""  # common.tracing: off
        assert env["OTEL_SERVICE_NAME"] == f"{name}_service"
        on = _interpolate(raw, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"})
        assert on["services"][name]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == (
            "http://jaeger:4318"
        )
    jaeger = raw["services"]["jaeger"]
    assert jaeger["profiles"] == ["tracing"]
    assert jaeger["image"].startswith("jaegertracing/jaeger:2.")


def test_secrets_come_from_the_environment(raw: dict[str, Any]) -> None:
    secretish = re.compile(r"PASSWORD|PASS$|SECRET|SIGNING|_AUTH$|_URL$")
    for name, svc in raw["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            if not secretish.search(key) or not isinstance(value, str):
                continue
            creds = re.search(r"://([^@/]*)@", value)
            if key.endswith("_URL") and not creds:
                continue  # no credentials in this URL
            # Every credential is a ${VAR} or ${VAR:-dev default}, so a real one never lives here.
            literal = _VAR.sub("", creds[1] if creds else value).replace("neo4j/", "")
            assert literal.strip(":") == "", f"{name}.{key} inlines {value!r}"


def test_overrides_reach_every_service(raw: dict[str, Any]) -> None:
    resolved = _interpolate(raw, {"POSTGRES_PASSWORD": "s3cret", "RABBITMQ_PASSWORD": "r4bbit"})
    env = resolved["services"]["auth"]["environment"]
    assert ":s3cret@postgres" in env["AUTH_DATABASE_URL"]
    assert ":r4bbit@rabbitmq" in env["AUTH_AMQP_URL"]
    assert resolved["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] == "s3cret"


def test_only_the_gateway_and_dev_uis_publish_ports(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
        if name in APP_SERVICES:
            assert "ports" not in svc, f"{name} must be reached through the gateway"
    assert compose["services"]["gateway"]["ports"] == ["127.0.0.1:8080:8080"]


def test_gateway_config_is_the_rendered_table(compose: dict[str, Any]) -> None:
    mount = compose["services"]["gateway"]["volumes"][0]
    source = mount.split(":", 1)[0]
    committed = (COMPOSE.parent / source).read_text()
    assert committed == render_nginx_conf(COMPOSE_CONFIG), (
        "regenerate: python -m deploy.gateway render --preset compose "
        "--out deploy/gateway/nginx.compose.conf"
    )


def test_no_env_leaks_into_the_test() -> None:
    # The assertions above resolve defaults; a developer's exported passwords must not mask them.
    assert _interpolate("${NOPE_NOT_SET_X:-d}", dict(os.environ)) == "d"


def test_compose_gateway_config_passes_nginx_t(tmp_path: Path) -> None:
    # Same options as the committed file; upstream names resolve only inside compose, so they
    # are swapped for loopback addresses here.
    config = dataclasses.replace(
        COMPOSE_CONFIG, upstreams=default_upstreams(), runtime_dir=str(tmp_path)
    )
    conf = tmp_path / "nginx.conf"
    conf.write_text(render_nginx_conf(config))
    # The image's command adds `-g 'daemon off;'`, which clashes with a daemon line in the file.
    result = subprocess.run(
        [*nginx_command(conf, tmp_path), "-g", "daemon off;", "-t"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_services_trust_only_the_gateway_and_share_the_internal_token(
    compose: dict[str, Any],
) -> None:
    network = compose["networks"]["default"]["ipam"]["config"][0]
    gateway_ip = ipaddress.ip_address(
        compose["services"]["gateway"]["networks"]["default"]["ipv4_address"]
    )
    # Fixed, inside the subnet, outside the range other containers draw from.
    assert gateway_ip in ipaddress.ip_network(network["subnet"])
    assert gateway_ip not in ipaddress.ip_network(network["ip_range"])
    tokens = set()
    for name in ("auth", "post", "network", "feed", "email"):
        env = compose["services"][name]["environment"]
        prefix = name.upper()
        assert env[f"{prefix}_TRUSTED_PROXIES"] == str(gateway_ip)
        tokens.add(env[f"{prefix}_INTERNAL_TOKEN"])
    assert len(tokens) == 1 and len(tokens.pop()) >= 32
