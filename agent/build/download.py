"""Downloads: proxies, TLS always verified, retries with backoff, streamed to a cache keyed by sha256."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from agent.build.leftovers import held_file, sweep
from agent.build.sources import redact_url
from agent.build.transfer import (
    DECODABLE,
    BodyDecoder,
    CancelledError,
    Transfer,
    get_following_redirects,
    shown_url,
    write_all,
)
from agent.errors import DownloadError, IntegrityError, StopRequestedError, UsageError
from agent.host.files import WRITE_ERRNOS, atomic_write, write_failure
from agent.logs import get_logger

if TYPE_CHECKING:
    import requests

log = get_logger(__name__)

CHUNK = 1 << 20
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
DEFAULT_ATTEMPTS = 4
DEFAULT_BACKOFF = 1.0  # seconds before the 2nd attempt, doubling after each failure
DEFAULT_DEADLINE = 1800.0  # seconds for one download, all attempts included (--download-timeout)


@dataclass(frozen=True)
class ProxySettings:
    """HTTP(S) proxies and the hosts that bypass them; options win over the environment."""

    http: str = ""
    https: str = ""
    no_proxy: str = ""

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        *,
        http: str | None = None,
        https: str | None = None,
        no_proxy: str | None = None,
    ) -> ProxySettings:
        """Read HTTP_PROXY / HTTPS_PROXY / NO_PROXY (either case) unless given explicitly."""

        def pick(given: str | None, name: str) -> str:
            if given is not None:
                return given
            return env.get(name.lower()) or env.get(name.upper()) or ""

        return cls(http=pick(http, "http_proxy"), https=pick(https, "https_proxy"), no_proxy=pick(no_proxy, "no_proxy"))

    def for_url(self, url: str) -> dict[str, str]:
        """The proxies mapping for one URL ({} to go direct)."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if self.bypass(host, parts.port):
            return {}
        proxy = self.https if parts.scheme == "https" else self.http
        return {parts.scheme: proxy} if proxy else {}

    def bypass(self, host: str, port: int | None) -> bool:
        """Whether NO_PROXY names ``host`` (exact, domain suffix, '*', host:port or an IP network)."""
        for raw in self.no_proxy.replace(" ", ",").split(","):
            entry = raw.strip().lower()
            if not entry:
                continue
            if entry == "*":
                return True
            name, _, entry_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
            if entry_port and (not entry_port.isdigit() or port != int(entry_port)):
                continue
            name = name or entry
            if _in_network(host, name):
                return True
            domain = name.lstrip(".")
            if host == domain or host.endswith("." + domain):
                return True
        return False


def _in_network(host: str, entry: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False


class _RetryError(Exception):
    """A failure worth another attempt (connection, timeout, 5xx)."""


class Fetcher:
    """Fetches pinned URLs into ``<cache>/downloads/<sha256>``; a cached file is never fetched again.

    Every fetch has an overall deadline (``deadline`` seconds for all its attempts, retries and
    backoff included) and answers a stop within a fraction of a second, even while a server drips
    bytes or sends nothing: each attempt runs in a worker thread that this one watches.
    """

    def __init__(
        self,
        *,
        cache_dir: Path,
        proxies: ProxySettings,
        ca_bundle: Path | None = None,
        stop: threading.Event | None = None,
        attempts: int | None = None,
        backoff: float | None = None,
        connect_timeout: float = 15.0,
        read_timeout: float = 60.0,
        deadline: float | None = None,
        session_factory: Callable[[], requests.Session] | None = None,
    ) -> None:
        self._downloads = cache_dir / "downloads"
        self._proxies = proxies
        self._ca_bundle = ca_bundle
        self._stop = stop or threading.Event()
        self._attempts = max(1, attempts if attempts is not None else DEFAULT_ATTEMPTS)
        self._backoff = backoff if backoff is not None else DEFAULT_BACKOFF
        self._timeouts = (connect_timeout, read_timeout)
        self._deadline = deadline if deadline is not None else DEFAULT_DEADLINE
        self._session_factory = session_factory
        self.downloaded: list[str] = []  # URLs actually fetched over the network (tests and logs)

    def cached(self, sha256: str) -> Path:
        return self._downloads / sha256

    def fetch(self, url: str, sha256: str) -> Path:
        """The cached file for ``sha256``, downloading ``url`` first when it is not cached yet."""
        target = self.cached(sha256)
        shown = redact_url(url)
        if target.is_file():
            log.info("download_cached", url=shown, sha256=sha256, path=str(target))
            return target
        if self._ca_bundle is not None and not self._ca_bundle.is_file():
            raise UsageError(f"--ca-bundle {self._ca_bundle} does not exist")
        try:
            self._downloads.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise write_failure(self._downloads, e) from e
        sweep(self._downloads, ".*.part")
        deadline = time.monotonic() + self._deadline
        last = ""
        for attempt in range(1, self._attempts + 1):
            if self._stop.is_set():
                raise StopRequestedError(f"stopped before downloading {shown}")
            try:
                self._attempt(url, sha256, target, deadline)
                self.downloaded.append(url)
                return target
            except _RetryError as e:
                last = str(e)
                log.warning("download_retry", url=shown, attempt=attempt, attempts=self._attempts, error=last)
                if attempt < self._attempts:
                    pause = min(self._backoff * 2 ** (attempt - 1), max(0.0, deadline - time.monotonic()))
                    if self._stop.wait(pause):
                        raise StopRequestedError(f"stopped while downloading {shown}") from e
                    if time.monotonic() >= deadline:
                        raise self._too_slow(shown, last) from e
        raise DownloadError(
            f"cannot download {shown} after {self._attempts} attempts: {last}",
            hint="check the network and the proxy settings (--https-proxy or HTTPS_PROXY, --no-proxy), then retry",
        )

    def _too_slow(self, shown: str, last: str = "") -> DownloadError:
        return DownloadError(
            f"the download of {shown} did not finish within {self._deadline:g} s" + (f" ({last})" if last else ""),
            hint="a slow or stalled server or proxy; retry, or allow more time with --download-timeout",
        )

    def _attempt(self, url: str, sha256: str, target: Path, deadline: float) -> None:
        """One attempt in a worker thread; this thread watches the stop event and the deadline."""
        transfer = Transfer()
        outcome: list[BaseException] = []
        done = threading.Event()

        def work() -> None:
            try:
                self._once(url, sha256, target, transfer)
            except BaseException as e:  # handed to the watching thread, which raises it
                outcome.append(e)
            finally:
                done.set()

        worker = threading.Thread(target=work, name="download", daemon=True)
        worker.start()
        shown = redact_url(url)
        while not done.wait(WATCH_INTERVAL):
            if self._stop.is_set() or time.monotonic() >= deadline:
                if transfer.cancel():
                    # A cut connection ends the worker at once; it removes its partial file itself.
                    done.wait(CANCEL_GRACE)
                if self._stop.is_set():
                    log.warning("download_stopped", url=shown)
                    raise StopRequestedError(f"stopped while downloading {shown}")
                raise self._too_slow(shown)
        if outcome:
            raise outcome[0]

    def _session(self) -> requests.Session:
        if self._session_factory is not None:
            return self._session_factory()
        import requests

        session = requests.Session()
        # Proxies and the CA bundle come from our own settings only, so what is used is what was logged.
        session.trust_env = False
        # The artifacts are compressed already; asking for the bytes as they are saves a decoding pass.
        session.headers["Accept-Encoding"] = "identity"
        return session

    def _verify(self) -> str | bool:
        """What TLS verification trusts: the usual CAs, plus --ca-bundle's (a proxy's CA adds, not replaces)."""
        if self._ca_bundle is None:
            return True
        import certifi

        combined = self._downloads / ".ca-bundle.pem"
        atomic_write(combined, Path(certifi.where()).read_bytes() + b"\n" + self._ca_bundle.read_bytes())
        return str(combined)

    def _once(self, url: str, sha256: str, target: Path, transfer: Transfer) -> None:
        import requests
        import urllib3.exceptions

        verify: Any = self._verify()
        session = self._session()
        try:
            response = get_following_redirects(
                session, url, proxies=self._proxies.for_url, timeouts=self._timeouts, verify=verify, transfer=transfer
            )
            with response:
                if response.status_code in RETRY_STATUS:
                    raise _RetryError(f"HTTP {response.status_code} {response.reason}")
                if response.status_code >= 400:
                    raise UsageError(
                        f"cannot download {shown_url(url)}: HTTP {response.status_code} {response.reason}",
                        hint="check the URL (--source/--firmware or the recipe)",
                    )
                self._stream(response, url, sha256, target, transfer)
        except CancelledError:
            return
        except requests.exceptions.SSLError as e:
            raise UsageError(
                f"TLS verification failed for {redact_url(url)}: {e}",
                hint="behind a TLS-intercepting proxy, pass its CA with --ca-bundle",
            ) from e
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema) as e:
            raise UsageError(f"cannot download {redact_url(url)}: {e}", hint="check the URL") from e
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as e:
            if transfer.cancelled.is_set():
                return
            if isinstance(e, OSError) and e.errno in WRITE_ERRNOS:
                raise write_failure(self._downloads, e) from e
            raise _RetryError(f"{type(e).__name__}: {e}") from e
        finally:
            session.close()

    def _stream(self, response: requests.Response, url: str, sha256: str, target: Path, transfer: Transfer) -> None:
        """Write the body as sent to a locked .part file while hashing it; only a match gets its final name.

        The body is kept as it came over the wire. A server may still send it with Content-Encoding
        (gzip, deflate): then both the bytes sent and the decoded bytes are hashed, and whichever
        matches the pin is kept (a .tar.gz labelled gzip, or a file compressed on the fly).
        """
        shown = redact_url(url)
        encoding = response.headers.get("Content-Encoding", "").strip().lower()
        decoded = BodyDecoder(encoding) if encoding in DECODABLE else None
        digest = hashlib.sha256()
        size = 0
        with held_file(self._downloads, prefix=f".{sha256[:16]}.", suffix=".part") as (fd, tmp):
            # read1: whatever has arrived, up to CHUNK, so progress reaches the file as it comes.
            while chunk := response.raw.read1(CHUNK, decode_content=False):
                if transfer.cancelled.is_set():
                    raise CancelledError
                write_all(fd, chunk)
                digest.update(chunk)
                size += len(chunk)
                if decoded is not None:
                    decoded.feed(chunk)
            if decoded is not None:
                decoded.finish()
            expected = response.headers.get("Content-Length")
            if expected and expected.isdigit() and int(expected) != size:
                raise _RetryError(f"short read: {size} of {expected} bytes")
            if digest.hexdigest() == sha256:
                os.fsync(fd)
                os.replace(tmp, target)
            elif decoded is not None and decoded.hexdigest() == sha256:
                self._decode_into(tmp, encoding, target, sha256)
            else:
                actual = digest.hexdigest() + (f" ({decoded.hexdigest()} decoded)" if decoded else "")
                raise IntegrityError(
                    f"{shown} has sha256 {actual}, expected {sha256}: refusing to use it",
                    hint="the server sent another file than the pinned one; check the URL and the pin",
                )
        log.info("download_done", url=shown, bytes=size, sha256=sha256, encoding=encoding or "identity")

    def _decode_into(self, raw: Path, encoding: str, target: Path, sha256: str) -> None:
        """Decode the kept wire bytes into the final file (their decoded sha256 was checked already)."""
        decoder = BodyDecoder(encoding)
        with held_file(self._downloads, prefix=f".{sha256[:16]}.", suffix=".part") as (fd, tmp):
            with raw.open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    for piece in decoder.pieces(chunk):
                        write_all(fd, piece)
            write_all(fd, decoder.finish())
            if decoder.hexdigest() != sha256:
                raise IntegrityError(f"{raw} changed while it was decoded")
            os.fsync(fd)
            os.replace(tmp, target)


WATCH_INTERVAL = 0.05  # how often the watching thread looks at the stop event and the deadline
CANCEL_GRACE = 0.5  # how long a cut attempt may take to remove its partial file before we return
