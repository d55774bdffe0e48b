"""A deadline for a whole HTTP answer, not just for each read.

requests' timeouts bound the connection and every single read, so a server
that trickles its body a byte at a time is never cut off.  :class:`Watchdog`
shuts the response's socket down at a deadline, which wakes the blocked read;
the caller then sees ``expired`` and reports a timeout.
"""

from __future__ import annotations

import os
import socket
import threading

import requests

__all__ = ["Watchdog"]


class Watchdog:
    """Shuts a response's socket down at a deadline, which wakes a blocked read.

    It works on a duplicate of the socket's descriptor, taken before the read, so
    that it can never touch a descriptor that has meanwhile been closed and reused.
    """

    def __init__(self) -> None:
        self.expired = False
        self._timer: threading.Timer | None = None
        self._sock: socket.socket | None = None

    def start(self, resp: requests.Response, seconds: float) -> None:
        try:
            self._sock = socket.socket(fileno=os.dup(resp.raw.fileno()))
        except (OSError, AttributeError, ValueError):
            return  # no socket left: the body has already been read
        self._timer = threading.Timer(max(0.0, seconds), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        self.expired = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
        except OSError:
            pass

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer.join()
        if self._sock is not None:
            self._sock.close()
