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

__all__ = ["Availability", "PUBLIC_NOTES"]

log = logging.getLogger("rucio_rd.availability")

#: What the availability note says per state of :func:`rucio_rd.checks.rucio_state`.
PUBLIC_NOTES = {
    "usable": "Rucio answers and accepts this service's credentials.",
    "refuses": "Rucio refuses this service's credentials; the operator has been told.",
    "unreachable": "Rucio cannot be reached at the moment.",
    "misconfigured": "The service is misconfigured; the operator has been told.",
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
    """

    def __init__(self, probe: Callable[[], tuple[str, str]], ttl: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._probe = probe
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._answer: tuple[bool, str] | None = None
        self._probed_at = 0.0

    def current(self) -> tuple[bool, str]:
        """``(available, public note)``, probing when the last answer is too old."""
        with self._lock:
            if self._answer is None or self._clock() - self._probed_at >= self._ttl:
                try:
                    state, detail = self._probe()
                except Exception as exc:  # noqa: BLE001 - an unexpected failure is "down"
                    state, detail = "unreachable", f"{type(exc).__name__}: {exc}"
                if state not in PUBLIC_NOTES:
                    state, detail = "unreachable", f"unknown state {state!r}: {detail}"
                if state != "usable":
                    log.warning("DataLink service unavailable: %s", detail)
                self._answer = (state == "usable", PUBLIC_NOTES[state])
                self._probed_at = self._clock()
            return self._answer
