"""Builds, from the settings, the long-lived objects the datalink service shares.

One Rucio client (with its token cache and connection pool), one cached site
source and one GeoIP reader per process: requests reuse them.  Nothing here
talks to a server at build time, so a DaCHS process starts even when Rucio or
the site directory is down; they are reached, with bounded timeouts, when a
request needs them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from rucio_rd.config import Settings, SiteSettings
from rucio_rd.geo import GeoLocator
from rucio_rd.links import FileMetadata, ReplicaResolver
from rucio_rd.model import SiteCatalogue
from rucio_rd.rucio import RucioClient, client_from_settings
from rucio_rd.sites import (
    CachedSiteSource,
    SiteDirectoryClient,
    catalogue_from_rse_attributes,
    load_site_file,
)

__all__ = ["SITE_FETCHERS", "make_resolver", "make_site_source", "site_fetcher"]


def _from_rucio(client: RucioClient) -> Callable[[], SiteCatalogue]:
    def fetch() -> SiteCatalogue:
        return catalogue_from_rse_attributes(
            {rse: client.rse_attributes(rse) for rse in client.list_rses()}
        )

    return fetch


# One entry per [sites] source (config.SITE_SOURCES): settings and Rucio client in,
# a function reading the source once out.
SITE_FETCHERS: dict[str, Callable[[SiteSettings, RucioClient], Callable[[], SiteCatalogue]]] = {
    "site_directory": lambda sites, rucio: SiteDirectoryClient(
        sites.url, timeout=sites.timeout).fetch,
    "file": lambda sites, rucio: lambda: load_site_file(sites.file),
    "rucio": lambda sites, rucio: _from_rucio(rucio),
}


def site_fetcher(settings: Settings, rucio: RucioClient) -> Callable[[], SiteCatalogue]:
    """One uncached read of the site information source named by ``[sites] source``."""
    return SITE_FETCHERS[settings.sites.source](settings.sites, rucio)


def make_site_source(settings: Settings, rucio: RucioClient) -> CachedSiteSource:
    """The site information source named by ``[sites] source``, behind a TTL cache."""
    return CachedSiteSource(site_fetcher(settings, rucio), ttl=settings.sites.ttl)


def make_resolver(
    settings: Settings,
    metadata_lookup: Callable[[Sequence[str]], Mapping[str, FileMetadata]] | None = None,
) -> ReplicaResolver:
    rucio = client_from_settings(settings.rucio)
    resolver = ReplicaResolver(
        rucio=rucio,
        sites=make_site_source(settings, rucio),
        locator=GeoLocator(settings.geoip.database or None),
    )
    if metadata_lookup is not None:
        resolver.metadata_lookup = metadata_lookup
    return resolver
