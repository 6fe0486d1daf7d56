"""Failure diagnosis: a failed build explained by its first compiler error and the kernel's support verdict."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from agent.build.headers import KernelHeaders
from agent.build.make import BuildOutput
from agent.errors import BuildError
from agent.host.paths import HostPaths
from agent.recipes.model import Recipe
from agent.support import AT_RISK, SUPPORTED, judge_kernel

if TYPE_CHECKING:
    from agent.build.fixes import FixPlan


def verdict_text(recipe: Recipe, headers: KernelHeaders, host: HostPaths) -> str:
    """The support verdict for the target kernel (not the running one), as one sentence."""
    kernel = headers.kernel_info()
    verdict, reasons, _ = judge_kernel(kernel, headers.os_info(host), recipe)
    text = f"support verdict for {kernel.describe()}: {verdict}"
    if reasons:
        text += f" ({'; '.join(reasons)})"
    if verdict == SUPPORTED:
        text += "; the kernel is a validated one, so this looks like a build environment problem"
    elif verdict == AT_RISK:
        text += "; try a release validated on this kernel, or a kernel this release was validated on"
    return text


def compile_failure(
    recipe: Recipe,
    headers: KernelHeaders,
    host: HostPaths,
    output: BuildOutput,
    *,
    log_path: Path,
    what: str,
    fixes: FixPlan | None = None,
) -> BuildError:
    """The BuildError for a failed step: the first compiler error, the fixes it built with, the verdict, the log."""
    if output.first_error is not None:
        first = f"the build failed at {output.first_error}"
    elif output.first_make_error:
        first = f"the build failed ({what}): make: {output.first_make_error}"
    else:
        tail = next((line.strip() for line in reversed(output.tail) if line.strip()), "")
        first = f"the build failed ({what})" + (f": {tail}" if tail else "")
    hint = f"full log: {log_path}"
    if fixes is not None and fixes.applied:
        first += f" (built with compat fixes {', '.join(fixes.names)})"
    if fixes is not None and fixes.withheld:
        names = ", ".join(d.fix.name for d in fixes.withheld)
        hint = f"this kernel's headers call for compat fixes {names}, turned off by --no-compat-fixes; {hint}"
    return BuildError(
        f"{recipe.name} does not build for kernel {headers.kernel}: {first}; {verdict_text(recipe, headers, host)}",
        hint=hint,
    )


def undefined_symbols(recipe: Recipe, headers: KernelHeaders, output: BuildOutput, log_path: Path) -> BuildError:
    """The BuildError for modpost's unresolved symbols (the build 'succeeded' but modprobe would not)."""
    symbols = ", ".join(f"{symbol} (in {', '.join(mods)})" for symbol, mods in sorted(output.undefined.items()))
    return BuildError(
        f"{recipe.name} built for kernel {headers.kernel} with unresolved symbols: would fail at modprobe: "
        f"Unknown symbol {symbols}",
        hint=f"the kernel or the module set lacks these exports; full log: {log_path}",
    )
