"""Image tooling for the image tests and benchmarks: local base image, buildah builds, podman runs, a registry.

No Docker engine and no registry pulls here: the base image is a Debian 12 minbase made by
debootstrap (cached as a tarball in .cache/images and imported into container storage once),
images are built by buildah (chroot isolation, overlay storage) and run by podman on runc.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vm.kernel import find_kernel

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "images"
# Bump when the recipe of the base image below changes: the cached tarball and image are then remade.
BASE_REVISION = "1"
BASE_IMAGE = f"localhost/igd-test-base:bookworm-r{BASE_REVISION}"
MIRROR = "http://deb.debian.org"
STORAGE = ["--storage-driver", "overlay"]
# This machine's egress goes through a TLS-intercepting proxy whose CA is only in the host's trust
# store: builds get that store at the Dockerfiles' CA_BUNDLE path (used when present).
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CA_BUNDLE_TARGET = "/run/secrets/ca-bundle/ca.crt"
PODMAN_RUN = ["--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
# Container storage is the machine's, shared by every checkout on it: tags of test images carry the
# checkout's own suffix, so two checkouts testing at once never replace each other's images.
CHECKOUT = hashlib.sha256(str(REPO).encode()).hexdigest()[:8]


def checkout_tag(name: str, variant: str = "test") -> str:
    """``localhost/<name>:<variant>-<checkout>``: a tag of this checkout's own."""
    return f"localhost/{name}:{variant}-{CHECKOUT}"


# What debian:bookworm images carry: every suite (kernel headers of a point release live in
# bookworm-security), and no documentation.
SOURCES = f"""Types: deb
URIs: {MIRROR}/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: {MIRROR}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""
DPKG_EXCLUDES = """path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
"""
SLIM = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "var/cache/apt/archives")


def run(
    argv: Sequence[str], *, check: bool = True, timeout: float = 1800, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    """Run a tool, capturing its output; on failure raise with the tail of its output."""
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False, **kwargs)  # type: ignore[call-overload]
    if check and done.returncode != 0:
        tail = (done.stdout[-3000:] + "\n" + done.stderr[-3000:]).strip()
        raise AssertionError(f"{' '.join(argv)} exited {done.returncode}:\n{tail}")
    return done  # type: ignore[no-any-return]


def image_exists(podman: str, ref: str) -> bool:
    return run([podman, *STORAGE, "image", "exists", ref], check=False).returncode == 0


def base_tarball(debootstrap: str) -> Path:
    """A slim Debian 12 root filesystem as a tarball, made once by debootstrap and cached."""
    tarball = CACHE / f"base-bookworm-r{BASE_REVISION}.tar"
    if tarball.exists():
        return tarball
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as work:
        root = Path(work) / "root"
        run([debootstrap, "--variant=minbase", "bookworm", str(root), f"{MIRROR}/debian"], timeout=900)
        (root / "etc/apt/sources.list").unlink(missing_ok=True)
        (root / "etc/apt/sources.list.d/debian.sources").write_text(SOURCES)
        (root / "etc/dpkg/dpkg.cfg.d/docker-slim").write_text(DPKG_EXCLUDES)
        for folder in SLIM:
            for child in (root / folder).glob("*"):
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                elif child.name != "partial":
                    child.unlink()
        for lists in (root / "var/lib/apt/lists").glob("*"):
            if lists.is_file():
                lists.unlink()
        partial = tarball.with_suffix(".tmp")
        run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."])
        partial.rename(tarball)
    return tarball


def ensure_base_image(podman: str, debootstrap: str) -> str:
    """The local base image (a stand-in for debian:bookworm-slim) in container storage."""
    if not image_exists(podman, BASE_IMAGE):
        tarball = base_tarball(debootstrap)
        run(
            [
                podman, *STORAGE, "import",
                "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--change", 'CMD ["bash"]',
                str(tarball), BASE_IMAGE,
            ]
        )  # fmt: skip
    return BASE_IMAGE


@dataclass(frozen=True)
class Built:
    """One buildah build: its tag, exit code, output and wall time."""

    tag: str
    returncode: int
    output: str
    seconds: float


def build(
    buildah: str,
    dockerfile: Path,
    context: Path,
    tag: str,
    build_args: Mapping[str, str],
    *,
    layers: bool = True,
    no_cache: bool = False,
    check: bool = True,
    timeout: float = 1800,
    target: str | None = None,
    ca_bundle: Path | None = HOST_CA_BUNDLE,
) -> Built:
    """``buildah build`` with chroot isolation on overlay storage; never pulls (the base is local).

    ``ca_bundle`` is mounted at the Dockerfiles' CA_BUNDLE path (default: this machine's trust store,
    which holds its egress proxy's CA); None mounts nothing.
    """
    # --force-rm: a failed step's working container is removed too (the failing-build tests leave none).
    argv = [buildah, *STORAGE, "build", "--isolation", "chroot", f"--layers={str(layers).lower()}", "--pull=never"]
    argv.append("--force-rm")
    if no_cache:
        argv.append("--no-cache")
    if target:
        argv += ["--target", target]
    if ca_bundle is not None and ca_bundle.is_file():
        argv += ["--volume", f"{ca_bundle}:{CA_BUNDLE_TARGET}:ro"]
    for name, value in build_args.items():
        argv += ["--build-arg", f"{name}={value}"]
    argv += ["-f", str(dockerfile), "-t", tag, str(context)]
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    seconds = time.monotonic() - started
    built = Built(tag=tag, returncode=done.returncode, output=done.stdout + done.stderr, seconds=seconds)
    if check and done.returncode != 0:
        raise AssertionError(f"buildah build of {dockerfile.name} failed ({done.returncode}):\n{built.output[-6000:]}")
    return built


def inspect(buildah: str, ref: str) -> dict[str, object]:
    data = json.loads(run([buildah, *STORAGE, "inspect", "--type", "image", ref]).stdout)
    assert isinstance(data, dict)
    return data


def image_size(podman: str, ref: str) -> int:
    """Uncompressed size in bytes, as `podman images` shows it."""
    data = json.loads(run([podman, *STORAGE, "image", "inspect", ref]).stdout)
    return int(data[0]["Size"])


def podman_run(
    podman: str,
    ref: str,
    *args: str,
    entrypoint: str | None = None,
    env: Mapping[str, str] | None = None,
    volumes: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    argv = [podman, *STORAGE, "run", "--rm", *PODMAN_RUN, "--network", "none"]
    for host_path, spec in (volumes or {}).items():
        argv += ["--volume", f"{host_path}:{spec}"]
    for name, value in (env or {}).items():
        argv += ["--env", f"{name}={value}"]
    if entrypoint is not None:
        argv += ["--entrypoint", entrypoint]
    return run([*argv, ref, *args], check=False, timeout=300)


@contextmanager
def mounted(buildah: str, ref: str) -> Iterator[Path]:
    """The image's root filesystem, read through a working container that is removed afterwards."""
    container = run([buildah, *STORAGE, "from", "--pull-never", ref]).stdout.strip()
    try:
        yield Path(run([buildah, *STORAGE, "mount", container]).stdout.strip())
    finally:
        run([buildah, *STORAGE, "rm", container], check=False)


def tarball_of(folder: Path, top: str, out: Path) -> str:
    """``folder`` as a reproducible .tar.gz under ``top/`` (a mirror of a release's tarball); its sha256."""
    with gzip.GzipFile(out, "wb", mtime=0) as packed, tarfile.open(fileobj=packed, mode="w") as archive:
        for path in sorted(folder.rglob("*")):
            info = archive.gettarinfo(str(path), arcname=f"{top}/{path.relative_to(folder).as_posix()}")
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            with path.open("rb") if path.is_file() else contextlib.nullcontext() as data:
                archive.addfile(info, data)
    return hashlib.sha256(out.read_bytes()).hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def registry(docker_registry: str, folder: Path) -> Iterator[str]:
    """Debian's docker-registry on 127.0.0.1 (plain HTTP), stopped by its PID; yields host:port."""
    port = free_port()
    config = folder / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {folder / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = (folder / "registry.log").open("w")
    process = subprocess.Popen([docker_registry, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_listening(port, process, "docker-registry")
        yield f"127.0.0.1:{port}"
    finally:
        stop(process)
        log.close()


def stable_port(name: str) -> int:
    """A port fixed for this checkout and ``name`` (so build args naming it keep layers cached), else any free one."""
    port = 20000 + int(hashlib.sha256(f"{CHECKOUT}:{name}".encode()).hexdigest(), 16) % 20000
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return free_port()
    return port


@contextmanager
def http_server(folder: Path, port: int | None = None) -> Iterator[str]:
    """Python's http.server for ``folder`` on 127.0.0.1, stopped by its PID; yields host:port."""
    port = port or free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(folder), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port, process, "http.server")
        yield f"127.0.0.1:{port}"
    finally:
        stop(process)


HTTPS_SERVER = """
import http.server, ssl, sys
folder, port, cert, key = sys.argv[1:5]
handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=folder)
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""


@dataclass(frozen=True)
class LocalCa:
    """A throw-away certificate authority and a server certificate it signed for 127.0.0.1."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


def make_local_ca(openssl: str, folder: Path) -> LocalCa:
    """A CA and a 127.0.0.1 server certificate made by the real openssl (trusted nowhere but where given)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = folder / "ca.key", folder / "ca.crt"
    key, csr, cert = folder / "server.key", folder / "server.csr", folder / "server.crt"
    run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=igd test CA",
         "-keyout", str(ca_key), "-out", str(ca_cert)])  # fmt: skip
    run([openssl, "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(key),
         "-out", str(csr)])  # fmt: skip
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    run([openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key), "-CAcreateserial",
         "-days", "2", "-extfile", str(folder / "san.cnf"), "-out", str(cert)])  # fmt: skip
    return LocalCa(ca_cert=ca_cert, server_cert=cert, server_key=key)


@contextmanager
def https_server(folder: Path, ca: LocalCa) -> Iterator[str]:
    """An HTTPS file server for ``folder`` on 127.0.0.1 with ``ca``'s server certificate; yields host:port."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", HTTPS_SERVER, str(folder), str(port), str(ca.server_cert), str(ca.server_key)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port, process, "https server")
        yield f"127.0.0.1:{port}"
    finally:
        stop(process)


def wait_listening(port: int, process: subprocess.Popen[bytes], what: str, timeout: float = 30) -> None:
    """Poll until ``port`` on 127.0.0.1 accepts connections; fail if the server exits first."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} did not listen on {port} within {timeout} s") from None
            time.sleep(0.05)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a server this module started, by its PID."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def installed_kernel(series: str | None = None) -> str:
    """The installed kernel of ``series`` (default: the VM harness's default, the newest 6.1), never the running one.

    Chosen like the VM tests choose theirs (tests/vm/kernel.py), so an image built for it loads there.
    """
    kernel = find_kernel(series=series)
    assert (kernel.headers / "Makefile").is_file(), f"no headers for {kernel.release}: run scripts/install-deps"
    return kernel.release
