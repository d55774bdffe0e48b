"""Builds, from the settings, the long-lived objects the datalink service shares.

One Rucio client (with its token cache and connection pool), one cached site
source and one GeoIP reader per process: requests reuse them.  Nothing here
talks to a server at build time, so a DaCHS process starts even when Rucio or
the site directory is down; they are reached, with bounded timeouts, when a
request needs them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from rucio_rd.config import Settings
from rucio_rd.geo import GeoLocator
from rucio_rd.guard import CircuitBreaker, Slots
from rucio_rd.links import FileMetadata, ReplicaResolver
from rucio_rd.replica_cache import ReplicaCache
from rucio_rd.rucio import RucioClient, client_from_settings
from rucio_rd.site_cache import CachedSiteSource
from rucio_rd.sites import site_reader

__all__ = ["make_resolver", "make_site_source"]


def make_site_source(settings: Settings, rucio: RucioClient) -> CachedSiteSource:
    """The site information source named by ``[sites] source``, behind a TTL cache."""
    return CachedSiteSource(site_reader(settings.sites, rucio), ttl=settings.sites.ttl,
                            first_wait=settings.sites.first_wait)


def make_resolver(
    settings: Settings,
    metadata_lookup: Callable[[Sequence[str]], Mapping[str, FileMetadata]] | None = None,
) -> ReplicaResolver:
    rucio = client_from_settings(settings.rucio)
    resolver = ReplicaResolver(
        rucio=rucio,
        sites=make_site_source(settings, rucio),
        locator=GeoLocator(settings.geoip.database or None),
        slots=Slots(settings.rucio.concurrent_calls),
        breaker=CircuitBreaker("Rucio", settings.rucio.circuit_failures,
                               settings.rucio.circuit_retry_after),
        cache=ReplicaCache(settings.rucio.replica_cache_ttl),
    )
    if metadata_lookup is not None:
        resolver.metadata_lookup = metadata_lookup
    return resolver
