"""Static checks of deploy/docker/Dockerfile (test_image.py builds and runs it)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
SERVICES = ("auth_service", "post_service", "network_service", "feed_service", "email_service")


@dataclass
class Instruction:
    keyword: str
    args: str


def parse(text: str) -> list[Instruction]:
    """Instructions with line continuations joined and comments dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip()))
    assert not pending, "dangling line continuation"
    return instructions


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse(DOCKERFILE.read_text())


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def test_multi_stage_on_python_311_slim(instructions: list[Instruction]) -> None:
    args = {
        i.args.split("=", 1)[0]: i.args.split("=", 1)[1]
        for i in instructions
        if i.keyword == "ARG" and "=" in i.args
    }
    froms = [i.args for i in instructions if i.keyword == "FROM"]
    assert len(froms) >= 2
    assert args["PYTHON_IMAGE"] == "python:3.11-slim"
    names = [f.split(" AS ")[-1] for f in froms]
    assert names[0] == "build" and names[-1] == "runtime"
    runtime = stages(instructions)[-1]
    assert any("from=build" in i.args for i in runtime if i.keyword in ("RUN", "COPY"))


def _makefile_uv_version() -> str:
    found = re.search(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert found, "Makefile pins no UV_VERSION"
    return found.group(1)


def test_dependencies_come_from_the_lock_with_the_developers_uv(
    instructions: list[Instruction],
) -> None:
    build, runtime = stages(instructions)[0], stages(instructions)[-1]
    args = dict(i.args.split("=", 1) for i in build if i.keyword == "ARG" and "=" in i.args)
    assert args["UV_VERSION"] == _makefile_uv_version()
    runs = [i.args for i in build if i.keyword == "RUN"]
    assert any('"uv==${UV_VERSION}"' in run for run in runs)
    copies = [i.args for i in build if i.keyword == "COPY"]
    assert any("uv.lock" in c.split() and "pyproject.toml" in c.split() for c in copies)
    (sync,) = [run for run in runs if " sync " in run]
    flags = sync.split()
    # The lock as it is (no re-resolution), runtime dependencies only, not the project itself.
    assert {"--frozen", "--no-dev", "--no-install-project"} <= set(flags)
    assert not {"--all-extras", "--extra", "--all-groups", "--group"} & set(flags)
    assert not any(f.startswith(("--extra=", "--group=")) for f in flags)
    # The runtime stage gets the venv, never pip or uv, and installs nothing itself.
    assert any(
        i.args.split()[:3] == ["--from=build", "/opt/venv", "/opt/venv"]
        for i in runtime
        if i.keyword == "COPY"
    )
    runtime_runs = " ".join(i.args for i in runtime if i.keyword == "RUN")
    assert "pip install" not in runtime_runs and "uv " not in runtime_runs
    env = " ".join(i.args for i in runtime if i.keyword == "ENV")
    assert "PATH=/opt/venv/bin:" in env


def test_runtime_runs_as_a_numeric_non_root_user(instructions: list[Instruction]) -> None:
    runtime = stages(instructions)[-1]
    users = [i.args for i in runtime if i.keyword == "USER"]
    assert users, "runtime stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, users[-1]
    last_user = max(n for n, i in enumerate(runtime) if i.keyword == "USER")
    later = [i.keyword for i in runtime[last_user:]]
    assert "RUN" not in later, "commands after USER would run as a different user than expected"


def test_healthcheck_uses_python_against_healthz(instructions: list[Instruction]) -> None:
    checks = [i.args for i in stages(instructions)[-1] if i.keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    cmd = checks[0].split("CMD", 1)[1].strip()
    argv = json.loads(cmd)
    assert argv[0] == "python" and "/healthz" in argv[-1]
    assert "curl" not in checks[0] and "wget" not in checks[0]
    compile(argv[-1], "<healthcheck>", "exec")


def test_image_carries_every_service(instructions: list[Instruction]) -> None:
    copied = " ".join(i.args for i in stages(instructions)[-1] if i.keyword == "COPY")
    for package in ("common", *SERVICES):
        assert f" {package} ./{package}" in copied, package
        assert (ROOT / package).is_dir()
    cmd = json.loads(next(i.args for i in instructions if i.keyword == "CMD"))
    assert cmd[:2] == ["python", "-m"] and cmd[2] in SERVICES


def test_no_secrets_baked_in(instructions: list[Instruction]) -> None:
    secretish = re.compile(r"(PASSWORD|SECRET|TOKEN|SIGNING|PRIVATE|API_KEY)", re.IGNORECASE)
    for ins in instructions:
        if ins.keyword in ("ENV", "ARG", "LABEL"):
            assert not secretish.search(ins.args), ins
        assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", ins.args), f"credentials in {ins}"
    dockerignore = (ROOT / ".dockerignore").read_text().splitlines()
    for pattern in (".env", "**/*.pem", "**/*.key", ".git"):
        assert pattern in dockerignore


def test_parser_sees_instructions() -> None:
    parsed = parse("FROM a AS b\n# c\nRUN x \\\n  && y\nUSER 1\n")
    assert [(i.keyword, i.args) for i in parsed] == [
        ("FROM", "a AS b"),
        ("RUN", "x  && y"),
        ("USER", "1"),
    ]
