"""Module-loading policy of the host: Secure Boot, kernel lockdown, module signature enforcement."""

from __future__ import annotations

from dataclasses import dataclass

from agent.host.files import read_optional
from agent.host.paths import HostPaths

SECURE_BOOT_VAR = "SecureBoot-8be4df61-93ca-11d2-aa0d-e98c2b8c8b8b"


@dataclass(frozen=True)
class SecurityPolicy:
    """What decides whether an unsigned module may load."""

    secure_boot: str  # "enabled" | "disabled" | "unknown" (no EFI variables visible)
    lockdown: str  # "none" | "integrity" | "confidentiality" | "unknown"
    sig_enforce: bool

    @property
    def requires_signed_modules(self) -> bool:
        return self.sig_enforce or self.lockdown in ("integrity", "confidentiality")


def detect_security(host: HostPaths) -> SecurityPolicy:
    """Read the policy from efivars, securityfs and the module parameters (and the command line)."""
    return SecurityPolicy(
        secure_boot=_secure_boot(host),
        lockdown=_lockdown(read_optional(host.lockdown)),
        sig_enforce=_sig_enforce(read_optional(host.sig_enforce), read_optional(host.proc_cmdline) or ""),
    )


def _secure_boot(host: HostPaths) -> str:
    try:
        data = (host.efivars / SECURE_BOOT_VAR).read_bytes()
    except OSError:
        return "unknown" if not host.efivars.is_dir() else "disabled"
    # 4 bytes of attributes, then the value.
    return "enabled" if len(data) >= 5 and data[4] == 1 else "disabled"


def _lockdown(text: str | None) -> str:
    """securityfs shows "none [integrity] confidentiality": the bracketed word is in force."""
    if text is None:
        return "unknown"
    for word in text.split():
        if word.startswith("[") and word.endswith("]"):
            return word[1:-1]
    return "unknown"


def _sig_enforce(parameter: str | None, cmdline: str) -> bool:
    if parameter is not None:
        return parameter.strip() in ("Y", "1")
    return any(arg in ("module.sig_enforce=1", "module.sig_enforce=Y") for arg in cmdline.split())


def read_firmware_path(host: HostPaths) -> str | None:
    """The kernel's extra firmware search path ("" when unset); None when the file is not there."""
    text = read_optional(host.firmware_class_path)
    # sysfs adds a newline on read (the value itself must never carry one); a reset written as a
    # NUL byte (the kernel ignores an empty write) reads back as nothing.
    return None if text is None else text.rstrip("\n").rstrip("\x00")
