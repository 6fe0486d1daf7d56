"""Dockerfile.builder and Dockerfile.loader really built with buildah, run with podman, pushed and pulled.

The builder image is built for the test driver (tests/recipes/testgpu.toml) and Debian's installed
kernel headers, on a local Debian 12 base made by debootstrap (no registry pulls here). Its tree must
pass the same checks as a direct `intel-gpu-agent build`. Layers are cached in container storage, so
a second run rebuilds nothing that did not change.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tooling import locked_packages, need_tool

from agent import __version__
from agent.tree import load_tree

from . import imagelib
from .imagelib import REPO

pytestmark = pytest.mark.slow

LOADER_TAG = imagelib.checkout_tag("intel-gpu-driver-agent")
DRIVER_TAG = imagelib.checkout_tag("intel-gpu-driver")
TOOLCHAIN_TAG = imagelib.checkout_tag("intel-gpu-driver-agent", "test-toolchain")
RECIPE = "tests/recipes/testgpu.toml"
MODULES = ("testgpu", "testgpu_compat", "testgpu_vsec")
# The build args each Dockerfile documents; every stage that uses one must re-declare it.
BUILD_ARGS = (
    "KERNEL_FULL_VERSION", "KERNEL_VERSION", "MOD_NAME", "MOD_NAMESPACE", "RECIPE", "BASE_IMAGE",
    "KERNEL_MODULES_PACKAGES", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "AGENT_SOURCE", "AGENT_SOURCE_SHA256",
    "CA_BUNDLE", "VERSION", "SOURCE_URL", "DRIVER_SOURCE", "DRIVER_SOURCE_SHA256", "DRIVER_FIRMWARE",
    "DRIVER_FIRMWARE_SHA256",
)  # fmt: skip


class Tools:
    """The image tools; a missing one fails the test (scripts/install-deps installs them)."""

    def __init__(self) -> None:
        self.buildah = need_tool("buildah")
        self.podman = need_tool("podman")
        need_tool("runc")
        self.skopeo = need_tool("skopeo")
        self.registry = need_tool("docker-registry")
        self.debootstrap = need_tool("debootstrap")
        self.hadolint = need_tool("hadolint")
        self.modinfo = need_tool("modinfo")


@pytest.fixture(scope="module")
def tools() -> Tools:
    return Tools()


@pytest.fixture(scope="module")
def kernel() -> str:
    return imagelib.installed_kernel()


@pytest.fixture(scope="module")
def base(tools: Tools) -> str:
    return imagelib.ensure_base_image(tools.podman, tools.debootstrap)


@pytest.fixture(scope="module")
def loader(tools: Tools, base: str) -> imagelib.Built:
    return imagelib.build(tools.buildah, REPO / "Dockerfile.loader", REPO, LOADER_TAG, {"BASE_IMAGE": base})


@pytest.fixture(scope="module")
def driver(tools: Tools, base: str, kernel: str) -> imagelib.Built:
    args = {"BASE_IMAGE": base, "KERNEL_FULL_VERSION": kernel, "RECIPE": RECIPE}
    return imagelib.build(tools.buildah, REPO / "Dockerfile.builder", REPO, DRIVER_TAG, args)


@pytest.fixture(scope="module")
def driver_root(tools: Tools, driver: imagelib.Built) -> Iterator[Path]:
    with imagelib.mounted(tools.buildah, driver.tag) as root:
        yield root


@pytest.fixture(scope="module")
def direct_tree(tmp_path_factory: pytest.TempPathFactory, kernel: str) -> Path:
    """The same recipe built directly on this machine, for comparison."""
    work = tmp_path_factory.mktemp("direct")
    out = work / "tree"
    argv = [sys.executable, "-m", "agent", "build", "--recipe", str(REPO / RECIPE), "--kernel", kernel]
    argv += ["--out", str(out), "--cache-dir", str(work / "cache")]
    imagelib.run(argv, timeout=600)
    return out


# --- the Dockerfiles as text --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Dockerfile.builder", "Dockerfile.loader"])
def test_dockerfile_is_hadolint_clean(tools: Tools, name: str) -> None:
    done = imagelib.run([tools.hadolint, "--no-color", str(REPO / name)], check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", ["Dockerfile.builder", "Dockerfile.loader"])
def test_every_stage_declares_the_build_args_it_uses(name: str) -> None:
    stages = re.split(r"(?m)^FROM ", (REPO / name).read_text())[1:]
    assert stages
    for stage in stages:
        body = re.sub(r"(?m)^\s*#.*\n", "", stage.split("\n", 1)[1] if "\n" in stage else "")
        declared = set(re.findall(r"(?m)^ARG (\w+)", body))
        used = {n for n in BUILD_ARGS if re.search(r"\$\{?" + n + r"\b", body)}
        assert used <= declared, f"{name}: stage FROM {stage.splitlines()[0]} uses {sorted(used - declared)} undeclared"


def test_builder_never_uses_a_fixed_job_count_or_a_bare_depmod() -> None:
    text = re.sub(r"(?m)^\s*#.*$", "", (REPO / "Dockerfile.builder").read_text())
    assert not re.search(r"-j\s*\d", text)
    calls = re.findall(r"(?<![\w/.-])depmod\b(?![\w.-])[^;]*", text)
    assert calls, "the image's modules.dep must see the kernel's modules (a depmod after the agent's)"
    for call in calls:  # a bare depmod writes the BUILD machine's /lib/modules for its running kernel
        assert re.match(r'depmod -b /out/opt .*"\$KERNEL_FULL_VERSION"', call), call
    assert not re.search(r"\$\(\s*uname|`\s*uname", text), "the target kernel is KERNEL_FULL_VERSION, never uname"


def test_label_version_default_is_the_agents_version() -> None:
    for name in ("Dockerfile.builder", "Dockerfile.loader"):
        assert f"ARG VERSION={__version__}\n" in (REPO / name).read_text(), name


# --- the loader image ---------------------------------------------------------------------------


def test_loader_image_runs_the_agent(tools: Tools, loader: imagelib.Built) -> None:
    done = imagelib.podman_run(tools.podman, loader.tag, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"intel-gpu-agent, version {__version__}"
    # No Intel GPU in the container (and not the kernel of any release): unsupported, exit 3, with reasons.
    done = imagelib.podman_run(tools.podman, loader.tag, "check")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "i915-2350.145" in done.stdout, "the shipped recipes are in /usr/share/intel-gpu-driver-agent/releases"
    assert "no driver release supports this node" in done.stderr
    done = imagelib.podman_run(tools.podman, loader.tag, "--version", entrypoint="modprobe")
    assert done.returncode == 0 and "kmod" in done.stdout, done.stderr


def test_loader_venv_holds_exactly_the_locked_packages(tools: Tools, loader: imagelib.Built) -> None:
    script = (
        "import importlib.metadata as m, json; "
        "print(json.dumps({d.metadata['Name'].lower().replace('_', '-'): d.version for d in m.distributions()}))"
    )
    venv_python = "/usr/local/lib/intel-gpu-agent/bin/python"
    done = imagelib.podman_run(tools.podman, loader.tag, "-c", script, entrypoint=venv_python)
    assert done.returncode == 0, done.stderr
    installed = json.loads(done.stdout)
    assert installed.pop("intel-gpu-driver-agent") == __version__
    locked = {k: v for k, (v, _) in locked_packages().items() if k not in ("pip", "setuptools")}  # removed after use
    assert installed == locked


def test_toolchain_target_builds_the_driver_with_the_hosts_headers(
    tools: Tools, loader: imagelib.Built, base: str, kernel: str
) -> None:
    """What the chart's build-on-node DaemonSet does: the host's headers mounted, the driver built inside."""
    built = imagelib.build(
        tools.buildah, REPO / "Dockerfile.loader", REPO, TOOLCHAIN_TAG, {"BASE_IMAGE": base}, target="toolchain"
    )
    volumes = {"/lib/modules": "/lib/modules:ro", "/usr/src": "/usr/src:ro", str(REPO / "tests"): "/checkout-tests:ro"}
    # Debian splits kbuild's scripts into /usr/lib/linux-kbuild-<series> (Ubuntu keeps them in /usr/src).
    volumes |= {str(p): f"{p}:ro" for p in Path("/usr/lib").glob("linux-kbuild-*")}
    argv = ["build", "--recipe", "/checkout-tests/recipes/testgpu.toml", "--kernel", kernel, "--out", "/tmp/tree"]
    done = imagelib.podman_run(tools.podman, built.tag, *argv, "--cache-dir", "/tmp/cache", volumes=volumes)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"for {kernel} into /tmp/tree" in done.stdout
    assert "testgpu.ko" in done.stdout


def test_loader_image_config_labels_and_size(tools: Tools, loader: imagelib.Built) -> None:
    config = imagelib.inspect(tools.buildah, loader.tag)["OCIv1"]["config"]  # type: ignore[index]
    assert config["Entrypoint"] == ["intel-gpu-agent"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.version"] == __version__
    assert "org.opencontainers.image.source" in labels
    # The local base stands in for debian:bookworm-slim (77 MB here, 75 MB upstream).
    size = imagelib.image_size(tools.podman, loader.tag)
    assert size <= 150_000_000, f"loader image is {size / 1e6:.0f} MB"


# --- the driver image ---------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _modinfo(tools: Tools, path: Path, field: str) -> str:
    return imagelib.run([tools.modinfo, "-F", field, str(path)]).stdout.strip()


def test_driver_tree_is_built_for_the_target_kernel(tools: Tools, driver_root: Path, kernel: str) -> None:
    tree = load_tree(driver_root)
    assert tree.manifest.kernel == kernel
    assert tree.manifest.recipe == "testgpu-1.0"
    assert sorted(m.name for m in tree.manifest.modules) == sorted(MODULES)
    modules_dir = driver_root / "opt/lib/modules" / kernel
    dep = (modules_dir / "modules.dep").read_text()
    assert re.search(r"(?m)^updates/testgpu\.ko: .*updates/testgpu_compat\.ko", dep), dep
    assert [p.name for p in (driver_root / "opt/lib/modules").iterdir()] == [kernel], "modules.dep for one kernel only"
    for module in tree.manifest.modules:
        path = tree.path_of(module.path)
        assert path.is_relative_to(modules_dir / "updates")
        assert _sha256(path) == module.sha256
        vermagic = _modinfo(tools, path, "vermagic")
        assert vermagic.split()[0] == kernel and module.vermagic == vermagic
        assert _modinfo(tools, path, "srcversion") == module.srcversion
    for firmware in tree.manifest.firmware:
        assert _sha256(tree.firmware_file(firmware.name)) == firmware.sha256
    wanted = {name for m in tree.manifest.modules for name in m.firmware}
    assert wanted and wanted <= {f.name for f in tree.manifest.firmware}


def test_driver_tree_matches_a_direct_build(driver_root: Path, direct_tree: Path) -> None:
    image = load_tree(driver_root).manifest
    direct = load_tree(direct_tree).manifest
    assert image.kernel == direct.kernel
    assert {m.name: (m.srcversion, m.vermagic, m.path) for m in image.modules} == {
        m.name: (m.srcversion, m.vermagic, m.path) for m in direct.modules
    }
    assert {f.name: f.sha256 for f in image.firmware} == {f.name: f.sha256 for f in direct.firmware}
    # The image's modules.dep also lists the kernel's own modules (through the host link); the
    # driver's lines are those of a direct build.
    assert _updates_lines(driver_root / "opt/lib/modules" / image.kernel / "modules.dep") == _updates_lines(
        direct_tree / "opt/lib/modules" / direct.kernel / "modules.dep"
    )


def _updates_lines(dep: Path) -> list[str]:
    return sorted(line for line in dep.read_text().splitlines() if line.startswith("updates/"))


def test_driver_image_links_the_nodes_modules_for_kmm(driver_root: Path, kernel: str) -> None:
    """KMM's remedy for in-tree dependencies: a host link, and a modules.dep made with the kernel's modules."""
    modules_dir = driver_root / "opt/lib/modules" / kernel
    host = modules_dir / "host"
    assert host.is_symlink() and os.readlink(host) == f"/host/lib/modules/{kernel}"
    dep = (modules_dir / "modules.dep").read_text()
    node = Path("/lib/modules") / kernel  # the same kernel package this machine installed
    # Every in-tree module of the kernel is named through the link, by the path the worker will see.
    drm = next(p for p in (node / "kernel/drivers/gpu/drm").iterdir() if p.name.startswith("drm.ko"))
    assert re.search(rf"(?m)^host/kernel/drivers/gpu/drm/{re.escape(drm.name)}:", dep), dep[:2000]
    i915 = r"(?m)^host/kernel/drivers/gpu/drm/i915/i915\.ko[.a-z]*: .*host/kernel/drivers/gpu/drm/drm\.ko"
    assert re.search(i915, dep)
    in_tree = {line.split(":", 1)[0] for line in dep.splitlines() if line.startswith("host/")}
    assert len(in_tree) == len((node / "modules.dep").read_text().splitlines())
    assert (modules_dir / "modules.builtin").read_bytes() == (node / "modules.builtin").read_bytes()
    # Nothing of the kernel package itself is in the image: only the link and the index files.
    assert not (driver_root / "usr/src/kernel-modules").exists()
    assert not (driver_root / "lib/modules").exists() or not any((driver_root / "lib/modules").iterdir())


def test_modprobe_resolves_in_tree_dependencies_where_kmm_mounts_the_node(
    tools: Tools, driver: imagelib.Built, kernel: str
) -> None:
    """In a container laid out like KMM's worker (the node's /lib/modules at /host/lib/modules), the
    image's own modprobe resolves the kernel's modules through the copied tree's host link."""
    script = (
        "set -e; mkdir /tmp/kmm; cp -R /opt /firmware /tmp/kmm/; "
        f"modprobe --show-depends -d /tmp/kmm/opt -S {kernel} i915; "
        f"echo builtin: $(modprobe --show-depends -d /tmp/kmm/opt -S {kernel} firmware_class)"
    )
    volumes = {"/lib/modules": "/host/lib/modules:ro"}
    done = imagelib.podman_run(tools.podman, driver.tag, "-c", script, entrypoint="/bin/sh", volumes=volumes)
    assert done.returncode == 0, done.stdout + done.stderr
    insmods = re.findall(r"^insmod (\S+)", done.stdout, re.M)
    assert insmods[-1].startswith(f"/tmp/kmm/opt/lib/modules/{kernel}/host/kernel/drivers/gpu/drm/i915/i915.ko")
    assert any("/host/kernel/drivers/gpu/drm/drm.ko" in path for path in insmods), done.stdout
    assert "builtin: builtin firmware_class" in done.stdout  # modules.builtin came along
    # Without the node's modules mounted there is nothing behind the link: the image holds none of them.
    done = imagelib.podman_run(tools.podman, driver.tag, "-c", script, entrypoint="/bin/sh")
    assert re.search(r"host/kernel/drivers/gpu/drm/\S+\.ko\S* error=No such file or directory", done.stderr), (
        done.stdout + done.stderr
    )


def test_driver_image_is_small_and_holds_no_toolchain(tools: Tools, driver: imagelib.Built, driver_root: Path) -> None:
    assert not (driver_root / "usr/bin/gcc").exists() and not list((driver_root / "usr/src").glob("linux-*"))
    assert not (driver_root / "src").exists(), "the build context stays in the build stage"
    size = imagelib.image_size(tools.podman, driver.tag)
    assert size <= 150_000_000, f"driver image is {size / 1e6:.0f} MB"


def test_driver_image_serves_kmm_and_the_agent(tools: Tools, driver: imagelib.Built, kernel: str) -> None:
    config = imagelib.inspect(tools.buildah, driver.tag)["OCIv1"]["config"]  # type: ignore[index]
    assert "INTEL_GPU_AGENT_DRIVER_TREE=/" in config["Env"]
    assert config["Labels"]["intel-gpu-driver.kernel"] == kernel
    # KMM 2.2+ copies the tree out with sh and cp, then runs modprobe -d on it.
    script = (
        "set -e; mkdir /tmp/kmm; cp -R /opt /firmware /tmp/kmm/; "
        f"modprobe --show-depends -d /tmp/kmm/opt -S {kernel} testgpu; ls /tmp/kmm/firmware/testgpu"
    )
    done = imagelib.podman_run(tools.podman, driver.tag, "-c", script, entrypoint="/bin/sh")
    assert done.returncode == 0, done.stderr
    insmods = re.findall(r"^insmod \S+/updates/(\w+)\.ko", done.stdout, re.M)
    assert insmods[-1] == "testgpu" and set(insmods) == set(MODULES), done.stdout
    assert "testgpu_guc_1.0.bin" in done.stdout
    done = imagelib.podman_run(tools.podman, driver.tag, "--version")
    assert done.returncode == 0 and __version__ in done.stdout, done.stderr
    done = imagelib.podman_run(tools.podman, driver.tag, "check", "--json")
    assert done.returncode == 3, done.stdout + done.stderr
    assert json.loads(done.stdout)["chosen"] is None


def test_wrong_kernel_fails_the_build_naming_kernel_and_packages(tools: Tools, base: str, kernel: str) -> None:
    wrong = "6.1.0-9999-amd64"
    args = {"BASE_IMAGE": base, "KERNEL_FULL_VERSION": wrong, "RECIPE": RECIPE}
    built = imagelib.build(
        tools.buildah, REPO / "Dockerfile.builder", REPO, imagelib.checkout_tag("igd-wrong"), args, check=False
    )
    assert built.returncode != 0
    assert f"no kernel headers for kernel {wrong}: package linux-headers-{wrong} is not in the package sources" in (
        built.output
    ), built.output[-3000:]
    # Debian keeps a kernel's modules in linux-image-<kver>: named too, in the same run.
    assert f"no kernel modules for kernel {wrong}: package linux-image-{wrong} is not in the package sources" in (
        built.output
    ), built.output[-3000:]


def test_a_missing_modules_package_fails_the_build_naming_it(tools: Tools, base: str, kernel: str) -> None:
    """Headers there, modules package not (as on a distribution that packages them elsewhere)."""
    absent = f"linux-modules-extra-{kernel}"  # Ubuntu's name: Debian has no such package
    args = {"BASE_IMAGE": base, "KERNEL_FULL_VERSION": kernel, "RECIPE": RECIPE, "KERNEL_MODULES_PACKAGES": absent}
    built = imagelib.build(
        tools.buildah, REPO / "Dockerfile.builder", REPO, imagelib.checkout_tag("igd-nomodules"), args, check=False
    )
    assert built.returncode != 0
    assert f"no kernel modules for kernel {kernel}: package {absent} is not in the package sources" in built.output, (
        built.output[-3000:]
    )
    assert f"error: no kernel headers for kernel {kernel}" not in built.output


def test_missing_kernel_full_version_fails_the_build_saying_so(tools: Tools, base: str) -> None:
    args = {"BASE_IMAGE": base, "RECIPE": RECIPE}
    built = imagelib.build(
        tools.buildah, REPO / "Dockerfile.builder", REPO, imagelib.checkout_tag("igd-nokernel"), args, check=False
    )
    assert built.returncode != 0
    assert "build arg KERNEL_FULL_VERSION is empty" in built.output, built.output[-3000:]


def test_proxy_build_args_reach_apt(tools: Tools, base: str, kernel: str) -> None:
    # A proxy address where nothing listens: apt must try it (and the build then fails).
    proxy = f"http://127.0.0.1:{imagelib.free_port()}"
    args = {"BASE_IMAGE": base, "KERNEL_FULL_VERSION": kernel, "HTTP_PROXY": proxy, "HTTPS_PROXY": proxy}
    built = imagelib.build(
        tools.buildah, REPO / "Dockerfile.builder", REPO, imagelib.checkout_tag("igd-proxy"), args, check=False
    )
    assert built.returncode != 0
    assert f"connect to {proxy.removeprefix('http://')}" in built.output, built.output[-3000:]


# --- KMM's in-cluster build: the Dockerfile alone as the build context -----------------------------

ARCHIVE_TOP = f"intel-gpu-driver-agent-{__version__}"
ARCHIVE_PATHS = (
    "pyproject.toml", "README.md", "agent", "build/releases", "build/fixes", "scripts/deps/pip-agent.lock",
    "tests/recipes",
    "tests/driver",
)  # fmt: skip


def _source_archive(path: Path, extra: dict[str, bytes] | None = None) -> str:
    """A source archive of this checkout like a release's (plus ``extra`` files by path), and its sha256."""
    skip = re.compile(r"(__pycache__|\.pyc$|\.o$|\.ko$|\.cmd$|\.mod$|\.mod\.c$|Module\.symvers$|modules\.order$)")
    # gzip without a timestamp: an unchanged checkout gives the same sha256, so the build's layers stay cached.
    with gzip.GzipFile(path, "wb", mtime=0) as packed, tarfile.open(fileobj=packed, mode="w") as archive:
        for name in ARCHIVE_PATHS:
            top = REPO / name
            if not top.exists():
                continue
            for file in sorted([top] if top.is_file() else top.rglob("*")):
                if file.is_file() and not skip.search(str(file)):
                    archive.add(file, arcname=f"{ARCHIVE_TOP}/{file.relative_to(REPO).as_posix()}")
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(f"{ARCHIVE_TOP}/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return _sha256(path)


@pytest.fixture(scope="module")
def served_archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    folder = tmp_path_factory.mktemp("served")
    sha256 = _source_archive(folder / "agent.tar.gz")
    with imagelib.http_server(folder) as address:
        yield f"http://{address}/agent.tar.gz", sha256


def test_build_without_context_fails_without_agent_source(tools: Tools, base: str, kernel: str, tmp_path: Path) -> None:
    shutil.copy(REPO / "Dockerfile.builder", tmp_path / "Dockerfile")
    args = {"BASE_IMAGE": base, "KERNEL_FULL_VERSION": kernel}
    built = imagelib.build(
        tools.buildah, tmp_path / "Dockerfile", tmp_path, imagelib.checkout_tag("igd-nocontext"), args, check=False
    )
    assert built.returncode != 0
    assert "the build context has no agent" in built.output and "AGENT_SOURCE" in built.output, built.output[-3000:]


def test_build_without_context_takes_the_agent_from_agent_source(
    tools: Tools, base: str, kernel: str, tmp_path: Path, served_archive: tuple[str, str], driver_root: Path
) -> None:
    url, sha256 = served_archive
    shutil.copy(REPO / "Dockerfile.builder", tmp_path / "Dockerfile")
    args = {"BASE_IMAGE": base, "KERNEL_FULL_VERSION": kernel, "RECIPE": RECIPE, "AGENT_SOURCE": url}
    wrong = imagelib.build(
        tools.buildah,
        tmp_path / "Dockerfile",
        tmp_path,
        imagelib.checkout_tag("igd-kmm"),
        {**args, "AGENT_SOURCE_SHA256": "0" * 64},
        check=False,
    )
    assert wrong.returncode != 0 and "FAILED" in wrong.output, "a wrong pin must fail the build"
    built = imagelib.build(
        tools.buildah,
        tmp_path / "Dockerfile",
        tmp_path,
        imagelib.checkout_tag("igd-kmm"),
        {**args, "AGENT_SOURCE_SHA256": sha256},
    )
    with imagelib.mounted(tools.buildah, built.tag) as root:
        kmm = load_tree(root).manifest
    image = load_tree(driver_root).manifest
    assert {m.name: m.srcversion for m in kmm.modules} == {m.name: m.srcversion for m in image.modules}
    imagelib.run([tools.podman, *imagelib.STORAGE, "rmi", built.tag], check=False)


# --- CA_BUNDLE: a TLS-intercepting proxy's CA reaches every download of the build (issue 11, F9) ---


def _driver_source_tarball(path: Path, top: str) -> str:
    """The test driver's sources as a release-like tarball under ``top/``; its sha256."""
    with gzip.GzipFile(path, "wb", mtime=0) as packed, tarfile.open(fileobj=packed, mode="w") as archive:
        for file in sorted((REPO / "tests/driver").iterdir()):
            if file.is_file() and (file.suffix in (".c", ".h") or file.name in ("Kbuild", "Makefile")):
                archive.add(file, arcname=f"{top}/{file.name}")
    return _sha256(path)


def test_ca_bundle_reaches_the_agent_source_and_the_agents_own_downloads(
    tools: Tools, base: str, kernel: str, tmp_path: Path, driver_root: Path
) -> None:
    """KMM's build (Dockerfile alone) behind a TLS-intercepting proxy: the agent archive and the driver
    source are served over HTTPS by two local CAs that only CA_BUNDLE holds. With both CAs in the bundle
    the build succeeds; without the second, the AGENT's download is the one that fails, naming its URL."""
    openssl = need_tool("openssl")
    archive_ca = imagelib.make_local_ca(openssl, tmp_path / "ca-archive")
    source_ca = imagelib.make_local_ca(openssl, tmp_path / "ca-source")
    served = tmp_path / "served"
    served.mkdir()
    source_sha = _driver_source_tarball(served / "testgpu-src.tar.gz", "testgpu-src")
    shutil.copy(REPO / "Dockerfile.builder", tmp_path / "Dockerfile")
    host_store = imagelib.HOST_CA_BUNDLE.read_bytes() if imagelib.HOST_CA_BUNDLE.is_file() else b""
    both, archive_only = tmp_path / "both.pem", tmp_path / "archive-only.pem"
    both.write_bytes(host_store + archive_ca.ca_cert.read_bytes() + source_ca.ca_cert.read_bytes())
    archive_only.write_bytes(host_store + archive_ca.ca_cert.read_bytes())
    with imagelib.https_server(served, source_ca) as source_address:
        source_url = f"https://{source_address}/testgpu-src.tar.gz"
        recipe = (REPO / RECIPE).read_text()
        pinned = recipe.replace(
            'url = "../driver"\nsha256 = ""\ntop_folder = ""',
            f'url = "{source_url}"\nsha256 = "{source_sha}"\ntop_folder = "testgpu-src"',
        )
        assert pinned != recipe, "the test recipe's [source] table changed: update this test"
        archive_sha = _source_archive(served / "agent.tar.gz", {"tests/recipes/testgpu-https.toml": pinned.encode()})
        with imagelib.https_server(served, archive_ca) as archive_address:
            args = {
                "BASE_IMAGE": base, "KERNEL_FULL_VERSION": kernel, "RECIPE": "tests/recipes/testgpu-https.toml",
                "AGENT_SOURCE": f"https://{archive_address}/agent.tar.gz", "AGENT_SOURCE_SHA256": archive_sha,
            }  # fmt: skip
            tag = imagelib.checkout_tag("igd-cabundle")
            refused = imagelib.build(
                tools.buildah, tmp_path / "Dockerfile", tmp_path, tag, args, check=False, ca_bundle=archive_only
            )
            built = imagelib.build(tools.buildah, tmp_path / "Dockerfile", tmp_path, tag, args, ca_bundle=both)
    assert refused.returncode != 0
    assert "intel-gpu-agent, version" in refused.output, "the archive (first CA) was fetched and installed"
    assert f"TLS verification failed for {source_url}" in refused.output, refused.output[-3000:]
    with imagelib.mounted(tools.buildah, built.tag) as root:
        tree = load_tree(root).manifest
    assert (tree.inputs["source"], tree.inputs["source_digest"]) == (source_url, source_sha)
    image = load_tree(driver_root).manifest
    assert {m.name: m.srcversion for m in tree.modules} == {m.name: m.srcversion for m in image.modules}
    imagelib.run([tools.podman, *imagelib.STORAGE, "rmi", built.tag], check=False)


# --- registry round trip --------------------------------------------------------------------------


def test_images_push_to_a_registry_and_pull_back_by_digest(
    tools: Tools, loader: imagelib.Built, driver: imagelib.Built, tmp_path: Path
) -> None:
    with imagelib.registry(tools.registry, tmp_path) as address:
        for built, name in ((loader, "intel-gpu-driver-agent"), (driver, "intel-gpu-driver")):
            image_id = imagelib.inspect(tools.buildah, built.tag)["FromImageID"]
            digest_file = tmp_path / f"{name}.digest"
            imagelib.run(
                [tools.buildah, *imagelib.STORAGE, "push", "--tls-verify=false", "--digestfile", str(digest_file),
                 built.tag, f"docker://{address}/{name}:test"]
            )  # fmt: skip
            digest = digest_file.read_text().strip()
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
            remote = json.loads(
                imagelib.run(
                    [tools.skopeo, "inspect", "--tls-verify=false", f"docker://{address}/{name}@{digest}"]
                ).stdout
            )
            assert remote["Digest"] == digest
            assert remote["Labels"]["org.opencontainers.image.version"] == __version__
            # Pulled into an empty store of its own, so every blob really comes from the registry.
            by_digest = f"{address}/{name}@{digest}"
            # (podman wants a run root shorter than 50 characters: not under pytest's tmp_path.)
            with tempfile.TemporaryDirectory(prefix="igd-pull-") as short:
                store = ["--root", f"{short}/root", "--runroot", f"{short}/run", "--storage-driver", "overlay"]
                imagelib.run([tools.podman, *store, "pull", "--tls-verify=false", "-q", by_digest])
                pulled = json.loads(imagelib.run([tools.podman, *store, "image", "inspect", by_digest]).stdout)
                assert pulled[0]["Id"] == image_id, "the pulled image is the one that was built"
