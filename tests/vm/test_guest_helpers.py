"""The guest-side helpers, exercised on the host (they are plain standard-library Python)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from vm import guest
from vm.machine import VmResult


@pytest.fixture
def server() -> Iterator[str]:
    calls: list[int] = []

    class Ready(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            calls.append(1)
            ready = len(calls) >= 3  # not ready on the first two polls
            self.send_response(200 if ready else 503)
            self.end_headers()
            self.wfile.write(b"ready" if ready else b"not yet")

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ready)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/readyz"
    httpd.shutdown()
    httpd.server_close()


def test_wait_for_http_polls_until_the_status(server: str) -> None:
    assert guest.http_get(server) == (503, "not yet")
    assert guest.wait_for_http(server, timeout=10) == "ready"


def test_http_get_reports_an_unreachable_server() -> None:
    status, reason = guest.http_get("http://127.0.0.1:9/", timeout=2)
    assert status == 0 and reason


def test_wait_for_names_what_did_not_happen() -> None:
    with pytest.raises(TimeoutError, match="the moon not met within"):
        guest.wait_for(lambda: False, timeout=0.05, what="the moon")


def test_holding_open_keeps_a_process_with_the_file_open(tmp_path: Path) -> None:
    device = tmp_path / "device"
    device.write_text("x")
    with guest.holding_open(device) as holder:
        links = [p.readlink() for p in Path(f"/proc/{holder.pid}/fd").iterdir()]
        assert device in links
    assert holder.returncode == 0


def test_reports_reach_the_host_as_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = tmp_path / "results"
    monkeypatch.setattr(guest, "RESULTS", str(results))
    guest.report("load", guest.run(["sh", "-c", "echo out; echo err >&2; exit 3"]))
    guest.report("load", {"rc": 0})
    guest.report("path", Path("/x"))
    result = VmResult(returncode=0, results=results.read_text(), console="", seconds=1.0, boot_seconds=1.0)
    assert result.records() == {"load": {"rc": 0}, "path": "/x"}
    first = result.results.splitlines()[0]
    assert '"rc": 3' in first and '"stdout": "out\\n"' in first and '"stderr": "err\\n"' in first
