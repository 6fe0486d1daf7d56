"""Runs INSIDE the test VM: a stand-in for the API server's node PATCH, over HTTPS, recording each body.

argv: folder, server certificate, key, port. Each PATCH /api/v1/nodes/<name> with the bearer token is
answered 200 and its JSON body appended to <folder>/patches.jsonl; <folder>/ready appears once it listens.
"""

from __future__ import annotations

import http.server
import ssl
import sys
from pathlib import Path

FOLDER, CERT, KEY, PORT = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])


class Handler(http.server.BaseHTTPRequestHandler):
    def do_PATCH(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        authorized = self.headers.get("Authorization") == "Bearer kmm-replay-token"
        merge = self.headers.get("Content-Type") == "application/merge-patch+json"
        if not (authorized and merge and self.path.startswith("/api/v1/nodes/")):
            self.send_response(403)
            self.end_headers()
            return
        with (FOLDER / "patches.jsonl").open("ab") as out:
            out.write(body + b"\n")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        return


server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(CERT, KEY)
server.socket = context.wrap_socket(server.socket, server_side=True)
(FOLDER / "ready").write_text("")
server.serve_forever()
