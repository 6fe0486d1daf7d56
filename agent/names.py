"""Name rules for what a recipe or a driver tree names that becomes part of a path on disk.

Recipes and driver trees come from outside (a recipes folder, a registry image): a tag, a firmware
name or a module path is joined to a folder the agent writes to as root. Each must stay one name,
or a relative path of plain names, so that the join never leaves that folder. The rules only say
what is wrong; the caller raises its own typed error naming the file and the key.
"""

from __future__ import annotations

import re

# Letters, digits and the punctuation release tags, firmware names and kernel releases use
# ("6.12.117+deb12-amd64", "dg2_huc_7.10.16_gsc.bin"); never a leading '.' (hidden, '.', '..') or '-'.
_COMPONENT = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9._+,~-]*")
MODULE_NAME = re.compile(r"[A-Za-z0-9_-]+")
MAX_COMPONENT = 255
MAX_PATH = 1024


def name_problem(value: str) -> str | None:
    """Why ``value`` cannot be one folder or file name, or None when it can."""
    if not value:
        return "must not be empty"
    if len(value) > MAX_COMPONENT:
        return f"longer than {MAX_COMPONENT} characters"
    if "/" in value or "\\" in value:
        return f"must be one name, without '/': {value!r}"
    if not _COMPONENT.fullmatch(value):
        return f"only letters, digits and '._+,~-' are allowed, not starting with '.' or '-': {value!r}"
    return None


def relative_path_problem(value: str) -> str | None:
    """Why ``value`` cannot be a relative path of plain names inside a folder, or None when it can."""
    if not value:
        return "must not be empty"
    if len(value) > MAX_PATH:
        return f"longer than {MAX_PATH} characters"
    if value.startswith("/"):
        return f"must be a relative path, not absolute: {value!r}"
    for part in value.split("/"):
        if part in ("", ".", ".."):
            return f"must be a plain relative path (no '..', '.' or empty parts): {value!r}"
        if name_problem(part) is not None:
            return f"each part may only hold letters, digits and '._+,~-', not starting with '.' or '-': {value!r}"
    return None


def firmware_request_problem(value: str) -> str | None:
    """Why ``value`` cannot be a firmware name a module requests (modinfo's firmware field), or None.

    Looser than a file name: some modules list patterns (``brcm/brcmfmac*-pcie.*.bin``). What is
    placed on a host is checked by ``relative_path_problem``; a request only must not climb out.
    """
    if not value or value.startswith("/") or any(part in ("", ".", "..") for part in value.split("/")):
        return f"must be a relative name inside the firmware folder (no '..', '.' or empty parts): {value!r}"
    if any(ord(c) < 32 or c == "\x7f" for c in value) or len(value) > MAX_PATH:
        return f"holds control characters or is too long: {value!r:.80}"
    return None


def module_name_problem(value: str) -> str | None:
    """Why ``value`` cannot be a kernel module name (it becomes /sys/module/<name> and a modprobe argument)."""
    if not MODULE_NAME.fullmatch(value) or len(value) > 64:
        return f"not a module name (letters, digits, '_' and '-'): {value!r}"
    return None
