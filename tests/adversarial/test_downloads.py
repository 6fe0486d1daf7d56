"""Hostile servers against the Fetcher (issue 11 F5, F11 redirects, F12, F14): typed errors, prompt stops, no litter."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from adversarial.httpd import Hostile, hostile_server, wait_for
from tooling import REPO

from agent.build.download import Fetcher, ProxySettings
from agent.errors import DownloadError, StopRequestedError, UsageError

STOP_WITHIN = 2.0  # seconds from SIGTERM (the stop event) to the end: the requirement


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fetcher(cache: Path, **kw: object) -> Fetcher:
    return Fetcher(cache_dir=cache, proxies=ProxySettings(), attempts=2, backoff=0.01, **kw)  # type: ignore[arg-type]


def _tarball() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("top/a.c")
        body = b"int a;\n" * 1000
        info.size = len(body)
        archive.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


@pytest.fixture
def server() -> Iterator[Hostile]:
    with hostile_server() as served:
        yield served


def _parts(cache: Path) -> list[Path]:
    return sorted((cache / "downloads").glob(".*.part"))


# --- F14: Content-Encoding ----------------------------------------------------------------------------------
def test_f14_a_body_compressed_on_the_fly_is_kept_decoded(server: Hostile, tmp_path: Path) -> None:
    data = _tarball()
    server.gzipped("src.tar.gz", data)
    path = _fetcher(tmp_path).fetch(server.url("src.tar.gz"), _sha(data))
    assert path.read_bytes() == data
    assert _parts(tmp_path) == []


def test_f14_a_tarball_labelled_gzip_is_kept_as_sent(server: Hostile, tmp_path: Path) -> None:
    """Servers that label .tar.gz files with Content-Encoding: gzip send the file itself."""
    data = _tarball()
    server.file("src.tar.gz", data, {"Content-Encoding": "gzip"})
    assert _fetcher(tmp_path).fetch(server.url("src.tar.gz"), _sha(data)).read_bytes() == data


def test_f14_a_gzip_bomb_is_hashed_in_bounded_memory_and_refused(server: Hostile, tmp_path: Path) -> None:
    bomb = gzip.compress(b"\0" * (256 << 20))
    server.file("bomb", bomb, {"Content-Encoding": "gzip"})
    from agent.errors import IntegrityError

    with pytest.raises(IntegrityError, match="decoded"):
        _fetcher(tmp_path).fetch(server.url("bomb"), "1" * 64)
    assert _parts(tmp_path) == []


# --- F11: redirects -----------------------------------------------------------------------------------------
def test_f11_a_redirect_loop_is_a_usage_error_naming_the_loop(server: Hostile, tmp_path: Path) -> None:
    server.redirect("a", "/b")
    server.redirect("b", server.url("a"))
    with pytest.raises(UsageError, match="redirect loop") as caught:
        _fetcher(tmp_path).fetch(server.url("a"), "1" * 64)
    assert caught.value.exit_code == 2
    assert server.url("b") in str(caught.value)
    assert server.hits("a") == 1, "not retried: a loop does not heal by itself"


@pytest.mark.parametrize("location", ["file:///etc/passwd", "http://example.invalid/x.tar.gz", "ftp://host/x"])
def test_f11_a_redirect_off_https_is_refused_before_following_it(
    server: Hostile, tmp_path: Path, location: str
) -> None:
    server.redirect("x.tar.gz", location)
    with pytest.raises(UsageError, match="only https") as caught:
        _fetcher(tmp_path).fetch(server.url("x.tar.gz"), "1" * 64)
    assert caught.value.exit_code == 2
    assert location.split("://", maxsplit=1)[0] in str(caught.value)


def test_a_redirect_chain_on_a_loopback_mirror_is_followed(server: Hostile, tmp_path: Path) -> None:
    data = b"moved"
    server.redirect("old", "/older", 301)
    server.redirect("older", server.url("new") + "?token=secret", 307)
    server.file("new", data)
    assert _fetcher(tmp_path).fetch(server.url("old"), _sha(data)).read_bytes() == data


# --- F12: stop and deadline, in process ----------------------------------------------------------------------
def _stop_after_request(server: Hostile, path: str, stop: threading.Event, *, after_bytes: int = 0) -> list[float]:
    """Set ``stop`` once the server is in the middle of ``path``; returns [when it was set]."""
    when: list[float] = []

    def run() -> None:
        wait_for(lambda: server.hits(path) and server.sent.get(path, 0) >= after_bytes, timeout=30, what=path)
        when.append(time.monotonic())
        stop.set()

    threading.Thread(target=run, daemon=True).start()
    return when


def _in_thread(call: Callable[[], object], timeout: float = 60.0) -> BaseException | None:
    """Run ``call`` in a thread (a regression must fail the test, not hang the suite); what it raised."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as e:
            raised.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"still running after {timeout} s"
    return raised[0] if raised else None


@pytest.mark.parametrize("behaviour", ["silent", "drip"])
def test_f12_a_stop_ends_a_stalled_download_within_2s(server: Hostile, tmp_path: Path, behaviour: str) -> None:
    if behaviour == "silent":
        server.silent("x")
    else:
        server.drip("x", size=10_000, interval=0.1)
    stop = threading.Event()
    when = _stop_after_request(server, "x", stop, after_bytes=0 if behaviour == "silent" else 3)
    raised = _in_thread(lambda: _fetcher(tmp_path, stop=stop).fetch(server.url("x"), "1" * 64))
    assert isinstance(raised, StopRequestedError), raised
    assert time.monotonic() - when[0] < STOP_WITHIN
    assert _parts(tmp_path) == [], "the cut attempt removed its partial file"


def test_f12_every_download_has_an_overall_deadline(server: Hostile, tmp_path: Path) -> None:
    server.drip("x", size=10_000, interval=0.05)
    started = time.monotonic()
    with pytest.raises(DownloadError, match=r"did not finish within 1 s") as caught:
        _fetcher(tmp_path, deadline=1.0).fetch(server.url("x"), "1" * 64)
    assert caught.value.exit_code == 4
    assert "--download-timeout" in str(caught.value)
    assert time.monotonic() - started < 1.0 + STOP_WITHIN


def test_f12_the_deadline_covers_retries_and_backoff(server: Hostile, tmp_path: Path) -> None:
    fetcher = Fetcher(cache_dir=tmp_path, proxies=ProxySettings(), attempts=50, backoff=0.2, deadline=1.0)
    started = time.monotonic()
    with pytest.raises(DownloadError, match="did not finish within 1 s"):
        fetcher.fetch("http://127.0.0.1:9/x", "1" * 64)  # connection refused, retried until the deadline
    assert time.monotonic() - started < 1.0 + STOP_WITHIN


# --- F12: SIGTERM to a real `intel-gpu-agent build` ----------------------------------------------------------
def _build(tmp_path: Path, url: str, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    from build.buildlib import headers_kernel

    argv = [sys.executable, "-m", "agent", "--log-format", "json", "build"]
    argv += ["--recipe", str(REPO / "tests/recipes/testgpu.toml"), "--kernel", headers_kernel()]
    argv += ["--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]
    argv += ["--source", url, "--source-sha256", "1" * 64, *extra]
    return subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )


@pytest.mark.real_commands
@pytest.mark.parametrize("behaviour", ["silent", "drip"])
def test_f12_sigterm_to_the_build_command_during_a_stalled_download_exits_within_2s(
    server: Hostile, tmp_path: Path, behaviour: str, record_property: pytest.RecordProperty
) -> None:
    if behaviour == "silent":
        server.silent("src.tar.gz")
    else:
        server.drip("src.tar.gz", size=1_000_000, interval=0.2)
    process = _build(tmp_path, server.url("src.tar.gz"))
    try:
        wait_for(
            lambda: server.hits("src.tar.gz") and (behaviour == "silent" or server.sent.get("src.tar.gz", 0) >= 2),
            timeout=60,
            what="the build to start its download",
        )
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        seconds = time.monotonic() - sent
    finally:
        process.kill()
        _, err = process.communicate()
    record_property("sigterm_to_exit_seconds", round(seconds, 3))
    print(f"\nSIGTERM to exit during a {behaviour} download: {seconds:.3f} s")
    assert process.returncode == 4, err
    assert "stopped while downloading" in err
    assert seconds < STOP_WITHIN
    assert _parts(tmp_path / "cache") == []


@pytest.mark.real_commands
@pytest.mark.parametrize("how", ["option", "env"])
def test_f12_build_download_timeout_option_and_variable(server: Hostile, tmp_path: Path, how: str) -> None:
    server.drip("src.tar.gz", size=1_000_000, interval=0.1)
    if how == "option":
        process = _build(tmp_path, server.url("src.tar.gz"), "--download-timeout", "1.5")
    else:
        process = _build(tmp_path, server.url("src.tar.gz"), env={"INTEL_GPU_AGENT_DOWNLOAD_TIMEOUT": "1.5"})
    try:
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 4, err
    assert "did not finish within 1.5 s" in err


def test_the_download_timeout_must_be_positive() -> None:
    from agent.build.config import make_build_config
    from agent.host.paths import HostPaths

    with pytest.raises(UsageError, match="--download-timeout"):
        make_build_config(HostPaths(Path("/")), recipe="r", kernel="k", out="o", download_timeout=0)


# --- F5: a SIGKILLed download leaves a .part; the next fetch removes it, never a live one --------------------
CHILD = """
import sys
from pathlib import Path
from agent.build.download import Fetcher, ProxySettings
Fetcher(cache_dir=Path(sys.argv[1]), proxies=ProxySettings(), attempts=1).fetch(sys.argv[2], sys.argv[3])
"""


def _child_download(cache: Path, url: str, sha: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(cache), url, sha], env={**os.environ, "PYTHONPATH": str(REPO)}
    )


def test_f5_a_part_file_of_a_killed_download_is_removed_by_the_next_one_and_a_live_one_is_kept(
    server: Hostile, tmp_path: Path
) -> None:
    big = os.urandom(1 << 20)
    server.held("big", big, first=256 << 10)
    small = b"small file"
    server.file("small", small)
    cache = tmp_path / "cache"
    live = _child_download(cache, server.url("big"), _sha(big))
    killed = _child_download(cache, server.url("big"), _sha(big))
    try:
        wait_for(lambda: len(_parts(cache)) == 2 and server.hits("big") == 2, timeout=60, what="two .part files")
        wait_for(lambda: all(p.stat().st_size > 0 for p in _parts(cache)), timeout=30, what="bytes in both")
        parts_before = _parts(cache)
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        assert killed.returncode == -signal.SIGKILL
        assert _parts(cache) == parts_before, "SIGKILL leaves the .part behind (what the next run must clean)"
        # The next download in the same cache: removes the dead writer's file, keeps the live one's.
        _fetcher(cache).fetch(server.url("small"), _sha(small))
        left = _parts(cache)
        assert len(left) == 1 and left[0] in parts_before
        assert live.poll() is None
        server.release.set()
        assert live.wait(timeout=60) == 0
    finally:
        for child in (live, killed):
            child.kill()
            child.wait()
    assert (cache / "downloads" / _sha(big)).read_bytes() == big
    assert _parts(cache) == []
