"""The HTTP endpoint: /metrics, /healthz and /readyz on one address, started and stopped cleanly."""

from __future__ import annotations

import errno
import socket
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agent.errors import TransientError, UsageError
from agent.logs import get_logger
from agent.metrics import Metrics

log = get_logger(__name__)
# A scraper that went away mid-request: an event, not an error of ours.
CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)

CONTENT_TYPE_LATEST = "text/plain; version=0.0.4; charset=utf-8"


class Readiness:
    """Whether the node is ready, and why not; shared by the daemon and the HTTP handler."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready = False
        self._reason = "starting"

    def set(self, ready: bool, reason: str) -> None:
        with self._lock:
            self._ready = ready
            self._reason = reason

    def get(self) -> tuple[bool, str]:
        with self._lock:
            return self._ready, self._reason


def parse_listen(address: str) -> tuple[str, int]:
    """ "host:port" or ":port" → (host, port); IPv6 as "[::1]:9480"."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen address must be HOST:PORT, got {address!r}")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - a pod serves its metrics port


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer whose handler failures are log events (stderr carries the JSON log only)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], family: int) -> None:
        self.address_family = family  # read by TCPServer.__init__ when it makes the socket: IPv6 too
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """socketserver prints a traceback to stderr here; say what happened as one structured event."""
        error = sys.exc_info()[1]
        client = _client(client_address)
        if isinstance(error, CLIENT_GONE):
            log.info("http_client_gone", client=client, error=f"{type(error).__name__}: {error}")
        else:
            log.exception("http_handler_failed", client=client, error=f"{type(error).__name__}: {error}")


def _client(address: Any) -> str:
    try:
        return f"{address[0]}:{address[1]}"
    except (TypeError, IndexError):
        return str(address)


def _bind(address: str, handler: type[BaseHTTPRequestHandler]) -> _Server:
    """The server bound to ``address``; what the network says no to becomes a typed error naming --listen."""
    try:
        host, port = parse_listen(address)
    except ValueError as e:
        raise UsageError(f"--listen: {e}") from e
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as e:
        raise UsageError(
            f"--listen {address}: the host {host!r} does not resolve ({e.strerror})",
            hint="give an IP address of this node, or 0.0.0.0:PORT for every address",
        ) from e
    try:
        return _Server((str(sockaddr[0]), int(sockaddr[1])), handler, family)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise TransientError(
                f"--listen {address}: {host}:{port} is in use by another process",
                hint="another agent (or an old pod on the host network) may still hold it; retry, or pick another port",
            ) from e
        raise UsageError(
            f"cannot listen on {host}:{port} (--listen {address}): {e.strerror or e}",
            hint="give an address of this node, or 0.0.0.0:PORT",
        ) from e


class HealthServer:
    """A small threaded HTTP server; ``port`` is the bound port (useful with port 0 in tests)."""

    def __init__(
        self, address: str, metrics: Metrics, readiness: Readiness, alive: Callable[[], bool] = lambda: True
    ) -> None:
        self._server = _bind(address, _handler(metrics, readiness, alive))
        # A short poll interval: shutdown() waits up to one interval, and SIGTERM-to-exit is a target.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="health-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _handler(metrics: Metrics, readiness: Readiness, alive: Callable[[], bool]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, metrics.exposition(), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok = alive()
                self._send(200 if ok else 500, b"ok\n" if ok else b"stuck\n")
            elif path == "/readyz":
                ready, reason = readiness.get()
                self._send(200 if ready else 503, f"{'ready' if ready else 'not ready'}: {reason}\n".encode())
            else:
                self._send(404, b"not found: try /metrics, /healthz or /readyz\n")

        def _send(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Scrapes every few seconds would flood the log; stay quiet."""

    return Handler
