"""Real builds of the test driver against Debian's kernel headers: the tree, no-op rebuilds, failures, signing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tooling import need_tool

from agent.build.headers import find_headers
from agent.build.signing import SIGNATURE_MAGIC, SigningKey
from agent.cli import main
from agent.errors import BuildError
from agent.host.files import sha256_file
from agent.host.paths import HostPaths
from agent.tree import load_tree
from build.buildlib import RECIPES, REPO, make_builder, recipe

pytestmark = pytest.mark.real_commands

MODULES = ("testgpu_compat", "testgpu_vsec", "testgpu")


def test_tree_holds_the_recipes_modules_built_for_the_headers_kernel(built, kernel: str) -> None:
    modinfo = need_tool("modinfo")
    tree = load_tree(built.out)
    manifest = tree.manifest
    assert (manifest.recipe, manifest.driver_tag, manifest.kernel) == ("testgpu-1.0", "testgpu-1.0", kernel)
    assert [m.name for m in manifest.modules] == list(MODULES)
    updates = built.out / "opt/lib/modules" / kernel / "updates"
    assert sorted(p.name for p in updates.iterdir()) == sorted(f"{m}.ko" for m in MODULES)
    for module in manifest.modules:
        path = built.out / module.path
        assert path.parent == updates
        assert sha256_file(path) == module.sha256
        vermagic = subprocess.run([modinfo, "-F", "vermagic", str(path)], capture_output=True, text=True, check=True)
        assert vermagic.stdout.split()[0] == kernel
        assert module.vermagic.split()[0] == kernel
        assert len(module.srcversion) == 23
        assert not module.signed
    main = manifest.module("testgpu")
    assert main is not None
    assert "backported" in main.version
    assert set(main.depends) == {"testgpu_compat", "testgpu_vsec"}
    assert set(main.firmware) == {"testgpu/testgpu_guc_1.0.bin", "testgpu/testgpu_huc_1.0.bin"}


def test_depmod_wrote_the_dependencies_of_the_tree(built, kernel: str) -> None:
    dep = (built.out / "opt/lib/modules" / kernel / "modules.dep").read_text()
    line = next(entry for entry in dep.splitlines() if entry.startswith("updates/testgpu.ko:"))
    assert set(line.split(":")[1].split()) == {"updates/testgpu_compat.ko", "updates/testgpu_vsec.ko"}
    assert (built.out / "opt/lib/modules" / kernel / "modules.dep.bin").is_file()


def test_firmware_the_modules_request_is_copied_and_pinned(built) -> None:
    manifest = load_tree(built.out).manifest
    pinned = {f.name: f for f in recipe().firmware_files}
    assert {f.name for f in manifest.firmware} == set(pinned)
    for firmware in manifest.firmware:
        path = built.out / firmware.path
        assert firmware.path == f"firmware/{firmware.name}"
        assert sha256_file(path) == firmware.sha256 == pinned[firmware.name].sha256
        assert path.stat().st_size == firmware.bytes == pinned[firmware.name].bytes


def test_modules_are_stripped_of_debug_info(built) -> None:
    build_copy = next(built.cache.glob("build/testgpu-1.0/*/*/build"))
    for name in MODULES:
        assert (
            built.out / f"opt/lib/modules/{load_tree(built.out).manifest.kernel}/updates/{name}.ko"
        ).stat().st_size < (build_copy / f"{name}.ko").stat().st_size


def test_manifest_records_inputs_and_is_written_last(built, kernel: str) -> None:
    manifest = json.loads((built.out / "manifest.json").read_text())
    assert manifest["inputs"]["kernel"] == kernel
    assert manifest["inputs"]["recipe_sha256"] == sha256_file(RECIPES / "testgpu.toml")
    assert manifest["inputs_digest"] == built.result.tree.manifest.inputs_digest
    newest = max(p.stat().st_mtime_ns for p in built.out.rglob("*") if p.is_file())
    assert (built.out / "manifest.json").stat().st_mtime_ns == newest
    leftovers = [p.name for p in built.out.parent.iterdir() if p.name.startswith(".out.")]
    assert leftovers == []
    assert (built.out.stat().st_mode & 0o777) == 0o755


def test_log_is_kept_in_the_per_kernel_build_folder(built, kernel: str) -> None:
    log = built.result.log_path
    assert log == built.cache / "build" / "testgpu-1.0" / "testgpu-1.0" / kernel / "make.log"
    text = log.read_text()
    assert "CC [M]" in text
    assert "$ make -C" in text


def test_rebuild_with_unchanged_inputs_returns_at_once(built, kernel: str) -> None:
    builder = make_builder(built.cache)
    started = time.monotonic()
    again = builder.build_result(recipe(), kernel, built.out)
    elapsed = time.monotonic() - started
    assert again.skipped
    assert again.tree.manifest == built.result.tree.manifest
    assert elapsed < 0.15


def test_inputs_digest_follows_the_recipe_and_the_signing_cert(built, kernel: str, tmp_path: Path) -> None:
    builder = make_builder(built.cache)
    base = builder._inputs(
        recipe(), kernel, headers_dir=None, source=None, source_sha256=None, firmware=None, firmware_sha256=None
    )
    assert base.digest == built.result.tree.manifest.inputs_digest
    copy = tmp_path / "testgpu.toml"
    copy.write_text((RECIPES / "testgpu.toml").read_text().replace("../driver", str(REPO / "tests/driver")) + "\n# x\n")
    from agent.recipes.loader import load_recipe

    other = builder._inputs(
        load_recipe(copy),
        kernel,
        headers_dir=None,
        source=None,
        source_sha256=None,
        firmware=None,
        firmware_sha256=None,
    )
    assert other.digest != base.digest
    cert = tmp_path / "cert.pem"
    cert.write_text("not really a certificate")
    key = tmp_path / "key.pem"
    key.write_text("x")
    signed = make_builder(built.cache, signing=SigningKey(key, cert))._inputs(
        recipe(), kernel, headers_dir=None, source=None, source_sha256=None, firmware=None, firmware_sha256=None
    )
    assert signed.digest != base.digest


def test_broken_source_exits_5_with_the_first_compiler_error_and_the_verdict(
    tmp_path: Path, kernel: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "build",
            "--recipe",
            str(RECIPES / "testgpu-broken-source.toml"),
            "--kernel",
            kernel,
            "--out",
            str(tmp_path / "out"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--jobs",
            "2",
        ]
    )
    message = capsys.readouterr().err
    assert code == 5
    assert "testgpu.c:124: error: too few arguments to function 'testgpu_resize_bar'" in message
    assert f"support verdict for {kernel}" in message
    assert (
        "full log: " + str(tmp_path / "cache/build/testgpu-broken-source/testgpu-1.0" / kernel / "make.log") in message
    )
    assert not (tmp_path / "out").exists()


def test_cli_reports_the_tree_as_json_and_skips_unchanged_inputs(
    built, kernel: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "build",
            "--recipe",
            str(RECIPES / "testgpu.toml"),
            "--kernel",
            kernel,
            "--out",
            str(built.out),
            "--cache-dir",
            str(built.cache),
            "--json",
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["skipped"]
    assert report["out"] == str(built.out)
    assert report["manifest"]["inputs_digest"] == built.result.tree.manifest.inputs_digest
    assert [m["name"] for m in report["manifest"]["modules"]] == list(MODULES)


def test_unresolved_symbol_fails_the_build_naming_it(tmp_path: Path, kernel: str) -> None:
    with pytest.raises(BuildError) as caught:
        make_builder(tmp_path / "cache").build(recipe("testgpu-broken-symbol"), kernel, tmp_path / "out")
    assert "would fail at modprobe: Unknown symbol testgpu_missing_symbol" in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_signed_build_appends_signatures_and_records_them(tmp_path: Path, kernel: str) -> None:
    openssl = need_tool("openssl")
    modinfo = need_tool("modinfo")
    key, cert = tmp_path / "signing.key", tmp_path / "signing.crt"
    subprocess.run(
        [
            openssl,
            "req",
            "-new",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=testgpu test key",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-outform",
            "PEM",
        ],
        check=True,
        capture_output=True,
    )
    tree = make_builder(tmp_path / "cache", signing=SigningKey(key, cert)).build(recipe(), kernel, tmp_path / "out")
    assert tree.manifest.signed
    assert tree.manifest.inputs["sign_cert_sha256"] == sha256_file(cert)
    for module in tree.manifest.modules:
        path = tmp_path / "out" / module.path
        assert module.signed
        assert path.read_bytes().endswith(SIGNATURE_MAGIC)
        signer = subprocess.run([modinfo, "-F", "signer", str(path)], capture_output=True, text=True, check=True)
        assert signer.stdout.strip() == "testgpu test key"
    assert find_headers(HostPaths(Path("/")), kernel).sign_hash == "sha256"


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if text in cmdline or cwd.startswith(text):
            found.append(f"{proc.name}: {cmdline.strip()}")
    return found


def _poll(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_sigterm_kills_the_whole_make_group_and_leaves_nothing(tmp_path: Path, kernel: str) -> None:
    need_tool("make")
    work, out = tmp_path / "work", tmp_path / "out"
    env = {**os.environ, "INTEL_GPU_AGENT_LOG_FORMAT": "json"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent",
            "build",
            "--recipe",
            str(RECIPES / "testgpu.toml"),
            "--kernel",
            kernel,
            "--out",
            str(out),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--work-dir",
            str(work),
            "--jobs",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        log = work / "testgpu-1.0" / "testgpu-1.0" / kernel / "make.log"

        def compiling() -> bool:
            if proc.poll() is not None:
                return True
            sources = str(log.parent / "build" / "testgpu")
            return any("cc1 " in p and sources in p for p in _processes_mentioning(str(work)))

        # SIGTERM while the compiler compiles the driver (not kbuild's probes, not after make ends).
        _poll(compiling, 60, "the compiler to start")
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 4, stderr
    assert "stopped while running make" in stderr
    assert "CC [M]" in log.read_text()  # the log is kept, up to the kill
    _poll(lambda: not _processes_mentioning(str(work)), 10, "make and compiler processes to end")
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_compressed_modules_are_collected_compressed(built, kernel: str, tmp_path: Path) -> None:
    """Newer distributions build .ko.xz/.ko.zst: stripped and inspected uncompressed, shipped as found."""
    import lzma

    from agent.build import collect
    from agent.host.runner import Runner
    from agent.recipes.model import ModuleFile

    zstd = need_tool("zstd")
    modinfo = need_tool("modinfo")
    build_copy = next(built.cache.glob("build/testgpu-1.0/*/*/build"))
    made = tmp_path / "made"
    made.mkdir()
    (made / "testgpu_compat.ko.xz").write_bytes(
        lzma.compress((build_copy / "testgpu_compat.ko").read_bytes(), check=lzma.CHECK_CRC32)
    )
    subprocess.run(
        [zstd, "-q", "-o", str(made / "testgpu_vsec.ko.zst"), str(build_copy / "testgpu_vsec.ko")], check=True
    )
    base = recipe()
    from dataclasses import replace

    compressed = replace(
        base,
        module_files=(
            ModuleFile("testgpu_compat", "testgpu_compat.ko.xz"),
            ModuleFile("testgpu_vsec", "testgpu_vsec.ko"),  # the recipe may name either spelling
        ),
    )
    runner = Runner()
    updates = tmp_path / "tree/opt/lib/modules" / kernel / "updates"
    staged = collect.stage_modules(compressed, [made], updates, runner)
    collect.strip_debug(staged, runner)
    collect.inspect(staged, runner)
    collect.check_vermagic(staged, kernel)
    modules = collect.finish_modules(staged, tmp_path / "tree", runner, signed=False)
    assert [m.path.rsplit("/", 1)[1] for m in modules] == ["testgpu_compat.ko.xz", "testgpu_vsec.ko.zst"]
    assert sorted(p.name for p in updates.iterdir()) == ["testgpu_compat.ko.xz", "testgpu_vsec.ko.zst"]
    for module in modules:
        path = tmp_path / "tree" / module.path
        assert sha256_file(path) == module.sha256
        vermagic = subprocess.run([modinfo, "-F", "vermagic", str(path)], capture_output=True, text=True, check=True)
        assert vermagic.stdout.split()[0] == kernel
    collect.depmod(runner, tmp_path / "tree/opt", kernel)
    assert "updates/testgpu_compat.ko.xz:" in (updates.parent / "modules.dep").read_text()


def test_changed_inputs_rebuild_and_replace_the_tree_whole(built, kernel: str, tmp_path: Path) -> None:
    import shutil

    from agent.recipes.loader import load_recipe

    out = tmp_path / "out"
    shutil.copytree(built.out, out, symlinks=True)
    changed = tmp_path / "testgpu.toml"
    changed.write_text(
        (RECIPES / "testgpu.toml").read_text().replace('"../driver', f'"{REPO}/tests/driver') + "\n# changed\n"
    )
    (out / "stray-from-the-old-tree").write_text("x")
    (tmp_path / ".out.building-stale").mkdir()  # what a SIGKILLed build leaves behind
    result = make_builder(built.cache).build_result(load_recipe(changed), kernel, out)
    assert not result.skipped
    assert result.tree.manifest.inputs_digest != built.result.tree.manifest.inputs_digest
    assert load_tree(out).manifest == result.tree.manifest
    assert not (out / "stray-from-the-old-tree").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "testgpu.toml"]
    source_link = built.cache / "build" / "testgpu-1.0" / "testgpu-1.0" / "source"
    assert source_link.resolve() == (REPO / "tests" / "driver").resolve()
