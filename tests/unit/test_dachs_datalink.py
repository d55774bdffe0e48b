"""Unit tests for the pure parts of rucio_rd.dachs_datalink (DaCHS imported, not running)."""

from __future__ import annotations

import pytest
from gavo import base
from gavo.formats import votablewrite
from gavo.votable import V

from rucio_rd import dachs_datalink as dl
from rucio_rd.datalink import SodaLink
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
    descriptor = dl.ExternalSodaDescriptor(SodaLink("s:f.fits", SYNC, "SPSRC"))
    xml = V.VOTABLE[descriptor.asVOT(ctx)].render().decode()
    assert 'type="meta"' in xml and 'utype="adhoc:service"' in xml
    assert 'value="https://soda.es:443/soda/sync"' in xml
    assert f'value="{SODA_SYNC}"' in xml and 'value="ivo://es/soda"' in xml
    assert 'name="ID"' in xml and 'value="s:f.fits"' in xml
    for name in ("POS", "CIRCLE", "POLYGON", "BAND", "TIME", "POL"):
        assert f'name="{name}"' in xml
    assert 'xtype="circle"' in xml
    assert descriptor.kind == "sync"
    assert dl.ExternalSodaDescriptor(
        SodaLink("s:f", SodaService(SODA_ASYNC, "u", None), "X")).kind == "async"


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


def test_fault_rows_become_dachs_link_definitions_with_a_printable_id() -> None:
    row = dl._link_def(LinkFault("a\x00b", "UsageFault", "bad")).asDict()
    assert row["error_message"] == "UsageFault: bad"
    assert row["ID"] == "a\ufffdb" and row["access_url"] is None


def test_reload_empties_the_shared_service_objects() -> None:
    dl._shared["resolver"] = object()
    base.caches.clearCaches()  # what "dachs serve reload" (SIGHUP) does
    assert "resolver" not in dl._shared
