"""Fixtures of the build tests: the headers' kernel, a tree built once per module, a local HTTP server."""

from __future__ import annotations

import contextlib
import http.server
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tooling import need_tool

from agent.build.service import BuildResult
from build.buildlib import headers_kernel, make_builder, recipe


@pytest.fixture(autouse=True)
def _fresh_logs() -> None:
    """structlog binds the stderr of the test that first logs; a later test (another capture) needs its own."""
    from agent import logs

    logs.configure()


@pytest.fixture(scope="session")
def kernel() -> str:
    return headers_kernel()


@dataclass
class Built:
    """The test driver built once for a test module: the result, the cache and the output folder."""

    result: BuildResult
    cache: Path
    out: Path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, kernel: str) -> Built:
    """The test driver from its folder, built for the headers' kernel (real make, modinfo, depmod)."""
    base = tmp_path_factory.mktemp("built")
    cache, out = base / "cache", base / "out"
    result = make_builder(cache).build_result(recipe(), kernel, out)
    return Built(result, cache, out)


@dataclass
class Served:
    """What the local server serves and what it saw."""

    files: dict[str, bytes] = field(default_factory=dict)
    failures: dict[str, list[int]] = field(default_factory=dict)  # path -> status codes to answer first
    requests: list[str] = field(default_factory=list)
    port: int = 0
    scheme: str = "http"

    def url(self, name: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/{name}"

    def hits(self, name: str) -> int:
        return sum(1 for r in self.requests if r == f"/{name}")


@contextlib.contextmanager
def serve(tls: ssl.SSLContext | None = None) -> Iterator[Served]:
    """An HTTP(S) server on 127.0.0.1 with scripted failures, stopped on exit."""
    served = Served(scheme="https" if tls else "http")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.requests.append(self.path)
            codes = served.failures.get(self.path, [])
            if codes:
                self.send_error(codes.pop(0))
                return
            data = served.files.get(self.path.lstrip("/"))
            if data is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    served.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def http_server() -> Iterator[Served]:
    """A plain HTTP server on 127.0.0.1 (what tests use as a loopback mirror)."""
    with serve() as served:
        yield served


@pytest.fixture
def https_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Path]]:
    """An HTTPS server on 127.0.0.1 with a self-signed certificate; yields it and the certificate."""
    openssl = need_tool("openssl")
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "server.key", folder / "server.crt"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with serve(context) as served:
        yield served, cert
