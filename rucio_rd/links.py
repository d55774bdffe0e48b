"""What the datalink service decides, without DaCHS: parameters in, links or faults out.

:func:`parse_request` turns the service's (case-insensitive) parameters into
a validated :class:`DatalinkRequest`; :func:`parse_did` checks one ID;
:func:`client_address` picks the address to geolocate;
:class:`ReplicaResolver` asks Rucio once for all IDs of a request, ranks
each file's replicas and returns, per ID, either a :class:`LinkSet` or a
:class:`LinkFault`.

This module never builds VOTables and never imports DaCHS (see
:mod:`rucio_rd.dachs_datalink` for that); every error a client can cause
comes back as a :class:`LinkFault` naming the offending value, never as an
exception.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from rucio_rd.deadline import Deadline
from rucio_rd.geo import GeoLocator, LocationError
from rucio_rd.guard import Busy, CircuitBreaker, CircuitOpen, Slots
from rucio_rd.model import (
    NAME_MAX,
    NAME_PATTERN,
    SCOPE_MAX,
    SCOPE_PATTERN,
    Position,
    RankedReplica,
    ReplicaListing,
    Site,
    SiteCatalogue,
)
from rucio_rd.ranking import (
    DEFAULT_SORT,
    SORT_METHODS,
    SORTS,
    NoSodaReplica,
    RankingError,
    choose,
    rank_replicas,
)
from rucio_rd.replica_cache import ReplicaCache
from rucio_rd.rucio import RucioAuthError, RucioClient, RucioError, RucioUnavailable
from rucio_rd.site_cache import CachedSiteSource
from rucio_rd.sites import SiteSourceError

__all__ = [
    "ClientLocation",
    "DatalinkRequest",
    "Fault",
    "FileMetadata",
    "LinkFault",
    "LinkSet",
    "ReplicaResolver",
    "UsageError",
    "all_values",
    "client_address",
    "crop_groups",
    "parse_did",
    "parse_request",
    "printable",
]

log = logging.getLogger("rucio_rd.links")

# Rucio's own limits: scope up to 25 characters, name up to 250 (common.schema).
_SCOPE = re.compile(SCOPE_PATTERN)
_NAME = re.compile(NAME_PATTERN)
_MAX_ECHO = 80
_TRUE = ("true", "yes", "1", "on", "t", "y")
_FALSE = ("false", "no", "0", "off", "f", "n", "")


class UsageError(ValueError):
    """A parameter the client got wrong; the message says which and what is allowed.

    ``parameter`` names it where the whole request fails on it (e.g. MAXREC).
    """

    def __init__(self, message: str, parameter: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter


class Fault(StrEnum):
    """The DataLink 1.1 error codes this service answers with, in error_message rows."""

    NOT_FOUND = "NotFoundFault"  # no such file, no replica, no SODA site
    USAGE = "UsageFault"  # the client got a parameter or an ID wrong
    TRANSIENT = "TransientFault"  # Rucio or the site information is down: retry later
    FATAL = "FatalFault"  # the service is misconfigured: the operator must act
    DEFAULT = "DefaultFault"  # anything else


def _echo(value: str) -> str:
    """A value safe and short enough to quote back in an error message."""
    text = value if len(value) <= _MAX_ECHO else value[:_MAX_ECHO] + "..."
    return repr(text)


@dataclass(frozen=True)
class DatalinkRequest:
    """The service's parameters other than ID, validated."""

    sort: str = DEFAULT_SORT
    ranking: int = 0
    client_ip_address: str | None = None
    must_include_soda: bool = False


def all_values(args: Mapping[str, Any], name: str) -> list[str]:
    """Every value of a parameter, whatever the case of its name (``ID=a&id=b``: both)."""
    values: list[str] = []
    for key in list(dict.keys(args)) if isinstance(args, dict) else list(args):
        if str(key).upper() != name.upper():
            continue
        value = dict.__getitem__(args, key) if isinstance(args, dict) else args[key]
        if isinstance(value, list | tuple):
            values.extend(str(item) for item in value)
        elif value is not None:
            values.append(str(value))
    return values


def _single(args: Mapping[str, Any], key: str) -> str | None:
    """The one value of a parameter (any case), or None; different values are an error."""
    values = [value.strip() for value in all_values(args, key)]
    if not values:
        return None
    if len(set(values)) > 1:
        raise UsageError(f"{key} was given {len(values)} times with different values; give it once")
    return values[0]


def parse_request(args: Mapping[str, Any]) -> DatalinkRequest:
    """Validate sort, ranking, client_ip_address and must_include_soda.

    ``args`` maps parameter names to a value or a list of values; names are
    matched case-insensitively when ``args`` is DaCHS's CaseSemisensitiveDict
    (upper-case lookups), and also in their lower-case spelling otherwise.
    """
    sort = _single(args, "sort") or DEFAULT_SORT
    if sort not in SORT_METHODS:
        raise UsageError(f"sort={_echo(sort)} is not one of {', '.join(SORTS)}")
    ranking_text = _single(args, "ranking")
    ranking = 0
    if ranking_text:
        if not re.fullmatch(r"[+]?\d+", ranking_text):
            raise UsageError(
                f"ranking={_echo(ranking_text)} is not a whole number >= 0 (0 is the nearest)"
            )
        if len(ranking_text.lstrip("+")) > 6:
            raise UsageError(
                f"ranking={_echo(ranking_text)} is far more than any file's replicas; use 0..n-1"
            )
        ranking = int(ranking_text)
    address = _single(args, "client_ip_address") or None
    soda_text = (_single(args, "must_include_soda") or "").lower()
    if soda_text not in _TRUE + _FALSE:
        raise UsageError(f"must_include_soda={_echo(soda_text)} is not True or False")
    return DatalinkRequest(sort, ranking, address, soda_text in _TRUE)


def crop_groups(groups: Sequence[Sequence[Any]], maxrec: int | None) -> tuple[list[Any], bool]:
    """At most ``maxrec`` rows, keeping each ID's rows together; and whether any were cut.

    Whole groups (one per ID) are kept while they fit; a first group larger
    than MAXREC keeps its first rows (the chosen replica comes first).
    """
    rows: list[Any] = []
    for group in groups:
        if maxrec is None or len(rows) + len(group) <= maxrec:
            rows.extend(group)
            continue
        if not rows:
            rows.extend(group[:maxrec])
        return rows, True
    return rows, False


def printable(text: str) -> str:
    """``text`` with control characters replaced, safe to echo into XML."""
    return "".join(char if char.isprintable() else "\ufffd" for char in text)


def parse_did(text: str) -> tuple[str, str]:
    """Split a DID ``scope:name``; raise UsageError saying what is wrong."""
    if ":" not in text:
        raise UsageError(f"ID {_echo(text)} is not a Rucio DID; expected scope:name")
    scope, name = text.split(":", 1)
    if not _SCOPE.fullmatch(scope) or len(scope) > SCOPE_MAX:
        raise UsageError(
            f"ID {_echo(text)}: scope {_echo(scope)} is not a Rucio scope"
            " (1-25 letters, digits, '_', '-', '.')"
        )
    if (not _NAME.fullmatch(name) or len(name) > NAME_MAX or name.startswith("/")
            or "//" in name):
        raise UsageError(f"ID {_echo(text)}: name {_echo(name)} is not a Rucio file name")
    return scope, name


def client_address(
    explicit: str | None,
    peer: str | None,
    headers: Mapping[str, str | None],
    trusted_proxies: Iterable[str] = (),
) -> tuple[str | None, str]:
    """The address to geolocate and where it came from.

    ``client_ip_address`` wins.  Forwarding headers (``X-Forwarded-For``,
    then ``X-Real-IP``) count only when the peer is one of the trusted
    proxies (addresses or networks); the right-most untrusted hop of
    X-Forwarded-For is the client, as everything left of it is the client's
    own claim.  Otherwise the peer address.
    """
    if explicit:
        return explicit, "client_ip_address parameter"
    networks = []
    for proxy in trusted_proxies:
        try:
            networks.append(ipaddress.ip_network(proxy, strict=False))
        except ValueError:
            log.warning("ignoring trusted proxy %r: not an address or network", proxy)

    def trusted(address: str) -> bool:
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(parsed in network for network in networks)

    if peer and trusted(peer):
        forwarded = headers.get("x-forwarded-for") or ""
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        while hops and trusted(hops[-1]):
            hops.pop()
        if hops:
            return hops[-1], "X-Forwarded-For from a trusted proxy"
        real_ip = (headers.get("x-real-ip") or "").strip()
        if real_ip:
            return real_ip, "X-Real-IP from a trusted proxy"
    return peer, "the connection's peer address"


@dataclass(frozen=True)
class FileMetadata:
    """What the published table knows about a file (for the #this rows)."""

    obs_id: str | None = None
    content_type: str | None = None
    content_length: int | None = None
    dataproduct_type: str | None = None
    # s_ra, s_dec, s_fov, em_min, em_max, t_min, t_max where known (the SODA VALUES)
    extent: Mapping[str, float | None] = field(default_factory=dict)
    # the published datalinks column: the file's extra links (rucio_rd.extra_links)
    datalinks: str | None = None
    # True when the published table could not be read (the rows say so).
    unavailable: bool = False


@dataclass(frozen=True)
class ClientLocation:
    """Where the client was placed, or why it could not be."""

    address: str | None
    source: str
    position: Position | None = None
    problem: str | None = None


@dataclass(frozen=True)
class LinkSet:
    """The answer for one ID: replicas in the order to try them, chosen first."""

    did: str
    replicas: tuple[RankedReplica, ...]
    metadata: FileMetadata
    file_bytes: int | None = None
    file_adler32: str | None = None
    # Why no site information could be had (for the log); None when it could.
    sites_problem: str | None = None

    @property
    def chosen_site(self) -> Site | None:
        return self.replicas[0].site if self.replicas else None


@dataclass(frozen=True)
class LinkFault:
    """The answer for an ID that gets no links: a DataLink fault row."""

    did: str
    fault: Fault
    message: str


@dataclass
class ReplicaResolver:
    """Turns IDs into ranked replicas: Rucio for replicas, the site source for positions.

    Created once per process (the clients inside keep connections, tokens and
    the site cache) and shared by all requests; ``resolve`` is thread-safe as
    long as the clients are.

    Rucio is asked only for files not in ``cache``, by at most ``slots``
    requests at once, and not at all while ``breaker`` says it is down: the
    IDs then get a TransientFault at once, so that requests never pile up in
    the server's threads waiting on a Rucio that does not answer.
    """

    rucio: RucioClient
    sites: CachedSiteSource
    locator: GeoLocator
    metadata_lookup: Callable[[Sequence[str]], Mapping[str, FileMetadata]] = (
        lambda dids: {}
    )
    rng: random.Random = field(default_factory=random.SystemRandom)
    slots: Slots = field(default_factory=lambda: Slots(0))
    breaker: CircuitBreaker = field(default_factory=lambda: CircuitBreaker("Rucio", 0))
    cache: ReplicaCache = field(default_factory=lambda: ReplicaCache(0))

    def locate(self, request: DatalinkRequest, address: str | None, source: str) -> ClientLocation:
        if address is None:
            return ClientLocation(None, source, problem="no client address is known")
        try:
            return ClientLocation(address, source, self.locator.locate(address))
        except LocationError as exc:
            return ClientLocation(address, source, problem=str(exc))

    def resolve(
        self,
        ids: Sequence[str],
        request: DatalinkRequest,
        client: ClientLocation,
    ) -> list[LinkSet | LinkFault]:
        """One result per ID, in the order of ``ids``."""
        results: dict[int, LinkSet | LinkFault] = {}
        wanted: dict[int, str] = {}
        for index, raw in enumerate(ids):
            try:
                scope, name = parse_did(raw)
            except UsageError as exc:
                results[index] = LinkFault(raw, Fault.USAGE, str(exc))
                continue
            if SORT_METHODS[request.sort].needs_client_position and client.position is None:
                if client.source == "client_ip_address parameter":
                    results[index] = LinkFault(
                        raw, Fault.USAGE,
                        f"client_ip_address cannot be geolocated: {client.problem}",
                    )
                    continue
            wanted[index] = f"{scope}:{name}"

        if wanted:
            self._resolve_known(wanted, request, client, results)
        return [results[index] for index in range(len(ids))]

    def _resolve_known(
        self,
        wanted: dict[int, str],
        request: DatalinkRequest,
        client: ClientLocation,
        results: dict[int, LinkSet | LinkFault],
    ) -> None:
        dids = sorted(set(wanted.values()))
        try:
            listing = self.cache.listing(dids, self._ask_rucio)
        except (Busy, CircuitOpen, RucioError) as exc:
            fault, message = _listing_fault(exc)
            for index, did in wanted.items():
                results[index] = LinkFault(did, fault, message)
            return
        sites_problem = None
        try:
            catalogue = self.sites.get()
        except SiteSourceError as exc:
            log.warning("no site information: %s", exc)
            catalogue, sites_problem = SiteCatalogue({}), str(exc)
        try:
            metadata = self.metadata_lookup(dids)
        except Exception as exc:  # the table is a nicety; links work without it
            log.warning("metadata lookup failed: %s", " ".join(str(exc).split()))
            metadata = {did: FileMetadata(unavailable=True) for did in dids}
        for index, did in wanted.items():
            if sites_problem and request.must_include_soda:
                # Not "no SODA site": we cannot tell which sites offer SODA right now.
                # (The reason, with internal addresses, is in the log.)
                results[index] = LinkFault(
                    did, Fault.TRANSIENT,
                    "site information is unavailable, so the sites offering SODA are"
                    " unknown; try again later",
                )
                continue
            results[index] = self._links_for(did, listing, catalogue, metadata, request, client,
                                             sites_problem)

    def _ask_rucio(self, dids: list[str]) -> ReplicaListing:
        """Rucio's listing, within a slot, the circuit breaker and one time budget
        (twice ``[rucio] timeout``: a token and the listing); failures are remembered."""
        with self.slots.take("Rucio"):
            probe = self.breaker.check()
            ok, failure = False, None
            try:
                with Deadline(2 * self.rucio.timeout).active():
                    listing = self.rucio.list_replicas(dids)
                ok = True
                return listing
            except RucioUnavailable as exc:
                failure = str(exc)
                self.cache.clear()  # what Rucio holds is unknown now
                raise
            except RucioError:
                ok = True  # Rucio answered; the request was the problem
                raise
            finally:
                change = self.breaker.record(ok, failure, probe)
                if change == "opened":
                    log.warning("Rucio failed %d calls in a row: DataLink requests fail at once"
                                " for %.0f s, then one probes it", self.breaker.failures,
                                self.breaker.retry_after)
                elif change == "closed":
                    log.info("Rucio answers again")

    def _links_for(
        self,
        did: str,
        listing: Any,
        catalogue: SiteCatalogue,
        metadata: Mapping[str, FileMetadata],
        request: DatalinkRequest,
        client: ClientLocation,
        sites_problem: str | None = None,
    ) -> LinkSet | LinkFault:
        if did in listing.missing or did not in listing.found:
            return LinkFault(did, Fault.NOT_FOUND, f"Rucio knows no file {did}")
        found = listing.found[did]
        if not found.replicas:
            return LinkFault(did, Fault.NOT_FOUND, f"{did} has no available replica")
        try:
            ranked = rank_replicas(
                found.replicas, catalogue, client.position, request.sort,
                request.must_include_soda, self.rng,
            )
            ordered = choose(ranked, request.ranking)
        except NoSodaReplica as exc:
            return LinkFault(did, Fault.NOT_FOUND, str(exc))
        except RankingError as exc:
            return LinkFault(did, Fault.USAGE, str(exc))
        return LinkSet(did, tuple(ordered), metadata.get(did, FileMetadata()), found.bytes,
                       found.adler32, sites_problem)


class _EveryFewSeconds:
    """A warning logged at most once per ``period`` seconds, with how many were held back."""

    def __init__(self, text: str, period: float = 10.0) -> None:
        self.text, self.period = text, period
        self._lock = threading.Lock()
        self._last = float("-inf")
        self._held = 0

    def warning(self, detail: object) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last < self.period:
                self._held += 1
                return
            held, self._held, self._last = self._held, 0, now
        log.warning("%s: %s%s", self.text, detail,
                    f" ({held} more since the last such message)" if held else "")


_busy_log = _EveryFewSeconds("DataLink requests turned away")


def _listing_fault(exc: Exception) -> tuple[Fault, str]:
    """The fault, and what the client is told, when the replicas could not be listed.

    The details (internal URLs, accounts, Rucio's own message) are for the
    operator's log; the client learns what happened and what to do.
    """
    if isinstance(exc, Busy):
        _busy_log.warning(exc)
        return Fault.TRANSIENT, ("the service is busy: too many requests are waiting on"
                                 " Rucio; try again in a few seconds")
    if isinstance(exc, CircuitOpen):
        return Fault.TRANSIENT, (f"Rucio is not answering; the service asks it again in"
                                 f" {exc.retry_in:.0f} s; try again later")
    log.warning("replica listing failed: %s", exc)
    if isinstance(exc, RucioUnavailable):
        return Fault.TRANSIENT, "Rucio is unavailable; try again later"
    if isinstance(exc, RucioAuthError):
        return Fault.FATAL, "Rucio refused the service's credentials; the operator must fix them"
    return Fault.DEFAULT, (f"Rucio could not list the replicas ({type(exc).__name__});"
                           " the service's log has the details")
