"""Outbound HTTP with a deadline for the whole answer, shared by the Rucio client
and the site-directory client.

requests' timeouts bound the connection and each single read, so a server that
trickles its body a byte at a time would hold a request forever.
:func:`fetch` reads the whole body under a :class:`~rucio_rd.deadline.Watchdog`
that cuts the socket at a deadline, and optionally stops at a size.  Transport
failures become :class:`TransportError`; HTTP statuses are the caller's to
judge.  :func:`scrub` and :func:`redact_url` keep credentials out of the
messages.

This module knows nothing of Rucio or of sites; it never logs.
"""

from __future__ import annotations

import re
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

import requests

from rucio_rd.deadline import Watchdog

__all__ = [
    "MAX_CONNECT_TIMEOUT_S",
    "TransportError",
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

    Parameters
    ----------
    what
        How messages name the request, e.g. ``"GET https://rucio/ping"``.
    timeout
        requests' timeout for each read.
    deadline
        Seconds for the whole answer, body included; by default ``timeout``
        plus the connect timeout.
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
    if deadline is None:  # the timeout, once connected
        ends = time.monotonic() + timeout + connect
        too_slow = f"{what} took longer than {timeout:g} s to answer"
    else:
        ends = time.monotonic() + deadline
        too_slow = f"{what} took more than {deadline:g} s to answer"
    watchdog = Watchdog()
    try:
        resp = session.request(method, url, timeout=(connect, timeout), stream=True, **kw)
        watchdog.start(resp, ends - time.monotonic())
        body = bytearray()
        try:
            wanted = body_for is None or body_for(resp.status_code)
            for chunk in resp.iter_content(65536) if wanted else ():
                body += chunk
                if max_bytes is not None and len(body) > max_bytes:
                    raise TransportError(
                        f"{what} sent more than {max_bytes // 2**20} MiB", "too_large")
        finally:
            watchdog.stop()
            resp.close()
        if watchdog.expired:
            raise TransportError(too_slow, "timeout")
    except (requests.exceptions.InvalidHeader, UnicodeEncodeError):
        # The message would quote the header, i.e. a credential: say which kind only.
        raise TransportError(f"{what}: a header value (a credential?) cannot be sent in HTTP"
                             " (control or non-ASCII characters)", "header") from None
    except requests.RequestException as exc:
        if watchdog.expired:
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
