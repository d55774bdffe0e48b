"""Where a client is: GeoIP2 City lookups.

The datalink service orders replicas by the great-circle distance between the
client and each replica's site (:func:`rucio_rd.model.great_circle_km`).  This
module turns an IP address into a :class:`~rucio_rd.model.Position` with a
MaxMind-format City database (GeoIP2/GeoLite2 City, or any ``.mmdb`` with the
same record shape).

The default database is the GeoLite2 City file that the PyPI package
``maxminddb-geolite2`` ships (installed by Debian's package
``rucio-rd-geolite2`` under ``/usr/share/rucio-rd/geoip``).  It was built in
July 2018, so newer address allocations are missing or misplaced; an operator
should point :class:`GeoLocator` at a current database.

Thread safety: one :class:`GeoLocator` is shared by DaCHS's worker threads.
``geoip2.database.Reader`` keeps no per-lookup state, and the underlying
``maxminddb`` reader (both the C extension and the pure-Python memory-map
reader) documents itself as safe for concurrent reads, so lookups take no
lock.  Only :meth:`GeoLocator.close` must not race with lookups; call it at
shutdown.

This module must not touch the network, read configuration or import DaCHS;
it never guesses a position: an address that cannot be placed raises
:class:`LocationError`.
"""

from __future__ import annotations

import ipaddress
import os
from datetime import UTC, date, datetime
from pathlib import Path

import geoip2.database
import geoip2.errors
import maxminddb

from rucio_rd.model import Position
from rucio_rd.resources import EMBEDDED_GEOIP_DATABASE

__all__ = [
    "GeoLocator",
    "LocationError",
    "embedded_database_path",
]


# How much of a rejected address an error message repeats: enough to
# recognise it, not enough to turn the message into a vehicle for junk.
_ECHO_LIMIT = 60
# The longest textual IPv6 address is 45 characters; anything much longer
# is not an address and is refused before parsing.
_MAX_ADDRESS_LENGTH = 64


class LocationError(ValueError):
    """An address cannot be geolocated; the message says why."""


def embedded_database_path() -> str:
    """The embedded GeoLite2 City ``.mmdb`` (built 2018-07-03).

    Debian's package ``rucio-rd-geolite2`` installs it as
    :data:`rucio_rd.resources.EMBEDDED_GEOIP_DATABASE`; where that package is
    absent (a pip installation), the copy inside the PyPI package
    ``maxminddb-geolite2`` is used.

    Returns
    -------
    str
        The absolute path of the file.

    Raises
    ------
    LookupError
        If neither is installed; install ``rucio-rd-geolite2`` (or
        ``maxminddb-geolite2``) or configure a database path.
    """
    if EMBEDDED_GEOIP_DATABASE.is_file():
        return str(EMBEDDED_GEOIP_DATABASE)
    try:
        from _maxminddb_geolite2 import geolite2_database
    except ImportError:
        raise LookupError(
            f"the embedded GeoLite2 City database is missing: install the Debian package"
            f" rucio-rd-geolite2 (it provides {EMBEDDED_GEOIP_DATABASE}) or the PyPI package"
            " maxminddb-geolite2, or set [geoip] database to a City .mmdb"
        ) from None
    path = geolite2_database()
    if not os.path.isfile(path):
        raise LookupError(
            f"maxminddb-geolite2 is installed but {path} is missing; reinstall it "
            "or set [geoip] database to a City .mmdb"
        )
    return path


def _echo(text: str) -> str:
    """A short, quoted rendering of rejected input for an error message."""
    shown = text[:_ECHO_LIMIT]
    suffix = "..." if len(text) > _ECHO_LIMIT else ""
    return repr(shown) + suffix


def _parse_address(address: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """A globally routable IP address from ``address``, or LocationError."""
    if not isinstance(address, str):
        raise LocationError(
            f"{_echo(repr(address))} is not an IP address; give a dotted IPv4 or an IPv6 address"
        )
    text = address.strip()
    if not text:
        raise LocationError("no IP address given; give a dotted IPv4 or an IPv6 address")
    if len(text) > _MAX_ADDRESS_LENGTH:
        raise LocationError(
            f"{_echo(text)} is too long to be an IP address; give a dotted IPv4 or an IPv6 address"
        )
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise LocationError(
            f"{_echo(text)} is not an IP address; give a dotted IPv4 or an IPv6 address"
        ) from None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            raise LocationError(
                f"{_echo(text)} carries a zone index and is local to one link; "
                "it cannot be geolocated"
            )
        # An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is the IPv4 address.
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
    for test, kind in (
        ("is_loopback", "a loopback"),
        ("is_link_local", "a link-local"),
        ("is_multicast", "a multicast"),
        ("is_unspecified", "an unspecified"),
        ("is_reserved", "a reserved"),
        ("is_private", "a private"),
    ):
        if getattr(ip, test):
            raise LocationError(f"{ip} is {kind} address and cannot be geolocated")
    if not ip.is_global:
        # e.g. 100.64.0.0/10, carrier-grade NAT: neither private nor public.
        raise LocationError(f"{ip} is not a globally routable address and cannot be geolocated")
    return ip


class GeoLocator:
    """Geolocates IP addresses with a MaxMind-format City database.

    The database is opened once and shared; lookups are thread-safe (see the
    module docstring).

    Parameters
    ----------
    database : str or os.PathLike or None
        The ``.mmdb`` file; ``None`` or ``""`` means the embedded 2018
        GeoLite2 City database (:func:`embedded_database_path`).

    Raises
    ------
    ValueError
        If the file is missing, unreadable, not a MaxMind database, or not a
        City database; the message names the path.
    """

    def __init__(self, database: str | os.PathLike[str] | None = None) -> None:
        if database is None or str(database) == "":
            try:
                path = embedded_database_path()
            except LookupError as exc:
                raise ValueError(str(exc)) from exc
        else:
            path = str(Path(database))
        if not os.path.isfile(path):
            raise ValueError(
                f"GeoIP database {path} does not exist or is not a file; "
                "give the path of a City .mmdb, or leave it empty for the embedded one"
            )
        try:
            reader = geoip2.database.Reader(path, mode=maxminddb.MODE_AUTO)
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise ValueError(
                f"GeoIP database {path} cannot be opened as a MaxMind database ({exc}); "
                "give the path of a City .mmdb"
            ) from exc
        database_type = reader.metadata().database_type
        if "City" not in database_type:
            reader.close()
            raise ValueError(
                f"GeoIP database {path} is of type {database_type!r}, which has no "
                "positions; give a City database (e.g. GeoLite2-City)"
            )
        self._path = path
        self._reader = reader
        self._closed = False

    @property
    def path(self) -> str:
        """The database file in use."""
        return self._path

    @property
    def build_date(self) -> date:
        """The day the database was built (UTC)."""
        return datetime.fromtimestamp(self._reader.metadata().build_epoch, UTC).date()

    @property
    def description(self) -> str:
        """The database type and build date, e.g. "GeoLite2-City built 2018-07-03"."""
        return f"{self._reader.metadata().database_type} built {self.build_date.isoformat()}"

    def locate(self, address: str) -> Position:
        """The position of an IP address.

        Parameters
        ----------
        address : str
            A dotted IPv4 or an IPv6 address.

        Returns
        -------
        Position
            Latitude and longitude from the database, labelled "City, CC"
            (or as much of that as the database knows).

        Raises
        ------
        LocationError
            If ``address`` is not an IP address, is private, loopback,
            link-local, reserved or multicast, is not in the database, or its
            record has no coordinates.  Nothing else is raised.
        """
        ip = _parse_address(address)
        if self._closed:
            raise LocationError(f"cannot geolocate {ip}: the GeoIP database has been closed")
        try:
            record = self._reader.city(str(ip))
        except geoip2.errors.AddressNotFoundError:
            raise LocationError(
                f"{ip} is not in the GeoIP database ({self.description}); "
                "a newer database may know it"
            ) from None
        except ValueError as exc:
            # maxminddb refuses IPv6 lookups in an IPv4-only database.
            raise LocationError(f"{ip} cannot be looked up in this GeoIP database: {exc}") from None
        except Exception as exc:  # noqa: BLE001 (a broken record must not escape as a 500)
            raise LocationError(
                f"the GeoIP database could not be read for {ip}: {type(exc).__name__}: {exc}"
            ) from None
        latitude = record.location.latitude
        longitude = record.location.longitude
        if latitude is None or longitude is None:
            raise LocationError(f"the GeoIP database has no coordinates for {ip}")
        label = ", ".join(part for part in (record.city.name, record.country.iso_code) if part)
        try:
            return Position(float(latitude), float(longitude), label)
        except (TypeError, ValueError) as exc:
            raise LocationError(f"the GeoIP database has bad coordinates for {ip}: {exc}") from None

    def close(self) -> None:
        """Release the database.  Later lookups raise LocationError."""
        if not self._closed:
            self._closed = True
            self._reader.close()

    def __enter__(self) -> GeoLocator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GeoLocator({self._path!r})"
