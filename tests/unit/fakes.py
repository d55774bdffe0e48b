"""Test doubles of the DataLink side, shared by the unit tests: a Rucio that lists
replicas from a dict, a site source, a GeoIP locator, and a resolver made of them."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from rucio_rd.geo import LocationError
from rucio_rd.links import DatalinkRequest, FileMetadata, ReplicaResolver
from rucio_rd.model import (
    SODA_SYNC,
    FileReplicas,
    Position,
    Replica,
    ReplicaListing,
    Site,
    SiteCatalogue,
    SodaService,
)
from rucio_rd.sites import SiteSourceError

#: The PostgreSQL the unit tests that need one use (they are skipped without it).
PG = {"host": "127.0.0.1", "port": 5432, "dbname": "test", "user": "postgres"}

UK = Site("UKSRC", Position(51.57, -1.31, "UKSRC"))
ES = Site("SPSRC", Position(37.19, -3.60, "SPSRC"),
          soda_sync=SodaService(SODA_SYNC, "https://soda.es/sync", "ivo://es/soda"))
CATALOGUE = SiteCatalogue({"UK_RSE": UK, "ES_RSE": ES})
APPLETON = Position(51.7, -1.3, "Appleton, GB")


@dataclass
class FakeRucio:
    files: dict[str, tuple[Replica, ...]]
    calls: list[list[str]] = field(default_factory=list)
    error: Exception | None = None
    timeout: float = 10.0

    def list_replicas(self, dids):
        self.calls.append(list(dids))
        if self.error:
            raise self.error
        found = {did: FileReplicas(did, 100, self.files[did]) for did in dids
                 if did in self.files}
        return ReplicaListing(found, frozenset(set(dids) - set(found)))


@dataclass
class FakeSites:
    error: bool = False

    def get(self) -> SiteCatalogue:
        if self.error:
            raise SiteSourceError("site directory down")
        return CATALOGUE


class FakeLocator:
    description = "test database"

    def locate(self, address: str) -> Position:
        if address == "1.2.3.4":
            return APPLETON
        raise LocationError(f"{address} is a private address and cannot be geolocated")


FILES = {
    "s:both": (Replica("ES_RSE", "https://es/both"), Replica("UK_RSE", "https://uk/both")),
    "s:uk": (Replica("UK_RSE", "https://uk/uk"),),
    "s:none": (),
}


def resolver(rucio: FakeRucio | None = None, sites: FakeSites | None = None) -> ReplicaResolver:
    return ReplicaResolver(
        rucio=rucio or FakeRucio(FILES), sites=sites or FakeSites(), locator=FakeLocator(),
        metadata_lookup=lambda dids: {"s:both": FileMetadata("obs", "application/fits", 7)},
        rng=random.Random(1),
    )


def located(address: str = "1.2.3.4", source: str = "client_ip_address parameter"):
    return resolver().locate(DatalinkRequest(), address, source)


