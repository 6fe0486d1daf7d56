"""The installed Debian kernel the VM boots: finding it and turning its bzImage into a bootable ELF."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import os
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Environment variable naming the release of the DEFAULT kernel (the default series' pick otherwise).
KERNEL_ENV = "VM_KERNEL"
# The series every test boots unless it asks for another: Debian 12's own kernel (linux-image-amd64).
DEFAULT_SERIES = "6.1"
# The series the harness knows by name: Debian 12's kernel and its backports kernel (linux-image-6.12-amd64).
SERIES = ("6.1", "6.12")


class KernelError(RuntimeError):
    """The kernel the VM needs is missing or cannot be used."""


@dataclass(frozen=True)
class Kernel:
    """One installed kernel: its release, its compressed image and its modules (and headers)."""

    release: str
    vmlinuz: Path
    modules: Path

    def upstream_version(self) -> str:
        """The upstream version the image was built from, e.g. "6.1.192" for Debian's 6.1.0-57-amd64.

        Read from the version string in the bzImage header ("... Debian 6.1.192-3 ..."); the release
        itself when the string names no other version.
        """
        image = self.vmlinuz.read_bytes()[:0x10000]
        (pointer,) = struct.unpack_from("<H", image, 0x20E)
        text = image[0x200 + pointer :].split(b"\0", 1)[0].decode(errors="replace")
        # The last match: a compiler version ("gcc-12 (Debian 12.2.0-14)") may come before the kernel's.
        found = re.findall(r"(?:Debian|Ubuntu) (\d+\.\d+\.\d+)", text)
        return found[-1] if found else self.release.split("-")[0]

    @property
    def headers(self) -> Path:
        """The kbuild folder out-of-tree modules build against (`make -C <headers> M=...`)."""
        return self.modules / "build"

    @property
    def series(self) -> str:
        """The upstream series the release belongs to: "6.1" for 6.1.0-57-amd64, "6.12" for 6.12.117+deb12-amd64."""
        return kernel_series(self.release)

    def builtin_modules(self) -> frozenset[str]:
        """The modules built into the image (modules.builtin), by the kernel's name ('-' as '_').

        Which modules are built in differs between kernels (6.12 builds virtio_pci in, 6.1 does not):
        these need no file and no insmod.
        """
        listing = self.modules / "modules.builtin"
        if not listing.is_file():
            return frozenset()
        return frozenset(module_name(line) for line in listing.read_text().split())


def _version_key(release: str) -> list[tuple[int, str]]:
    return [(int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"(\d+)", release) if part]


def module_name(path: str) -> str:
    """The kernel's name for a module file: basename without .ko[.xz|.gz|.zst], '-' as '_'."""
    return path.rsplit("/", 1)[-1].split(".ko", 1)[0].replace("-", "_")


def kernel_series(release: str) -> str:
    """The "MAJOR.MINOR" series of a kernel release, e.g. "6.12" for "6.12.117+deb12-amd64"."""
    found = re.match(r"(\d+)\.(\d+)(?!\d)", release)
    if found is None:
        raise KernelError(f"kernel release {release!r} does not start with MAJOR.MINOR")
    return f"{found[1]}.{found[2]}"


def installed_kernels(root: Path = Path("/")) -> list[str]:
    """Releases with both an image in /boot and a modules folder, oldest first (by version, not by text)."""
    modules_root = root / "lib/modules"
    boot = root / "boot"
    if not modules_root.is_dir():
        return []
    return sorted((d.name for d in modules_root.iterdir() if (boot / f"vmlinuz-{d.name}").is_file()), key=_version_key)


def find_kernel(release: str | None = None, *, series: str | None = None, root: Path = Path("/")) -> Kernel:
    """One installed kernel, chosen by exact release or by series, never "the newest installed".

    - ``release``: exactly that release;
    - ``series`` ("6.1", "6.12"): the newest installed release of that series (Debian's point
      releases move, so no test names one);
    - neither: $VM_KERNEL if set, else the newest of ``DEFAULT_SERIES`` (what every test boots unless
      it asks for another kernel).

    Never the running kernel's release: the machine running the tests is not the kernel under test.
    """
    if release is not None and series is not None:
        raise ValueError("name a release or a series, not both")
    candidates = installed_kernels(root)
    modules_root, boot = root / "lib/modules", root / "boot"
    installed = ", ".join(candidates) or "none"
    if release is None and series is None:
        release = os.environ.get(KERNEL_ENV) or None
        series = None if release else DEFAULT_SERIES
    if release is not None:
        if release not in candidates:
            raise KernelError(
                f"kernel {release} is not installed with an image in {boot} and modules in {modules_root}; "
                f"installed: {installed} (apt-get install linux-image-{release} linux-headers-{release})"
            )
        chosen = release
    else:
        assert series is not None
        in_series = [r for r in candidates if re.match(rf"{re.escape(series)}(?!\d)", r)]
        if not in_series:
            raise KernelError(
                f"no {series} kernel with both {boot}/vmlinuz-* and {modules_root}/*; installed: {installed} "
                f"(apt-get install {series_packages(series)})"
            )
        chosen = in_series[-1]
    return Kernel(release=chosen, vmlinuz=boot / f"vmlinuz-{chosen}", modules=modules_root / chosen)


def series_packages(series: str) -> str:
    """The Debian 12 packages that install the newest kernel and headers of a series."""
    if series == DEFAULT_SERIES:
        return "linux-image-amd64 linux-headers-amd64"
    return f"linux-image-{series}-amd64 linux-headers-{series}-amd64"


def file_sha256(path: Path) -> str:
    """The sha256 of a file's content, hex."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _decompress(payload: bytes) -> bytes:
    """Decompress a bzImage payload by its magic bytes."""
    if payload.startswith(b"\x1f\x8b"):
        return gzip.decompress(payload)
    if payload.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
    if payload.startswith(b"\x5d\x00\x00"):
        return lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(payload)
    if payload.startswith(b"BZh"):
        return bz2.BZ2Decompressor().decompress(payload)
    if payload.startswith(b"\x28\xb5\x2f\xfd"):
        zstd = shutil.which("zstd")
        if zstd is None:
            raise KernelError("the kernel image is zstd-compressed: apt-get install zstd")
        done = subprocess.run([zstd, "-d", "-c"], input=payload, capture_output=True, check=False)
        # The payload carries a 4-byte size trailer after the frame: zstd reports it but decodes the frame.
        if not done.stdout:
            raise KernelError(f"zstd could not decompress the kernel image: {done.stderr.decode(errors='replace')}")
        return done.stdout
    raise KernelError(f"unknown kernel payload compression (magic {payload[:6].hex()})")


def extract_vmlinux(vmlinuz: Path) -> bytes:
    """The uncompressed ELF kernel inside a bzImage.

    qemu boots an ELF vmlinux directly through PVH, which skips the self-decompression that costs
    seconds under emulation. The bzImage setup header says where the compressed payload is.
    """
    image = vmlinuz.read_bytes()
    if image[0x202:0x206] != b"HdrS":
        raise KernelError(f"{vmlinuz} is not a bzImage (no HdrS setup header)")
    setup_sects = image[0x1F1] or 4
    payload_offset, payload_length = struct.unpack_from("<II", image, 0x248)
    start = (setup_sects + 1) * 512 + payload_offset
    elf = _decompress(image[start : start + payload_length])
    if not elf.startswith(b"\x7fELF"):
        raise KernelError(f"the payload of {vmlinuz} did not decompress to an ELF kernel")
    return elf


def cached_vmlinux(kernel: Kernel, cache: Path) -> Path:
    """The ELF vmlinux of ``kernel`` in ``cache``, extracted once per image content."""
    key = file_sha256(kernel.vmlinuz)[:16]
    target = cache / f"vmlinux-{kernel.release}-{key}"
    if not target.exists():
        cache.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{os.getpid()}")
        temporary.write_bytes(extract_vmlinux(kernel.vmlinuz))
        os.replace(temporary, target)
    return target
