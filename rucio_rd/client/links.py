"""What a DataLink answer offers for one file, as the client uses it.

Reads the document with pyvo and keeps, per file, the replicas (the ``#this``
rows in the service's order: the chosen one first, then the fallbacks), with
the site, size and Adler-32 checksum the service gives, and the SODA services
of the sites (``#cutout`` rows and their descriptors), with the ID each takes.
Nothing here talks to storage or sends a token.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FileLinks", "LinksError", "Replica", "SodaEndpoint", "file_links", "origin",
           "read_links"]

SODA_SYNC = "ivo://ivoa.net/std/SODA#sync-1.0"


class LinksError(Exception):
    """The DataLink answer could not be read, or offers nothing for the file."""


def origin(url: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of a URL, the port made explicit; None if it has no host."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not parts.hostname or scheme not in ("http", "https"):
        return None
    return scheme, parts.hostname.lower(), port or (443 if scheme == "https" else 80)


@dataclass(frozen=True)
class Replica:
    """A ``#this`` row: where one copy of the file is, and what it should be."""

    url: str
    site: str | None = None
    adler32: str | None = None
    length: int | None = None
    description: str = ""
    link_auth: str | None = None

    @property
    def where(self) -> str:
        """The site, or the host when the service names no site."""
        if self.site:
            return self.site
        found = origin(self.url)
        return found[1] if found else self.url


@dataclass(frozen=True)
class SodaEndpoint:
    """A site's SODA service for the file: where it is and the ID it takes."""

    site: str | None
    access_url: str
    soda_id: str
    standard_id: str = SODA_SYNC

    @property
    def is_sync(self) -> bool:
        return self.standard_id.lower().startswith("ivo://ivoa.net/std/soda#sync")


@dataclass(frozen=True)
class FileLinks:
    """What the DataLink service offers for one file (one DID)."""

    did: str
    replicas: tuple[Replica, ...] = ()
    soda: tuple[SodaEndpoint, ...] = ()
    errors: tuple[str, ...] = ()
    extra: tuple[tuple[str, str], ...] = field(default=())  # (semantics, URL)
    source: str | None = None  # the DataLink URL it was read from: never given the token

    def soda_at(self, site: str | None) -> tuple[SodaEndpoint, ...]:
        """The synchronous SODA services of ``site``."""
        return tuple(endpoint for endpoint in self.soda
                     if endpoint.site == site and endpoint.is_sync)

    def soda_sites(self) -> tuple[str | None, ...]:
        """The sites with a synchronous SODA service, in the service's order."""
        sites: list[str | None] = []
        for endpoint in self.soda:
            if endpoint.is_sync and endpoint.site not in sites:
                sites.append(endpoint.site)
        return tuple(sites)


def _text(row: Any, name: str) -> str | None:
    try:
        value = row[name]
    except (KeyError, IndexError):
        return None
    if value is None or getattr(value, "mask", False) is True:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).strip()
    return text or None


def _integer(row: Any, name: str) -> int | None:
    text = _text(row, name)
    try:
        number = int(float(text)) if text is not None else None
    except ValueError:
        return None
    return number if number is not None and number >= 0 else None


def _descriptor(results: Any, service_def: str) -> tuple[str | None, str | None, str]:
    """``(accessURL, ID value, standardID)`` of the descriptor a ``#cutout`` row names."""
    try:
        resource = results.get_adhocservice_by_id(service_def)
    except Exception:  # noqa: BLE001 - pyvo raises DALServiceError for a missing one
        return None, None, ""
    params = {param.name: param.value for param in resource.params}
    identifier = None
    for group in resource.groups:
        if group.name == "inputParams":
            for param in group.entries:
                if param.name == "ID":
                    identifier = param.value
    def clean(value: Any) -> str | None:
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        return str(value) if value not in (None, "") else None
    return (clean(params.get("accessURL")), clean(identifier),
            clean(params.get("standardID")) or "")


def file_links(results: Any, did: str | None = None) -> FileLinks:
    """The links of one file in a pyvo ``DatalinkResults``: ``did``'s, or the first ID's."""
    rows = list(results)
    if did is None:
        ids = [_text(row, "ID") for row in rows]
        did = next((value for value in ids if value), None)
        if did is None:
            raise LinksError("the DataLink answer has no rows")
    replicas: list[Replica] = []
    soda: list[SodaEndpoint] = []
    errors: list[str] = []
    extra: list[tuple[str, str]] = []
    for row in rows:
        if _text(row, "ID") != did:
            continue
        semantics = _text(row, "semantics") or ""
        error = _text(row, "error_message")
        url = _text(row, "access_url")
        if error:
            errors.append(error)
        elif semantics == "#this" and url:
            replicas.append(Replica(url, _text(row, "site"), _text(row, "adler32"),
                                    _integer(row, "content_length"),
                                    _text(row, "description") or "", _text(row, "link_auth")))
        elif _text(row, "service_def"):
            access_url, identifier, standard = _descriptor(results, _text(row, "service_def"))
            if access_url and identifier:
                soda.append(SodaEndpoint(_text(row, "site"), access_url, identifier, standard))
        elif url:
            extra.append((semantics, url))
    return FileLinks(did, tuple(replicas), tuple(soda), tuple(errors), tuple(extra))


def read_links(url: str, did: str | None = None, session: Any = None,
               params: Iterable[tuple[str, str]] = ()) -> FileLinks:
    """Ask the DataLink service at ``url`` (an ``access_url`` of a search result,
    parameters included) and read what it offers for the file."""
    from pyvo.dal import DALServiceError
    from pyvo.dal.adhoc import DatalinkResults

    extra = urllib.parse.urlencode(list(params))
    if extra:
        url += ("&" if "?" in url else "?") + extra
    try:
        with warnings.catch_warnings():
            # SODA 1.0's one-number MIN/MAX of BAND and TIME (the service's VALUES).
            warnings.filterwarnings("ignore", message=".*E02.*")
            results = DatalinkResults.from_result_url(url, session=session)
    except DALServiceError as exc:
        raise LinksError(f"the DataLink service at {url} failed: {exc}") from None
    except Exception as exc:  # pyvo raises what the parser raises on garbage
        raise LinksError(f"the DataLink service at {url} gave no readable answer: "
                         f"{type(exc).__name__}: {exc}") from None
    try:
        links = dataclasses.replace(file_links(results, did), source=url)
    except LinksError:
        raise
    except Exception as exc:  # a document pyvo read but that makes no sense as DataLink
        raise LinksError(f"the DataLink answer from {url} cannot be used: "
                         f"{type(exc).__name__}: {exc}") from None
    if not links.replicas and links.errors:
        raise LinksError(f"no replica of {links.did}: " + "; ".join(links.errors))
    return links
