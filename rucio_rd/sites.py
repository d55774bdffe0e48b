"""Where Rucio storage elements (RSEs) are, and which SODA services their site offers.

Every RSE belongs to a site with a position and, possibly, SODA (cutout)
services.  This module builds a :class:`SiteCatalogue` (RSE name -> :class:`Site`)
from one of three sources, all giving the same result:

- the SKA site directory (:class:`SiteDirectoryClient`): ``GET /storages/grafana``
  for the RSEs' coordinates and ``GET /services`` for the sites and their
  services (:func:`parse_site_directory` holds the shape rules);
- a local JSON file with the same two lists (:func:`load_site_file`);
- Rucio's own RSE attributes (:func:`catalogue_from_rse_attributes`).

:data:`SITE_SOURCES` is the table of sources that ``[sites] source`` chooses
from; :class:`rucio_rd.site_cache.CachedSiteSource` keeps a catalogue for a
time-to-live and serves the last good copy when the source is down.

Parsing is forgiving inside the lists: a malformed entry is skipped (or loses
its position) with a log message, and never costs the rest of the catalogue.
Only a source that cannot be read at all, or whose top level has the wrong
shape, raises :class:`SiteSourceError`.

This module must not import DaCHS, must not rank replicas (that is
:mod:`rucio_rd.ranking`) and never logs credentials: URLs are logged without
user information or query strings.
"""

from __future__ import annotations

import json
import logging
import math
import os
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from rucio_rd.http import TransportError, bounded_session, fetch, redact_url
from rucio_rd.model import (
    LINK_AUTH_VALUES,
    SODA_ASYNC,
    SODA_SYNC,
    Position,
    Site,
    SiteCatalogue,
    SodaService,
)
from rucio_rd.soda import id_template_problem

__all__ = [
    "RSE_ATTRIBUTE_LATITUDE",
    "RSE_ATTRIBUTE_LINK_AUTH",
    "RSE_ATTRIBUTE_LONGITUDE",
    "RSE_ATTRIBUTE_SITE",
    "RSE_ATTRIBUTE_SODA_ID_TEMPLATE",
    "RSE_ATTRIBUTE_SODA_ASYNC_URL",
    "RSE_ATTRIBUTE_SODA_RESOURCE_IDENTIFIER",
    "RSE_ATTRIBUTE_SODA_SYNC_URL",
    "SITE_SOURCES",
    "RucioAttributeSource",
    "SiteDirectoryClient",
    "SiteSourceError",
    "SourceKind",
    "catalogue_from_rse_attributes",
    "describe_source",
    "load_site_file",
    "parse_site_directory",
    "site_reader",
]

log = logging.getLogger("rucio_rd.sites")


# Service types of the SKA site directory (compared case-insensitively).
_RSE_TYPE = "rucio storage element (rse)"
_SODA_TYPES = {"soda (sync)": SODA_SYNC, "soda (async)": SODA_ASYNC}

#: RSE attributes read by :func:`catalogue_from_rse_attributes`.
RSE_ATTRIBUTE_LATITUDE = "latitude"
RSE_ATTRIBUTE_LONGITUDE = "longitude"
RSE_ATTRIBUTE_SITE = "site"
RSE_ATTRIBUTE_SODA_SYNC_URL = "soda_sync_url"
RSE_ATTRIBUTE_SODA_ASYNC_URL = "soda_async_url"
RSE_ATTRIBUTE_SODA_RESOURCE_IDENTIFIER = "soda_resource_identifier"
RSE_ATTRIBUTE_LINK_AUTH = "link_auth"
RSE_ATTRIBUTE_SODA_ID_TEMPLATE = "soda_id_template"


# The largest site-directory answer read (the real one is a few hundred kB).
MAX_DIRECTORY_BYTES = 16 * 2**20


class SiteSourceError(RuntimeError):
    """Site information could not be read, and there is no last good copy."""


# --- parsing helpers ----------------------------------------------------------


def _nonempty_text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _coordinate(value: Any) -> float | None:
    """A finite float from a number or a numeric string (Rucio gives strings)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _position(latitude: Any, longitude: Any, label: str, where: str) -> Position | None:
    lat, lon = _coordinate(latitude), _coordinate(longitude)
    if lat is None or lon is None:
        if latitude is not None or longitude is not None:
            log.warning("%s: latitude=%r longitude=%r are not numbers; no position",
                        where, latitude, longitude)
        return None
    try:
        return Position(lat, lon, label)
    except ValueError as exc:
        log.warning("%s: %s; no position", where, exc)
        return None


def _port(value: Any) -> int | None | bool:
    """The port as an int, None if absent, False if unusable."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return False
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and 0 < value < 65536:
        return value
    return False


def _soda_url(service: Mapping[str, Any], where: str) -> str | None:
    """``{prefix}://{host}[:{port}]/{path}`` with exactly one slash before the path."""
    prefix = _nonempty_text(service.get("prefix"))
    host = _nonempty_text(service.get("host"))
    port = _port(service.get("port"))
    path = service.get("path", "")
    if prefix is not None:
        prefix = prefix.removesuffix("://").lower()
    if prefix not in ("http", "https"):
        log.warning("%s: prefix=%r is not http or https; service skipped",
                    where, service.get("prefix"))
        return None
    if host is None or any(c.isspace() or c in "/?#@" for c in host):
        log.warning("%s: host=%r is not a host name; service skipped", where, service.get("host"))
        return None
    if port is False:
        log.warning("%s: port=%r is not a port number; service skipped",
                    where, service.get("port"))
        return None
    if path is None:
        path = ""
    if not isinstance(path, str):
        log.warning("%s: path=%r is not text; service skipped", where, path)
        return None
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal
    authority = host if port is None else f"{host}:{port}"
    return f"{prefix}://{authority}/{path.strip().lstrip('/')}"


def _other_attribute(service: Mapping[str, Any], key: str) -> Any:
    """``other_attributes[key]`` of a site-directory service, given as ``{"value": x}``
    or as ``x``; None when absent."""
    attributes = service.get("other_attributes")
    if not isinstance(attributes, Mapping):
        return None
    value = attributes.get(key)
    return value.get("value") if isinstance(value, Mapping) else value


def _id_template(value: Any, where: str) -> str | None:
    """A SODA service's ID template (:mod:`rucio_rd.soda`), or None when not said."""
    if value is None or value == "":
        return None
    problem = id_template_problem(value)
    if problem:
        log.warning("%s: %s; the configured default ID form applies", where, problem)
        return None
    return value


def _link_auth(value: Any, where: str) -> str | None:
    """A storage's DataLink link_auth (true, false, optional), or None when not said."""
    text = _nonempty_text(value) if not isinstance(value, bool) else str(value)
    if text is None:
        return None
    if text.lower() in LINK_AUTH_VALUES:
        return text.lower()
    log.warning("%s: link_auth %r is not one of %s; the configured default applies",
                where, value, ", ".join(LINK_AUTH_VALUES))
    return None


def _require_list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise SiteSourceError(
            f"{what}: expected a JSON list, got {type(value).__name__}; "
            "check that the URL or file is a site directory"
        )
    return value


# --- the site-directory shapes ------------------------------------------------


def _storage_positions(storages: list[Any]) -> dict[str, tuple[Any, Any]]:
    coordinates: dict[str, tuple[Any, Any]] = {}
    for index, entry in enumerate(storages):
        name = _nonempty_text(entry.get("name")) if isinstance(entry, Mapping) else None
        if name is None:
            log.warning("storages[%d]: no RSE name; entry skipped", index)
            continue
        if name in coordinates:
            log.warning("storages[%d]: RSE %s listed twice; the first entry is kept", index, name)
            continue
        coordinates[name] = (entry.get("latitude"), entry.get("longitude"))
    return coordinates


def _parse_site(index: int, entry: Any
                ) -> tuple[str, dict[str, str | None], dict[str, SodaService]] | None:
    """A site's name, its RSEs (name -> link_auth) and its SODA services by standard
    ID; None if unusable."""
    name = _nonempty_text(entry.get("name")) if isinstance(entry, Mapping) else None
    if name is None:
        log.warning("services[%d]: no site name; site skipped", index)
        return None
    listed = entry.get("services")
    if not isinstance(listed, list):
        log.warning("services[%d] (%s): 'services' is not a list; site skipped", index, name)
        return None
    rses: dict[str, str | None] = {}
    soda: dict[str, SodaService] = {}
    for position, service in enumerate(listed):
        where = f"site {name} service {position}"
        if not isinstance(service, Mapping) or not isinstance(service.get("type"), str):
            log.warning("%s: not a service with a type; skipped", where)
            continue
        kind = service["type"].strip().casefold()
        if kind == _RSE_TYPE:
            rse = _nonempty_text(service.get("identifier"))
            if rse is None:
                log.warning("%s: RSE without identifier; skipped", where)
            elif rse not in rses:
                rses[rse] = _link_auth(_other_attribute(service, "linkAuth"), where)
        elif kind in _SODA_TYPES:
            standard_id = _SODA_TYPES[kind]
            if standard_id in soda:
                continue  # one descriptor per kind; the first listed wins
            url = _soda_url(service, where)
            if url is not None:
                soda[standard_id] = SodaService(
                    standard_id, url,
                    _nonempty_text(_other_attribute(service, "resourceIdentifier")),
                    _id_template(_other_attribute(service, "idTemplate"), where))
        # Other service types (FTS, Jupyter, ...) are none of our business.
    return name, rses, soda


def parse_site_directory(storages: Any, services: Any) -> SiteCatalogue:
    """Build a catalogue from the site directory's two lists.

    Parameters
    ----------
    storages : list
        ``GET /storages/grafana``: ``[{"name": RSE, "latitude": deg,
        "longitude": deg, ...}, ...]``.
    services : list
        ``GET /services``: ``[{"name": site, "services": [service, ...]}, ...]``
        where a service is ``{"type": "Rucio Storage Element (RSE)",
        "identifier": RSE}`` (optionally with ``"other_attributes":
        {"linkAuth": {"value": "true" | "false" | "optional"}}``, whether
        the storage wants authentication) or ``{"type": "SODA (sync)" |
        "SODA (async)", "prefix", "host", "port", "path", "other_attributes":
        {"resourceIdentifier": {"value": "ivo://..."}}}`` (optionally with
        ``"idTemplate": {"value": template}`` in ``other_attributes``: the form
        of ID the service takes, see :mod:`rucio_rd.soda`).

    Returns
    -------
    SiteCatalogue
        Every RSE named in either list.  A site offers its SODA services for
        every RSE it lists; an RSE that no site lists becomes a site of its
        own name without SODA; an RSE without usable coordinates has
        position None.

    Raises
    ------
    SiteSourceError
        If either top level is not a list.  Malformed entries inside the
        lists are skipped with a warning instead.
    """
    coordinates = _storage_positions(_require_list(storages, "storages"))
    sites: dict[str, Site] = {}
    for index, entry in enumerate(_require_list(services, "services")):
        parsed = _parse_site(index, entry)
        if parsed is None:
            continue
        name, rses, soda = parsed
        for rse, link_auth in rses.items():
            if rse in sites:
                log.warning("RSE %s is listed by sites %s and %s; %s is kept",
                            rse, sites[rse].name, name, sites[rse].name)
                continue
            latitude, longitude = coordinates.get(rse, (None, None))
            sites[rse] = Site(
                name=name,
                position=_position(latitude, longitude, name, f"RSE {rse}"),
                soda_sync=soda.get(SODA_SYNC),
                soda_async=soda.get(SODA_ASYNC),
                link_auth=link_auth,
            )
    for rse, (latitude, longitude) in coordinates.items():
        if rse not in sites:
            sites[rse] = Site(rse, _position(latitude, longitude, rse, f"RSE {rse}"))
    return SiteCatalogue(sites)


def load_site_file(path: str | os.PathLike[str]) -> SiteCatalogue:
    """Read a catalogue from a JSON file ``{"storages": [...], "services": [...]}``.

    The two lists have the site directory's shapes (see
    :func:`parse_site_directory` and ``res/site-directory.json``).

    Raises
    ------
    SiteSourceError
        If the file cannot be read, is not JSON, or lacks either list.
    """
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise SiteSourceError(
            f"site file {path} cannot be read ({exc.strerror or exc}); "
            "check the configured path"
        ) from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SiteSourceError(f"site file {path} is not JSON ({exc}); fix or replace it") from exc
    if not isinstance(document, Mapping):
        raise SiteSourceError(
            f"site file {path} must hold a JSON object with 'storages' and 'services' lists"
        )
    missing = [key for key in ("storages", "services") if key not in document]
    if missing:
        raise SiteSourceError(f"site file {path} has no {' or '.join(missing)} list")
    return parse_site_directory(document["storages"], document["services"])


def _attribute_url(value: Any, where: str) -> str | None:
    url = _nonempty_text(value)
    if url is None:
        return None
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        log.warning("%s: %r is not an http(s) URL; ignored", where, url)
        return None
    return url


def catalogue_from_rse_attributes(attributes: Mapping[str, Mapping[str, Any]]) -> SiteCatalogue:
    """Build a catalogue from Rucio's RSE attributes.

    For deployments without a site directory.  Rucio returns attribute values
    as strings; numbers are accepted too.  The attributes read are:

    ``latitude``, ``longitude``
        The RSE's position in degrees (missing or unusable: no position).
    ``site``
        The site's name (default: the RSE's name).
    ``soda_sync_url``, ``soda_async_url``
        The full URLs of the site's SODA sync and async endpoints (optional).
    ``soda_resource_identifier``
        The SODA services' IVOA identifier (optional).
    ``soda_id_template``
        The form of ID the SODA services take (optional; see :mod:`rucio_rd.soda`).
    ``link_auth``
        Whether the RSE's storage wants authentication: ``true``, ``false``
        or ``optional`` (optional; the configured default otherwise).

    Parameters
    ----------
    attributes : Mapping[str, Mapping[str, Any]]
        RSE name -> that RSE's attributes, e.g. ``{"SPSRC_STORAGE":
        {"latitude": "37.19", "longitude": "-3.6", "site": "SPSRC"}}``.

    Raises
    ------
    SiteSourceError
        If ``attributes`` is not a mapping.  An RSE whose attributes are not a
        mapping is kept without position or SODA.
    """
    if not isinstance(attributes, Mapping):
        raise SiteSourceError(
            f"RSE attributes: expected a mapping of RSE name to attributes, "
            f"got {type(attributes).__name__}"
        )
    sites: dict[str, Site] = {}
    for rse, values in attributes.items():
        name = _nonempty_text(rse)
        if name is None:
            log.warning("RSE attributes: %r is not an RSE name; skipped", rse)
            continue
        if not isinstance(values, Mapping):
            log.warning("RSE %s: attributes are not a mapping; no position or SODA", name)
            sites[name] = Site(name, None)
            continue
        site = _nonempty_text(values.get(RSE_ATTRIBUTE_SITE)) or name
        where = f"RSE {name}"
        identifier = _nonempty_text(values.get(RSE_ATTRIBUTE_SODA_RESOURCE_IDENTIFIER))
        template = _id_template(values.get(RSE_ATTRIBUTE_SODA_ID_TEMPLATE), where)
        sync_url = _attribute_url(values.get(RSE_ATTRIBUTE_SODA_SYNC_URL), where)
        async_url = _attribute_url(values.get(RSE_ATTRIBUTE_SODA_ASYNC_URL), where)
        sites[name] = Site(
            name=site,
            position=_position(values.get(RSE_ATTRIBUTE_LATITUDE),
                               values.get(RSE_ATTRIBUTE_LONGITUDE), site, where),
            soda_sync=(SodaService(SODA_SYNC, sync_url, identifier, template)
                       if sync_url else None),
            soda_async=(SodaService(SODA_ASYNC, async_url, identifier, template)
                        if async_url else None),
            link_auth=_link_auth(values.get(RSE_ATTRIBUTE_LINK_AUTH), where),
        )
    return SiteCatalogue(sites)


# --- the site directory over HTTP ---------------------------------------------


class SiteDirectoryClient:
    """Reads the SKA site directory's storages and services.

    Parameters
    ----------
    url : str
        The directory's base URL; ``/storages/grafana`` and ``/services`` are
        appended.
    timeout : float
        Seconds allowed for connecting and for each read; the whole answer of
        an endpoint gets twice that.
    session : requests.Session or None
        A session to reuse (connection pooling, test doubles); by default
        one is made.
    """

    def __init__(self, url: str, timeout: float = 5.0,
                 session: requests.Session | None = None) -> None:
        parts = urllib.parse.urlsplit(url or "")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"site directory URL {redact_url(url or '')!r} is not an http(s) URL; "
                "give e.g. https://sitedirectory.example/api"
            )
        if not (isinstance(timeout, int | float) and timeout > 0 and math.isfinite(timeout)):
            raise ValueError(f"timeout={timeout!r} must be a positive number of seconds")
        self.url = url.rstrip("/")
        self.timeout = float(timeout)
        self._session = bounded_session(session)

    def _get_json(self, endpoint: str) -> Any:
        url = self.url + endpoint
        what = f"site directory GET {redact_url(url)}"
        # The whole call, headers and body, ends within the timeout; a body is cut
        # off at a size too.
        try:
            response = fetch(self._session, "GET", url, what=what, timeout=self.timeout,
                             connect_timeout=self.timeout, max_bytes=MAX_DIRECTORY_BYTES,
                             body_for=lambda status: status == 200,
                             headers={"Accept": "application/json"})
        except TransportError as exc:
            if exc.kind == "connection":
                # The directory's URL may carry a key: name the failure's kind only.
                raise SiteSourceError(f"{what} failed: {exc.cause}; check that the directory"
                                      " is up and the URL is right") from None
            raise SiteSourceError(str(exc)) from None
        if response.status_code != 200:
            raise SiteSourceError(
                f"{what} answered HTTP {response.status_code}; "
                "check the URL and the directory's health"
            )
        try:
            return json.loads(response.content)
        except (ValueError, RecursionError) as exc:
            raise SiteSourceError(f"{what} did not return JSON") from exc

    def fetch(self) -> SiteCatalogue:
        """Read both endpoints and build a catalogue.

        Raises
        ------
        SiteSourceError
            On a connection error, a timeout, an HTTP status other than 200,
            a body that is not JSON, or a top level that is not a list.
        """
        storages = self._get_json("/storages/grafana")
        services = self._get_json("/services")
        try:
            return parse_site_directory(storages, services)
        except SiteSourceError as exc:
            raise SiteSourceError(f"site directory {redact_url(self.url)}: {exc}") from exc

    def __repr__(self) -> str:
        return f"SiteDirectoryClient({redact_url(self.url)!r}, timeout={self.timeout:g})"


# --- the table of sources -------------------------------------------------------


class RucioAttributeSource:
    """Reads the catalogue from Rucio's RSE attributes (``[sites] source = "rucio"``).

    ``rucio`` is anything with ``list_rses()`` and ``rse_attributes(rse)``
    (:class:`rucio_rd.rucio.RucioClient`).
    """

    def __init__(self, rucio: Any) -> None:
        self.rucio = rucio

    def fetch(self) -> SiteCatalogue:
        return catalogue_from_rse_attributes(
            {rse: self.rucio.rse_attributes(rse) for rse in self.rucio.list_rses()})


@dataclass(frozen=True)
class SourceKind:
    """One choice of ``[sites] source``: how messages name it, and how to read it once.

    ``where`` takes the ``[sites]`` settings; ``reader`` takes them and the
    Rucio client and returns a function that reads the source once.
    """

    where: Callable[[Any], str]
    reader: Callable[[Any, Any], Callable[[], SiteCatalogue]]


#: The choices of ``[sites] source`` (rucio_rd.config validates against it); a new
#: source is a row here, its tests and its keys in the configuration template.
SITE_SOURCES: dict[str, SourceKind] = {
    "site_directory": SourceKind(
        where=lambda sites: sites.url or "(no [sites] url)",
        reader=lambda sites, rucio: SiteDirectoryClient(sites.url, timeout=sites.timeout).fetch,
    ),
    "file": SourceKind(
        where=lambda sites: sites.file or "(no [sites] file)",
        reader=lambda sites, rucio: lambda: load_site_file(sites.file),
    ),
    "rucio": SourceKind(
        where=lambda sites: "Rucio's RSE attributes",
        reader=lambda sites, rucio: RucioAttributeSource(rucio).fetch,
    ),
}


def site_reader(sites: Any, rucio: Any) -> Callable[[], SiteCatalogue]:
    """One uncached read of the source ``sites`` (the ``[sites]`` settings) names."""
    return SITE_SOURCES[sites.source].reader(sites, rucio)


def describe_source(sites: Any) -> str:
    """The source ``sites`` names, in words: its URL, its file, or Rucio."""
    return SITE_SOURCES[sites.source].where(sites)
