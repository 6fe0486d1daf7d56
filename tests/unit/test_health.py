"""The HTTP endpoint's failures (issue 11 F11, F16): bad listen addresses typed, vanished clients logged as JSON."""

from __future__ import annotations

import json
import socket
import struct
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import logs
from agent.errors import TransientError, UsageError
from agent.health import HealthServer, Readiness
from agent.metrics import Metrics


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def server(metrics: Metrics) -> Iterator[HealthServer]:
    served = HealthServer("127.0.0.1:0", metrics, Readiness())
    served.start()
    try:
        yield served
    finally:
        served.stop()


# --- F11: listen addresses ------------------------------------------------------------------------------------
def test_a_listen_host_that_does_not_resolve_is_a_usage_error(metrics: Metrics) -> None:
    with pytest.raises(UsageError) as caught:
        HealthServer("no-such-host.invalid:9480", metrics, Readiness())
    assert caught.value.exit_code == 2
    assert "--listen no-such-host.invalid:9480" in str(caught.value)
    assert "does not resolve" in str(caught.value)


def test_a_listen_address_in_use_is_transient_and_named(metrics: Metrics) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        with pytest.raises(TransientError) as caught:
            HealthServer(f"127.0.0.1:{port}", metrics, Readiness())
    finally:
        taken.close()
    assert caught.value.exit_code == 4
    assert f"127.0.0.1:{port} is in use" in str(caught.value)


def test_a_listen_address_not_on_this_host_is_a_usage_error(metrics: Metrics) -> None:
    with pytest.raises(UsageError, match=r"cannot listen on 192\.0\.2\.1:9480"):
        HealthServer("192.0.2.1:9480", metrics, Readiness())  # TEST-NET-1: never a local address


def test_an_ipv6_listen_address_is_served(metrics: Metrics) -> None:
    served = HealthServer("[::1]:0", metrics, Readiness())
    served.start()
    try:
        with urllib.request.urlopen(f"http://[::1]:{served.port}/healthz", timeout=5) as response:
            assert response.read() == b"ok\n"
    finally:
        served.stop()


def test_run_with_a_listen_host_that_does_not_resolve_exits_2_without_a_trace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fakehost import FakeHost

    from agent.cli import main

    host = FakeHost(tmp_path / "host")
    code = main(["--host-root", str(host.root), "run", "--mode", "monitor", "--listen", "nowhere.invalid:9480"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "nowhere.invalid" in err and "Traceback" not in err


# --- F16: a scraper that disconnects mid-response -------------------------------------------------------------
def _reset(port: int, *, read_first: bool) -> None:
    """Send a request and close with a TCP reset (SO_LINGER 0), as a scraper killed mid-scrape does."""
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    if read_first:
        client.recv(1)
    client.close()


def test_a_client_that_disconnects_is_one_json_log_event_not_a_traceback(
    server: HealthServer, capfd: pytest.CaptureFixture[str]
) -> None:
    logs.configure(fmt="json", level="info")
    try:
        for i in range(20):
            _reset(server.port, read_first=bool(i % 2))
        seen = ""
        deadline = time.monotonic() + 10
        while "http_client_gone" not in seen and time.monotonic() < deadline:
            seen += capfd.readouterr().err
            time.sleep(0.01)
        # The endpoint still answers afterwards.
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5) as response:
            assert response.read() == b"ok\n"
        seen += capfd.readouterr().err
    finally:
        logs.configure()
    assert "Traceback" not in seen
    lines = [line for line in seen.splitlines() if line.strip()]
    events = [json.loads(line) for line in lines]  # every line on stderr is one JSON object
    gone = [e for e in events if e["event"] == "http_client_gone"]
    assert gone, seen
    assert {"client", "error"} <= gone[0].keys()
