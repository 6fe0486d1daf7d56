"""Guest script: the test driver's whole life on the real kernel, and Debian's in-tree i915 for contrast.

usage (in the VM): testgpu_lifecycle.py MODULES_DIR FIRMWARE_DIR
Every observation is reported on the results port; the host-side tests assert on them.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from vm import guest

KERNEL = os.uname().release
TREE = Path("/tmp/testgpu-tree")
FIRMWARE_ROOT = Path("/var/lib/firmware")
MODULES = ("testgpu_compat", "testgpu_vsec", "testgpu")


def snapshot(prefix: str) -> None:
    """What the kernel says about the test driver right now."""
    params = Path("/sys/module/testgpu/parameters")
    guest.report(f"{prefix}.modules", {m: v for m, v in guest.loaded_modules().items() if m.startswith("testgpu")})
    guest.report(f"{prefix}.version", guest.read("/sys/module/testgpu/version"))
    guest.report(
        f"{prefix}.params", {p.name: guest.read(p) for p in sorted(params.iterdir())} if params.is_dir() else {}
    )
    guest.report(f"{prefix}.device", guest.read("/dev/testgpu") if os.path.exists("/dev/testgpu") else None)


def main(modules_dir: Path, firmware_dir: Path) -> None:
    log_start = len(guest.kernel_log())
    guest.install_module_tree(TREE, KERNEL, [modules_dir / f"{m}.ko" for m in MODULES])
    guest.report("tree.dep", guest.read(TREE / "lib/modules" / KERNEL / "modules.dep"))

    shutil.copytree(firmware_dir / "testgpu", FIRMWARE_ROOT / "testgpu")
    guest.set_firmware_path(str(FIRMWARE_ROOT))
    guest.report("firmware_path", guest.read(guest.FIRMWARE_PATH_PARAM))

    # (b) load from the private tree; modprobe resolves testgpu_compat and testgpu_vsec.
    guest.report("load", guest.run(["modprobe", "-d", str(TREE), "testgpu"]))
    snapshot("loaded")
    guest.report("loaded.compat_holders", sorted(os.listdir("/sys/module/testgpu_compat/holders")))

    with guest.holding_open("/dev/testgpu") as holder:
        guest.report("held.refcnt", guest.read("/sys/module/testgpu/refcnt"))
        guest.report("held.rmmod", guest.run(["rmmod", "testgpu"]))
        guest.report("held.still_loaded", os.path.isdir("/sys/module/testgpu"))
        guest.report("held.holder_pid", holder.pid)
    guest.report("released.refcnt", guest.read("/sys/module/testgpu/refcnt"))
    guest.report("unload", guest.run(["modprobe", "-d", str(TREE), "-r", "testgpu"]))
    snapshot("unloaded")
    guest.report("loaded.kernel_log", guest.kernel_log()[log_start:])

    # (c) a firmware file missing: the load fails and the driver says which file.
    log_start = len(guest.kernel_log())
    (FIRMWARE_ROOT / "testgpu/testgpu_huc_1.0.bin").unlink()
    guest.report("missing.load", guest.run(["modprobe", "-d", str(TREE), "testgpu"]))
    snapshot("missing")
    guest.report("missing.kernel_log", guest.kernel_log()[log_start:])
    guest.run(["modprobe", "-d", str(TREE), "-r", "testgpu_compat", "testgpu_vsec"])

    # (d) Debian's in-tree i915 with its drm dependencies, loaded and removed again.
    guest.report("i915.load", guest.run(["modprobe", "i915"]))
    guest.report("i915.version", guest.read("/sys/module/i915/version"))
    guest.report("i915.modules", sorted(guest.loaded_modules()))
    guest.report("i915.unload", guest.run(["modprobe", "-r", "i915"]))
    guest.report("i915.after", sorted(guest.loaded_modules()))
    guest.report("done", True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
