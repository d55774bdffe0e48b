"""A site catalogue kept for a time-to-live, surviving outages of its source.

The DataLink service reads its site information through one
:class:`CachedSiteSource` per process: fresh copies are fetched at most once
per TTL, and a source that fails leaves the last good copy in service.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from rucio_rd.http import scrub
from rucio_rd.model import SiteCatalogue
from rucio_rd.sites import SiteSourceError

__all__ = ["CachedSiteSource"]

log = logging.getLogger("rucio_rd.sites")


class CachedSiteSource:
    """A catalogue kept for a time-to-live, surviving outages of its source.

    ``get()`` returns the cached catalogue while it is younger than ``ttl``
    and fetches a new one otherwise.  If that fetch fails the last good copy
    is served (with a warning in the log) and no new attempt is made for
    ``retry_after`` seconds, so a dead directory is not hammered by every
    request.  Only one thread fetches at a time; the others get the current
    copy meanwhile (or, before there is any copy, wait for the first fetch).

    Parameters
    ----------
    fetch : callable
        Returns a fresh :class:`SiteCatalogue`, e.g. ``SiteDirectoryClient.fetch``.
    ttl : float
        Seconds a catalogue is used before it is refreshed.
    clock : callable
        Monotonic seconds; replaceable in tests.
    retry_after : float
        Seconds to wait after a failed fetch before trying again.
    first_wait : float
        The longest a request waits for the very first copy.
    """

    def __init__(self, fetch: Callable[[], SiteCatalogue], ttl: float,
                 clock: Callable[[], float] = time.monotonic, retry_after: float = 30.0,
                 first_wait: float = 2.0) -> None:
        for name, value in (("ttl", ttl), ("retry_after", retry_after),
                            ("first_wait", first_wait)):
            if not (isinstance(value, int | float) and value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name}={value!r} must be a number of seconds >= 0")
        self._fetch = fetch
        self._ttl = float(ttl)
        self._retry_after = float(retry_after)
        self._clock = clock
        self._refresh_lock = threading.Lock()
        self._catalogue: SiteCatalogue | None = None
        self._fetched_at: float | None = None
        self._failed_at: float | None = None
        self._last_error: str | None = None
        self._first_wait = float(first_wait)
        self._first_lock = threading.Lock()
        self._first: Future[SiteCatalogue] | None = None
        self._first_waited_out: Future[SiteCatalogue] | None = None

    @property
    def age(self) -> float | None:
        """Seconds since the current catalogue was fetched; None before the first."""
        fetched_at = self._fetched_at
        return None if fetched_at is None else self._clock() - fetched_at

    @property
    def last_error(self) -> str | None:
        """Why the latest fetch failed; None if it succeeded (or none was made)."""
        return self._last_error

    def _waiting_for_retry(self, now: float) -> bool:
        return self._failed_at is not None and now - self._failed_at < self._retry_after

    def _is_fresh(self, now: float) -> bool:
        return self._fetched_at is not None and now - self._fetched_at < self._ttl

    def get(self) -> SiteCatalogue:
        """The current catalogue, refreshed if it is older than the TTL.

        Raises
        ------
        SiteSourceError
            If there has never been a good copy and the source fails (or
            failed less than ``retry_after`` seconds ago, or has not answered
            within ``first_wait``).
        """
        catalogue = self._catalogue
        if catalogue is None:
            return self._first_copy()
        now = self._clock()
        if self._is_fresh(now) or self._waiting_for_retry(now):
            return catalogue
        if not self._refresh_lock.acquire(blocking=False):
            return catalogue  # another thread is refreshing
        try:
            return self._refresh()
        finally:
            self._refresh_lock.release()

    def _first_copy(self) -> SiteCatalogue:
        """Wait at most ``first_wait`` for the first fetch, started here if none runs.

        Once a request has waited that long for a fetch, later ones do not wait
        for the same fetch at all: they fail at once until it ends.
        """
        with self._first_lock:
            future = self._first
            if future is None or future.done():
                future = self._first = Future()
                threading.Thread(target=self._fetch_first, args=(future,), daemon=True,
                                 name="rucio_rd first site fetch").start()
            patience = 0.0 if self._first_waited_out is future else self._first_wait
        try:
            return future.result(timeout=patience)
        except FutureTimeout:
            self._first_waited_out = future
            raise SiteSourceError(
                f"no site information yet: the site source has not answered within"
                f" {self._first_wait:g} s (it is still being asked)") from None

    def _fetch_first(self, future: Future[SiteCatalogue]) -> None:
        with self._refresh_lock:
            try:
                future.set_result(self._catalogue or self._refresh())
            except BaseException as exc:  # noqa: BLE001 (handed to the waiting requests)
                future.set_exception(exc)

    def _refresh(self) -> SiteCatalogue:
        """Fetch unless another thread just did; called with the refresh lock held."""
        now = self._clock()
        catalogue = self._catalogue
        if catalogue is not None and (self._is_fresh(now) or self._waiting_for_retry(now)):
            return catalogue
        if catalogue is None and self._waiting_for_retry(now):
            wait = self._retry_after - (now - (self._failed_at or now))
            raise SiteSourceError(
                f"no site information yet: {self._last_error}; next attempt in {wait:.0f} s"
            )
        try:
            fresh = self._fetch()
            if not isinstance(fresh, SiteCatalogue):
                raise TypeError(f"the site source returned {type(fresh).__name__}, "
                                "not a SiteCatalogue")
        except Exception as exc:  # noqa: BLE001 (any failure must leave the last copy in service)
            self._failed_at = self._clock()
            self._last_error = scrub(str(exc)) or type(exc).__name__
            if catalogue is None:
                raise SiteSourceError(
                    f"no site information: {self._last_error}; "
                    f"next attempt in {self._retry_after:.0f} s"
                ) from exc
            log.warning(
                "site information could not be refreshed (%s); serving the copy from %.0f s "
                "ago, next attempt in %.0f s", self._last_error, self.age or 0.0, self._retry_after,
            )
            return catalogue
        self._catalogue = fresh
        self._fetched_at = self._clock()
        self._failed_at = None
        self._last_error = None
        return fresh
