#!/usr/bin/env python3
"""Regenerate agent/data/pci_ids.csv and build/releases/*.toml from the shared reference data.

Usage: python3 scripts/gen-data.py [REFERENCE_DATA_DIR] [--out DIR]
  REFERENCE_DATA_DIR defaults to ../shared/reference/data; --out writes the files under DIR instead of the
  checkout (a test compares that output with the committed files).
The outputs are committed; this script documents where every fact in them came from.
"""

from __future__ import annotations

import csv
import hashlib
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_ARGS = sys.argv[1:]
OUT = Path(_ARGS.pop(_ARGS.index("--out") + 1)) if "--out" in _ARGS else REPO
if "--out" in _ARGS:
    _ARGS.remove("--out")
DATA = Path(_ARGS[0]) if _ARGS else REPO.parent / "shared/reference/data"

RELEASES = [
    # name, title, stream, driver tag, firmware tag, column of intel_dgpu_pci_ids.csv
    (
        "i915-2350.145",
        "LTS 2350.145 (backport/RELEASE_2405_23.10), the recommended release",
        "lts",
        "I915_25WW14.3_803.145_23.10.90_231129.99",
        "25WW14.3_803.145",
        "in_backport_lts_23_10",
    ),
    (
        "i915-1099.12",
        "rolling 25.1.15 (backport/main), for Ubuntu 24.04 and 6.11/6.12 kernels",
        "rolling",
        "I915_25WW12.2_1099.12_25.1.15_250113.14",
        "25WW18.2_1099.17",
        "in_backport_main_25_1",
    ),
    (
        "i915-2350.63",
        "LTS 2350.63, the release the original Tanzu chart pinned",
        "lts",
        "I915_24WW24.5_803.63_23.10.49_231129.51",
        "24WW20.5_881.12",
        "in_backport_lts_23_10",
    ),
]
# The backport builds these for DG2/ATS-M and PVC; DG1 is listed by the driver but not supported
# by its maintainers (backports issue 99), XeHP SDV never shipped.
PLATFORMS = ["ATS-M (DG2 silicon)", "DG2", "PVC"]
FW_PLATFORMS = {"DG2 / ATS-M (Arc A-series, Data Center GPU Flex)": "DG2", "PVC (Data Center GPU Max)": "PVC"}
MODULES = [
    ("i915-compat", "compat/i915-compat.ko", False),
    ("i915", "drivers/gpu/drm/i915/i915.ko", False),
    ("i915_spi", "drivers/gpu/drm/i915/i915_spi.ko", True),
    ("iaf", "drivers/gpu/drm/i915/fabric/iaf.ko", True),
    ("intel_vsec", "drivers/platform/x86/intel/intel_vsec.ko", True),
    ("pmt_class", "drivers/platform/x86/intel/pmt/pmt_class.ko", True),
    ("pmt_telemetry", "drivers/platform/x86/intel/pmt/pmt_telemetry.ko", True),
    ("pmt_crashlog", "drivers/platform/x86/intel/pmt/pmt_crashlog.ko", True),
    ("mei", "drivers/misc/mei/mei.ko", False),
    ("mei-me", "drivers/misc/mei/mei-me.ko", False),
    ("mei-gsc", "drivers/misc/mei/mei-gsc.ko", False),
    ("mei-txe", "drivers/misc/mei/mei-txe.ko", True),
    ("mei_pxp", "drivers/misc/mei/pxp/mei_pxp.ko", True),
    ("mei_hdcp", "drivers/misc/mei/hdcp/mei_hdcp.ko", True),
    ("mei_iaf", "drivers/misc/mei/iaf/mei_iaf.ko", True),
    ("mei_wdt", "drivers/watchdog/mei_wdt.ko", True),
    # SR-IOV VFIO variant driver: the rolling release builds it on kernels that have VFIO PCI core.
    ("i915-vfio-pci", "drivers/vfio/pci/i915/i915-vfio-pci.ko", True),
]
# The firmware repository's raw file at a tag; the repository keeps its blobs flat under firmware/.
FIRMWARE_FILES_URL = "https://raw.githubusercontent.com/intel-gpu/intel-gpu-firmware/{tag}/firmware/{file}"
# Requested names no firmware release ships (firmware_by_release.csv present_in_intel_gpu_firmware_main
# False): each needs a reason the platform does without it, or the generator stops.
NOT_SHIPPED = {
    "i915/default_iaf.pscbin": (
        "iaf.ko (Xe Link fabric) reads its PSC data from the card's SPI flash; it loads a file only when "
        "the psc_file_override module parameter names one, and no intel-gpu-firmware release ships this name"
    ),
}
# The project's own compat fixes (build/fixes/<name>.patch), each with the probe of the target kernel's
# headers that says it is needed; measured against Debian 12's 6.1.0-57 and 6.12.117 headers.
FIXES = {
    "pci-resize-resource-exclude-bars": (
        "stable kernels added a fourth argument, exclude_bars, to pci_resize_resource()",
        '{ kind = "parameter", header = "include/linux/pci.h", function = "pci_resize_resource", '
        'parameter = "exclude_bars" }',
    ),
    "copy-from-user-inatomic-nocache": (
        "__copy_from_user_inatomic_nocache() was removed from the kernel",
        '{ kind = "absent", headers = ["include/linux/uaccess.h", "arch/x86/include/asm/uaccess_64.h"], '
        'symbol = "__copy_from_user_inatomic_nocache" }',
    ),
    "page-table-sync-mask": (
        "x86_64 ARCH_PAGE_TABLE_SYNC_MASK became a run-time expression that #if cannot evaluate",
        '{ kind = "macro-call", header = "arch/x86/include/asm/pgtable_64_types.h", '
        'macro = "ARCH_PAGE_TABLE_SYNC_MASK" }',
    ),
}
# Which fixes each release needs (written against its source; 2350.63's source is not at hand, so none).
RELEASE_FIXES = {
    "i915-2350.145": ["pci-resize-resource-exclude-bars"],
    "i915-1099.12": ["pci-resize-resource-exclude-bars", "copy-from-user-inatomic-nocache", "page-table-sync-mask"],
    "i915-2350.63": [],
}


def rows(name: str) -> list[dict[str, str]]:
    with (DATA / name).open(newline="") as f:
        return list(csv.DictReader(f))


def pci_table() -> None:
    out = OUT / "agent/data/pci_ids.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["device_id", "platform", "product", "family"])
        for r in rows("intel_dgpu_pci_ids.csv"):
            if r["vendor_id"] != "0x8086":
                continue
            w.writerow([r["device_id"][2:].lower(), r["platform"], r["marketing_name_pciids"], r["product_family"]])
    print("wrote", out)


def kernels(tag: str) -> list[tuple[str, str, str, str]]:
    """(os, os_version, variant, kernel) from the release's `versions` keys in support_matrix.yaml."""
    lines = (DATA / "support_matrix.yaml").read_text().splitlines()
    start = lines.index(f"- ref: {tag}")
    found: list[tuple[str, str, str, str]] = []
    in_block = False
    for line in lines[start + 1 :]:
        if line.startswith("- ref:"):
            break
        if line.strip() == "validated_kernels:":
            in_block = True
            continue
        if in_block:
            if not line.startswith("    "):
                break
            key, value = (p.strip() for p in line.split(":", 1))
            parts = key.removesuffix("_KERNEL_VERSION").split("_")
            if parts[0] == "UBUNTU":
                found.append(("ubuntu", parts[1], parts[2].lower(), value))
            elif parts[0] == "VANILLA":
                found.append(("vanilla", "", "lts", value))
            elif parts[0].startswith("SLES"):
                found.append(("sles", parts[0][4:] + parts[1], "", value))
            elif parts[0] == "RHEL":
                found.append(("rhel", parts[1], "", value))
    return found


def release_marker(tag: str) -> str:
    """The `versions` line a source of ``tag`` has: I915_<date>_<build>_<dii>_<psb> -> I915_<dii>_PSB_<psb>."""
    prefix, _, _, dii, psb = tag.split("_")
    return f'BACKPORTS_RELEASE_TAG="{prefix}_{dii}_PSB_{psb}"'


def fix_tables(name: str) -> list[str]:
    out = []
    for fix in RELEASE_FIXES[name]:
        why, probe = FIXES[fix]
        patch = REPO / "build/fixes" / f"{fix}.patch"
        out += [
            "",
            "[[compat_fixes]]",
            f'name = "{fix}"',
            f'patch = "../fixes/{fix}.patch"',
            f'sha256 = "{hashlib.sha256(patch.read_bytes()).hexdigest()}"',
            f'why = "{why}"',
            f"probe = {probe}",
        ]
    return out


def recipe(release: tuple[str, str, str, str, str, str]) -> None:
    name, title, stream, tag, fwtag, column = release
    tarballs = {r["tag"]: r for r in rows("release_tarballs.csv")}
    drv, fw = tarballs[tag], tarballs[fwtag]
    date = next(
        line.split("'")[1]
        for line in (DATA / "support_matrix.yaml").read_text().split(f"- ref: {tag}\n")[1].splitlines()
        if line.strip().startswith("date:")
    )
    blobs = {
        r["path_in_tarball"].removeprefix("firmware/"): r
        for r in rows("firmware_blobs.csv")
        if r["firmware_tag"] == fwtag
    }
    fw_files = []
    not_shipped = []
    for r in rows("firmware_by_release.csv"):
        if r["backport_ref"] != tag or r["platform"] not in FW_PLATFORMS:
            continue
        if r["present_in_intel_gpu_firmware_main"] != "True":
            not_shipped.append(r["request_path"])
            continue
        # The module requests i915/NAME; the repository has firmware/NAME (firmware_blobs.csv).
        base = r["request_path"].removeprefix("i915/")
        blob = blobs[base]
        fw_files.append((r["request_path"], base, blob["sha256"], blob["bytes"], FW_PLATFORMS[r["platform"]]))
    ids = [
        r["device_id"][2:].lower()
        for r in rows("intel_dgpu_pci_ids.csv")
        if r["platform"] in PLATFORMS and r[column] == "True"
    ]
    out = [
        "# Generated by scripts/gen-data.py from shared reference data; edit that script, not this file.",
        "schema = 1",
        f'name = "{name}"',
        f'title = "{title}"',
        f'stream = "{stream}"',
        f'driver_tag = "{tag}"',
        f'released = "{date}"',
        "",
        "[source]",
        f'url = "{drv["url"]}"',
        f'sha256 = "{drv["sha256"]}"',
        f'top_folder = "{drv["top_folder"]}"',
        "# What the source's own versions file says: a --source of another release is refused.",
        f"release = {{ file = \"versions\", line = '{release_marker(tag)}' }}",
        "",
        "[firmware]",
        f'tag = "{fwtag}"',
        "# The whole repository at the tag (--firmware takes it, or a local mirror of it).",
        f'url = "{fw["url"]}"',
        f'sha256 = "{fw["sha256"]}"',
        f'top_folder = "{fw["top_folder"]}"',
        'subdir = "firmware"',
        "# A node building for itself fetches only the files below, one by one, each pinned by its sha256.",
        f'files_url = "{FIRMWARE_FILES_URL}"',
    ]
    for fname, base, sha, size, platform in fw_files:
        out += [
            "",
            "[[firmware.files]]",
            f'name = "{fname}"',
            f'file = "{base}"',
            f'sha256 = "{sha}"',
            f"bytes = {size}",
            f'platforms = ["{platform}"]',
        ]
    for fname in sorted(set(not_shipped)):
        out += ["", "[[firmware.not_needed]]", f'name = "{fname}"', f'reason = "{NOT_SHIPPED[fname]}"']
    out += [
        "",
        "[build]",
        'env = { LEX = "flex", YACC = "bison" }',
        "steps = [",
        '  ["cp", "defconfigs/i915", ".config"],',
        '  ["make", "KLIB={klib}", "KLIB_BUILD={headers}", "olddefconfig"],',
        '  ["make", "-j{jobs}", "KLIB={klib}", "KLIB_BUILD={headers}"],',
        "]",
        *fix_tables(name),
        "",
        "[modules]",
        'main = "i915"',
        'version_marker = "backported"',
        'load_order = ["i915", "mei-gsc"]',
        "# Intel's own Kubernetes deployment removes these in-tree modules before loading the backport:",
        '# a leftover in-tree intel_vsec gives "Unknown symbol intel_vsec_register".',
        'replaces = ["i915", "intel_vsec", "mei_gsc", "mei_me"]',
    ]
    for mname, path, optional in MODULES:
        out += ["", "[[modules.files]]", f'name = "{mname}"', f'path = "{path}"', f"optional = {str(optional).lower()}"]
    out += ["", "[support]", "platforms = [" + ", ".join(f'"{p}"' for p in PLATFORMS) + "]"]
    out += ["device_ids = [" + ", ".join(f'"{d}"' for d in ids) + "]", 'ubuntu_flavours = ["generic"]']
    for os_name, ver, variant, kernel in kernels(tag):
        out += [
            "",
            "[[support.kernels]]",
            f'os = "{os_name}"',
            f'os_version = "{ver}"',
            f'variant = "{variant}"',
            f'kernel = "{kernel}"',
        ]
    path = OUT / "build/releases" / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n")
    print("wrote", path)


if __name__ == "__main__":
    pci_table()
    for release in RELEASES:
        recipe(release)
