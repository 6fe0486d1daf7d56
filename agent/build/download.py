"""Downloads: proxies, TLS always verified, retries with backoff, streamed to a cache keyed by sha256."""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from agent.build.sources import redact_url
from agent.errors import DownloadError, IntegrityError, StopRequestedError, UsageError
from agent.host.files import atomic_write
from agent.logs import get_logger

if TYPE_CHECKING:
    import requests

log = get_logger(__name__)

CHUNK = 1 << 20
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
DEFAULT_ATTEMPTS = 4
DEFAULT_BACKOFF = 1.0  # seconds before the 2nd attempt, doubling after each failure


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
    """Fetches pinned URLs into ``<cache>/downloads/<sha256>``; a cached file is never fetched again."""

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
        session_factory: Callable[[], requests.Session] | None = None,
    ) -> None:
        self._downloads = cache_dir / "downloads"
        self._proxies = proxies
        self._ca_bundle = ca_bundle
        self._stop = stop or threading.Event()
        self._attempts = max(1, attempts if attempts is not None else DEFAULT_ATTEMPTS)
        self._backoff = backoff if backoff is not None else DEFAULT_BACKOFF
        self._timeouts = (connect_timeout, read_timeout)
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
        self._downloads.mkdir(parents=True, exist_ok=True)
        session = self._session()
        last = ""
        try:
            for attempt in range(1, self._attempts + 1):
                if self._stop.is_set():
                    raise StopRequestedError(f"stopped before downloading {shown}")
                try:
                    self._once(session, url, sha256, target)
                    self.downloaded.append(url)
                    return target
                except _RetryError as e:
                    last = str(e)
                    log.warning("download_retry", url=shown, attempt=attempt, attempts=self._attempts, error=last)
                    if attempt < self._attempts and self._stop.wait(self._backoff * 2 ** (attempt - 1)):
                        raise StopRequestedError(f"stopped while downloading {shown}") from e
        finally:
            session.close()
        raise DownloadError(
            f"cannot download {shown} after {self._attempts} attempts: {last}",
            hint="check the network and the proxy settings (--https-proxy or HTTPS_PROXY, --no-proxy), then retry",
        )

    def _session(self) -> requests.Session:
        if self._session_factory is not None:
            return self._session_factory()
        import requests

        session = requests.Session()
        # Proxies and the CA bundle come from our own settings only, so what is used is what was logged.
        session.trust_env = False
        return session

    def _verify(self) -> str | bool:
        """What TLS verification trusts: the usual CAs, plus --ca-bundle's (a proxy's CA adds, not replaces)."""
        if self._ca_bundle is None:
            return True
        import certifi

        combined = self._downloads / ".ca-bundle.pem"
        atomic_write(combined, Path(certifi.where()).read_bytes() + b"\n" + self._ca_bundle.read_bytes())
        return str(combined)

    def _once(self, session: requests.Session, url: str, sha256: str, target: Path) -> None:
        import requests

        proxies = self._proxies.for_url(url)
        verify: Any = self._verify()
        shown = redact_url(url)
        log.info("download_started", url=shown, proxy=redact_url(next(iter(proxies.values()), "")))
        try:
            with session.get(url, stream=True, timeout=self._timeouts, proxies=proxies, verify=verify) as response:
                if response.status_code in RETRY_STATUS:
                    raise _RetryError(f"HTTP {response.status_code} {response.reason}")
                if response.status_code >= 400:
                    raise UsageError(
                        f"cannot download {shown}: HTTP {response.status_code} {response.reason}",
                        hint="check the URL (--source/--firmware or the recipe)",
                    )
                self._stream(response, url, sha256, target)
        except requests.exceptions.SSLError as e:
            raise UsageError(
                f"TLS verification failed for {shown}: {e}",
                hint="behind a TLS-intercepting proxy, pass its CA with --ca-bundle",
            ) from e
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as e:
            raise _RetryError(f"{type(e).__name__}: {e}") from e
        except requests.exceptions.ChunkedEncodingError as e:
            raise _RetryError(f"connection broken: {e}") from e

    def _stream(self, response: requests.Response, url: str, sha256: str, target: Path) -> None:
        """Write the body to a temp file while hashing it; only a matching file gets its final name."""
        fd, tmp = tempfile.mkstemp(dir=self._downloads, prefix=f".{sha256[:16]}.", suffix=".part")
        digest = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as handle:
                for chunk in response.iter_content(CHUNK):
                    if self._stop.is_set():
                        raise StopRequestedError(f"stopped while downloading {redact_url(url)}")
                    handle.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
            expected = response.headers.get("Content-Length")
            if expected and expected.isdigit() and int(expected) != size:
                raise _RetryError(f"short read: {size} of {expected} bytes")
            if digest.hexdigest() != sha256:
                raise IntegrityError(
                    f"{redact_url(url)} has sha256 {digest.hexdigest()}, expected {sha256}: refusing to use it",
                    hint="the server sent another file than the pinned one; check the URL and the pin",
                )
            os.replace(tmp, target)
            log.info("download_done", url=redact_url(url), bytes=size, sha256=sha256)
        finally:
            Path(tmp).unlink(missing_ok=True)
