"""scripts/deps/pip-agent.lock: what the images install into the agent's venv, every file pinned by sha256."""

from __future__ import annotations

import re
import tomllib

from tooling import REPO

LOCK = REPO / "scripts/deps/pip-agent.lock"


def requirements() -> dict[str, list[str]]:
    """name → the sha256 hashes the lock allows for it."""
    out: dict[str, list[str]] = {}
    name = ""
    for line in LOCK.read_text().splitlines():
        pin = re.match(r"^([A-Za-z0-9_.-]+)==\S+ \\$", line)
        if pin:
            name = pin[1].lower()
            out[name] = []
        elif line.strip().startswith("--hash=sha256:"):
            out[name].append(line.strip().removeprefix("--hash=sha256:").rstrip(" \\"))
        elif line.strip() and not line.lstrip().startswith("#"):
            raise AssertionError(f"{LOCK}: unexpected line {line!r}")
    return out


def test_every_dependency_of_the_agent_is_locked_with_hashes() -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~ ;\[]", d, maxsplit=1)[0].lower().replace("_", "-") for d in declared}
    locked = requirements()
    assert names <= locked.keys(), f"run bash scripts/lock-deps: {sorted(names - locked.keys())} not in {LOCK}"
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
