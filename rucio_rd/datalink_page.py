"""The DataLink answer as a person reads it in a browser.

DaCHS turns a DataLink document into HTML for browsers (its
``datalink-to-html.xsl``, applied on the server): a table of links and a
form per service.  This module puts, above that, what a person wants to know
first: which file, which replica was chosen and why (where the client was
placed, the sort method, each replica's site and distance), the fallbacks in
order, the sites offering cutouts, and why a file has no links.  Everything
comes from the DataLink document itself (its rows and the ``replica_ranking``
INFO), so the page says exactly what a VO client is told.

Pure: bytes in, bytes out, with lxml; nothing of DaCHS.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["FileSummary", "PageFacts", "augment_page", "page_facts"]

VOTABLE_NS = "http://www.ivoa.net/xml/VOTable/v1.3"
LINKABLE = ("http://", "https://", "ftp://")
STYLE = """
div.rucio-summary { font-family: sans-serif; max-width: 60em; margin: 1ex 0 3ex 0; }
div.rucio-summary h1 { font-size: 150%; margin-bottom: 0.5ex; }
div.rucio-summary p.how { color: #333; }
div.rucio-summary ol li { margin-bottom: 0.6ex; }
div.rucio-summary .chosen { font-weight: bold; }
div.rucio-summary .fault { color: #a00; }
div.rucio-summary .site { font-weight: bold; }
"""


@dataclass
class FileSummary:
    """What the document says about one ID."""

    did: str
    replicas: list[tuple[str, str, str]] = field(default_factory=list)  # site, description, URL
    cutout_sites: list[str] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)


@dataclass
class PageFacts:
    """The ranking's explanation and the files, in the document's order."""

    ranking: str | None
    files: list[FileSummary]


def _text(element) -> str:
    return "".join(element.itertext()).strip() if element is not None else ""


def page_facts(votable: bytes) -> PageFacts:
    """Read the facts for the page from a DataLink document (this service's)."""
    from lxml import etree

    root = etree.fromstring(votable, etree.XMLParser(resolve_entities=False, no_network=True))
    ns = {"v": VOTABLE_NS}
    ranking = root.find(".//v:INFO[@name='replica_ranking']", ns)
    table = root.find(".//v:RESOURCE[@type='results']/v:TABLE", ns)
    files: dict[str, FileSummary] = {}
    if table is not None:
        names = [field_.get("name") for field_ in table.findall("v:FIELD", ns)]
        for row in table.iterfind(".//v:TR", ns):
            values = dict(zip(names, (_text(cell) for cell in row.findall("v:TD", ns)),
                              strict=False))
            did = values.get("ID", "")
            summary = files.setdefault(did, FileSummary(did))
            if values.get("error_message"):
                summary.faults.append(values["error_message"])
            elif values.get("semantics") == "#this":
                summary.replicas.append((values.get("site") or "", values.get("description", ""),
                                         values.get("access_url", "")))
            elif values.get("service_def") and values.get("site"):
                if values["site"] not in summary.cutout_sites:
                    summary.cutout_sites.append(values["site"])
    return PageFacts(_text(ranking) or None, list(files.values()))


def _summary(facts: PageFacts):
    from lxml.html import builder as E

    count = len(facts.files)
    title = ("Where to get " + (facts.files[0].did if count == 1 else f"these {count} files")
             if count else "No file asked for: give one or more ID parameters")
    section = E.DIV(E.CLASS("rucio-summary"), E.H1(title))
    if facts.ranking:
        section.append(E.P(E.CLASS("how"), "How the replicas were ordered: "
                           + facts.ranking[0].lower() + facts.ranking[1:]))
    for summary in facts.files:
        if count > 1:
            section.append(E.H2(summary.did))
        if summary.replicas:
            items = []
            for rank, (site, description, url) in enumerate(summary.replicas):
                # The description says the site, the distance and chosen or fallback N.
                # Only web addresses become links (not javascript: and the like).
                target = (E.A(url, href=url) if url.lower().startswith(LINKABLE)
                          else E.SPAN(url))
                item = E.LI(E.SPAN(E.CLASS("site"), site or "?"), f": {description} ",
                            E.BR(), target)
                if rank == 0:
                    item.set("class", "chosen")
                items.append(item)
            section.append(E.P("The replicas, the chosen one first; if it cannot be "
                               "reached, take the next:"))
            section.append(E.OL(*items))
        if summary.cutout_sites:
            section.append(E.P("Cutouts (SODA) at " + ", ".join(summary.cutout_sites)
                               + ": the forms are below, with the extent of the file."))
        for fault in summary.faults:
            section.append(E.P(E.CLASS("fault"), fault))
    return section


def augment_page(html: bytes, votable: bytes) -> bytes:
    """DaCHS's HTML for a DataLink document with the summary of :func:`page_facts`
    above it, and a title naming the file."""
    import lxml.html
    from lxml.html import builder as E

    facts = page_facts(votable)
    document = lxml.html.document_fromstring(html)
    body = document.find("body")
    if body is None:
        return html
    body.insert(0, _summary(facts))
    head = document.find("head")
    if head is not None:
        head.append(E.STYLE(STYLE, type="text/css"))
        title = head.find("title")
        if title is not None and len(facts.files) == 1:
            title.text = f"DataLink: {facts.files[0].did}"
    return lxml.html.tostring(document, doctype="<!DOCTYPE html>", encoding="utf-8")
