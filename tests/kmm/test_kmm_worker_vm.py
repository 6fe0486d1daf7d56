"""KMM's worker procedure replayed on Debian's real kernel with the image Dockerfile.builder makes (issue 15).

Every field the worker acts on comes from the chart's `helm template` output in kmm mode (kmmlib). The
image is built by buildah; KMM's init container command runs in it to copy its tree out; the guest (the
node) runs the worker's load and unload in a mount namespace laid out like the worker pod, and the
chart's monitor-mode agent beside it. One boot per driver: scenarios a (fresh node), c (unload),
d (the monitor's verdict) and b (the in-tree module loaded first).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from images import imagelib
from vm.machine import Vm, VmResult

from agent.tree import load_tree

from .conftest import REPO, Copied, DriverImage, copy_out
from .kmmlib import WorkerSpec

pytestmark = [pytest.mark.vm, pytest.mark.slow]

GUESTS = Path(__file__).resolve().parent / "guests"


def replay(
    vm: Vm, spec: WorkerSpec, image: DriverImage, copied: Copied, certs: imagelib.LocalCa, folder: Path, plan: str
) -> tuple[VmResult, dict[str, Any]]:
    """One boot running the guest's plan; the result and its records (fails with the guest's logs)."""
    spec_file = folder / "spec.json"
    spec_file.write_text(spec.to_json(image.kernel))
    env = {
        "KMM_REPO": str(REPO),
        "KMM_API_SERVER": str(GUESTS / "api_server.py"),
        "KMM_API_CA": str(certs.ca_cert),
        "KMM_API_CERT": str(certs.server_cert),
        "KMM_API_KEY": str(certs.server_key),
        "INTEL_GPU_AGENT_LOG_FORMAT": "json",
    }
    if image.recipe.path.parent != REPO / "build/releases":
        env["KMM_RECIPES_DIR"] = str(image.recipe.path.parent)  # a test recipe: not shipped with the agent
    argv = vm.python(
        str(GUESTS / "kmm_worker.py"), str(spec_file), str(copied.worker_tmp), str(copied.image_tree), plan
    )
    result = vm.run(argv, env=env, timeout=900)
    records = result.records()
    (folder / f"records-{plan}.json").write_text(json.dumps(records, indent=1))  # for a look after a failure
    logs = "\n".join(f"{k}:\n{v}" for k, v in records.items() if k.startswith("log:"))
    assert result.returncode == 0 and records.get("done"), result.describe() + "\n" + logs
    return result, records


@pytest.fixture(scope="module")
def test_driver_replay(
    vm: Vm,
    spec_for: Any,
    test_driver_image: DriverImage,
    api_certs: imagelib.LocalCa,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[WorkerSpec, DriverImage, Copied, dict[str, Any]]:
    spec = spec_for(test_driver_image.recipe)
    folder = tmp_path_factory.mktemp("kmm-testgpu")
    copied = copy_out(test_driver_image, spec, folder)
    _, records = replay(vm, spec, test_driver_image, copied, api_certs, folder, "full")
    return spec, test_driver_image, copied, records


def test_the_worker_reads_the_modules_fields_from_the_rendered_chart(test_driver_replay: Any) -> None:
    spec, image, copied, _ = test_driver_replay
    recipe = image.recipe
    assert spec.module_name == recipe.load_order[0] == recipe.main_module
    assert spec.in_tree_modules_to_remove == recipe.replaces
    assert spec.parameters == tuple(f"{k}={v}" for k, v in recipe.module_parameters(recipe.main_module).items())
    # The init container's copy is what the worker loads from: the image's tree and its firmware.
    kernel_dir = copied.worker_tmp / spec.dir_name.lstrip("/") / "lib/modules" / image.kernel
    assert (kernel_dir / "modules.dep").is_file()
    assert (kernel_dir / "host").is_symlink(), "cp -R keeps the host link a link"
    manifest = load_tree(copied.image_tree).manifest
    for firmware in manifest.firmware:
        assert (copied.worker_tmp / spec.firmware_path.lstrip("/") / firmware.name).is_file()


def test_a_fresh_node_gets_the_driver_from_kmms_worker(test_driver_replay: Any) -> None:
    spec, image, copied, got = test_driver_replay
    load, node = got["a.load"], got["a.node"]
    assert load["modprobe"]["rc"] == 0, load
    manifest = load_tree(copied.image_tree).manifest
    assert {m.name for m in manifest.modules} <= set(node["modules"])
    assert node["srcversion"] == manifest.module(spec.module_name).srcversion  # type: ignore[union-attr]
    assert image.recipe.version_marker in node["version"]
    assert node["parameters"]["enable_guc"] == "3", "the Module's parameters reach modprobe"
    assert sorted(f.name for f in manifest.firmware) == node["firmware_files"]
    assert node["firmware_path"] == spec.firmware_host_path
    assert not [line for line in load["kernel_log"] if "Unknown symbol" in line or "firmware load" in line]


def test_kmms_unload_removes_every_module_and_firmware_file_it_brought(test_driver_replay: Any) -> None:
    _, _, _, got = test_driver_replay
    assert got["c.unload"]["modprobe"]["rc"] == 0, got["c.unload"]
    assert got["c.node"]["modules"] == got["fresh"]["modules"]
    assert got["c.node"]["firmware_files"] == []
    assert got["c.node"]["firmware_dirs"], "KMM removes files, not folders"


def test_the_monitor_verifies_kmms_driver_and_labels_the_node(test_driver_replay: Any) -> None:
    _, _, _, got = test_driver_replay
    before = got["monitor.before_load"]
    assert before["readyz"][0] == 503 and "is not loaded" in before["readyz"][1]
    ready = got["d.ready"]
    assert ready["readyz"] == [200, "ready: testgpu-1.0 verified\n"]
    assert ready["metrics"]['intel_gpu_driver_state{state="ready"}'] == 1.0
    assert ready["labels"] == ["loading", "ready"]  # gpu-driver.intel.com/state, PATCHed on the node
    not_ready = got["d.not_ready"]
    assert not_ready["readyz"][0] == 503 and not_ready["labels"] == ["loading", "ready", "loading"]
    assert not_ready["metrics"]["intel_gpu_driver_ready"] == 0.0


def test_the_monitor_loads_and_unloads_nothing_itself(test_driver_replay: Any) -> None:
    _, _, _, got = test_driver_replay
    assert got["d.stop"]["rc"] == 0
    stopped = got["d.after_stop"]
    assert stopped["after"]["modules"] == stopped["before"]["modules"]
    assert stopped["after"]["firmware_path"] == got["fresh"]["firmware_path"], "the path it set is restored"


def test_an_in_tree_driver_loaded_first_is_removed_by_the_worker(test_driver_replay: Any) -> None:
    spec, _, _, got = test_driver_replay
    in_tree = spec.in_tree_modules_to_remove[0]
    assert got["b.in_tree_load"]["rc"] == 0 and in_tree in got["b.before"]["modules"]
    assert got["b.load"]["in_tree"]["rc"] == 0, got["b.load"]
    assert in_tree not in got["b.node"]["modules"]
    assert spec.module_name in got["b.node"]["modules"]
    assert got["b.unload"]["modprobe"]["rc"] == 0
    assert spec.module_name not in got["b.after"]["modules"]


def test_times_are_recorded(test_driver_replay: Any) -> None:
    """The figures docs/chart.md quotes (printed with -s; the assertion only keeps them sane)."""
    _, image, copied, got = test_driver_replay
    figures = {
        "image build (s, cached layers count)": image.build_seconds,
        "init container copy (s)": copied.copy_seconds,
        "worker load in the VM (s)": got["a.load"]["seconds"],
        "modprobe -vd in the VM (s)": got["a.load"]["modprobe"]["seconds"],
        "modprobe -rvd in the VM (s)": got["c.unload"]["modprobe"]["seconds"],
        "monitor ready after the load (s)": got["d.ready_seconds"],
    }
    print(json.dumps(figures, indent=1))
    assert all(v >= 0 for v in figures.values())
