"""A deadline for a whole outbound HTTP call: name resolution, connect, TLS,
sending, the response headers and the body.

requests' timeouts bound the connection and every single read, so a server
that trickles its headers or its body a byte at a time is never cut off, and
a name that does not resolve holds the caller for as long as the system's
resolver likes.  A :class:`Deadline` is made for one call and made current in
the calling thread (:meth:`Deadline.active`); the connections of
:mod:`rucio_rd.http` then

- resolve names through :func:`resolve`, which gives up at the deadline,
- connect within what is left of it, and
- hand every socket they use to :meth:`Deadline.watch`; at the deadline the
  watched sockets are shut down, which wakes any blocked read or write.

The caller sees :attr:`Deadline.expired` and reports a timeout.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Deadline", "ResolveTimeout", "resolve"]

# Name resolutions left running after their deadline (getaddrinfo cannot be
# interrupted) are bounded, so a dead resolver cannot pile up threads.
MAX_PENDING_RESOLUTIONS = 8
_pending = threading.BoundedSemaphore(MAX_PENDING_RESOLUTIONS)
_local = threading.local()

AddressInfo = tuple[int, int, int, str, tuple]


class ResolveTimeout(OSError):
    """A name was not resolved in time (or too many resolutions are hanging)."""


def resolve(host: str, port: int, seconds: float) -> list[AddressInfo]:
    """``socket.getaddrinfo`` for a TCP connection, given up after ``seconds``.

    Numeric addresses are answered at once; names are resolved in a helper
    thread, which is abandoned (and finishes on its own) when time is up.

    Raises
    ------
    ResolveTimeout
        When time is up, or :data:`MAX_PENDING_RESOLUTIONS` are already hanging.
    OSError
        When the name does not resolve (``socket.gaierror``).
    """
    try:
        return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
    except socket.gaierror:
        pass  # a name: resolve it in a helper thread
    if seconds <= 0:
        raise ResolveTimeout(f"no time left to resolve {host}")
    if not _pending.acquire(blocking=False):
        raise ResolveTimeout(f"cannot resolve {host}: {MAX_PENDING_RESOLUTIONS} name"
                             " resolutions are already hanging")
    outcome: dict[str, object] = {}
    done = threading.Event()

    def run() -> None:
        try:
            outcome["addresses"] = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        except OSError as exc:
            outcome["error"] = exc
        finally:
            _pending.release()
            done.set()

    threading.Thread(target=run, name=f"resolve {host}", daemon=True).start()
    if not done.wait(seconds):
        raise ResolveTimeout(f"resolving {host} took more than {seconds:.3g} s")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["addresses"]  # type: ignore[return-value]


class Deadline:
    """The end of one outbound call; shuts its sockets down when it comes.

    The sockets are watched through duplicates of their descriptors, taken when
    they are handed over, so that the deadline can never touch a descriptor that
    has meanwhile been closed and reused.  Use it as a context manager, or call
    :meth:`close` when the call is over.

    A deadline made current inside another one ends no later than it: an
    operation of several calls (a token, then the listing) gets one budget.
    """

    def __init__(self, seconds: float) -> None:
        outer = Deadline.current()
        if outer is not None:
            seconds = min(seconds, outer.remaining())
        self.seconds = seconds
        self.ends = time.monotonic() + seconds
        self.expired = False
        self._lock = threading.Lock()
        # Keyed by the socket itself (device, inode), not by its descriptor's number,
        # which a closed socket hands on to the next one.
        self._watched: dict[tuple[int, int], socket.socket] = {}
        self._timer = threading.Timer(max(0.0, seconds), self._fire)
        self._timer.daemon = True
        self._timer.start()

    @staticmethod
    def current() -> Deadline | None:
        """The deadline active in this thread, if any."""
        return getattr(_local, "deadline", None)

    @contextmanager
    def active(self) -> Iterator[Deadline]:
        """Make this the current thread's deadline for the duration; close it afterwards."""
        previous = Deadline.current()
        _local.deadline = self
        try:
            yield self
        finally:
            _local.deadline = previous
            self.close()

    def remaining(self) -> float:
        """Seconds left, never below 0."""
        return max(0.0, self.ends - time.monotonic())

    def watch(self, sock: socket.socket) -> None:
        """Shut ``sock`` down at the deadline (at once, if it has passed)."""
        try:
            fileno = sock.fileno()
            if fileno < 0:
                return
            status = os.fstat(fileno)
        except OSError:
            return
        key = (status.st_dev, status.st_ino)
        with self._lock:
            if key in self._watched:
                return
            try:
                copy = socket.socket(fileno=os.dup(fileno))
            except OSError:
                return
            self._watched[key] = copy
            if self.expired:
                self._shut(copy)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _fire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._watched.values():
                self._shut(sock)

    def close(self) -> None:
        """Stop the timer and let go of the watched sockets (the originals stay open)."""
        self._timer.cancel()
        with self._lock:
            for sock in self._watched.values():
                sock.close()
            self._watched.clear()
