"""The gateway's nginx config, run by the real nginx against stub upstreams on free ports."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from deploy.gateway.render import GatewayConfig, nginx_command, render_nginx_conf
from deploy.gateway.routes import ROUTED_SERVICES, ROUTES, route_for
from deploy.local.install import ensure_apt
from tests.deploy.route_cases import NEAR_MISSES, ROUTED
from tests.support.server import free_port


def _path_only(url: str) -> str:
    return url.split("?", 1)[0]


@pytest.mark.parametrize(("path", "service"), ROUTED)
def test_table_routes_each_path_to_one_service(path: str, service: str) -> None:
    route = route_for(_path_only(path))
    assert route is not None
    assert route.service == service


@pytest.mark.parametrize("path", NEAR_MISSES)
def test_table_routes_near_misses_nowhere(path: str) -> None:
    assert route_for(_path_only(path)) is None


def test_every_route_is_exercised() -> None:
    used = {route.name for path, _ in ROUTED if (route := route_for(_path_only(path)))}
    assert used == {route.name for route in ROUTES}


# --- the real nginx ------------------------------------------------------------------------


@dataclass
class Stub:
    name: str
    server: ThreadingHTTPServer
    requests: list[dict[str, object]]
    release_stream: threading.Event

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"


def _start_stub(name: str) -> Stub:
    requests: list[dict[str, object]] = []
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            requests.append({"path": self.path, "headers": dict(self.headers), "bytes": len(body)})
            if self.path.startswith("/api/v1/me/notifications/stream"):
                self._stream()
                return
            answer = {"service": name, "path": self.path, "bytes": len(body)}
            payload = json.dumps({**answer, "headers": dict(self.headers)}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _stream(self) -> None:
            # Deliberately no X-Accel-Buffering header: the gateway config alone must stream.
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(f"id: 1\ndata: {name}\n\n".encode())
            self.wfile.flush()
            release.wait(timeout=30)
            self.wfile.write(b"id: 2\ndata: bye\n\n")
            self.wfile.flush()
            self.close_connection = True

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return Stub(name, server, requests, release)


@dataclass
class Gateway:
    url: str
    conf: Path
    runtime_dir: Path


def _wait_listening(port: int, proc: subprocess.Popen[bytes], runtime_dir: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = (runtime_dir / "error.log").read_text(errors="replace")
            raise RuntimeError(f"nginx exited with {proc.returncode}: {log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("nginx did not start listening")


def _run_nginx(upstreams: dict[str, str]) -> Iterator[Gateway]:
    ensure_apt("nginx")
    # Not pytest's tmp_path: its parents are 0700, and nginx workers drop to `nobody` when the
    # master runs as root, yet must write request bodies into the temp dirs.
    runtime_dir = Path(tempfile.mkdtemp(prefix="murmur-gw-"))
    runtime_dir.chmod(0o755)
    port = free_port()
    config = GatewayConfig(
        runtime_dir=str(runtime_dir),
        listen=f"127.0.0.1:{port}",
        upstreams=upstreams,  # type: ignore[arg-type]
        worker_processes="1",
    )
    conf = runtime_dir / "nginx.conf"
    conf.write_text(render_nginx_conf(config))
    cmd = nginx_command(conf, runtime_dir)
    check = subprocess.run([*cmd, "-t"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(port, proc, runtime_dir)
        yield Gateway(f"http://127.0.0.1:{port}", conf, runtime_dir)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(runtime_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def stubs() -> Iterator[dict[str, Stub]]:
    started: dict[str, Stub] = {name: _start_stub(name) for name in ROUTED_SERVICES}
    yield started
    for stub in started.values():
        stub.release_stream.set()
        stub.server.shutdown()
        stub.server.server_close()


@pytest.fixture(scope="module")
def gateway(stubs: dict[str, Stub]) -> Iterator[Gateway]:
    yield from _run_nginx({name: stub.address for name, stub in stubs.items()})


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=10) as c:
        yield c


def test_nginx_t_accepts_the_default_render(tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(render_nginx_conf(GatewayConfig(runtime_dir=str(tmp_path))))
    result = subprocess.run(
        [*nginx_command(conf, tmp_path), "-t"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("path", "service"), [(p, s) for p, s in ROUTED if not p.endswith("/stream")]
)
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_nginx_routes_to_the_right_service(
    client: httpx.Client, path: str, service: str, method: str
) -> None:
    response = client.request(method, path)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["service"] == service
    # The original URI, query string included, reaches the service unchanged.
    assert body["path"] == path


@pytest.mark.parametrize("path", NEAR_MISSES)
def test_nginx_answers_404_problem_for_near_misses(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 404


def test_forwarding_headers_and_ids(client: httpx.Client) -> None:
    sent = client.get(
        "/api/v1/me",
        headers={
            "X-Request-ID": "req-1",
            "X-Correlation-ID": "cor-1",
            "X-Forwarded-For": "6.6.6.6",
        },
    )
    headers = {k.lower(): v for k, v in sent.json()["headers"].items()}
    assert headers["x-request-id"] == "req-1"
    assert headers["x-correlation-id"] == "cor-1"
    # Overwritten with the peer's address: a client-supplied value is not passed on.
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == "127.0.0.1"
    assert headers["x-real-ip"] == "127.0.0.1"

    minted = client.get("/api/v1/me").json()["headers"]
    minted = {k.lower(): v for k, v in minted.items()}
    assert len(minted["x-request-id"]) == 32
    assert minted["x-correlation-id"] == minted["x-request-id"]


def test_the_service_sees_the_real_client_address(gateway: Gateway) -> None:
    # The whole of 127/8 is loopback on Linux: a second address stands for a second client.
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=gateway.url, transport=transport, timeout=10) as other:
        sent = other.get("/api/v1/me", headers={"X-Forwarded-For": "127.0.0.1, 6.6.6.6"})
    headers = {k.lower(): v for k, v in sent.json()["headers"].items()}
    assert headers["x-forwarded-for"] == "127.0.0.2"
    assert headers["x-real-ip"] == "127.0.0.2"


def _assert_gateway_problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert body["title"]
    _assert_security_headers(response)


def _assert_security_headers(response: httpx.Response) -> None:
    assert response.headers.get_list("x-content-type-options") == ["nosniff"]
    assert response.headers.get_list("x-frame-options") == ["DENY"]


def _raw(gateway: Gateway, request: bytes) -> httpx.Response:
    """Send bytes httpx would refuse or normalise, and parse the answer."""
    port = int(gateway.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
            head, sep, rest = data.partition(b"\r\n\r\n")
            if sep and b"content-length" in head.lower():
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(rest) >= length:
                    break
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin1").split("\r\n")
    headers = [tuple(v.strip() for v in line.split(":", 1)) for line in lines[1:] if line]
    return httpx.Response(int(lines[0].split()[1]), headers=headers, content=body)


def test_nul_in_the_path_is_a_400_problem(gateway: Gateway) -> None:
    response = _raw(
        gateway, b"GET /api/v1/posts/%00 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    _assert_gateway_problem(response, 400)


def test_malformed_request_line_is_a_400_problem(gateway: Gateway) -> None:
    response = _raw(gateway, b"GET /api/v1/posts HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
    _assert_gateway_problem(response, 400)


def test_long_uri_is_a_414_problem(client: httpx.Client) -> None:
    _assert_gateway_problem(client.get("/api/v1/posts?q=" + "x" * 20_000), 414)


def test_huge_header_is_a_431_problem(client: httpx.Client) -> None:
    _assert_gateway_problem(client.get("/api/v1/posts", headers={"X-Big": "x" * 20_000}), 431)


def test_unknown_path_is_a_404_problem_with_security_headers(client: httpx.Client) -> None:
    response = client.get("/nowhere")
    _assert_gateway_problem(response, 404)
    assert response.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_proxied_answers_carry_security_headers_once(client: httpx.Client) -> None:
    response = client.get("/api/v1/posts")
    assert response.status_code == 200
    _assert_security_headers(response)


def test_body_limit_is_one_mebibyte(client: httpx.Client) -> None:
    ok = client.post("/api/v1/posts", content=b"x" * 1_000_000)
    assert ok.status_code == 200
    assert ok.json()["bytes"] == 1_000_000

    too_big = client.post("/api/v1/posts", content=b"x" * (1_048_576 + 1))
    _assert_gateway_problem(too_big, 413)


def test_sse_is_not_buffered(client: httpx.Client, stubs: dict[str, Stub]) -> None:
    feed = stubs["feed"]
    feed.release_stream.clear()
    got_first = threading.Event()
    lines: list[str] = []

    def read() -> None:
        with client.stream("GET", "/api/v1/me/notifications/stream") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                lines.append(line)
                if line == "data: feed":
                    got_first.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        # The upstream holds the stream open after the first event: a buffering proxy would
        # keep the event until the response ends, so it would arrive only after release.
        assert got_first.wait(timeout=5), f"first event not delivered while stream open: {lines}"
    finally:
        feed.release_stream.set()
    reader.join(timeout=10)
    assert "data: bye" in lines


def test_stream_location_has_long_read_timeout(gateway: Gateway) -> None:
    text = gateway.conf.read_text()
    stream_block = text.split("notifications-stream -> feed_service", 1)[1].split("}", 1)[0]
    assert "proxy_buffering off;" in stream_block
    assert "proxy_read_timeout 1h;" in stream_block


def test_upstream_down_gives_503_problem_with_retry_after() -> None:
    dead = f"127.0.0.1:{free_port()}"
    for gw in _run_nginx({name: dead for name in ROUTED_SERVICES}):
        response = httpx.get(f"{gw.url}/api/v1/posts", timeout=10)
        _assert_gateway_problem(response, 503)
        assert response.headers["retry-after"] == "5"
        # A write is refused the same way (and was never sent: nothing to replay).
        _assert_gateway_problem(httpx.post(f"{gw.url}/api/v1/posts", json={}, timeout=10), 503)


def test_cli_renders_a_file(tmp_path: Path) -> None:
    out = tmp_path / "gw.conf"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "deploy.gateway",
            "render",
            "--out",
            str(out),
            "--upstream",
            "feed=10.0.0.9:9004",
            "--listen",
            "0.0.0.0:9999",
            "--runtime-dir",
            str(tmp_path),
        ],
        check=True,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ},
    )
    text = out.read_text()
    assert "server 10.0.0.9:9004;" in text
    assert "server 127.0.0.1:8001;" in text
    assert "listen 0.0.0.0:9999;" in text
    assert "daemon off;" in text

    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "deploy.gateway",
            "render",
            "--out",
            str(out),
            "--upstream",
            "nope=1:2",
        ],
        capture_output=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert bad.returncode != 0


# --- a crash behind the gateway --------------------------------------------------------------


@pytest.fixture
def crashing_service() -> Iterator[str]:
    """The crashing service in its own process, as the real services run."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.deploy.crashing_service", str(port)],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 180  # imports alone take a minute on a loaded machine
        while True:
            assert proc.poll() is None, "crashing service exited"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "crashing service did not start"
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_a_crash_does_not_break_the_next_clients_write(crashing_service: str) -> None:
    """issue 11: after a 500, nginx reused the pooled connection uvicorn was closing, and the
    next client's POST (never retried) failed with 502/503."""
    for gw in _run_nginx({name: crashing_service for name in ROUTED_SERVICES}):
        async with (
            httpx.AsyncClient(base_url=gw.url, timeout=10) as attacker,
            httpx.AsyncClient(base_url=gw.url, timeout=10) as victim,
        ):
            failures = []
            for n in range(20):
                crashed = await attacker.get("/api/v1/posts/crash")
                assert crashed.status_code == 500
                assert crashed.headers["content-type"] == "application/problem+json"
                assert "a bug" not in crashed.text
                wrote = await victim.post("/api/v1/posts", json={"n": n})
                if wrote.status_code != 201:
                    failures.append((n, wrote.status_code))
            assert failures == []
