"""Unit tests for rucio_rd.sites: parsing, the three sources, and the cache."""

from __future__ import annotations

import copy
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from rucio_rd.model import SODA_ASYNC, SODA_SYNC, Position, Site, SiteCatalogue, SodaService
from rucio_rd.site_cache import CachedSiteSource
from rucio_rd.sites import (
    SiteDirectoryClient,
    SiteSourceError,
    catalogue_from_rse_attributes,
    load_site_file,
    parse_site_directory,
)
from rucio_rd.stack.site_directory import serve_in_thread

REPO = Path(__file__).resolve().parents[2]
SITE_FILE = REPO / "res" / "site-directory.json"
DIRECTORY = json.loads(SITE_FILE.read_text())

RSE_TYPE = "Rucio Storage Element (RSE)"


def soda_entry(kind: str = "SODA (sync)", **overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "type": kind, "prefix": "https", "host": "soda.example", "port": 443,
        "path": "/soda/sync",
        "other_attributes": {"resourceIdentifier": {"value": "ivo://soda.example/soda"}},
    }
    entry.update(overrides)
    return {key: value for key, value in entry.items() if value is not ...}


def one_site(*services: dict[str, Any], rse: str = "X_RSE") -> SiteCatalogue:
    return parse_site_directory(
        [{"name": rse, "latitude": 10.0, "longitude": 20.0}],
        [{"name": "XSITE", "services": [{"type": RSE_TYPE, "identifier": rse}, *services]}],
    )


def sync_url(catalogue: SiteCatalogue, rse: str = "X_RSE") -> str | None:
    service = catalogue.site_for_rse(rse).soda_sync
    return None if service is None else service.access_url


# --- the demo's site directory -------------------------------------------------


def test_demo_directory_gives_spsrc_and_aussrc_soda_and_uksrc_none():
    catalogue = parse_site_directory(DIRECTORY["storages"], DIRECTORY["services"])
    assert catalogue.rses == {"SPSRC_STORAGE", "UKSRC_RAL_STORAGE", "AUSSRC_STORAGE"}
    assert len(catalogue) == 3

    spsrc = catalogue.site_for_rse("SPSRC_STORAGE")
    assert spsrc == Site(
        "SPSRC",
        Position(37.19, -3.60, "SPSRC"),
        SodaService(SODA_SYNC, "https://spsrc-soda.iaa.csic.es:443/soda/sync",
                    "ivo://spsrc.iaa.csic.es/soda"),
        SodaService(SODA_ASYNC, "https://spsrc-soda.iaa.csic.es:443/soda/async",
                    "ivo://spsrc.iaa.csic.es/soda"),
    )
    assert spsrc.has_soda

    aussrc = catalogue.site_for_rse("AUSSRC_STORAGE")
    assert aussrc.name == "AUSSRC"
    assert aussrc.position == Position(-31.95, 115.86, "AUSSRC")
    assert aussrc.soda_sync.access_url == "https://soda.aussrc.example:443/soda/sync"
    assert aussrc.soda_async.access_url == "https://soda.aussrc.example:443/soda/async"
    assert aussrc.soda_sync.resource_identifier == "ivo://aussrc.example/soda"

    uksrc = catalogue.site_for_rse("UKSRC_RAL_STORAGE")
    assert uksrc == Site("UKSRC", Position(51.57, -1.31, "UKSRC"))
    assert not uksrc.has_soda


def test_unknown_rse_has_no_site():
    catalogue = load_site_file(SITE_FILE)
    assert catalogue.site_for_rse("NO_SUCH_RSE") is None
    assert "NO_SUCH_RSE" not in catalogue


def test_catalogue_is_an_immutable_mapping_with_equality():
    catalogue = load_site_file(SITE_FILE)
    assert catalogue == load_site_file(SITE_FILE)
    assert catalogue != SiteCatalogue({})
    assert catalogue["SPSRC_STORAGE"].name == "SPSRC"
    with pytest.raises(TypeError):
        catalogue["NEW"] = Site("NEW", None)  # type: ignore[index]
    source = {"A": Site("A", None)}
    copied = SiteCatalogue(source)
    source["B"] = Site("B", None)
    assert copied.rses == {"A"}


def test_catalogue_refuses_values_that_are_not_sites():
    with pytest.raises(TypeError, match="Site objects"):
        SiteCatalogue({"A": "not a site"})  # type: ignore[dict-item]


def test_site_dataclasses_are_frozen():
    site = Site("S", None)
    with pytest.raises(AttributeError):
        site.name = "T"  # type: ignore[misc]


# --- malformed directory content -----------------------------------------------


@pytest.mark.parametrize("top", [{}, None, "[]", 3, {"storages": []}])
def test_storages_that_are_not_a_list_are_a_source_error(top):
    with pytest.raises(SiteSourceError, match="storages: expected a JSON list"):
        parse_site_directory(top, [])


@pytest.mark.parametrize("top", [{}, None, "x"])
def test_services_that_are_not_a_list_are_a_source_error(top):
    with pytest.raises(SiteSourceError, match="services: expected a JSON list"):
        parse_site_directory([], top)


def test_empty_directory_is_an_empty_catalogue():
    assert len(parse_site_directory([], [])) == 0


def test_storages_without_usable_names_are_skipped():
    catalogue = parse_site_directory(
        [{"latitude": 1, "longitude": 2}, {"name": "", "latitude": 1, "longitude": 2},
         {"name": 42}, "SOME_RSE", None, ["A"], {"name": "GOOD", "latitude": 1, "longitude": 2}],
        [],
    )
    assert catalogue.rses == {"GOOD"}


@pytest.mark.parametrize(
    ("latitude", "longitude"),
    [
        ("north", 2.0), (1.0, "east"), (None, 2.0), (1.0, None), (91.0, 2.0), (-90.5, 2.0),
        (1.0, 180.5), (float("nan"), 2.0), (1.0, float("inf")), (True, 2.0), ([1], 2.0),
        ({"deg": 1}, 2.0),
    ],
)
def test_unusable_coordinates_leave_the_rse_without_position(latitude, longitude):
    catalogue = parse_site_directory(
        [{"name": "BAD", "latitude": latitude, "longitude": longitude},
         {"name": "GOOD", "latitude": 1, "longitude": 2}],
        [],
    )
    assert catalogue.site_for_rse("BAD") == Site("BAD", None)
    assert catalogue.site_for_rse("GOOD").position == Position(1.0, 2.0, "GOOD")


def test_missing_coordinates_leave_the_rse_without_position():
    catalogue = parse_site_directory([{"name": "BARE"}], [])
    assert catalogue.site_for_rse("BARE") == Site("BARE", None)


def test_numeric_strings_are_accepted_as_coordinates():
    catalogue = parse_site_directory([{"name": "S", "latitude": " 37.19", "longitude": "-3.6"}],
                                     [])
    assert catalogue.site_for_rse("S").position == Position(37.19, -3.6, "S")


def test_rse_in_storages_but_in_no_site_is_its_own_site_without_soda():
    catalogue = parse_site_directory(
        [{"name": "LONELY_RSE", "latitude": 1.5, "longitude": 2.5}],
        [{"name": "OTHER", "services": [soda_entry()]}],
    )
    assert catalogue.site_for_rse("LONELY_RSE") == Site("LONELY_RSE",
                                                          Position(1.5, 2.5, "LONELY_RSE"))


def test_rse_listed_by_a_site_but_not_in_storages_has_no_position():
    catalogue = parse_site_directory(
        [],
        [{"name": "SITE", "services": [{"type": RSE_TYPE, "identifier": "GHOST_RSE"},
                                       soda_entry()]}],
    )
    site = catalogue.site_for_rse("GHOST_RSE")
    assert site.name == "SITE"
    assert site.position is None
    assert site.has_soda


def test_site_offers_its_soda_for_every_rse_it_lists():
    catalogue = parse_site_directory(
        [{"name": "A", "latitude": 1, "longitude": 1},
         {"name": "B", "latitude": 2, "longitude": 2}],
        [{"name": "S", "services": [{"type": RSE_TYPE, "identifier": "A"}, soda_entry(),
                                    {"type": RSE_TYPE, "identifier": "B"}]}],
    )
    assert catalogue.site_for_rse("A").soda_sync == catalogue.site_for_rse("B").soda_sync
    assert catalogue.site_for_rse("B").soda_async is None


def test_soda_of_one_site_does_not_leak_to_another():
    catalogue = parse_site_directory(
        [],
        [{"name": "WITH", "services": [{"type": RSE_TYPE, "identifier": "A"}, soda_entry()]},
         {"name": "WITHOUT", "services": [{"type": RSE_TYPE, "identifier": "B"}]}],
    )
    assert catalogue.site_for_rse("A").has_soda
    assert not catalogue.site_for_rse("B").has_soda


def test_malformed_sites_are_skipped_and_the_rest_kept():
    catalogue = parse_site_directory(
        [],
        [
            {"services": [{"type": RSE_TYPE, "identifier": "NAMELESS"}]},
            {"name": "NO_SERVICES"},
            {"name": "SERVICES_NOT_A_LIST", "services": {"type": RSE_TYPE, "identifier": "Q"}},
            "a string",
            None,
            {"name": "GOOD", "services": [
                "not a service", None, {"identifier": "UNTYPED"}, {"type": 5},
                {"type": RSE_TYPE}, {"type": RSE_TYPE, "identifier": ""},
                {"type": RSE_TYPE, "identifier": "GOOD_RSE"},
            ]},
        ],
    )
    assert catalogue.rses == {"GOOD_RSE"}


def test_unknown_service_types_are_ignored():
    catalogue = one_site({"type": "FTS", "host": "fts.example"},
                         {"type": "Jupyter notebook", "host": "jupyter.example"})
    assert catalogue.site_for_rse("X_RSE") == Site("XSITE", Position(10.0, 20.0, "XSITE"))


def test_service_types_are_compared_without_case_or_padding():
    catalogue = parse_site_directory(
        [],
        [{"name": "S", "services": [{"type": " rucio storage element (rse) ", "identifier": "R"},
                                    soda_entry(" soda (SYNC)")]}],
    )
    assert catalogue.site_for_rse("R").soda_sync is not None


def test_rse_listed_by_two_sites_belongs_to_the_first(caplog):
    with caplog.at_level(logging.WARNING, logger="rucio_rd.sites"):
        catalogue = parse_site_directory(
            [],
            [{"name": "FIRST", "services": [{"type": RSE_TYPE, "identifier": "R"}]},
             {"name": "SECOND", "services": [{"type": RSE_TYPE, "identifier": "R"}]}],
        )
    assert catalogue.site_for_rse("R").name == "FIRST"
    assert "listed by sites FIRST and SECOND" in caplog.text


def test_rse_listed_twice_in_storages_keeps_the_first():
    catalogue = parse_site_directory(
        [{"name": "R", "latitude": 1, "longitude": 1},
         {"name": "R", "latitude": 2, "longitude": 2}],
        [],
    )
    assert catalogue.site_for_rse("R").position.latitude == 1.0


def test_the_first_soda_service_of_each_kind_wins():
    catalogue = one_site(soda_entry(host="first.example"), soda_entry(host="second.example"))
    assert sync_url(catalogue) == "https://first.example:443/soda/sync"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/soda/sync", "https://soda.example:443/soda/sync"),
        ("soda/sync", "https://soda.example:443/soda/sync"),
        ("//soda/sync", "https://soda.example:443/soda/sync"),
        ("", "https://soda.example:443/"),
        (None, "https://soda.example:443/"),
        (..., "https://soda.example:443/"),
        ("/soda/sync/", "https://soda.example:443/soda/sync/"),
    ],
)
def test_exactly_one_slash_joins_port_and_path(path, expected):
    assert sync_url(one_site(soda_entry(path=path))) == expected


@pytest.mark.parametrize(
    ("port", "expected"),
    [
        (..., "https://soda.example/soda/sync"),
        (None, "https://soda.example/soda/sync"),
        ("", "https://soda.example/soda/sync"),
        ("8443", "https://soda.example:8443/soda/sync"),
        (80, "https://soda.example:80/soda/sync"),
    ],
)
def test_port_is_kept_when_given_and_omitted_when_missing(port, expected):
    assert sync_url(one_site(soda_entry(port=port))) == expected


@pytest.mark.parametrize("port", [0, 70000, -1, "https", True, 4.5, [443]])
def test_soda_service_with_a_bad_port_is_skipped(port):
    catalogue = one_site(soda_entry(port=port), soda_entry("SODA (async)"))
    assert catalogue.site_for_rse("X_RSE").soda_sync is None
    assert catalogue.site_for_rse("X_RSE").soda_async is not None


@pytest.mark.parametrize(
    "overrides",
    [
        {"prefix": ...}, {"prefix": "ftp"}, {"prefix": 443}, {"host": ...}, {"host": ""},
        {"host": "bad host"}, {"host": "evil.example/x?"}, {"host": 17}, {"path": 7},
    ],
)
def test_soda_service_without_a_usable_url_is_skipped(overrides):
    catalogue = one_site(soda_entry(**overrides))
    assert catalogue.site_for_rse("X_RSE").soda_sync is None
    assert catalogue.site_for_rse("X_RSE").position is not None


def test_prefix_may_carry_its_separator_and_capitals():
    assert sync_url(one_site(soda_entry(prefix="HTTPS://"))) == "https://soda.example:443/soda/sync"


def test_ipv6_literal_host_is_bracketed():
    assert sync_url(one_site(soda_entry(host="2001:db8::5"))) == "https://[2001:db8::5]:443/soda/sync"


@pytest.mark.parametrize(
    "attributes",
    [..., None, {}, {"resourceIdentifier": {}}, {"resourceIdentifier": {"value": 5}}, "ivo://x"],
)
def test_missing_resource_identifier_is_none(attributes):
    catalogue = one_site(soda_entry(other_attributes=attributes))
    service = catalogue.site_for_rse("X_RSE").soda_sync
    assert service.access_url == "https://soda.example:443/soda/sync"
    assert service.resource_identifier is None


def test_malformed_entries_are_logged_not_raised(caplog):
    with caplog.at_level(logging.WARNING, logger="rucio_rd.sites"):
        parse_site_directory([{"name": "B", "latitude": "north", "longitude": 1}],
                             [{"name": "S", "services": "nope"}])
    assert "latitude='north'" in caplog.text
    assert "'services' is not a list" in caplog.text


# --- the file source --------------------------------------------------------------


def test_load_site_file_reads_the_demo_file():
    assert load_site_file(SITE_FILE) == parse_site_directory(DIRECTORY["storages"],
                                                             DIRECTORY["services"])
    assert load_site_file(str(SITE_FILE)).rses == {"SPSRC_STORAGE", "UKSRC_RAL_STORAGE",
                                                   "AUSSRC_STORAGE"}


def test_missing_site_file_is_a_source_error_naming_it(tmp_path):
    missing = tmp_path / "sites.json"
    with pytest.raises(SiteSourceError, match=f"{missing} cannot be read"):
        load_site_file(missing)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not JSON"),
        ("[]", "must hold a JSON object"),
        ('{"storages": []}', "has no services list"),
        ("{}", "has no storages or services list"),
        ('{"storages": {}, "services": []}', "storages: expected a JSON list"),
    ],
)
def test_bad_site_file_is_a_source_error(tmp_path, content, message):
    path = tmp_path / "sites.json"
    path.write_text(content)
    with pytest.raises(SiteSourceError, match=message):
        load_site_file(path)


def test_site_file_that_is_not_text_is_a_source_error(tmp_path):
    path = tmp_path / "sites.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SiteSourceError, match="is not JSON"):
        load_site_file(path)


# --- the RSE-attribute source -----------------------------------------------------


def test_rse_attributes_as_rucio_returns_them_with_string_values():
    catalogue = catalogue_from_rse_attributes({
        "SPSRC_STORAGE": {
            "latitude": "37.19", "longitude": "-3.6", "site": "SPSRC", "istape": False,
            "soda_sync_url": "https://spsrc-soda.iaa.csic.es/soda/sync",
            "soda_async_url": "https://spsrc-soda.iaa.csic.es/soda/async",
            "soda_resource_identifier": "ivo://spsrc.iaa.csic.es/soda",
        },
        "UKSRC_RAL_STORAGE": {"latitude": "51.57", "longitude": "-1.31", "site": "UKSRC"},
        "BARE_RSE": {"fts": "https://fts.example:8446"},
    })
    spsrc = catalogue.site_for_rse("SPSRC_STORAGE")
    assert spsrc == Site(
        "SPSRC", Position(37.19, -3.6, "SPSRC"),
        SodaService(SODA_SYNC, "https://spsrc-soda.iaa.csic.es/soda/sync",
                    "ivo://spsrc.iaa.csic.es/soda"),
        SodaService(SODA_ASYNC, "https://spsrc-soda.iaa.csic.es/soda/async",
                    "ivo://spsrc.iaa.csic.es/soda"),
    )
    assert catalogue.site_for_rse("UKSRC_RAL_STORAGE") == Site(
        "UKSRC", Position(51.57, -1.31, "UKSRC"))
    assert catalogue.site_for_rse("BARE_RSE") == Site("BARE_RSE", None)


def test_rse_attributes_accept_numbers_too():
    catalogue = catalogue_from_rse_attributes({"R": {"latitude": 1, "longitude": 2.5}})
    assert catalogue.site_for_rse("R").position == Position(1.0, 2.5, "R")


@pytest.mark.parametrize(
    "values",
    [
        {"latitude": "north", "longitude": "2"}, {"latitude": "95", "longitude": "2"},
        {"latitude": "1"}, {"latitude": "", "longitude": ""},
    ],
)
def test_rse_attributes_with_unusable_coordinates_give_no_position(values):
    assert catalogue_from_rse_attributes({"R": values}).site_for_rse("R").position is None


def test_rse_attributes_ignore_soda_urls_that_are_not_http():
    catalogue = catalogue_from_rse_attributes({
        "R": {"soda_sync_url": "javascript:alert(1)", "soda_async_url": "not a url"},
    })
    assert not catalogue.site_for_rse("R").has_soda


def test_rse_attributes_with_only_async_soda():
    catalogue = catalogue_from_rse_attributes({"R": {"soda_async_url": "https://s.example/a"}})
    site = catalogue.site_for_rse("R")
    assert site.soda_sync is None
    assert site.soda_async == SodaService(SODA_ASYNC, "https://s.example/a", None)
    assert site.has_soda


def test_rse_attributes_that_are_not_a_mapping_keep_the_rse_bare():
    catalogue = catalogue_from_rse_attributes({"R": "latitude=1", "": {"latitude": "1"}})
    assert catalogue.rses == {"R"}
    assert catalogue.site_for_rse("R") == Site("R", None)


@pytest.mark.parametrize("top", [None, [], "R"])
def test_rse_attributes_top_level_must_be_a_mapping(top):
    with pytest.raises(SiteSourceError, match="expected a mapping"):
        catalogue_from_rse_attributes(top)


# --- the site directory over HTTP --------------------------------------------------


@pytest.fixture
def directory_url() -> Iterator[str]:
    server = serve_in_thread(DIRECTORY, 0)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class MisbehavingHandler(BaseHTTPRequestHandler):
    """Answers /<mode>/storages/grafana and /<mode>/services badly, by mode."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        mode = self.path.strip("/").split("/", 1)[0]
        if mode == "slow":
            time.sleep(3.0)
            self._send(200, b"[]")
        elif mode == "trickle":  # one byte every 0.1 s: no single read times out
            body = b"[" + b" " * 60 + b"]"
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                for byte in body:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.1)
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif mode in ("404", "500", "503"):
            self._send(int(mode), b'{"detail": "no"}')
        elif mode == "garbage":
            self._send(200, b"<html>surprise</html>", "text/html")
        elif mode == "object":
            self._send(200, b'{"storages": []}')
        elif mode == "half":  # storages fine, services broken
            if self.path.endswith("/services"):
                self._send(500, b"oops")
            else:
                self._send(200, json.dumps(DIRECTORY["storages"]).encode())
        else:
            self._send(404, b"{}")

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (the timeout test)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def misbehaving_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), MisbehavingHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_client_reads_the_stand_in_directory(directory_url):
    catalogue = SiteDirectoryClient(directory_url, timeout=5).fetch()
    assert catalogue == load_site_file(SITE_FILE)


def test_client_tolerates_a_trailing_slash(directory_url):
    assert len(SiteDirectoryClient(directory_url + "/").fetch()) == 3


def test_client_uses_the_given_session(directory_url):
    with requests.Session() as session:
        calls = []
        original = session.request

        def recording_request(method: str, url: str, **kwargs: Any):
            calls.append((method, url, kwargs["timeout"]))
            return original(method, url, **kwargs)

        session.request = recording_request  # type: ignore[method-assign]
        SiteDirectoryClient(directory_url, timeout=2.5, session=session).fetch()
    # (connect, read) timeouts: both the configured 2.5 s
    assert calls == [("GET", directory_url + "/storages/grafana", (2.5, 2.5)),
                     ("GET", directory_url + "/services", (2.5, 2.5))]


@pytest.mark.parametrize("status", ["404", "500", "503"])
def test_client_http_error_is_a_source_error_with_the_status(misbehaving_url, status):
    with pytest.raises(SiteSourceError, match=f"answered HTTP {status}"):
        SiteDirectoryClient(f"{misbehaving_url}/{status}").fetch()


def test_client_error_on_the_second_endpoint_is_a_source_error(misbehaving_url):
    with pytest.raises(SiteSourceError, match="/half/services answered HTTP 500"):
        SiteDirectoryClient(f"{misbehaving_url}/half").fetch()


def test_client_non_json_is_a_source_error(misbehaving_url):
    with pytest.raises(SiteSourceError, match="did not return JSON"):
        SiteDirectoryClient(f"{misbehaving_url}/garbage").fetch()


def test_client_wrong_shape_is_a_source_error(misbehaving_url):
    with pytest.raises(SiteSourceError, match="storages: expected a JSON list"):
        SiteDirectoryClient(f"{misbehaving_url}/object").fetch()


def test_client_timeout_is_a_source_error_within_the_timeout(misbehaving_url):
    started = time.monotonic()
    with pytest.raises(SiteSourceError, match="(timed out after|took longer than) 0.2 s"):
        SiteDirectoryClient(f"{misbehaving_url}/slow", timeout=0.2).fetch()
    assert time.monotonic() - started < 2.0  # the directory would take 3 s


def test_client_connection_refused_is_a_source_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(SiteSourceError, match="failed: ConnectionError"):
        SiteDirectoryClient(f"http://127.0.0.1:{port}", timeout=1).fetch()


def test_client_errors_do_not_show_credentials(misbehaving_url):
    url = misbehaving_url.replace("http://", "http://operator:s3cret@") + "/500?token=abc"
    with pytest.raises(SiteSourceError) as caught:
        SiteDirectoryClient(url).fetch()
    assert "s3cret" not in str(caught.value)
    assert "token" not in str(caught.value)
    assert "s3cret" not in repr(SiteDirectoryClient(url))


@pytest.mark.parametrize("url", ["", "ftp://x.example", "sitedirectory.example", "http://"])
def test_client_refuses_urls_that_are_not_http(url):
    with pytest.raises(ValueError, match="is not an http"):
        SiteDirectoryClient(url)


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), "5"])
def test_client_refuses_bad_timeouts(timeout):
    with pytest.raises(ValueError, match="timeout="):
        SiteDirectoryClient("http://x.example", timeout=timeout)


# --- the cache ------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ScriptedFetch:
    """Returns catalogues or raises errors, in order; counts calls."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    def __call__(self) -> SiteCatalogue:
        self.calls += 1
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


FIRST = SiteCatalogue({"A": Site("A", Position(1, 1, "A"))})
SECOND = SiteCatalogue({"B": Site("B", Position(2, 2, "B"))})
DOWN = SiteSourceError("site directory GET http://dir.example/services answered HTTP 503")


def test_cache_fetches_once_within_the_ttl():
    clock, fetch = FakeClock(), ScriptedFetch(FIRST, SECOND)
    source = CachedSiteSource(fetch, ttl=60, clock=clock)
    assert source.age is None
    assert source.get() is FIRST
    clock.now += 59
    assert source.get() is FIRST
    assert fetch.calls == 1
    assert source.age == 59


def test_cache_refreshes_after_the_ttl():
    clock, fetch = FakeClock(), ScriptedFetch(FIRST, SECOND)
    source = CachedSiteSource(fetch, ttl=60, clock=clock)
    source.get()
    clock.now += 60
    assert source.get() is SECOND
    assert fetch.calls == 2
    assert source.age == 0
    assert source.last_error is None


def test_cache_serves_the_last_good_copy_when_the_source_fails(caplog):
    clock, fetch = FakeClock(), ScriptedFetch(FIRST, DOWN)
    source = CachedSiteSource(fetch, ttl=60, clock=clock, retry_after=30)
    source.get()
    clock.now += 61
    with caplog.at_level(logging.WARNING, logger="rucio_rd.sites"):
        assert source.get() is FIRST
    assert "answered HTTP 503" in source.last_error
    assert "serving the copy from 61 s ago" in caplog.text
    assert source.age == 61


def test_cache_does_not_retry_before_retry_after():
    clock, fetch = FakeClock(), ScriptedFetch(FIRST, DOWN, DOWN, SECOND)
    source = CachedSiteSource(fetch, ttl=60, clock=clock, retry_after=30)
    source.get()
    clock.now += 60
    assert source.get() is FIRST  # fails: call 2
    for _ in range(5):
        clock.now += 5
        assert source.get() is FIRST
    assert fetch.calls == 2
    clock.now += 5  # 30 s after the failure
    assert source.get() is FIRST  # fails again: call 3
    assert fetch.calls == 3
    clock.now += 30
    assert source.get() is SECOND  # recovers: call 4
    assert fetch.calls == 4
    assert source.last_error is None


def test_cache_without_any_copy_raises_a_source_error():
    clock, fetch = FakeClock(), ScriptedFetch(DOWN, FIRST)
    source = CachedSiteSource(fetch, ttl=60, clock=clock, retry_after=30)
    with pytest.raises(SiteSourceError, match="no site information.*answered HTTP 503"):
        source.get()
    # Within retry_after the source is not asked again...
    clock.now += 10
    with pytest.raises(SiteSourceError, match="next attempt in 20 s"):
        source.get()
    assert fetch.calls == 1
    # ...and afterwards it is.
    clock.now += 20
    assert source.get() is FIRST
    assert fetch.calls == 2


def test_cache_turns_unexpected_fetch_errors_into_source_errors():
    source = CachedSiteSource(ScriptedFetch(KeyError("storages")), ttl=60, clock=FakeClock())
    with pytest.raises(SiteSourceError, match="storages"):
        source.get()


def test_cache_refuses_a_fetch_that_returns_something_else():
    source = CachedSiteSource(ScriptedFetch({"A": Site("A", None)}), ttl=60, clock=FakeClock())
    with pytest.raises(SiteSourceError, match="returned dict, not a SiteCatalogue"):
        source.get()


def test_cache_log_does_not_show_credentials(caplog):
    clock = FakeClock()
    leaky = RuntimeError("GET https://svc:hunter2@dir.example/services?token=xyz failed")
    source = CachedSiteSource(ScriptedFetch(FIRST, leaky), ttl=1, clock=clock)
    source.get()
    clock.now += 2
    with caplog.at_level(logging.WARNING, logger="rucio_rd.sites"):
        source.get()
    assert "hunter2" not in caplog.text and "xyz" not in caplog.text
    assert "hunter2" not in source.last_error and "xyz" not in source.last_error
    assert "dir.example/services" in caplog.text


@pytest.mark.parametrize(("ttl", "retry_after"), [(-1, 30), (60, -5), (float("nan"), 30)])
def test_cache_refuses_negative_durations(ttl, retry_after):
    with pytest.raises(ValueError, match="must be a number of seconds"):
        CachedSiteSource(ScriptedFetch(FIRST), ttl=ttl, retry_after=retry_after)


class SlowFetch:
    def __init__(self, result: SiteCatalogue, delay: float = 0.2) -> None:
        self.result, self.delay, self.calls = result, delay, 0
        self._lock = threading.Lock()

    def __call__(self) -> SiteCatalogue:
        with self._lock:
            self.calls += 1
        time.sleep(self.delay)
        return self.result


def run_in_threads(target, count: int = 16) -> list[Any]:
    results: list[Any] = [None] * count
    barrier = threading.Barrier(count)

    def worker(index: int) -> None:
        barrier.wait()
        try:
            results[index] = target()
        except BaseException as exc:  # noqa: BLE001
            results[index] = exc

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return results


def test_concurrent_first_gets_fetch_once():
    fetch = SlowFetch(FIRST)
    source = CachedSiteSource(fetch, ttl=60)
    results = run_in_threads(source.get)
    assert fetch.calls == 1
    assert all(result is FIRST for result in results)


def test_concurrent_refresh_fetches_once_and_others_get_the_current_copy():
    clock = FakeClock()
    fetch = SlowFetch(SECOND)
    source = CachedSiteSource(ScriptedFetch(FIRST), ttl=60, clock=clock)
    source.get()
    source._fetch = fetch  # the next fetch is slow
    clock.now += 61
    results = run_in_threads(source.get)
    assert fetch.calls == 1
    assert all(result in (FIRST, SECOND) for result in results)
    assert results.count(FIRST) >= 1  # others did not wait for the refresh
    assert source.get() is SECOND


def test_catalogues_are_equal_by_content():
    # The cache's users can compare catalogues to see whether anything changed.
    changed = copy.deepcopy(DIRECTORY)
    changed["storages"][0]["latitude"] = 38.0
    original = load_site_file(SITE_FILE)
    assert parse_site_directory(DIRECTORY["storages"], DIRECTORY["services"]) == original
    assert parse_site_directory(changed["storages"], changed["services"]) != original


def test_client_cuts_off_a_trickling_directory_at_its_deadline(misbehaving_url):
    started = time.monotonic()
    with pytest.raises(SiteSourceError, match="took longer than 0.5 s"):
        SiteDirectoryClient(f"{misbehaving_url}/trickle", timeout=0.5).fetch()
    assert time.monotonic() - started < 1.5


# --- whether a storage wants authentication (DataLink's link_auth) ----------------------


@pytest.mark.parametrize(("given", "kept"), [
    ({"value": "true"}, "true"), ({"value": "Optional"}, "optional"), ("false", "false"),
    (True, "true"), ({"value": "yes"}, None), ({"value": ""}, None), (None, None),
    ([1], None),
])
def test_an_rse_entry_may_say_whether_its_storage_wants_authentication(given, kept, caplog):
    entry = {"type": RSE_TYPE, "identifier": "X_RSE"}
    if given is not None:
        entry["other_attributes"] = {"linkAuth": given}
    catalogue = parse_site_directory(
        [{"name": "X_RSE", "latitude": 10.0, "longitude": 20.0}],
        [{"name": "XSITE", "services": [entry]}])
    assert catalogue.site_for_rse("X_RSE").link_auth == kept
    assert ("not one of true, false, optional" in caplog.text) == (
        given in ({"value": "yes"},))


def test_link_auth_belongs_to_each_rse_of_a_site():
    catalogue = parse_site_directory([], [{"name": "XSITE", "services": [
        {"type": RSE_TYPE, "identifier": "OPEN",
         "other_attributes": {"linkAuth": {"value": "false"}}},
        {"type": RSE_TYPE, "identifier": "CLOSED"}]}])
    assert catalogue.site_for_rse("OPEN").link_auth == "false"
    assert catalogue.site_for_rse("CLOSED").link_auth is None


def test_an_rse_attribute_may_say_whether_its_storage_wants_authentication():
    catalogue = catalogue_from_rse_attributes({
        "A": {"link_auth": "optional"}, "B": {"link_auth": "sometimes"}, "C": {}})
    assert [catalogue.site_for_rse(rse).link_auth for rse in "ABC"] == ["optional", None, None]


# --- the ID a SODA service takes -------------------------------------------------------


def test_a_soda_service_may_name_the_id_form_it_takes(caplog):
    catalogue = one_site(
        soda_entry(other_attributes={"idTemplate": {"value": "{did}"}}),
        soda_entry("SODA (async)", path="/soda/async",
                   other_attributes={"idTemplate": "ivo://x?{nope}"}))
    site = catalogue.site_for_rse("X_RSE")
    assert site.soda_sync.id_template == "{did}"
    assert site.soda_async.id_template is None
    assert "uses {nope}" in caplog.text and "configured default ID form applies" in caplog.text
    assert one_site(soda_entry()).site_for_rse("X_RSE").soda_sync.id_template is None


def test_an_rse_attribute_may_name_the_soda_id_form():
    catalogue = catalogue_from_rse_attributes({"A": {
        "soda_sync_url": "https://soda.a/sync", "soda_async_url": "https://soda.a/async",
        "soda_id_template": "{url}"}})
    site = catalogue.site_for_rse("A")
    assert site.soda_sync.id_template == site.soda_async.id_template == "{url}"
