"""The Builder: recipe + kernel headers → a verified driver tree, built DKMS-style, swapped in whole."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from agent import __version__
from agent.build import layout
from agent.build.firmware import FILES, firmware_spec
from agent.build.headers import find_headers
from agent.build.sources import (
    FOLDER,
    URL,
    InputSpec,
    check_release,
    content_root,
    input_spec,
    redact_url,
    safe_extract,
    verify_file,
)
from agent.errors import CommandError, StopRequestedError, UsageError
from agent.host.files import sha256_file, writes_under
from agent.logs import get_logger
from agent.tree import AppliedFix, DriverTree, Manifest, write_manifest

if TYPE_CHECKING:
    # Only a real build needs these: a no-op rebuild must answer in well under 150 ms.
    from agent.build.download import Fetcher
    from agent.build.firmware import FirmwareSource
    from agent.build.fixes import FixPlan
    from agent.build.headers import KernelHeaders
    from agent.build.make import BuildOutput
    from agent.build.signing import SigningKey
    from agent.host.paths import HostPaths
    from agent.host.runner import Runner
    from agent.recipes.model import Recipe

log = get_logger(__name__)

DEFAULT_STEP_TIMEOUT = 3 * 3600.0


def default_jobs() -> int:
    """The jobs the CPUs this process may run on and its memory limit allow (agent/build/jobs.py)."""
    from agent.build.jobs import default_jobs as sized

    return sized()


@dataclass(frozen=True)
class BuildResult:
    """A driver tree and how it came to be: built now, or already up to date."""

    tree: DriverTree
    skipped: bool
    seconds: float
    log_path: Path | None = None
    notes: tuple[str, ...] = ()  # reported, not fatal: requested firmware the recipe says is not needed


@dataclass(frozen=True)
class _Inputs:
    """Everything a build depends on, resolved, and the digest that says whether a tree is current."""

    headers: KernelHeaders
    source: InputSpec
    firmware: InputSpec
    fixes: FixPlan
    values: dict[str, str]
    digest: str


class Builder:
    """Builds a recipe for one kernel into a driver tree.

    Folders (DKMS style): ``<work>/<recipe>/<driver tag>/source`` links the source the release builds
    from; ``<work>/<recipe>/<driver tag>/<kernel>/`` holds that kernel's build copy, its make.log and a
    lock. Tarballs are unpacked once into ``<cache>/unpacked/<sha256>``, downloads kept in
    ``<cache>/downloads/<sha256>``. The tree is staged beside ``out`` and renamed into place last.

    Example::

        builder = Builder(host=HostPaths(Path("/")), runner=Runner(), cache_dir=Path("/var/cache/igd"))
        tree = builder.build(load_recipe(Path("build/releases/i915-2350.145.toml")), "6.8.0-56-generic", out)
    """

    def __init__(
        self,
        *,
        host: HostPaths,
        runner: Runner,
        cache_dir: Path,
        work_dir: Path | None = None,
        fetcher: Fetcher | None = None,
        jobs: int | None = None,
        signing: SigningKey | None = None,
        progress_stream: TextIO | None = None,
        progress_interval: float = 10.0,
        step_timeout: float = DEFAULT_STEP_TIMEOUT,
        compat_fixes: bool = True,
    ) -> None:
        self._host = host
        self._runner = runner
        self._cache = cache_dir
        self._work = work_dir or cache_dir / "build"
        self._fetcher = fetcher
        self._jobs = jobs or default_jobs()
        self._signing = signing
        self._progress_stream = progress_stream
        self._progress_interval = progress_interval
        self._step_timeout = step_timeout
        self._compat_fixes = compat_fixes

    def build(
        self,
        recipe: Recipe,
        kernel: str,
        out: Path,
        *,
        headers: Path | None = None,
        source: str | None = None,
        source_sha256: str | None = None,
        firmware: str | None = None,
        firmware_sha256: str | None = None,
        firmware_files_url: str | None = None,
    ) -> DriverTree:
        """Build ``recipe`` for ``kernel`` into ``out`` (or return the tree there if its inputs match)."""
        return self.build_result(
            recipe,
            kernel,
            out,
            headers=headers,
            source=source,
            source_sha256=source_sha256,
            firmware=firmware,
            firmware_sha256=firmware_sha256,
            firmware_files_url=firmware_files_url,
        ).tree

    def build_result(
        self,
        recipe: Recipe,
        kernel: str,
        out: Path,
        *,
        headers: Path | None = None,
        source: str | None = None,
        source_sha256: str | None = None,
        firmware: str | None = None,
        firmware_sha256: str | None = None,
        firmware_files_url: str | None = None,
    ) -> BuildResult:
        """Like ``build``, also saying whether anything was built and where the log is.

        ``firmware_files_url`` replaces the recipe's per-file firmware URL template (a mirror of the
        firmware repository's raw files); ``firmware`` (a tarball URL, a tarball or a folder) wins over both.
        """
        started = time.monotonic()
        inputs = self._inputs(
            recipe,
            kernel,
            headers_dir=headers,
            source=source,
            source_sha256=source_sha256,
            firmware=firmware,
            firmware_sha256=firmware_sha256,
            firmware_files_url=firmware_files_url,
        )
        current = layout.up_to_date(out, kernel, inputs.digest)
        if current is not None:
            return BuildResult(current, skipped=True, seconds=time.monotonic() - started)
        layout.check_out(out)
        kernel_dir = self._work / recipe.name / recipe.driver_tag / kernel
        kernel_dir.mkdir(parents=True, exist_ok=True)
        log_path = kernel_dir / "make.log"
        with layout.locked(kernel_dir / ".lock", what=f"{recipe.name} for {kernel}"):
            log.info(
                "build_started",
                recipe=recipe.name,
                kernel=kernel,
                headers=str(inputs.headers.path),
                out=str(out),
                compat_fixes=list(inputs.fixes.names),
            )
            firmware_source = self._firmware_source(recipe, inputs)
            build_dir, output, applied = self._compile(recipe, inputs, kernel_dir, log_path)
            with writes_under(out.parent):  # a full or read-only disk under --out: say so, keep the old tree
                tree, notes = self._collect(
                    recipe, inputs, kernel_dir, build_dir, out, firmware_source=firmware_source, applied=applied
                )
        seconds = time.monotonic() - started
        log.info(
            "build_done",
            recipe=recipe.name,
            kernel=kernel,
            out=str(out),
            seconds=round(seconds, 2),
            objects=output.objects,
            compat_fixes=[f.name for f in applied],
        )
        return BuildResult(tree, skipped=False, seconds=seconds, log_path=log_path, notes=notes)

    # --- inputs ---------------------------------------------------------------------------------
    def _inputs(
        self,
        recipe: Recipe,
        kernel: str,
        *,
        headers_dir: Path | None,
        source: str | None,
        source_sha256: str | None,
        firmware: str | None,
        firmware_sha256: str | None,
        firmware_files_url: str | None = None,
    ) -> _Inputs:
        from agent.build.fixes import FixPlan, plan_fixes

        if not kernel or "/" in kernel or kernel.startswith("."):
            raise UsageError(f"--kernel must be a kernel release like 6.1.0-57-amd64, got {kernel!r}")
        headers = find_headers(self._host, kernel, headers_dir)
        src = input_spec(recipe, recipe.source, what="source", override=source, override_sha256=source_sha256)
        fw = firmware_spec(recipe, override=firmware, override_sha256=firmware_sha256, files_url=firmware_files_url)
        # The probes read the target kernel's headers: they, not a version string, choose the fixes.
        plan = (
            plan_fixes(recipe, headers, enabled=self._compat_fixes)
            if recipe.compat_fixes
            else FixPlan(enabled=self._compat_fixes)
        )
        values = {
            "recipe": recipe.name,
            "recipe_sha256": sha256_file(recipe.path),
            "kernel": kernel,
            "headers": str(headers.path),
            "headers_digest": headers.identity,
            "source": redact_url(src.location),
            "source_digest": src.identity(),
            "firmware": redact_url(fw.location),
            "firmware_digest": fw.identity(),
            "sign_cert_sha256": self._signing.cert_sha256() if self._signing else "",
            "compat_fixes": plan.digest_value() if recipe.compat_fixes else "",
        }
        digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()
        return _Inputs(headers, src, fw, plan, values, digest)

    def _unpacked(self, spec: InputSpec) -> Path:
        """The folder holding an input's files: the folder itself, or the tarball unpacked once by sha256."""
        if spec.kind == FOLDER:
            return content_root(Path(spec.location), spec)
        tarball = self._fetch(spec.location, spec.sha256) if spec.kind == URL else Path(spec.location)
        verify_file(tarball, spec.sha256, what=spec.what)
        key = spec.sha256 or sha256_file(tarball)
        unpacked = self._cache / "unpacked" / key
        if not unpacked.is_dir():
            log.info("extracting", what=spec.what, tarball=str(tarball), into=str(unpacked))
            safe_extract(tarball, unpacked)
        return content_root(unpacked, spec)

    def _fetch(self, url: str, sha256: str) -> Path:
        return self._get_fetcher().fetch(url, sha256)

    def _get_fetcher(self) -> Fetcher:
        if self._fetcher is None:
            from agent.build.download import Fetcher, ProxySettings

            self._fetcher = Fetcher(
                cache_dir=self._cache, proxies=ProxySettings.from_env(os.environ), stop=self._runner.stop_event
            )
        return self._fetcher

    def _firmware_source(self, recipe: Recipe, inputs: _Inputs) -> Callable[[], FirmwareSource]:
        """Where the firmware comes from. Per-file downloads happen now, before the compile, so a wrong pin
        or an unreachable server fails in seconds; a tarball is fetched and unpacked only once it is needed."""
        from agent.build.firmware import DownloadedFirmware, FolderFirmware

        if inputs.firmware.kind == FILES:
            downloads = DownloadedFirmware(self._get_fetcher(), inputs.firmware.location)
            downloads.prefetch(recipe.firmware_files)
            return lambda: downloads
        return lambda: FolderFirmware(self._unpacked(inputs.firmware))

    # --- compile --------------------------------------------------------------------------------
    def _compile(
        self, recipe: Recipe, inputs: _Inputs, kernel_dir: Path, log_path: Path
    ) -> tuple[Path, BuildOutput, tuple[AppliedFix, ...]]:
        from agent.build.diagnose import compile_failure, undefined_symbols
        from agent.build.make import BuildOutput, Progress, run_steps

        source_root = self._unpacked(inputs.source)
        check_release(recipe, source_root, inputs.source)
        layout.register_source(kernel_dir.parent / "source", source_root)
        self._check_stop()
        build_dir = kernel_dir / "build"
        # {install}: INSTALL_MOD_PATH for recipes that run modules_install; what lands in its
        # lib/modules/<kernel>/updates is collected before the source folder's copies.
        install_dir = kernel_dir / "install"
        klib = kernel_dir / "klib"
        for stale in (build_dir, install_dir, klib):
            if stale.exists():
                shutil.rmtree(stale)
        # kbuild writes objects next to the sources: each kernel builds in its own copy.
        shutil.copytree(source_root, build_dir, symlinks=True)
        install_dir.mkdir()
        # KLIB stands for the kernel's module folder: a private one whose build/ is the headers, so no step can
        # write to the host's module folder.
        klib.mkdir()
        (klib / "build").symlink_to(inputs.headers.path)
        log_path.write_text(
            f"# {recipe.name} ({recipe.driver_tag}) for {inputs.headers.kernel}, headers {inputs.headers.path}\n",
            encoding="utf-8",
        )
        applied = self._apply_fixes(recipe, inputs, build_dir, log_path)
        values = {
            "kernel": inputs.headers.kernel,
            "headers": str(inputs.headers.path),
            "klib": str(klib),
            "jobs": str(self._jobs),
            "src": str(build_dir),
            "install": str(install_dir),
        }
        # C locale: ASCII quotes and English messages, which diagnosis reads.
        env = {"LC_ALL": "C", "LANG": "C", **dict(recipe.build_env)}
        output = BuildOutput()
        progress = Progress(
            label=f"{recipe.name} for {inputs.headers.kernel}",
            stream=self._progress_stream,
            interval=self._progress_interval,
        )
        self._check_stop()
        try:
            run_steps(
                self._runner,
                recipe.build_steps,
                cwd=build_dir,
                env=env,
                values=values,
                log_file=log_path,
                progress=progress,
                timeout=self._step_timeout,
                output=output,
            )
        except StopRequestedError:
            log.warning("build_stopped", recipe=recipe.name, kernel=inputs.headers.kernel)
            raise
        except CommandError as e:
            self._check_stop()
            outcome = "timed out" if e.timed_out else f"exited with {e.returncode}"
            raise compile_failure(
                recipe,
                inputs.headers,
                self._host,
                output,
                log_path=log_path,
                what=f"{e.argv[0]} {outcome}",
                fixes=inputs.fixes,
            ) from e
        if output.undefined:
            raise undefined_symbols(recipe, inputs.headers, output, log_path)
        return build_dir, output, applied

    def _apply_fixes(self, recipe: Recipe, inputs: _Inputs, build_dir: Path, log_path: Path) -> tuple[AppliedFix, ...]:
        """The plan's fixes on the per-kernel copy only (the unpacked source stays the release as published)."""
        from agent.build.fixes import apply_fixes

        applied = apply_fixes(inputs.fixes, recipe, build_dir)
        with log_path.open("a", encoding="utf-8") as handle:
            for fix in applied:
                handle.write(f"# compat fix {fix.name} applied to {', '.join(fix.files)}: {fix.evidence}\n")
            for withheld in inputs.fixes.withheld:
                handle.write(f"# compat fix {withheld.fix.name} needed but turned off: {withheld.evidence}\n")
        if applied:
            log.info("compat_fixes_applied", recipe=recipe.name, fixes=[f.name for f in applied])
        return applied

    # --- collect --------------------------------------------------------------------------------
    def _collect(
        self,
        recipe: Recipe,
        inputs: _Inputs,
        kernel_dir: Path,
        build_dir: Path,
        out: Path,
        *,
        firmware_source: Callable[[], FirmwareSource],
        applied: tuple[AppliedFix, ...],
    ) -> tuple[DriverTree, tuple[str, ...]]:
        import datetime

        from agent.build import collect
        from agent.build.firmware import place_firmware
        from agent.build.signing import sign_modules

        kernel = inputs.headers.kernel
        out.parent.mkdir(parents=True, exist_ok=True)
        layout.remove_stale(out)
        staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.building-"))
        staging.chmod(0o755)  # mkdtemp's 0700 would hide the tree from the loader's other users
        try:
            base = staging / "opt"
            updates = base / "lib/modules" / kernel / "updates"
            installed = kernel_dir / "install/lib/modules" / kernel / "updates"
            modules = collect.stage_modules(recipe, [installed, build_dir], updates, self._runner)
            collect.strip_debug(modules, self._runner)
            if self._signing is not None:
                sign_modules(self._runner, inputs.headers, self._signing, [m.ko for m in modules])
            collect.inspect(modules, self._runner)
            collect.check_vermagic(modules, kernel)
            built = collect.finish_modules(modules, staging, self._runner, signed=self._signing is not None)
            collect.depmod(self._runner, base, kernel)
            requested = [name for module in built for name in module.firmware]
            firmware = place_firmware(recipe, requested, firmware_source, staging / "firmware")
            self._check_stop()
            manifest = Manifest(
                recipe=recipe.name,
                driver_tag=recipe.driver_tag,
                kernel=kernel,
                inputs_digest=inputs.digest,
                modules=tuple(built),
                firmware=firmware.placed,
                signed=self._signing is not None,
                agent_version=__version__,
                built_at=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                inputs=inputs.values,
                compat_fixes=applied,
            )
            write_manifest(staging, manifest)  # last: a tree without a manifest is unfinished
            layout.swap_in(staging, out)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return DriverTree(root=out, manifest=manifest), firmware.notes()

    def _check_stop(self) -> None:
        if self._runner.stop_event.is_set():
            raise StopRequestedError("stopped during the build")
