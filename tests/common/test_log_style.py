"""Every log call in the services and common/ names its event in one style (docs/common.md)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (
    "common",
    "auth_service",
    "post_service",
    "network_service",
    "feed_service",
    "email_service",
)
LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}
LOGGERS = {"log", "logger", "_log"}
EVENT = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")


def _log_events(path: Path) -> list[tuple[int, str]]:
    events = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in LEVELS
            and isinstance(node.func.value, ast.Name | ast.Attribute)
            and (
                node.func.value.id
                if isinstance(node.func.value, ast.Name)
                else node.func.value.attr
            )
            in LOGGERS
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            events.append((node.lineno, node.args[0].value))
    return events


def test_log_events_are_snake_case_names() -> None:
    found = {
        f"{path.relative_to(ROOT)}:{line}": event
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, event in _log_events(path)
    }
    assert len(found) > 40  # the scan does see the log calls
    assert {where: event for where, event in found.items() if not EVENT.fullmatch(event)} == {}
