"""Jaeger v2, the trace store: OTLP in (gRPC 4317, HTTP 4318), the query API and UI on 16686.

Jaeger v2 is an OpenTelemetry collector with Jaeger's storage and query extensions; its whole
configuration is one collector YAML file, written to the state directory before each start so
that every port is ours to choose. Traces are kept in memory (the newest `max_traces`), so a
restart starts empty. The query API: `GET /api/services`, `GET /api/traces/{trace id}`,
`GET /api/traces?service=...` (what the UI uses) and `/api/v3/...` (Jaeger's stable API).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from deploy.local import install
from deploy.local.process import HOST, ManagedServer


class JaegerServer(ManagedServer):
    """Collector receivers and the query extension on 127.0.0.1, in-memory storage."""

    name = "jaeger"

    def __init__(
        self,
        state_dir: Path,
        ui_port: int = 16686,
        otlp_grpc_port: int = 4317,
        otlp_http_port: int = 4318,
        log_dir: Path | None = None,
        *,
        query_grpc_port: int = 16685,
        max_traces: int = 100_000,
        version: str = install.JAEGER_VERSION,
    ) -> None:
        super().__init__(state_dir, log_dir)
        self.ui_port = ui_port
        self.otlp_grpc_port = otlp_grpc_port
        self.otlp_http_port = otlp_http_port
        self.query_grpc_port = query_grpc_port
        self.max_traces = max_traces
        self.version = version
        self._binary: Path | None = None

    @property
    def ports(self) -> dict[str, int]:
        return {
            "ui/api": self.ui_port,
            "otlp-grpc": self.otlp_grpc_port,
            "otlp-http": self.otlp_http_port,
            "query-grpc": self.query_grpc_port,
        }

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.ui_port}"

    @property
    def otlp_http_url(self) -> str:
        """What `OTEL_EXPORTER_OTLP_ENDPOINT` names (the exporter appends /v1/traces)."""
        return f"http://{HOST}:{self.otlp_http_port}"

    @property
    def config_file(self) -> Path:
        return self.state_dir / "config.yaml"

    def config(self) -> dict[str, Any]:
        """The collector configuration: OTLP receivers -> batch -> memory store <- query."""
        return {
            "service": {
                "extensions": ["jaeger_storage", "jaeger_query"],
                "pipelines": {
                    "traces": {
                        "receivers": ["otlp"],
                        "processors": ["batch"],
                        "exporters": ["jaeger_storage_exporter"],
                    }
                },
                # The collector's own metrics would listen on :8888, a port not ours.
                "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "info"}},
            },
            "extensions": {
                "jaeger_storage": {
                    "backends": {"memstore": {"memory": {"max_traces": self.max_traces}}}
                },
                "jaeger_query": {
                    "storage": {"traces": "memstore"},
                    "http": {"endpoint": f"{HOST}:{self.ui_port}"},
                    "grpc": {"endpoint": f"{HOST}:{self.query_grpc_port}"},
                },
            },
            "receivers": {
                "otlp": {
                    "protocols": {
                        "grpc": {"endpoint": f"{HOST}:{self.otlp_grpc_port}"},
                        "http": {"endpoint": f"{HOST}:{self.otlp_http_port}"},
                    }
                }
            },
            "processors": {"batch": {}},
            "exporters": {"jaeger_storage_exporter": {"trace_storage": "memstore"}},
        }

    def environment(self) -> Mapping[str, str]:
        # The collector would export its own traces when these are set for the services.
        return {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}

    def prepare(self) -> None:
        self._binary = install.ensure_jaeger(self.version)
        # JSON is YAML: no YAML writer needed for a file only the collector reads.
        self.config_file.write_text(json.dumps(self.config(), indent=2) + "\n")

    def command(self) -> Sequence[str]:
        if self._binary is None:
            self._binary = install.ensure_jaeger(self.version)
        return [str(self._binary), "--config", f"file:{self.config_file}"]

    def check_ready(self) -> bool:
        try:
            services = httpx.get(f"{self.api_url}/api/services", timeout=2)
            if services.status_code != 200 or "data" not in services.json():
                return False
            # An empty export request: the OTLP/HTTP receiver answers 200 once it listens.
            otlp = httpx.post(
                f"{self.otlp_http_url}/v1/traces",
                content=b"{}",
                headers={"Content-Type": "application/json"},
                timeout=2,
            )
            return otlp.status_code == 200
        except (httpx.HTTPError, ValueError):
            return False
