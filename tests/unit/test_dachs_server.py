"""Unit tests of rucio_rd.dachs_server: Twisted's HTTP channel and DaCHS's pools, patched.

The HTTP tests drive the protocol DaCHS's ``server.Site`` builds, over Twisted's
string transport or over a real TCP socket pair with a hand-driven reactor; the
pool tests use a real PostgreSQL (127.0.0.1:5432, database ``test``) and are
skipped without one.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from types import SimpleNamespace
from xml.etree import ElementTree

import psycopg2
import pytest
from fakes import PG
from gavo.base import sqlsupport
from gavo.svcs import common
from gavo.votable import coding
from twisted.internet import address, tcp
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python import failure
from twisted.web import http, resource, server

from rucio_rd import dachs_server

MISSING = object()
PATCHED = [
    (http.HTTPChannel, "connectionMade"),
    (http.HTTPChannel, "lineReceived"),
    (http.HTTPChannel, "lineLengthExceeded"),
    (sqlsupport.CustomConnectionPool, "_getconn"),
    (common.QueryMeta, "_fillDbOptions"),
    (common.QueryMeta, "asSQL"),
    (coding, "buildEncoder"),
]
# The classes as imported, before any test (or RD) patched them.
PRISTINE = {(owner, name): vars(owner).get(name, MISSING) for owner, name in PATCHED}

VOTABLE = "{http://www.ivoa.net/xml/VOTable/v1.3}"


def restore_pristine_classes() -> None:
    for (owner, name), value in PRISTINE.items():
        if value is MISSING:
            if name in vars(owner):
                delattr(owner, name)
        else:
            setattr(owner, name, value)


@pytest.fixture(autouse=True)
def pristine_classes():
    """Each test starts from, and leaves, the unpatched classes."""
    restore_pristine_classes()
    yield
    restore_pristine_classes()


@pytest.fixture
def server_log():
    """The records of ``rucio_rd.server`` (whatever propagation DaCHS logging set)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append
    logger = logging.getLogger("rucio_rd.server")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(level)


# --------------------------------------------------------------------- HTTP

class Echo(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        return b"GET " + request.uri

    def render_POST(self, request):
        return b"POST %d bytes" % len(request.content.read())


def site(reactor=None) -> server.Site:
    return server.Site(Echo(), reactor=reactor or MemoryReactorClock())


def connect(transport=None):
    """The protocol DaCHS's Site builds, connected to a string transport."""
    transport = transport or StringTransport()
    protocol = site().buildProtocol(address.IPv4Address("TCP", "127.0.0.1", 50000))
    protocol.makeConnection(transport)
    return protocol, transport


def answers(data: bytes) -> list[tuple[bytes, dict[bytes, bytes], bytes]]:
    """The (status line, headers, body) of each answer in ``data``."""
    result = []
    while data:
        head, data = data.split(b"\r\n\r\n", 1)
        status, *lines = head.split(b"\r\n")
        headers = dict(line.lower().split(b": ", 1) for line in lines)
        length = int(headers[b"content-length"])
        result.append((status, headers, data[:length]))
        data = data[length:]
    return result


def query_status(body: bytes) -> tuple[str, str]:
    info = ElementTree.fromstring(body).find(f"{VOTABLE}RESOURCE/{VOTABLE}INFO")
    assert info.get("name") == "QUERY_STATUS"
    return info.get("value"), info.text


def long_get(uri_length: int, headers: bytes = b"Host: localhost\r\n") -> bytes:
    uri = b"/rucio/rucio/dl/dlmeta?ID=" + b"x" * (uri_length - 26)
    return b"GET " + uri + b" HTTP/1.1\r\n" + headers + b"\r\n"


def test_install_server_fixes_patches_each_method_once() -> None:
    dachs_server.install_server_fixes()
    first = {(owner, name): getattr(owner, name) for owner, name in PATCHED}
    dachs_server.install_server_fixes()

    for (owner, name), patched in first.items():
        assert getattr(owner, name) is patched, name
        # one wrapper around the original, not a wrapper of a wrapper
        original = PRISTINE[owner, name]
        if original is MISSING:
            original = getattr(owner.__mro__[1], name)
        assert patched.__wrapped__ is original, name


def test_a_fix_that_cannot_be_installed_is_a_warning_and_the_others_are_installed(
        monkeypatch, server_log) -> None:
    monkeypatch.delattr(http.HTTPChannel, "totalHeadersSize")

    dachs_server.install_server_fixes()

    assert [record.levelno for record in server_log] == [logging.WARNING]
    assert "'request_head_answers' not installed" in server_log[0].getMessage()
    assert "totalHeadersSize" in server_log[0].getMessage()
    assert vars(http.HTTPChannel)["lineReceived"] is PRISTINE[http.HTTPChannel, "lineReceived"]
    assert "lineLengthExceeded" not in vars(http.HTTPChannel)
    assert http.HTTPChannel.connectionMade is not PRISTINE[http.HTTPChannel, "connectionMade"]
    assert "_getconn" in vars(sqlsupport.CustomConnectionPool)
    assert common.QueryMeta._fillDbOptions is not PRISTINE[common.QueryMeta, "_fillDbOptions"]


@pytest.mark.parametrize("uri_length", [16_500, 20_000, 200_000])
def test_a_request_line_over_the_line_limit_is_answered_414_with_a_votable(uri_length) -> None:
    dachs_server.install_server_fixes()
    protocol, transport = connect()

    protocol.dataReceived(long_get(uri_length))

    [(status, headers, body)] = answers(transport.value())
    assert status == b"HTTP/1.1 414 URI Too Long"
    assert headers[b"content-type"] == b"text/xml"
    assert headers[b"connection"] == b"close"
    value, text = query_status(body)
    assert value == "ERROR"
    assert text == ("The request line is longer than 16384 bytes; send long parameter"
                    " lists (many IDs) with POST instead of GET.")
    assert transport.disconnecting


def test_without_the_fix_twisted_drops_a_long_request_line_without_an_answer() -> None:
    protocol, transport = connect()

    protocol.dataReceived(long_get(20_000))

    assert transport.value() == b""
    assert transport.disconnecting


def test_a_long_request_line_arriving_in_pieces_is_answered_once() -> None:
    dachs_server.install_server_fixes()
    protocol, transport = connect()
    data = long_get(40_000) + b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"

    for start in range(0, len(data), 1000):
        protocol.dataReceived(data[start:start + 1000])

    [(status, _, _)] = answers(transport.value())
    assert status == b"HTTP/1.1 414 URI Too Long"


def test_a_request_line_that_makes_most_of_a_head_over_the_total_limit_is_answered_414() -> None:
    dachs_server.install_server_fixes()
    protocol, transport = connect()

    # Twisted itself answers a bare 400 to this one.
    protocol.dataReceived(long_get(16_000, b"Host: localhost\r\nX-Pad: " + b"p" * 1000 + b"\r\n"))

    [(status, _, body)] = answers(transport.value())
    assert status == b"HTTP/1.1 414 URI Too Long"
    request_line = len(b"GET ") + 16_000 + len(b" HTTP/1.1")
    assert (f"The request line ({request_line} bytes) and the headers together"
            in query_status(body)[1])
    assert transport.disconnecting


def test_a_header_line_over_the_line_limit_is_answered_431() -> None:
    dachs_server.install_server_fixes()
    protocol, transport = connect()

    protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: localhost\r\nCookie: " + b"c" * 20_000
                          + b"\r\n\r\n")

    [(status, headers, body)] = answers(transport.value())
    assert status == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert headers[b"content-type"] == b"text/xml"
    assert query_status(body) == ("ERROR", "A request header line is longer than 16384 bytes.")
    assert transport.disconnecting


def test_headers_over_the_total_limit_are_answered_431() -> None:
    dachs_server.install_server_fixes()
    protocol, transport = connect()
    headers = b"".join(b"X-Pad-%d: %s\r\n" % (number, b"p" * 1000) for number in range(20))

    protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: localhost\r\n" + headers + b"\r\n")

    [(status, _, body)] = answers(transport.value())
    assert status == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert query_status(body) == ("ERROR",
                                  "The request headers are longer than 16384 bytes in all.")


def test_requests_within_the_limits_are_answered_as_before_on_a_kept_alive_connection() -> None:
    dachs_server.install_server_fixes()
    protocol, transport = connect()

    protocol.dataReceived(long_get(15_000))
    protocol.dataReceived(b"GET /second HTTP/1.1\r\nHost: localhost\r\n\r\n")

    [(first, _, first_body), (second, _, second_body)] = answers(transport.value())
    assert (first, second) == (b"HTTP/1.1 200 OK", b"HTTP/1.1 200 OK")
    assert len(first_body) == 4 + 15_000
    assert second_body == b"GET /second"
    assert not transport.disconnecting


def test_a_too_long_request_after_a_good_one_on_the_same_connection_is_answered_414() -> None:
    dachs_server.install_server_fixes()
    protocol, transport = connect()

    protocol.dataReceived(b"GET /first HTTP/1.1\r\nHost: localhost\r\n\r\n" + long_get(20_000))

    [(first, _, _), (second, _, _)] = answers(transport.value())
    assert (first, second) == (b"HTTP/1.1 200 OK", b"HTTP/1.1 414 URI Too Long")


def test_a_post_with_a_100_kb_body_reaches_the_request() -> None:
    dachs_server.install_server_fixes()
    protocol, transport = connect()
    body = b"ID=" + b"y" * 99_997  # one "line" of 100 KB, no CRLF in it

    protocol.dataReceived(b"POST /dl HTTP/1.1\r\nHost: localhost\r\n"
                          b"Content-Type: application/x-www-form-urlencoded\r\n"
                          b"Content-Length: %d\r\n\r\n" % len(body) + body)

    [(status, _, answer)] = answers(transport.value())
    assert (status, answer) == (b"HTTP/1.1 200 OK", b"POST 100000 bytes")
    assert not transport.disconnecting


# -------------------------------------------------- real sockets, hand-driven

class Connection:
    """A real accepted TCP connection served by Site's protocol, reactor driven by hand."""

    def __init__(self) -> None:
        listener = socket.create_server(("127.0.0.1", 0))
        self.client = socket.create_connection(listener.getsockname())
        accepted, peer = listener.accept()
        port = SimpleNamespace(_realPortNumber=listener.getsockname()[1])
        listener.close()
        self.reactor = MemoryReactorClock()
        self.protocol = site(self.reactor).buildProtocol(address.IPv4Address("TCP", *peer))
        self.transport = tcp.Server(accepted, self.protocol, peer, port, 1, self.reactor)
        self.protocol.makeConnection(self.transport)
        self.received = b""
        self.client_eof = False

    def tcp_nodelay(self) -> bool:
        return bool(self.transport.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    def step(self) -> None:
        """One reactor iteration for the server side, then read what the client got."""
        transport = self.transport
        for selectable, do, lost in [
                (self.reactor.readers, "doRead", "readConnectionLost"),
                (self.reactor.writers, "doWrite", "connectionLost")]:
            if transport in selectable and transport.connected:
                why = getattr(transport, do)()
                if why:
                    self.reactor.removeReader(transport)
                    self.reactor.removeWriter(transport)
                    getattr(transport, lost)(failure.Failure(why))
        if not self.client_eof and select.select([self.client], [], [], 0.01)[0]:
            data = self.client.recv(65536)
            self.received += data
            self.client_eof = not data

    def run_until(self, condition, seconds: float = 10) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            assert time.monotonic() < deadline, "timed out"
            self.step()

    def close(self) -> None:
        self.client.close()
        if self.transport.connected:
            self.transport.connectionLost(failure.Failure(ConnectionError("test over")))


@pytest.fixture
def connection():
    connections = []

    def make() -> Connection:
        connections.append(Connection())
        return connections[-1]

    yield make
    for each in connections:
        each.close()


def test_accepted_http_connections_get_tcp_nodelay(connection) -> None:
    assert not connection().tcp_nodelay()  # what Twisted does by itself

    dachs_server.install_server_fixes()

    assert connection().tcp_nodelay()


def test_a_client_still_sending_its_long_request_reads_the_414_and_no_reset(connection) -> None:
    dachs_server.install_server_fixes()
    served = connection()
    request = long_get(2_000_000)
    sent: list[BaseException | None] = []

    def send() -> None:
        try:
            served.client.sendall(request)
            sent.append(None)
        except OSError as exc:
            sent.append(exc)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    # The server answers, stops writing (the client reads EOF) and keeps reading.
    served.run_until(lambda: served.client_eof and sent)
    sender.join()

    assert sent == [None]
    [(status, _, _)] = answers(served.received)
    assert status == b"HTTP/1.1 414 URI Too Long"
    assert served.transport.connected  # lingering, not reset

    served.client.close()
    served.run_until(lambda: not served.transport.connected)
    assert served.reactor.getDelayedCalls() == []


def test_a_refused_connection_the_client_keeps_open_is_closed_after_the_linger_time(
        connection) -> None:
    dachs_server.install_server_fixes()
    served = connection()
    served.client.sendall(long_get(20_000))
    served.run_until(lambda: served.client_eof)

    served.reactor.advance(dachs_server.LINGER_SECONDS)

    assert not served.transport.connected
    assert served.received.startswith(b"HTTP/1.1 414 URI Too Long\r\n")


# --------------------------------------------------------------- PostgreSQL

class Profile:
    """A DaCHS database profile for the test database (DaCHS's config not needed)."""

    name = "rucio_rd_test"

    def getArgs(self) -> dict:
        return dict(PG)


@pytest.fixture
def postgres(monkeypatch):
    try:
        psycopg2.connect(connect_timeout=3, **PG).close()
    except psycopg2.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {PG}: {exc}")
    # DaCHS's one-time set-up of its own database (pgsphere, q3c) is not wanted here.
    monkeypatch.setattr(sqlsupport, "_PSYCOPG_INITED", True)
    known = list(sqlsupport.CustomConnectionPool.knownPools)
    yield
    for reference in sqlsupport.CustomConnectionPool.knownPools:
        pool = reference()
        if reference not in known and pool is not None and not pool.closed:
            pool.closeall()


def terminate_backend(conn) -> None:
    """End conn's server process as a database restart would, and wait for the notice."""
    pid = conn.get_backend_pid()
    admin = psycopg2.connect(**PG)
    try:
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", (pid,))
            assert cursor.fetchone() == (True,)
    finally:
        admin.close()
    deadline = time.monotonic() + 10
    while not select.select([conn.fileno()], [], [], 0.05)[0]:
        assert time.monotonic() < deadline, f"backend {pid} still there"


def select_one(conn) -> int:
    with conn.cursor() as cursor:
        cursor.execute("SELECT 1")
        return cursor.fetchone()[0]


def test_an_idle_connection_is_alive_until_its_backend_is_terminated(postgres) -> None:
    conn = psycopg2.connect(**PG)
    try:
        conn.autocommit = True
        assert select_one(conn) == 1
        assert dachs_server._idle_connection_is_alive(conn)

        terminate_backend(conn)

        assert not dachs_server._idle_connection_is_alive(conn)
        with pytest.raises(psycopg2.OperationalError):
            select_one(conn)
    finally:
        conn.close()
    assert not dachs_server._idle_connection_is_alive(conn)


def test_dachs_connection_manager_answers_the_first_query_after_a_terminated_backend(
        postgres, server_log) -> None:
    dachs_server.install_server_fixes()
    get_conn = sqlsupport._makeConnectionManager(Profile(), minConn=1, maxConn=3)
    with get_conn() as conn:
        old = conn
        terminate_backend(conn)

    with get_conn() as conn:
        # Without the fix: "server closed the connection unexpectedly".
        assert list(conn.query("SELECT 1")) == [(1,)]
        assert conn is not old
    assert old.closed
    assert "dropped 1 pooled database connection(s) of profile" in server_log[-1].getMessage()


def test_pool_drops_all_dead_idle_connections_and_keeps_its_keys(postgres) -> None:
    pool = sqlsupport.CustomConnectionPool(2, 5, Profile())
    idle = list(pool._pool)
    for conn in idle:
        terminate_backend(conn)
    dachs_server.install_server_fixes()

    conn = pool.getconn(key="k")

    assert select_one(conn) == 1
    assert conn not in idle and all(each.closed for each in idle)
    assert pool._pool == [] and pool._used == {"k": conn}
    assert pool.getconn(key="k") is conn
    pool.putconn(conn, key="k")
    assert pool._pool == [conn] and pool._used == {}


def test_a_connection_in_use_under_its_key_is_handed_back_unchecked(postgres) -> None:
    dachs_server.install_server_fixes()
    pool = sqlsupport.CustomConnectionPool(1, 5, Profile())
    conn = pool.getconn(key="k")
    terminate_backend(conn)

    # It is its holder's connection; what to do with it is theirs to decide.
    assert pool.getconn(key="k") is conn
    pool.putconn(conn, key="k", close=True)


# ---------------------------------------------------------------- sort keys

def sort_sql(args: dict) -> str:
    return common.QueryMeta(args).asSQL()[0]


def test_a_sort_order_naming_several_columns_sorts_by_each() -> None:
    # What the cone form sends back when its "Sort by" menu is left at the default.
    dachs_server.install_server_fixes()
    assert sort_sql({"_DBOPTIONS_ORDER": ["_r,meta_id"]}).startswith("ORDER BY _r,meta_id ")
    assert sort_sql({"_DBOPTIONS_ORDER": [" _r , meta_id ", "did"]}).startswith(
        "ORDER BY _r,meta_id,did ")
    assert sort_sql({"_DBOPTIONS_ORDER": ["s_ra"], "_DBOPTIONS_DIR": "DESC"}).startswith(
        "ORDER BY s_ra DESC")
    # Descending is descending on every key, farthest first.
    assert sort_sql({"_DBOPTIONS_ORDER": ["_r,meta_id"], "_DBOPTIONS_DIR": "DESC",
                     "MAXREC": "5"}) == "ORDER BY _r DESC,meta_id DESC LIMIT %(_matchLimit)s"
    assert "ORDER BY" not in sort_sql({"_DBOPTIONS_ORDER": [",", ""]})
    assert "ORDER BY" not in sort_sql({})


def test_without_the_fix_dachs_runs_the_columns_together() -> None:
    assert sort_sql({"_DBOPTIONS_ORDER": ["_r,meta_id"]}).startswith("ORDER BY _rmeta_id ")


# --- VOTable row encoders ----------------------------------------------------------------


def _table(*fields: tuple[str, str]):
    from gavo.votable import V

    return V.TABLE[[V.FIELD(name=name, datatype=datatype,
                            arraysize="*" if datatype == "char" else None)
                    for name, datatype in fields]]


def test_a_row_encoder_is_compiled_once_per_table_layout() -> None:
    from gavo.votable import enc_binary, enc_tabledata

    original = coding.buildEncoder(_table(("a", "int"), ("b", "char")), enc_tabledata)
    dachs_server.install_server_fixes()
    first = coding.buildEncoder(_table(("a", "int"), ("b", "char")), enc_tabledata)
    again = coding.buildEncoder(_table(("a", "int"), ("b", "char")), enc_tabledata)
    other = coding.buildEncoder(_table(("a", "double"), ("b", "char")), enc_tabledata)
    assert first is again and other is not first
    assert first([7, "x<y"]) == original([7, "x<y"])
    assert other([0.5, "x"]) == "<TR><TD>0.5</TD><TD>x</TD></TR>"
    binary = coding.buildEncoder(_table(("a", "int"), ("b", "char")), enc_binary)
    assert binary is not first  # another format, another encoder
    assert binary is coding.buildEncoder(_table(("a", "int"), ("b", "char")), enc_binary)


def test_tables_differing_in_a_null_value_get_encoders_of_their_own() -> None:
    from gavo.votable import V, enc_tabledata

    dachs_server.install_server_fixes()
    minus_one = coding.buildEncoder(V.TABLE[V.FIELD(name="a", datatype="int")[
        V.VALUES(null="-1")]], enc_tabledata)
    minus_two = coding.buildEncoder(V.TABLE[V.FIELD(name="a", datatype="int")[
        V.VALUES(null="-2")]], enc_tabledata)
    assert minus_one([None]) == "<TR><TD>-1</TD></TR>"
    assert minus_two([None]) == "<TR><TD>-2</TD></TR>"


def test_binary2_and_very_wide_tables_are_compiled_anew(monkeypatch) -> None:
    from gavo.votable import enc_binary2, enc_tabledata

    dachs_server.install_server_fixes()
    table = _table(("a", "int"))
    assert coding.buildEncoder(table, enc_binary2) is not coding.buildEncoder(table,
                                                                              enc_binary2)
    assert coding.buildEncoder(table, enc_tabledata) is coding.buildEncoder(table,
                                                                            enc_tabledata)
    monkeypatch.setattr(dachs_server, "ENCODER_SOURCE_MAX", 10)
    wide = _table(("w", "int"))
    assert coding.buildEncoder(wide, enc_tabledata) is not coding.buildEncoder(
        wide, enc_tabledata)


def test_the_encoder_cache_keeps_the_most_recent_layouts(monkeypatch) -> None:
    from gavo.votable import enc_tabledata

    monkeypatch.setattr(dachs_server, "ENCODER_CACHE_SIZE", 2)
    dachs_server.install_server_fixes()
    first = coding.buildEncoder(_table(("a", "int")), enc_tabledata)
    second = coding.buildEncoder(_table(("b", "int")), enc_tabledata)
    assert coding.buildEncoder(_table(("a", "int")), enc_tabledata) is first  # now recent
    third = coding.buildEncoder(_table(("c", "int")), enc_tabledata)  # drops b
    assert coding.buildEncoder(_table(("a", "int")), enc_tabledata) is first
    assert coding.buildEncoder(_table(("c", "int")), enc_tabledata) is third
    assert coding.buildEncoder(_table(("b", "int")), enc_tabledata) is not second
