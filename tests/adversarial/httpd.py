"""A hostile HTTP server on 127.0.0.1 for download tests: redirects, gzip, silence, a slow drip, a held body.

Each path gets one behaviour. Handlers that stall wait on the server's ``closing`` event, so stopping
the server ends them; what the server saw (requests, bytes sent) is counted for tests to poll on.
"""

from __future__ import annotations

import contextlib
import gzip
import http.server
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

Behaviour = Callable[[http.server.BaseHTTPRequestHandler, "Hostile"], None]


@dataclass
class Hostile:
    """The server's behaviours by path and what it saw."""

    port: int = 0
    routes: dict[str, Behaviour] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=dict)  # path -> body bytes written
    closing: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)  # lets a held body finish

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def hits(self, path: str) -> int:
        return sum(1 for r in self.requests if r == f"/{path}")

    # --- behaviours ---------------------------------------------------------------------------
    def file(self, path: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        def send(handler: http.server.BaseHTTPRequestHandler, server: Hostile) -> None:
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(data)
            server.sent[path] = len(data)

        self.routes[f"/{path}"] = send

    def gzipped(self, path: str, data: bytes) -> None:
        """The file compressed on the fly, as a server with transparent compression sends it."""
        self.file(path, gzip.compress(data), {"Content-Encoding": "gzip"})

    def redirect(self, path: str, location: str, code: int = 302) -> None:
        def send(handler: http.server.BaseHTTPRequestHandler, server: Hostile) -> None:
            handler.send_response(code)
            handler.send_header("Location", location)
            handler.send_header("Content-Length", "0")
            handler.end_headers()

        self.routes[f"/{path}"] = send

    def silent(self, path: str) -> None:
        """Accept the request and never answer (a stalled proxy)."""

        def send(handler: http.server.BaseHTTPRequestHandler, server: Hostile) -> None:
            server.closing.wait()

        self.routes[f"/{path}"] = send

    def drip(self, path: str, size: int, interval: float = 0.2) -> None:
        """Headers, then one byte every ``interval`` seconds: each read returns, none times out."""

        def send(handler: http.server.BaseHTTPRequestHandler, server: Hostile) -> None:
            handler.send_response(200)
            handler.send_header("Content-Length", str(size))
            handler.end_headers()
            for _ in range(size):
                if server.closing.wait(interval):
                    return
                with contextlib.suppress(OSError):
                    handler.wfile.write(b"x")
                    handler.wfile.flush()
                    server.sent[path] = server.sent.get(path, 0) + 1

        self.routes[f"/{path}"] = send

    def held(self, path: str, data: bytes, first: int) -> None:
        """The first ``first`` bytes at once, the rest only after ``release`` is set."""

        def send(handler: http.server.BaseHTTPRequestHandler, server: Hostile) -> None:
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data[:first])
            handler.wfile.flush()
            server.sent[path] = first
            while not server.release.wait(0.05):
                if server.closing.is_set():
                    return
            with contextlib.suppress(OSError):
                handler.wfile.write(data[first:])
                server.sent[path] = len(data)

        self.routes[f"/{path}"] = send


@contextlib.contextmanager
def hostile_server() -> Iterator[Hostile]:
    """Serve on 127.0.0.1 until the block ends; stalled handlers end with it."""
    state = Hostile()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            state.requests.append(path)
            route = state.routes.get(path)
            if route is None:
                self.send_error(404)
                return
            route(self, state)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.closing.set()
        server.shutdown()
        server.server_close()
        thread.join()


def wait_for(condition: Callable[[], object], *, timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)
