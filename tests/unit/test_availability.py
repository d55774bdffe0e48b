"""Unit tests for rucio_rd.availability: the DataLink service's VOSI availability."""

from __future__ import annotations

import threading
import time

from rucio_rd.availability import BEING_CHECKED, PUBLIC_NOTES, Availability


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_usable_rucio_is_available_with_a_public_note() -> None:
    availability = Availability(lambda: ("usable", "http://rucio:443 accepts (account x)"))
    assert availability.current() == (True, PUBLIC_NOTES["usable"])


def test_refused_credentials_are_down_without_internal_details() -> None:
    availability = Availability(
        lambda: ("refuses", "https://rucio.internal:443 refuses: 401 CannotAuthenticate"))
    available, note = availability.current()
    assert available is False
    assert note == PUBLIC_NOTES["refuses"] and "rucio.internal" not in note


def test_probe_answers_are_reused_for_the_ttl() -> None:
    calls, clock = [], Clock()
    availability = Availability(lambda: calls.append(1) or ("usable", ""), ttl=30, clock=clock)
    availability.current()
    clock.now += 29
    availability.current()
    assert len(calls) == 1
    clock.now += 1
    availability.current()
    assert len(calls) == 2


def test_a_probe_that_raises_means_down() -> None:
    def probe():
        raise RuntimeError("boom")

    assert Availability(probe).current() == (False, PUBLIC_NOTES["unreachable"])


def test_an_unknown_state_means_down() -> None:
    assert Availability(lambda: ("fine?", "")).current() == (False, PUBLIC_NOTES["unreachable"])


def test_misconfiguration_is_down() -> None:
    available, note = Availability(lambda: ("misconfigured", "[rucio] url")).current()
    assert not available and "misconfigured" in note


def test_while_one_caller_probes_the_others_get_the_last_answer_at_once() -> None:
    clock = Clock()
    release, probing = threading.Event(), threading.Event()
    calls = []

    def probe():
        calls.append(1)
        if len(calls) > 1:
            probing.set()
            release.wait(5)  # Rucio hangs on the second probe
        return "usable", "fine"

    availability = Availability(probe, ttl=30, clock=clock)
    assert availability.current()[0] is True
    clock.now += 31
    thread = threading.Thread(target=availability.current)
    thread.start()
    probing.wait(2)
    started = time.monotonic()
    assert availability.current() == (True, PUBLIC_NOTES["usable"])
    assert time.monotonic() - started < 0.5  # not the probe's 5 s
    release.set()
    thread.join(5)
    assert len(calls) == 2


def test_callers_wait_for_the_very_first_probe_at_most_first_wait() -> None:
    release, probing = threading.Event(), threading.Event()

    def hanging_probe():
        probing.set()
        release.wait(5)
        return "usable", "fine"

    availability = Availability(hanging_probe, first_wait=0.2)
    first = threading.Thread(target=availability.current)
    first.start()
    probing.wait(2)
    started = time.monotonic()
    assert availability.current() == (False, BEING_CHECKED)
    assert time.monotonic() - started < 1.0
    release.set()
    first.join(5)
    assert availability.current()[0] is True
