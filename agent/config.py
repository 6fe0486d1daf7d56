"""Configuration: options and INTEL_GPU_AGENT_* variables validated into frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.errors import UsageError
from agent.host.paths import HostPaths
from agent.logs import FORMATS, LEVELS
from agent.recipes import RELEASES_DIR

ENV_PREFIX = "INTEL_GPU_AGENT_"
# Where images install the shipped recipes when the agent is not run from a checkout.
INSTALLED_RELEASES_DIR = Path("/usr/share/intel-gpu-driver-agent/releases")


@dataclass(frozen=True)
class GlobalConfig:
    """Options every command shares."""

    host_root: Path
    log_format: str
    log_level: str
    recipes_dir: Path

    @property
    def host(self) -> HostPaths:
        return HostPaths(self.host_root)


def default_recipes_dir() -> Path:
    return RELEASES_DIR if RELEASES_DIR.is_dir() else INSTALLED_RELEASES_DIR


def make_global(host_root: str, log_format: str, log_level: str, recipes_dir: str | None) -> GlobalConfig:
    """Validate the shared options; a bad value raises ``UsageError`` naming the option."""
    root = Path(host_root)
    if not root.is_absolute():
        raise UsageError(f"--host-root ({ENV_PREFIX}HOST_ROOT) must be an absolute path, got {host_root!r}")
    if not root.is_dir():
        raise UsageError(
            f"--host-root ({ENV_PREFIX}HOST_ROOT) {host_root} is not a folder; in a pod, mount the host's / there"
        )
    if log_format not in FORMATS:
        raise UsageError(f"--log-format must be one of {', '.join(FORMATS)}, got {log_format!r}")
    if log_level not in LEVELS:
        raise UsageError(f"--log-level must be one of {', '.join(LEVELS)}, got {log_level!r}")
    recipes = Path(recipes_dir) if recipes_dir else default_recipes_dir()
    if not recipes.is_dir():
        raise UsageError(f"--recipes-dir ({ENV_PREFIX}RECIPES_DIR) {recipes} is not a folder")
    return GlobalConfig(host_root=root, log_format=log_format, log_level=log_level, recipes_dir=recipes)
