"""KMM's worker procedure, taken from the chart's rendered objects: what the worker pod would run on a node.

What the worker does (../shared/reference/kmm.md; KMM 2.2+ worker pods):
- the init container copies ``<dirName>/lib/modules/<kver>`` and ``<firmwarePath>/*`` out of the image
  into the pod's shared /tmp with ``mkdir -p`` and ``cp -R``;
- load: ``modprobe -rv`` the ``inTreeModulesToRemove`` whose files the node has, write the firmware
  search path when it differs, copy /tmp/<firmwarePath> into the host firmware folder, then
  ``modprobe -vd /tmp/<dirName> <moduleName> <parameters>``, with ``modulesLoadingOrder`` turned into
  ``softdep A pre: B`` lines in the pod's /etc/modprobe.d/softdep.conf;
- unload: ``modprobe -rvd /tmp/<dirName> <moduleName>``, then every file it copied is deleted from
  the host firmware folder (folders stay).
The worker pod mounts the node's /lib/modules at /lib/modules and at /host/lib/modules.

Nothing here is hard-coded from the chart: every field comes from ``helm template`` output.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml
from chart.cases import KMM
from chart.chartlib import find, make_chart_copy, render

from agent.recipes.model import Recipe

Doc = dict[str, Any]
# KMM's worker pod: the shared emptyDir and where it mounts the node's modules.
SHARED = "/tmp"

# KMM 2.2+'s default when the operator configuration names no firmware folder.
DEFAULT_FIRMWARE_HOST_PATH = "/lib/firmware"


@dataclass(frozen=True)
class WorkerSpec:
    """The Module's fields the worker acts on, the operator's firmware folder, and the monitor's env."""

    module_name: str
    dir_name: str
    firmware_path: str
    parameters: tuple[str, ...]
    modules_loading_order: tuple[str, ...]
    in_tree_modules_to_remove: tuple[str, ...]
    firmware_host_path: str
    set_firmware_class_path: bool
    monitor_env: dict[str, str]

    def init_container_script(self, kernel: str) -> str:
        """The worker's init container command (``/bin/sh -c``): the image's tree and firmware into /tmp."""
        script = ""
        for src, dst in (
            (f"{self.dir_name}/lib/modules/{kernel}", f"{SHARED}{self.dir_name}/lib/modules"),
            (f"{self.firmware_path}/*", f"{SHARED}{self.firmware_path}"),
        ):
            script += f"\nmkdir -p {dst};\ncp -R {src} {dst};\n"
        return script

    def softdep_conf(self) -> str:
        """/etc/modprobe.d/softdep.conf of the worker pod (empty without a loading order)."""
        order = self.modules_loading_order
        return "".join(f"softdep {order[i]} pre: {order[i + 1]}\n" for i in range(len(order) - 1))

    def load_argv(self) -> list[str]:
        return ["modprobe", "-vd", f"{SHARED}{self.dir_name}", self.module_name, *self.parameters]

    def unload_argv(self) -> list[str]:
        return ["modprobe", "-rvd", f"{SHARED}{self.dir_name}", self.module_name]

    def to_json(self, kernel: str) -> str:
        """The spec and the commands derived from it, for the guest script (which imports nothing of this)."""
        derived = {
            "softdep": self.softdep_conf(),
            "load_argv": self.load_argv(),
            "unload_argv": self.unload_argv(),
            "init_container_script": self.init_container_script(kernel),
        }
        return json.dumps({**asdict(self), **derived}, indent=1)


def chart_values_for(recipe: Recipe) -> dict[str, Any]:
    """Chart values (``--set-json``) that name ``recipe`` in kmm mode, as a user of that release sets them."""
    params = recipe.module_parameters(recipe.main_module)
    return {
        **KMM,
        "recipe.name": recipe.name,
        "recipe.driverTag": recipe.driver_tag,
        "recipe.replaces": list(recipe.replaces),
        "recipe.loadOrder": list(recipe.load_order),
        "recipe.parameters": dict(params),
        # The chart writes KMM's operator configuration: its firmware folder is where the worker copies.
        "kmm.operatorConfig.manage": True,
    }


def rendered(tmp: Path, values: dict[str, Any]) -> list[Doc]:
    """``helm template`` of the chart (stand-in dependencies) with ``values``."""
    return render(make_chart_copy(tmp), values)


def worker_spec(docs: list[Doc]) -> WorkerSpec:
    """The worker's inputs from the rendered Module, the KMM operator ConfigMap and the monitor DaemonSet."""
    (module,) = find(docs, "Module")
    container = module["spec"]["moduleLoader"]["container"]
    modprobe = container["modprobe"]
    firmware_host_path, set_path = DEFAULT_FIRMWARE_HOST_PATH, False
    for config_map in find(docs, "ConfigMap"):
        for text in config_map.get("data", {}).values():
            if "worker:" not in text:
                continue
            worker = (yaml.safe_load(text) or {}).get("worker", {})
            if "firmwareHostPath" in worker:  # 2.2+: the copy target and the path the worker writes
                firmware_host_path, set_path = worker["firmwareHostPath"], True
            elif "setFirmwareClassPath" in worker:  # 2.0/2.1
                firmware_host_path, set_path = worker["setFirmwareClassPath"], True
    (daemonset,) = [d for d in find(docs, "DaemonSet") if _env(d).get("INTEL_GPU_AGENT_MODE") == "monitor"]
    return WorkerSpec(
        module_name=modprobe["moduleName"],
        dir_name=modprobe.get("dirName", "/opt"),
        firmware_path=modprobe.get("firmwarePath", ""),
        parameters=tuple(modprobe.get("parameters", ())),
        modules_loading_order=tuple(modprobe.get("modulesLoadingOrder", ())),
        in_tree_modules_to_remove=tuple(container.get("inTreeModulesToRemove", ())),
        firmware_host_path=firmware_host_path,
        set_firmware_class_path=set_path,
        monitor_env=_env(daemonset),
    )


def _env(daemonset: Doc) -> dict[str, str]:
    (container,) = [c for c in daemonset["spec"]["template"]["spec"]["containers"] if c["name"] == "agent"]
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
