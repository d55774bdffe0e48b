"""The notebook's second cell and the datalink service behind it, against the real stack.

DaCHS serves ``/rucio/rucio/dl/dlmeta``; replicas come from the real Rucio
server, site positions and SODA services from the site-directory stand-in,
client positions from the embedded GeoLite2 City database; pyvo and STILTS
are the clients.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import urllib.parse
from xml.etree import ElementTree

import pytest
import requests
from pyvo.dal import conesearch
from pyvo.dal.adhoc import DatalinkResults, SodaQuery

from rucio_rd.model import SODA_ASYNC, SODA_SYNC
from rucio_rd.stack.demo import Stack
from rucio_rd.stack.seed import DEMO_FILES, WALLABY_PREVIEW, all_files

ERIDANUS = (53.75308, -24.93365)
WALLABY = "sp3531_soda:2023-07-18-16-40-27_ASK-WALLABY_Eridanus_cutout-574594-imagecube-42178.fits"
ORANGE = "orange:2023-07-10-17-21-37_cutout-574594-imagecube-42178.fits"
PTF = "testing:PTF10tce.fits"
WALLABY_NAME = WALLABY.split(":", 1)[1]
STORAGE_PORT = 18491  # conftest's TEST_PORTS["storage_port"] (checked below)
PFN = {
    "SPSRC_STORAGE": "https://spsrc14.iaa.csic.es:18027/disk/dev/deterministic/sp3531_soda/9b/98/"
    + WALLABY_NAME,
    # The local sites' storage (rucio_rd.stack.storage), on the integration stack's port.
    "UKSRC_RAL_STORAGE": f"http://127.0.0.2:{STORAGE_PORT}/disk/sp3531_soda/9b/98/"
    + WALLABY_NAME,
    "AUSSRC_STORAGE": f"http://127.0.0.3:{STORAGE_PORT}/disk/sp3531_soda/9b/98/" + WALLABY_NAME,
}
# The notebook's printed replica URL.
NOTEBOOK_URL = PFN["SPSRC_STORAGE"]
VO = "{http://www.ivoa.net/xml/VOTable/v1.3}"
RAL = "130.246.210.120"  # Appleton, GB in GeoLite2 2018
MADRID = "147.96.1.1"  # Universidad Complutense, Madrid, ES in GeoLite2 2018
SITE_HOSTS = {
    "UKSRC_RAL_STORAGE": "127.0.0.2",
    "SPSRC_STORAGE": "spsrc14.iaa.csic.es",
    "AUSSRC_STORAGE": "127.0.0.3",
}


def links_url(stack: Stack, *dids: str, **params: str) -> str:
    query = [("ID", did) for did in dids] + list(params.items())
    return stack.datalink_url + "?" + urllib.parse.urlencode(query)


def fetch(stack: Stack, *dids: str, **params: str) -> DatalinkResults:
    return DatalinkResults.from_result_url(links_url(stack, *dids, **params))


def this_urls(results: DatalinkResults, did: str | None = None) -> list[str]:
    # Fault rows are #this rows without access_url (pyvo's access_url raises on them).
    return [row.get("access_url", decode=True) for row in results.bysemantics("#this")
            if not row.error_message and (did is None or row.id == did)]


def errors(results: DatalinkResults) -> dict[str, str]:
    return {row.id: row.error_message for row in results if row.error_message}


def host_of(url: str) -> str:
    return urllib.parse.urlparse(url).hostname or ""


# --- the notebook ------------------------------------------------------------------------

def test_notebook_flow_gives_the_notebooks_replica_url(stack: Stack) -> None:
    # The notebook's cells as printed: results[0] of the cone search.
    results = conesearch(stack.cone_url, pos=ERIDANUS, radius=1)
    result = results[0]
    datalink_access_url = result["access_url"]
    datalink = DatalinkResults.from_result_url(
        f"{datalink_access_url}&client_ip_address={RAL}&must_include_soda=True")
    this = next(datalink.bysemantics("#this"))
    assert this.access_url == NOTEBOOK_URL
    did = datalink_access_url.split("?id=")[1].split("&")[0]
    assert did.split(":") == WALLABY.split(":", 1)


def test_this_row_carries_type_length_and_a_description_naming_obs_id(stack: Stack) -> None:
    this = next(fetch(stack, WALLABY, client_ip_address=RAL).bysemantics("#this"))
    assert this.content_type == "application/fits"
    assert this.content_length > 0
    assert "Eridanus_full_image" in this.description
    assert "UKSRC" in this.description and "km from the client" in this.description


def test_replica_rows_say_product_type_authentication_size_and_checksum(stack: Stack) -> None:
    results = fetch(stack, WALLABY, PTF, client_ip_address=RAL)
    files = {f.did: f for f in DEMO_FILES}
    rows = [row for row in results.bysemantics("#this") if not row.error_message]
    assert len(rows) == 5
    for row in rows:
        assert row["link_auth"] == "true"  # SKA storage wants a bearer token
        assert row["adler32"] == files[row.id].adler32  # Rucio's, as registered
        assert row.content_length == files[row.id].bytes
        assert row["content_qualifier"] == {WALLABY: "#cube", PTF: "#image"}[row.id]
        assert row["site"] in row.description  # e.g. "... at UKSRC (UKSRC_RAL_STORAGE) ..."
    assert {row["site"] for row in rows} == {"SPSRC", "UKSRC", "AUSSRC"}
    assert {row["site"] for row in results.bysemantics("#cutout")} == {"SPSRC", "AUSSRC"}
    fields = {field.name: field for field in results.fielddescs}
    assert fields["adler32"].ucd == "meta.checksum;meta.file"
    assert fields["content_qualifier"].ucd == "meta.code.class"
    assert fields["link_auth"].ucd == "meta.code"
    assert fields["local_semantics"].ucd == "meta.id.assoc"


def test_the_local_sites_storage_is_where_the_urls_say(stack: Stack) -> None:
    assert stack.layout.storage_port == STORAGE_PORT
    assert stack.storage.base_url("UKSRC_RAL_STORAGE") == f"http://127.0.0.2:{STORAGE_PORT}"


def test_without_must_include_soda_the_uk_replica_comes_first(stack: Stack) -> None:
    urls = this_urls(fetch(stack, WALLABY, client_ip_address=RAL))
    assert [host_of(url) for url in urls] == [
        "127.0.0.2", "spsrc14.iaa.csic.es", "127.0.0.3"]
    assert urls[0] == PFN["UKSRC_RAL_STORAGE"]


@pytest.mark.parametrize(("ranking", "host"), [
    ("0", "127.0.0.2"),
    ("1", "spsrc14.iaa.csic.es"),
    ("2", "127.0.0.3"),
])
def test_ranking_walks_outward(stack: Stack, ranking: str, host: str) -> None:
    urls = this_urls(fetch(stack, WALLABY, client_ip_address=RAL, ranking=ranking))
    assert host_of(urls[0]) == host
    assert len(urls) == 3


def test_a_madrid_address_picks_spain(stack: Stack) -> None:
    urls = this_urls(fetch(stack, WALLABY, client_ip_address=MADRID))
    assert host_of(urls[0]) == "spsrc14.iaa.csic.es"


def test_random_sort_varies(stack: Stack) -> None:
    firsts = {host_of(this_urls(fetch(stack, WALLABY, sort="random"))[0]) for _ in range(25)}
    assert len(firsts) >= 2


def test_forwarded_for_from_a_trusted_proxy_locates_the_client(stack: Stack) -> None:
    # The stack trusts 127.0.0.1 as a proxy (trusted_proxies in its rucio_rd.toml).
    response = requests.get(links_url(stack, WALLABY), timeout=30,
                            headers={"X-Forwarded-For": f"10.9.9.9, {MADRID}"})
    text = response.text
    assert "X-Forwarded-For from a trusted proxy" in text and MADRID in text
    first = text.index("<TD>https://")
    assert text[first:].startswith("<TD>https://spsrc14.iaa.csic.es")


def test_a_peer_that_cannot_be_located_still_gets_links(stack: Stack) -> None:
    # No client_ip_address and no proxy header: the peer is 127.0.0.1 (loopback).
    results = fetch(stack, WALLABY)
    assert len(this_urls(results)) == 3
    assert errors(results) == {}
    text = requests.get(links_url(stack, WALLABY), timeout=30).text
    assert "could not be located" in text and "loopback" in text


def test_choice_is_explained_in_an_info(stack: Stack) -> None:
    text = requests.get(links_url(stack, WALLABY, client_ip_address=RAL), timeout=30).text
    assert 'name="replica_ranking"' in text and 'value="nearest_by_client"' in text
    assert RAL in text and "GeoLite2" in text


# --- SODA descriptors --------------------------------------------------------------------

# The IDs the sites' SODA services take for the notebook's file: SPSRC the prototype's
# form (the default), AUSSRC the DaCHS-style form its site-directory entry names.
SPSRC_SODA_ID = f"ivo://rucio-rd.example?sp3531_soda/9b/98/{WALLABY_NAME}"
AUSSRC_SODA_ID = f"ivo://aussrc.example/~?sp3531_soda/{WALLABY_NAME}"


def soda_resources(results: DatalinkResults) -> list:
    return [resource for resource in results.iter_adhocservices()
            if any(param.name == "standardID" and param.value in (SODA_SYNC, SODA_ASYNC)
                   for param in resource.params)]


def test_soda_descriptors_for_every_soda_site_the_chosen_first(stack: Stack) -> None:
    results = fetch(stack, WALLABY, client_ip_address=RAL, must_include_soda="True")
    # The chosen site's descriptor is the first: get_adhocservice_by_ivoid finds it.
    sync = results.get_adhocservice_by_ivoid(SODA_SYNC)
    params = {param.name: param.value for param in sync.params}
    assert params["accessURL"] == "https://spsrc-soda.iaa.csic.es:443/soda/sync"
    assert params["resourceIdentifier"] == "ivo://spsrc.iaa.csic.es/soda"
    inputs = {param.name: param for param in sync.groups[0].entries}
    assert set(inputs) >= {"ID", "POS", "CIRCLE", "POLYGON", "BAND", "TIME", "POL"}
    assert inputs["ID"].value == SPSRC_SODA_ID
    described = [({p.name: p.value for p in resource.params}["accessURL"],
                  {p.name: p.value for p in resource.groups[0].entries}["ID"])
                 for resource in soda_resources(results)]
    assert described == [
        ("https://spsrc-soda.iaa.csic.es:443/soda/sync", SPSRC_SODA_ID),
        ("https://spsrc-soda.iaa.csic.es:443/soda/async", SPSRC_SODA_ID),
        (f"http://127.0.0.3:{STORAGE_PORT}/soda/sync", AUSSRC_SODA_ID),
        (f"http://127.0.0.3:{STORAGE_PORT}/soda/async", AUSSRC_SODA_ID)]
    cutouts = list(results.bysemantics("#cutout"))
    assert len(cutouts) == 4
    assert [row.service_def for row in cutouts] == [r.ID for r in soda_resources(results)]
    assert "at SPSRC (the site of the chosen replica)" in cutouts[0].description
    assert "at AUSSRC (the site of fallback 1)" in cutouts[2].description
    # #cutout is a narrower term of #proc: pyvo finds the rows through the vocabulary.
    assert len(list(results.bysemantics("#proc"))) == 4


def test_the_notebooks_cutout_cell_finds_the_soda_row(stack: Stack) -> None:
    results = fetch(stack, WALLABY, client_ip_address=RAL, must_include_soda="True")
    soda_row = next(results.bysemantics("#cutout"))
    query = SodaQuery.from_resource(
        soda_row, results.get_adhocservice_by_id(soda_row.service_def),
        circle=(53.75, -24.93, 0.05))
    assert query.baseurl == "https://spsrc-soda.iaa.csic.es:443/soda/sync"
    assert query["ID"] == SPSRC_SODA_ID
    assert query["CIRCLE"].split() == ["53.75", "-24.93", "0.05"]


def test_descriptors_give_the_files_extent_as_values(stack: Stack) -> None:
    text = requests.get(links_url(stack, WALLABY, client_ip_address=RAL,
                                  must_include_soda="True"), timeout=30).content
    resources = [resource for resource in ElementTree.fromstring(text).iter(f"{VO}RESOURCE")
                 if resource.get("utype") == "adhoc:service"]
    assert len(resources) == 4
    for resource in resources:
        inputs = {param.get("name"): param for param in resource.find(f"{VO}GROUP")}

        def values(name: str, inputs=inputs) -> dict[str, list[float]]:
            found = inputs[name].find(f"{VO}VALUES")
            return {} if found is None else {
                child.tag[len(VO):]: [float(n) for n in child.get("value").split()]
                for child in found}

        assert values("CIRCLE")["MAX"] == pytest.approx([53.75308, -24.93365, 0.125])
        assert len(values("POLYGON")["MAX"]) == 16
        assert values("BAND") == {"MIN": [0.2111], "MAX": [0.2315]}
        assert values("TIME") == values("POS") == {}
    # The PTF image has no field size or band in its metadata: no VALUES to give.
    text = requests.get(links_url(stack, PTF, client_ip_address=MADRID), timeout=30).content
    services = [resource for resource in ElementTree.fromstring(text).iter(f"{VO}RESOURCE")
                if resource.get("utype") == "adhoc:service"]
    assert services and not [v for r in services for v in r.iter(f"{VO}VALUES")]


def test_pyvo_builds_a_cutout_request_from_the_descriptor(stack: Stack) -> None:
    results = fetch(stack, WALLABY, client_ip_address=RAL, must_include_soda="True")
    this = next(results.bysemantics("#this"))
    query = SodaQuery.from_resource(this, results.get_adhocservice_by_ivoid(SODA_SYNC),
                                    circle=(53.75, -24.93, 0.1))
    assert query.baseurl == "https://spsrc-soda.iaa.csic.es:443/soda/sync"
    assert query["ID"] == SPSRC_SODA_ID
    assert query["CIRCLE"].split() == ["53.75", "-24.93", "0.1"]


def test_when_the_chosen_site_has_no_soda_the_next_sites_are_described(stack: Stack) -> None:
    results = fetch(stack, WALLABY, client_ip_address=RAL)
    assert host_of(this_urls(results)[0]) == "127.0.0.2"  # no SODA there
    cutouts = list(results.bysemantics("#cutout"))
    assert [row.description.split(" at ")[1] for row in cutouts] == [
        "SPSRC (the site of fallback 1)", "SPSRC (the site of fallback 1)",
        "AUSSRC (the site of fallback 2)", "AUSSRC (the site of fallback 2)"]
    only_uk = next(f.did for f in all_files(stack.layout.synthetic_files)
                   if f.rses == ("UKSRC_RAL_STORAGE",))
    results = fetch(stack, only_uk, client_ip_address=RAL)
    assert list(results.bysemantics("#cutout")) == []
    assert list(results.iter_adhocservices()) == []


def test_each_ids_rows_are_consecutive(stack: Stack) -> None:
    # DataLink 1.1, 3.2: "all links for a single ID value MUST be served in consecutive
    # rows" -- replicas, extra links and cutout services alike.
    for params in ({"client_ip_address": RAL}, {"client_ip_address": MADRID,
                                                 "must_include_soda": "True"}):
        results = fetch(stack, WALLABY, ORANGE, PTF, "nope:x.fits", **params)
        ids = [row.id for row in results]
        runs = [did for index, did in enumerate(ids) if index == 0 or ids[index - 1] != did]
        assert runs == [WALLABY, ORANGE, PTF, "nope:x.fits"], ids
        assert {row.semantics for row in results} >= {"#this", "#preview", "#cutout"}


# --- the files' extra links from their metadata -------------------------------------------

def test_the_metadatas_datalinks_become_rows_and_bad_entries_are_skipped(stack: Stack) -> None:
    results = fetch(stack, WALLABY, ORANGE, client_ip_address=RAL)
    previews = {row.id: row for row in results.bysemantics("#preview")}
    assert set(previews) == {WALLABY, ORANGE}
    wallaby = previews[WALLABY]
    assert wallaby.access_url == WALLABY_PREVIEW["access_url"]
    assert wallaby.content_type == "image/png"
    assert wallaby.description == "Moment-0 map of the cube"
    # orange's come in the prototype's form (a Python list literal); its ftp:// entry is
    # skipped and said in the log, and its good entry served.
    assert previews[ORANGE].description == "Quick-look image"
    assert not [row for row in results if row.id == ORANGE and "ftp:" in str(row.access_url)]
    assert not errors(results)
    deadline = time.monotonic() + 10
    while ("extra links skipped" not in stack.dachs.info_log_path.read_text(errors="replace")
           and time.monotonic() < deadline):
        time.sleep(0.2)
    log = stack.dachs.info_log_path.read_text(errors="replace")
    assert (f"{ORANGE}: extra links skipped (its metadata's datalinks): entry 2: access_url"
            " 'ftp://storage.aussrc.example/orange/cutout-574594.log' is not an http(s) URL"
            in log)
    # The replicas still come first, each file's rows together.
    assert [row.semantics for row in results if row.id == WALLABY][:4] == ["#this"] * 3 + [
        "#preview"]


# --- dlget: the same decision as a redirect ---------------------------------------------

def dlget(stack: Stack, *dids: str, **params: str) -> requests.Response:
    query = [("ID", did) for did in dids] + list(params.items())
    return requests.get(stack.datalink_url.replace("/dlmeta", "/dlget"), params=query,
                        allow_redirects=False, timeout=30)


@pytest.mark.parametrize("params", [
    {"client_ip_address": RAL}, {"client_ip_address": MADRID},
    {"client_ip_address": RAL, "ranking": "2"},
    {"client_ip_address": RAL, "must_include_soda": "True"},
    {"id_case": "id", "client_ip_address": MADRID, "RANKING": "1"},
], ids=["ral", "madrid", "ranking", "soda", "lower-case"])
def test_dlget_redirects_to_the_replica_the_links_document_puts_first(stack: Stack,
                                                                     params) -> None:
    params = dict(params)
    name = params.pop("id_case", "ID")
    response = requests.get(stack.datalink_url.replace("/dlmeta", "/dlget"),
                            params={name: WALLABY, **params}, allow_redirects=False, timeout=30)
    assert response.status_code == 303
    assert response.headers["location"] == this_urls(fetch(stack, WALLABY, **params))[0]
    assert "content-disposition" not in response.headers


def test_dlget_of_the_notebooks_file_from_ral_with_soda_is_the_notebooks_url(
        stack: Stack) -> None:
    response = dlget(stack, WALLABY, client_ip_address=RAL, must_include_soda="True")
    assert response.headers["location"] == NOTEBOOK_URL


@pytest.mark.parametrize(("dids", "params", "status", "said"), [
    (["nope:missing.fits"], {}, 404, "NotFoundFault: Rucio knows no file nope:missing.fits"),
    (["not a did"], {}, 400, "UsageFault: ID 'not a did' is not a Rucio DID"),
    ([WALLABY], {"sort": "fastest"}, 400, "UsageFault: sort='fastest'"),
    ([WALLABY], {"client_ip_address": "10.0.0.1"}, 400, "cannot be geolocated"),
    ([], {}, 400, "dlget takes exactly one ID"),
    ([WALLABY, PTF], {}, 400, "not 2; ask dlmeta for several"),
])
def test_dlget_faults_are_dali_error_documents(stack: Stack, dids, params, status,
                                               said) -> None:
    response = dlget(stack, *dids, **params)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/xml")
    info = ElementTree.fromstring(response.content).find(f"{VO}RESOURCE/{VO}INFO")
    assert (info.get("name"), info.get("value")) == ("QUERY_STATUS", "ERROR")
    assert said in info.text


# --- many IDs in one POST, the way pyvo and TOPCAT ask --------------------------------------

def test_pyvo_iter_datalinks_posts_the_cone_searchs_ids_in_batches(stack: Stack) -> None:
    web_log = stack.dachs.root / "logs" / "web.log"
    posts_before = web_log.read_text(errors="replace").count("'POST' '/rucio/rucio/dl/dlmeta'")
    results = conesearch(stack.cone_url, pos=(0, 0), radius=90)
    assert len(results) > 100
    # The cone search's answer declares the DataLink service, its ID from the did column.
    descriptor = results.get_adhocservice_by_ivoid("ivo://ivoa.net/std/DataLink#links")
    assert {p.name: p.value for p in descriptor.params}["accessURL"] == stack.datalink_url
    linked = {}
    for links in results.iter_datalinks():
        this = [row for row in links.bysemantics("#this") if not row.error_message]
        assert this, links.to_table()
        linked[this[0].id] = links
    assert set(linked) == set(results["did"])
    posts = (web_log.read_text(errors="replace").count("'POST' '/rucio/rucio/dl/dlmeta'")
             - posts_before)
    # MAXREC (DaCHS's 100 rows) crops each answer between files; pyvo asks again for the rest.
    assert 2 <= posts <= len(results) // 10


# --- several IDs, faults -----------------------------------------------------------------

def test_several_ids_in_one_request_each_get_their_links(stack: Stack) -> None:
    results = fetch(stack, WALLABY, ORANGE, PTF, client_ip_address=RAL)
    assert len(this_urls(results, WALLABY)) == 3
    assert [host_of(url) for url in this_urls(results, ORANGE)] == ["127.0.0.3"]
    assert [host_of(url) for url in this_urls(results, PTF)] == [
        "127.0.0.2", "spsrc14.iaa.csic.es"]
    assert errors(results) == {}


def test_unknown_and_malformed_ids_are_fault_rows_beside_good_links(stack: Stack) -> None:
    results = fetch(stack, "testing:no-such-file.fits", "not a did", WALLABY, "nosuchscope:x",
                    client_ip_address=RAL)
    faults = errors(results)
    assert faults["testing:no-such-file.fits"].startswith("NotFoundFault:")
    assert faults["nosuchscope:x"].startswith("NotFoundFault:")
    assert faults["not a did"].startswith("UsageFault:")
    assert "scope:name" in faults["not a did"]
    assert this_urls(results, WALLABY)[0] == PFN["UKSRC_RAL_STORAGE"]


@pytest.mark.parametrize(("params", "expected"), [
    ({"sort": "farthest"}, "sort='farthest' is not one of nearest_by_client, random"),
    ({"ranking": "3"}, "ranking=3 but only 3 replicas; use 0..2"),
    ({"ranking": "-1"}, "ranking='-1' is not a whole number"),
    ({"ranking": "two"}, "ranking='two' is not a whole number"),
    ({"must_include_soda": "perhaps"}, "must_include_soda='perhaps' is not True or False"),
    ({"client_ip_address": "10.1.2.3"}, "private"),
    ({"client_ip_address": "not-an-ip"}, "not an IP address"),
])
def test_bad_parameters_are_usage_faults_naming_the_value(
    stack: Stack, params: dict[str, str], expected: str
) -> None:
    params.setdefault("client_ip_address", RAL)
    faults = errors(fetch(stack, WALLABY, **params))
    assert faults[WALLABY].startswith("UsageFault:")
    assert expected in faults[WALLABY]


def test_must_include_soda_without_a_soda_site_is_not_found(stack: Stack) -> None:
    uk_only = next(f.did for f in all_files(stack.layout.synthetic_files)
                   if f.rses == ("UKSRC_RAL_STORAGE",))
    faults = errors(fetch(stack, uk_only, client_ip_address=RAL, must_include_soda="true"))
    assert faults[uk_only].startswith("NotFoundFault:")
    assert "SODA" in faults[uk_only]


def test_xml_and_sql_metacharacters_come_back_escaped_as_faults(stack: Stack) -> None:
    nasty = "x'; DROP TABLE rucio.main; --:<b>&amp;</b>"
    results = fetch(stack, nasty, client_ip_address=RAL, sort="<script>")
    assert set(errors(results)) == {nasty}
    assert len(conesearch(stack.cone_url, pos=ERIDANUS, radius=1).to_table()) == 2


def test_parameter_names_are_case_insensitive(stack: Stack) -> None:
    url = (f"{stack.datalink_url}?id={WALLABY}&CLIENT_IP_ADDRESS={RAL}"
           "&Must_Include_Soda=True&RANKING=0")
    assert this_urls(DatalinkResults.from_result_url(url))[0] == NOTEBOOK_URL


def test_maxrec_crops_and_says_overflow(stack: Stack) -> None:
    text = requests.get(links_url(stack, WALLABY, ORANGE, PTF, client_ip_address=RAL,
                                  MAXREC="2"), timeout=30).text
    assert 'name="QUERY_STATUS" value="OVERFLOW"' in text
    results = DatalinkResults.from_result_url(links_url(stack, WALLABY, ORANGE, PTF,
                                                        client_ip_address=RAL, MAXREC="2"))
    assert len(results) == 2


def test_no_id_is_a_normal_empty_answer(stack: Stack) -> None:
    # DataLink 1.1, 3.2.1: "the service MUST respond with a normal response".
    for params in ({}, {"client_ip_address": RAL}, {"RESPONSEFORMAT": "votable"}):
        response = requests.get(stack.datalink_url, params=params, timeout=30)
        assert response.status_code == 200, params
        assert response.headers["content-type"].startswith(
            "application/x-votable+xml;content=datalink")
        results = DatalinkResults.from_result_url(
            stack.datalink_url + ("?" + urllib.parse.urlencode(params) if params else ""))
        assert len(results) == 0
        assert 'name="QUERY_STATUS" value="OK"' in response.text


def test_results_resource_names_datalink_1_1(stack: Stack) -> None:
    for ids in ((WALLABY,), (WALLABY, "no:such.file", "bad id"), ()):
        text = requests.get(links_url(stack, *ids, client_ip_address=RAL), timeout=30).text
        results = text[text.index('<RESOURCE type="results"'):]
        results = results[:results.index("</RESOURCE>")]
        assert ('<INFO name="standardID" value="ivo://ivoa.net/std/DataLink#links-1.1"'
                in results), ids


def test_metadata_pages_do_not_break_the_service(stack: Stack) -> None:
    # VOSI capabilities and the info page ask the core without a request;
    # DaCHS must not cache what the core answers them.
    for page in ("capabilities", "info"):
        assert requests.get(f"{stack.dachs.server_url}/rucio/rucio/dl/{page}",
                            timeout=30).status_code == 200
    assert this_urls(fetch(stack, WALLABY, client_ip_address=RAL))[0] == PFN["UKSRC_RAL_STORAGE"]


def test_negative_maxrec_is_a_usage_error(stack: Stack) -> None:
    response = requests.get(links_url(stack, WALLABY, PTF, MAXREC="-1"), timeout=30)
    assert response.status_code == 422
    assert "MAXREC=-1 must not be negative" in response.text


def test_maxrec_zero_is_an_empty_overflowing_table(stack: Stack) -> None:
    text = requests.get(links_url(stack, WALLABY, MAXREC="0"), timeout=30).text
    assert 'name="QUERY_STATUS" value="OVERFLOW"' in text
    assert "<TR>" not in text


def test_unsupported_responseformat_is_a_usage_error(stack: Stack) -> None:
    response = requests.get(links_url(stack, WALLABY, RESPONSEFORMAT="application/json"),
                            timeout=30)
    assert response.status_code == 422
    assert "RESPONSEFORMAT" in response.text
    for spelling in ("votable", "application/x-votable+xml;content=datalink",
                     "application/x-votable+xml; content=datalink"):
        votable = requests.get(links_url(stack, WALLABY, RESPONSEFORMAT=spelling), timeout=30)
        assert votable.status_code == 200, spelling
        assert votable.headers["content-type"].startswith(
            "application/x-votable+xml;content=datalink")


def test_ids_given_under_differently_cased_names_all_get_answers(stack: Stack) -> None:
    url = f"{stack.datalink_url}?ID={PTF}&id={ORANGE}&client_ip_address={RAL}"
    results = DatalinkResults.from_result_url(url)
    assert {row.id for row in results} == {PTF, ORANGE}


def test_control_characters_in_ids_do_not_break_the_document(stack: Stack) -> None:
    url = f"{stack.datalink_url}?ID=testing:PTF10%00tce.fits&ID=a%01b:c&ID={PTF}"
    results = DatalinkResults.from_result_url(url + f"&client_ip_address={RAL}")
    faults = errors(results)
    assert len(faults) == 2 and all(m.startswith("UsageFault:") for m in faults.values())
    assert len(this_urls(results, PTF)) == 2


@pytest.mark.parametrize("path", ["/rucio/links", "/links"])
def test_the_prototype_url_keeps_working(stack: Stack, path: str) -> None:
    url = f"{stack.legacy.url}{path}?id={WALLABY}&client_ip_address={RAL}&must_include_soda=True"
    response = requests.get(url, allow_redirects=False, timeout=30)
    assert response.status_code == 307
    assert response.headers["Location"] == (
        f"{stack.datalink_url}?id={WALLABY}&client_ip_address={RAL}&must_include_soda=True")
    assert this_urls(DatalinkResults.from_result_url(url))[0] == NOTEBOOK_URL


def test_datalink_media_type_even_for_javas_default_accept(stack: Stack) -> None:
    java_accept = "text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2"
    response = requests.get(links_url(stack, WALLABY, client_ip_address=RAL),
                            headers={"Accept": java_accept}, timeout=30)
    assert response.headers["content-type"].startswith(
        "application/x-votable+xml;content=datalink")


@pytest.mark.skipif(shutil.which("stilts") is None, reason="stilts is installed by bin/install")
@pytest.mark.parametrize("params", [
    {"client_ip_address": RAL, "must_include_soda": "True"},
    {"client_ip_address": RAL},
    {"client_ip_address": "10.0.0.1"},
], ids=["soda", "plain", "fault"])
def test_datalinklint_reports_no_errors(stack: Stack, params: dict[str, str]) -> None:
    url = links_url(stack, WALLABY, ORANGE, "testing:missing.fits", **params)
    result = subprocess.run(["stilts", "datalinklint", f"votable={url}"],
                            capture_output=True, encoding="utf-8", timeout=120)
    report = result.stdout + result.stderr
    error_lines = [line for line in report.splitlines() if line.startswith("E-")]
    assert error_lines == [], report
    assert "Totals: Errors: 0; Warnings: 0;" in report, report


# --- secrets and failing neighbours ------------------------------------------------------

def test_no_secret_in_responses_or_logs(stack: Stack) -> None:
    password = stack.rucio.credentials()["password"]
    text = requests.get(links_url(stack, WALLABY, "x:y", client_ip_address=RAL),
                        timeout=30).text
    assert password not in text
    logs = "".join(path.read_text(errors="replace")
                   for path in (stack.dachs.root / "logs").glob("*"))
    logs += stack.dachs.log_path.read_text(errors="replace")
    assert password not in logs
    assert "X-Rucio-Auth-Token" not in text


def test_site_directory_down_serves_the_last_good_copy(stack: Stack) -> None:
    fetch(stack, WALLABY, client_ip_address=RAL)  # the cache has a copy
    log_before = stack.dachs.info_log_path.stat().st_size
    stack.sites.stop()
    try:
        time.sleep(1.5)  # past the stack's 1 s TTL: the next request tries to refresh
        results = fetch(stack, WALLABY, client_ip_address=RAL, must_include_soda="True")
        assert this_urls(results)[0] == NOTEBOOK_URL  # positions and SODA from the old copy
        assert results.get_adhocservice_by_ivoid(SODA_SYNC) is not None
        with open(stack.dachs.info_log_path, errors="replace") as log:
            log.seek(log_before)
            # in DaCHS's own log, under a timestamped line
            assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ \[WARNING \d+\] "
                             r"(While handling .*\n)?"
                             r"rucio_rd\.sites: site information could not be refreshed"
                             r".*serving the copy", log.read(), re.MULTILINE)
    finally:
        stack.sites.start()


def test_rucio_down_is_a_fault_row_not_a_hang(stack: Stack) -> None:
    stack.rucio.stop()
    try:
        started = time.monotonic()
        faults = errors(fetch(stack, WALLABY, client_ip_address=RAL))
        assert time.monotonic() - started < 30
        assert faults[WALLABY].startswith("TransientFault:")
        assert "Rucio" in faults[WALLABY] and "127.0.0.1" not in faults[WALLABY]
    finally:
        stack.rucio.start()
    assert this_urls(fetch(stack, WALLABY, client_ip_address=RAL))[0] == PFN["UKSRC_RAL_STORAGE"]
