"""A small client for the parts of Rucio's REST API that the datalink service needs.

It lists the replicas of files (``POST /replicas/list``), reads RSE attributes and
RSE names, and checks whose token it holds, presenting the service's own token
from a :class:`~rucio_rd.tokens.TokenProvider` (userpass, OIDC client
credentials or a token file).  Requests go through :func:`rucio_rd.rucio_http.send`.
Only ``requests`` and the standard library are used (no rucio-clients, whose
pins must not leak into DaCHS's interpreter).

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
- ``GET /rses/{rse}/attr/`` answers a JSON object whose values are strings,
  except the attribute named after the RSE itself, which is ``true``.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import requests

from rucio_rd.http import bounded_session
from rucio_rd.model import FileReplicas, Replica, ReplicaListing
from rucio_rd.rucio_http import (
    RucioAuthError,
    RucioError,
    RucioUnavailable,
    error_for,
    flags,
    send,
)
from rucio_rd.tokens import (
    OIDCClientCredentialsTokens,
    TokenFileTokens,
    TokenProvider,
    UserpassTokens,
)

if TYPE_CHECKING:
    from rucio_rd.config import RucioSettings

# The client's errors are Rucio's (rucio_rd.rucio_http); the token providers live in
# rucio_rd.tokens.
__all__ = [
    "RucioAuthError",
    "RucioClient",
    "RucioError",
    "RucioUnavailable",
    "adler32_text",
    "client_from_settings",
]

log = logging.getLogger(__name__)

# DIDs per POST /replicas/list; a DataLink request is bounded by MAXREC well below this.
MAX_DIDS_PER_CALL = 1000
# Rucio's generic schema (rucio.common.schema.generic): longer values cannot be stored.
SCOPE_LENGTH = 25
NAME_LENGTH = 250
# Schemes preferred, in this order, when the caller names none: those a browser,
# pyvo and curl can fetch with a bearer token.
PREFERRED_SCHEMES = ("https", "davs")
# (status, ExceptionClass) with which Rucio rejects a whole batch because of one DID.
_BATCH_REJECTIONS = {(400, "InvalidObject"), (500, "DatabaseException")}
_WORD = re.compile(r"\w")
# POST /replicas/list's flags, all given: Rucio's own defaults would flood its log.
_LIST_FLAGS = flags(unavailable=False, ignore_availability=False, all_states=False,
                    resolve_archives=True, resolve_parents=False)


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


def adler32_text(value: Any) -> str | None:
    """Rucio's adler32 as eight lower-case hex digits (Rucio may drop leading zeros),
    or None when it gives none or something else."""
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= 8:
        return None
    text = value.strip().lower()
    if any(char not in "0123456789abcdef" for char in text):
        return None
    return text.rjust(8, "0")


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
        self.session = bounded_session(session)
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
            resp = send(self.session, method, f"{self.url}{path}", what, self.timeout,
                         secrets=(token,), headers=headers, **kw)
            if resp.status_code == 401 and attempt == 1:
                log.info("%s answered 401; renewing the token once", what)
                self.tokens.invalidate()
                continue
            if resp.status_code >= 400:
                raise error_for(what, resp, secrets=(token,))
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
                adler32=adler32_text(entry.get("adler32")),
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
            **_LIST_FLAGS,
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
        resp = send(self.session, "GET", f"{self.url}/ping", what, self.timeout,
                     headers={"Accept": "application/json"})
        if resp.status_code >= 400:
            raise error_for(what, resp)
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
    session = bounded_session()
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
