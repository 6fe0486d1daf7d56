"""The shipped table of Intel discrete and data-center GPU device IDs (agent/data/pci_ids.csv)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from pathlib import Path

TABLE = Path(__file__).resolve().parent.parent / "data" / "pci_ids.csv"


@dataclass(frozen=True)
class GpuModel:
    """What a device ID is: platform (DG2, PVC ...), product name and family."""

    device_id: str
    platform: str
    product: str
    family: str


UNKNOWN_PLATFORM = "unknown"


@cache
def pci_models() -> dict[str, GpuModel]:
    """Device ID (4 lower-case hex digits) → model, read once."""
    with TABLE.open(newline="", encoding="utf-8") as handle:
        return {
            row["device_id"]: GpuModel(row["device_id"], row["platform"], row["product"], row["family"])
            for row in csv.DictReader(handle)
        }


def model_for(device_id: str) -> GpuModel:
    """The model of an Intel display device; an unknown ID (e.g. integrated graphics) is "unknown"."""
    found = pci_models().get(device_id.lower())
    if found:
        return found
    return GpuModel(device_id.lower(), UNKNOWN_PLATFORM, "Intel graphics (not a known discrete GPU)", "")
