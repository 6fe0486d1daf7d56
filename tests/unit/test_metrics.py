"""Metrics and the health endpoint: real HTTP on 127.0.0.1, exposition checked by promtool."""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from fakehost import ubuntu_2204_flex
from tooling import need_tool

from agent.discovery.node import discover
from agent.health import HealthServer, Readiness, parse_listen
from agent.metrics import Metrics
from agent.recipes.loader import load_recipes
from agent.support import judge


@pytest.fixture
def metrics(tmp_path: Path) -> Metrics:
    facts = discover(ubuntu_2204_flex(tmp_path).paths)
    m = Metrics()
    m.observe_node(facts)
    m.observe_verdicts(judge(facts.kernel, facts.os, facts.gpus, r) for r in load_recipes().recipes)
    return m


def test_discovery_gauges(metrics: Metrics) -> None:
    pf = {"device_id": "56c0", "platform": "ATS-M (DG2 silicon)", "function": "pf"}
    assert metrics.value("intel_gpu_driver_gpus", pf) == 2
    assert metrics.value("intel_gpu_driver_gpus", {**pf, "function": "vf"}) == 1
    assert metrics.value("intel_gpu_driver_support", {"recipe": "i915-2350.145", "verdict": "supported"}) == 1
    assert metrics.value("intel_gpu_driver_support", {"recipe": "i915-2350.145", "verdict": "at-risk"}) == 0
    assert metrics.value("intel_gpu_driver_support", {"recipe": "i915-2350.63", "verdict": "at-risk"}) == 1
    info = {"kernel": "5.15.0-135-generic", "os": "Ubuntu 22.04.5 LTS"}
    assert any(
        s.labels.items() >= info.items()
        for f in metrics.registry.collect()
        for s in f.samples
        if s.name.endswith("info")
    )


def test_state_is_one_hot(metrics: Metrics) -> None:
    metrics.set_state("ready")
    assert metrics.value("intel_gpu_driver_state", {"state": "ready"}) == 1
    assert metrics.value("intel_gpu_driver_state", {"state": "starting"}) == 0
    assert metrics.value("intel_gpu_driver_ready") == 1
    with pytest.raises(ValueError, match="unknown state"):
        metrics.set_state("happy")


def test_exposition_passes_promtool(metrics: Metrics, tmp_path: Path) -> None:
    promtool = need_tool("promtool")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=metrics.exposition(), capture_output=True, check=False, timeout=30
    )
    assert result.returncode == 0, result.stderr.decode() + result.stdout.decode()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_server_endpoints_start_and_stop(metrics: Metrics) -> None:
    readiness = Readiness()
    server = HealthServer("127.0.0.1:0", metrics, readiness)
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert get(base + "/healthz") == (200, "ok\n")
        assert get(base + "/readyz") == (503, "not ready: starting\n")
        readiness.set(True, "driver verified")
        assert get(base + "/readyz") == (200, "ready: driver verified\n")
        code, body = get(base + "/metrics")
        assert code == 200 and "intel_gpu_driver_gpus{" in body
        assert get(base + "/nope")[0] == 404
    finally:
        server.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(base + "/healthz", timeout=2)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0.0.0.0:9480", ("0.0.0.0", 9480)), (":9480", ("0.0.0.0", 9480)), ("[::1]:80", ("::1", 80))],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["9480", "host:", "host:99999", "host:http"])
def test_parse_listen_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_listen(text)
