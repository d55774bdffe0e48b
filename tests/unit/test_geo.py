"""Unit tests for rucio_rd.geo: GeoIP2 City lookups and great-circle distances.

Exact cases run against small ``.mmdb`` files built here with mmdb_writer;
a few pin the embedded 2018 GeoLite2 City database.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from rucio_rd.geo import GeoLocator, LocationError, embedded_database_path
from rucio_rd.model import EARTH_RADIUS_KM, Position, great_circle_km

APPLETON = Position(51.7, -1.3, "Appleton, GB")
HARWELL = Position(51.57, -1.31, "Harwell")
GRANADA = Position(37.19, -3.60, "Granada")
LONDON = Position(51.5074, -0.1278, "London")
PERTH = Position(-31.95, 115.86, "Perth")

# Addresses of the hermetic test databases (documentation ranges would be
# refused as private before the lookup, so ordinary public ranges are used).
GRANADA_NET = "150.214.0.0/16"
NO_COORDINATES_NET = "81.0.0.0/8"
IPV6_NET = "2a00:1a48::/32"


def city_record(latitude: float | None, longitude: float | None, city: str, country: str) -> dict:
    """A record shaped like a GeoIP2/GeoLite2 City record."""
    record: dict = {"city": {"names": {"en": city}}, "country": {"iso_code": country}}
    location = {}
    if latitude is not None:
        location["latitude"] = latitude
    if longitude is not None:
        location["longitude"] = longitude
    if location:
        location["accuracy_radius"] = 20
        record["location"] = location
    return record


def write_city_db(path: Path, networks: dict[str, dict], database_type: str = "GeoIP2-City",
                  ip_version: int = 6) -> Path:
    writer = MMDBWriter(
        ip_version=ip_version,
        database_type=database_type,
        languages=["en"],
        description="rucio_rd unit-test database",
        ipv4_compatible=ip_version == 6,
    )
    for network, record in networks.items():
        writer.insert_network(IPSet([network]), record)
    writer.to_db_file(str(path))
    return path


@pytest.fixture
def test_db(tmp_path: Path) -> Path:
    return write_city_db(
        tmp_path / "city.mmdb",
        {
            GRANADA_NET: city_record(37.19, -3.60, "Granada", "ES"),
            NO_COORDINATES_NET: {"country": {"iso_code": "ES"}},
            IPV6_NET: city_record(-31.95, 115.86, "Perth", "AU"),
        },
    )


@pytest.fixture
def locator(test_db: Path):
    with GeoLocator(test_db) as geo:
        yield geo


@pytest.fixture(scope="module")
def embedded():
    with GeoLocator() as geo:
        yield geo


# --- Position -----------------------------------------------------------------


def test_position_rejects_out_of_range_latitude_naming_the_value():
    with pytest.raises(ValueError, match=r"latitude=91.0 is out of range; use -90\.\.90"):
        Position(91.0, 0.0)


@pytest.mark.parametrize("bad", [181.0, -180.5, math.nan, math.inf, "1.0", True, None])
def test_position_rejects_bad_longitude(bad):
    with pytest.raises(ValueError, match="longitude="):
        Position(0.0, bad)


def test_position_is_frozen():
    with pytest.raises(AttributeError):
        APPLETON.latitude = 0.0  # type: ignore[misc]


# --- great_circle_km ------------------------------------------------------------


def spherical_law_of_cosines_km(a: Position, b: Position) -> float:
    """An independent formula, well conditioned away from tiny distances."""
    lat1, lat2 = math.radians(a.latitude), math.radians(b.latitude)
    dlon = math.radians(b.longitude - a.longitude)
    cosine = math.sin(lat1) * math.sin(lat2) + math.cos(lat1) * math.cos(lat2) * math.cos(dlon)
    return EARTH_RADIUS_KM * math.acos(cosine)


def test_granada_to_harwell_is_about_1600_km():
    # Often quoted as "about 1,650 km" (by road it is more); on the sphere 1,609 km.
    distance = great_circle_km(GRANADA, HARWELL)
    assert distance == pytest.approx(1609, abs=2)
    assert distance == pytest.approx(spherical_law_of_cosines_km(GRANADA, HARWELL), rel=1e-9)


def test_london_to_perth_is_about_14500_km():
    distance = great_circle_km(LONDON, PERTH)
    assert distance == pytest.approx(14500, rel=0.01)
    assert distance == pytest.approx(spherical_law_of_cosines_km(LONDON, PERTH), rel=1e-9)


def test_distance_to_the_same_point_is_zero():
    assert great_circle_km(GRANADA, GRANADA) == 0.0


def test_antipodes_are_half_the_circumference_apart():
    here = Position(37.19, -3.60)
    antipode = Position(-37.19, 176.40)
    # Haversine is ill-conditioned at the antipodes: good to a metre, not better.
    assert great_circle_km(here, antipode) == pytest.approx(math.pi * EARTH_RADIUS_KM, abs=1e-3)
    assert great_circle_km(Position(90, 0), Position(-90, 0)) == pytest.approx(
        math.pi * EARTH_RADIUS_KM
    )


def test_distance_is_symmetric():
    for a, b in [(GRANADA, PERTH), (APPLETON, LONDON), (PERTH, HARWELL)]:
        assert great_circle_km(a, b) == pytest.approx(great_circle_km(b, a), abs=1e-9)


def test_distance_crosses_the_antimeridian_the_short_way():
    assert great_circle_km(Position(0, 179.5), Position(0, -179.5)) == pytest.approx(
        EARTH_RADIUS_KM * math.radians(1.0)
    )


# --- GeoLocator on a hermetic database -------------------------------------------


def test_locate_returns_the_record_position_and_label(locator):
    position = locator.locate("150.214.10.20")
    assert position == Position(37.19, -3.60, "Granada, ES")


def test_locate_ipv6_address_in_the_database(locator):
    position = locator.locate("2a00:1a48:1:2::3")
    assert (position.latitude, position.longitude, position.label) == (-31.95, 115.86, "Perth, AU")


def test_locate_ipv4_mapped_ipv6_address_as_ipv4(locator):
    assert locator.locate("::ffff:150.214.1.1").label == "Granada, ES"


def test_locate_strips_surrounding_whitespace(locator):
    assert locator.locate(" 150.214.1.1\n").label == "Granada, ES"


def test_address_not_in_the_database_is_a_location_error(locator):
    with pytest.raises(LocationError, match=r"8\.8\.8\.8 is not in the GeoIP database"):
        locator.locate("8.8.8.8")


def test_ipv6_address_not_in_the_database_is_a_location_error(locator):
    with pytest.raises(LocationError, match="2a01:4f8::1 is not in the GeoIP database"):
        locator.locate("2a01:4f8::1")


def test_record_without_coordinates_is_a_location_error(locator):
    with pytest.raises(LocationError, match=r"no coordinates for 81\.2\.3\.4"):
        locator.locate("81.2.3.4")


def test_record_with_only_latitude_is_a_location_error(tmp_path):
    db = write_city_db(tmp_path / "half.mmdb", {GRANADA_NET: city_record(37.19, None, "G", "ES")})
    with GeoLocator(db) as geo, pytest.raises(LocationError, match="no coordinates"):
        geo.locate("150.214.0.1")


def test_record_with_out_of_range_coordinates_is_a_location_error(tmp_path):
    db = write_city_db(tmp_path / "bad.mmdb", {GRANADA_NET: city_record(137.0, 0.0, "X", "ES")})
    with GeoLocator(db) as geo, pytest.raises(LocationError, match="bad coordinates"):
        geo.locate("150.214.0.1")


def test_record_of_the_wrong_shape_is_a_location_error(tmp_path):
    db = write_city_db(tmp_path / "odd.mmdb", {GRANADA_NET: {"location": "somewhere"}})
    with GeoLocator(db) as geo, pytest.raises(LocationError, match="could not be read"):
        geo.locate("150.214.0.1")


def test_label_is_the_country_when_the_city_is_unknown(tmp_path):
    db = write_city_db(
        tmp_path / "country.mmdb",
        {GRANADA_NET: {"location": {"latitude": 40.0, "longitude": -4.0},
                       "country": {"iso_code": "ES"}}},
    )
    with GeoLocator(db) as geo:
        assert geo.locate("150.214.0.1") == Position(40.0, -4.0, "ES")


def test_ipv6_lookup_in_an_ipv4_only_database_is_a_location_error(tmp_path):
    db = write_city_db(
        tmp_path / "v4.mmdb", {GRANADA_NET: city_record(37.19, -3.6, "Granada", "ES")},
        ip_version=4,
    )
    with GeoLocator(db) as geo:
        assert geo.locate("150.214.0.1").label == "Granada, ES"
        with pytest.raises(LocationError, match="2a00:1a48::1 cannot be looked up"):
            geo.locate("2a00:1a48::1")


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("10.0.0.1", "10.0.0.1 is a private address and cannot be geolocated"),
        ("192.168.1.7", "192.168.1.7 is a private address"),
        ("172.16.0.1", "172.16.0.1 is a private address"),
        ("127.0.0.1", "127.0.0.1 is a loopback address"),
        ("::1", "::1 is a loopback address"),
        ("169.254.1.1", "169.254.1.1 is a link-local address"),
        ("fe80::1", "fe80::1 is a link-local address"),
        ("fe80::1%eth0", "zone index"),
        ("224.0.0.251", "224.0.0.251 is a multicast address"),
        ("ff02::1", "ff02::1 is a multicast address"),
        ("240.0.0.1", "240.0.0.1 is a reserved address"),
        ("0.0.0.0", "0.0.0.0 is an unspecified address"),
        ("::", ":: is an unspecified address"),
        ("fd00::1", "fd00::1 is a private address"),
        ("::ffff:10.1.2.3", "10.1.2.3 is a private address"),
        ("100.64.0.1", "100.64.0.1 is not a globally routable address"),
    ],
)
def test_non_public_addresses_cannot_be_geolocated(locator, address, reason):
    with pytest.raises(LocationError, match=reason.replace(".", r"\.").replace("%", "%")):
        locator.locate(address)


@pytest.mark.parametrize(
    "garbage",
    [
        "not-an-ip",
        "130.246.210.120; DROP TABLE dids;--",
        "' OR '1'='1",
        "<script>alert(1)</script>",
        "]]></INFO><INFO>",
        "1.2.3",
        "256.1.1.1",
        "1.2.3.4/24",
        "::g",
        "\x00",
        "130.246.210.120\u200b",
    ],
)
def test_strings_that_are_not_addresses_are_location_errors(locator, garbage):
    with pytest.raises(LocationError, match="is not an IP address"):
        locator.locate(garbage)


@pytest.mark.parametrize("empty", ["", "   "])
def test_empty_address_is_a_location_error(locator, empty):
    with pytest.raises(LocationError, match="no IP address given"):
        locator.locate(empty)


@pytest.mark.parametrize("not_text", [None, 42, b"130.246.210.120", ["1.2.3.4"]])
def test_non_string_address_is_a_location_error(locator, not_text):
    with pytest.raises(LocationError, match="is not an IP address"):
        locator.locate(not_text)  # type: ignore[arg-type]


def test_overlong_input_is_refused_and_echoed_only_in_part(locator):
    junk = "<x>" * 10_000
    with pytest.raises(LocationError, match="too long") as caught:
        locator.locate(junk)
    assert len(str(caught.value)) < 200


def test_locate_after_close_is_a_location_error(test_db):
    geo = GeoLocator(test_db)
    geo.close()
    geo.close()  # closing twice is harmless
    with pytest.raises(LocationError, match="closed"):
        geo.locate("150.214.0.1")


def test_concurrent_lookups_share_one_reader(locator):
    results: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(200):
                results.append(locator.locate("150.214.3.4").label)
                with pytest.raises(LocationError):
                    locator.locate("8.8.8.8")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert results == ["Granada, ES"] * 1600


def test_description_gives_type_and_build_date(locator):
    assert locator.description.startswith("GeoIP2-City built 20")


# --- opening databases -----------------------------------------------------------


def test_missing_database_is_a_value_error_naming_the_path(tmp_path):
    missing = tmp_path / "nowhere.mmdb"
    with pytest.raises(ValueError, match=str(missing)):
        GeoLocator(missing)


def test_non_mmdb_file_is_a_value_error_naming_the_path(tmp_path):
    bogus = tmp_path / "bogus.mmdb"
    bogus.write_text("this is not a MaxMind database\n")
    with pytest.raises(ValueError, match=f"{bogus}.*cannot be opened"):
        GeoLocator(bogus)


def test_directory_is_not_a_database(tmp_path):
    with pytest.raises(ValueError, match="not a file"):
        GeoLocator(tmp_path)


def test_database_without_positions_is_refused(tmp_path):
    db = write_city_db(tmp_path / "asn.mmdb", {GRANADA_NET: {"autonomous_system_number": 766}},
                       database_type="GeoLite2-ASN")
    with pytest.raises(ValueError, match="GeoLite2-ASN"):
        GeoLocator(db)


def test_load_errors_are_not_location_errors(tmp_path):
    # A bad configuration must not be mistaken for a client's bad address.
    with pytest.raises(ValueError) as caught:
        GeoLocator(tmp_path / "nowhere.mmdb")
    assert not isinstance(caught.value, LocationError)


# --- the embedded 2018 GeoLite2 City database ------------------------------------


def test_embedded_database_is_the_packaged_geolite2_city():
    path = embedded_database_path()
    assert path.endswith("GeoLite2-City.mmdb")
    assert Path(path).is_file()


@pytest.mark.parametrize("database", [None, ""])
def test_no_database_means_the_embedded_one(database):
    with GeoLocator(database) as geo:
        assert geo.path == embedded_database_path()
        assert geo.description == "GeoLite2-City built 2018-07-03"


def test_embedded_database_places_ral_in_appleton(embedded):
    position = embedded.locate("130.246.210.120")
    assert position.label == "Appleton, GB"
    assert position.latitude == pytest.approx(51.7, abs=0.1)
    assert position.longitude == pytest.approx(-1.3, abs=0.1)


def test_embedded_database_places_complutense_in_madrid(embedded):
    position = embedded.locate("147.96.1.1")  # Universidad Complutense de Madrid
    assert position.label == "Madrid, ES"
    assert great_circle_km(position, Position(40.42, -3.70)) < 10


def test_embedded_database_knows_some_ipv6(embedded):
    assert embedded.locate("2001:630:1::1").label.endswith("GB")  # JANET, UK


def test_embedded_database_misses_unallocated_ipv6(embedded):
    with pytest.raises(LocationError, match="not in the GeoIP database"):
        embedded.locate("2c0f:ffff::1")
