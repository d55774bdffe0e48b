"""Rucio's REST conventions: its typed errors, and one bounded request to it.

Rucio answers errors with an ``ExceptionClass`` and ``ExceptionMessage`` (in
headers or a JSON body); :func:`error_for` turns such an answer into
:class:`RucioError`, :class:`RucioAuthError` (401/403) or
:class:`RucioUnavailable` (5xx), and :func:`send` makes one request through
:func:`rucio_rd.http.fetch`, so that transport failures are typed the same way.
Shared by the token providers (:mod:`rucio_rd.tokens`) and the client
(:mod:`rucio_rd.rucio`).  No message ever carries a token or a password.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import requests

from rucio_rd.http import TransportError, fetch, scrub

__all__ = ["RucioAuthError", "RucioError", "RucioUnavailable", "error_for", "flags", "send"]


class RucioError(RuntimeError):
    """Rucio answered with an error.

    The message has the request, the HTTP status and Rucio's ``ExceptionClass`` and
    ``ExceptionMessage``; never a token or a password.
    """

    def __init__(self, message: str, status: int | None = None,
                 exception_class: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.exception_class = exception_class


class RucioUnavailable(RucioError):
    """Rucio cannot be reached or does not answer properly (refused, timeout, 5xx)."""


class RucioAuthError(RucioError):
    """Rucio or the identity provider refused the service's credentials."""


def _rucio_exception(resp: requests.Response) -> tuple[str | None, str]:
    """Rucio's ExceptionClass and ExceptionMessage (headers first, then the JSON body)."""
    exception_class = resp.headers.get("ExceptionClass")
    message = resp.headers.get("ExceptionMessage") or ""
    if not exception_class or not message:
        try:
            body = json.loads(resp.content[:20_000] or b"null")
        except ValueError:
            body = None
        if isinstance(body, dict):
            exception_class = exception_class or body.get("ExceptionClass")
            message = message or str(body.get("ExceptionMessage", ""))
        elif not message:
            message = resp.content[:200].decode("utf-8", "replace")
    return exception_class, " ".join(message.split())[:500]


def error_for(what: str, resp: requests.Response, secrets: Sequence[str | None] = ()
               ) -> RucioError:
    """The typed error for a response with status >= 400."""
    exception_class, message = _rucio_exception(resp)
    detail = f"{exception_class}: {message}" if exception_class else message
    text = scrub(f"{what} answered {resp.status_code} {detail}".rstrip(), secrets)
    if resp.status_code in (401, 403):
        cls: type[RucioError] = RucioAuthError
    elif resp.status_code >= 500:
        cls = RucioUnavailable
    else:
        cls = RucioError
    return cls(text, resp.status_code, exception_class)


def flags(**values: bool) -> dict[str, str]:
    """Boolean request parameters spelled ``"true"``/``"false"``.

    Rucio's REST layer takes a JSON ``true``/``false`` for 1/0 and logs a warning
    about it for every such parameter of every call (also for its own defaults
    of parameters left out), which floods its log; strings it takes silently.
    """
    return {name: "true" if value else "false" for name, value in values.items()}


def send(session: requests.Session, method: str, url: str, what: str, timeout: float,
          secrets: Sequence[str | None] = (), **kw: Any) -> requests.Response:
    """One request whose whole answer arrives within ``timeout``, connect included.

    Transport failures become :class:`RucioUnavailable` (a credential that cannot
    be sent, :class:`RucioAuthError`); HTTP statuses are left to the caller.
    """
    try:
        return fetch(session, method, url, what=what, timeout=timeout, secrets=secrets, **kw)
    except TransportError as exc:
        cls = RucioAuthError if exc.kind == "header" else RucioUnavailable
        raise cls(str(exc)) from None
