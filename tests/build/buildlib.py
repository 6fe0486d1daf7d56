"""Helpers of the build tests: the headers' kernel, recipes, builders, tarballs."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from realdriver import find_kernel_by_series

from agent.build.download import Fetcher, ProxySettings
from agent.build.service import Builder
from agent.host.paths import HostPaths
from agent.host.runner import Runner
from agent.recipes.loader import load_recipe
from agent.recipes.model import Recipe

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "tests" / "recipes"
DRIVER = REPO / "tests" / "driver"
JOBS = 2
SOURCE_NAMES = ("Kbuild", "Makefile", "README.md")


TEST_SERIES = "6.1"  # the series the test recipes were validated on (tests/recipes/testgpu.toml)


def headers_kernel() -> str:
    """The newest installed 6.1 kernel with headers (Debian's, not the running kernel): fails when there is none.

    Chosen by series, never "the newest kernel": Debian 12 installs 6.1 and 6.12 side by side.
    """
    return find_kernel_by_series(TEST_SERIES)


def recipe(name: str = "testgpu") -> Recipe:
    return load_recipe(RECIPES / f"{name}.toml")


def make_builder(cache: Path, *, runner: Runner | None = None, fetcher: Fetcher | None = None, **kw: object) -> Builder:
    """A Builder on the real host (for its headers) with its own cache and work folders."""
    runner = runner or Runner()
    return Builder(
        host=HostPaths(Path("/")),
        runner=runner,
        cache_dir=cache,
        fetcher=fetcher
        or Fetcher(cache_dir=cache, proxies=ProxySettings(), stop=runner.stop_event, attempts=3, backoff=0.01),
        jobs=JOBS,
        **kw,  # type: ignore[arg-type]
    )


def tarball_of(folder: Path, top: str, *, extra: dict[str, bytes] | None = None) -> bytes:
    """A .tar.gz of ``folder`` under ``top/`` (plus raw ``extra`` members, names taken as they are)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and (path.suffix in (".c", ".h") or path.name in SOURCE_NAMES):
                archive.add(path, arcname=f"{top}/{path.relative_to(folder).as_posix()}")
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
