"""Unit tests for rucio_rd.guard (slots, circuit breaker) and rucio_rd.replica_cache,
and for how the resolver uses them when Rucio is slow, down or busy."""

from __future__ import annotations

import threading
import time

import pytest
from fakes import CATALOGUE, FILES, FakeRucio, located, resolver

from rucio_rd.guard import Busy, CircuitBreaker, CircuitOpen, Slots
from rucio_rd.links import DatalinkRequest, Fault, LinkFault, LinkSet
from rucio_rd.model import FileReplicas, ReplicaListing
from rucio_rd.replica_cache import ReplicaCache
from rucio_rd.rucio import RucioAuthError, RucioUnavailable
from rucio_rd.site_cache import CachedSiteSource
from rucio_rd.sites import SiteSourceError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# -- slots -----------------------------------------------------------------------------


def test_slots_turn_the_extra_holder_away_at_once_when_the_holders_are_stuck() -> None:
    slots = Slots(2, patience=1.0)
    with slots.take(), slots.take():
        assert slots.taken == 2
        time.sleep(1.05)  # no slot has changed hands for longer than patience
        started = time.monotonic()
        with pytest.raises(Busy, match="all 2 requests .* waiting and stuck"), \
                slots.take("Rucio"):
            pass
        assert time.monotonic() - started < 0.5  # at once, not after patience
    assert slots.taken == 0
    with slots.take():
        pass


def test_while_the_holders_make_progress_a_request_waits_for_a_slot() -> None:
    slots = Slots(1, patience=2.0)
    took = threading.Event()

    def quick_holder() -> None:
        with slots.take():
            took.set()
            time.sleep(0.1)  # a normal back-end call

    thread = threading.Thread(target=quick_holder)
    thread.start()
    took.wait(1)
    started = time.monotonic()
    with slots.take():
        waited = time.monotonic() - started
    thread.join()
    assert 0.03 < waited < 1.0


def test_one_slow_call_among_quick_ones_does_not_make_the_slots_stuck() -> None:
    # Slots change hands (quick calls) while one call is slow: the next request
    # waits for a slot instead of being turned away.
    slots = Slots(2, patience=0.2)
    stop, took = threading.Event(), threading.Event()

    def slow() -> None:
        with slots.take():
            took.set()
            stop.wait(5)

    def quick() -> None:
        while not stop.is_set():
            with slots.take():
                time.sleep(0.03)
            time.sleep(0.01)  # leaves the freed slot to a waiting request

    threads = [threading.Thread(target=slow), threading.Thread(target=quick)]
    threads[0].start()
    took.wait(1)
    threads[1].start()
    time.sleep(0.4)  # the slow call is older than patience by now
    try:
        with slots.take():
            pass
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)


def test_a_waiting_request_gives_up_after_patience() -> None:
    slots = Slots(1, patience=0.2)
    release = threading.Event()
    took = threading.Event()

    def holder() -> None:
        with slots.take():
            took.set()
            release.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    took.wait(1)
    started = time.monotonic()
    with pytest.raises(Busy):
        with slots.take():
            pass
    elapsed = time.monotonic() - started
    release.set()
    thread.join()
    assert 0.15 < elapsed < 0.5


def test_at_most_a_third_of_the_slots_wait_and_more_are_turned_away_at_once() -> None:
    slots = Slots(3, patience=2.0)
    release = threading.Event()
    waiting = threading.Event()

    def hold() -> None:
        with slots.take():
            release.wait(5)

    def wait_for_a_slot() -> None:
        waiting.set()
        with slots.take():
            pass

    holders = [threading.Thread(target=hold) for _ in range(3)]
    for thread in holders:
        thread.start()
    while slots.taken < 3:
        time.sleep(0.01)
    waiter = threading.Thread(target=wait_for_a_slot)
    waiter.start()
    waiting.wait(1)
    time.sleep(0.05)
    started = time.monotonic()
    with pytest.raises(Busy, match="1 more wait"), slots.take():
        pass
    assert time.monotonic() - started < 0.5
    release.set()
    for thread in [*holders, waiter]:
        thread.join(5)


def test_a_slot_is_freed_when_its_holder_fails() -> None:
    slots = Slots(1)
    with pytest.raises(ValueError), slots.take():
        raise ValueError("boom")
    with slots.take():
        assert slots.taken == 1


def test_zero_slots_means_no_limit() -> None:
    slots = Slots(0)
    with slots.take(), slots.take(), slots.take():
        assert slots.taken == 3


@pytest.mark.parametrize("count", [-1, 1.5, True])
def test_slots_refuse_bad_counts(count) -> None:
    with pytest.raises(ValueError):
        Slots(count)


# -- circuit breaker -------------------------------------------------------------------


def test_the_circuit_opens_after_failures_in_a_row_and_fails_fast() -> None:
    clock = Clock()
    breaker = CircuitBreaker("Rucio", failures=3, retry_after=10, clock=clock)
    for _ in range(2):
        breaker.check()
        assert breaker.record(False, "timeout") is None
    breaker.check()
    assert breaker.record(False, "timeout") == "opened"
    assert breaker.is_open
    clock.now += 4
    with pytest.raises(CircuitOpen, match="Rucio failed 3 calls in a row; .* in 6 s") as info:
        breaker.check()
    assert info.value.retry_in == pytest.approx(6)


def test_a_success_between_failures_keeps_it_closed() -> None:
    breaker = CircuitBreaker("Rucio", failures=2, retry_after=10, clock=Clock())
    breaker.record(False)
    breaker.record(True)
    breaker.record(False)
    breaker.check()
    assert not breaker.is_open


def test_after_retry_after_one_probe_passes_and_the_others_still_fail() -> None:
    clock = Clock()
    breaker = CircuitBreaker("Rucio", failures=1, retry_after=10, clock=clock)
    breaker.record(False)
    clock.now += 10
    assert breaker.check() is True  # the probe
    with pytest.raises(CircuitOpen):
        breaker.check()  # while the probe is out
    assert breaker.record(True, probe=True) == "closed"
    breaker.check()
    assert not breaker.is_open


def test_a_failed_probe_opens_it_for_another_period() -> None:
    clock = Clock()
    breaker = CircuitBreaker("Rucio", failures=1, retry_after=10, clock=clock)
    breaker.record(False)
    clock.now += 10
    assert breaker.check() is True
    assert breaker.record(False, probe=True) is None  # it was open already
    clock.now += 9
    with pytest.raises(CircuitOpen):
        breaker.check()
    clock.now += 1
    breaker.check()


def test_a_call_older_than_the_opening_does_not_end_the_probe() -> None:
    clock = Clock()
    breaker = CircuitBreaker("Rucio", failures=1, retry_after=10, clock=clock)
    breaker.record(False)
    clock.now += 10
    assert breaker.check() is True  # the probe goes out
    breaker.record(False)  # a call from before the opening fails late
    with pytest.raises(CircuitOpen):
        breaker.check()  # still only one probe at a time
    breaker.record(True, probe=True)
    assert not breaker.is_open and breaker.check() is False


def test_a_request_turned_away_busy_does_not_take_the_probe() -> None:
    release = threading.Event()

    class HangingRucio(FakeRucio):
        def list_replicas(self, dids):
            if dids == ["s:uk"]:
                release.wait(5)
                raise RucioUnavailable("timed out")
            return super().list_replicas(dids)

    clock = Clock()
    service = resolver(HangingRucio(FILES))
    service.slots = Slots(1, patience=0.05)
    service.breaker = CircuitBreaker("Rucio", failures=1, retry_after=10, clock=clock)
    holder = threading.Thread(target=resolve, args=(service, "s:uk"))
    holder.start()  # takes the one slot while the circuit is closed, and hangs
    deadline = time.monotonic() + 2
    while service.slots.taken < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    service.breaker.record(False)  # meanwhile the circuit opens...
    clock.now += 10  # ...and a probe is due
    time.sleep(0.1)  # the holder is stuck
    assert "busy" in resolve(service, "s:both")[0].message
    release.set()
    holder.join(5)
    # The busy request did not take the probe: the next one probes, and succeeds.
    assert isinstance(resolve(service, "s:both")[0], LinkSet)
    assert not service.breaker.is_open


def test_zero_failures_never_opens() -> None:
    breaker = CircuitBreaker("Rucio", failures=0)
    for _ in range(100):
        breaker.record(False)
    breaker.check()


# -- replica cache ---------------------------------------------------------------------

BOTH = FileReplicas("s:both", 100, FILES["s:both"])
UK = FileReplicas("s:uk", 100, FILES["s:uk"])


def test_the_cache_serves_listed_files_for_ttl_seconds() -> None:
    clock = Clock()
    cache = ReplicaCache(10, clock=clock)
    asked: list[list[str]] = []

    def ask(dids):
        asked.append(list(dids))
        found = {did: f for did, f in (("s:both", BOTH), ("s:uk", UK)) if did in dids}
        return ReplicaListing(found, frozenset(set(dids) - set(found)))

    assert cache.listing(["s:both", "s:gone"], ask).missing == {"s:gone"}
    listing = cache.listing(["s:both", "s:uk", "s:gone"], ask)
    assert set(listing.found) == {"s:both", "s:uk"} and listing.missing == {"s:gone"}
    assert asked == [["s:both", "s:gone"], ["s:uk", "s:gone"]]  # the unknown file is asked again
    clock.now += 9.9
    assert cache.listing(["s:both", "s:uk"], ask).found["s:both"] is BOTH
    assert len(asked) == 2
    clock.now += 0.1
    cache.listing(["s:both"], ask)
    assert asked[-1] == ["s:both"]


def test_a_zero_ttl_cache_keeps_nothing() -> None:
    cache = ReplicaCache(0)
    cache.put([BOTH])
    assert cache.split(["s:both"]) == ({}, ["s:both"])
    assert len(cache) == 0


def test_the_cache_keeps_at_most_max_entries_oldest_out() -> None:
    cache = ReplicaCache(60, max_entries=2)
    files = [FileReplicas(f"s:{n}", 1, ()) for n in range(3)]
    cache.put(files)
    assert cache.split(["s:0", "s:1", "s:2"])[1] == ["s:0"]


# -- the resolver under a slow, failing or busy Rucio -------------------------------------


def resolve(service, *ids):
    return service.resolve(list(ids), DatalinkRequest(), located())


def test_a_repeated_id_is_answered_from_the_cache() -> None:
    rucio = FakeRucio(FILES)
    service = resolver(rucio)
    service.cache = ReplicaCache(10)
    first, second = resolve(service, "s:both"), resolve(service, "s:both")
    assert isinstance(second[0], LinkSet) and second == first
    assert rucio.calls == [["s:both"]]


def test_a_rucio_failure_empties_the_cache() -> None:
    rucio = FakeRucio(FILES)
    service = resolver(rucio)
    service.cache = ReplicaCache(10)
    resolve(service, "s:both")
    rucio.error = RucioUnavailable("timed out")
    assert resolve(service, "s:uk")[0].fault is Fault.TRANSIENT
    assert len(service.cache) == 0


def test_repeated_timeouts_open_the_circuit_and_requests_fail_fast() -> None:
    rucio = FakeRucio(FILES, error=RucioUnavailable("GET http://rucio/replicas/list timed out"))
    service = resolver(rucio)
    service.breaker = CircuitBreaker("Rucio", failures=2, retry_after=30)
    for _ in range(2):
        assert resolve(service, "s:both")[0].message == "Rucio is unavailable; try again later"
    result = resolve(service, "s:both")[0]
    assert isinstance(result, LinkFault) and result.fault is Fault.TRANSIENT
    assert "Rucio is not answering; the service asks it again in 30 s" in result.message
    assert len(rucio.calls) == 2  # the third request never reached Rucio


def test_refused_credentials_do_not_open_the_circuit() -> None:
    rucio = FakeRucio(FILES, error=RucioAuthError("401"))
    service = resolver(rucio)
    service.breaker = CircuitBreaker("Rucio", failures=1, retry_after=30)
    for _ in range(3):
        assert resolve(service, "s:both")[0].fault is Fault.FATAL
    assert len(rucio.calls) == 3


def test_when_every_slot_is_stuck_on_rucio_the_next_request_is_turned_away_at_once() -> None:
    release = threading.Event()

    class HangingRucio(FakeRucio):
        def list_replicas(self, dids):
            release.wait(5)
            return super().list_replicas(dids)

    service = resolver(HangingRucio(FILES))
    service.slots = Slots(2, patience=1.0)
    waiting = [threading.Thread(target=resolve, args=(service, "s:both")) for _ in range(2)]
    for thread in waiting:
        thread.start()
    deadline = time.monotonic() + 2
    while service.slots.taken < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(1.05)  # the two calls are stuck now
    started = time.monotonic()
    result = resolve(service, "s:uk", "s:both")
    elapsed = time.monotonic() - started
    release.set()
    for thread in waiting:
        thread.join(5)
    assert elapsed < 0.5  # at once, not after patience
    assert [r.fault for r in result] == [Fault.TRANSIENT, Fault.TRANSIENT]
    assert "the service is busy" in result[0].message


def test_cached_files_need_no_slot() -> None:
    service = resolver(FakeRucio(FILES))
    service.cache = ReplicaCache(10)
    service.slots = Slots(1)
    resolve(service, "s:both")
    with service.slots.take():
        assert isinstance(resolve(service, "s:both")[0], LinkSet)


# -- the first site information is waited for briefly ----------------------------------


def test_requests_wait_for_the_first_site_information_at_most_first_wait() -> None:
    release = threading.Event()

    def slow_fetch():
        release.wait(5)
        return CATALOGUE

    source = CachedSiteSource(slow_fetch, ttl=60, first_wait=0.2)
    started = time.monotonic()
    with pytest.raises(SiteSourceError, match="has not answered within 0.2 s"):
        source.get()
    with pytest.raises(SiteSourceError):
        source.get()  # joins the same fetch, does not start another
    assert time.monotonic() - started < 0.7
    # Once one request has waited out first_wait, the next ones do not wait at all.
    started = time.monotonic()
    with pytest.raises(SiteSourceError):
        source.get()
    assert time.monotonic() - started < 0.1
    release.set()
    deadline = time.monotonic() + 2
    while source.age is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert source.get() is CATALOGUE  # the fetch went on and its copy is served
