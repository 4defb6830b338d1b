"""The local platform runner's process handling (no services needed)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from deploy.image.containers import ContainerPlatform
from deploy.local.process import pid_alive, terminate
from deploy.platform.runner import SERVICES, Backing, Platform

BACKING = Backing(
    database_urls={"auth": "postgresql+asyncpg://u@h:1/a", "post": "postgresql+asyncpg://u@h:1/p"},
    redis_url="redis://127.0.0.1:7000",
    amqp_url="amqp://guest:guest@127.0.0.1:7001/",
    neo4j_uri="bolt://127.0.0.1:7002",
    smtp_host="127.0.0.1",
    smtp_port=7003,
)
PORTS = {"auth": 9001, "post": 9002, "network": 9003, "feed": 9004, "email": 9005}


def test_terminate_reaps_its_own_child_instead_of_waiting_out_the_grace_period() -> None:
    child = subprocess.Popen(["sleep", "60"], start_new_session=True)
    started = time.monotonic()
    terminate(child.pid, timeout_s=10.0)
    # An unreaped child would pass kill(pid, 0) as a zombie until the 10 s grace ran out.
    assert time.monotonic() - started < 5.0
    assert not pid_alive(child.pid)


def test_spawn_leaves_no_log_file_open_in_the_runner(tmp_path: Path) -> None:
    platform = Platform(backing=BACKING, state_dir=tmp_path, ports=PORTS)
    platform.log_dir.mkdir(parents=True)
    platform.run_dir.mkdir(parents=True)
    code = "import sys, time; print('up', flush=True); time.sleep(60)"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        platform._spawn("svc", [sys.executable, "-c", code], os.environ)
        gc.collect()
    try:
        log = platform.log_of("svc")
        # The log file was left for the garbage collector to close ("unclosed file").
        assert [str(w.message) for w in caught if "unclosed file" in str(w.message)] == []
        deadline = time.monotonic() + 10
        while "up" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "up" in log.read_text()  # the child still writes to it
    finally:
        platform.stop_service("svc")
    assert platform.pid_of("svc") is None


def test_env_for_prefixes_each_services_settings(tmp_path: Path) -> None:
    platform = Platform(
        backing=Backing(
            database_urls={
                "auth": "postgresql+asyncpg://u@h:1/a",
                "post": "postgresql+asyncpg://u@h:1/p",
            },
            redis_url="redis://127.0.0.1:7000",
            amqp_url="amqp://guest:guest@127.0.0.1:7001/",
            neo4j_uri="bolt://127.0.0.1:7002",
            smtp_host="127.0.0.1",
            smtp_port=7003,
        ),
        state_dir=tmp_path,
        ports={"auth": 9001, "post": 9002, "network": 9003, "feed": 9004, "email": 9005},
        gateway_port=9080,
    )
    feed = platform.env_for("feed")
    assert feed["FEED_POST_SERVICE_URL"] == "http://127.0.0.1:9002"
    # One generated service token for all, kept across restarts of the same state directory.
    token = feed["FEED_INTERNAL_TOKEN"]
    assert len(token) >= 32
    assert platform.env_for("post")["POST_INTERNAL_TOKEN"] == token
    assert platform.env_for("network")["NETWORK_INTERNAL_TOKEN"] == token
    assert platform.env_for("auth")["AUTH_TRUSTED_PROXIES"] == "127.0.0.1"
    assert feed["FEED_NETWORK_SERVICE_URL"] == "http://127.0.0.1:9003"
    assert feed["FEED_JWKS_URL"] == "http://127.0.0.1:9001/.well-known/jwks.json"
    assert feed["FEED_REDIS_URL"].startswith("redis://127.0.0.1:7000/")
    assert platform.env_for("post")["POST_DATABASE_URL"].endswith("/p")
    assert platform.env_for("email")["EMAIL_SMTP_PORT"] == "7003"
    assert platform.env_for("email")["EMAIL_PUBLIC_BASE_URL"] == "http://127.0.0.1:9080"
    auth = platform.env_for("auth")
    key = Path(auth["AUTH_SIGNING_KEY_FILE"])
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert key.stat().st_mode & 0o077 == 0  # the development key is private to its owner
    # Distinct Redis databases, so services never read each other's keys.
    dbs = {platform.env_for(s)[f"{s.upper()}_REDIS_URL"] for s in SERVICES}
    assert len(dbs) == len(SERVICES)


def test_container_env_is_the_settings_only_with_the_key_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MURMUR_HOST_ONLY", "x")
    platform = ContainerPlatform(backing=BACKING, state_dir=tmp_path, ports=PORTS)
    assert "MURMUR_HOST_ONLY" in platform.env_for("auth")  # a process inherits ours
    auth = platform.container_env("auth")
    assert "MURMUR_HOST_ONLY" not in auth and "PATH" not in auth  # a container does not
    # As the chart's Secret passes it: the PEM itself, not a path on the host.
    assert "AUTH_SIGNING_KEY_FILE" not in auth
    assert auth["AUTH_SIGNING_KEYS"].startswith("-----BEGIN PRIVATE KEY-----")
    assert auth["SERVICE_PORT"] == "9001" and auth["AUTH_RUN_WORKERS"] == "true"
    assert set(platform.container_env("network")) >= {"NETWORK_NEO4J_URI", "NETWORK_AMQP_URL"}
    assert all(
        key.startswith(("EMAIL_", "SERVICE_PORT")) for key in platform.container_env("email")
    )
