"""The typed change model and the journal: node paths, unknown kinds, failed writes, reboots (issue 11 F1-F3, F15)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Self

import pytest
from lifecycle.fakes import Node, make_node, make_tree, snapshot

from agent.errors import HostFullError, HostWriteError, IntegrityError, JournalError
from agent.host.paths import HostPaths
from agent.lifecycle.changes import ChangeContext, HostChange, kinds
from agent.lifecycle.engine import Target
from agent.lifecycle.journal import Journal
from agent.tree import BuiltFirmware, DriverTree

GUC = "lib/firmware/updates/testgpu/testgpu_guc_1.0.bin"


def _journal(node: Node) -> dict[str, object]:
    return json.loads((node.host.paths.state_dir / "journal.json").read_text())  # type: ignore[no-any-return]


def _move_host(node: Node, new_root: Path) -> None:
    """The same node seen under another host root: the DaemonSet's /host, then an operator's /."""
    node.host.root.rename(new_root)
    node.host.root = new_root
    node.host.paths = HostPaths(new_root)


# --- F1: one journal, any host root ---------------------------------------------------------------
def test_a_journal_written_under_one_host_root_is_undone_under_another(tmp_path: Path) -> None:
    """Repro of F1: load under hD (firmware path /opt/x, a host file overwritten), unload under hE."""
    node = make_node(tmp_path)
    node.host.firmware_path("/opt/x")
    node.host.write(GUC, b"ORIGINAL\n")
    before = snapshot(node.host)
    node.engine().apply(node.target, node.facts())
    assert (node.host.root / GUC).read_bytes() != b"ORIGINAL\n"
    paths = [c["data"]["path"] for c in _journal(node)["changes"] if c["kind"] == "firmware_file"]  # type: ignore[attr-defined]
    assert paths == [f"/{GUC}", "/lib/firmware/updates/testgpu/testgpu_huc_1.0.bin"], "node paths, no host root"

    _move_host(node, tmp_path / "hE")
    undone = node.engine().undo()

    assert undone == 5
    assert snapshot(node.host) == before, "the host's own file is back, ours are gone"
    assert not node.host.paths.firmware_backup_dir.exists()
    assert not (tmp_path / "host").exists()


def test_a_schema_1_journal_with_root_prefixed_paths_is_read_and_undone(node: Node) -> None:
    """An agent upgraded while the driver is loaded reads the previous agent's journal."""
    before = snapshot(node.host)
    node.engine().apply(node.target, node.facts())
    journal = node.host.paths.state_dir / "journal.json"
    data = json.loads(journal.read_text())
    data["schema"] = 1
    for change in data["changes"]:
        if change["kind"] == "firmware_file":
            change["data"]["path"] = str(node.host.root) + change["data"]["path"]
            change["data"]["created"] = [str(node.host.root) + p for p in change["data"]["created"]]
            del change["data"]["source"]
        if change["kind"] == "firmware_path":
            del change["data"]["file"]
    journal.write_text(json.dumps(data))

    assert node.engine().undo() == 6
    assert snapshot(node.host) == before


def test_a_schema_1_journal_from_another_root_is_refused_untouched(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    node.engine().apply(node.target, node.facts())
    journal = node.host.paths.state_dir / "journal.json"
    data = json.loads(journal.read_text())
    data["schema"] = 1
    for change in data["changes"]:
        if change["kind"] == "firmware_file":
            change["data"]["path"] = "/elsewhere" + change["data"]["path"]
    journal.write_text(json.dumps(data))
    state = snapshot(node.host)

    with pytest.raises(JournalError, match="not under the host root") as caught:
        node.engine().undo()

    assert caught.value.exit_code == 2
    assert snapshot(node.host) == state


@pytest.mark.parametrize("path", ["/var/lib/firmware/../../etc/passwd", "etc/passwd", "/var/lib/./firmware/x"])
def test_a_journaled_path_that_climbs_out_is_refused(node: Node, path: str) -> None:
    node.engine().apply(node.target, node.facts())
    journal = node.host.paths.state_dir / "journal.json"
    data = json.loads(journal.read_text())
    data["changes"][1]["data"]["path"] = path
    journal.write_text(json.dumps(data))

    with pytest.raises(HostWriteError, match=r"not an absolute path without '\.\.'"):
        node.engine().undo()


def test_node_paths_follow_links_as_the_node_does(tmp_path: Path) -> None:
    host = HostPaths(tmp_path)
    (tmp_path / "usr/lib/firmware").mkdir(parents=True)
    (tmp_path / "lib").symlink_to("usr/lib")  # merged /usr, a relative link
    (tmp_path / "opt").mkdir()
    (tmp_path / "opt/fw").symlink_to("/usr/lib/firmware")  # an absolute link means the node's /usr
    (tmp_path / "opt/up").symlink_to("../../../../../..")  # ".." stops at the node's /
    assert host.from_host_path("/lib/firmware/x.bin") == tmp_path / "usr/lib/firmware/x.bin"
    assert host.from_host_path("/opt/fw/i915/x.bin") == tmp_path / "usr/lib/firmware/i915/x.bin"
    assert host.from_host_path("/opt/up/etc") == tmp_path / "etc"


def test_a_tree_naming_firmware_outside_the_folder_is_refused_before_any_change(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    tree = node.target.tree
    evil = BuiltFirmware("../../../etc/evil.conf", "firmware/testgpu/testgpu_guc_1.0.bin", "0" * 64, 1)
    firmware = (*tree.manifest.firmware, evil)
    crafted = DriverTree(tree.root, tree.manifest.__class__(**{**tree.manifest.__dict__, "firmware": firmware}))
    before = snapshot(node.host)

    with pytest.raises(IntegrityError):
        node.engine().apply(Target(crafted, node.target.recipe), node.facts())

    assert snapshot(node.host) == before
    assert not (node.host.root / "etc/evil.conf").exists()


def test_a_firmware_folder_that_links_elsewhere_on_the_host_is_refused(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    (node.host.root / "etc").mkdir(exist_ok=True)
    (node.host.root / "var/lib/firmware").mkdir(parents=True)
    (node.host.root / "var/lib/firmware/testgpu").symlink_to("/etc")
    with pytest.raises(IntegrityError, match=r"outside /var/lib/firmware"):
        node.engine().apply(node.target, node.facts())
    assert sorted(p.name for p in (node.host.root / "etc").iterdir()) == ["os-release"]
    assert snapshot(node.host)["firmware_path"] == b"", "the path set before it was rolled back"


# --- F3: a kind this agent does not know ------------------------------------------------------------
def test_an_unknown_change_kind_stops_undo_before_anything_is_touched(node: Node) -> None:
    """Repro of F3: a newer agent's journal (a sysctl change) read after a chart rollback."""
    node.engine().apply(node.target, node.facts())
    journal = node.host.paths.state_dir / "journal.json"
    data = json.loads(journal.read_text())
    data["changes"].append({"kind": "sysctl", "key": "sysctl:vm.x", "status": "done", "data": {"name": "vm.x"}})
    journal.write_text(json.dumps(data))
    written = journal.read_bytes()
    state = snapshot(node.host)
    calls = len(node.kernel.calls)

    with pytest.raises(JournalError, match=r"does not know: 'sysctl' \(change 6\)") as caught:
        node.engine().undo()
    assert caught.value.exit_code == 2
    with pytest.raises(JournalError, match="sysctl"):
        node.engine().apply(node.target, node.facts())

    assert snapshot(node.host) == state and len(node.kernel.calls) == calls
    assert journal.read_bytes() == written, "the journal is left exactly as the newer agent wrote it"
    status = node.engine().status()
    assert status["unknown_changes"] == [{"index": 6, "kind": "sysctl"}]
    assert len(status["changes"]) == 6


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[]", "a JSON list, not an object"),
        ('{"schema": 2, "changes": {}}', "changes must be a list"),
        ('{"schema": 2, "changes": [{"kind": "module_loaded", "status": "done", "data": {"module": 3}}]}', "module"),
        ('{"schema": 2, "changes": [{"kind": "firmware_file", "status": "maybe", "data": {}}]}', "status 'maybe'"),
        ('{"schema": 2, "phase": ["applied"]}', "phase must be a str"),
        ("{not json", "not JSON"),
        ('{"schema": 9}', "schema 9"),
    ],
)
def test_a_malformed_journal_is_a_usage_error_naming_the_file(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "journal.json"
    path.write_text(text)
    with pytest.raises(JournalError, match=problem) as caught:
        Journal(path)
    assert str(path) in str(caught.value) and caught.value.exit_code == 2


# --- F2: a write that fails during apply rolls everything back ------------------------------------------
@pytest.fixture
def small_firmware_folder(node: Node) -> Iterator[Path]:
    """A real 4 KB tmpfs on the node's /var/lib/firmware: room for one firmware file, not two."""
    folder = node.host.root / "var/lib/firmware"
    folder.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_full_firmware_folder_rolls_everything_back(node: Node, small_firmware_folder: Path) -> None:
    """Repro of F2: before the fix the path stayed switched, one file placed, the journal at applying."""
    before = snapshot(node.host)

    with pytest.raises(HostFullError, match="No space left on device") as caught:
        node.engine().apply(node.target, node.facts())

    assert caught.value.exit_code == 4
    assert snapshot(node.host) == before, "path restored, the placed file removed"
    assert list(small_firmware_folder.iterdir()) == []
    assert not (node.host.paths.state_dir / "journal.json").exists()
    assert not any(c[0] == "rmmod" for c in node.kernel.calls), "the in-tree driver was never touched"


def test_a_read_only_firmware_folder_rolls_back_and_says_what_to_mount(node: Node) -> None:
    folder = node.host.root / "var/lib/firmware"
    folder.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(folder)], check=True)
    try:
        before = snapshot(node.host)
        with pytest.raises(HostWriteError, match=r"Read-only file system.*hostPath mounts") as caught:
            node.engine().apply(node.target, node.facts())
        assert caught.value.exit_code == 2
        assert snapshot(node.host) == before
    finally:
        subprocess.run(["umount", str(folder)], check=True)


# --- F15: a reboot between load and unload ------------------------------------------------------------
def _reboot(node: Node) -> None:
    """The kernel forgets modules and the path; the disk keeps the files and the journal."""
    node.host.write("proc/sys/kernel/random/boot_id", "99999999-2222-3333-4444-555555555555\n")
    for name in ("testgpu", "testgpu_vsec", "testgpu_compat", "drm"):
        node.kernel.modules()[name] = (0, [])
        node.kernel.remove(name)
    node.kernel.unbind_gpu()
    node.host.firmware_path("")
    # i915 is blacklisted on this node: nothing loads it at boot, and nothing of ours may.


def test_unload_after_a_reboot_removes_our_files_and_touches_no_module(node: Node) -> None:
    """Repro of F15: unload ran `modprobe i915` (the removal journaled in the previous boot)."""
    node.engine().apply(node.target, node.facts())
    _reboot(node)
    node.kernel.calls.clear()

    undone = node.engine().undo()

    assert node.kernel.calls == [], "nothing of the previous boot's kernel state is undone"
    assert undone == 3  # the two firmware files and the staged modules
    assert snapshot(node.host)["files"] == {}
    assert snapshot(node.host)["firmware_path"] == b""


def test_status_after_a_reboot_shows_only_what_is_left(node: Node) -> None:
    node.engine().apply(node.target, node.facts())
    _reboot(node)
    journal = (node.host.paths.state_dir / "journal.json").read_bytes()

    status = node.engine().status()

    assert status["same_boot"] is False
    assert [c["kind"] for c in status["changes"]] == ["firmware_file", "firmware_file", "module_tree_staged"]
    assert [c["kind"] for c in status["forgotten"]] == ["firmware_path", "module_removed", "module_loaded"]
    assert (node.host.paths.state_dir / "journal.json").read_bytes() == journal, "status writes nothing"


# --- the model itself ---------------------------------------------------------------------------------
def test_every_shipped_kind_is_found_and_round_trips_through_its_record() -> None:
    from agent.lifecycle.changes.firmware_file import FirmwareFilePlaced
    from agent.lifecycle.changes.firmware_path import FirmwarePathSet
    from agent.lifecycle.changes.module_loaded import ModuleLoaded
    from agent.lifecycle.changes.module_removed import InTreeModuleRemoved

    samples: list[HostChange] = [
        FirmwareFilePlaced("/var/lib/firmware/i915/x.bin", "a" * 64, "/tree/x", "/var/lib/b", ("/var/lib/firmware",)),
        FirmwarePathSet("/sys/module/firmware_class/parameters/path", "", "/var/lib/firmware"),
        InTreeModuleRemoved("i915", "", "ABC"),
        ModuleLoaded("i915", {"i915": "X"}, "/tree/opt", "6.1.0-57-amd64", ("enable_guc=3",), ("drm", "i915")),
    ]
    assert {type(s) for s in samples} <= set(kinds().values())
    for sample in samples:
        assert kinds()[sample.kind].from_record(json.loads(json.dumps(sample.record()))) == sample
        assert sample.describe()


@dataclass(frozen=True)
class _Marker(HostChange):
    """A kind defined outside the package: a file under the host root, as a new kind would be."""

    kind: ClassVar[str] = "test_marker"

    path: str

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.path}"

    def apply(self, ctx: ChangeContext) -> Self:
        ctx.on_host(self.path).write_text("marked")
        return self

    def in_place(self, ctx: ChangeContext) -> bool:
        return ctx.on_host(self.path).exists()

    def undo(self, ctx: ChangeContext) -> None:
        ctx.on_host(self.path).unlink(missing_ok=True)

    def describe(self) -> str:
        return f"marker {self.path}"


def test_a_new_kind_needs_only_its_own_class(node: Node) -> None:
    """Journal, warm check, status and undo loop over kinds: a new one is made and undone untouched."""
    try:
        engine = node.engine()
        engine.apply(node.target, node.facts())
        engine.make(_Marker("/var/lib/marker"))
        assert (node.host.root / "var/lib/marker").exists()

        again = node.engine()  # a restart reads it back from the journal
        assert again.warm(node.target)
        assert again.status()["changes"][-1] == {"kind": "test_marker", "status": "done", "path": "/var/lib/marker"}
        assert again.undo() == 7
        assert not (node.host.root / "var/lib/marker").exists()
    finally:
        HostChange.registry.pop("test_marker", None)


def test_warm_is_false_when_any_change_is_no_longer_in_place(node: Node) -> None:
    node.engine().apply(node.target, node.facts())
    assert node.engine().warm(node.target)
    (node.host.root / "var/lib/firmware/testgpu/testgpu_huc_1.0.bin").write_bytes(b"changed")
    assert not node.engine().warm(node.target)


def test_two_host_files_with_the_same_bytes_keep_separate_backups(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    tree = make_tree(tmp_path / "tree2")
    node.host.write("var/lib/firmware/testgpu/testgpu_guc_1.0.bin", b"same")
    node.host.write("var/lib/firmware/testgpu/testgpu_huc_1.0.bin", b"same")
    before = snapshot(node.host)
    node.engine().apply(Target(tree, node.target.recipe), node.facts())
    node.engine().undo()
    assert snapshot(node.host) == before
