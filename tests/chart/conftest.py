"""Fixtures of the chart tests: one chart copy with stand-in dependencies per session, renders cached by case."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .cases import CASES
from .chartlib import KUBE_VERSIONS, Doc, make_chart_copy, render


@pytest.fixture(scope="session")
def chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chart with stand-ins of its dependencies, in a temporary folder."""
    return make_chart_copy(tmp_path_factory.mktemp("chart"))


@pytest.fixture(scope="session")
def rendered(chart: Path) -> dict[str, list[Doc]]:
    """Renders of every case, made once."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        docs = pool.map(lambda case: render(chart, CASES[case]), CASES)
        return dict(zip(CASES, docs, strict=True))


@pytest.fixture(scope="session")
def rendered_by_version(chart: Path) -> dict[str, dict[str, list[Doc]]]:
    """Renders of every case for every supported Kubernetes version (helm --kube-version), made once."""
    jobs = [(version, case) for version in KUBE_VERSIONS for case in CASES]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        docs = list(pool.map(lambda job: render(chart, CASES[job[1]], kube_version=f"{job[0]}.0"), jobs))
    out: dict[str, dict[str, list[Doc]]] = {version: {} for version in KUBE_VERSIONS}
    for (version, case), result in zip(jobs, docs, strict=True):
        out[version][case] = result
    return out
