"""Unit tests for rucio_rd.http: the shared bounded request's helpers."""

from __future__ import annotations

import itertools
import socket
import threading
import time

import pytest
import requests

from rucio_rd import deadline as deadline_module
from rucio_rd.deadline import Deadline, ResolveTimeout, resolve
from rucio_rd.http import TransportError, bounded_session, fetch, header_safe, redact_url, scrub


def test_scrub_removes_secrets_userinfo_and_query_strings() -> None:
    text = ("GET https://svc:pa55@sites.example/api?token=abc failed; secret s3cr3t"
            " and http://u@h/x?y=1")
    assert scrub(text, ["s3cr3t", None, ""]) == (
        "GET https://sites.example/api?... failed; secret <secret> and http://h/x?...")


def test_scrub_removes_the_query_of_a_bare_path_as_urllib3_writes_it() -> None:
    text = ("HTTPConnectionPool(host='h', port=9): Max retries exceeded with url:"
            " /api?apikey=SECRET/storages/grafana (Caused by NewConnectionError(...))")
    assert "SECRET" not in scrub(text)
    assert "url: /api?... (Caused by" in scrub(text)


@pytest.mark.parametrize("url, shown", [
    ("https://user:pw@sites.example:8443/api/v1?key=1#frag", "https://sites.example:8443/api/v1"),
    ("http://[::1]:18200/", "http://[::1]:18200/"),
    ("http://host:notaport/x", "http://host/x"),
])
def test_redact_url_keeps_scheme_host_port_and_path(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize("value, safe", [("Bearer abc.def", True), ("tab\there", False),
                                          ("ümlaut", False)])
def test_header_safe_is_printable_ascii(value: str, safe: bool) -> None:
    assert header_safe(value) is safe


# -- the deadline covers the whole call ----------------------------------------------------


class _TrickleServer:
    """A real TCP server on loopback that answers each connection by ``behaviour``."""

    def __init__(self, behaviour) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.behaviour = behaviour
        self.stopped = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        try:
            conn.recv(65536)
            self.behaviour(conn, self.stopped)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()


def _trickle_headers(conn: socket.socket, stopped: threading.Event) -> None:
    # Each byte well within any read timeout; the headers never end.
    for byte in itertools.cycle(b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1000):
        if stopped.wait(0.1):
            return
        conn.sendall(bytes([byte]))


def _silent(conn: socket.socket, stopped: threading.Event) -> None:
    stopped.wait(30)


@pytest.fixture
def trickler():
    server = _TrickleServer(_trickle_headers)
    yield server
    server.close()


def test_trickled_headers_are_cut_off_at_the_deadline(trickler) -> None:
    # The reproduction of the issue: before, this returned after 14 s.
    started = time.monotonic()
    with pytest.raises(TransportError, match="took longer than 1 s") as info:
        fetch(requests.Session(), "GET", f"{trickler.url}/ping", what="GET ping", timeout=1)
    assert info.value.kind == "timeout"
    assert time.monotonic() - started < 1.5


def test_rucio_ping_against_trickled_headers_ends_within_its_timeout(trickler) -> None:
    from rucio_rd.rucio import RucioClient, RucioUnavailable
    from rucio_rd.tokens import TokenFileTokens

    rucio = RucioClient(trickler.url, TokenFileTokens("/nonexistent"), timeout=1)
    started = time.monotonic()
    with pytest.raises(RucioUnavailable, match="took longer than 1 s"):
        rucio.ping()
    assert time.monotonic() - started < 1.5


def test_a_kept_alive_connection_is_watched_too(trickler) -> None:
    # The first call gets a whole answer on a kept-alive connection; the second,
    # on the same connection, trickles and must still end at its deadline.
    answers = iter([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"])

    def first_whole_then_trickle(conn: socket.socket, stopped: threading.Event) -> None:
        conn.sendall(next(answers))
        conn.recv(65536)  # the second request, on the same connection
        _trickle_headers(conn, stopped)

    server = _TrickleServer(first_whole_then_trickle)
    try:
        session = bounded_session()
        assert fetch(session, "GET", server.url, what="first", timeout=1).content == b"ok"
        started = time.monotonic()
        with pytest.raises(TransportError, match="took longer than 0.5 s"):
            fetch(session, "GET", server.url, what="second", timeout=0.5)
        assert time.monotonic() - started < 1.0
    finally:
        server.close()


def test_a_silent_server_times_out_within_the_timeout() -> None:
    server = _TrickleServer(_silent)
    try:
        started = time.monotonic()
        with pytest.raises(TransportError) as info:
            # Each read may wait 5 s: the deadline, not the read timeout, ends it.
            fetch(requests.Session(), "GET", server.url, what="silent", timeout=5,
                  deadline=0.5)
        assert info.value.kind == "timeout"
        assert time.monotonic() - started < 1.0
    finally:
        server.close()


def test_connect_to_a_full_backlog_ends_within_the_deadline() -> None:
    # A listener that never accepts, with its backlog filled: connects hang.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    try:
        for _ in range(8):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(listener.getsockname())
            fillers.append(filler)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        started = time.monotonic()
        with pytest.raises(TransportError) as info:
            fetch(requests.Session(), "GET", url, what="connect", timeout=0.5,
                  connect_timeout=5)
        assert info.value.kind == "timeout"
        assert time.monotonic() - started < 1.0
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_name_resolution_is_bounded(monkeypatch) -> None:
    # getaddrinfo cannot be interrupted: a resolver that hangs is abandoned.
    real = socket.getaddrinfo
    release = threading.Event()

    def hanging(host, *args, **kw):
        if host == "hangs.example":
            if args[-1:] == (socket.AI_NUMERICHOST,):
                raise socket.gaierror("not numeric")
            release.wait(10)
            raise socket.gaierror("gave up")
        return real(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    try:
        started = time.monotonic()
        with pytest.raises(TransportError) as info:
            fetch(requests.Session(), "GET", "http://hangs.example/", what="dns", timeout=0.5)
        assert info.value.kind == "timeout"
        assert time.monotonic() - started < 1.0
    finally:
        release.set()


def test_resolve_answers_numeric_addresses_at_once_and_names_in_time() -> None:
    assert resolve("127.0.0.1", 80, 0)[0][4] == ("127.0.0.1", 80)
    assert any(info[4][0] in ("127.0.0.1", "::1") for info in resolve("localhost", 80, 5))


def test_a_hanging_resolver_cannot_pile_up_threads(monkeypatch) -> None:
    release = threading.Event()

    def hanging(host, *args, **kw):
        if args[-1:] == (socket.AI_NUMERICHOST,):
            raise socket.gaierror("not numeric")
        release.wait(10)
        raise socket.gaierror("gave up")

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    try:
        for _ in range(deadline_module.MAX_PENDING_RESOLUTIONS):
            with pytest.raises(ResolveTimeout):
                resolve("hangs.example", 80, 0.01)
        started = time.monotonic()
        with pytest.raises(ResolveTimeout, match="already hanging"):
            resolve("hangs.example", 80, 5)
        assert time.monotonic() - started < 0.5
    finally:
        release.set()
    # The abandoned threads finish and give their places back.
    ends = time.monotonic() + 5
    while deadline_module._pending._value < deadline_module.MAX_PENDING_RESOLUTIONS:
        assert time.monotonic() < ends, "abandoned resolutions did not finish"
        time.sleep(0.01)


def test_a_whole_answer_in_time_is_unaffected_and_the_deadline_is_gone() -> None:
    def whole(conn: socket.socket, stopped: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")

    server = _TrickleServer(whole)
    try:
        resp = fetch(requests.Session(), "GET", server.url, what="whole", timeout=2)
        assert resp.status_code == 200 and resp.content == b"hello"
        assert Deadline.current() is None
    finally:
        server.close()


def test_the_second_address_tried_is_watched_too(trickler, monkeypatch) -> None:
    # The first address is refused; the socket to the second one may get the same
    # descriptor number as the first had.  It must still be cut at the deadline.
    port = int(trickler.url.rsplit(":", 1)[1])
    real = socket.getaddrinfo

    def two_addresses(host, *args, **kw):
        if host == "dual.example":
            if args[-1:] == (socket.AI_NUMERICHOST,):
                raise socket.gaierror("not numeric")
            refused = socket.socket()
            refused.bind(("127.0.0.1", 0))  # bound, never listening: connect is refused
            closed_port = refused.getsockname()[1]
            refused.close()
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", closed_port)),
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", two_addresses)
    started = time.monotonic()
    with pytest.raises(TransportError, match="took longer than 1 s"):
        fetch(requests.Session(), "GET", f"http://dual.example:{port}/", what="dual",
              timeout=5, deadline=1)
    assert time.monotonic() - started < 1.5


def test_a_call_inside_an_operation_gets_what_is_left_of_its_time(trickler) -> None:
    started = time.monotonic()
    with Deadline(0.5).active(), pytest.raises(TransportError, match="what was left"):
        fetch(requests.Session(), "GET", trickler.url, what="inner", timeout=5)
    assert time.monotonic() - started < 1.0
