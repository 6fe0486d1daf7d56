"""The CLI: output for people and programs, environment variables, and every exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakehost import FakeHost, debian_node, ubuntu_2204_flex, ubuntu_2404_max

from agent import errors
from agent.app import App
from agent.cli import main
from agent.recipes.loader import RELEASES_DIR


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_detect_json_on_a_flex_node(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ubuntu_2204_flex(tmp_path)
    code, out, _ = run(capsys, "--host-root", str(tmp_path), "detect", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["kernel"]["release"] == "5.15.0-135-generic"
    assert data["os"]["id"] == "ubuntu"
    assert [g["device_id"] for g in data["gpus"]] == ["56c0", "56c0", "56c0"]
    assert [g["virtual_function"] for g in data["gpus"]] == [False, True, False]
    assert data["i915"]["origin"] == "in-tree"
    assert data["firmware_path"] == ""
    assert set(data["security"]) == {"secure_boot", "lockdown", "sig_enforce"}


def test_detect_table_for_people(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ubuntu_2404_max(tmp_path)
    code, out, _ = run(capsys, "--host-root", str(tmp_path), "detect")
    assert code == 0
    assert "i915 loaded:     backport I915_23.10.90_PSB_231129.99" in out
    assert "Ponte Vecchio XT (2 Tile) [Data Center GPU Max 1550]" in out


def test_host_root_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    debian_node(tmp_path)
    monkeypatch.setenv("INTEL_GPU_AGENT_HOST_ROOT", str(tmp_path))
    code, out, _ = run(capsys, "detect", "--json")
    assert code == 0 and json.loads(out)["os"]["id"] == "debian"


def test_check_supported_node_exits_0_and_names_the_choice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ubuntu_2204_flex(tmp_path)
    code, out, _ = run(capsys, "--host-root", str(tmp_path), "check")
    assert code == 0
    assert "i915-2350.145: SUPPORTED" in out
    assert "Choice: i915-2350.145" in out


def test_check_json_with_one_recipe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    debian_node(tmp_path)
    code, out, _ = run(capsys, "--host-root", str(tmp_path), "check", "--recipe", "i915-2350.145", "--json")
    data = json.loads(out)
    assert code == 0
    assert [v["verdict"] for v in data["verdicts"]] == ["at-risk"]
    assert "6.1.158 is newer than 6.1.131" in data["verdicts"][0]["reasons"][0]


def test_check_recipe_by_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ubuntu_2204_flex(tmp_path)
    code, out, _ = run(
        capsys, "--host-root", str(tmp_path), "check", "--recipe", str(RELEASES_DIR / "i915-2350.63.toml")
    )
    assert code == 0 and "i915-2350.63: AT-RISK" in out


def test_unsupported_node_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host = FakeHost(tmp_path).kernel("5.15.0-135-generic", upstream="5.15.178", ubuntu=True)
    host.os_release("ubuntu", "22.04", "Ubuntu 22.04.5 LTS")
    host.pci_gpu("0000:03:00.0", "4905")
    code, out, err = run(capsys, "--host-root", str(tmp_path), "check")
    assert code == 3
    assert "8086:4905 (DG1) at 0000:03:00.0 is not supported by this driver" in out
    assert err.startswith("error: no driver release supports this node (kernel 5.15.0-135-generic")


def test_sig_enforce_note(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ubuntu_2204_flex(tmp_path).sig_enforce(True)
    _, out, _ = run(capsys, "--host-root", str(tmp_path), "check")
    assert "note: this kernel only loads signed modules" in out


@pytest.mark.parametrize(
    "args",
    [
        ("--host-root", "relative/path", "detect"),
        ("--host-root", "/nonexistent-root", "detect"),
        ("--log-format", "xml", "detect"),
        ("detect", "--no-such-option"),
        ("check", "--recipe", "no-such-recipe"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...]) -> None:
    ubuntu_2204_flex(tmp_path)
    args = tuple(str(tmp_path) if a == "ROOT" else a for a in args)
    full = args if args[0] == "--host-root" else ("--host-root", str(tmp_path), *args)
    code, _, err = run(capsys, *full)
    assert code == 2
    assert err.strip(), "a usage error always says what is wrong"


def test_missing_kernel_release_exits_2_with_the_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    FakeHost(tmp_path)
    code, _, err = run(capsys, "--host-root", str(tmp_path), "detect")
    assert code == 2
    assert "cannot read the kernel release from" in err and "osrelease" in err
    assert "Traceback" not in err


def test_broken_recipe_in_recipes_dir_exits_2_but_lists_the_good_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "good.toml").write_text((RELEASES_DIR / "i915-2350.145.toml").read_text())
    (tmp_path / "bad.toml").write_text("schema = 1\nname = 3\n")
    code, out, err = run(capsys, "--recipes-dir", str(tmp_path), "recipes")
    assert code == 2
    assert "i915-2350.145" in out
    assert "bad.toml: name: expected a string" in err


def test_recipes_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "recipes", "--json")
    assert code == 0
    assert sorted(r["name"] for r in json.loads(out)["recipes"]) == ["i915-1099.12", "i915-2350.145", "i915-2350.63"]


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.TransientError("module i915 is in use"), 4),
        (errors.BuildError("build failed"), 5),
        (errors.UnsupportedHostError("no"), 3),
        (RuntimeError("boom"), 1),
    ],
)
def test_error_classes_map_to_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, error: Exception, code: int
) -> None:
    ubuntu_2204_flex(tmp_path)

    def fail(self: App) -> None:
        raise error

    monkeypatch.setattr(App, "detect", fail)
    got, _, err = run(capsys, "--host-root", str(tmp_path), "detect")
    assert got == code
    assert err.strip().splitlines()[-1].startswith("error: ")
    if code == 1:
        assert "a bug in intel-gpu-agent" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("intel-gpu-agent, version ")


def test_the_entry_point_flushes_its_output_and_keeps_the_exit_code(tmp_path: Path) -> None:
    """`python -m agent` ends with os._exit (no interpreter teardown): output must still be complete."""
    import subprocess
    import sys

    from tooling import REPO

    host = FakeHost(tmp_path).kernel("5.15.0-135-generic", upstream="5.15.178", ubuntu=True)
    host.os_release("ubuntu", "22.04", "Ubuntu 22.04.5 LTS")
    host.pci_gpu("0000:03:00.0", "4905")
    argv = [sys.executable, "-m", "agent", "--host-root", str(tmp_path), "--log-format", "json"]
    done = subprocess.run([*argv, "check", "--json"], cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 3
    assert len(json.loads(done.stdout)["verdicts"]) == 3
    assert done.stderr.startswith("error: no driver release supports this node")
    # A reader that went away: no traceback, exit 1 (click's answer to a closed pipe).
    with subprocess.Popen([*argv, "recipes"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as p:
        assert p.stdout is not None and p.stderr is not None
        p.stdout.close()
        assert p.wait(timeout=60) == 1
        assert p.stderr.read() == b""


def test_the_entry_point_exits_normally_under_a_profiler(tmp_path: Path) -> None:
    """os._exit would lose what cProfile (or coverage) writes at exit."""
    import subprocess
    import sys

    from tooling import REPO

    out = tmp_path / "agent.prof"
    argv = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "agent", "--version"]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 0
