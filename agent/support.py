"""The support verdict: does a driver release support this kernel, OS and these GPUs, and why."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agent.discovery.gpus import PciGpu
from agent.discovery.kernel import KernelInfo
from agent.discovery.os_release import OsInfo
from agent.recipes.model import Recipe, ValidatedKernel

SUPPORTED = "supported"
AT_RISK = "at-risk"
UNSUPPORTED = "unsupported"
RANK = {SUPPORTED: 0, AT_RISK: 1, UNSUPPORTED: 2}


@dataclass(frozen=True)
class CompatFixes:
    """What the kernel's headers say about a release's compat fixes (worked out by agent.build.fixes)."""

    needed: tuple[str, ...] = ()  # the fixes whose probes hold
    enabled: bool = True  # False: --no-compat-fixes
    unknown: str = ""  # why it could not be told (no headers, a probe that cannot be answered)

    @property
    def applied(self) -> tuple[str, ...]:
        return self.needed if self.enabled else ()


@dataclass(frozen=True)
class Verdict:
    """A recipe's verdict for a node, with reasons a person can act on."""

    recipe: str
    verdict: str
    reasons: tuple[str, ...]
    matched_kernel: str = ""
    compat_fixes: tuple[str, ...] = ()  # the fixes the build applies for this kernel

    @property
    def ok(self) -> bool:
        return self.verdict != UNSUPPORTED


def _os_family(os_info: OsInfo, kernel: KernelInfo) -> str:
    if kernel.distro_signature.startswith("Ubuntu") or (os_info.is_like("ubuntu") and os_info.id == "ubuntu"):
        return "ubuntu"
    if os_info.id in ("rhel", "centos", "rocky", "almalinux"):
        return "rhel"
    if os_info.id.startswith("sles") or os_info.id == "opensuse-leap":
        return "sles"
    if os_info.id == "debian":
        return "debian"
    return "vanilla"


def judge_gpus(gpus: Sequence[PciGpu], recipe: Recipe) -> tuple[bool, list[str]]:
    """Whether at least one GPU is driven by this release, with a reason per GPU that is not."""
    reasons = []
    supported = [g for g in gpus if g.device_id in recipe.device_ids]
    for gpu in gpus:
        if gpu.device_id not in recipe.device_ids:
            name = gpu.platform if gpu.platform != "unknown" else "not a data-center GPU"
            reasons.append(f"{gpu.pci_id} ({name}) at {gpu.address} is not supported by this driver")
    if not gpus:
        reasons.append("no Intel data-center GPU on this node (no Intel display-class PCI device found)")
    elif not supported:
        reasons.append("no Intel data-center GPU on this node that this driver supports")
    return bool(supported), reasons


def judge_kernel(kernel: KernelInfo, os_info: OsInfo, recipe: Recipe) -> tuple[str, list[str], str]:
    """supported / at-risk / unsupported for the kernel alone; returns (verdict, reasons, matched)."""
    family = _os_family(os_info, kernel)
    if family == "ubuntu":
        return _judge_ubuntu(kernel, recipe)
    if family in ("rhel", "sles"):
        return _judge_exact(kernel, family, recipe)
    return _judge_vanilla(kernel, family, recipe)


def _judge_ubuntu(kernel: KernelInfo, recipe: Recipe) -> tuple[str, list[str], str]:
    if kernel.flavour not in recipe.ubuntu_flavours:
        wanted = " or ".join(recipe.ubuntu_flavours)
        return (
            UNSUPPORTED,
            [
                f"Ubuntu flavour {kernel.flavour or '(none)'} is not {wanted}; "
                f"the driver only builds for the {wanted} kernel: install linux-image-{wanted}"
            ],
            "",
        )
    mine = f"{kernel.release.rsplit('-', 1)[0]}" if kernel.flavour else kernel.release
    candidates = [k for k in recipe.kernels if k.os == "ubuntu"]
    exact = [k for k in candidates if k.kernel == mine]
    if exact:
        return (
            SUPPORTED,
            [f"kernel {kernel.release} is the kernel this release was validated on ({exact[0].describe()})"],
            exact[0].kernel,
        )
    same = [k for k in candidates if k.series == kernel.series]
    if same:
        ref = same[0]
        return AT_RISK, [_abi_reason(kernel, ref)], ref.kernel
    validated = ", ".join(sorted({k.kernel for k in candidates})) or "none"
    return (
        UNSUPPORTED,
        [
            f"kernel {kernel.release} (series {kernel.series}) is not a series this release supports "
            f"on Ubuntu (validated: {validated}); install one of those kernels or pick another release"
        ],
        "",
    )


def _abi_reason(kernel: KernelInfo, ref: ValidatedKernel) -> str:
    ref_abi = ref.kernel.split("-")[1] if "-" in ref.kernel else ""
    if kernel.abi.isdigit() and ref_abi.isdigit():
        direction = "newer" if int(kernel.abi) > int(ref_abi) else "older"
        why = (
            "newer kernels of the same series often carry backported DRM/PCI API changes"
            if direction == "newer"
            else "older kernels lack APIs the driver expects"
        )
        return (
            f"kernel {kernel.release} is {direction} than {ref.kernel}-{kernel.flavour}, the {kernel.series} kernel "
            f"this release was validated on; {why} and the build may fail"
        )
    return (
        f"kernel {kernel.release} differs from {ref.describe()}, the validated {kernel.series} kernel; "
        "the build may fail"
    )


def _judge_exact(kernel: KernelInfo, family: str, recipe: Recipe) -> tuple[str, list[str], str]:
    candidates = [k for k in recipe.kernels if k.os == family]
    for k in candidates:
        if kernel.release.startswith(k.kernel):
            return SUPPORTED, [f"kernel {kernel.release} is the validated {k.describe()}"], k.kernel
    same = [k for k in candidates if k.series == kernel.series]
    if same:
        return (
            AT_RISK,
            [
                f"kernel {kernel.release} is not one of the validated {family.upper()} kernels "
                f"({', '.join(k.kernel for k in same)}); the build may fail"
            ],
            same[0].kernel,
        )
    return (
        UNSUPPORTED,
        [f"kernel {kernel.release} matches no {family.upper()} kernel this release supports"],
        "",
    )


def _judge_vanilla(kernel: KernelInfo, family: str, recipe: Recipe) -> tuple[str, list[str], str]:
    # Debian and other distributions build as "vanilla" LTS kernels: the backport's own build has no
    # allow-list and detects them by major.minor only.
    candidates = [k for k in recipe.kernels if k.os in ("vanilla", family)]
    same = [k for k in candidates if k.series == kernel.series]
    if not same:
        series = ", ".join(sorted({k.series for k in candidates}, key=_series_key)) or "none"
        return (
            UNSUPPORTED,
            [f"kernel {kernel.describe()} is series {kernel.series}; this release builds for {series} only"],
            "",
        )
    ref = same[0]
    ref_sublevel = int(ref.kernel.split("-")[0].split(".")[2]) if ref.kernel.count(".") >= 2 else 0
    if kernel.sublevel == ref_sublevel:
        note = " (build-verified by Intel, not tested on hardware)" if ref.os == "vanilla" else ""
        return (
            SUPPORTED,
            [f"kernel {kernel.describe()} is the {ref.series} kernel this release was validated on{note}"],
            ref.kernel,
        )
    direction = "newer" if kernel.sublevel > ref_sublevel else "older"
    why = (
        "newer stable kernels changed APIs the driver uses"
        if direction == "newer"
        else "older stable kernels lack APIs the driver uses"
    )
    return (
        AT_RISK,
        [
            f"kernel {kernel.series}.{kernel.sublevel} is {direction} than {ref.kernel}, the {ref.series} kernel "
            f"this release was validated on; {why} and the build may fail"
        ],
        ref.kernel,
    )


def _series_key(series: str) -> tuple[int, ...]:
    return tuple(int(p) for p in series.split(".") if p.isdigit())


def judge(
    kernel: KernelInfo,
    os_info: OsInfo,
    gpus: Sequence[PciGpu],
    recipe: Recipe,
    *,
    fixes: CompatFixes | None = None,
) -> Verdict:
    """The verdict of one recipe for one node: a pure function of the facts.

    Compat fixes never make a kernel supported: a release built with them is not the one Intel
    validated, so a kernel that needs them is at-risk at best, and the verdict says which fixes.
    """
    kernel_verdict, kernel_reasons, matched = judge_kernel(kernel, os_info, recipe)
    fixes = fixes or CompatFixes()
    fix_reasons = _fix_reasons(fixes)
    if fixes.applied and kernel_verdict == SUPPORTED:
        kernel_verdict = AT_RISK
    gpus_ok, gpu_reasons = judge_gpus(gpus, recipe)
    verdict = kernel_verdict if gpus_ok else UNSUPPORTED
    reasons = kernel_reasons + fix_reasons + gpu_reasons
    return Verdict(
        recipe=recipe.name,
        verdict=verdict,
        reasons=tuple(reasons),
        matched_kernel=matched,
        compat_fixes=fixes.applied,
    )


def _fix_reasons(fixes: CompatFixes) -> list[str]:
    names = ", ".join(fixes.needed)
    if fixes.unknown:
        return [f"cannot tell which compat fixes the build needs: {fixes.unknown}"]
    if fixes.needed and fixes.enabled:
        return [
            f"builds with compat fixes {names}: this kernel's headers need them (the project's own patches, "
            "not validated by Intel)"
        ]
    if fixes.needed:
        return [
            f"this kernel's headers call for compat fixes {names}, turned off (--no-compat-fixes): "
            "expect the build to fail"
        ]
    return []


def best(verdicts: Sequence[Verdict], recipes: Sequence[Recipe]) -> tuple[Verdict | None, str]:
    """The release to use when several apply, and why: best verdict, then LTS, then the newest."""
    by_name = {r.name: r for r in recipes}
    usable = [v for v in verdicts if v.ok]
    if not usable:
        return None, "no release supports this node"

    def key(v: Verdict) -> tuple[int, int, str]:
        recipe = by_name[v.recipe]
        return (RANK[v.verdict], 0 if recipe.stream == "lts" else 1, _negate(recipe.released))

    chosen = min(usable, key=key)
    recipe = by_name[chosen.recipe]
    others = [v for v in usable if v is not chosen]
    if not others:
        return chosen, f"{chosen.recipe} is the only release that can drive this node"
    why = [f"{chosen.recipe} is {chosen.verdict}"]
    if any(RANK[o.verdict] == RANK[chosen.verdict] for o in others):
        why.append(f"{'an LTS release' if recipe.stream == 'lts' else 'a rolling release'} released {recipe.released}")
        why.append("LTS releases are preferred, then the newest")
    return chosen, "; ".join(why)


def _negate(date: str) -> str:
    """Sort newest first with min(): map each digit d to 9-d."""
    return date.translate(str.maketrans("0123456789", "9876543210"))
