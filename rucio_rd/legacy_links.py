"""Keeps the standalone prototype's DataLink URLs working by redirecting them to DaCHS.

The prototype answered ``/links?id=scope:name&...`` (and ``/rucio/links``
behind the SKA proxy) on a host of its own.  DaCHS cannot serve that path
beside ``/rucio/rucio/...`` (it would take ``rucio`` for an RD id), so the
old host runs this small redirector instead: every request to ``/links`` or
``/rucio/links`` gets a 307 to ``<target>/rucio/rucio/dl/dlmeta`` with the
query string unchanged (pyvo, TOPCAT and browsers follow it).  A reverse
proxy rule does the same; see the README.

It only redirects: it never calls Rucio or DaCHS and keeps no state.
"""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from rucio_rd.serving import serve_until_terminated

__all__ = ["LEGACY_PATHS", "make_server", "redirect_location"]

LEGACY_PATHS = ("/links", "/rucio/links")
DATALINK_PATH = "/rucio/rucio/dl/dlmeta"


def redirect_location(target: str, request_path: str) -> str | None:
    """Where a request for ``request_path`` goes, or None if it is not a legacy URL."""
    parsed = urllib.parse.urlsplit(request_path)
    if parsed.path.rstrip("/") not in LEGACY_PATHS:
        return None
    location = target.rstrip("/") + DATALINK_PATH
    if parsed.query:
        location += "?" + parsed.query
    return location


def make_server(target: str, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            location = redirect_location(target, self.path)
            if location is None:
                body = b"Not found: the prototype's DataLink URL is /rucio/links?id=scope:name\n"
                self.send_response(404)
            else:
                body = f"Moved to {location}\n".encode()
                self.send_response(307)
                self.send_header("Location", location)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_POST = do_HEAD = _answer  # noqa: N815 (http.server's naming)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="the DaCHS server, e.g. http://localhost:8080")
    parser.add_argument("--port", type=int, default=10000)
    parser.add_argument("--bind", default="127.0.0.1")
    args = parser.parse_args(argv)
    return serve_until_terminated(make_server(args.target, args.port, args.bind))


if __name__ == "__main__":
    sys.exit(main())
