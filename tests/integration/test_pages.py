"""The pages a person reads, as Debian's Chromium (headless) renders them: the
cone form and its results, the DataLink service opened in a browser, the root
page.  The tests read the DOM Chromium ends up with (``--dump-dom``, after its
scripts ran), not our templates' source.
"""

from __future__ import annotations

import shutil
import subprocess
import urllib.parse

import lxml.html
import pytest

from rucio_rd.stack.demo import Stack
from rucio_rd.stack.seed import DEMO_FILES

CHROMIUM = shutil.which("chromium")
RAL = "130.246.210.120"
WALLABY = DEMO_FILES[0]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium: run bin/install")


def rendered(url: str):
    """The page as Chromium shows it (its DOM after loading and scripts)."""
    result = subprocess.run(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--virtual-time-budget=5000", "--dump-dom", url],
        capture_output=True, encoding="utf-8", timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return lxml.html.document_fromstring(result.stdout)


def shown(element) -> str:
    """The element's text as shown: a line break is a space."""
    for line_break in element.iter("br"):
        line_break.tail = " " + (line_break.tail or "")
    return " ".join(element.text_content().split())


def test_the_cone_forms_results_fit_the_page_with_links_to_the_replicas(stack: Stack) -> None:
    form_page = rendered(stack.dachs.server_url + "/rucio/rucio/cone/form")
    # The radius's unit is said beside its field.
    field = form_page.get_element_by_id("genForm-hscs_sr-field")
    assert shown(field.xpath(".//*[@class='description']")[0]) == "Search radius in arcminutes"
    # Submit what the browser would (lxml's form_values: the fields as set),
    # with a position and a radius filled in.
    form = form_page.get_element_by_id("genForm")
    values = dict(form.form_values())
    values.update({"hscs_pos": "53.75308,-24.93365", "hscs_sr": "60", "submit": "Go"})
    action = urllib.parse.urljoin(stack.dachs.server_url + "/", form.get("action"))
    page = rendered(action + "?" + urllib.parse.urlencode(values))
    table = page.xpath("//table[contains(@class, 'results')]")[0]
    headers = [shown(cell) for cell in table.xpath(".//thead//th")]
    assert headers == ["Distance [arcmin]", "Obs. ID", "File (Rucio DID)", "RA [deg]",
                       "Dec [deg]", "Type", "Size [byte]", "Access"]
    rows = table.xpath(".//tbody/tr[contains(@class, 'data')]")
    assert len(rows) == 2
    cells = [shown(cell) for cell in rows[0].xpath("./td")]
    assert cells[:3] == ["0.00", "Eridanus_full_image", WALLABY.did]
    assert (cells[3], cells[4], cells[5]) == ("53.75308", "-24.93365", "cube")
    link = rows[0].xpath("./td[last()]//a")[0]
    assert shown(link) == "replicas and cutouts"
    assert link.get("href").endswith(f"/rucio/rucio/dl/dlmeta?id={WALLABY.did}")
    assert "Matched: 2" in shown(page.body)


def test_the_datalink_page_says_what_was_chosen_and_why(stack: Stack) -> None:
    page = rendered(f"{stack.datalink_url}?ID={urllib.parse.quote(WALLABY.did)}"
                    f"&client_ip_address={RAL}")
    summary = page.xpath("//div[@class='rucio-summary']")[0]
    assert shown(summary.xpath("./h1")[0]) == f"Where to get {WALLABY.did}"
    how = shown(summary.xpath("./p[@class='how']")[0])
    assert "great-circle distance from 130.246.210.120 (Appleton, GB)" in how
    assert "client_ip_address parameter" in how
    items = [shown(item) for item in summary.xpath(".//ol/li")]
    assert [item.split(":")[0] for item in items] == ["UKSRC", "SPSRC", "AUSSRC"]
    assert "km from the client: nearest replica" in items[0]
    assert "fallback 1" in items[1]
    assert "fallback 2" in items[2]
    assert "Cutouts (SODA) at SPSRC, AUSSRC" in shown(summary)
    # DaCHS's own rendering follows: the link table and the SODA forms with the extent.
    forms = page.xpath("//form[contains(@class, 'service-interface')]")
    # DaCHS draws a form for each synchronous service: SPSRC's, then AUSSRC's.
    assert [form.get("action") for form in forms] == [
        "https://spsrc-soda.iaa.csic.es:443/soda/sync",
        stack.storage.soda_url("AUSSRC")]
    first = forms[0]
    assert first.xpath(".//input[@name='ID']")[0].get("value").startswith("ivo://")
    assert "0.2111" in shown(first) and "0.2315" in shown(first)  # BAND's limits


def test_the_root_page_says_what_is_here_and_links_the_services(stack: Stack) -> None:
    page = rendered(stack.dachs.server_url + "/")
    text = shown(page.body)
    assert "publishes the files of a Rucio data lake to the Virtual Observatory" in text
    hrefs = {link.get("href") for link in page.iter("a")}
    assert {"/rucio/rucio/cone/form", "/tap", "/rucio/rucio/dl/info"} <= hrefs
    for boilerplate in ("relatively terse description", "Fill Out", "site help",
                        "Ordinary street address", "Delete this line"):
        assert boilerplate not in text
    for href in ("/rucio/rucio/cone/form", "/rucio/rucio/dl/info", "/tap"):
        linked = rendered(stack.dachs.server_url + href)
        assert "Not Found" not in shown(linked.body)[:200]
