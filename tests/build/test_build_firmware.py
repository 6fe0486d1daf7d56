"""Firmware from the real repository: the flat layout, per-file downloads from a local mirror in the raw-URL
layout (bytes counted), pins, files the source lacks, files no release ships; a source of another release."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from realdriver import real_inputs

from agent.build.download import Fetcher, ProxySettings
from agent.build.firmware import FILES, DownloadedFirmware, FolderFirmware, firmware_spec, place_firmware
from agent.build.sources import TARBALL, WrongReleaseError, check_release, input_spec
from agent.cli import main
from agent.errors import BuildError, IntegrityError, UsageError
from agent.recipes.loader import RELEASES_DIR, load_recipe
from build.buildlib import DRIVER, RECIPES, make_builder

LTS = load_recipe(RELEASES_DIR / "i915-2350.145.toml")
ROLLING = load_recipe(RELEASES_DIR / "i915-1099.12.toml")
TEMPLATE = "{tag}/firmware/{file}"  # the raw URL's path: <tag>/firmware/<file>


def _mirror(served, recipe) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    """Serve the shared firmware folder of ``recipe`` in the raw-URL layout; returns path -> bytes."""
    _, folder = real_inputs(recipe.name)
    files = {
        f"{recipe.firmware_tag}/firmware/{p.name}": p.read_bytes()
        for p in (folder / "firmware").iterdir()
        if p.is_file()
    }
    served.files.update(files)
    return files


def _fetcher(cache: Path) -> Fetcher:
    return Fetcher(cache_dir=cache, proxies=ProxySettings(), attempts=2, backoff=0.01)


def _bytes_sent(served, files: dict[str, bytes]) -> int:  # type: ignore[no-untyped-def]
    return sum(len(files[r.lstrip("/")]) for r in served.requests if r.lstrip("/") in files)


REQUESTED = [f.name for f in LTS.firmware_files] + ["i915/default_iaf.pscbin", "i915/dg1_guc_70.40.1.bin"]


def test_the_recipe_maps_requested_names_to_the_repositorys_flat_layout() -> None:
    """i915/NAME.bin is firmware/NAME.bin in the repository: explicit per file, and true of the real files."""
    for recipe in (LTS, ROLLING):
        _, folder = real_inputs(recipe.name)
        assert recipe.firmware.subdir == "firmware"
        for spec in recipe.firmware_files:
            assert spec.name == f"i915/{spec.file}" and "/" not in spec.file
            real = folder / "firmware" / spec.file
            assert hashlib.sha256(real.read_bytes()).hexdigest() == spec.sha256, real
            assert real.stat().st_size == spec.bytes
        assert [u.name for u in recipe.firmware_not_needed] == ["i915/default_iaf.pscbin"]
        assert "psc_file_override" in recipe.firmware_not_needed[0].reason


def test_a_node_building_for_itself_fetches_exactly_the_recipes_files(http_server, tmp_path: Path) -> None:
    files = _mirror(http_server, LTS)
    spec = firmware_spec(LTS, files_url=http_server.url(TEMPLATE))
    assert (spec.kind, spec.location) == (FILES, http_server.url(f"{LTS.firmware_tag}/firmware/{{file}}"))
    downloads = DownloadedFirmware(_fetcher(tmp_path / "cache"), spec.location)
    downloads.prefetch(LTS.firmware_files)
    placed = place_firmware(LTS, REQUESTED, lambda: downloads, tmp_path / "tree/firmware")
    assert sorted(r.lstrip("/") for r in http_server.requests) == sorted(
        f"{LTS.firmware_tag}/firmware/{f.file}" for f in LTS.firmware_files
    )
    _, folder = real_inputs(LTS.name)
    for firmware in placed.placed:
        assert firmware.path == f"firmware/{firmware.name}"
        assert (tmp_path / "tree" / firmware.path).read_bytes() == (
            folder / "firmware" / firmware.name.removeprefix("i915/")
        ).read_bytes()
    assert len(placed.placed) == len(LTS.firmware_files) == 8
    assert [n for n, _ in placed.not_needed] == ["i915/default_iaf.pscbin"]
    assert placed.notes()[0].startswith("firmware i915/default_iaf.pscbin not placed: iaf.ko")
    assert placed.other_platforms == ("i915/dg1_guc_70.40.1.bin",)
    sent = _bytes_sent(http_server, files)
    assert sent == sum(f.bytes for f in LTS.firmware_files)
    assert sent < 3 * 1024 * 1024  # ~2.9 MB, against 197 MB for the firmware tarball
    # Cached by sha256: another build (another kernel) fetches nothing again.
    again = DownloadedFirmware(_fetcher(tmp_path / "cache"), spec.location)
    again.prefetch(LTS.firmware_files)
    assert len(http_server.requests) == len(LTS.firmware_files)


def test_a_per_file_download_with_the_wrong_sha256_places_nothing(http_server, tmp_path: Path) -> None:
    files = _mirror(http_server, LTS)
    bad = f"{LTS.firmware_tag}/firmware/dg2_guc_70.40.1.bin"
    files[bad] = http_server.files[bad] = b"not the GuC the recipe pins"
    downloads = DownloadedFirmware(
        _fetcher(tmp_path / "cache"), http_server.url(f"{LTS.firmware_tag}/firmware/{{file}}")
    )
    with pytest.raises(IntegrityError) as caught:
        downloads.prefetch(LTS.firmware_files)
    message = str(caught.value)
    pinned = next(f.sha256 for f in LTS.firmware_files if f.file == "dg2_guc_70.40.1.bin")
    assert message.startswith("firmware i915/dg2_guc_70.40.1.bin: ")
    assert http_server.url(bad) in message
    assert f"has sha256 {hashlib.sha256(files[bad]).hexdigest()}, expected {pinned}" in message
    assert caught.value.exit_code == 2
    assert not (tmp_path / "cache/downloads" / pinned).exists()
    assert not [p for p in (tmp_path / "cache/downloads").iterdir() if p.name.endswith(".part")]


@pytest.mark.real_commands
def test_per_file_firmware_in_a_real_build_through_the_cli(http_server, tmp_path: Path, kernel: str) -> None:
    """The test driver with a recipe in the real layout (flat files, requested under testgpu/): built with
    --firmware-files-url against the local mirror; only the recipe's files are downloaded."""
    blobs = {p.name: p.read_bytes() for p in (DRIVER / "firmware/testgpu").iterdir()}
    http_server.files.update({f"testgpu-fw-1.0/firmware/{name}": data for name, data in blobs.items()})
    text = (RECIPES / "testgpu.toml").read_text().replace('"../driver', f'"{DRIVER}')
    text = text.replace(
        'subdir = ""\n', 'subdir = ""\nfiles_url = "https://mirror.invalid/{tag}/firmware/{file}"\n'
    ).replace(
        'name = "testgpu/testgpu_guc_1.0.bin"\n', 'name = "testgpu/testgpu_guc_1.0.bin"\nfile = "testgpu_guc_1.0.bin"\n'
    )
    text = text.replace(
        'name = "testgpu/testgpu_huc_1.0.bin"\n', 'name = "testgpu/testgpu_huc_1.0.bin"\nfile = "testgpu_huc_1.0.bin"\n'
    )
    recipe = tmp_path / "testgpu-flat.toml"
    recipe.write_text(text)
    argv = ["build", "--recipe", str(recipe), "--kernel", kernel, "--out", str(tmp_path / "out")]
    argv += ["--cache-dir", str(tmp_path / "cache"), "--jobs", "2"]
    assert main([*argv, "--firmware-files-url", http_server.url(TEMPLATE)]) == 0
    for name, data in blobs.items():
        assert (tmp_path / "out/firmware/testgpu" / name).read_bytes() == data
    assert sorted(http_server.requests) == sorted(f"/testgpu-fw-1.0/firmware/{n}" for n in blobs)
    # A folder in the same flat layout gives the same tree (--firmware DIR keeps working).
    flat = tmp_path / "flat"
    shutil.copytree(DRIVER / "firmware/testgpu", flat)
    assert main([*argv[:6], str(tmp_path / "out2"), *argv[7:], "--firmware", str(flat)]) == 0
    assert sorted(p.name for p in (tmp_path / "out2/firmware/testgpu").iterdir()) == sorted(blobs)


def test_a_firmware_file_the_source_lacks_fails_naming_it(tmp_path: Path) -> None:
    _, folder = real_inputs(LTS.name)
    partial = tmp_path / "fw"
    shutil.copytree(folder / "firmware", partial)
    (partial / "dg2_guc_70.40.1.bin").unlink()
    with pytest.raises(BuildError) as caught:
        place_firmware(LTS, REQUESTED, lambda: FolderFirmware(partial), tmp_path / "tree/firmware")
    assert "lacks firmware the driver needs: i915/dg2_guc_70.40.1.bin (as dg2_guc_70.40.1.bin)" in str(caught.value)
    assert caught.value.exit_code == 5


def test_firmware_sources_the_build_chooses(tmp_path: Path) -> None:
    default = firmware_spec(LTS)
    assert default.kind == FILES
    assert default.location == (
        f"https://raw.githubusercontent.com/intel-gpu/intel-gpu-firmware/{LTS.firmware_tag}/firmware/{{file}}"
    )
    tarball = tmp_path / "fw.tar.gz"
    tarball.write_bytes(b"x")
    assert firmware_spec(LTS, override=str(tarball), files_url="https://m.example/{file}").kind == TARBALL
    with pytest.raises(UsageError, match="plain http is only allowed from a loopback mirror"):
        firmware_spec(LTS, files_url="http://mirror.example/{tag}/{file}")
    with pytest.raises(UsageError, match=r"has no \{file\}"):
        firmware_spec(LTS, files_url="https://mirror.example/{tag}/")
    # The test recipe pins files but has no per-file URL: its folder, as before.
    assert firmware_spec(load_recipe(RECIPES / "testgpu.toml")).kind == "folder"
    # Pins differ, digests differ.
    assert firmware_spec(ROLLING).sha256 != default.sha256


# --- a source of another release -----------------------------------------------------------------
def test_a_source_of_another_release_is_refused_before_compiling(
    tmp_path: Path, kernel: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rolling_tarball, firmware = real_inputs(ROLLING.name)
    argv = ["build", "--recipe", "i915-2350.145", "--kernel", kernel, "--out", str(tmp_path / "out")]
    argv += ["--cache-dir", str(tmp_path / "cache"), "--source", str(rolling_tarball), "--firmware", str(firmware)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"source {rolling_tarball} is not the release recipe i915-2350.145 builds" in err
    assert 'its versions says BACKPORTS_RELEASE_TAG="I915_25.1.15_PSB_250113.14"' in err
    assert 'expected BACKPORTS_RELEASE_TAG="I915_23.10.90_PSB_231129.99"' in err
    assert not (tmp_path / "out").exists()
    assert not list((tmp_path / "cache").glob("build/*/*/*/build"))


def test_the_release_check_reads_the_sources_own_file(tmp_path: Path) -> None:
    spec = input_spec(LTS, LTS.source, what="source", override=str(tmp_path))
    with pytest.raises(WrongReleaseError, match="it has no versions"):
        check_release(LTS, tmp_path, spec)
    (tmp_path / "versions").write_text('DII_KERNEL_TAG="I915-23.10.90"\n')
    with pytest.raises(WrongReleaseError, match="its versions has no BACKPORTS_RELEASE_TAG"):
        check_release(LTS, tmp_path, spec)
    (tmp_path / "versions").write_text('BACKPORTS_RELEASE_TAG="I915_23.10.90_PSB_231129.99"\nX=1\n')
    check_release(LTS, tmp_path, spec)
    check_release(load_recipe(RECIPES / "testgpu.toml"), tmp_path / "nowhere", spec)  # no marker: not checked


def test_builder_prefetches_per_file_firmware_before_compiling(http_server, tmp_path: Path, kernel: str) -> None:
    """A wrong pin on the mirror fails in seconds, before any make step runs."""
    _mirror(http_server, LTS)
    http_server.files[f"{LTS.firmware_tag}/firmware/pvc_huc_7.8.7.bin"] = b"corrupt"
    tarball, _ = real_inputs(LTS.name)
    builder = make_builder(tmp_path / "cache")
    with pytest.raises(IntegrityError, match=r"firmware i915/pvc_huc_7\.8\.7\.bin"):
        builder.build(LTS, kernel, tmp_path / "out", source=str(tarball), firmware_files_url=http_server.url(TEMPLATE))
    assert not (tmp_path / "out").exists()
    assert not list((tmp_path / "cache").glob("build/*/*/*/make.log"))
