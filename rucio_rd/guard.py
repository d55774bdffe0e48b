"""What keeps one slow back end from taking the whole server down with it.

DaCHS serves every request, cone search and TAP included, from one pool of
threads (10).  A DataLink request waiting on Rucio holds one of them, so:

- :class:`Slots` bounds how many requests may wait on a back end at once;
  a request that finds them all taken by calls that are stuck is answered at
  once (:class:`Busy`) instead of queueing for a thread (while the calls make
  progress, it waits a moment for a slot);
- :class:`CircuitBreaker` remembers that a back end has failed several calls
  in a row and makes further calls fail at once (:class:`CircuitOpen`) until
  a single probe, some seconds later, finds it answering again.

Both are thread-safe, keep no data of the requests, and do no I/O.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["Busy", "CircuitBreaker", "CircuitOpen", "Slots"]


class Busy(RuntimeError):
    """Every slot is taken: the caller should answer "try again shortly" at once."""


class CircuitOpen(RuntimeError):
    """The back end failed too often lately; ``retry_in`` seconds until it is probed."""

    def __init__(self, message: str, retry_in: float) -> None:
        super().__init__(message)
        self.retry_in = retry_in


class Slots:
    """At most ``count`` holders at once; 0 means no limit.

    When all slots are taken, ``take()`` waits for one only while the holders
    are making progress, i.e. a slot has changed hands within the last
    ``patience`` seconds (normal Rucio calls take tens of milliseconds), and
    for at most ``patience`` seconds.  When the holders are stuck (no slot
    has changed hands for ``patience`` seconds: a back end that hangs), it
    raises :class:`Busy` at once, so that requests never queue for the
    server's threads behind a dead back end.  At most a third of ``count``
    requests (at least one) wait at a time; more are turned away at once, so
    that holders and waiters together stay a bounded share of the threads.
    """

    def __init__(self, count: int, patience: float = 1.0) -> None:
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"count={count!r} must be a whole number >= 0")
        self.count = count
        self.patience = patience
        self._free = threading.BoundedSemaphore(count) if count else None
        self._lock = threading.Lock()
        self._holders: dict[int, float] = {}  # holder -> when it took its slot
        self._serial = 0
        self._last_release = float("-inf")
        self.max_waiting = max(1, count // 3)
        self._waiting = 0

    @property
    def taken(self) -> int:
        """How many slots are held now."""
        return len(self._holders)

    def _stuck(self) -> bool:
        """Whether no slot has changed hands for ``patience`` seconds."""
        with self._lock:
            if not self._holders:
                return False
            progress = max(self._last_release, *self._holders.values())
        return time.monotonic() - progress >= self.patience

    def _acquire(self, what: str) -> None:
        if self._free is None or self._free.acquire(blocking=False):
            return
        with self._lock:
            if self._waiting >= self.max_waiting:
                raise Busy(f"all {self.count} requests allowed to wait on {what} at once"
                           f" are waiting, and {self._waiting} more wait for them")
            self._waiting += 1
        try:
            gives_up = time.monotonic() + self.patience
            while not self._stuck() and time.monotonic() < gives_up:
                if self._free.acquire(timeout=min(0.02, max(0.0, gives_up - time.monotonic()))):
                    return
        finally:
            with self._lock:
                self._waiting -= 1
        raise Busy(f"all {self.count} requests allowed to wait on {what} at once are"
                   " waiting" + (" and stuck" if self._stuck() else ""))

    @contextmanager
    def take(self, what: str = "a back end") -> Iterator[None]:
        """Hold a slot for the ``with`` block; :class:`Busy` (naming ``what``) if none."""
        self._acquire(what)
        with self._lock:
            self._serial += 1
            holder = self._serial
            self._holders[holder] = time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                del self._holders[holder]
                self._last_release = time.monotonic()
            if self._free is not None:
                self._free.release()


class CircuitBreaker:
    """Closed while calls succeed; open after ``failures`` failed calls in a row.

    While open, :meth:`check` raises :class:`CircuitOpen` at once.  After
    ``retry_after`` seconds one caller is let through as a probe (the others
    still fail at once); its success closes the circuit, its failure opens it
    for another ``retry_after``.  ``failures=0`` never opens it.

    The caller reports each call it was let through for with :meth:`record`.
    """

    def __init__(self, name: str, failures: int = 3, retry_after: float = 15.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if isinstance(failures, bool) or not isinstance(failures, int) or failures < 0:
            raise ValueError(f"failures={failures!r} must be a whole number >= 0")
        if not retry_after >= 0:
            raise ValueError(f"retry_after={retry_after!r} must be a number of seconds >= 0")
        self.name = name
        self.failures = failures
        self.retry_after = float(retry_after)
        self._clock = clock
        self._lock = threading.Lock()
        self._in_a_row = 0
        self._opened_at: float | None = None
        self._probing = False
        self.last_failure: str | None = None

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    def check(self) -> bool:
        """Return if a call may be made now; raise :class:`CircuitOpen` if not.

        Returns True when the call is the probe of an open circuit (hand it to
        :meth:`record`).
        """
        with self._lock:
            if self._opened_at is None:
                return False
            waited = self._clock() - self._opened_at
            if waited >= self.retry_after and not self._probing:
                self._probing = True  # this caller probes; the others keep failing fast
                return True
            retry_in = max(0.0, self.retry_after - waited)
            raise CircuitOpen(
                f"{self.name} failed {self._in_a_row} calls in a row; it is asked again"
                f" in {retry_in:.0f} s", retry_in)

    def record(self, ok: bool, failure: str | None = None, probe: bool = False) -> str | None:
        """Report how a call let through by :meth:`check` ended (``probe``: what
        :meth:`check` returned for it).

        Returns ``"opened"`` or ``"closed"`` when this report changed the
        circuit's state (for the caller to log), else None.
        """
        with self._lock:
            if probe or ok:  # the probe is back, or the circuit closes anyway
                self._probing = False
            was_open = self._opened_at is not None
            if ok:
                self._in_a_row = 0
                self._opened_at = None
                return "closed" if was_open else None
            self._in_a_row += 1
            self.last_failure = failure
            if was_open and not probe:
                return None  # a call from before the opening: the period stands
            if self.failures and self._in_a_row >= self.failures:
                self._opened_at = self._clock()
                return None if was_open else "opened"
            return None
