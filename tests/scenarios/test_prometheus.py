"""A real Prometheus (Debian's package) scrapes a running `intel-gpu-agent run` and its series are queried back."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from lifecycle.fakes import RECIPE, debian_node, make_tree

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)


def _poll(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout}s"
        time.sleep(0.2)


def _stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=30)


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """`run` on a node without a supported GPU: it stays up, not ready, serving its metrics."""
    host = debian_node(tmp_path / "host", gpu=False)
    tree = make_tree(tmp_path / "tree")
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "agent", "run"],
        cwd=REPO,
        env={
            **os.environ,
            "INTEL_GPU_AGENT_HOST_ROOT": str(host.root),
            "INTEL_GPU_AGENT_DRIVER_TREE": str(tree.root),
            "INTEL_GPU_AGENT_RECIPE": str(RECIPE),
            "INTEL_GPU_AGENT_LISTEN": f"127.0.0.1:{port}",
            "INTEL_GPU_AGENT_LOG_FORMAT": "json",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield port, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_prometheus_scrapes_the_agent_and_its_series_are_queried_back(
    agent: tuple[int, subprocess.Popen[bytes]], tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    need_tool = next(p for p in pytestconfig.pluginmanager.get_plugins() if hasattr(p, "need_tool")).need_tool
    prometheus = need_tool("prometheus")
    port, process = agent
    _poll(lambda: _get(f"http://127.0.0.1:{port}/readyz")[0] == 503, "the agent serving /readyz")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: intel-gpu-agent\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
    )
    web = _free_port()
    server = subprocess.Popen(
        [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{web}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        query = urllib.parse.quote('intel_gpu_driver_state{state="unsupported"}')
        results: list[dict[str, object]] = []

        def answered() -> bool:
            code, body = _get(f"http://127.0.0.1:{web}/api/v1/query?query={query}")
            if code != 200:
                return False
            results[:] = json.loads(body)["data"]["result"]
            return bool(results)

        _poll(answered, "the series in Prometheus", timeout=90)
        series = results[0]
        assert series["metric"]["job"] == "intel-gpu-agent"  # type: ignore[index]
        assert series["value"][1] == "1"  # type: ignore[index]
        _code, body = _get(f"http://127.0.0.1:{web}/api/v1/query?query=up")
        assert json.loads(body)["data"]["result"][0]["value"][1] == "1"
    finally:
        assert _stop(server) == 0
    assert _stop(process) == 0, "SIGTERM: nothing to undo, exit 0"
