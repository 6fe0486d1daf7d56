"""Crash at every step (the fault hook, as kill -9 would): the next start finishes, or `unload` cleans up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from lifecycle.fakes import Crash, Node, make_node, snapshot

# Every point of an apply on a node with the in-tree i915 loaded: path, two files, i915 out, testgpu in.
APPLY_KINDS = ("firmware_path", "firmware_file", "firmware_file#2", "module_removed", "module_tree_staged")
APPLY_POINTS = [f"{when}:{kind}" for kind in (*APPLY_KINDS, "module_loaded") for when in ("intent", "after")]
UNDO_POINTS = [f"after:undo#{n}" for n in range(1, 7)]


def _crash_during_apply(node: Node, point: str) -> None:
    with pytest.raises(Crash):
        node.engine(point).apply(node.target, node.facts())
    journal = json.loads((node.host.paths.state_dir / "journal.json").read_text())
    assert journal["phase"] == "applying"
    assert journal["changes"][-1]["status"] == "intent", "the change in flight is journaled before it is made"


@pytest.mark.parametrize("point", APPLY_POINTS)
def test_the_next_run_finishes_an_apply_killed_at(tmp_path: Path, point: str) -> None:
    node = make_node(tmp_path)
    before = snapshot(node.host)
    _crash_during_apply(node, point)

    outcome = node.engine().apply(node.target, node.facts())

    assert outcome.verification.ok
    state = snapshot(node.host)
    assert set(state["modules"]) == {"drm", "testgpu", "testgpu_compat", "testgpu_vsec"}
    assert state["firmware_path"] == b"/var/lib/firmware"
    assert len(state["files"]) == 2
    journal = json.loads((node.host.paths.state_dir / "journal.json").read_text())
    assert journal["phase"] == "applied" and {c["status"] for c in journal["changes"]} == {"done"}
    # ... and what it journaled is still enough to put the node back exactly.
    node.engine().undo()
    assert snapshot(node.host) == before


@pytest.mark.parametrize("point", APPLY_POINTS)
def test_unload_cleans_up_an_apply_killed_at(tmp_path: Path, point: str) -> None:
    node = make_node(tmp_path)
    before = snapshot(node.host)
    _crash_during_apply(node, point)

    node.engine().undo()

    assert snapshot(node.host) == before
    assert not (node.host.paths.state_dir / "journal.json").exists()


@pytest.mark.parametrize("point", UNDO_POINTS)
def test_an_undo_killed_at_resumes_or_reapplies(tmp_path: Path, point: str) -> None:
    node = make_node(tmp_path)
    before = snapshot(node.host)
    node.engine().apply(node.target, node.facts())
    with pytest.raises(Crash):
        node.engine(point).undo()

    node.engine().undo()
    assert snapshot(node.host) == before

    node.engine().apply(node.target, node.facts())
    with pytest.raises(Crash):
        node.engine(point).undo()
    assert node.engine().apply(node.target, node.facts()).verification.ok
    node.engine().undo()
    assert snapshot(node.host) == before


def test_the_fault_hook_kills_the_process_like_kill_9(tmp_path: Path) -> None:
    """The documented hook really SIGKILLs: no finally block, no rollback, the journal says intent."""
    code = (
        "import sys; from pathlib import Path\n"
        "from agent.lifecycle.faults import FaultInjector\n"
        "from agent.lifecycle.journal import Journal\n"
        "from agent.lifecycle.changes.firmware_path import FirmwarePathSet\n"
        "j = Journal(Path(sys.argv[1]), faults=FaultInjector.from_env())\n"
        "j.update(phase='applying')\n"
        "change = FirmwarePathSet(file='/sys/x', previous='', value='/var/lib/firmware')\n"
        "j.intent(change)\n"
        "Path(sys.argv[2]).write_text('changed')\n"
        "j.done(change)\n"
        "print('not reached')\n"
    )
    journal, marker = tmp_path / "journal.json", tmp_path / "marker"
    env = {
        **os.environ,
        "INTEL_GPU_AGENT_FAULT": "after:firmware_path",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    done = subprocess.run(
        [sys.executable, "-c", code, str(journal), str(marker)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == -9, done.stderr
    assert "not reached" not in done.stdout
    assert marker.read_text() == "changed"
    assert json.loads(journal.read_text())["changes"][0]["status"] == "intent"


def test_a_malformed_fault_spec_is_a_usage_error() -> None:
    from agent.errors import UsageError
    from agent.lifecycle.faults import FaultInjector

    with pytest.raises(UsageError, match="INTEL_GPU_AGENT_FAULT"):
        FaultInjector("during:everything#x")


# On a fresh node the driver's in-tree dependency (drm) is loaded first: every point of that apply too.
FRESH_POINTS = [
    f"{when}:{kind}"
    for kind in ("firmware_path", "firmware_file", "module_tree_staged", "dependencies_loaded", "module_loaded")
    for when in ("intent", "after")
]


@pytest.mark.parametrize("point", FRESH_POINTS)
def test_a_fresh_node_killed_at_any_point_is_finished_or_cleaned_up(tmp_path: Path, point: str) -> None:
    node = make_node(tmp_path / "finish", in_tree_i915=False, in_tree_deps=("drm",))
    before = snapshot(node.host)
    _crash_during_apply(node, point)
    assert node.engine().apply(node.target, node.facts()).verification.ok
    node.engine().undo()
    assert snapshot(node.host) == before, "drm, loaded for the driver, is gone again"

    node = make_node(tmp_path / "clean", in_tree_i915=False, in_tree_deps=("drm",))
    before = snapshot(node.host)
    _crash_during_apply(node, point)
    node.engine().undo()
    assert snapshot(node.host) == before
