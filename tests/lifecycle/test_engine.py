"""The engine's decisions on a fake kernel: apply order, in-tree swap, refusals, rollback, warm restart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lifecycle.fakes import GPU, Node, make_node, make_tree, snapshot, srcversion

from agent.errors import IntegrityError, LoadError, UnsupportedHostError, UsageError
from agent.lifecycle.engine import Target
from agent.lifecycle.modules import BusyError


def test_apply_places_firmware_sets_the_path_swaps_i915_and_loads_in_order(node: Node) -> None:
    outcome = node.engine().apply(node.target, node.facts())

    assert outcome.verification.ok and not outcome.warm
    assert outcome.verification.render_nodes == ("renderD128",)
    calls = [" ".join(c[:1] + c[-2:]) if c[0] == "modprobe" else c[0] for c in node.kernel.calls]
    assert calls == ["depmod", "rmmod", "modprobe testgpu enable_guc=3"]
    staged = node.host.paths.staged_trees_dir
    (base,) = staged.iterdir()
    assert node.kernel.calls[0] == ["depmod", "-b", str(base / "opt"), "6.1.0-57-amd64"]
    modprobe = node.kernel.calls[2]
    assert modprobe[:5] == ["modprobe", "-d", str(base / "opt"), "-S", "6.1.0-57-amd64"], "a checked copy"
    for item in (*node.target.tree.manifest.modules, *node.target.tree.manifest.firmware):
        assert (base / item.path).read_bytes() == (node.target.tree.root / item.path).read_bytes()
    state = snapshot(node.host)
    assert state["firmware_path"] == b"/var/lib/firmware"
    raw = (node.host.root / "sys/module/firmware_class/parameters/path").read_bytes()
    assert raw == b"/var/lib/firmware", "no trailing newline"
    assert set(state["files"]) == {
        "var/lib/firmware/testgpu/testgpu_guc_1.0.bin",
        "var/lib/firmware/testgpu/testgpu_huc_1.0.bin",
    }
    assert set(state["modules"]) == {"drm", "testgpu", "testgpu_compat", "testgpu_vsec"}
    journal = json.loads((node.host.paths.state_dir / "journal.json").read_text())
    assert journal["phase"] == "applied"
    assert [c["kind"] for c in journal["changes"]] == [
        "tree_staged", "firmware_path", "firmware_file", "firmware_file", "module_removed", "module_loaded",
    ]  # fmt: skip
    assert all(c["status"] == "done" for c in journal["changes"])
    assert journal["changes"][-1]["data"]["loaded"] == ["testgpu_compat", "testgpu_vsec", "testgpu"]


def test_undo_puts_the_node_back_as_it_was(node: Node) -> None:
    before = snapshot(node.host)
    node.engine().apply(node.target, node.facts())

    undone = node.engine().undo()

    assert undone == 6
    after = snapshot(node.host)
    assert after["modules"].keys() == before["modules"].keys()
    assert after == before
    assert not (node.host.paths.state_dir / "journal.json").exists()
    assert not node.host.paths.staged_trees_dir.exists(), "the staged copy is gone too"


def test_undo_removes_our_modules_with_one_rmmod_holders_first(node: Node) -> None:
    node.engine().apply(node.target, node.facts())
    node.kernel.calls.clear()
    node.engine().undo()
    rmmods = [c for c in node.kernel.calls if c[0] == "rmmod"]
    assert len(rmmods) == 1 and rmmods[0][1] == "testgpu", "the holder first, in one rmmod"
    assert sorted(rmmods[0][1:]) == ["testgpu", "testgpu_compat", "testgpu_vsec"]


def test_removal_order_is_holders_first_and_stops_at_an_open_handle() -> None:
    from agent.discovery.modules import LoadedModule
    from agent.lifecycle.modules import removal_order

    def mod(name: str, refcount: int, *holders: str) -> LoadedModule:
        return LoadedModule(name, 1, refcount, holders, "Live", "", "")

    chain = {"b": mod("b", 1, "a"), "a": mod("a", 0), "c": mod("c", 2, "a", "b")}
    assert removal_order(["b", "c", "a"], chain) == ["a", "b", "c"]
    handle = {**chain, "a": mod("a", 1)}  # a process has a's device open
    assert removal_order(["b", "c", "a"], handle) == []
    outside = {**chain, "c": mod("c", 3, "a", "b", "snd")}  # held by a module we do not remove
    assert removal_order(["b", "c", "a"], outside) == ["a", "b"]


def test_a_dependency_held_by_another_module_is_named_and_the_rest_unloaded(node: Node) -> None:
    node.engine().apply(node.target, node.facts())
    node.kernel.hold("testgpu_compat", "other_driver")
    with pytest.raises(BusyError) as caught:
        node.engine().undo()
    assert caught.value.module == "testgpu_compat" and "other_driver" in str(caught.value)
    modules = snapshot(node.host)["modules"]
    assert "testgpu" not in modules and "testgpu_vsec" not in modules and "testgpu_compat" in modules


def test_warm_restart_changes_nothing_and_rewrites_nothing(node: Node) -> None:
    node.engine().apply(node.target, node.facts())
    journal = node.host.paths.state_dir / "journal.json"
    files = sorted((node.host.root / "var/lib/firmware").rglob("*.bin"))
    stamps = [(p.stat().st_ino, p.stat().st_mtime_ns) for p in [journal, *files]]
    calls = len(node.kernel.calls)

    outcome = node.engine().apply(node.target, node.facts())

    assert outcome.warm and outcome.changes == 0 and outcome.verification.ok
    assert len(node.kernel.calls) == calls, "no modprobe or rmmod"
    assert [(p.stat().st_ino, p.stat().st_mtime_ns) for p in [journal, *files]] == stamps


def test_a_path_set_by_someone_else_is_kept_and_firmware_goes_to_updates(node: Node) -> None:
    node.host.firmware_path("/opt/vendor/firmware")
    node.engine().apply(node.target, node.facts())

    state = snapshot(node.host)
    assert state["firmware_path"] == b"/opt/vendor/firmware"
    assert set(state["files"]) == {
        "lib/firmware/updates/testgpu/testgpu_guc_1.0.bin",
        "lib/firmware/updates/testgpu/testgpu_huc_1.0.bin",
    }
    node.engine().undo()
    assert snapshot(node.host)["files"] == {}
    assert not (node.host.root / "lib/firmware/updates/testgpu").exists()


def test_a_path_already_ours_is_not_rewritten_nor_reset(node: Node) -> None:
    node.host.firmware_path("/var/lib/firmware")
    node.engine().apply(node.target, node.facts())
    node.engine().undo()
    assert snapshot(node.host)["firmware_path"] == b"/var/lib/firmware"


def test_busy_in_tree_i915_blocks_with_names_before_anything_is_loaded(node: Node) -> None:
    node.kernel.hold("i915", "snd_hda_intel")
    node.host.module("snd_hda_intel", refcount=0)
    before = snapshot(node.host)

    with pytest.raises(BusyError, match="module snd_hda_intel") as caught:
        node.engine().apply(node.target, node.facts())

    assert caught.value.exit_code == 4
    assert [h.name for h in caught.value.holders] == ["snd_hda_intel"]
    assert snapshot(node.host) == before, "firmware and path rolled back"
    assert not any(c[0] == "modprobe" for c in node.kernel.calls)


def test_a_failed_modprobe_rolls_back_and_restores_the_in_tree_driver(tmp_path: Path) -> None:
    node = make_node(tmp_path, fail={"testgpu": "testgpu: Unknown symbol testgpu_missing_symbol (err -2)"})
    before = snapshot(node.host)

    with pytest.raises(LoadError, match=r"modprobe testgpu .* failed"):
        node.engine().apply(node.target, node.facts())

    after = snapshot(node.host)
    assert after["modules"].keys() == before["modules"].keys()
    assert after["modules"]["i915"] == before["modules"]["i915"]
    assert after["firmware_path"] == b"" and after["files"] == {}
    assert not (node.host.paths.state_dir / "journal.json").exists()


def test_an_unknown_symbol_in_the_kernel_log_fails_verification_and_rolls_back(tmp_path: Path) -> None:
    node = make_node(tmp_path, log_after_load="testgpu: Unknown symbol testgpu_vsec_register (err -2)")
    with pytest.raises(LoadError, match="kernel log: testgpu: Unknown symbol"):
        node.engine().apply(node.target, node.facts())
    assert "testgpu" not in snapshot(node.host)["modules"]
    assert "i915" in snapshot(node.host)["modules"]


def test_the_unsigned_module_taint_notice_is_not_a_failure(tmp_path: Path) -> None:
    notice = "testgpu_compat: module verification failed: signature and/or required key missing - tainting kernel"
    node = make_node(tmp_path, log_after_load=notice)
    assert node.engine().apply(node.target, node.facts()).verification.ok


def test_an_old_kernel_log_problem_or_another_driver_does_not_fail_verification(tmp_path: Path) -> None:
    node = make_node(tmp_path, log_after_load="iwlwifi: Direct firmware load for iwlwifi-9000.ucode failed")
    node.kernel.log("testgpu: GuC firmware testgpu/testgpu_guc_1.0.bin: fetch failed with error -2")  # before load
    assert node.engine().apply(node.target, node.facts()).verification.ok


def test_a_gpu_never_bound_fails_verification_after_the_deadline(node: Node) -> None:
    node.kernel.bind_gpu = lambda driver: None  # type: ignore[method-assign]
    with pytest.raises(LoadError, match=f"GPU 8086:56c0 at {GPU} is not bound after 0s"):
        node.engine(gpu_deadline=0.05).apply(node.target, node.facts())


def test_missing_firmware_in_the_tree_is_refused_before_any_change(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    tree = make_tree(tmp_path / "broken", drop_firmware="testgpu/testgpu_huc_1.0.bin")
    before = snapshot(node.host)
    with pytest.raises(UsageError, match=r"lacks firmware testgpu/testgpu_huc_1\.0\.bin"):
        node.engine().apply(Target(tree, node.target.recipe), node.facts())
    assert snapshot(node.host) == before and node.kernel.calls == []


def test_a_damaged_module_is_refused_before_any_change(node: Node) -> None:
    (node.target.tree.root / node.target.tree.manifest.modules[0].path).write_bytes(b"other")
    with pytest.raises(IntegrityError):
        node.engine().apply(node.target, node.facts())
    assert node.kernel.calls == []


def test_unsigned_modules_on_an_enforcing_kernel_name_module_signing(node: Node) -> None:
    node.host.sig_enforce(True)
    before = snapshot(node.host)
    with pytest.raises(UnsupportedHostError, match="only loads signed modules") as caught:
        node.engine().apply(node.target, node.facts())
    assert caught.value.exit_code == 3
    assert snapshot(node.host) == before and node.kernel.calls == []


def test_a_node_without_a_supported_gpu_is_unsupported_and_untouched(tmp_path: Path) -> None:
    node = make_node(tmp_path, gpu=False)
    before = snapshot(node.host)
    with pytest.raises(UnsupportedHostError, match="no Intel data-center GPU"):
        node.engine().apply(node.target, node.facts())
    assert snapshot(node.host) == before


def test_a_tree_for_another_kernel_is_a_usage_error(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    tree = make_tree(tmp_path / "other", kernel="6.1.0-99-amd64")
    with pytest.raises(UsageError, match=r"is for kernel 6\.1\.0-99-amd64"):
        node.engine().apply(Target(tree, node.target.recipe), node.facts())


def test_a_module_in_use_at_unload_is_never_forced_and_named(node: Node) -> None:
    node.engine().apply(node.target, node.facts())
    node.kernel.use("testgpu")  # a process has /dev/testgpu open: refcount only
    proc = node.host.root / "proc/4242"
    (proc / "fd").mkdir(parents=True)
    (proc / "fd/3").symlink_to("/dev/testgpu")
    (proc / "cmdline").write_bytes(b"xpu-smi\x00discovery\x00")
    (proc / "cgroup").write_text(
        "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0a1b2c3d_1111_2222_3333_444455556666"
        ".slice/cri-containerd-" + "f" * 64 + ".scope\n"
    )

    with pytest.raises(BusyError) as caught:
        node.engine().undo()

    message = str(caught.value)
    assert "PID 4242 (xpu-smi discovery) has /dev/testgpu open in pod 0a1b2c3d-1111-2222-3333-444455556666" in message
    assert not any("-f" in c for c in node.kernel.calls if c[0] == "rmmod")
    assert "testgpu" in snapshot(node.host)["modules"]
    assert (node.host.paths.state_dir / "journal.json").exists(), "what is left stays journaled"


def test_a_journal_from_another_boot_keeps_only_its_files(node: Node) -> None:
    node.engine().apply(node.target, node.facts())
    # A reboot: the kernel forgot the modules and the path, the disk kept the files.
    node.host.write("proc/sys/kernel/random/boot_id", "99999999-2222-3333-4444-555555555555\n")
    for name in ("testgpu", "testgpu_vsec", "testgpu_compat"):
        node.kernel.modules()[name] = (0, [])
        node.kernel.remove(name)
    node.kernel.unbind_gpu()
    node.host.firmware_path("")
    node.kernel.calls.clear()

    outcome = node.engine().apply(node.target, node.facts())

    assert outcome.verification.ok
    assert [c[0] for c in node.kernel.calls] == ["modprobe"], "i915 stayed out after the reboot: nothing to remove"
    assert outcome.changes == 2  # the path and the load; the files were still in place


def test_status_reports_the_journal_and_the_host(node: Node) -> None:
    node.engine().apply(node.target, node.facts())
    status = node.engine().status()
    assert status["phase"] == "applied"
    assert status["loaded"]["testgpu"]["srcversion"] == srcversion("testgpu")
    assert status["firmware_path"] == "/var/lib/firmware"
    assert [c["kind"] for c in status["changes"]][-1] == "module_loaded"


def test_a_module_built_without_srcversion_is_told_from_the_kernels_own_by_its_taint(tmp_path: Path) -> None:
    """The real backport's mei-gsc has no srcversion, and neither has Debian's: "" == "" made the in-tree
    copy pass for ours, so it was never removed and the backport's never loaded."""
    import dataclasses

    node = make_node(tmp_path, no_srcversion=("testgpu_vsec",))
    node.host.module("testgpu_vsec")  # the kernel's own copy, loaded before: no srcversion, no taint
    target = Target(node.target.tree, dataclasses.replace(node.target.recipe, replaces=("i915", "testgpu_vsec")))
    before = snapshot(node.host)

    node.engine().apply(target, node.facts())

    rmmods = [sorted(c[1:]) for c in node.kernel.calls if c[0] == "rmmod"]
    assert rmmods == [["i915", "testgpu_vsec"]], "the kernel's own copy is removed with i915"
    taint = (node.host.root / "sys/module/testgpu_vsec/taint").read_text().strip()
    assert taint == "OE", "the tree's copy is loaded now"
    assert node.engine().warm(target), "and recognised as ours by a restart"
    node.kernel.calls.clear()
    node.engine().undo()
    assert snapshot(node.host) == before, "the kernel's own copy is back"
    restores = [c for c in node.kernel.calls if c[0] == "modprobe"]
    assert len(restores) == 1 and restores[0][3] == "-a", "both in-tree modules loaded back by one modprobe"
