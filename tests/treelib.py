"""Driver trees on disk for tree tests: the shape `build` writes, as a manifest dict a test can then damage."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tooling import REPO

KERNEL = "6.1.0-57-amd64"
FIRMWARE = REPO / "tests/driver/firmware"
MODULES = {"testgpu_compat": (), "testgpu_vsec": (), "testgpu": ("testgpu_compat", "testgpu_vsec")}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_dict(root: Path, *, kernel: str = KERNEL) -> dict[str, Any]:
    """Write the test driver's files under ``root`` as `build` lays them out; return the manifest as data."""
    updates = root / "opt/lib/modules" / kernel / "updates"
    updates.mkdir(parents=True, exist_ok=True)
    modules = []
    for name, deps in MODULES.items():
        data = f"fake module {name}".encode()
        (updates / f"{name}.ko").write_bytes(data)
        modules.append(
            {
                "name": name,
                "path": f"opt/lib/modules/{kernel}/updates/{name}.ko",
                "sha256": _sha(data),
                "srcversion": name.upper()[:23],
                "vermagic": f"{kernel} SMP mod_unload modversions",
                "version": "1.0.0 backported" if name == "testgpu" else "",
                "depends": list(deps),
                "firmware": ["testgpu/testgpu_guc_1.0.bin", "testgpu/testgpu_huc_1.0.bin"] if name == "testgpu" else [],
                "signed": False,
            }
        )
    dep = "updates/testgpu.ko: updates/testgpu_compat.ko updates/testgpu_vsec.ko\n"
    (updates.parent / "modules.dep").write_text(dep)
    firmware = []
    for blob in sorted((FIRMWARE / "testgpu").iterdir()):
        name = f"testgpu/{blob.name}"
        dest = root / "firmware" / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        data = blob.read_bytes()
        dest.write_bytes(data)
        firmware.append({"name": name, "path": f"firmware/{name}", "sha256": _sha(data), "bytes": len(data)})
    return {
        "schema": 1,
        "recipe": "testgpu-1.0",
        "driver_tag": "testgpu-1.0",
        "kernel": kernel,
        "inputs_digest": "d" * 64,
        "modules": modules,
        "firmware": firmware,
        "signed": False,
        "agent_version": "0.1.0",
        "built_at": "2026-12-02T00:00:00Z",
        "inputs": {"recipe": "testgpu-1.0"},
    }


def write_manifest(root: Path, data: object) -> Path:
    """Write ``data`` as the tree's manifest.json, whatever it is (a test may write a list)."""
    path = root / "manifest.json"
    path.write_text(json.dumps(data, indent=2))
    return path


def make_tree(root: Path, *, kernel: str = KERNEL) -> dict[str, Any]:
    """A whole, valid tree at ``root``; returns its manifest data."""
    data = manifest_dict(root, kernel=kernel)
    write_manifest(root, data)
    return data
