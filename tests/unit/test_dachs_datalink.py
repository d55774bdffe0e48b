"""Unit tests for the pure parts of rucio_rd.dachs_datalink (DaCHS imported, not running)."""

from __future__ import annotations

import re
from pathlib import Path
from xml.etree import ElementTree

import pytest
from gavo import base, svcs
from gavo.formats import votablewrite
from gavo.votable import V

from rucio_rd import dachs_datalink as dl
from rucio_rd.datalink import ReplicaLink, SodaLink
from rucio_rd.links import (
    LinkFault,
)
from rucio_rd.model import (
    SODA_ASYNC,
    SODA_SYNC,
    Position,
    Site,
    SodaService,
)

RD_FILE = Path(__file__).resolve().parents[2] / "inputs" / "rucio" / "rucio.rd"


VO = "{http://www.ivoa.net/xml/VOTable/v1.3}"


def rd_table(table_id: str) -> list:
    """The params of one table of the RD rucio/rucio, parsed by DaCHS."""
    from gavo import rscdesc

    text = RD_FILE.read_text(encoding="utf-8")
    match = re.search(rf'<table id="{table_id}".*?</table>', text, re.DOTALL)
    rd = base.parseFromString(rscdesc.RD, f'<resource schema="test">{match.group(0)}</resource>')
    return list(rd.getById(table_id).params)


SYNC = SodaService(SODA_SYNC, "https://soda.es:443/soda/sync", "ivo://es/soda")
ES = Site("SPSRC", Position(37.19, -3.6, "SPSRC"), soda_sync=SYNC)
UK = Site("UKSRC", Position(51.57, -1.31, "UKSRC"))


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


def test_soda_descriptor_is_an_adhoc_service_with_the_soda_parameters() -> None:
    ctx = votablewrite.VOTableContext(tablecoding="td")
    keys = [svcs.InputKey.fromColumn(param) for param in rd_table("soda_inputs")]
    descriptor = dl.ExternalSodaDescriptor(
        SodaLink("s:f.fits", SYNC, "SP SRC", "ivo://a?s/9b/f.fits", 1,
                 {"CIRCLE": (None, "1 2 0.5"), "BAND": ("0.21", "0.23")}), keys)
    resource = ElementTree.fromstring(V.VOTABLE[descriptor.asVOT(ctx)].render())[0]
    assert (resource.get("type"), resource.get("utype")) == ("meta", "adhoc:service")
    assert resource.get("ID") == "soda_sync_SP_SRC"
    assert "at SP SRC (the site of fallback 1)" in resource.find(f"{VO}DESCRIPTION").text
    params = {param.get("name"): param.get("value") for param in resource.findall(f"{VO}PARAM")}
    assert params == {"accessURL": "https://soda.es:443/soda/sync", "standardID": SODA_SYNC,
                      "resourceIdentifier": "ivo://es/soda"}
    inputs = {param.get("name"): param for param in resource.find(f"{VO}GROUP")}
    assert list(inputs) == ["ID", "POS", "CIRCLE", "POLYGON", "BAND", "TIME", "POL"]
    assert inputs["ID"].get("value") == "ivo://a?s/9b/f.fits"
    assert inputs["CIRCLE"].get("xtype") == "circle"

    def values(name: str) -> dict[str, str]:
        found = inputs[name].find(f"{VO}VALUES")
        return {} if found is None else {child.tag[len(VO):]: child.get("value")
                                         for child in found}

    assert values("CIRCLE") == {"MAX": "1 2 0.5"}
    assert values("BAND") == {"MIN": "0.21", "MAX": "0.23"}
    assert values("TIME") == values("POLYGON") == values("POS") == {}
    assert descriptor.kind == "sync"
    assert dl.ExternalSodaDescriptor(
        SodaLink("s:f", SodaService(SODA_ASYNC, "u", None), "X", "s:f"), []).kind == "async"


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


def test_replica_rows_become_this_links_with_type_length_and_checksum() -> None:
    row = dl._this_row(ReplicaLink("s:f", "https://uk/f", "f at UK: nearest replica",
                                   "application/fits", 99, "#cube", "true", "0a1b2c3d", "UKSRC"))
    assert (row["ID"], row["access_url"], row["semantics"]) == ("s:f", "https://uk/f", "#this")
    assert row["site"] == "UKSRC"  # clients send their storage token to its hosts only
    assert (row["content_type"], row["content_length"]) == ("application/fits", 99)
    assert (row["content_qualifier"], row["link_auth"], row["adler32"]) == (
        "#cube", "true", "0a1b2c3d")
    assert row["description"] == "f at UK: nearest replica" and row["error_message"] is None
    assert set(row) == set(dl.LINK_COLUMNS)


def test_fault_rows_have_a_printable_id_and_nothing_but_the_message() -> None:
    row = dl._this_row(LinkFault("a\x00b", "UsageFault", "bad"))
    assert row["error_message"] == "UsageFault: bad"
    assert row["ID"] == "a\ufffdb"
    assert {name for name, value in row.items() if value is not None} == {
        "ID", "error_message", "semantics"}


def test_the_link_columns_are_the_rds_links_table() -> None:
    table = ElementTree.parse(RD_FILE).getroot().find("table[@id='links']")
    assert [column.get("name") for column in table.findall("column")] == list(dl.LINK_COLUMNS)


def test_reload_empties_the_shared_service_objects() -> None:
    dl._shared["resolver"] = object()
    base.caches.clearCaches()  # what "dachs serve reload" (SIGHUP) does
    assert "resolver" not in dl._shared


# --- the RD is the contract ---------------------------------------------------------------


def test_the_import_fills_exactly_the_columns_of_the_published_table() -> None:
    from rucio_rd.metadata import BOOKKEEPING_COLUMNS, ROW_COLUMNS

    table = ElementTree.parse(RD_FILE).getroot().find("table[@id='main']")
    assert [column.get("name") for column in table.findall("column")] == [*ROW_COLUMNS,
                                                                        *BOOKKEEPING_COLUMNS]


def test_the_service_parameters_are_the_rds_and_sort_lists_every_method() -> None:
    from rucio_rd.ranking import SORT_METHODS, sort_parameter_description

    names = [column.name for column in rd_table("dl_parameters")]
    assert names == ["sort", "ranking", "client_ip_address", "must_include_soda"]
    text = sort_parameter_description()
    for name, method in SORT_METHODS.items():
        assert f"{name}" in text and method.description in text
    assert "nearest_by_client (default)" in text


# --- dlget's answers ----------------------------------------------------------------------


class FakeRequest:
    def __init__(self) -> None:
        from twisted.web.http_headers import Headers

        self.responseHeaders = Headers({"content-disposition": ["attachment; filename=x.vot2"]})
        self.code, self.written, self.finished = None, b"", False

    def setResponseCode(self, code: int) -> None:  # noqa: N802 - Twisted's name
        self.code = code

    def setHeader(self, name: str, value: str) -> None:  # noqa: N802 - Twisted's name
        self.responseHeaders.setRawHeaders(name, [value])

    def write(self, data: bytes) -> None:
        self.written += data

    def finish(self) -> None:
        self.finished = True


def test_dlget_answers_a_redirect_with_a_location_and_no_file_name() -> None:
    from rucio_rd.datalink import Redirect

    request = FakeRequest()
    dl.HttpAnswer.of(Redirect(303, location="https://uk/f.fits")).render(request)
    assert request.code == 303 and request.finished
    headers = request.responseHeaders
    assert headers.getRawHeaders("location") == ["https://uk/f.fits"]
    assert not headers.hasHeader("content-disposition")
    assert headers.getRawHeaders("content-length") == [str(len(request.written))]


def test_dlget_answers_a_fault_with_a_dali_error_document() -> None:
    from rucio_rd.datalink import Redirect

    request = FakeRequest()
    dl.HttpAnswer.of(Redirect(404, message="NotFoundFault: no <file> \x00")).render(request)
    assert request.code == 404
    assert request.responseHeaders.getRawHeaders("content-type") == ["text/xml"]
    info = ElementTree.fromstring(request.written).find(f"{VO}RESOURCE/{VO}INFO")
    assert (info.get("name"), info.get("value")) == ("QUERY_STATUS", "ERROR")
    assert info.text == "NotFoundFault: no <file> \ufffd"


def test_dlget_says_when_to_try_again_after_a_transient_fault() -> None:
    from rucio_rd.datalink import Redirect

    request = FakeRequest()
    dl.HttpAnswer.of(Redirect(503, message="TransientFault: Rucio is slow",
                              retry_after=30)).render(request)
    assert request.code == 503
    assert request.responseHeaders.getRawHeaders("retry-after") == ["30"]
    other = FakeRequest()
    dl.HttpAnswer.of(Redirect(404, message="NotFoundFault: no file")).render(other)
    assert not other.responseHeaders.hasHeader("retry-after")


def test_dlget_percent_encodes_what_is_not_ascii_in_the_location() -> None:
    from rucio_rd.datalink import Redirect

    request = FakeRequest()
    dl.HttpAnswer.of(Redirect(303, location="https://uk/dir/é f.fits?x=1")).render(request)
    assert request.responseHeaders.getRawHeaders("location") == [
        "https://uk/dir/%C3%A9%20f.fits?x=1"]
