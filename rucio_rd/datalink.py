"""A DataLink request in one call: the request's arguments and the client's
address in, the rows of the answer and the explanation of the ranking out.

:func:`answer` is everything the service decides.  It parses the parameters
(:mod:`rucio_rd.links`), asks the shared :class:`~rucio_rd.links.ReplicaResolver`
for all IDs at once, and turns each ID's result into rows, in ID order and kept
together under MAXREC: :class:`ReplicaLink` (``#this``, the chosen replica
first), :class:`AuxiliaryLink` (the file's extra links from its metadata),
:class:`SodaLink` (a SODA service of a site holding a replica, the
chosen replica's site first, with the ID that service takes) or a
:class:`~rucio_rd.links.LinkFault` (an error row).  The DaCHS side
(:mod:`rucio_rd.dachs_datalink`) only reads the request, converts these rows
into DaCHS's link definitions and service descriptors, and renders them.

This module never imports DaCHS and never builds VOTables; a client's mistake
in one ID is a fault row for that ID, never an exception.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rucio_rd.config import ConfigError, Settings
from rucio_rd.extra_links import ExtraLink, parse_extra_links
from rucio_rd.links import (
    ClientLocation,
    DatalinkRequest,
    Fault,
    LinkFault,
    LinkSet,
    ReplicaResolver,
    UsageError,
    all_values,
    client_address,
    crop_groups,
    parse_request,
    printable,
)
from rucio_rd.model import SODA_SYNC, SodaService
from rucio_rd.ranking import SORT_METHODS
from rucio_rd.soda import extent_values, soda_id

__all__ = [
    "MAX_IDS",
    "PRODUCT_TYPES",
    "AuxiliaryLink",
    "ClientFacts",
    "DatalinkAnswer",
    "Redirect",
    "ReplicaLink",
    "SodaLink",
    "answer",
    "content_qualifier",
    "error_message",
    "explain_ranking",
    "extra_links",
    "redirect",
    "replica_links",
    "soda_links",
]

log = logging.getLogger("rucio_rd.datalink")

#: The most IDs resolved in one request (each gives at least one row).
MAX_IDS = 1000


@dataclass(frozen=True)
class ClientFacts:
    """What the HTTP layer saw of the client: the peer and the forwarding headers."""

    peer: str | None = None
    x_forwarded_for: str | None = None
    x_real_ip: str | None = None

    @property
    def headers(self) -> dict[str, str | None]:
        return {"x-forwarded-for": self.x_forwarded_for, "x-real-ip": self.x_real_ip}


@dataclass(frozen=True)
class ReplicaLink:
    """A ``#this`` row: one replica of a file.

    ``content_qualifier`` is the product type (``#cube``...), ``link_auth``
    whether the storage wants authentication, ``adler32`` Rucio's checksum,
    ``site`` the site holding it (where known): a client sends its token to
    that site's hosts only.
    """

    did: str
    access_url: str
    description: str
    content_type: str | None
    content_length: int | None
    content_qualifier: str | None = None
    link_auth: str | None = None
    adler32: str | None = None
    site: str | None = None


#: ObsCore's dataproduct_type values that are terms of the IVOA product-type
#: vocabulary (http://www.ivoa.net/rdf/product-type), which content_qualifier uses.
PRODUCT_TYPES = frozenset({"image", "cube", "spectrum", "sed", "timeseries", "visibility",
                           "event", "measurements", "dynamic-spectrum"})


def content_qualifier(dataproduct_type: str | None) -> str | None:
    """DataLink's content_qualifier for a file of this ObsCore product type: the
    vocabulary term as a relative URI (``#cube``), or None for anything else."""
    term = (dataproduct_type or "").strip().lower()
    return f"#{term}" if term in PRODUCT_TYPES else None


@dataclass(frozen=True)
class SodaLink:
    """A SODA service of a replica's site: a ``#cutout`` row and its descriptor.

    ``rank`` is the rank of the replica at that site (0: the chosen one),
    ``soda_id`` the ID the service takes for the file there, and ``values``
    the ``(MIN, MAX)`` VALUES of the parameters the file's extent bounds
    (:func:`rucio_rd.soda.extent_values`).
    """

    did: str
    service: SodaService
    site_name: str
    soda_id: str
    rank: int = 0
    values: Mapping[str, tuple[str | None, str | None]] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "sync" if self.service.standard_id == SODA_SYNC else "async"

    @property
    def description(self) -> str:
        which = "the chosen replica" if self.rank == 0 else f"fallback {self.rank}"
        return (f"SODA {self.kind} cutout service for {self.did} at {self.site_name}"
                f" (the site of {which})")


@dataclass(frozen=True)
class AuxiliaryLink:
    """One of a file's extra links from its metadata (a preview, an auxiliary file)."""

    did: str
    link: ExtraLink


Row = ReplicaLink | AuxiliaryLink | SodaLink | LinkFault

# The DIDs whose bad extra links were logged lately (each is logged once in a while).
_REPORTED: OrderedDict[str, float] = OrderedDict()
_REPORTED_LOCK = threading.Lock()
_REPORT_EVERY = 600.0


def extra_links(link_set: LinkSet) -> list[AuxiliaryLink]:
    """The file's valid extra links; the bad entries are skipped, and logged (once
    per file in :data:`_REPORT_EVERY` seconds) for the operator to fix."""
    found, problems = parse_extra_links(link_set.metadata.datalinks)
    if problems:
        now = time.monotonic()
        with _REPORTED_LOCK:
            due = now - _REPORTED.get(link_set.did, -_REPORT_EVERY) >= _REPORT_EVERY
            if due:
                _REPORTED[link_set.did] = now
                _REPORTED.move_to_end(link_set.did)
                while len(_REPORTED) > 1000:
                    _REPORTED.popitem(last=False)
        if due:
            log.warning("%s: extra links skipped (its metadata's datalinks): %s",
                        printable(link_set.did), "; ".join(problems)[:2000])
    return [AuxiliaryLink(link_set.did, link) for link in found]


@dataclass(frozen=True)
class DatalinkAnswer:
    """The rows to render, how the ranking was made, and whether rows were cut.

    ``ranking`` is ``(sort method, explanation)`` for the ``replica_ranking``
    INFO; None when no ID got as far as a ranking (a request without any ID
    gets no rows: a normal, empty answer).
    """

    rows: list[Row]
    ranking: tuple[str, str] | None
    overflowed: bool


def _describe(link_set: LinkSet, rank: int, first_is: str | None, ranking: int = 0) -> str:
    ranked = link_set.replicas[rank]
    # From the metadata: jsonb holds U+FFFE and the like, which XML cannot.
    what = printable(link_set.metadata.obs_id or link_set.did)
    where = ranked.replica.rse
    if ranked.site is not None and ranked.site.name != ranked.replica.rse:
        where = f"{ranked.site.name} ({ranked.replica.rse})"
    text = f"{what} at {where}"
    if ranked.distance_km is not None:
        text += f", {ranked.distance_km:,.0f} km from the client"
    if link_set.metadata.unavailable:
        text += " (the published metadata could not be read: no content type)"
    if rank == 0:
        # "nearest" is said only where the distance is known.
        if first_is and ranking == 0 and ranked.distance_km is not None:
            return f"{text}: {first_is}"
        return f"{text}: chosen replica" + (f" (ranking={ranking})" if ranking else "")
    return f"{text}: fallback {rank}"


def replica_links(link_set: LinkSet, first_is: str | None, ranking: int = 0,
                  link_auth: str | None = None) -> list[ReplicaLink]:
    """The ``#this`` rows of one file, chosen replica first, described for people.

    ``first_is`` names what the first replica is (the sort method's
    :attr:`~rucio_rd.ranking.SortMethod.first_is`, when the client was located),
    else it is "chosen".  The length and the checksum are Rucio's (what a
    download gets; the published table's length where Rucio gives none).
    ``link_auth`` is said for replicas whose site does not say it.
    """
    length = link_set.file_bytes
    if length is None:
        length = link_set.metadata.content_length
    qualifier = content_qualifier(link_set.metadata.dataproduct_type)
    return [
        ReplicaLink(link_set.did, ranked.replica.pfn,
                    _describe(link_set, rank, first_is, ranking),
                    link_set.metadata.content_type, length, qualifier,
                    (ranked.site.link_auth if ranked.site is not None else None) or link_auth,
                    link_set.file_adler32,
                    ranked.site.name if ranked.site is not None else None)
        for rank, ranked in enumerate(link_set.replicas)
    ]


def soda_links(link_set: LinkSet, template: str, authority: str) -> list[SodaLink]:
    """The SODA services of every site holding a replica, in the replicas' order (the
    chosen replica's site first), each with the ID it takes for the file there.

    ``template`` and ``authority`` make the ID where the service does not name
    its own form (:mod:`rucio_rd.soda`).  A site holding several replicas
    is described once, with its best-ranked replica's URL.
    """
    values = extent_values(link_set.metadata.extent)
    links: list[SodaLink] = []
    seen: set[str] = set()
    for rank, ranked in enumerate(link_set.replicas):
        site = ranked.site
        if site is None or not site.has_soda or site.name in seen:
            continue
        seen.add(site.name)
        for service in (site.soda_sync, site.soda_async):
            if service is None:
                continue
            try:
                identifier = soda_id(service.id_template or template, authority=authority,
                                     did=link_set.did, url=ranked.replica.pfn)
            except ValueError as exc:  # templates and DIDs are checked before: a bug
                log.error("no SODA ID for %s at %s: %s", printable(link_set.did), site.name, exc)
                continue
            links.append(SodaLink(link_set.did, service, site.name, identifier, rank, values))
    return links


def _unplaced(link_sets: Sequence[LinkSet]) -> tuple[bool, list[str]]:
    """Whether site information was missing, and the RSEs whose position is unknown."""
    missing_sites = any(link_set.sites_problem for link_set in link_sets)
    rses = {ranked.replica.rse for link_set in link_sets for ranked in link_set.replicas
            if ranked.distance_km is None}
    return missing_sites, sorted(rses)


def explain_ranking(request: DatalinkRequest, client: ClientLocation,
                    locator_description: str, link_sets: Sequence[LinkSet] = ()
                    ) -> tuple[str, str]:
    """The ``replica_ranking`` INFO: the sort method, and in words how the order was made.

    ``link_sets`` are the answer's files: where their sites' positions are
    unknown (no site information, or an RSE the sites do not place), it says
    so and which order was used instead.
    """
    method = SORT_METHODS[request.sort]
    missing_sites, unplaced = _unplaced(link_sets)
    if not method.needs_client_position:
        how = f"replicas {method.summary}"
    elif client.position is not None and missing_sites:
        position = client.position
        how = (f"the site information is unavailable (the service's log says why), so no"
               f" replica's position is known and none is called nearest: replicas are in"
               f" RSE-name order; the client {client.address} was located at"
               f" {position.latitude:.2f}, {position.longitude:.2f}")
    elif client.position is not None:
        position = client.position
        label = f" ({position.label})" if position.label else ""
        how = (f"replicas {method.summary} {client.address}{label}"
               f" at {position.latitude:.2f}, {position.longitude:.2f}, located from"
               f" {client.source} with {locator_description}")
        if unplaced:
            how += (f"; the positions of {', '.join(unplaced)} are unknown, so their replicas"
                    " come after the others, in RSE-name order")
    else:
        how = (f"the client could not be located ({client.problem}), so no replica is"
               " called nearest: replicas are in RSE-name order")
        if missing_sites:
            how += "; the site information is unavailable too (the service's log says why)"
    if request.ranking:
        how += f"; ranking={request.ranking} puts the replica of that rank first"
    if request.must_include_soda:
        how += "; only sites offering SODA"
    return request.sort, how


def _fault_rows(ids: list[str], fault: Fault, message: str) -> list[list[Row]]:
    return [[LinkFault(did, fault, message)] for did in ids]


def _groups(ids: list[str], args: Mapping[str, Any], seen: ClientFacts,
            service: Callable[[], tuple[ReplicaResolver, Settings]]
            ) -> tuple[list[list[Row]], tuple[str, str] | None]:
    """Per ID, in ID order, its rows; and the explanation of the ranking."""
    try:
        request = parse_request(args)
    except UsageError as exc:
        return _fault_rows(ids, Fault.USAGE, str(exc)), None
    try:
        resolver, settings = service()
    except (ConfigError, ValueError) as exc:
        # Not the client's fault, and nothing a retry fixes: say what to fix.
        message = f"the service is misconfigured: {exc}"
        log.error(message)
        return _fault_rows(ids, Fault.FATAL, message), None
    address, source = client_address(request.client_ip_address, seen.peer, seen.headers,
                                     settings.geoip.trusted_proxies)
    client = resolver.locate(request, address, source)
    method = SORT_METHODS[request.sort]
    located = client.position is not None or not method.needs_client_position
    first_is = method.first_is if located else None
    groups: list[list[Row]] = []
    results = resolver.resolve(ids, request, client)
    for result in results:
        if isinstance(result, LinkFault):
            groups.append([result])
            continue
        group: list[Row] = list(replica_links(result, first_is, request.ranking,
                                              settings.sites.link_auth or None))
        group.extend(extra_links(result))
        group.extend(soda_links(result, settings.sites.soda_id_template,
                                settings.sites.soda_id_authority))
        groups.append(group)
    link_sets = [result for result in results if isinstance(result, LinkSet)]
    return groups, explain_ranking(request, client, resolver.locator.description, link_sets)


def answer(
    args: Mapping[str, Any],
    seen: ClientFacts,
    maxrec: int | None,
    service: Callable[[], tuple[ReplicaResolver, Settings]],
) -> DatalinkAnswer:
    """Answer one DataLink request.

    Parameters
    ----------
    args
        The request's parameters, names in any case, values single or lists.
    seen
        What the HTTP layer saw of the client.
    maxrec
        DALI's MAXREC (None: no limit); each ID's rows stay together.
    service
        Returns the shared resolver and the settings; it may raise
        :class:`~rucio_rd.config.ConfigError`, which becomes FatalFault rows.

    Raises
    ------
    UsageError
        With ``parameter="MAXREC"`` for a negative MAXREC: the whole request
        is wrong.  Every other mistake is a fault row for its ID.
    """
    if maxrec is not None and maxrec < 0:
        raise UsageError(f"MAXREC={maxrec} must not be negative", parameter="MAXREC")
    ids = all_values(args, "ID")
    # Every ID gives at least one row: never resolve more IDs than can be shown.
    limit = MAX_IDS if maxrec is None else min(MAX_IDS, maxrec)
    resolved = ids[:limit]
    groups, ranking = _groups(resolved, args, seen, service) if resolved else ([], None)
    rows, overflowed = crop_groups(groups, maxrec)
    return DatalinkAnswer(rows, ranking, overflowed or len(ids) > limit)


@dataclass(frozen=True)
class Redirect:
    """What ``dlget`` answers: 303 to the chosen replica's ``location``, or a
    client or server error ``status`` and the DALI error ``message``."""

    status: int
    location: str | None = None
    message: str | None = None
    retry_after: int | None = None  # seconds, for a 503 (HTTP's Retry-After)


# The HTTP status of a dlget whose one ID got a fault row.
_FAULT_STATUS = {Fault.USAGE: 400, Fault.NOT_FOUND: 404, Fault.TRANSIENT: 503,
                 Fault.FATAL: 500, Fault.DEFAULT: 500}
#: When a client may try a dlget again after a transient fault (Rucio or the site
#: directory slow or down): long enough for a restart, short for a person waiting.
RETRY_AFTER_SECONDS = 30


def redirect(
    args: Mapping[str, Any],
    seen: ClientFacts,
    service: Callable[[], tuple[ReplicaResolver, Settings]],
) -> Redirect:
    """Answer a ``dlget`` request: the replica the links document would put first
    for the same parameters, as an HTTP redirect (Rucio's ``/redirect`` and CADC's
    file locator do the same).  Exactly one ID; its fault, if any, is the error."""
    ids = all_values(args, "ID")
    if len(ids) != 1:
        return Redirect(400, message=f"{Fault.USAGE}: dlget takes exactly one ID (a Rucio DID,"
                                     f" scope:name), not {len(ids)}; ask dlmeta for several")
    first = answer(args, seen, None, service).rows[0]
    if isinstance(first, LinkFault):
        status = _FAULT_STATUS[first.fault]
        return Redirect(status, message=error_message(first)[1],
                        retry_after=RETRY_AFTER_SECONDS if status == 503 else None)
    if not isinstance(first, ReplicaLink):  # pragma: no cover - replicas come first
        raise AssertionError(f"the first row of a link set is a replica, not {first!r}")
    return Redirect(303, location=first.access_url)


def error_message(fault: LinkFault) -> tuple[str, str]:
    """The ID to echo (control characters replaced) and the error_message of a fault row."""
    return printable(fault.did), f"{fault.fault}: {fault.message}"
