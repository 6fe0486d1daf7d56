"""Build inputs: downloads from a local HTTP server, the sha256 cache, pins, retries, safe extraction, proxies."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from pathlib import Path

import pytest

from agent.build.download import Fetcher, ProxySettings
from agent.build.sources import FOLDER, TARBALL, URL, content_root, folder_digest, input_spec, safe_extract
from agent.errors import DownloadError, IntegrityError, StopRequestedError, UsageError
from build.buildlib import DRIVER, make_builder, recipe, tarball_of

TOP = "testgpu-src"


def _fetcher(cache: Path, **kw: object) -> Fetcher:
    return Fetcher(cache_dir=cache, proxies=ProxySettings(), attempts=3, backoff=0.01, **kw)  # type: ignore[arg-type]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tar(members: list[tarfile.TarInfo]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for member in members:
            data = b"x" * member.size if member.isfile() else None
            archive.addfile(member, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "", size: int = 1) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.size = size if kind == tarfile.REGTYPE else 0
    return info


# --- downloads ------------------------------------------------------------------------------------
def test_download_is_checked_and_cached_by_sha256(http_server, tmp_path: Path) -> None:
    data = tarball_of(DRIVER, TOP)
    http_server.files["driver.tar.gz"] = data
    fetcher = _fetcher(tmp_path)
    first = fetcher.fetch(http_server.url("driver.tar.gz"), _sha(data))
    second = _fetcher(tmp_path).fetch(http_server.url("driver.tar.gz"), _sha(data))
    assert first == second == tmp_path / "downloads" / _sha(data)
    assert first.read_bytes() == data
    assert http_server.hits("driver.tar.gz") == 1


def test_wrong_sha256_keeps_nothing(http_server, tmp_path: Path) -> None:
    http_server.files["driver.tar.gz"] = tarball_of(DRIVER, TOP)
    with pytest.raises(IntegrityError) as caught:
        _fetcher(tmp_path).fetch(http_server.url("driver.tar.gz"), "0" * 64)
    assert caught.value.exit_code == 2
    assert "expected " + "0" * 64 in str(caught.value)
    assert list((tmp_path / "downloads").iterdir()) == []


def test_server_errors_are_retried_then_transient(http_server, tmp_path: Path) -> None:
    data = b"payload"
    http_server.files["x.tar.gz"] = data
    http_server.failures["/x.tar.gz"] = [503, 500]
    assert _fetcher(tmp_path).fetch(http_server.url("x.tar.gz"), _sha(data)).read_bytes() == data
    assert http_server.hits("x.tar.gz") == 3
    http_server.failures["/y.tar.gz"] = [500, 502, 503]
    with pytest.raises(DownloadError) as caught:
        _fetcher(tmp_path).fetch(http_server.url("y.tar.gz"), _sha(b"another payload"))
    assert caught.value.exit_code == 4
    assert "after 3 attempts" in str(caught.value)
    assert http_server.hits("y.tar.gz") == 3


def test_not_found_is_not_retried(http_server, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="HTTP 404"):
        _fetcher(tmp_path).fetch(http_server.url("missing.tar.gz"), "1" * 64)
    assert http_server.hits("missing.tar.gz") == 1


def test_connection_refused_is_transient(tmp_path: Path) -> None:
    with pytest.raises(DownloadError):
        _fetcher(tmp_path).fetch("http://127.0.0.1:9/x.tar.gz", "1" * 64)


def test_stop_interrupts_the_backoff(http_server, tmp_path: Path) -> None:
    http_server.failures["/z.tar.gz"] = [503] * 5
    stop = threading.Event()
    stop.set()
    with pytest.raises(StopRequestedError):
        _fetcher(tmp_path, stop=stop).fetch(http_server.url("z.tar.gz"), "1" * 64)


def test_builder_with_a_wrong_pin_extracts_nothing(http_server, tmp_path: Path, kernel: str) -> None:
    http_server.files["driver.tar.gz"] = tarball_of(DRIVER, TOP)
    builder = make_builder(tmp_path / "cache")
    with pytest.raises(IntegrityError):
        builder.build(
            recipe(), kernel, tmp_path / "out", source=http_server.url("driver.tar.gz"), source_sha256="2" * 64
        )
    assert not (tmp_path / "cache" / "unpacked").exists()
    assert not (tmp_path / "out").exists()


@pytest.mark.real_commands
def test_builder_builds_from_a_download_and_reuses_it(http_server, tmp_path: Path, kernel: str) -> None:
    data = tarball_of(DRIVER, TOP)
    http_server.files["driver.tar.gz"] = data
    url = http_server.url("driver.tar.gz")
    builder = make_builder(tmp_path / "cache")
    tree = builder.build(recipe(), kernel, tmp_path / "out", source=url, source_sha256=_sha(data))
    assert tree.manifest.inputs["source"] == url
    assert tree.manifest.inputs["source_digest"] == _sha(data)
    assert (tmp_path / "cache" / "unpacked" / _sha(data) / TOP / "testgpu.c").is_file()
    again = make_builder(tmp_path / "cache").build_result(
        recipe(), kernel, tmp_path / "out", source=url, source_sha256=_sha(data)
    )
    assert again.skipped
    assert http_server.hits("driver.tar.gz") == 1


def test_tls_is_always_verified_and_a_ca_bundle_is_honoured(https_server, tmp_path: Path) -> None:
    served, cert = https_server
    data = b"over tls"
    served.files["x.tar.gz"] = data
    with pytest.raises(UsageError, match="--ca-bundle") as caught:
        _fetcher(tmp_path).fetch(served.url("x.tar.gz"), _sha(data))
    assert "TLS verification failed" in str(caught.value)
    assert _fetcher(tmp_path, ca_bundle=cert).fetch(served.url("x.tar.gz"), _sha(data)).read_bytes() == data
    assert served.hits("x.tar.gz") == 1


def test_firmware_from_a_download_is_unpacked_once_into_its_content_root(http_server, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(DRIVER / "firmware", arcname="testgpu-firmware-1.0")
    data = buffer.getvalue()
    http_server.files["fw.tar.gz"] = data
    spec = input_spec(
        recipe(), recipe().firmware, what="firmware", override=http_server.url("fw.tar.gz"), override_sha256=_sha(data)
    )
    builder = make_builder(tmp_path / "cache")
    root = builder._unpacked(spec)
    assert root == tmp_path / "cache" / "unpacked" / _sha(data) / "testgpu-firmware-1.0"
    assert (root / "testgpu" / "testgpu_guc_1.0.bin").read_bytes() == (
        DRIVER / "firmware" / "testgpu" / "testgpu_guc_1.0.bin"
    ).read_bytes()
    assert make_builder(tmp_path / "cache")._unpacked(spec) == root
    assert http_server.hits("fw.tar.gz") == 1


# --- pins and locations ---------------------------------------------------------------------------
def test_recipe_folder_inputs_resolve_against_the_recipe() -> None:
    spec = input_spec(recipe(), recipe().source, what="source")
    assert (spec.kind, Path(spec.location), spec.sha256) == (FOLDER, DRIVER, "")


def test_an_explicit_url_must_be_pinned() -> None:
    with pytest.raises(UsageError, match="--source-sha256"):
        input_spec(recipe(), recipe().source, what="source", override="https://example.com/x.tar.gz")
    spec = input_spec(
        recipe(), recipe().source, what="source", override="https://example.com/x.tar.gz", override_sha256="A" * 64
    )
    assert (spec.kind, spec.sha256) == (URL, "a" * 64)


def test_plain_http_only_from_loopback() -> None:
    with pytest.raises(UsageError, match="plain http"):
        input_spec(
            recipe(), recipe().source, what="source", override="http://example.com/x.tgz", override_sha256="a" * 64
        )
    with pytest.raises(UsageError, match="not a sha256"):
        input_spec(recipe(), recipe().source, what="source", override="https://example.com/x.tgz", override_sha256="zz")


def test_a_missing_local_input_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        input_spec(recipe(), recipe().firmware, what="firmware", override=str(tmp_path / "nope.tar.gz"))


def test_a_local_tarball_with_a_pin_is_checked(tmp_path: Path, kernel: str) -> None:
    tarball = tmp_path / "driver.tar.gz"
    tarball.write_bytes(tarball_of(DRIVER, TOP))
    spec = input_spec(recipe(), recipe().source, what="source", override=str(tarball), override_sha256="3" * 64)
    assert spec.kind == TARBALL
    with pytest.raises(IntegrityError):
        make_builder(tmp_path / "cache").build(
            recipe(), kernel, tmp_path / "out", source=str(tarball), source_sha256="3" * 64
        )
    assert not (tmp_path / "cache" / "unpacked").exists()


def test_folder_digest_changes_with_content(tmp_path: Path) -> None:
    (tmp_path / "a.c").write_text("int a;")
    first = folder_digest(tmp_path)
    assert folder_digest(tmp_path) == first
    (tmp_path / "a.c").write_text("int b;")
    assert folder_digest(tmp_path) != first


# --- safe extraction ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("member", "problem"),
    [
        (_member("top/../../evil.sh"), "'..' in path"),
        (_member("/etc/evil"), "absolute path"),
        (_member("top/link", tarfile.SYMTYPE, "../../etc/passwd"), "symlink escaping"),
        (_member("top/link", tarfile.SYMTYPE, "/etc/passwd"), "symlink to absolute"),
        (_member("top/hard", tarfile.LNKTYPE, "../outside"), "hard link escaping"),
        (_member("top/dev", tarfile.CHRTYPE), "device"),
        (_member("top/fifo", tarfile.FIFOTYPE), "device or fifo"),
    ],
)
def test_unsafe_members_are_refused_and_nothing_is_extracted(
    tmp_path: Path, member: tarfile.TarInfo, problem: str
) -> None:
    tarball = tmp_path / "bad.tar"
    tarball.write_bytes(_tar([_member("top/ok.c"), member]))
    with pytest.raises(IntegrityError, match=problem):
        safe_extract(tarball, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.tar"]


def test_dotdot_tarball_from_the_server_is_refused(http_server, tmp_path: Path, kernel: str) -> None:
    data = tarball_of(DRIVER, TOP, extra={"../escape.txt": b"gotcha"})
    http_server.files["evil.tar.gz"] = data
    with pytest.raises(IntegrityError, match="unsafe entry"):
        make_builder(tmp_path / "cache").build(
            recipe(), kernel, tmp_path / "out", source=http_server.url("evil.tar.gz"), source_sha256=_sha(data)
        )
    assert not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "cache" / "escape.txt").exists()
    assert list((tmp_path / "cache" / "unpacked").iterdir()) == []


def test_safe_links_inside_the_archive_are_kept(tmp_path: Path) -> None:
    tarball = tmp_path / "ok.tar"
    tarball.write_bytes(_tar([_member("top/a.c"), _member("top/sub/link", tarfile.SYMTYPE, "../a.c")]))
    safe_extract(tarball, tmp_path / "dest")
    assert (tmp_path / "dest/top/sub/link").read_bytes() == b"x"


def test_extracting_over_a_concurrent_extraction_keeps_the_first(tmp_path: Path) -> None:
    tarball = tmp_path / "ok.tar"
    tarball.write_bytes(_tar([_member("top/a.c")]))
    (tmp_path / "dest" / "top").mkdir(parents=True)
    (tmp_path / "dest" / "top" / "a.c").write_bytes(b"x")
    safe_extract(tarball, tmp_path / "dest")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "ok.tar"]


def test_content_root_takes_the_top_folder_and_subdir(tmp_path: Path) -> None:
    (tmp_path / "intel-gpu-firmware-x" / "firmware" / "i915").mkdir(parents=True)
    spec = input_spec(recipe(), recipe().firmware, what="firmware")
    from dataclasses import replace

    spec = replace(spec, kind=TARBALL, top_folder="intel-gpu-firmware-x", subdir="firmware")
    assert content_root(tmp_path, spec) == tmp_path / "intel-gpu-firmware-x" / "firmware"
    other = replace(spec, top_folder="another-tag")
    assert content_root(tmp_path, other) == tmp_path / "intel-gpu-firmware-x" / "firmware"


# --- proxies --------------------------------------------------------------------------------------
def test_proxy_settings_come_from_either_case_and_options_win() -> None:
    env = {
        "https_proxy": "http://proxy:3128",
        "HTTP_PROXY": "http://proxy:8080",
        "NO_PROXY": "internal.example,10.0.0.0/8",
    }
    settings = ProxySettings.from_env(env)
    assert settings.for_url("https://github.com/x") == {"https": "http://proxy:3128"}
    assert settings.for_url("http://mirror.example/x") == {"http": "http://proxy:8080"}
    assert settings.for_url("https://a.internal.example/x") == {}
    assert settings.for_url("https://10.1.2.3/x") == {}
    assert ProxySettings.from_env(env, https="http://other:1").for_url("https://github.com/") == {
        "https": "http://other:1"
    }
    assert ProxySettings.from_env(env, no_proxy="*").for_url("https://github.com/") == {}


def test_proxy_credentials_are_not_logged() -> None:
    from agent.build.sources import redact_url

    assert redact_url("http://user:secret@proxy:3128") == "http://***@proxy:3128"
    assert redact_url("https://token@host/x.tar.gz") == "https://***@host/x.tar.gz"
    assert redact_url("http://proxy:3128") == "http://proxy:3128"
    assert redact_url("/a/b@c") == "/a/b@c"
    assert redact_url("") == ""


def test_downloads_go_through_the_proxy(http_server, tmp_path: Path) -> None:
    """The local server plays the proxy: requests sends it the absolute URL."""
    data = b"through the proxy"
    http_server.files["x"] = data
    target = "http://127.0.0.1:9/x"  # nothing listens there: only the proxy can answer
    fetcher = Fetcher(
        cache_dir=tmp_path, proxies=ProxySettings(http=f"http://127.0.0.1:{http_server.port}"), attempts=1
    )
    # The proxy sees the absolute URL as the path; serve it under that name.
    http_server.files[target] = data
    assert fetcher.fetch(target, _sha(data)).read_bytes() == data
    assert http_server.requests == [target]
