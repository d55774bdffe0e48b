"""Outbound HTTP with a deadline for the whole call, shared by the Rucio client
and the site-directory client.

requests' timeouts bound the connection and each single read, so a server
that trickles its headers or its body a byte at a time would hold a request
forever, and a name that does not resolve holds it as long as the system's
resolver likes.  :func:`fetch` makes each call under a
:class:`~rucio_rd.deadline.Deadline`: the sessions' connections
(:func:`bounded_session`, :class:`DeadlineAdapter`) resolve names and connect
within what is left of it, and every socket they use is shut down when it
comes, from the first byte sent to the last byte read.  It optionally stops
at a size.  Transport failures become :class:`TransportError`; HTTP statuses
are the caller's to judge.  :func:`scrub` and :func:`redact_url` keep
credentials out of the messages.

This module knows nothing of Rucio or of sites; it never logs.
"""

from __future__ import annotations

import re
import socket
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.poolmanager import ProxyManager

from rucio_rd.deadline import Deadline, ResolveTimeout, resolve

__all__ = [
    "MAX_CONNECT_TIMEOUT_S",
    "DeadlineAdapter",
    "TransportError",
    "bounded_session",
    "fetch",
    "header_safe",
    "redact_url",
    "scrub",
]

# Connect timeouts are kept short: a refused or black-holed address should fail fast
# even when the read timeout is generous.
MAX_CONNECT_TIMEOUT_S = 5.0

# A URL inside free text: its user information, and its query string.
_USERINFO_IN_TEXT = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)[^\s/@]*@")
_QUERY_IN_TEXT = re.compile(r"(://[^\s?]*)\?[^\s'\"]*")
# urllib3 names the URL of a failed connection by its path alone ("url: /api?key=...")
_PATH_QUERY_IN_TEXT = re.compile(r"((?:^|[\s(])/[^\s?'\"]*)\?[^\s'\")]*")


class TransportError(RuntimeError):
    """No whole answer: refused, timed out, too large, or a header that cannot be sent.

    ``kind`` is ``"timeout"``, ``"connection"``, ``"too_large"`` or ``"header"``;
    ``cause`` is the name of the underlying exception class, if any.  The
    message names the request and never quotes a credential.
    """

    def __init__(self, message: str, kind: str, cause: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.cause = cause


def header_safe(value: str) -> bool:
    """True when ``value`` can travel in an HTTP header as it is (printable ASCII)."""
    return all(" " <= char <= "~" for char in value)


def scrub(text: str, secrets: Sequence[str | None] = ()) -> str:
    """``text`` without the given secrets, and without user information and query
    strings of the URLs in it: the last line of defence for error texts."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<secret>")
    text = _QUERY_IN_TEXT.sub(r"\1?...", _USERINFO_IN_TEXT.sub(r"\1", text))
    return _PATH_QUERY_IN_TEXT.sub(r"\1?...", text)


def redact_url(url: str) -> str:
    """``url`` without user information, query or fragment, safe for logs and errors."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host if port is None else f"{host}:{port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class _BoundedConnection:
    """What the connections of a :class:`DeadlineAdapter` add to urllib3's: under a
    current :class:`~rucio_rd.deadline.Deadline`, the name is resolved and the
    socket connected within what is left of it, and every socket a request uses
    is watched by it.  Without one they behave as urllib3's own."""

    def _new_conn(self) -> socket.socket:
        deadline = Deadline.current()
        if deadline is None:
            return super()._new_conn()  # type: ignore[misc]
        host, port = self._dns_host, self.port  # type: ignore[attr-defined]
        try:
            addresses = resolve(host, port, deadline.remaining())
        except ResolveTimeout as exc:
            raise ConnectTimeoutError(self, f"Connection to {host} timed out: {exc}") from None
        except OSError as exc:
            raise NewConnectionError(self, f"Failed to resolve {host}: {exc}") from None
        limit = self.timeout if isinstance(self.timeout, int | float) else None  # type: ignore[attr-defined]
        error: OSError | None = None
        for family, kind, proto, _name, address in addresses:
            remaining = deadline.remaining()
            if remaining <= 0:
                break
            sock = socket.socket(family, kind, proto)
            try:
                for option in self.socket_options or ():  # type: ignore[attr-defined]
                    sock.setsockopt(*option)
                if self.source_address:  # type: ignore[attr-defined]
                    sock.bind(self.source_address)  # type: ignore[attr-defined]
                sock.settimeout(remaining if limit is None else min(limit, remaining))
                deadline.watch(sock)
                sock.connect(address)
            except TimeoutError:
                sock.close()
                raise ConnectTimeoutError(
                    self, f"Connection to {host} timed out (connect timeout={limit})") from None
            except OSError as exc:
                sock.close()
                error = exc
                continue
            return sock
        if error is None:
            raise ConnectTimeoutError(self, f"Connection to {host} timed out (deadline)")
        raise NewConnectionError(self, f"Failed to establish a new connection: {error}")

    def putrequest(self, *args: Any, **kw: Any) -> Any:
        # Called for every request, also on a kept-alive connection whose socket
        # was made by an earlier call.
        deadline = Deadline.current()
        sock = getattr(self, "sock", None)
        if deadline is not None and sock is not None:
            deadline.watch(sock)
        return super().putrequest(*args, **kw)  # type: ignore[misc]


class _HTTPConnection(_BoundedConnection, HTTPConnection):
    pass


class _HTTPSConnection(_BoundedConnection, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOL_CLASSES = {"http": _HTTPPool, "https": _HTTPSPool}


class DeadlineAdapter(HTTPAdapter):
    """requests' adapter whose connections obey the current thread's
    :class:`~rucio_rd.deadline.Deadline` (see :func:`fetch`)."""

    def init_poolmanager(self, *args: Any, **kw: Any) -> None:
        super().init_poolmanager(*args, **kw)
        self.poolmanager.pool_classes_by_scheme = dict(_POOL_CLASSES)

    def proxy_manager_for(self, *args: Any, **kw: Any) -> Any:
        manager = super().proxy_manager_for(*args, **kw)
        # An HTTP(S) proxy: its connections are ours.  (A SOCKS proxy's pools have
        # classes of their own, which must stay; its calls keep the body deadline.)
        if isinstance(manager, ProxyManager):
            manager.pool_classes_by_scheme = dict(_POOL_CLASSES)
        return manager


def bounded_session(session: requests.Session | None = None) -> requests.Session:
    """``session`` (or a new one) with :class:`DeadlineAdapter` for http and https."""
    session = session if session is not None else requests.Session()
    for prefix in ("http://", "https://"):
        if not isinstance(session.adapters.get(prefix), DeadlineAdapter):
            session.mount(prefix, DeadlineAdapter())
    return session


def fetch(
    session: requests.Session,
    method: str,
    url: str,
    *,
    what: str,
    timeout: float,
    deadline: float | None = None,
    connect_timeout: float | None = None,
    max_bytes: int | None = None,
    body_for: Callable[[int], bool] | None = None,
    secrets: Sequence[str | None] = (),
    **kw: Any,
) -> requests.Response:
    """One request whose whole answer arrives within ``deadline`` seconds.

    The time counts from before the name is resolved to the last byte of the
    body read, whatever the peer does (trickled headers included).

    Parameters
    ----------
    session
        Made bounded with :func:`bounded_session` if it is not yet.
    what
        How messages name the request, e.g. ``"GET https://rucio/ping"``.
    timeout
        requests' timeout for each read.
    deadline
        Seconds for the whole call; by default ``timeout``.  A current
        :class:`~rucio_rd.deadline.Deadline` of the caller (an operation of
        several calls) shortens it.
    connect_timeout
        Seconds for connecting; by default ``timeout``, at most
        :data:`MAX_CONNECT_TIMEOUT_S`.
    max_bytes
        The largest body accepted.
    body_for
        Which statuses' bodies are read (default: all); the others come
        back at once with an empty body.
    secrets
        Values that must not appear in a message.

    Returns
    -------
    requests.Response
        With its body read (``.content``) and its connection released.

    Raises
    ------
    TransportError
        For everything but an HTTP status.
    """
    connect = min(timeout, MAX_CONNECT_TIMEOUT_S) if connect_timeout is None else connect_timeout
    seconds = timeout if deadline is None else deadline
    too_slow = f"{what} took longer than {seconds:g} s to answer"
    bounded_session(session)
    guard = Deadline(seconds)  # within the caller's deadline, if there is one
    if guard.seconds < seconds:
        too_slow = f"{what} did not answer within what was left of its operation's time"
    try:
        with guard.active():
            resp = session.request(method, url, timeout=(connect, timeout), stream=True, **kw)
            body = bytearray()
            try:
                wanted = body_for is None or body_for(resp.status_code)
                for chunk in resp.iter_content(65536) if wanted else ():
                    body += chunk
                    if max_bytes is not None and len(body) > max_bytes:
                        raise TransportError(
                            f"{what} sent more than {max_bytes // 2**20} MiB", "too_large")
            finally:
                resp.close()
            if guard.expired:
                raise TransportError(too_slow, "timeout")
    except (requests.exceptions.InvalidHeader, UnicodeEncodeError):
        # The message would quote the header, i.e. a credential: say which kind only.
        raise TransportError(f"{what}: a header value (a credential?) cannot be sent in HTTP"
                             " (control or non-ASCII characters)", "header") from None
    except requests.RequestException as exc:
        if guard.expired:
            raise TransportError(too_slow, "timeout") from None
        cause = type(exc).__name__
        if isinstance(exc, requests.Timeout):
            raise TransportError(f"{what} timed out after {timeout:g} s", "timeout",
                                 cause) from None
        reason = exc.args[0] if isinstance(exc, requests.ConnectionError) and exc.args else exc
        raise TransportError(f"{what} failed: {cause}: {scrub(str(reason), secrets)}",
                             "connection", cause) from None
    # The body is read: let .content, .json() and .text use it.
    resp._content = bytes(body)
    resp._content_consumed = True
    return resp
