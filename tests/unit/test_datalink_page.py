"""The browser page's summary of a DataLink answer (rucio_rd.datalink_page)."""

from __future__ import annotations

import lxml.html

from rucio_rd.datalink_page import augment_page, page_facts

FIELDS = ("ID", "access_url", "service_def", "error_message", "description", "semantics",
          "site")


def votable(rows: list[tuple[str, ...]], ranking: str | None = None) -> bytes:
    fields = "".join(f'<FIELD name="{name}" datatype="char" arraysize="*"/>' for name in FIELDS)
    body = "".join("<TR>" + "".join(f"<TD>{value}</TD>" for value in row) + "</TR>"
                   for row in rows)
    info = f'<INFO name="replica_ranking" value="nearest_by_client">{ranking}</INFO>' \
        if ranking else ""
    return (f'<VOTABLE xmlns="http://www.ivoa.net/xml/VOTable/v1.3" version="1.4">'
            f'<RESOURCE type="results"><TABLE>{fields}<DATA><TABLEDATA>{body}'
            f'</TABLEDATA></DATA></TABLE></RESOURCE>{info}</VOTABLE>').encode()


ROWS = [
    ("s:f", "http://uk/f", "", "", "f at UKSRC, 16 km from the client: nearest replica",
     "#this", "UKSRC"),
    ("s:f", "http://es/f", "", "", "f at SPSRC, 1,624 km from the client: fallback 1",
     "#this", "SPSRC"),
    ("s:f", "", "soda_sync_SPSRC", "", "SODA sync", "#cutout", "SPSRC"),
    ("s:g", "", "", "NotFoundFault: Rucio knows no file s:g", "", "#this", ""),
]
PAGE = b"<html><head><title>Datalink response</title></head><body><table/></body></html>"


def test_the_facts_are_read_from_the_document() -> None:
    facts = page_facts(votable(ROWS, "replicas ordered by distance from 1.2.3.4 (Oslo, NO)"))
    assert facts.ranking == "replicas ordered by distance from 1.2.3.4 (Oslo, NO)"
    assert [summary.did for summary in facts.files] == ["s:f", "s:g"]
    assert [site for site, _, _ in facts.files[0].replicas] == ["UKSRC", "SPSRC"]
    assert facts.files[0].cutout_sites == ["SPSRC"]
    assert facts.files[1].faults == ["NotFoundFault: Rucio knows no file s:g"]


def test_the_page_opens_with_the_choice_the_fallbacks_and_the_faults() -> None:
    page = lxml.html.document_fromstring(augment_page(
        PAGE, votable(ROWS, "replicas ordered by distance from 1.2.3.4 (Oslo, NO)")))
    summary = page.body[0]
    assert summary.get("class") == "rucio-summary"
    assert summary.findtext("h1") == "Where to get these 2 files"
    text = " ".join(summary.text_content().split())
    assert "How the replicas were ordered: replicas ordered by distance from 1.2.3.4" in text
    items = summary.xpath(".//ol/li")
    assert [item.get("class") for item in items] == ["chosen", None]
    assert items[0].xpath(".//a/@href") == ["http://uk/f"]
    assert "Cutouts (SODA) at SPSRC" in text
    assert "NotFoundFault: Rucio knows no file s:g" in text
    assert page.body[1].tag == "table"  # DaCHS's own rendering follows


def test_one_file_names_the_page_and_markup_in_values_stays_text() -> None:
    rows = [("s:&lt;b&gt;", "http://uk/f", "", "", "x &lt;script&gt;", "#this", "UK")]
    page = lxml.html.document_fromstring(augment_page(PAGE, votable(rows)))
    assert page.findtext(".//title") == "DataLink: s:<b>"
    assert not page.xpath("//script") and not page.xpath("//div[@class='rucio-summary']//b")
    assert "x <script>" in page.body.text_content()


def test_only_web_addresses_become_links() -> None:
    rows = [("s:f", "javascript:alert(1)", "", "", "odd", "#this", "X")]
    page = lxml.html.document_fromstring(augment_page(PAGE, votable(rows)))
    assert not page.xpath("//a[starts-with(@href, 'javascript')]")
    assert "javascript:alert(1)" in page.body.text_content()
