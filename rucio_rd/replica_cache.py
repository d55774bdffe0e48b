"""A short-lived memory of files' replicas, so that a popular file costs Rucio
one ``replicas/list`` per few seconds instead of one per request.

Only files Rucio listed are kept (a file not found may be registered the next
moment); entries live ``ttl`` seconds, the oldest go first beyond
``max_entries``, and :meth:`ReplicaCache.clear` forgets everything (the
resolver does so when Rucio fails, as its state is then unknown).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

from rucio_rd.model import FileReplicas, ReplicaListing

__all__ = ["ReplicaCache"]


class ReplicaCache:
    """Files' replicas for ``ttl`` seconds; ``ttl=0`` keeps nothing."""

    def __init__(self, ttl: float, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not ttl >= 0:
            raise ValueError(f"ttl={ttl!r} must be a number of seconds >= 0")
        if max_entries < 1:
            raise ValueError(f"max_entries={max_entries!r} must be 1 or more")
        self.ttl = float(ttl)
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[float, FileReplicas]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def split(self, dids: Sequence[str]) -> tuple[dict[str, FileReplicas], list[str]]:
        """The DIDs' cached replicas, and the DIDs to ask Rucio for (in order)."""
        if not self.ttl:
            return {}, list(dids)
        known: dict[str, FileReplicas] = {}
        ask: list[str] = []
        now = self._clock()
        with self._lock:
            for did in dids:
                entry = self._entries.get(did)
                if entry is not None and now - entry[0] < self.ttl:
                    known[did] = entry[1]
                else:
                    if entry is not None:
                        del self._entries[did]
                    ask.append(did)
        return known, ask

    def put(self, found: Iterable[FileReplicas]) -> None:
        """Remember files Rucio has just listed."""
        if not self.ttl:
            return
        now = self._clock()
        with self._lock:
            for replicas in found:
                self._entries[replicas.did] = (now, replicas)
                self._entries.move_to_end(replicas.did)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def listing(self, dids: Sequence[str],
                ask: Callable[[list[str]], ReplicaListing]) -> ReplicaListing:
        """The replicas of ``dids``: cached files from memory, the rest from ``ask``."""
        known, missing_here = self.split(dids)
        if not missing_here:
            return ReplicaListing(found=known, missing=frozenset())
        fresh = ask(missing_here)
        self.put(fresh.found.values())
        return ReplicaListing(found={**known, **fresh.found}, missing=fresh.missing)
