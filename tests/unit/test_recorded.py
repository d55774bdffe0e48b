"""Recorded answers of the real services, replayed through the plugin's own code.

``tests/data/`` holds what the demo stack's real Rucio 41 answered to
``POST /replicas/list``, what the site directory answered to
``/storages/grafana`` and ``/services``, the published rows of those files, and
the DataLink document DaCHS served for them to a client at RAL with
``must_include_soda=True``.  Replaying the first three through the real Rucio
client (against a local server that plays the recording), the real parser of
the site directory and the embedded GeoIP database must give that document's
rows (ID, access URL, error, description, semantics, content type and
length), in its order, and its explanation of the ranking.

The document is recorded again from the demo whenever what the service writes
changes; the demo's metadata and site directory have grown since the inputs
were recorded (product types, extents, extra links, ID templates), so the
document holds more than these inputs give (the SODA IDs and VALUES, the
extra-link rows are left out of the comparison for that reason).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from astropy.io.votable import parse

from rucio_rd.config import Settings
from rucio_rd.datalink import ClientFacts, ReplicaLink, SodaLink, answer
from rucio_rd.geo import GeoLocator
from rucio_rd.links import FileMetadata, LinkFault, ReplicaResolver
from rucio_rd.rucio import RucioClient
from rucio_rd.site_cache import CachedSiteSource
from rucio_rd.sites import parse_site_directory
from rucio_rd.tokens import TokenFileTokens

DATA = Path(__file__).resolve().parents[1] / "data"
REPLICAS = (DATA / "rucio" / "replicas-list.ndjson").read_bytes()
DOCUMENT = DATA / "datalink" / "ral-must-include-soda.xml"
IDS = ["testing:PTF10tce.fits",
       "sp3531_soda:2023-07-18-16-40-27_ASK-WALLABY_Eridanus_cutout-574594-imagecube-42178.fits",
       "testing:no-such-file.fits"]


class _Recording(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/replicas/list":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-json-stream")
        self.send_header("Content-Length", str(len(REPLICAS)))
        self.end_headers()
        self.wfile.write(REPLICAS)


@pytest.fixture(scope="module")
def recorded_rucio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RucioClient]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recording)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    token = tmp_path_factory.mktemp("token") / "token"
    token.write_text("recorded-token")
    try:
        yield RucioClient(f"http://127.0.0.1:{server.server_port}", TokenFileTokens(token))
    finally:
        server.shutdown()
        server.server_close()


def recorded_rows(dids):
    rows = json.loads((DATA / "datalink" / "published-rows.json").read_text(encoding="utf-8"))
    return {row["did"]: FileMetadata(row["obs_id"], row["content_type"], row["content_length"])
            for row in rows if row["did"] in dids}


def recorded_sites():
    directory = DATA / "site-directory"
    return parse_site_directory(
        json.loads((directory / "storages-grafana.json").read_text(encoding="utf-8")),
        json.loads((directory / "services.json").read_text(encoding="utf-8")))


def as_document_row(row) -> tuple:
    """A row of ours in the shape of the recorded table: ID, access_url,
    error_message, description, semantics, content_type, content_length."""
    if isinstance(row, LinkFault):
        return (row.did, None, f"{row.fault}: {row.message}", None, "#this", None, None)
    if isinstance(row, SodaLink):
        # the service's #cutout rows name what the SODA service returns
        return (row.did, None, None, row.description, "#cutout", "application/fits", None)
    assert isinstance(row, ReplicaLink)
    return (row.did, row.access_url, None, row.description, "#this", row.content_type,
            str(row.content_length))


def test_recorded_answers_give_the_recorded_datalink_document(recorded_rucio) -> None:
    resolver = ReplicaResolver(
        rucio=recorded_rucio, sites=CachedSiteSource(recorded_sites, ttl=60),
        locator=GeoLocator(), metadata_lookup=recorded_rows)
    result = answer({"ID": IDS, "client_ip_address": "130.246.210.120",
                     "must_include_soda": "True"},
                    ClientFacts(), None, lambda: (resolver, Settings()))

    table = parse(str(DOCUMENT)).get_first_table().to_table()
    recorded = [tuple(None if value is None or str(value) in ("", "--") else str(value)
                      for value in (row["ID"], row["access_url"], row["error_message"],
                                    row["description"], row["semantics"], row["content_type"],
                                    row["content_length"]))
                for row in table if row["semantics"] in ("#this", "#cutout")]
    ours = [as_document_row(row) for row in result.rows]
    assert ours == recorded

    text = DOCUMENT.read_text(encoding="utf-8")
    assert f'<INFO name="replica_ranking" value="{result.ranking[0]}">{result.ranking[1]}' in text


def test_recorded_site_directory_places_three_sites_two_with_soda() -> None:
    catalogue = recorded_sites()
    sites = {site.name: site for site in catalogue.values()}
    assert set(sites) == {"SPSRC", "UKSRC", "AUSSRC"}
    assert {name for name, site in sites.items() if site.has_soda} == {"SPSRC", "AUSSRC"}
    assert all(site.position is not None for site in sites.values())
