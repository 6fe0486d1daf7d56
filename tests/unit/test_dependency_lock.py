"""scripts/deps/pip-agent.lock: what the images install into the agent's venv, every file pinned by sha256."""

from __future__ import annotations

import re
import tomllib

from tooling import REPO, locked_packages


def test_every_dependency_of_the_agent_is_locked_with_hashes() -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~ ;\[]", d, maxsplit=1)[0].lower().replace("_", "-") for d in declared}
    locked = {name: hashes for name, (_, hashes) in locked_packages().items()}
    assert names <= locked.keys(), f"run bash scripts/lock-deps: {sorted(names - locked.keys())} are not locked"
    # The build tools `pip install --no-build-isolation /src` uses are locked too: nothing is fetched unpinned.
    assert {"pip", "setuptools"} <= locked.keys()
    for name, hashes in locked.items():
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), name


def test_the_images_install_only_from_the_lock() -> None:
    for dockerfile in ("Dockerfile.builder", "Dockerfile.loader"):
        text = (REPO / dockerfile).read_text()
        installs = re.findall(r'"\$venv/bin/pip" install[^;]*', text)
        assert installs, dockerfile
        for command in installs:
            assert "--no-deps" in command, (dockerfile, command)
            assert "--require-hashes" in command or "--no-build-isolation /src" in command, (dockerfile, command)
    assert "!scripts/deps/pip-agent.lock" in (REPO / ".dockerignore").read_text()
