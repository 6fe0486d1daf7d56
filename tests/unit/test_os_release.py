"""os-release parsing, including malformed files."""

from __future__ import annotations

from pathlib import Path

from fakehost import FakeHost

from agent.discovery.os_release import detect_os, parse_os_release


def test_ubuntu() -> None:
    info = parse_os_release(
        'NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\nVERSION_ID="22.04"\nPRETTY_NAME="Ubuntu 22.04.5 LTS"\n'
    )
    assert (info.id, info.version_id, info.pretty_name, info.id_like) == (
        "ubuntu",
        "22.04",
        "Ubuntu 22.04.5 LTS",
        ("debian",),
    )
    assert info.problems == ()


def test_malformed_lines_are_reported_not_fatal() -> None:
    info = parse_os_release('ID=debian\nthis is not a pair\nVERSION_ID="12\n', source="/host/etc/os-release")
    assert info.id == "debian"
    assert any("line 2 is not KEY=value" in p for p in info.problems)
    assert any("line 3 has unbalanced quotes" in p for p in info.problems)


def test_missing_id() -> None:
    info = parse_os_release("VERSION_ID=1\n")
    assert info.id == "unknown"
    assert any("no ID line" in p for p in info.problems)


def test_absent_file(tmp_path: Path) -> None:
    info = detect_os(FakeHost(tmp_path).paths)
    assert info.id == "unknown"
    assert "cannot read" in info.problems[0]


def test_usr_lib_fallback(tmp_path: Path) -> None:
    host = FakeHost(tmp_path)
    host.write("usr/lib/os-release", "ID=sles\nVERSION_ID=15.6\n")
    assert detect_os(host.paths).id == "sles"
