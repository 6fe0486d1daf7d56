"""A build on the node (`run`/`load --recipe` without a tree) gets the same download settings as `build` (F9)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from agent.app import App
from agent.config import make_global
from agent.errors import UsageError
from agent.lifecycle.config import make_lifecycle_config
from build.buildlib import DRIVER, recipe, tarball_of

TOP = "testgpu-src"


def _https_recipe(tmp_path: Path, url: str, sha: str) -> Path:
    """The test recipe with its source fetched from ``url`` (a loopback HTTPS server)."""
    text = recipe().path.read_text()
    text = text.replace(
        'url = "../driver"\nsha256 = ""\ntop_folder = ""', f'url = "{url}"\nsha256 = "{sha}"\ntop_folder = "{TOP}"'
    )
    text = text.replace('url = "../driver/firmware"', f'url = "{DRIVER / "firmware"}"')
    path = tmp_path / "testgpu-https.toml"
    path.write_text(text)
    return path


@pytest.mark.real_commands
def test_run_and_load_honour_the_ca_bundle_for_a_build_on_the_node(https_server, tmp_path: Path, kernel: str) -> None:
    """Repro of F9: `run` had no --ca-bundle and ignored INTEL_GPU_AGENT_CA_BUNDLE (the chart's agent.caBundle)."""
    served, cert = https_server
    data = tarball_of(DRIVER, TOP)
    served.files["testgpu.tar.gz"] = data
    spec = str(_https_recipe(tmp_path, served.url("testgpu.tar.gz"), hashlib.sha256(data).hexdigest()))
    app = App(config=make_global("/", "json", "warning", None))

    def build_with(**extra: str) -> Path:
        config = make_lifecycle_config(recipe=spec, state_dir=str(tmp_path / "state"), **extra)
        commands = app.lifecycle(config)
        assert commands.source.build is not None
        return commands.source.build(app.recipe(spec), kernel, tmp_path / "tree").root

    with pytest.raises(UsageError, match=r"TLS verification failed.*--ca-bundle"):
        build_with()
    assert (build_with(ca_bundle=str(cert)) / "manifest.json").is_file()
