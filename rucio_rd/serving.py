"""Running one of the package's small http.server-based servers in the foreground."""

from __future__ import annotations

import signal
import sys
from http.server import HTTPServer

__all__ = ["serve_until_terminated"]


def serve_until_terminated(server: HTTPServer) -> int:
    """Serve until SIGTERM or Ctrl-C, then close the socket; returns an exit status."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
