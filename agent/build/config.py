"""The build command's options, validated into a frozen dataclass before anything runs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agent.build.signing import SigningKey
from agent.errors import UsageError
from agent.host.paths import HostPaths


@dataclass(frozen=True)
class BuildConfig:
    """What `intel-gpu-agent build` was asked to do."""

    recipe: str
    kernel: str
    out: Path
    cache_dir: Path
    work_dir: Path | None = None
    headers: Path | None = None
    source: str | None = None
    source_sha256: str | None = None
    firmware: str | None = None
    firmware_sha256: str | None = None
    jobs: int | None = None
    http_proxy: str | None = None
    https_proxy: str | None = None
    no_proxy: str | None = None
    ca_bundle: Path | None = None
    signing: SigningKey | None = None
    download_timeout: float | None = None
    firmware_files_url: str | None = None
    compat_fixes: bool = True


def make_build_config(
    host: HostPaths,
    *,
    recipe: str,
    kernel: str,
    out: str,
    cache_dir: str | None = None,
    work_dir: str | None = None,
    headers: str | None = None,
    source: str | None = None,
    source_sha256: str | None = None,
    firmware: str | None = None,
    firmware_sha256: str | None = None,
    jobs: int | None = None,
    http_proxy: str | None = None,
    https_proxy: str | None = None,
    no_proxy: str | None = None,
    ca_bundle: str | None = None,
    sign_key: str | None = None,
    sign_cert: str | None = None,
    download_timeout: float | None = None,
    firmware_files_url: str | None = None,
    no_compat_fixes: bool = False,
) -> BuildConfig:
    """Validate the options; a bad one raises ``UsageError`` naming it."""
    if firmware_files_url:
        from agent.build.firmware import check_files_url

        check_files_url(firmware_files_url)
    if not kernel.strip():
        raise UsageError("--kernel (INTEL_GPU_AGENT_KERNEL) is required: the kernel release to build for")
    if jobs is not None and jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {jobs}")
    if download_timeout is not None and not download_timeout > 0:
        raise UsageError(f"--download-timeout must be a positive number of seconds, got {download_timeout}")
    if headers and not Path(headers).is_dir():
        raise UsageError(f"--headers {headers} is not a folder")
    if ca_bundle and not Path(ca_bundle).is_file():
        raise UsageError(f"--ca-bundle {ca_bundle} does not exist")
    return BuildConfig(
        recipe=recipe,
        kernel=kernel.strip(),
        out=Path(out).absolute(),
        cache_dir=Path(cache_dir).absolute() if cache_dir else host.build_cache_dir,
        work_dir=Path(work_dir).absolute() if work_dir else None,
        headers=Path(headers).absolute() if headers else None,
        source=_local_absolute(source),
        source_sha256=source_sha256 or None,
        firmware=_local_absolute(firmware),
        firmware_sha256=firmware_sha256 or None,
        jobs=jobs,
        http_proxy=http_proxy,
        https_proxy=https_proxy,
        no_proxy=no_proxy,
        ca_bundle=Path(ca_bundle) if ca_bundle else None,
        signing=SigningKey.from_options(sign_key, sign_cert),
        download_timeout=download_timeout,
        firmware_files_url=firmware_files_url or None,
        compat_fixes=not no_compat_fixes,
    )


TRUE = ("1", "true", "t", "yes", "y", "on")
FALSE = ("", "0", "false", "f", "no", "n", "off")


def compat_fixes_from_env(env: Mapping[str, str]) -> bool:
    """Whether builds apply compat fixes, from INTEL_GPU_AGENT_NO_COMPAT_FIXES (what the chart sets for
    `run`, which builds on the node): the same spellings click accepts for --no-compat-fixes."""
    value = env.get("INTEL_GPU_AGENT_NO_COMPAT_FIXES", "").strip().lower()
    if value not in TRUE + FALSE:
        raise UsageError(f"INTEL_GPU_AGENT_NO_COMPAT_FIXES must be true or false, got {value!r}")
    return value in FALSE


def _local_absolute(location: str | None) -> str | None:
    """A local path on the command line is relative to the working folder, not to the recipe."""
    if not location:
        return None
    if location.startswith(("https://", "http://")):
        return location
    return str(Path(location).absolute())
