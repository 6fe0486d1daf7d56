"""Firmware rules: a foreign file is kept aside and restored, a file changed since is left, the path's reset."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

from lifecycle.fakes import Node, snapshot

from agent.discovery.security import read_firmware_path
from agent.host.paths import HostPaths
from agent.lifecycle.changes.firmware_path import write_path
from agent.lifecycle.labels import LABEL, ApiServerLabels, NoLabels, labeler_for

GUC = "var/lib/firmware/testgpu/testgpu_guc_1.0.bin"


def test_a_different_file_already_there_is_restored_on_undo(node: Node) -> None:
    node.host.write(GUC, b"someone else's blob")
    node.engine().apply(node.target, node.facts())
    assert (node.host.root / GUC).read_bytes().startswith(b"TGFW")

    node.engine().undo()

    assert (node.host.root / GUC).read_bytes() == b"someone else's blob"
    assert not (node.host.paths.firmware_backup_dir).exists()


def test_a_file_changed_after_we_placed_it_is_not_ours_to_remove(node: Node) -> None:
    node.engine().apply(node.target, node.facts())
    (node.host.root / GUC).write_bytes(b"updated by an operator")
    node.engine().undo()
    assert (node.host.root / GUC).read_bytes() == b"updated by an operator"
    assert "var/lib/firmware/testgpu/testgpu_huc_1.0.bin" not in snapshot(node.host)["files"]


def test_an_identical_file_placed_by_someone_else_is_left_alone(node: Node) -> None:
    blob = (node.target.tree.root / "firmware/testgpu/testgpu_guc_1.0.bin").read_bytes()
    node.host.write(GUC, blob)
    node.engine().apply(node.target, node.facts())
    journal = json.loads((node.host.paths.state_dir / "journal.json").read_text())
    assert [c["data"]["path"] for c in journal["changes"] if c["kind"] == "firmware_file"] == [
        "/var/lib/firmware/testgpu/testgpu_huc_1.0.bin"
    ], "the node's own path, whatever the host root"
    node.engine().undo()
    assert (node.host.root / GUC).read_bytes() == blob


def test_the_path_is_written_without_newline_and_reset_with_a_nul(tmp_path: Path) -> None:
    host = HostPaths(tmp_path)
    host.firmware_class_path.parent.mkdir(parents=True)
    host.firmware_class_path.write_text("\n")
    write_path(host.firmware_class_path, "/var/lib/firmware")
    assert host.firmware_class_path.read_bytes() == b"/var/lib/firmware"
    write_path(host.firmware_class_path, "")
    # sysfs ignores an empty write; one NUL byte empties the parameter (checked on the real kernel).
    assert host.firmware_class_path.read_bytes() == b"\x00"
    assert read_firmware_path(host) == ""


def test_labels_are_a_no_op_outside_a_cluster() -> None:
    assert isinstance(labeler_for(None), NoLabels)
    assert isinstance(labeler_for("node-1"), ApiServerLabels)


def test_the_label_is_patched_on_the_node_with_the_token(tmp_path: Path) -> None:
    seen: list[tuple[str, str, str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_PATCH(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((self.path, self.headers["Authorization"], self.headers["Content-Type"], body))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    (tmp_path / "token").write_text("secret-token\n")
    try:
        labels = ApiServerLabels(
            node="gpu-node-1",
            server=f"http://127.0.0.1:{server.server_address[1]}",
            token_file=tmp_path / "token",
            ca_file=tmp_path / "ca.crt",
        )
        labels.publish("ready")
        labels.publish("ready")  # unchanged: not sent again
    finally:
        server.shutdown()
        server.server_close()
    assert len(seen) == 1
    path, auth, content_type, body = seen[0]
    assert path == "/api/v1/nodes/gpu-node-1"
    assert auth == "Bearer secret-token"
    assert content_type == "application/merge-patch+json"
    assert json.loads(body) == {"metadata": {"labels": {LABEL: "ready"}}}
