"""Fixtures of the build tests: the headers' kernel, a tree built once per module, a local HTTP server."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.build.service import BuildResult
from build.buildlib import headers_kernel, make_builder, recipe


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

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def hits(self, name: str) -> int:
        return sum(1 for r in self.requests if r == f"/{name}")


@pytest.fixture
def http_server() -> Iterator[Served]:
    """A plain HTTP server on 127.0.0.1 with scripted failures; stopped at the end of the test."""
    served = Served()

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
    served.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
