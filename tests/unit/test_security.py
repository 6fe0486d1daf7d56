"""Secure Boot, lockdown, module.sig_enforce and the firmware search path."""

from __future__ import annotations

from pathlib import Path

from fakehost import FakeHost

from agent.discovery.security import detect_security, read_firmware_path


def test_all_off_without_efi(tmp_path: Path) -> None:
    policy = detect_security(FakeHost(tmp_path).paths)
    assert (policy.secure_boot, policy.lockdown, policy.sig_enforce) == ("unknown", "unknown", False)
    assert not policy.requires_signed_modules


def test_secure_boot_lockdown_and_sig_enforce(tmp_path: Path) -> None:
    host = FakeHost(tmp_path).secure_boot(True).lockdown("integrity").sig_enforce(False)
    policy = detect_security(host.paths)
    assert (policy.secure_boot, policy.lockdown) == ("enabled", "integrity")
    assert policy.requires_signed_modules


def test_sig_enforce_from_parameter_and_cmdline(tmp_path: Path) -> None:
    host = FakeHost(tmp_path).secure_boot(False).sig_enforce(True)
    assert detect_security(host.paths).sig_enforce
    other = FakeHost(tmp_path / "b")
    other.write("proc/cmdline", "BOOT_IMAGE=/vmlinuz ro module.sig_enforce=1\n")
    assert detect_security(other.paths).sig_enforce


def test_firmware_path_strips_the_sysfs_newline(tmp_path: Path) -> None:
    host = FakeHost(tmp_path).firmware_path("/var/lib/firmware")
    assert read_firmware_path(host.paths) == "/var/lib/firmware"
    assert read_firmware_path(FakeHost(tmp_path / "b").paths) == ""
    # The agent resets the path with one NUL byte (the kernel ignores an empty write).
    assert read_firmware_path(FakeHost(tmp_path / "c").firmware_path("\x00").paths) == ""
    host.paths.firmware_class_path.unlink()
    assert read_firmware_path(host.paths) is None
