"""Property-based fuzzing of a running service's OpenAPI with schemathesis: no answer is a 5xx.

Each operation gets a few generated cases (valid and invalid per its schema, hypothesis
derandomized so a run is reproducible), then explicit crafted ones: NUL bytes, a lone UTF-16
surrogate and out-of-range numbers in every string and integer parameter and JSON body field,
and forged cursors. Cases run in a worker thread over real HTTP against the service, which is
served by the test's own event loop (so it keeps using the fixtures' servers and pools).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core import NOT_SET
from schemathesis.schemas import APIOperation

__all__ = ["CRAFTED_STRINGS", "FuzzReport", "fuzz_service"]

NUL = "a\x00b"
SURROGATE = "a\ud800b"
# Strings no store holds, ids outside Redis' stream id space, a 20-digit number.
CRAFTED_STRINGS = [NUL, SURROGATE, "\x00", "99999999999999999999-0", "0-0", "9" * 20]
CRAFTED_INTS = [2**64, -(2**63) - 1, 10**400]


def _cursor(json_text: str) -> str:
    return base64.urlsafe_b64encode(json_text.encode()).rstrip(b"=").decode()


# Forged cursors of every list's shape: out-of-range times, NUL ids, huge numbers, bools.
FORGED_CURSORS = [
    _cursor('{"t": "0001-01-01T00:00:00+01:00", "id": "x"}'),
    _cursor('{"t": "2026-01-01T00:00:00+00:00", "id": "a\\u0000"}'),
    _cursor('{"r": 1' + "0" * 400 + ', "id": "x"}'),
    _cursor('{"s": 99999999999999999999, "i": "x"}'),
    _cursor('{"s": true, "m": "x"}'),
    _cursor('{"id": "99999999999999999999-0"}'),
    _cursor('{"id": "0-0"}'),
    _cursor('{"id": "a\\u0000"}'),
    _cursor('{"a": "a\\u0000"}'),
]

# Operations whose success never ends (an SSE stream): generated cases would hang on a 200,
# so only the crafted cases, which must be refused before the stream starts, are sent.
_STREAMING = {("GET", "/api/v1/me/notifications/stream")}
_HEADER_PARAMS_TO_CRAFT = {"last-event-id", "idempotency-key"}


@dataclass
class FuzzReport:
    requests: int = 0
    server_errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _operations(openapi: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in openapi.get("paths", {}).items():
        for method, spec in item.items():
            if method in {"get", "put", "post", "patch", "delete"}:
                yield method.upper(), path, spec


def _resolve(openapi: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        node: Any = openapi
        for part in ref[2:].split("/"):
            node = node[part]
        return _resolve(openapi, node)
    return schema


def _types(openapi: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    schema = _resolve(openapi, schema)
    found = {schema["type"]} if isinstance(schema.get("type"), str) else set()
    for option in schema.get("anyOf", []) + schema.get("oneOf", []):
        found |= _types(openapi, option)
    return found


def _crafted_cases(
    openapi: dict[str, Any], operation: APIOperation, method: str, path: str, spec: dict[str, Any]
) -> Iterator[Case]:
    """Cases putting each crafted value into every string (or int) input of the operation."""
    params = [p for p in spec.get("parameters", []) if "schema" in p]
    body_schema: dict[str, Any] | None = None
    content = spec.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        body_schema = _resolve(openapi, content["application/json"].get("schema", {}))
    properties: dict[str, Any] = (body_schema or {}).get("properties", {})

    def build(string: str | None, integer: int | None, cursor: str | None) -> Case:
        path_parameters: dict[str, Any] = {}
        query: dict[str, Any] = {}
        headers: dict[str, Any] = {}
        for param in params:
            types = _types(openapi, param["schema"])
            value: Any = None
            if param["name"] == "cursor" and cursor is not None:
                value = cursor
            elif "string" in types and string is not None and "\ud800" not in string:
                # A URL or header cannot carry a lone surrogate: only JSON bodies can.
                value = string
            elif "integer" in types and integer is not None:
                value = integer
            if param["in"] == "path":
                # A path parameter is always sent: "x" where this round crafts something else.
                path_parameters[param["name"]] = "x" if value is None else value
            elif value is not None and param["in"] == "query":
                query[param["name"]] = value
            elif (
                value is not None
                and param["in"] == "header"
                and param["name"].lower() in _HEADER_PARAMS_TO_CRAFT
            ):
                headers[param["name"]] = str(value)
        body: Any = NOT_SET
        if body_schema is not None:
            body = {}
            for name, prop in properties.items():
                types = _types(openapi, prop)
                if "string" in types:
                    body[name] = string if string is not None else "x"
                elif "integer" in types and integer is not None:
                    body[name] = integer
        return operation.Case(
            path_parameters=path_parameters,
            query=query,
            headers=headers,
            body=body,
            media_type="application/json" if body_schema is not None else None,
        )

    rounds = [(string, None, None) for string in CRAFTED_STRINGS]
    rounds += [(None, integer, None) for integer in CRAFTED_INTS]
    if any(p["name"] == "cursor" for p in params):
        rounds += [(None, None, cursor) for cursor in FORGED_CURSORS]
    seen: set[str] = set()
    for string, integer, cursor in rounds:
        case = build(string, integer, cursor)
        # Operations without such inputs would get the same case again: sent once.
        key = repr((case.path_parameters, case.query, case.headers, case.body))
        if key not in seen:
            seen.add(key)
            yield case


def _send(case: Case, base_url: str, headers: dict[str, str], report: FuzzReport) -> None:
    report.requests += 1
    try:
        # Generous: on a loaded machine a slow answer is not an error; a stream that never
        # answers (a dead SSE stream after 200) still fails here.
        response = case.call(base_url=base_url, headers=headers, timeout=30)
    except requests.RequestException as exc:
        # A dropped connection or a stream that never answers is as bad as a 500.
        report.server_errors.append(f"{case.method} {case.formatted_path}: {exc!r}")
        return
    try:
        case.validate_response(response, checks=[not_a_server_error])
    except AssertionError:
        report.server_errors.append(
            f"{case.method} {case.formatted_path} query={case.query!r} "
            f"body={case.body!r} -> {response.status_code} {response.text[:200]}"
        )


def _fuzz_blocking(
    openapi: dict[str, Any],
    base_url: str,
    headers: dict[str, str],
    max_examples: int,
    skip: Iterable[tuple[str, str]],
) -> FuzzReport:
    report = FuzzReport()
    started = time.monotonic()
    schema = schemathesis.openapi.from_dict(openapi)
    skipped = set(skip)
    for method, path, spec in _operations(openapi):
        if (method, path) in skipped:
            continue
        operation = schema[path][method]
        for case in _crafted_cases(openapi, operation, method, path, spec):
            _send(case, base_url, headers, report)
        if (method, path) in _STREAMING:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=max_examples,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.generate],  # no shrinking: every failure is collected, not one
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(mode))
            def run(case: Case) -> None:
                _send(case, base_url, headers, report)

            # Unsatisfiable: e.g. no input of this operation can be made invalid.
            with contextlib.suppress(Unsatisfiable):
                run()
    report.seconds = time.monotonic() - started
    return report


async def fuzz_service(
    openapi: dict[str, Any],
    base_url: str,
    *,
    token: str | None,
    max_examples: int = 3,
    skip: Iterable[tuple[str, str]] = (),
) -> FuzzReport:
    """Fuzz every operation of ``openapi`` at ``base_url`` with ``token`` as the bearer.

    ``skip`` names (method, path) operations not to send at all (e.g. one that would delete
    the fuzzing user). The service must be served by this event loop: the cases run in a
    thread while it keeps answering.
    """
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await asyncio.to_thread(
        _fuzz_blocking, openapi, base_url, headers, max_examples, list(skip)
    )
