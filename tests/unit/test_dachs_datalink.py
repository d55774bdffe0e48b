"""Unit tests for the pure parts of rucio_rd.dachs_datalink (DaCHS imported, not running)."""

from __future__ import annotations

import pytest
from gavo import base
from gavo.formats import votablewrite
from gavo.votable import V

from rucio_rd import dachs_datalink as dl
from rucio_rd.links import (
    ClientLocation,
    DatalinkRequest,
    FileMetadata,
    LinkFault,
    LinkSet,
)
from rucio_rd.model import (
    SODA_ASYNC,
    SODA_SYNC,
    Position,
    RankedReplica,
    Replica,
    Site,
    SodaService,
)

SYNC = SodaService(SODA_SYNC, "https://soda.es:443/soda/sync", "ivo://es/soda")
ES = Site("SPSRC", Position(37.19, -3.6, "SPSRC"), soda_sync=SYNC)
UK = Site("UKSRC", Position(51.57, -1.31, "UKSRC"))


ERIDANUS = FileMetadata("Eridanus", "application/fits", 99)


def link_set(metadata: FileMetadata = ERIDANUS) -> LinkSet:
    return LinkSet("s:f.fits", (
        RankedReplica(Replica("UK_RSE", "https://uk/f.fits"), UK, 12.3),
        RankedReplica(Replica("ES_RSE", "https://es/f.fits"), ES, 1650.4),
    ), metadata, file_bytes=1234)


@pytest.mark.parametrize(("given", "answered"), [
    (None, dl.DATALINK_TYPE),
    ("", dl.DATALINK_TYPE),
    ("votable", dl.DATALINK_TYPE),
    ("application/x-votable+xml; content=datalink", dl.DATALINK_TYPE),
    ("application/x-votable+xml", "application/x-votable+xml"),
    ("text/xml", "text/xml"),
])
def test_votable_responseformats_are_answered(given, answered) -> None:
    assert dl.response_media_type(given) == answered


@pytest.mark.parametrize("given", ["application/json", "text/html", "csv", "fits"])
def test_other_responseformats_are_usage_errors(given) -> None:
    with pytest.raises(base.ValidationError, match="RESPONSEFORMAT"):
        dl.response_media_type(given)


def test_this_rows_chosen_first_with_metadata_and_distance() -> None:
    rows = [d.asDict() for d in dl._link_defs(link_set(), by_distance=True)]
    assert [row["access_url"] for row in rows] == ["https://uk/f.fits", "https://es/f.fits"]
    assert {row["semantics"] for row in rows} == {"#this"}
    assert rows[0]["content_length"] == 99 and rows[0]["content_type"] == "application/fits"
    assert rows[0]["description"] == (
        "Eridanus at UKSRC (UK_RSE), 12 km from the client: nearest replica")
    assert rows[1]["description"].endswith("1,650 km from the client: fallback 1")


def test_without_table_metadata_the_length_comes_from_rucio_and_the_did_names_it() -> None:
    rows = [d.asDict() for d in dl._link_defs(link_set(FileMetadata()), by_distance=False)]
    assert rows[0]["content_length"] == 1234
    assert rows[0]["description"].startswith("s:f.fits at UKSRC")
    assert rows[0]["description"].endswith(": chosen replica")


def test_fault_rows_carry_code_and_message_and_a_printable_id() -> None:
    row = dl._fault_def(LinkFault("a\x00b", "UsageFault", "bad")).asDict()
    assert row["error_message"] == "UsageFault: bad"
    assert row["ID"] == "a\ufffdb" and row["access_url"] is None


def test_choice_info_names_method_address_place_and_database() -> None:
    client = ClientLocation("130.246.210.120", "client_ip_address parameter",
                            Position(51.71, -1.36, "Appleton, GB"))
    sort, text = dl._choice_info(DatalinkRequest(ranking=1, must_include_soda=True), client, "DB")
    assert sort == "nearest_by_client"
    assert "130.246.210.120 (Appleton, GB) at 51.71, -1.36" in text
    assert "with DB" in text and "ranking=1" in text and "only sites offering SODA" in text


def test_choice_info_when_the_client_cannot_be_located() -> None:
    client = ClientLocation("127.0.0.1", "peer", problem="127.0.0.1 is a loopback address")
    _, text = dl._choice_info(DatalinkRequest(), client, "DB")
    assert "could not be located (127.0.0.1 is a loopback address)" in text


def test_soda_descriptor_is_an_adhoc_service_with_the_soda_parameters() -> None:
    ctx = votablewrite.VOTableContext(tablecoding="td")
    descriptor = dl.ExternalSodaDescriptor("s:f.fits", SYNC, "SPSRC")
    xml = V.VOTABLE[descriptor.asVOT(ctx)].render().decode()
    assert 'type="meta"' in xml and 'utype="adhoc:service"' in xml
    assert 'value="https://soda.es:443/soda/sync"' in xml
    assert f'value="{SODA_SYNC}"' in xml and 'value="ivo://es/soda"' in xml
    assert 'name="ID"' in xml and 'value="s:f.fits"' in xml
    for name in ("POS", "CIRCLE", "POLYGON", "BAND", "TIME", "POL"):
        assert f'name="{name}"' in xml
    assert 'xtype="circle"' in xml
    assert descriptor.kind == "sync"
    assert dl.ExternalSodaDescriptor("s:f", SodaService(SODA_ASYNC, "u", None), "X").kind == (
        "async")


def test_with_a_ranking_the_first_row_is_the_chosen_not_the_nearest() -> None:
    rows = [d.asDict() for d in dl._link_defs(link_set(), by_distance=True, ranking=1)]
    assert rows[0]["description"].endswith(": chosen replica (ranking=1)")
    assert rows[1]["description"].endswith(": fallback 1")


# --- the package's log records reach DaCHS's logs -----------------------------------------


def test_log_records_go_to_dachs_notifications_by_level(monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    seen = []
    for level in ("Info", "Warning", "Error"):
        monkeypatch.setattr(base.ui, f"notify{level}",
                            lambda message, level=level: seen.append((level, message)))
    logger = logging.getLogger("rucio_rd.test_logging")
    dl.install_dachs_logging()
    dl.install_dachs_logging()  # a second call adds no second handler
    try:
        logger.info("token renewed for %s", "root")
        logger.warning("site directory down")
        logger.error("misconfigured")
        logger.debug("not shown")
    finally:
        parent = logging.getLogger("rucio_rd")
        for handler in [h for h in parent.handlers if isinstance(h, dl.DachsLogHandler)]:
            parent.removeHandler(handler)
        parent.propagate = True
        parent.setLevel(logging.NOTSET)
    assert seen == [
        ("Info", "rucio_rd.test_logging: token renewed for root"),
        ("Warning", "rucio_rd.test_logging: site directory down"),
        ("Error", "rucio_rd.test_logging: misconfigured"),
    ]


def test_reload_empties_the_shared_service_objects() -> None:
    dl._shared["resolver"] = object()
    base.caches.clearCaches()  # what "dachs serve reload" (SIGHUP) does
    assert "resolver" not in dl._shared
