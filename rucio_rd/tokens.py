"""Where the service's Rucio token comes from, and how long it is kept.

Three providers behind one protocol (:class:`TokenProvider`): userpass
(``GET /auth/userpass``), an OIDC client-credentials grant at the identity
provider, and a token file.  The first two cache the token until shortly before
it expires, renew it when Rucio answers 401, and back off for a few seconds
after a refusal so that a wrong password does not hammer Rucio; the file is
re-read when it changes.  No token, password or client secret ever appears in
a log record, an exception text or a ``repr``.

A fact about Rucio 41 this module relies on (measured against a real server):
``X-Rucio-Auth-Token-Expires`` is an HTTP date ending in ``UTC`` (not GMT),
e.g. ``Thu, 26 Nov 2026 05:15:30 UTC``; tokens live one hour by default.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import requests

from rucio_rd.http import bounded_session, header_safe, scrub
from rucio_rd.rucio_http import RucioAuthError, RucioError, RucioUnavailable, error_for, send

__all__ = [
    "OIDCClientCredentialsTokens",
    "TokenFileTokens",
    "TokenProvider",
    "UserpassTokens",
]

log = logging.getLogger(__name__)

# Token lifetime assumed when a token's expiry is unknown.
UNKNOWN_LIFETIME_S = 600.0


class TokenProvider(Protocol):
    """Gives the token the service presents to Rucio."""

    def token(self) -> str:
        """A token valid for a while yet (fetched or re-read when needed)."""
        ...

    def invalidate(self) -> None:
        """Forget the cached token: Rucio refused it."""
        ...


@dataclass
class _CachedToken:
    value: str
    expires_at: float  # on the provider's clock
    refresh_at: float


def _cache(value: str, now: float, lifetime: float, margin: float) -> _CachedToken:
    lifetime = max(0.0, lifetime)
    # A token shorter-lived than the margin would be refreshed on every call: refresh
    # such tokens half-way through their life instead.
    return _CachedToken(value, now + lifetime, now + lifetime - min(margin, lifetime / 2))


def _http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


# After a failed token fetch, how long further requests fail at once.
FAILED_TOKEN_BACKOFF_S = 5.0


class _CachingTokens:
    """The cache and lock shared by the token providers that fetch tokens."""

    def __init__(self, clock: Callable[[], float], refresh_margin: float) -> None:
        self._clock = clock
        self._refresh_margin = refresh_margin
        self._cached: _CachedToken | None = None
        self._lock = threading.Lock()
        # (until when, the error): after a failed fetch, threads waiting on the
        # lock fail at once instead of each waiting out another timeout.
        self._failure: tuple[float, RucioError] | None = None

    def token(self) -> str:
        with self._lock:
            now = self._clock()
            cached = self._cached
            if cached is not None and now < cached.refresh_at:
                return cached.value
            # An early renewal that fails keeps the current token while it lasts.
            still_valid = cached is not None and now < cached.expires_at
            if self._failure is not None and now < self._failure[0]:
                if still_valid:
                    return cached.value
                error = self._failure[1]
                raise type(error)(str(error))
            try:
                value, lifetime = self._fetch()
            except RucioError as exc:
                self._failure = (self._clock() + FAILED_TOKEN_BACKOFF_S, exc)
                if still_valid:
                    log.warning("renewing the Rucio token failed (%s); the current one"
                                " serves until it expires", exc)
                    return cached.value
                raise
            self._failure = None
            self._cached = _cache(value, self._clock(), lifetime, self._refresh_margin)
            return self._cached.value

    def invalidate(self) -> None:
        with self._lock:
            self._cached = None

    def _fetch(self) -> tuple[str, float]:
        """A new token and its lifetime in seconds."""
        raise NotImplementedError


class UserpassTokens(_CachingTokens):
    """Tokens from Rucio's ``GET /auth/userpass`` for one account's userpass identity."""

    def __init__(self, url: str, account: str, username: str, password: str,
                 timeout: float = 10.0, session: requests.Session | None = None,
                 clock: Callable[[], float] = time.time, refresh_margin: float = 300.0) -> None:
        super().__init__(clock, refresh_margin)
        self.url = url.rstrip("/")
        self.account = account
        self.username = username
        self._password = password
        self.timeout = timeout
        self._session = bounded_session(session)

    def __repr__(self) -> str:
        return (f"UserpassTokens(url={self.url!r}, account={self.account!r}, "
                f"username={self.username!r}, password=<hidden>)")

    def _fetch(self) -> tuple[str, float]:
        what = f"GET {self.url}/auth/userpass (account {self.account})"
        headers = {"X-Rucio-Account": self.account, "X-Rucio-Username": self.username,
                   "X-Rucio-Password": self._password}
        resp = send(self._session, "GET", f"{self.url}/auth/userpass", what, self.timeout,
                     secrets=(self._password,), headers=headers)
        if resp.status_code >= 400:
            raise error_for(what, resp, secrets=(self._password,))
        value = resp.headers.get("X-Rucio-Auth-Token")
        if not value:
            raise RucioAuthError(f"{what} answered {resp.status_code} without a token",
                                 resp.status_code)
        expires = _http_date(resp.headers.get("X-Rucio-Auth-Token-Expires"))
        if expires is None:
            lifetime = UNKNOWN_LIFETIME_S
        else:
            # Measure the lifetime on the server's clock (its Date header) so that a skew
            # between the two clocks does not shorten or stretch it.
            issued = _http_date(resp.headers.get("Date"))
            lifetime = expires - (issued if issued is not None else self._clock())
        log.info("obtained a Rucio token for account %s (valid %.0f s)", self.account, lifetime)
        return value, lifetime


class OIDCClientCredentialsTokens(_CachingTokens):
    """Access tokens from an OAuth2/OIDC token endpoint (client-credentials grant).

    The client authenticates with HTTP Basic (``client_secret_basic``, RFC 6749
    section 2.3.1, the default of INDIGO IAM and Keycloak clients); ``auth_method="post"``
    sends the credentials in the form body instead (``client_secret_post``).
    """

    def __init__(self, token_url: str, client_id: str, client_secret: str,
                 scope: str | None = None, audience: str | None = None, timeout: float = 10.0,
                 session: requests.Session | None = None,
                 clock: Callable[[], float] = time.time, refresh_margin: float = 60.0,
                 auth_method: str = "basic") -> None:
        super().__init__(clock, refresh_margin)
        if auth_method not in ("basic", "post"):
            raise ValueError(f"auth_method={auth_method!r}; use 'basic' or 'post'")
        self.token_url = token_url
        self.client_id = client_id
        self._client_secret = client_secret
        self.scope = scope
        self.audience = audience
        self.timeout = timeout
        self.auth_method = auth_method
        self._session = bounded_session(session)

    def __repr__(self) -> str:
        return (f"OIDCClientCredentialsTokens(token_url={self.token_url!r}, "
                f"client_id={self.client_id!r}, client_secret=<hidden>, scope={self.scope!r}, "
                f"audience={self.audience!r})")

    def _fetch(self) -> tuple[str, float]:
        what = f"POST {self.token_url} (client {self.client_id})"
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        if self.audience:
            form["audience"] = self.audience
        kw: dict[str, Any] = {"headers": {"Accept": "application/json"}}
        if self.auth_method == "basic":
            # RFC 6749 2.3.1: form-encode id and secret before Basic-encoding them.
            kw["auth"] = (quote(self.client_id, safe=""), quote(self._client_secret, safe=""))
        else:
            form.update(client_id=self.client_id, client_secret=self._client_secret)
        secrets = (self._client_secret, quote(self._client_secret, safe=""))
        resp = send(self._session, "POST", self.token_url, what, self.timeout,
                     secrets=secrets, data=form, **kw)
        try:
            body = json.loads(resp.content or b"null")
        except ValueError:
            body = None
        if resp.status_code >= 400:
            if resp.status_code >= 500:
                raise RucioUnavailable(f"{what} answered {resp.status_code}", resp.status_code)
            error = body.get("error", "") if isinstance(body, dict) else ""
            description = body.get("error_description", "") if isinstance(body, dict) else ""
            text = scrub(f"{what} refused: {resp.status_code} {error} {description}", secrets)
            raise RucioAuthError(" ".join(text.split()), resp.status_code, error or None)
        value = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(value, str) or not value:
            raise RucioAuthError(f"{what} answered {resp.status_code} without an access_token",
                                 resp.status_code)
        expires_in = body.get("expires_in")
        try:
            lifetime = float(expires_in)
            if not math.isfinite(lifetime):
                raise ValueError
        except (TypeError, ValueError):
            lifetime = UNKNOWN_LIFETIME_S
        log.info("obtained an OIDC access token for client %s (valid %.0f s)",
                 self.client_id, lifetime)
        return value, lifetime


class TokenFileTokens:
    """A token kept in a file by someone else (e.g. an oidc-agent or a sidecar).

    The file holds a bare token or JSON ``{"access_token": ...}``; it is re-read
    whenever its modification time (or size) changes, and after :meth:`invalidate`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._value: str | None = None

    def __repr__(self) -> str:
        return f"TokenFileTokens(path={str(self.path)!r})"

    def token(self) -> str:
        with self._lock:
            try:
                stat = self.path.stat()
            except OSError as exc:
                raise RucioAuthError(f"token file {self.path} cannot be read: "
                                     f"{exc.strerror}") from None
            stamp = (stat.st_mtime_ns, stat.st_size)
            if self._value is None or stamp != self._stamp:
                self._value = self._read()
                self._stamp = stamp
            return self._value

    def invalidate(self) -> None:
        with self._lock:
            self._value = None

    def _read(self) -> str:
        try:
            text = self.path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise RucioAuthError(f"token file {self.path} cannot be read: {reason}") from None
        if text.startswith("{"):
            try:
                document = json.loads(text)
            except ValueError:
                raise RucioAuthError(f"token file {self.path} holds broken JSON") from None
            value = document.get("access_token") if isinstance(document, dict) else None
            if not isinstance(value, str) or not value.strip():
                raise RucioAuthError(f"token file {self.path} has no access_token")
            text = value.strip()
        if not text:
            raise RucioAuthError(f"token file {self.path} is empty")
        if not header_safe(text):
            # Never quote it: a broken token is still a secret.
            raise RucioAuthError(f"token file {self.path} holds characters no token can have")
        log.info("read the Rucio token from %s", self.path)
        return text
