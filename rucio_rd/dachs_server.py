"""Server-wide fixes for the DaCHS process the plugin is loaded in.

:func:`install_server_fixes` is called when the RD ``rucio/rucio`` loads.  It
changes four classes and one function of Twisted and DaCHS for the *whole* server process,
every service included, not only this plugin's.  Each fix is installed at most
once per process; one that cannot be installed (a Twisted or DaCHS whose
internals differ from Twisted 22.4 and DaCHS 2.7, which these were written
against) is skipped with a warning in DaCHS's log, and the server runs as it
would without it.

1. ``twisted.web.http.HTTPChannel.connectionMade`` also sets ``TCP_NODELAY``
   on the accepted socket.  Twisted writes an answer in several small
   segments; without ``TCP_NODELAY``, Nagle's algorithm holds the last one
   back until the client ACKs the first, and a client that delays its ACKs
   (requests and pyvo's kept-alive sessions) waits ~40 ms on every request of a
   kept-alive connection.  DaCHS's ``server.Site`` wraps each ``HTTPChannel``
   in Twisted's ``_GenericHTTPChannelProtocol``, whose ``makeConnection`` calls
   the channel's ``connectionMade``; that is where the HTTP/1.1 path starts.

2. ``HTTPChannel.lineLengthExceeded`` and ``HTTPChannel.lineReceived`` answer a
   request whose head is too large instead of dropping the connection.
   Twisted allows ``MAX_LENGTH`` (16384) bytes per line and
   ``totalHeadersSize`` (16384) bytes for the request line and headers
   together; over the first it closes the connection without a word, over the
   second it sends a bare ``400``.  A DataLink GET with a few hundred IDs is
   that long, and its client saw only "connection closed".  Now the answer is
   ``414 URI Too Long`` when the request line is at fault (longer than
   ``MAX_LENGTH``, or the larger part of a head over ``totalHeadersSize``) or
   ``431 Request Header Fields Too Large`` when the headers are, with a DALI
   error VOTable (``text/xml``) that tells the client to POST long parameter
   lists, and ``Connection: close``.  The limits are Twisted's, unchanged;
   request bodies (POST, any size) are not lines and are not affected.  After
   the answer the server stops sending (on plain TCP a half close) but reads
   and discards what the client still sends for up to
   :data:`LINGER_SECONDS`, so that the client, still sending its long request,
   reads the answer instead of a connection reset (a TLS connection is closed
   at once).  Each such answer is logged (INFO, ``rucio_rd.server``).  Other
   malformed heads, more than ``maxHeaders`` (500) header lines among them,
   still get Twisted's bare ``400``.

3. ``gavo.base.sqlsupport.CustomConnectionPool._getconn`` (which
   ``ThreadedConnectionPool.getconn`` calls under the pool's lock) first drops
   pooled idle connections whose server side is gone.  After a database
   restart, a failover or ``pg_terminate_backend``, DaCHS's pools still hold the
   old connections; the first query on one fails with "server closed the
   connection unexpectedly" and only then are the pools renewed, so one request
   fails.  The check costs no round trip: a pooled connection is idle (psycopg2
   rolls back what it puts back), so the server has nothing to say on it, and a
   socket that is readable anyway carries the server's termination notice or
   EOF.  Dead idle connections are closed and dropped from the pool's idle list
   (they have no key; keys belong to connections in use, which are not
   touched), and the pool hands out the next idle one or a new one.  A server
   that goes away between this check and the query still fails that query,
   and DaCHS's own recovery (renewing its pools) applies as before.

4. ``gavo.svcs.common.QueryMeta._fillDbOptions`` reads a sort order that
   names several columns (``a,b``) as those columns.  DaCHS takes a core's
   ``defaultSortKey`` property as a comma-separated list where it fills in a
   missing sort order (the cone search's ``scs.xml``), but its web forms offer
   that same text as the first choice of their "Sort by" menu and send it back
   as one key, which DaCHS then strips to a column name that does not exist
   (``_r,meta_id`` became ``_rmeta_id``: every default form search failed).
   Each value is now split on commas before DaCHS cleans the keys up; a
   single column name, the only thing that worked before, is unchanged.  And
   ``QueryMeta.asSQL`` makes a descending order descend on every key (DaCHS
   writes ``DESC`` after the last one only, so "farthest first" was nearest
   first with only the tie-break reversed).

5. ``gavo.votable.coding.buildEncoder`` keeps the row encoders it compiles.
   DaCHS writes every VOTable table (a cone search's, TAP's, each DataLink
   answer's) with a function it generates from the table's FIELDs and
   compiles with ``compile()``/``exec`` anew for every answer: about a tenth
   of the server's time for a DataLink answer served from the replica cache.
   The generated source depends only on the FIELDs, and the function keeps
   no state (its globals are a copy of the encoding module's own), so an
   encoder is now reused for the same source (up to
   :data:`ENCODER_CACHE_SIZE` of them, the least recently used dropped).
   BINARY2's encoders, whose globals hold per-table state, and those of
   tables so wide that their source exceeds :data:`ENCODER_SOURCE_MAX`
   characters (a TAP query may ask for hundreds of columns; what it costs
   per row outweighs the compiling), are compiled anew as before.

What these do not do: connections accepted before the RD is loaded keep
Nagle's algorithm for their lifetime (name ``rucio/rucio`` in DaCHS's
``[web] preloadRDs`` to load it at start-up); HTTP/2 (which DaCHS does not
offer) has its own limits; a database server that vanished without closing
its sockets (a host gone off the network) is only noticed by the failing
query, as before.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import logging
import re
import select
import threading
from collections.abc import Callable
from typing import Any

from rucio_rd.dali import error_document

__all__ = ["install_server_fixes"]

logger = logging.getLogger("rucio_rd.server")

# How long a connection answered with 414/431 keeps reading (and discarding)
# the rest of the client's request before it is closed.
LINGER_SECONDS = 5.0

_MARK = "_rucio_rd_server_fix"
_install_lock = threading.Lock()

_REASONS = {414: "URI Too Long", 431: "Request Header Fields Too Large"}
_POST_INSTEAD = "send long parameter lists (many IDs) with POST instead of GET."


def install_server_fixes() -> None:
    """Install the fixes of this module's docstring (each at most once per process).

    Safe to call again (on every load of the RD): an installed fix is left
    alone.  A fix that cannot be installed is logged as a warning on
    ``rucio_rd.server``; this function never raises.
    """
    with _install_lock:
        for name, install in _FIXES:
            try:
                install()
            except Exception as exc:  # noqa: BLE001 - a fix must never stop the RD
                logger.warning("server fix %r not installed (%s: %s); the server runs"
                               " without it", name, type(exc).__name__, exc)


def _replace(owner: Any, name: str, fix: str, make: Callable[[Any], Any]) -> None:
    """Set ``owner.name`` to ``make(current)``, unless that is already done."""
    current = getattr(owner, name)
    if getattr(current, _MARK, None) == fix:
        return
    replacement = functools.wraps(current)(make(current))
    setattr(replacement, _MARK, fix)
    setattr(owner, name, replacement)


def _require(owner: type, names: tuple[str, ...]) -> None:
    missing = [name for name in names if not hasattr(owner, name)]
    if missing:
        raise AttributeError(f"{owner.__module__}.{owner.__qualname__} has no {missing}")


# ---------------------------------------------------------------- TCP_NODELAY

def _install_tcp_nodelay() -> None:
    from twisted.web import http

    def make(original: Callable[[Any], None]) -> Callable[[Any], None]:
        def connectionMade(self: Any) -> None:
            original(self)
            _set_tcp_nodelay(self.transport)
        return connectionMade

    _replace(http.HTTPChannel, "connectionMade", "tcp_nodelay", make)


def _set_tcp_nodelay(transport: Any) -> None:
    # TLS transports pass the call on to their TCP transport; UNIX sockets
    # and test transports have no such option.
    try:
        transport.setTcpNoDelay(True)
    except Exception:  # noqa: BLE001 - an optimisation, never a reason to fail
        pass


# ----------------------------------------------- request heads over the limits

def _install_request_head_answers() -> None:
    from twisted.web import http

    channel = http.HTTPChannel
    # The parser state this relies on, as in Twisted 22.4.
    _require(channel, ("MAX_LENGTH", "totalHeadersSize", "_receivedHeaderSize",
                       "_HTTPChannel__first_line", "persistent", "_abortingCall",
                       "clearLineBuffer", "setTimeout", "loseConnection"))

    def make_line_length_exceeded(original: Callable[[Any, bytes], Any]) -> Callable:
        def lineLengthExceeded(self: Any, line: bytes) -> Any:
            if not _may_answer(self):
                return original(self, line)
            if self._HTTPChannel__first_line:
                _refuse(self, 414, f"The request line is longer than {self.MAX_LENGTH}"
                                   f" bytes; {_POST_INSTEAD}")
            else:
                _refuse(self, 431, f"A request header line is longer than"
                                   f" {self.MAX_LENGTH} bytes.")
            return None
        return lineLengthExceeded

    def make_line_received(original: Callable[[Any, bytes], Any]) -> Callable:
        def lineReceived(self: Any, line: bytes) -> Any:
            # The same test as Twisted's, made first: Twisted answers a bare 400.
            total = self._receivedHeaderSize + len(line)
            if total <= self.totalHeadersSize or not _may_answer(self):
                if self._HTTPChannel__first_line and line:
                    self._rucio_rd_request_line_size = len(line)
                return original(self, line)
            limit = self.totalHeadersSize
            if self._HTTPChannel__first_line:
                _refuse(self, 414, f"The request line is longer than {limit} bytes;"
                                   f" {_POST_INSTEAD}")
                return None
            request_line = getattr(self, "_rucio_rd_request_line_size", 0)
            if request_line > total - request_line:
                _refuse(self, 414, f"The request line ({request_line} bytes) and the"
                                   f" headers together are longer than {limit} bytes;"
                                   f" {_POST_INSTEAD}")
            else:
                _refuse(self, 431, f"The request headers are longer than {limit} bytes"
                                   f" in all.")
            return None
        return lineReceived

    _replace(channel, "lineLengthExceeded", "request_head_answers",
             make_line_length_exceeded)
    _replace(channel, "lineReceived", "request_head_answers", make_line_received)


def _may_answer(channel: Any) -> bool:
    """Whether the channel may still write an answer (else Twisted's way applies).

    Lines are only parsed between requests (the channel buffers what arrives
    while a request is answered), so no other answer is under way; a
    connection that is not persistent takes no further request.
    """
    transport = channel.transport
    return bool(channel.persistent) and transport is not None and not transport.disconnecting


def _refuse(channel: Any, status: int, message: str) -> None:
    """Answer ``status`` with ``message`` and close the connection."""
    body = error_document(message)
    head = (f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
            "Content-Type: text/xml\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode("ascii")
    transport = channel.transport
    transport.write(head + body)
    # Nothing more of this connection is a request: neither what is buffered
    # nor what still arrives.  (The instance attribute shadows the method for
    # the wrapper DaCHS's Site puts around the channel, too.)
    channel.clearLineBuffer()
    channel.dataReceived = _discard
    channel.setTimeout(None)
    if _is_plain_tcp(transport):
        # Closing a socket with unread data sends a reset, and a client still
        # sending its long request may then lose the answer.  So only stop
        # writing (FIN after the answer), drain, and close when the client has
        # closed or after LINGER_SECONDS.  HTTPChannel.connectionLost cancels
        # _abortingCall.
        channel._networkProducer.unregisterProducer()
        transport.loseWriteConnection()
        channel._abortingCall = channel.callLater(LINGER_SECONDS, _end_linger, channel)
    else:
        channel.loseConnection()
    try:
        peer = transport.getPeer()
    except Exception:  # noqa: BLE001 - only for the log line
        peer = None
    logger.info("answered %d to %s: %s", status, getattr(peer, "host", peer), message)


def _end_linger(channel: Any) -> None:
    channel._abortingCall = None  # called: connectionLost must not cancel it
    channel.transport.loseConnection()


def _discard(data: bytes) -> None:
    """Reads what a refused client still sends."""


def _is_plain_tcp(transport: Any) -> bool:
    """Whether ``transport`` is a TCP socket without TLS (so it can half close).

    A TLS transport forwards ``loseWriteConnection`` to its TCP socket,
    bypassing TLS; it is closed at once instead.
    """
    from twisted.internet import tcp

    return isinstance(transport, tcp.Connection) and not getattr(transport, "TLS", False)


# ------------------------------------------------------ pooled DB connections

def _install_pool_validation() -> None:
    from gavo.base import sqlsupport

    pool_class = sqlsupport.CustomConnectionPool
    _require(pool_class, ("_getconn", "getconn"))

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def _getconn(self: Any, key: Any = None) -> Any:
            # Called with the pool's lock held (ThreadedConnectionPool.getconn),
            # so the check and the hand-out are one step.
            try:
                if not self.closed and (key is None or key not in self._used):
                    _drop_dead_idle_connections(self)
            except Exception as exc:  # noqa: BLE001 - the check must never cost a query
                logger.warning("checking pooled database connections failed (%s: %s)",
                               type(exc).__name__, exc)
            return original(self, key)
        return _getconn

    _replace(pool_class, "_getconn", "pool_validation", make)


def _drop_dead_idle_connections(pool: Any) -> None:
    """Close and drop dead connections from the end of ``pool._pool``.

    psycopg2's pool hands out ``_pool.pop()``; this checks that one, and the
    next only if it was dead, so it stops at the first live connection and
    looks at each idle connection at most once.
    """
    idle = pool._pool
    dropped = 0
    while idle and not _idle_connection_is_alive(idle[-1]):
        _close_quietly(idle.pop())
        dropped += 1
    if dropped:
        logger.warning("dropped %d pooled database connection(s) of profile %r whose"
                       " server side is gone (database restart, failover or terminated"
                       " backend)", dropped, getattr(pool, "profileName", None))


def _idle_connection_is_alive(conn: Any) -> bool:
    """Whether an idle psycopg2 connection still has its server, without a round trip.

    An idle connection gets nothing from the server unless it LISTENs (then a
    NOTIFY makes it readable) or the server ends it (a FATAL error message,
    then EOF).  DaCHS's pooled connections do not LISTEN, so readable means
    ended.  ``conn.poll()`` would not tell: it returns ``POLL_OK`` on such a
    connection.
    """
    import psycopg2
    import psycopg2.extensions

    if conn.closed:
        return False
    try:
        if conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_UNKNOWN:
            return False
        fd = conn.fileno()
    except psycopg2.Error:
        return False
    try:
        return not _has_input(fd)
    except (OSError, ValueError):
        return False


def _has_input(fd: int) -> bool:
    """Whether ``fd`` is readable (or hung up) right now."""
    if hasattr(select, "poll"):
        # poll, unlike select, has no limit on the descriptor's number.
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))
    readable, _, _ = select.select([fd], [], [], 0)
    return bool(readable)


def _close_quietly(conn: Any) -> None:
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - it is dead already
        pass


# ------------------------------------------------------------ sort keys

def _install_sort_key_lists() -> None:
    from gavo.svcs import common

    query_meta = common.QueryMeta
    _require(query_meta, ("_fillDbOptions", "asSQL"))

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def _fillDbOptions(self: Any, args: Any) -> None:  # noqa: N802 - DaCHS's name
            original(self, args)
            self["dbSortKeys"] = _split_sort_keys(self["dbSortKeys"])
        return _fillDbOptions

    def make_sql(original: Callable[..., Any]) -> Callable[..., Any]:
        def asSQL(self: Any) -> Any:  # noqa: N802 - DaCHS's name
            fragment, parameters = original(self)
            return _descending_each(fragment), parameters
        return asSQL

    _replace(query_meta, "_fillDbOptions", "sort_key_lists", make)
    _replace(query_meta, "asSQL", "sort_key_lists", make_sql)


def _descending_each(fragment: str) -> str:
    """``ORDER BY a,b DESC`` (DaCHS's: only b descends) as ``ORDER BY a DESC,b DESC``."""
    match = re.match(r"ORDER BY (\S+) DESC\b", fragment)
    if match is None or "," not in match.group(1):
        return fragment
    keys = ",".join(f"{key} DESC" for key in match.group(1).split(","))
    return f"ORDER BY {keys}{fragment[match.end():]}"


def _split_sort_keys(keys: Any) -> list[str]:
    """The column names in DaCHS's sort keys, a value naming several (``a,b``) split up."""
    return [part.strip() for key in keys or () for part in str(key).split(",")
            if part.strip()]


# ------------------------------------------------------------ VOTable encoders

#: How many compiled row encoders :func:`_install_encoder_cache` keeps.
ENCODER_CACHE_SIZE = 128
#: The longest encoder source it keeps (a few hundred characters per column; a
#: DataLink answer's fifteen columns take about 6,000): at most some 13 MB stay.
ENCODER_SOURCE_MAX = 100_000


def _install_encoder_cache() -> None:
    from gavo.votable import coding

    for name in ("buildEncoder", "buildCodec", "getRowEncoderSource"):
        if not callable(getattr(coding, name, None)):
            raise AttributeError(f"gavo.votable.coding has no {name}")

    def make(original: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        cache: collections.OrderedDict[tuple[str, str], Any] = collections.OrderedDict()
        lock = threading.Lock()

        def buildEncoder(tableDefinition: Any, encoderModule: Any) -> Any:  # noqa: N802, N803
            env = encoderModule.getGlobals(tableDefinition)
            if env is not vars(encoderModule):  # state of its own: compiled anew
                return original(tableDefinition, encoderModule)
            source = coding.getRowEncoderSource(tableDefinition, encoderModule)
            if len(source) > ENCODER_SOURCE_MAX:
                return coding.buildCodec(source, env)
            key = (encoderModule.__name__, hashlib.sha256(source.encode()).hexdigest())
            with lock:
                encoder = cache.get(key)
                if encoder is not None:
                    cache.move_to_end(key)
                    return encoder
            encoder = coding.buildCodec(source, env)
            with lock:
                cache[key] = encoder
                while len(cache) > ENCODER_CACHE_SIZE:
                    cache.popitem(last=False)
            return encoder
        return buildEncoder

    _replace(coding, "buildEncoder", "encoder_cache", make)


_FIXES: tuple[tuple[str, Callable[[], None]], ...] = (
    ("tcp_nodelay", _install_tcp_nodelay),
    ("request_head_answers", _install_request_head_answers),
    ("pool_validation", _install_pool_validation),
    ("sort_key_lists", _install_sort_key_lists),
    ("encoder_cache", _install_encoder_cache),
)
