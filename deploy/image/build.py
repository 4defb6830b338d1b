"""Build the service image, deploy/docker/Dockerfile, with docker or else podman.

docker is used when its engine answers (`docker info`); otherwise podman, installed from Debian
when missing, run the way this machine kind needs (runc, cgroupfs, lower ulimits; see
docs/deploy.md). Where no registry is reachable, the base image (a stand-in for
python:3.11-slim: Debian's Python 3.11) is made from Debian packages with mmdebstrap, once per
recipe, and passed to the build as PYTHON_IMAGE. The build's own layer cache does the rest, so
a build with nothing changed takes seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from deploy.local.install import ensure_apt

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
IMAGE = "localhost/murmur:dev"
REGISTRY_BASE = "docker.io/library/python:3.11-slim"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

# The Debian-made base: what python:3.11-slim offers that the Dockerfile uses (python on PATH,
# venv, CA certificates, groupadd/useradd). Its tag is a digest of this recipe, so a changed
# recipe makes a new base and an unchanged one is never rebuilt.
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_PACKAGES = ("ca-certificates", "python3", "python3-venv")
DEBIAN_HOOKS = ('ln -sf /usr/bin/python3 "$1/usr/local/bin/python"',)
DEBIAN_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
)
DEBIAN_BASE_REPO = "localhost/murmur-python-base"

BaseChoice = Literal["auto", "registry", "debian"]
Log = Callable[[str], None]


class ImageError(RuntimeError):
    """The image could not be built."""


@dataclass(frozen=True)
class Engine:
    """A container engine's command line, with what this machine needs on every call."""

    name: Literal["docker", "podman"]
    argv: tuple[str, ...]
    # Extra flags for `run` and `build` (podman: the sandbox's process and file limits).
    limits: tuple[str, ...] = ()

    def cmd(self, *args: str) -> list[str]:
        return [*self.argv, *args]

    def run(
        self,
        *args: str,
        check: bool = True,
        capture: bool = True,
        timeout: float = 600,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.cmd(*args),
            capture_output=capture,
            text=True,
            timeout=timeout,
            check=False,
            env=env,
        )
        if check and done.returncode != 0:
            detail = (done.stderr or done.stdout or "").strip()[-2000:]
            raise ImageError(f"`{self.name} {' '.join(args[:2])}` failed: {detail}")
        return done

    def image_exists(self, ref: str) -> bool:
        return self.run("image", "inspect", ref, check=False, timeout=60).returncode == 0


# crun refuses this kernel's hybrid cgroups, and without systemd only cgroupfs works; the
# default ulimits are above what the sandbox allows a container.
PODMAN = Engine(
    name="podman",
    argv=("podman", "--runtime", "runc", "--cgroup-manager=cgroupfs"),
    limits=("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"),
)
DOCKER = Engine(name="docker", argv=("docker",))


def detect_engine() -> Engine:
    """docker when its engine answers, else podman (installed from Debian if missing)."""
    docker = shutil.which("docker")
    if docker is not None:
        try:
            answered = subprocess.run(
                [docker, "info"], capture_output=True, timeout=30, check=False
            ).returncode
        except subprocess.TimeoutExpired:
            answered = 1
        if answered == 0:
            return DOCKER
    ensure_apt("podman", "runc")
    return PODMAN


def base_recipe_digest() -> str:
    recipe = {
        "suite": DEBIAN_SUITE,
        "mirror": DEBIAN_MIRROR,
        "packages": DEBIAN_PACKAGES,
        "hooks": DEBIAN_HOOKS,
        "changes": DEBIAN_CHANGES,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def debian_base_ref() -> str:
    return f"{DEBIAN_BASE_REPO}:{base_recipe_digest()}"


def ensure_debian_base(engine: Engine, log: Log) -> str:
    """The Debian-made base image, made with mmdebstrap when its recipe has none yet."""
    ref = debian_base_ref()
    if engine.image_exists(ref):
        log(f"base image {ref}: cached")
        return ref
    ensure_apt("mmdebstrap")
    started = time.monotonic()
    log(f"base image {ref}: making from Debian {DEBIAN_SUITE} packages (about a minute)")
    with tempfile.TemporaryDirectory(prefix="murmur-base-") as tmp:
        tarball = Path(tmp) / "base.tar"
        hooks = [f"--customize-hook={hook}" for hook in DEBIAN_HOOKS]
        done = subprocess.run(
            [
                "mmdebstrap",
                "--quiet",
                "--variant=minbase",
                f"--include={','.join(DEBIAN_PACKAGES)}",
                *hooks,
                DEBIAN_SUITE,
                str(tarball),
                DEBIAN_MIRROR,
            ],
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )
        if done.returncode != 0:
            raise ImageError(f"mmdebstrap failed: {(done.stderr or done.stdout)[-2000:]}")
        changes = [arg for change in DEBIAN_CHANGES for arg in ("--change", change)]
        engine.run("import", *changes, str(tarball), ref, timeout=600)
    log(f"base image {ref}: made in {time.monotonic() - started:.0f}s")
    return ref


def choose_base(engine: Engine, choice: BaseChoice, log: Log) -> str:
    """The PYTHON_IMAGE for the build: the registry's python:3.11-slim when it can be had."""
    if choice in ("auto", "registry"):
        if engine.image_exists(REGISTRY_BASE):
            log(f"base image {REGISTRY_BASE}: present")
            return REGISTRY_BASE
        # The Debian-made base already there means no registry answered last time: do not
        # spend a pull attempt (and its timeouts) on every warm build.
        if choice == "auto" and engine.image_exists(debian_base_ref()):
            log(f"base image {debian_base_ref()}: cached (no registry image present)")
            return debian_base_ref()
        pulled = engine.run("pull", REGISTRY_BASE, check=False, timeout=600)
        if pulled.returncode == 0:
            log(f"base image {REGISTRY_BASE}: pulled")
            return REGISTRY_BASE
        if choice == "registry":
            raise ImageError(f"cannot pull {REGISTRY_BASE}: {pulled.stderr.strip()[-500:]}")
        log(f"base image: no registry reachable ({_first_line(pulled.stderr)})")
    return ensure_debian_base(engine, log)


def build_args(engine: Engine, base: str, tag: str) -> list[str]:
    args = ["build", "--file", str(DOCKERFILE), "--tag", tag, "--build-arg", f"PYTHON_IMAGE={base}"]
    if engine.name == "podman":
        # docker format keeps HEALTHCHECK (OCI images have no such field); host network and
        # the host's CA bundle so pip and uv reach PyPI through this machine's egress.
        args += [*engine.limits, "--format", "docker", "--layers", "--network", "host"]
        if HOST_CA_BUNDLE.exists():
            args += ["--volume", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"]
    return [*args, str(ROOT)]


@dataclass(frozen=True)
class Built:
    engine: Engine
    tag: str
    base: str
    image_id: str
    seconds: float


def build(
    tag: str = IMAGE,
    base: BaseChoice = "auto",
    engine: Engine | None = None,
    log: Log = print,
    quiet: bool = False,
) -> Built:
    """Build deploy/docker/Dockerfile as `tag`; return what was built and how long it took."""
    started = time.monotonic()
    engine = engine or detect_engine()
    log(f"engine: {engine.name}")
    base_ref = choose_base(engine, base, log)
    args = build_args(engine, base_ref, tag)
    log(f"building {tag} from {DOCKERFILE.relative_to(ROOT)} on {base_ref}")
    engine.run(*args, capture=quiet, timeout=1800)
    image_id = engine.run("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()
    seconds = time.monotonic() - started
    log(f"built {tag} ({image_id[:12]}) in {seconds:.0f}s")
    return Built(engine=engine, tag=tag, base=base_ref, image_id=image_id, seconds=seconds)


def remove_images(engine: Engine, refs: Sequence[str]) -> None:
    for ref in refs:
        engine.run("image", "rm", "--force", ref, check=False, timeout=120)


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no answer"


def parse_base_choice(value: str) -> BaseChoice:
    for choice in get_args(BaseChoice):
        if value == choice:
            return choice  # type: ignore[no-any-return]
    raise ImageError(f"the base must be auto, registry or debian, not {value!r}")


def env_base_choice() -> BaseChoice:
    return parse_base_choice(os.environ.get("MURMUR_IMAGE_BASE", "auto"))
