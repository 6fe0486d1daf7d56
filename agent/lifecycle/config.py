"""The lifecycle commands' options, validated into a frozen dataclass before anything runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.errors import UsageError

ENV = "INTEL_GPU_AGENT_"
MODES = ("load", "monitor")
ON_STOP = ("auto", "unload", "keep")
DEFAULT_LISTEN = "0.0.0.0:9480"


@dataclass(frozen=True)
class LifecycleConfig:
    """Options of run/load/unload/status (each also INTEL_GPU_AGENT_<NAME>)."""

    driver_tree: Path | None = None
    recipe: str | None = None
    mode: str = "load"
    listen: str = DEFAULT_LISTEN
    unload_deadline: float = 60.0
    node_name: str | None = None
    state_dir: str | None = None  # a host path, as seen on the node
    ca_bundle: Path | None = None  # extra CAs for the downloads of a build on the node
    on_stop: str = "auto"  # SIGTERM: ask the cluster (auto), always unload, or always hand over (keep)
    upgrade_cordon: bool = True  # a driver change cordons the node first (uncordoned after, if we did)
    upgrade_evict: bool = True  # ... and evicts the GPU's pods (False: waits for them to go)
    upgrade_timeout: float = 600.0  # ... for at most this long, then "blocked" with the old driver kept


def make_lifecycle_config(
    *,
    driver_tree: str | None = None,
    recipe: str | None = None,
    mode: str = "load",
    listen: str = DEFAULT_LISTEN,
    unload_deadline: float = 60.0,
    node_name: str | None = None,
    state_dir: str | None = None,
    ca_bundle: str | None = None,
    on_stop: str = "auto",
    upgrade_cordon: bool = True,
    upgrade_evict: bool = True,
    upgrade_timeout: float = 600.0,
) -> LifecycleConfig:
    """Validate; a bad value raises ``UsageError`` naming the option and its variable."""
    if mode not in MODES:
        raise UsageError(f"--mode ({ENV}MODE) must be one of {', '.join(MODES)}, got {mode!r}")
    if listen != DEFAULT_LISTEN:
        from agent.health import parse_listen  # http.server is costly: only when there is something to check

        try:
            parse_listen(listen)
        except ValueError as e:
            raise UsageError(f"--listen ({ENV}LISTEN): {e}") from e
    if not 0 < unload_deadline <= 3600:
        raise UsageError(
            f"--unload-deadline ({ENV}UNLOAD_DEADLINE) must be between 0 and 3600 seconds (below the pod's "
            f"terminationGracePeriodSeconds), got {unload_deadline}"
        )
    if state_dir is not None and not state_dir.startswith("/"):
        raise UsageError(f"--state-dir ({ENV}STATE_DIR) must be an absolute host path, got {state_dir!r}")
    if on_stop not in ON_STOP:
        raise UsageError(f"--on-stop ({ENV}ON_STOP) must be one of {', '.join(ON_STOP)}, got {on_stop!r}")
    if not 0 < upgrade_timeout <= 86400:
        raise UsageError(
            f"--upgrade-timeout ({ENV}UPGRADE_TIMEOUT) must be between 0 and 86400 seconds, got {upgrade_timeout}"
        )
    if ca_bundle and not Path(ca_bundle).is_file():
        raise UsageError(f"--ca-bundle ({ENV}CA_BUNDLE) {ca_bundle} is not a file: give a PEM file of CA certificates")
    if mode == "load" and not driver_tree and not recipe:
        raise UsageError(f"give --driver-tree ({ENV}DRIVER_TREE) or --recipe ({ENV}RECIPE): there is nothing to load")
    return LifecycleConfig(
        driver_tree=Path(driver_tree) if driver_tree else None,
        recipe=recipe or None,
        mode=mode,
        listen=listen,
        unload_deadline=float(unload_deadline),
        node_name=node_name or None,
        state_dir=state_dir,
        ca_bundle=Path(ca_bundle) if ca_bundle else None,
        on_stop=on_stop,
        upgrade_cordon=upgrade_cordon,
        upgrade_evict=upgrade_evict,
        upgrade_timeout=float(upgrade_timeout),
    )
