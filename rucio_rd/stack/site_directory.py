"""A stand-in for the SKA site directory, answering its real API shapes.

The SKA site directory has no public package, so the demo and the tests run
this small HTTP server instead.  It serves, from a JSON file shaped like
``res/site-directory.json``:

- ``GET /storages/grafana``: a list with one entry per RSE, each with
  ``name``, ``latitude`` and ``longitude`` (and the other storage fields);
- ``GET /services``: a list of sites, each ``{"name", "services": [...]}``
  where a service is an RSE (``type`` "Rucio Storage Element (RSE)",
  ``identifier``) or a SODA service (``type`` "SODA (sync)"/"SODA (async)",
  ``prefix``, ``host``, ``port``, ``path``, ``other_attributes``);
- ``GET /ping``: ``{"status": "ok"}``.

It never writes anything.  Unknown paths get 404 with a JSON error body.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from rucio_rd.serving import serve_until_terminated
from rucio_rd.stack.process import ServerProcess

__all__ = ["load_directory", "make_server", "site_directory_process"]

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO / "res" / "site-directory.json"


def load_directory(path: Path) -> dict[str, Any]:
    """Read and check the stand-in's content file."""
    document = json.loads(Path(path).read_text())
    if not isinstance(document, dict):
        raise ValueError(f"{path}: must hold a JSON object with 'storages' and 'services'")
    for key in ("storages", "services"):
        if not isinstance(document.get(key), list):
            raise ValueError(f"{path}: '{key}' must be a list")
    return document


def make_server(data: dict[str, Any], port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """An HTTP server answering the site-directory endpoints from ``data``."""
    routes = {
        "/storages/grafana": data["storages"],
        "/services": data["services"],
        "/ping": {"status": "ok"},
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0].rstrip("/") or "/"
            if path in routes:
                self._send(200, routes[path])
            else:
                self._send(404, {"detail": f"no such endpoint: {path}"})

        def _send(self, status: int, body: Any) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def serve_in_thread(data: dict[str, Any], port: int) -> ThreadingHTTPServer:
    """Start the stand-in in a daemon thread of this process (for unit tests)."""
    server = make_server(data, port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def site_directory_process(
    workdir: Path, port: int = 18200, data: Path = DEFAULT_DATA
) -> ServerProcess:
    """The stand-in as a background process of its own (demo, integration tests)."""
    return ServerProcess("site-directory", "rucio_rd.stack.site_directory", Path(workdir), port,
                         ["--data", str(data)], probe_path="/ping")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="SKA site-directory stand-in")
    parser.add_argument("--port", type=int, default=18200)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args(argv)
    return serve_until_terminated(make_server(load_directory(args.data), args.port))


if __name__ == "__main__":
    sys.exit(main())
