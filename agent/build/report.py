"""What `intel-gpu-agent build` prints: one line for people, or the manifest and timings as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.build.service import BuildResult


def result_text(result: BuildResult) -> str:
    """One line per outcome, then the modules and firmware files of the tree."""
    manifest = result.tree.manifest
    if result.skipped:
        head = f"{result.tree.root} is up to date: {manifest.recipe} for {manifest.kernel} (inputs unchanged)"
    else:
        head = (
            f"built {manifest.recipe} ({manifest.driver_tag}) for {manifest.kernel} into {result.tree.root} "
            f"in {result.seconds:.1f} s; log {result.log_path}"
        )
    lines = [head]
    for fix in manifest.compat_fixes:
        lines.append(f"  compat fix {fix.name}  ({', '.join(fix.files)}): {fix.evidence}")
    for module in manifest.modules:
        signed = ", signed" if module.signed else ""
        lines.append(f"  module   {module.path}  srcversion {module.srcversion}{signed}")
    for firmware in manifest.firmware:
        lines.append(f"  firmware {firmware.path}  {firmware.bytes} bytes")
    lines.extend(f"  note: {note}" for note in result.notes)
    return "\n".join(lines)


def result_json(result: BuildResult) -> str:
    """The manifest plus where the tree is, whether it was rebuilt, how long it took, the log."""
    return json.dumps(
        {
            "out": str(result.tree.root),
            "skipped": result.skipped,
            "seconds": round(result.seconds, 3),
            "log": str(result.log_path) if result.log_path else None,
            "notes": list(result.notes),
            "manifest": asdict(result.tree.manifest),
        },
        indent=2,
        sort_keys=True,
    )
