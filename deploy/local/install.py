"""Install what the local servers need, on first use, from the reachable registries.

Debian packages (PostgreSQL 15, Redis 7, RabbitMQ 3.10), the embedded Neo4j launcher (Maven
Central, built once and cached under ~/.cache/murmur) and the MailHog-compatible mail catcher's
Python dependency (PyPI). Each step is a no-op when its result is already there.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from deploy.local.process import ServerError, run

NEO4J_VERSION = "5.26.30"
JAVA_HOME = Path("/usr/lib/jvm/java-17-openjdk-amd64")
LAUNCHER_SOURCE = Path(__file__).parent / "neo4j-launcher"
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")

# Debian package -> a file it installs that we use.
APT_PACKAGES: dict[str, Path] = {
    "postgresql": Path("/usr/lib/postgresql/15/bin/postgres"),
    "redis-server": Path("/usr/bin/redis-server"),
    "rabbitmq-server": Path("/usr/lib/rabbitmq/bin/rabbitmq-server"),
    "nginx": Path("/usr/sbin/nginx"),  # the local gateway
    # The service image where no docker engine runs (deploy/image): podman with runc, and
    # mmdebstrap for a base image made from Debian packages when no registry is reachable.
    "podman": Path("/usr/bin/podman"),
    "runc": Path("/usr/sbin/runc"),
    "mmdebstrap": Path("/usr/bin/mmdebstrap"),
}

_apt_updated = False


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "murmur"


@contextlib.contextmanager
def _lock(name: str) -> Iterator[None]:
    """An exclusive lock across processes, so parallel first uses build only once."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    with (cache_dir() / f"{name}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_apt(*packages: str) -> None:
    """Install the named Debian packages (keys of APT_PACKAGES) that are missing."""
    missing = [pkg for pkg in packages if not APT_PACKAGES[pkg].exists()]
    if not missing:
        return
    if os.geteuid() != 0:
        raise ServerError(
            f"missing {', '.join(missing)}: run as root or "
            f"`sudo apt-get install -y --no-install-recommends {' '.join(missing)}`"
        )
    with _lock("apt"):
        missing = [pkg for pkg in missing if not APT_PACKAGES[pkg].exists()]
        if not missing:
            return
        if not POLICY_RC_D.exists():
            # Exit 101 tells invoke-rc.d not to start the system-wide services on install:
            # the project runs its own instances on its own ports.
            POLICY_RC_D.write_text("#!/bin/sh\nexit 101\n")
            POLICY_RC_D.chmod(0o755)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        global _apt_updated
        if not _apt_updated:
            run(["apt-get", "update", "-q"], env=env, timeout=600)
            _apt_updated = True
        run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
            env=env,
            timeout=1200,
        )


def _launcher_digest(version: str) -> str:
    digest = hashlib.sha256(version.encode())
    for path in sorted(LAUNCHER_SOURCE.rglob("*")):
        if path.is_file() and "target" not in path.parts:
            digest.update(path.relative_to(LAUNCHER_SOURCE).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def java_bin() -> Path:
    java = JAVA_HOME / "bin" / "java"
    if not java.exists():
        found = shutil.which("java")
        if found is None:
            raise ServerError(f"Java 17 not found at {JAVA_HOME} nor on PATH")
        return Path(found)
    return java


def ensure_neo4j_launcher(version: str = NEO4J_VERSION) -> str:
    """Build the embedded Neo4j launcher once; return its Java classpath.

    The launcher jar and every dependency jar are copied into
    ~/.cache/murmur/neo4j-<version>/, so later starts need neither Maven nor ~/.m2.
    """
    target = cache_dir() / f"neo4j-{version}"
    stamp = target / "BUILD"
    classpath = f"{target / 'launcher.jar'}:{target / 'lib'}/*"
    digest = _launcher_digest(version)
    if stamp.exists() and stamp.read_text().strip() == digest:
        return classpath
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServerError("Maven (mvn) is needed once to build the Neo4j launcher")
    with _lock(f"neo4j-{version}"):
        if stamp.exists() and stamp.read_text().strip() == digest:
            return classpath
        with tempfile.TemporaryDirectory(prefix="murmur-neo4j-build-") as tmp:
            work = Path(tmp) / "src"
            shutil.copytree(LAUNCHER_SOURCE, work, ignore=shutil.ignore_patterns("target"))
            out = Path(tmp) / "out"
            env = {**os.environ, "JAVA_HOME": str(JAVA_HOME)} if JAVA_HOME.exists() else None
            run(
                [
                    mvn,
                    "-q",
                    "-B",
                    "-f",
                    str(work / "pom.xml"),
                    f"-Dneo4j.version={version}",
                    "-DincludeScope=runtime",
                    f"-DoutputDirectory={out / 'lib'}",
                    "package",
                    "dependency:copy-dependencies",
                ],
                env=env,
                timeout=1800,
            )
            shutil.copy2(work / "target" / "neo4j-launcher-1.0.0.jar", out / "launcher.jar")
            (out / "BUILD").write_text(digest + "\n")
            shutil.rmtree(target, ignore_errors=True)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(out), target)
    return classpath


def ensure_python_module(module: str, requirement: str) -> None:
    """pip-install `requirement` when `module` cannot be imported."""
    if importlib.util.find_spec(module) is not None:
        return
    with _lock("pip"):
        run([sys.executable, "-m", "pip", "install", "-q", requirement], timeout=600)
        importlib.invalidate_caches()


def ensure_mailhog() -> None:
    """The MailHog-compatible catcher (deploy.local.mailhog_compat) needs aiosmtpd."""
    ensure_python_module("aiosmtpd", "aiosmtpd>=1.4")
