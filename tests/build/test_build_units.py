"""Build pieces without a compiler: make output, modinfo, progress, firmware, vermagic, headers, CLI exit codes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agent import logs as agent_logs
from agent.build.collect import StagedModule, check_vermagic, parse_modinfo
from agent.build.firmware import FolderFirmware, place_firmware
from agent.build.headers import HeadersMissingError, find_headers
from agent.build.make import BuildOutput, Progress, expand
from agent.build.signing import SigningKey
from agent.cli import main
from agent.errors import BuildError, UsageError
from agent.host.paths import HostPaths
from agent.recipes.model import ModuleFile
from build.buildlib import DRIVER, RECIPES, make_builder, recipe

MAKE_FAILED = """\
make: Entering directory '/usr/src/linux-headers-6.1.0-57-amd64'
  CC [M]  /w/build/testgpu_compat.o
  CC [M]  /w/build/testgpu_vsec.o
  CC [M]  /w/build/testgpu.o
/w/build/testgpu.c: In function 'testgpu_init':
/w/build/testgpu.c:124:15: error: too few arguments to function 'testgpu_resize_bar'
/w/build/testgpu.c:110:12: note: declared here
/w/build/testgpu.c:130:3: error: a second error that is not the first
make[1]: *** [scripts/Makefile.build:255: /w/build/testgpu.o] Error 1
"""
MODPOST_WARN = """\
  MODPOST /w/build/Module.symvers
WARNING: modpost: "testgpu_missing_symbol" [/w/build/testgpu.ko] undefined!
WARNING: modpost: "other_symbol" [/w/build/testgpu_vsec.ko] undefined!
  CC [M]  /w/build/testgpu.mod.o
"""
# Captured from `modinfo testgpu_compat.ko testgpu.ko` (paths shortened).
MODINFO = (Path(__file__).parent / "golden" / "modinfo-testgpu.txt").read_text()


def _feed(text: str) -> BuildOutput:
    output = BuildOutput()
    for line in text.splitlines():
        output.feed(line)
    return output


def test_first_compiler_error_and_objects_are_read_from_make_output() -> None:
    output = _feed(MAKE_FAILED)
    assert output.objects == 3
    assert str(output.first_error) == "testgpu.c:124: error: too few arguments to function 'testgpu_resize_bar'"


def test_make_errors_are_kept_for_builds_that_fail_before_compiling() -> None:
    output = _feed(
        "make: Entering directory '/h'\n"
        "make[1]: *** No rule to make target 'defconfigs/i915', needed by '.config'.  Stop.\n"
        "make: *** [Makefile:20: all] Error 2\n"
    )
    assert output.first_error is None
    assert output.first_make_error == "No rule to make target 'defconfigs/i915', needed by '.config'.  Stop."


def test_failure_message_prefers_the_compiler_error_then_make_then_the_last_line(kernel: str) -> None:
    from agent.build.diagnose import compile_failure

    host = HostPaths(Path("/"))
    headers = find_headers(host, kernel)
    log = Path("/w/make.log")
    message = str(compile_failure(recipe(), headers, host, _feed(MAKE_FAILED), log_path=log, what="make exited 2"))
    assert "the build failed at testgpu.c:124: error: too few arguments" in message
    assert message.endswith("full log: /w/make.log")
    make_only = _feed("make[1]: *** No rule to make target 'x'.  Stop.\nmake: *** [all] Error 2")
    message = str(compile_failure(recipe(), headers, host, make_only, log_path=log, what="make exited 2"))
    assert "make: No rule to make target 'x'.  Stop." in message
    other = str(
        compile_failure(
            recipe(), headers, host, _feed("cp: cannot stat 'defconfigs/i915'"), log_path=log, what="cp exited 1"
        )
    )
    assert "the build failed (cp exited 1): cp: cannot stat 'defconfigs/i915'" in other
    assert f"support verdict for {kernel}" in other


def test_modpost_undefined_symbols_are_collected() -> None:
    output = _feed(MODPOST_WARN)
    assert output.undefined == {"testgpu_missing_symbol": ["testgpu.ko"], "other_symbol": ["testgpu_vsec.ko"]}
    assert output.first_error is None
    assert output.objects == 1  # kbuild's testgpu.mod.o is compiled too


def test_placeholders_are_expanded_and_unknown_ones_refused() -> None:
    values = {"kernel": "6.1.0-57-amd64", "headers": "/h", "klib": "/k", "jobs": "2", "src": "/s"}
    assert expand(["make", "-C", "{headers}", "M={src}", "-j{jobs}", "KLIB={klib}"], values) == [
        "make",
        "-C",
        "/h",
        "M=/s",
        "-j2",
        "KLIB=/k",
    ]
    with pytest.raises(UsageError, match="unknown placeholder"):
        expand(["make", "{nope}"], values)


def test_progress_is_a_log_event_when_not_on_a_terminal() -> None:
    now = [0.0]
    progress = Progress(label="testgpu for 6.1", stream=io.StringIO(), interval=10.0, clock=lambda: now[0])
    output = BuildOutput(objects=4)
    # structlog is configured lazily on the first event; do it now or it would replace the capture.
    agent_logs._setup()
    with capture_logs() as logs:
        progress.update(output)
        now[0] = 10.5
        progress.update(output)
        now[0] = 11.0
        progress.update(output)
    assert [(e["event"], e["objects"], e["seconds"]) for e in logs] == [("build_progress", 4, 10.5)]


def test_progress_is_a_status_line_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    now = [0.0]
    progress = Progress(label="testgpu for 6.1", stream=stream, clock=lambda: now[0])
    now[0] = 1.0
    progress.update(BuildOutput(objects=2))
    progress.finish()
    assert stream.getvalue() == "\rtestgpu for 6.1: 2 objects compiled, 1.0 s \n"


def test_modinfo_output_is_parsed_per_file() -> None:
    info = parse_modinfo(MODINFO)
    assert info["/t/updates/testgpu.ko"]["firmware"] == ["testgpu/testgpu_huc_1.0.bin", "testgpu/testgpu_guc_1.0.bin"]
    assert info["/t/updates/testgpu.ko"]["depends"] == ["testgpu_compat,testgpu_vsec"]
    assert info["/t/updates/testgpu_compat.ko"]["depends"] == [""]
    assert info["/t/updates/testgpu_compat.ko"]["srcversion"] == ["64A65F415D48CF631B8BD22"]


def test_a_module_for_another_kernel_fails_the_build() -> None:
    good = StagedModule(ModuleFile("a", "a.ko"), Path("a.ko"), "", {"vermagic": ["6.1.0-57-amd64 SMP"]})
    bad = StagedModule(ModuleFile("b", "b.ko"), Path("b.ko"), "", {"vermagic": ["6.12.0-1-amd64 SMP"]})
    check_vermagic([good], "6.1.0-57-amd64")
    with pytest.raises(BuildError, match=r"b \(6.12.0-1-amd64 SMP\)"):
        check_vermagic([good, bad], "6.1.0-57-amd64")


def test_requested_firmware_missing_from_the_source_fails_the_build(tmp_path: Path) -> None:
    source = tmp_path / "fw"
    (source / "testgpu").mkdir(parents=True)
    guc = "testgpu/testgpu_guc_1.0.bin"
    (source / guc).write_bytes((DRIVER / "firmware" / guc).read_bytes())
    requested = [guc, "testgpu/testgpu_huc_1.0.bin"]
    with pytest.raises(
        BuildError,
        match=r"lacks firmware the driver needs: testgpu/testgpu_huc_1.0.bin; loading would fail with -ENOENT",
    ):
        place_firmware(recipe(), requested, lambda: FolderFirmware(source), tmp_path / "tree" / "firmware")


def test_firmware_differing_from_the_recipe_pin_fails(tmp_path: Path) -> None:
    source = tmp_path / "fw"
    (source / "testgpu").mkdir(parents=True)
    (source / "testgpu/testgpu_guc_1.0.bin").write_bytes(b"TGFW not the pinned blob")
    with pytest.raises(BuildError, match="the recipe pins"):
        place_firmware(
            recipe(), ["testgpu/testgpu_guc_1.0.bin"], lambda: FolderFirmware(source), tmp_path / "tree" / "firmware"
        )


def test_firmware_of_other_platforms_is_left_out_and_the_recipes_files_are_placed(tmp_path: Path) -> None:
    placed = place_firmware(
        recipe(),
        ["testgpu/testgpu_guc_1.0.bin", "i915/skl_dmc_ver1_27.bin"],
        lambda: FolderFirmware(DRIVER / "firmware"),
        tmp_path / "tree" / "firmware",
    )
    # The huc is not requested by these modules, but the recipe says the platforms need it.
    assert [f.name for f in placed.placed] == ["testgpu/testgpu_guc_1.0.bin", "testgpu/testgpu_huc_1.0.bin"]
    assert placed.placed[0].path == "firmware/testgpu/testgpu_guc_1.0.bin"
    assert placed.other_platforms == ("i915/skl_dmc_ver1_27.bin",)
    assert not (tmp_path / "tree/firmware/i915").exists()


def _fake_host(tmp_path: Path, os_id: str) -> HostPaths:
    (tmp_path / "etc").mkdir(parents=True, exist_ok=True)
    (tmp_path / "etc/os-release").write_text(f"ID={os_id}\nVERSION_ID=1\n")
    return HostPaths(tmp_path)


@pytest.mark.parametrize(
    ("os_id", "package"),
    [
        ("ubuntu", "linux-headers-6.8.0-56-generic"),
        ("debian", "linux-headers-6.8.0-56-generic"),
        ("rhel", "kernel-devel-6.8.0-56-generic"),
    ],
)
def test_missing_headers_name_the_package(tmp_path: Path, os_id: str, package: str) -> None:
    with pytest.raises(HeadersMissingError) as caught:
        find_headers(_fake_host(tmp_path, os_id), "6.8.0-56-generic")
    assert package in str(caught.value)
    assert caught.value.exit_code == 2


def test_headers_of_another_kernel_are_refused(tmp_path: Path) -> None:
    host = _fake_host(tmp_path, "ubuntu")
    headers = tmp_path / "usr/src/linux-headers-6.8.0-56-generic"
    (headers / "include/generated").mkdir(parents=True)
    (headers / "Makefile").write_text("")
    (headers / "include/generated/utsrelease.h").write_text('#define UTS_RELEASE "6.8.0-57-generic"\n')
    (headers / ".config").write_text('CONFIG_VERSION_SIGNATURE="Ubuntu 6.8.0-56.58-generic 6.8.12"\nCONFIG_X=y\n')
    modules = tmp_path / "lib/modules/6.8.0-56-generic"
    modules.mkdir(parents=True)
    # The node's absolute link: must resolve under the host root, not in the container's /.
    (modules / "build").symlink_to("/usr/src/linux-headers-6.8.0-56-generic")
    with pytest.raises(UsageError, match=r"are for kernel 6\.8\.0-57-generic"):
        find_headers(host, "6.8.0-56-generic")
    (headers / "include/generated/utsrelease.h").write_text('#define UTS_RELEASE "6.8.0-56-generic"\n')
    found = find_headers(host, "6.8.0-56-generic")
    assert found.path == headers
    assert found.version_signature == "Ubuntu 6.8.0-56.58-generic 6.8.12"
    assert found.os_info(host).id == "ubuntu"
    assert found.kernel_info().upstream == "6.8.12"


def test_headers_identity_follows_what_modules_link_against(tmp_path: Path) -> None:
    from agent.build.headers import _identity

    (tmp_path / "Module.symvers").write_text("0x1\tdrm_dev_register\tvmlinux\tEXPORT_SYMBOL\n")
    (tmp_path / ".config").write_text("CONFIG_MODULES=y\n")
    first = _identity(tmp_path)
    assert _identity(tmp_path) == first
    (tmp_path / "Module.symvers").write_text("0x2\tdrm_dev_register\tvmlinux\tEXPORT_SYMBOL\n")
    assert _identity(tmp_path) != first


def test_debian_headers_give_the_upstream_version(kernel: str) -> None:
    headers = find_headers(HostPaths(Path("/")), kernel)
    info = headers.kernel_info()
    assert info.release == kernel
    if "Debian" in headers.uts_version:
        assert headers.os_info(HostPaths(Path("/"))).id == "debian"
        assert info.upstream != info.release.split("-")[0]


def test_given_headers_folder_is_the_same_input_as_the_hosts(tmp_path: Path, kernel: str) -> None:
    builder = make_builder(tmp_path / "cache")
    common = {"source": None, "source_sha256": None, "firmware": None, "firmware_sha256": None}
    default = builder._inputs(recipe(), kernel, headers_dir=None, **common)
    given = builder._inputs(recipe(), kernel, headers_dir=Path(f"/lib/modules/{kernel}/build"), **common)
    assert given.digest == default.digest
    assert given.headers.path == default.headers.path


def test_signing_options_go_together(tmp_path: Path) -> None:
    assert SigningKey.from_options(None, None) is None
    with pytest.raises(UsageError, match="go together"):
        SigningKey.from_options(str(tmp_path / "k"), None)
    with pytest.raises(UsageError, match="does not exist"):
        SigningKey.from_options(str(tmp_path / "k"), str(tmp_path / "c"))


def test_an_unrelated_out_folder_is_not_replaced(tmp_path: Path, kernel: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("mine")
    with pytest.raises(UsageError, match="not a driver tree"):
        make_builder(tmp_path / "cache").build(recipe(), kernel, out)
    assert (out / "precious.txt").read_text() == "mine"


# --- CLI exit codes -------------------------------------------------------------------------------
def _cli(*args: str) -> int:
    return main(["build", *args])


def test_cli_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli("--recipe", "testgpu") == 2  # --kernel and --out missing
    recipe_path = str(RECIPES / "testgpu.toml")
    assert _cli("--recipe", recipe_path, "--kernel", "k", "--out", str(tmp_path / "o"), "--sign-key", "x") == 2
    assert "go together" in capsys.readouterr().err
    assert _cli("--recipe", recipe_path, "--kernel", "k", "--out", str(tmp_path / "o"), "--jobs", "0") == 2


def test_cli_missing_headers_exit_2_naming_the_package(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host = _fake_host(tmp_path / "host", "ubuntu")
    code = main(
        [
            "--host-root",
            str(host.root),
            "build",
            "--recipe",
            str(RECIPES / "testgpu.toml"),
            "--kernel",
            "6.8.0-56-generic",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2
    assert "install linux-headers-6.8.0-56-generic" in capsys.readouterr().err


def test_cli_server_errors_exit_4(
    http_server, tmp_path: Path, kernel: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import agent.build.download as download

    monkeypatch.setattr(download, "DEFAULT_BACKOFF", 0.01)
    http_server.failures["/d.tar.gz"] = [500] * 10
    code = _cli(
        "--recipe",
        str(RECIPES / "testgpu.toml"),
        "--kernel",
        kernel,
        "--out",
        str(tmp_path / "o"),
        "--cache-dir",
        str(tmp_path / "c"),
        "--source",
        http_server.url("d.tar.gz"),
        "--source-sha256",
        "4" * 64,
    )
    assert code == 4
    assert "after 4 attempts" in capsys.readouterr().err
    assert http_server.hits("d.tar.gz") == 4


def test_cli_env_variables_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INTEL_GPU_AGENT_RECIPE", str(RECIPES / "testgpu.toml"))
    monkeypatch.setenv("INTEL_GPU_AGENT_KERNEL", "9.9.9-none")
    monkeypatch.setenv("INTEL_GPU_AGENT_OUT", str(tmp_path / "o"))
    assert main(["build"]) == 2
    assert "linux-headers-9.9.9-none" in capsys.readouterr().err
