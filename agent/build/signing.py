"""Module signing for Secure Boot hosts: the kernel's own sign-file with the user's key and certificate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent.errors import BuildError, UsageError
from agent.host.files import sha256_file

if TYPE_CHECKING:
    from agent.build.headers import KernelHeaders
    from agent.host.runner import Runner

SIGNATURE_MAGIC = b"~Module signature appended~\n"


@dataclass(frozen=True)
class SigningKey:
    """A private key and its X.509 certificate (PEM or DER), as sign-file takes them."""

    key: Path
    cert: Path

    @classmethod
    def from_options(cls, key: str | None, cert: str | None) -> SigningKey | None:
        """Both or neither; each must be a readable file."""
        if not key and not cert:
            return None
        if not key or not cert:
            raise UsageError("--sign-key and --sign-cert go together: give both to sign the modules, or neither")
        pair = cls(Path(key), Path(cert))
        for option, path in (("--sign-key", pair.key), ("--sign-cert", pair.cert)):
            if not path.is_file():
                raise UsageError(f"{option} {path} does not exist")
        return pair

    def cert_sha256(self) -> str:
        return sha256_file(self.cert)


def sign_modules(runner: Runner, headers: KernelHeaders, key: SigningKey, modules: Sequence[Path]) -> None:
    """Append a signature to each module with ``<headers>/scripts/sign-file`` (after stripping)."""
    sign_file = headers.sign_file
    if not sign_file.is_file():
        raise UsageError(
            f"cannot sign modules: {sign_file} does not exist",
            hint="the kernel headers package provides scripts/sign-file; reinstall it or pass complete --headers",
        )
    for module in modules:
        runner.run([str(sign_file), headers.sign_hash, str(key.key), str(key.cert), str(module)], timeout=60.0)
        if not module.read_bytes().endswith(SIGNATURE_MAGIC):
            raise BuildError(f"sign-file left {module} unsigned")
