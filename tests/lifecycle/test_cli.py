"""The lifecycle commands through the CLI on a fake host: options and variables, exit codes, no host change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lifecycle.fakes import RECIPE, debian_node, make_tree, snapshot

from agent.cli import main


def test_load_on_an_unsupported_node_exits_3_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host = debian_node(tmp_path / "host", gpu=False)
    tree = make_tree(tmp_path / "tree")
    before = snapshot(host)
    code = main(["--host-root", str(host.root), "load", "--driver-tree", str(tree.root), "--recipe", str(RECIPE)])
    assert code == 3
    assert "no Intel data-center GPU" in capsys.readouterr().err
    assert snapshot(host) == before


def test_a_tree_missing_firmware_exits_2_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host = debian_node(tmp_path / "host")
    tree = make_tree(tmp_path / "tree", drop_firmware="testgpu/testgpu_guc_1.0.bin")
    code = main(["--host-root", str(host.root), "load", "--driver-tree", str(tree.root), "--recipe", str(RECIPE)])
    assert code == 2
    assert "lacks firmware testgpu/testgpu_guc_1.0.bin" in capsys.readouterr().err


def test_options_come_from_the_charts_environment_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    host = debian_node(tmp_path / "host")
    monkeypatch.setenv("INTEL_GPU_AGENT_HOST_ROOT", str(host.root))
    monkeypatch.setenv("INTEL_GPU_AGENT_RECIPE", str(RECIPE))
    monkeypatch.setenv("INTEL_GPU_AGENT_UNLOAD_DEADLINE", "0")
    assert main(["run"]) == 2
    assert "INTEL_GPU_AGENT_UNLOAD_DEADLINE" in capsys.readouterr().err
    monkeypatch.setenv("INTEL_GPU_AGENT_UNLOAD_DEADLINE", "30")
    monkeypatch.setenv("INTEL_GPU_AGENT_LISTEN", "nonsense")
    assert main(["run"]) == 2
    assert "INTEL_GPU_AGENT_LISTEN" in capsys.readouterr().err


def test_status_and_unload_on_a_clean_node(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host = debian_node(tmp_path / "host")
    assert main(["--host-root", str(host.root), "status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["phase"] == "none" and data["changes"] == [] and data["firmware_path"] == ""
    assert main(["--host-root", str(host.root), "unload"]) == 0
    assert "nothing to undo" in capsys.readouterr().out


def test_commands_leave_sigterm_as_they_found_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Run in-process (as here), a command must not keep its SIGTERM handler: a hung pytest could not be stopped."""
    import signal

    host = debian_node(tmp_path / "host")
    before = signal.getsignal(signal.SIGTERM)
    assert main(["--host-root", str(host.root), "unload"]) == 0
    assert signal.getsignal(signal.SIGTERM) is before


def test_state_dir_option_moves_the_journal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host = debian_node(tmp_path / "host")
    assert main(["--host-root", str(host.root), "status", "--json", "--state-dir", "/srv/agent"]) == 0
    assert json.loads(capsys.readouterr().out)["journal"] == str(host.root / "srv/agent/journal.json")


def test_the_exit_code_a_command_gives_ctx_exit_is_the_process_exit_code() -> None:
    import click

    from agent.cli import cli

    @cli.command("exit-code-probe", hidden=True)
    @click.pass_context
    def probe(ctx: click.Context, /) -> None:
        ctx.exit(4)

    try:
        assert main(["exit-code-probe"]) == 4
    finally:
        cli.commands.pop("exit-code-probe")
