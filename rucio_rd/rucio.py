"""A small client for the parts of Rucio's REST API that the datalink service needs.

It lists the replicas of files (``POST /replicas/list``), reads RSE attributes and
RSE names, and keeps the service's own Rucio token: obtained by userpass, by an
OIDC client-credentials grant, or read from a token file, cached until shortly
before it expires.  Only ``requests`` and the standard library are used (no
rucio-clients, whose pins must not leak into DaCHS's interpreter).

What it may be relied on for:

- every call is bounded in time: connect and read timeouts on each request and
  a deadline on reading the whole body, so a slow or trickling server ends in
  :class:`RucioUnavailable`, never in a hang;
- one ``POST /replicas/list`` serves all DIDs of a request (split only above
  ``max_dids_per_call``); DIDs Rucio does not know come back in
  :attr:`ReplicaListing.missing`, the others in :attr:`ReplicaListing.found`;
- no password, client secret or token ever appears in a log record, an
  exception text or a ``repr``.

What it must not do: validate DID syntax (the caller does, and gives the user a
UsageFault), rank replicas (:mod:`rucio_rd.ranking`), or build VOTables.

Facts about Rucio 41 this module relies on (measured against a real server):

- ``POST /replicas/list`` silently omits DIDs it does not know, DIDs in unknown
  scopes and names that cannot exist: status 200, just no line for them.
- It fails the *whole* call for a DID its database cannot hold: 500
  ``DatabaseException`` for a scope longer than 25 or a name longer than 250
  characters or a NUL character, and 400 ``InvalidObject`` for a scope or name
  without a word character (its JSON schema asks for the pattern ``\\w``).  Such
  DIDs are answered as missing here without asking Rucio; should Rucio reject a
  batch for a reason this module does not foresee, the batch is bisected so that
  the good DIDs are still answered (see :meth:`RucioClient.list_replicas`).
- A dataset or container DID is expanded into its files; the files' lines do
  not name the DID asked for, so such a DID is reported missing (it is not a
  file) and the files' lines are ignored.
- A known file without a replica in the requested schemes comes back with
  empty ``rses``: it is *found*, with no replicas.
- ``X-Rucio-Auth-Token-Expires`` is an HTTP date ending in ``UTC`` (not GMT),
  e.g. ``Thu, 26 Nov 2026 05:15:30 UTC``; tokens live one hour by default.
- ``GET /rses/{rse}/attr/`` answers a JSON object whose values are strings,
  except the attribute named after the RSE itself, which is ``true``.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import requests

from rucio_rd.deadline import Watchdog
from rucio_rd.model import FileReplicas, Replica, ReplicaListing

if TYPE_CHECKING:
    from rucio_rd.config import RucioSettings

__all__ = [
    "OIDCClientCredentialsTokens",
    "RucioAuthError",
    "RucioClient",
    "RucioError",
    "RucioUnavailable",
    "TokenFileTokens",
    "TokenProvider",
    "UserpassTokens",
    "client_from_settings",
]

log = logging.getLogger(__name__)

# Connect timeouts are kept short: a refused or black-holed address should fail fast
# even when the read timeout is generous.
MAX_CONNECT_TIMEOUT_S = 5.0
# DIDs per POST /replicas/list; a DataLink request is bounded by MAXREC well below this.
MAX_DIDS_PER_CALL = 1000
# Rucio's generic schema (rucio.common.schema.generic): longer values cannot be stored.
SCOPE_LENGTH = 25
NAME_LENGTH = 250
# Schemes preferred, in this order, when the caller names none: those a browser,
# pyvo and curl can fetch with a bearer token.
PREFERRED_SCHEMES = ("https", "davs")
# Token lifetime assumed when a token's expiry is unknown.
UNKNOWN_LIFETIME_S = 600.0
# (status, ExceptionClass) with which Rucio rejects a whole batch because of one DID.
_BATCH_REJECTIONS = {(400, "InvalidObject"), (500, "DatabaseException")}
_WORD = re.compile(r"\w")


# -- errors ------------------------------------------------------------------------------


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


def header_safe(value: str) -> bool:
    """True when ``value`` can travel in an HTTP header as it is (printable ASCII)."""
    return all(" " <= char <= "~" for char in value)


def _scrub(text: str, secrets: Sequence[str | None]) -> str:
    """``text`` with every secret replaced; a last line of defence for error texts."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<secret>")
    return text


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


def _error_for(what: str, resp: requests.Response, secrets: Sequence[str | None] = ()
               ) -> RucioError:
    """The typed error for a response with status >= 400."""
    exception_class, message = _rucio_exception(resp)
    detail = f"{exception_class}: {message}" if exception_class else message
    text = _scrub(f"{what} answered {resp.status_code} {detail}".rstrip(), secrets)
    if resp.status_code in (401, 403):
        cls: type[RucioError] = RucioAuthError
    elif resp.status_code >= 500:
        cls = RucioUnavailable
    else:
        cls = RucioError
    return cls(text, resp.status_code, exception_class)


def _timeouts(timeout: float) -> tuple[float, float]:
    return (min(timeout, MAX_CONNECT_TIMEOUT_S), timeout)


def _send(session: requests.Session, method: str, url: str, what: str, timeout: float,
          secrets: Sequence[str | None] = (), **kw: Any) -> requests.Response:
    """One request whose whole answer arrives within ``timeout`` (+ the connect time).

    The read timeout bounds each wait for data only; a server that trickles its body
    would pass it forever.  So the body is read under a watchdog that shuts the
    socket down at the deadline.  Transport failures become
    :class:`RucioUnavailable`; HTTP statuses are left to the caller.
    """
    deadline = time.monotonic() + timeout + min(timeout, MAX_CONNECT_TIMEOUT_S)
    watchdog = Watchdog()
    try:
        resp = session.request(method, url, timeout=_timeouts(timeout), stream=True, **kw)
        watchdog.start(resp, deadline - time.monotonic())
        try:
            resp.content  # noqa: B018 - reads and caches the whole body
        finally:
            watchdog.stop()
            resp.close()
        if watchdog.expired:
            raise RucioUnavailable(f"{what} took longer than {timeout:g} s to answer")
    except (requests.exceptions.InvalidHeader, UnicodeEncodeError):
        # The message would quote the header, i.e. a credential: say which kind only.
        raise RucioAuthError(f"{what}: a credential cannot be sent in an HTTP header"
                             " (control or non-ASCII characters)") from None
    except requests.RequestException as exc:
        if watchdog.expired:
            raise RucioUnavailable(f"{what} took longer than {timeout:g} s to answer") from None
        if isinstance(exc, requests.Timeout):
            raise RucioUnavailable(f"{what} timed out after {timeout:g} s") from None
        reason = exc.args[0] if isinstance(exc, requests.ConnectionError) and exc.args else exc
        reason = _scrub(str(reason), secrets)
        raise RucioUnavailable(f"{what} failed: {type(exc).__name__}: {reason}") from None
    return resp


# -- tokens ------------------------------------------------------------------------------


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
        self._session = session or requests.Session()

    def __repr__(self) -> str:
        return (f"UserpassTokens(url={self.url!r}, account={self.account!r}, "
                f"username={self.username!r}, password=<hidden>)")

    def _fetch(self) -> tuple[str, float]:
        what = f"GET {self.url}/auth/userpass (account {self.account})"
        headers = {"X-Rucio-Account": self.account, "X-Rucio-Username": self.username,
                   "X-Rucio-Password": self._password}
        resp = _send(self._session, "GET", f"{self.url}/auth/userpass", what, self.timeout,
                     secrets=(self._password,), headers=headers)
        if resp.status_code >= 400:
            raise _error_for(what, resp, secrets=(self._password,))
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
        self._session = session or requests.Session()

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
        resp = _send(self._session, "POST", self.token_url, what, self.timeout,
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
            text = _scrub(f"{what} refused: {resp.status_code} {error} {description}", secrets)
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


# -- replicas ----------------------------------------------------------------------------


def _split_did(did: str) -> tuple[str, str] | None:
    """(scope, name) of a DID that Rucio could possibly know, else None."""
    scope, sep, name = did.partition(":")
    if (not sep or len(scope) > SCOPE_LENGTH or len(name) > NAME_LENGTH
            or not _WORD.search(scope) or not _WORD.search(name)
            or "\x00" in did):
        return None
    return scope, name


def _pick_replicas(entry: Mapping[str, Any], schemes: Sequence[str] | None
                   ) -> tuple[Replica, ...]:
    """One replica per RSE: Rucio's first PFN for it, or its first https/davs PFN."""
    rses = entry.get("rses") or {}
    if not isinstance(rses, dict):
        return ()
    chosen = []
    for rse in sorted(rses):
        pfns = [pfn for pfn in rses[rse] or () if isinstance(pfn, str) and pfn]
        if not pfns:
            continue
        if schemes is None:
            # Rucio lists an RSE's PFNs by protocol priority; without a scheme filter that
            # may put root:// or srm:// first, which a VO client cannot fetch.
            for scheme in PREFERRED_SCHEMES:
                preferred = [pfn for pfn in pfns if pfn.lower().startswith(f"{scheme}://")]
                if preferred:
                    pfns = preferred
                    break
        chosen.append(Replica(rse=rse, pfn=pfns[0]))
    return tuple(chosen)


def _parse_stream(content: bytes, what: str) -> Iterator[dict[str, Any]]:
    """The objects of a newline-delimited JSON body; blank lines are skipped."""
    for number, line in enumerate(content.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            # A broken line means a truncated or garbled answer: reporting its DID as
            # missing would turn a transport fault into a false "not found".
            raise RucioUnavailable(f"{what} answered an unparsable line {number}: "
                                   f"{line[:80].decode('utf-8', 'replace')!r}") from None
        if not isinstance(entry, dict):
            raise RucioUnavailable(f"{what} answered a non-object on line {number}")
        yield entry


# -- the client --------------------------------------------------------------------------


class RucioClient:
    """The datalink service's connection to one Rucio server.

    Parameters
    ----------
    url
        Rucio's REST base URL, e.g. ``https://rucio.example.org``.
    tokens
        Where the service's token comes from (:class:`UserpassTokens`,
        :class:`OIDCClientCredentialsTokens`, :class:`TokenFileTokens`).
    timeout
        Seconds allowed per request (connect at most 5 s of it; reading the whole
        answer is bounded by it too).
    session
        A ``requests.Session`` to share connections; one is made otherwise.
    account
        Sent as ``X-Rucio-Account`` (needed with OIDC tokens that map to several
        accounts); None sends none.
    max_dids_per_call
        DIDs per ``POST /replicas/list``.
    """

    def __init__(self, url: str, tokens: TokenProvider, timeout: float = 10.0,
                 session: requests.Session | None = None, account: str | None = None,
                 max_dids_per_call: int = MAX_DIDS_PER_CALL) -> None:
        if max_dids_per_call < 1:
            raise ValueError(f"max_dids_per_call={max_dids_per_call}; use 1 or more")
        self.url = url.rstrip("/")
        self.tokens = tokens
        self.timeout = timeout
        self.session = session or requests.Session()
        self.account = account
        self.max_dids_per_call = max_dids_per_call

    def __repr__(self) -> str:
        return f"RucioClient(url={self.url!r}, tokens={self.tokens!r}, account={self.account!r})"

    # -- transport -----------------------------------------------------------------------

    def _request(self, method: str, path: str, *, accept: str = "application/json",
                 **kw: Any) -> requests.Response:
        """An authenticated request; on 401 the token is renewed once and the call repeated.

        Returns a response with status < 400, else raises the typed error.
        """
        what = f"{method} {self.url}{path}"
        for attempt in (1, 2):
            token = self.tokens.token()
            headers = {"X-Rucio-Auth-Token": token, "Accept": accept}
            if self.account:
                headers["X-Rucio-Account"] = self.account
            resp = _send(self.session, method, f"{self.url}{path}", what, self.timeout,
                         secrets=(token,), headers=headers, **kw)
            if resp.status_code == 401 and attempt == 1:
                log.info("%s answered 401; renewing the token once", what)
                self.tokens.invalidate()
                continue
            if resp.status_code >= 400:
                raise _error_for(what, resp, secrets=(token,))
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    # -- replicas ------------------------------------------------------------------------

    def list_replicas(self, dids: Sequence[str], schemes: Sequence[str] | None = None
                      ) -> ReplicaListing:
        """The replicas of the files ``dids`` (``"scope:name"`` strings).

        One ``POST /replicas/list`` carries all DIDs (split every
        ``max_dids_per_call``).  Rucio omits DIDs it does not know; they are
        returned in ``missing``, as are DIDs it cannot possibly know (no colon, too
        long for its columns, no word character) without being sent, and dataset or
        container DIDs.

        Should Rucio reject a whole batch with 400 ``InvalidObject`` or 500
        ``DatabaseException`` (one DID it cannot handle spoils the lot), the batch
        is bisected: about 2·log2(n) extra calls find one bad DID, which is then
        reported missing.  A ``DatabaseException`` counts as a bad DID only if
        another part of the same listing succeeds; when two single DIDs fail so
        before anything succeeded, Rucio's database is taken to be down and
        :class:`RucioUnavailable` is raised (after about log2(n)+2 calls).  The
        bisection is capped at 4+4·log2(n) splits; beyond that the error is raised.

        Parameters
        ----------
        dids
            File DIDs; duplicates are asked for once.
        schemes
            PFN schemes to ask Rucio for (e.g. ``["https", "davs"]``); None asks for
            all and keeps, per RSE, the first https PFN, else davs, else Rucio's first.

        Raises
        ------
        RucioUnavailable
            Rucio is unreachable, too slow, answers 5xx or a garbled stream.
        RucioAuthError
            The service's credentials are refused (after one renewal).
        RucioError
            Any other error answer.
        """
        found: dict[str, FileReplicas] = {}
        missing: set[str] = set()
        wanted: dict[tuple[str, str], str] = {}
        for did in dict.fromkeys(dids):
            parts = _split_did(did)
            if parts is None:
                missing.add(did)
            else:
                wanted.setdefault(parts, did)
        pairs = list(wanted)
        state = _BisectState()
        for start in range(0, len(pairs), self.max_dids_per_call):
            batch = pairs[start:start + self.max_dids_per_call]
            self._list_batch(batch, schemes, wanted, found, missing, state)
        state.settle(wanted, missing)
        return ReplicaListing(found=found, missing=frozenset(missing))

    def _list_batch(self, batch: list[tuple[str, str]], schemes: Sequence[str] | None,
                    wanted: Mapping[tuple[str, str], str], found: dict[str, FileReplicas],
                    missing: set[str], state: _BisectState) -> None:
        try:
            entries = self._post_list(batch, schemes)
        except RucioError as exc:
            if (exc.status, exc.exception_class) not in _BATCH_REJECTIONS:
                raise
            if len(batch) == 1:
                if exc.exception_class == "DatabaseException" and not state.succeeded:
                    # Nothing has worked yet: a bad DID, or Rucio's database is down.
                    # A second such DID in a row settles it (an outage costs ~log2(n)+2
                    # calls, not 2n).
                    state.suspect.append((batch[0], exc))
                    if len(state.suspect) > 1:
                        raise RucioUnavailable(f"{exc} (for every DID tried)", exc.status,
                                               exc.exception_class) from None
                else:
                    log.warning("Rucio cannot list %s: %s", wanted[batch[0]], exc)
                    missing.add(wanted[batch[0]])
                return
            state.bisections += 1
            if state.bisections > state.budget(len(wanted)):
                raise type(exc)(f"{exc} (still after {state.bisections - 1} bisections of "
                                "the DID list)", exc.status, exc.exception_class) from None
            log.warning("Rucio rejected a batch of %d DIDs (%s); bisecting", len(batch),
                        exc.exception_class)
            half = len(batch) // 2
            self._list_batch(batch[:half], schemes, wanted, found, missing, state)
            self._list_batch(batch[half:], schemes, wanted, found, missing, state)
            return
        state.succeeded = True
        requested = set(batch)
        for entry in entries:
            key = (entry.get("scope"), entry.get("name"))
            if key not in requested:
                continue  # a file inside a requested dataset or container
            did = wanted[key]  # type: ignore[index]
            size = entry.get("bytes")
            found[did] = FileReplicas(
                did=did,
                bytes=size if isinstance(size, int) and not isinstance(size, bool) else None,
                replicas=_pick_replicas(entry, schemes),
            )
        for key in batch:
            if wanted[key] not in found:
                missing.add(wanted[key])

    def _post_list(self, batch: list[tuple[str, str]], schemes: Sequence[str] | None
                   ) -> list[dict[str, Any]]:
        body: dict[str, Any] = {
            "dids": [{"scope": scope, "name": name} for scope, name in batch],
            # Without it Rucio 41 sorts by 'geoip' and tries to download a GeoIP
            # database on every call; we rank the replicas ourselves.
            "sort": "random",
        }
        if schemes is not None:
            body["schemes"] = list(schemes)
        resp = self._request("POST", "/replicas/list", accept="application/x-json-stream",
                             json=body)
        return list(_parse_stream(resp.content, f"POST {self.url}/replicas/list"))

    # -- RSEs and health -----------------------------------------------------------------

    def rse_attributes(self, rse: str) -> dict[str, Any]:
        """The attributes of ``rse`` (``GET /rses/{rse}/attr/``); values are mostly strings."""
        resp = self._request("GET", f"/rses/{quote(rse, safe='')}/attr/")
        payload = self._json(resp)
        # Rucio 41 answers one object; older servers a list of one-key objects.
        if isinstance(payload, dict):
            return payload
        merged: dict[str, Any] = {}
        for item in payload if isinstance(payload, list) else ():
            if isinstance(item, dict):
                merged.update(item)
        return merged

    def list_rses(self) -> list[str]:
        """The names of all RSEs (``GET /rses/``)."""
        resp = self._request("GET", "/rses/", accept="application/x-json-stream")
        entries = _parse_stream(resp.content, f"GET {self.url}/rses/")
        return [entry["rse"] for entry in entries if isinstance(entry.get("rse"), str)]

    def whoami(self) -> dict[str, Any]:
        """The account the service's token belongs to (``GET /accounts/whoami``).

        Fetches a token first if there is none, so it is the way to try the
        credentials: :class:`RucioAuthError` when they are refused.  Returns
        the account's ``account`` name and ``status`` only.
        """
        payload = self._json(self._request("GET", "/accounts/whoami"))
        if not isinstance(payload, dict) or not isinstance(payload.get("account"), str):
            raise RucioUnavailable(f"GET {self.url}/accounts/whoami answered something that"
                                   " is not an account")
        return {"account": payload["account"], "status": payload.get("status")}

    def ping(self) -> dict[str, Any]:
        """Rucio's ``GET /ping`` answer, e.g. ``{"version": "41.5.1"}`` (needs no token)."""
        what = f"GET {self.url}/ping"
        resp = _send(self.session, "GET", f"{self.url}/ping", what, self.timeout,
                     headers={"Accept": "application/json"})
        if resp.status_code >= 400:
            raise _error_for(what, resp)
        payload = self._json(resp)
        if not isinstance(payload, dict):
            raise RucioUnavailable(f"{what} answered {payload!r}, not an object")
        return payload

    def _json(self, resp: requests.Response) -> Any:
        try:
            return json.loads(resp.content)
        except ValueError:
            raise RucioUnavailable(f"{resp.request.method} {resp.url} answered "
                                   "something that is not JSON") from None


@dataclass
class _BisectState:
    """Book-keeping of one list_replicas call's fall-back bisection."""

    succeeded: bool = False
    bisections: int = 0
    # Single DIDs that failed with DatabaseException before anything succeeded.
    suspect: list[tuple[tuple[str, str], RucioError]] = field(default_factory=list)

    @staticmethod
    def budget(count: int) -> int:
        # Enough to isolate a handful of bad DIDs (each costs ~2*log2(n) calls), far below
        # the 2n calls that bisecting an outage to the last DID would cost.
        return 4 + 4 * math.ceil(math.log2(count + 1))

    def settle(self, wanted: Mapping[tuple[str, str], str], missing: set[str]) -> None:
        """Suspect DIDs become missing once something succeeded; else Rucio is down."""
        if not self.suspect:
            return
        if not self.succeeded:
            _key, exc = self.suspect[0]
            raise RucioUnavailable(f"{exc} (for every DID asked)", exc.status,
                                   exc.exception_class)
        for key, exc in self.suspect:
            log.warning("Rucio cannot list %s: %s", wanted[key], exc)
            missing.add(wanted[key])
        self.suspect.clear()


def client_from_settings(settings: RucioSettings) -> RucioClient:
    """The client that ``[rucio]`` settings describe (``auth`` = userpass, token_file, oidc).

    Raises :class:`rucio_rd.config.ConfigError` naming the key that is missing.
    """
    from rucio_rd.config import ConfigError

    def need(key: str) -> str:
        value = getattr(settings, key)
        if not value:
            also = f", {key}_file" if hasattr(settings, f"{key}_file") else ""
            raise ConfigError(f"[rucio] {key} must be set when auth = {settings.auth!r} "
                              f"(or RUCIO_RD_RUCIO_{key.upper()} in the environment{also})")
        return value

    need("url")
    session = requests.Session()
    tokens: TokenProvider
    account: str | None = None
    if settings.auth == "userpass":
        tokens = UserpassTokens(settings.url, need("account"), need("username"),
                                need("password"), timeout=settings.timeout, session=session)
    elif settings.auth == "token_file":
        tokens = TokenFileTokens(need("token_file"))
        account = settings.account or None
    elif settings.auth == "oidc":
        tokens = OIDCClientCredentialsTokens(
            need("oidc_token_url"), need("oidc_client_id"), need("oidc_client_secret"),
            scope=settings.oidc_scope or None,
            audience=settings.oidc_audience or None,
            timeout=settings.timeout, session=session)
        account = settings.account or None
    else:
        raise ConfigError(f"[rucio] auth = {settings.auth!r} is not one of "
                          "userpass, token_file, oidc")
    return RucioClient(settings.url, tokens, timeout=settings.timeout, session=session,
                       account=account)
