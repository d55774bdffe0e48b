"""The values the plugin's modules share: places, replicas, sites.

Frozen dataclasses (and one immutable mapping) that validate what they hold
and nothing more, and the distance between two places.  This module imports
nothing of the package and does no I/O, so that the Rucio client, the site
sources, the ranking and the DataLink side can all depend on it without
depending on one another.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = [
    "EARTH_RADIUS_KM",
    "LINK_AUTH_VALUES",
    "NAME_MAX",
    "NAME_PATTERN",
    "SCOPE_MAX",
    "SCOPE_PATTERN",
    "SODA_ASYNC",
    "SODA_SYNC",
    "FileReplicas",
    "Position",
    "RankedReplica",
    "Replica",
    "ReplicaListing",
    "Site",
    "SiteCatalogue",
    "SodaService",
    "great_circle_km",
]

#: Mean Earth radius (IUGG), the sphere on which distances are measured.
EARTH_RADIUS_KM = 6371.0088

#: What a Rucio scope and a file name may be made of: regular expressions that Python
#: and PostgreSQL read alike (without a bounded repetition, which costs PostgreSQL's
#: regex engine dearly); their lengths are at most SCOPE_MAX and NAME_MAX (Rucio's
#: columns).  A name must also not start with "/" nor hold "//".
SCOPE_PATTERN = r"^[A-Za-z0-9_.-]+$"
NAME_PATTERN = r"^[A-Za-z0-9_./+-]+$"
SCOPE_MAX = 25
NAME_MAX = 250

#: DataLink 1.1's values of ``link_auth``.
LINK_AUTH_VALUES = ("true", "false", "optional")

SODA_SYNC = "ivo://ivoa.net/std/SODA#sync-1.0"
SODA_ASYNC = "ivo://ivoa.net/std/SODA#async-1.0"


@dataclass(frozen=True)
class Position:
    """A place on the Earth.

    Parameters
    ----------
    latitude : float
        Degrees north, -90..90.
    longitude : float
        Degrees east, -180..180.
    label : str
        A human-readable name for descriptions ("Appleton, GB", a site name).

    Raises
    ------
    ValueError
        If a coordinate is not a finite number in its range.
    """

    latitude: float
    longitude: float
    label: str = ""

    def __post_init__(self) -> None:
        for name, value, limit in (
            ("latitude", self.latitude, 90.0),
            ("longitude", self.longitude, 180.0),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name}={value!r} is not a number; give degrees as a float")
            if not math.isfinite(value) or abs(value) > limit:
                raise ValueError(f"{name}={value!r} is out of range; use -{limit:g}..{limit:g}")


def great_circle_km(a: Position, b: Position) -> float:
    """Great-circle distance between two positions, in kilometres.

    Uses the haversine formula on a sphere of radius :data:`EARTH_RADIUS_KM`;
    the error against the ellipsoid is below 0.5 %, far finer than GeoIP's
    precision.

    Parameters
    ----------
    a, b : Position
        The two places.

    Returns
    -------
    float
        The distance, 0 .. about 20,015 km.
    """
    lat1, lat2 = math.radians(a.latitude), math.radians(b.latitude)
    dlat = lat2 - lat1
    dlon = math.radians(b.longitude - a.longitude)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    # Rounding can push h a hair above 1 for antipodal points.
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, max(0.0, h))))


@dataclass(frozen=True)
class Replica:
    """One physical copy of a file.

    Parameters
    ----------
    rse : str
        The Rucio storage element holding it.
    pfn : str
        Its physical file name (the URL a client downloads).
    """

    rse: str
    pfn: str


@dataclass(frozen=True)
class FileReplicas:
    """One file's replicas as Rucio listed them: one per RSE, ordered by RSE name.

    ``bytes`` and ``adler32`` (eight lower-case hex digits) are Rucio's size and
    checksum of the file, where it gives them.
    """

    did: str
    bytes: int | None
    replicas: tuple[Replica, ...]
    adler32: str | None = None


@dataclass(frozen=True)
class ReplicaListing:
    """The answer for a list of DIDs: what Rucio found, and the DIDs it does not know."""

    found: Mapping[str, FileReplicas] = field(default_factory=dict)
    missing: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SodaService:
    """A SODA service a site offers for the data on its storage.

    Parameters
    ----------
    standard_id : str
        :data:`SODA_SYNC` or :data:`SODA_ASYNC`.
    access_url : str
        The service endpoint, e.g. ``https://soda.example:443/soda/sync``.
    resource_identifier : str or None
        The service's IVOA identifier (``ivo://...``), where known.
    id_template : str or None
        The form of ID the service takes for a file (see :mod:`rucio_rd.soda`);
        None when the source does not say (the configured default applies).
    """

    standard_id: str
    access_url: str
    resource_identifier: str | None = None
    id_template: str | None = None


@dataclass(frozen=True)
class Site:
    """The site holding an RSE: its position and SODA services.

    Parameters
    ----------
    name : str
        The site's name (or the RSE's, when no site lists it).
    position : Position or None
        Where the RSE is; None when the source gives no usable coordinates.
    soda_sync, soda_async : SodaService or None
        The site's synchronous and asynchronous SODA services.
    link_auth : str or None
        Whether its storage needs authentication, as DataLink's ``link_auth``
        says it: ``"true"``, ``"false"`` or ``"optional"``; None when the
        source does not say (the configured default applies).
    """

    name: str
    position: Position | None
    soda_sync: SodaService | None = None
    soda_async: SodaService | None = None
    link_auth: str | None = None

    def __post_init__(self) -> None:
        if self.link_auth not in LINK_AUTH_VALUES + (None,):
            raise ValueError(f"link_auth={self.link_auth!r} is not one of"
                             f" {', '.join(LINK_AUTH_VALUES)}")

    @property
    def has_soda(self) -> bool:
        """Whether the site offers any SODA service."""
        return self.soda_sync is not None or self.soda_async is not None


class SiteCatalogue(Mapping[str, Site]):
    """An immutable mapping from RSE name to the :class:`Site` holding it.

    Parameters
    ----------
    sites_by_rse : Mapping[str, Site]
        The RSEs and their sites; copied.
    """

    def __init__(self, sites_by_rse: Mapping[str, Site]) -> None:
        for rse, site in sites_by_rse.items():
            if not isinstance(rse, str) or not isinstance(site, Site):
                raise TypeError(
                    f"SiteCatalogue maps RSE names to Site objects, got {rse!r}: {site!r}"
                )
        self._sites: Mapping[str, Site] = MappingProxyType(dict(sites_by_rse))

    def site_for_rse(self, rse: str) -> Site | None:
        """The site holding ``rse``, or None if the catalogue does not know it."""
        return self._sites.get(rse)

    @property
    def rses(self) -> frozenset[str]:
        """The names of all RSEs in the catalogue."""
        return frozenset(self._sites)

    def __getitem__(self, rse: str) -> Site:
        return self._sites[rse]

    def __iter__(self) -> Iterator[str]:
        return iter(self._sites)

    def __len__(self) -> int:
        return len(self._sites)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SiteCatalogue):
            return dict(self._sites) == dict(other._sites)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SiteCatalogue({dict(self._sites)!r})"


@dataclass(frozen=True)
class RankedReplica:
    """A replica with its site and its distance from the client.

    Parameters
    ----------
    replica : Replica
        The replica.
    site : Site or None
        The site holding it; None if the catalogue does not know the RSE.
    distance_km : float or None
        Great-circle distance to the client; None when the client or the
        site has no position.
    """

    replica: Replica
    site: Site | None
    distance_km: float | None
