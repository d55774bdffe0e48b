"""The DataLink service's VOSI availability: can it reach Rucio with its credentials?

DaCHS answers ``/rucio/rucio/dl/availability`` with ``available`` true unless
told otherwise; :class:`Availability` tells it.  The service is down when
its configuration is unusable, when Rucio cannot be reached, or when Rucio
refuses the service's credentials, which is when every DataLink request would
fail.  Probes are cached (``ttl`` seconds) so that monitors polling the
endpoint do not turn into load on Rucio; only one probe runs at a time.

The notes are for the public: they say what is wrong without internal
details (URLs, error texts), which go to the log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from rucio_rd.checks import RUCIO_REFUSES, RUCIO_UNREACHABLE, RUCIO_USABLE

__all__ = ["BEING_CHECKED", "MISCONFIGURED", "PUBLIC_NOTES", "Availability"]

log = logging.getLogger("rucio_rd.availability")

#: The state of a service whose configuration cannot be used.
MISCONFIGURED = "misconfigured"
#: The note while the very first probe takes longer than ``first_wait``.
BEING_CHECKED = "The service's connection to Rucio is being checked; ask again shortly."

#: What the availability note says per state (those of :func:`rucio_rd.checks.rucio_state`
#: and :data:`MISCONFIGURED`); only the first means available.
PUBLIC_NOTES = {
    RUCIO_USABLE: "Rucio answers and accepts this service's credentials.",
    RUCIO_REFUSES: "Rucio refuses this service's credentials; the operator has been told.",
    RUCIO_UNREACHABLE: "Rucio cannot be reached at the moment.",
    MISCONFIGURED: "The service is misconfigured; the operator has been told.",
}


class Availability:
    """A cached answer to "is the DataLink service usable?".

    Parameters
    ----------
    probe
        Returns ``(state, detail)``: a key of :data:`PUBLIC_NOTES` and what
        to log for the operator.  It may block up to its own timeouts.
    ttl
        Seconds a probe's answer is reused.
    clock
        Monotonic seconds; replaceable in tests.
    first_wait
        The longest a caller waits for the very first probe (then: unavailable,
        "being checked").
    """

    def __init__(self, probe: Callable[[], tuple[str, str]], ttl: float = 30.0,
                 clock: Callable[[], float] = time.monotonic, first_wait: float = 2.0) -> None:
        self._probe = probe
        self._first_wait = first_wait
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._answer: tuple[bool, str] | None = None
        self._probed_at = 0.0

    def current(self) -> tuple[bool, str]:
        """``(available, public note)``, probing when the last answer is too old.

        While one caller probes, the others get the last answer at once (for
        the very first probe they wait at most ``first_wait``), so that a Rucio
        that hangs holds one of the server's threads here, not one per monitor.
        """
        answer = self._answer
        if answer is not None and not self._stale():
            return answer
        if answer is None:
            if not self._lock.acquire(timeout=self._first_wait):
                return False, BEING_CHECKED
        elif not self._lock.acquire(blocking=False):
            return answer  # another caller is probing
        try:
            if self._answer is None or self._stale():
                self._answer = self._run_probe()
                self._probed_at = self._clock()
            return self._answer
        finally:
            self._lock.release()

    def _stale(self) -> bool:
        return self._clock() - self._probed_at >= self._ttl

    def _run_probe(self) -> tuple[bool, str]:
        try:
            state, detail = self._probe()
        except Exception as exc:  # noqa: BLE001 - an unexpected failure is "down"
            state, detail = RUCIO_UNREACHABLE, f"{type(exc).__name__}: {exc}"
        if state not in PUBLIC_NOTES:
            state, detail = RUCIO_UNREACHABLE, f"unknown state {state!r}: {detail}"
        if state != RUCIO_USABLE:
            log.warning("DataLink service unavailable: %s", detail)
        return state == RUCIO_USABLE, PUBLIC_NOTES[state]
