"""Turning facts and verdicts into output: JSON for programs, aligned tables for people."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from agent.discovery.modules import relevant

if TYPE_CHECKING:
    from agent.discovery.node import NodeFacts
    from agent.recipes.model import Recipe
    from agent.support import Verdict


def to_jsonable(value: Any) -> Any:
    """Dataclasses, tuples and paths as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [to_jsonable(v) for v in value]
        return sorted(items) if isinstance(value, set | frozenset) else items
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def dumps(value: Any) -> str:
    return json.dumps(to_jsonable(value), indent=2, sort_keys=False)


def facts_json(facts: NodeFacts) -> dict[str, Any]:
    """detect --json: the facts, with loaded modules reduced to the ones that matter here."""
    data: dict[str, Any] = to_jsonable(facts)
    data["modules"] = {name: to_jsonable(m) for name, m in facts.modules.items() if relevant(name, facts.i915.module)}
    return data


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """A plain aligned table."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in [header, *rows]]
    return "\n".join(lines)


def facts_text(facts: NodeFacts) -> str:
    """detect for people."""
    k, sec = facts.kernel, facts.security
    lines = [
        f"Kernel:          {k.describe()}" + (f"  flavour {k.flavour}, ABI {k.abi}" if k.abi else ""),
        f"Kernel headers:  {'installed' if k.headers else 'missing (/lib/modules/' + k.release + '/build)'}",
        f"OS:              {facts.os.pretty_name}",
        f"i915 loaded:     {_origin(facts)}",
        f"Firmware path:   {_fw_path(facts.firmware_path)}",
        f"Secure Boot:     {sec.secure_boot}   lockdown: {sec.lockdown}   "
        f"module.sig_enforce: {'on' if sec.sig_enforce else 'off'}",
        "",
    ]
    if facts.gpus:
        rows = [
            (
                g.address,
                g.pci_id,
                g.product,
                g.function.upper(),
                g.driver or "-",
                ",".join(g.render_nodes) or "-",
                str(g.numa_node),
            )
            for g in facts.gpus
        ]
        lines.append(table(rows, ("PCI", "ID", "PRODUCT", "FN", "DRIVER", "RENDER", "NUMA")))
    else:
        lines.append("GPUs:            no Intel display-class PCI device found")
    for problem in facts.problems:
        lines.append(f"note: {problem}")
    return "\n".join(lines)


def _origin(facts: NodeFacts) -> str:
    o = facts.i915
    if o.origin == "backport":
        return f"backport {o.backport_tag or o.version}"
    return o.origin


def _fw_path(value: str | None) -> str:
    if value is None:
        return "unknown (not readable)"
    return value or "(empty: only the default /lib/firmware folders are searched)"


def verdicts_text(verdicts: Sequence[Verdict], chosen: Verdict | None, why: str) -> str:
    """check for people: one block per release, then the pick."""
    out = []
    for v in verdicts:
        out.append(f"{v.recipe}: {v.verdict.upper()}")
        out.extend(f"  - {reason}" for reason in v.reasons)
    out.append("")
    out.append(f"Choice: {chosen.recipe} ({why})" if chosen else f"Choice: none ({why})")
    return "\n".join(out)


def recipes_text(recipes: Sequence[Recipe], errors: Sequence[Exception]) -> str:
    rows = [(r.name, r.stream, r.driver_tag, r.firmware_tag, r.released, str(len(r.kernels))) for r in recipes]
    text = table(rows, ("NAME", "STREAM", "DRIVER TAG", "FIRMWARE", "RELEASED", "KERNELS"))
    for e in errors:
        text += f"\nerror: {e}"
    return text
