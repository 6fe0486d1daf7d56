"""One HTTP transfer: redirects followed by our rules, a labelled body decoded, the connection cut from outside."""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import zlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from agent.build.sources import LOOPBACK, redact_url
from agent.errors import UsageError
from agent.logs import get_logger

if TYPE_CHECKING:
    import requests

log = get_logger(__name__)

CHUNK = 1 << 20
REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10
DECODABLE = frozenset({"gzip", "x-gzip", "deflate"})  # what BodyDecoder can undo


class CancelledError(Exception):
    """The transfer was cut from outside (stop or deadline); the caller already raised the reason."""


class Transfer:
    """One attempt's live response, so that a stop or the deadline can cut its connection from outside.

    A read blocked in the kernel cannot be interrupted from another thread except by shutting down
    its socket; before the response exists (connecting, waiting for headers) the attempt is left to
    its own timeouts and removes its partial file when it ends.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._response: requests.Response | None = None
        self.cancelled = threading.Event()

    def attach(self, response: requests.Response) -> None:
        """The response now being read; cut at once if the attempt was cancelled meanwhile."""
        with self._lock:
            self._response = response
        if self.cancelled.is_set():
            self.cancel()

    def cancel(self) -> bool:
        """Mark the attempt cancelled and cut its connection; whether there was one to cut."""
        self.cancelled.set()
        with self._lock:
            response = self._response
        connection = getattr(getattr(response, "raw", None), "connection", None)
        sock = getattr(connection, "sock", None)
        if sock is None:
            return False
        import socket  # only to cut: a no-op build imports this module and must stay fast

        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        return True


def get_following_redirects(
    session: requests.Session,
    url: str,
    *,
    proxies: Callable[[str], dict[str, str]],
    timeouts: tuple[float, float],
    verify: Any,
    transfer: Transfer,
) -> requests.Response:
    """GET ``url``, following redirects ourselves: only to https (or http on loopback), never in a loop."""
    current = url
    seen = [url]
    while True:
        hop_proxies = proxies(current)
        log.info("download_started", url=shown_url(current), proxy=redact_url(next(iter(hop_proxies.values()), "")))
        response = session.get(
            current, stream=True, timeout=timeouts, proxies=hop_proxies, verify=verify, allow_redirects=False
        )
        transfer.attach(response)
        if transfer.cancelled.is_set():
            response.close()
            raise CancelledError
        location = response.headers.get("Location")
        if response.status_code not in REDIRECTS or not location:
            break
        response.close()
        following = urljoin(current, location)
        parts = urlsplit(following)
        if not (parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK)):
            raise UsageError(
                f"cannot download {shown_url(url)}: the server redirects to {shown_url(following)}; only https "
                "(or http from a loopback mirror) is followed",
                hint="check the URL (--source/--firmware or the recipe)",
            )
        if following in seen:
            hops = " -> ".join(shown_url(u) for u in [*seen, following])
            raise UsageError(
                f"cannot download {shown_url(url)}: redirect loop ({hops})",
                hint="the server or mirror is misconfigured; check the URL",
            )
        if len(seen) > MAX_REDIRECTS:
            raise UsageError(f"cannot download {shown_url(url)}: more than {MAX_REDIRECTS} redirects")
        seen.append(following)
        current = following
    return response


class BodyDecoder:
    """Streaming gzip/deflate decoding with bounded memory (a small body may decode to gigabytes)."""

    def __init__(self, encoding: str) -> None:
        # 32 + 15: gzip or zlib by its header; deflate sent raw (no zlib header) is retried as -15.
        self._encoding = encoding
        self._inflate = zlib.decompressobj(32 + zlib.MAX_WBITS)
        self._digest = hashlib.sha256()
        self._broken = False
        self._started = False

    def pieces(self, data: bytes) -> Iterator[bytes]:
        """The decoded bytes of ``data``, in pieces of at most CHUNK bytes; hashed as they go."""
        if self._broken:
            return
        try:
            if not self._started and self._encoding == "deflate" and data[:1] and data[0] & 0x0F != 8:
                self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
            self._started = True
            while data:
                piece = self._inflate.decompress(data, CHUNK)
                data = self._inflate.unconsumed_tail
                self._digest.update(piece)
                yield piece
        except zlib.error:
            self._broken = True  # not what the header says: only the bytes as sent can match

    def feed(self, data: bytes) -> None:
        """Hash the decoded bytes of ``data`` without keeping them."""
        for _ in self.pieces(data):
            pass

    def finish(self) -> bytes:
        """What the decoder still holds once the input has ended (hashed too)."""
        if self._broken:
            return b""
        try:
            rest = self._inflate.flush()
        except zlib.error:
            self._broken = True
            return b""
        self._digest.update(rest)
        return rest

    def hexdigest(self) -> str:
        """The decoded bytes' sha256 so far; "" when the body did not decode."""
        return "" if self._broken else self._digest.hexdigest()


def write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written (a write may be short)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def shown_url(url: str) -> str:
    """A URL for messages: no credentials, no query (a redirect's signed URL carries its token there)."""
    return redact_url(url.split("?", 1)[0].split("#", 1)[0])
