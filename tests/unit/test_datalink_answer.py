"""Unit tests for rucio_rd.datalink: one DataLink request in, rows and the ranking's
explanation out, without DaCHS."""

from __future__ import annotations

from dataclasses import replace

import pytest
from fakes import ES, FILES, UK, FakeRucio, FakeSites, resolver

from rucio_rd.config import ConfigError, Settings, SiteSettings
from rucio_rd.datalink import (
    MAX_IDS,
    ClientFacts,
    Redirect,
    ReplicaLink,
    SodaLink,
    answer,
    content_qualifier,
    explain_ranking,
    extra_links,
    redirect,
    replica_links,
    soda_links,
)
from rucio_rd.links import (
    ClientLocation,
    DatalinkRequest,
    Fault,
    FileMetadata,
    LinkFault,
    LinkSet,
    UsageError,
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
from rucio_rd.ranking import SORTS
from rucio_rd.rucio import RucioUnavailable

ERIDANUS = FileMetadata("Eridanus", "application/fits", 99)
RAL = ClientFacts()


def link_set(metadata: FileMetadata = ERIDANUS) -> LinkSet:
    return LinkSet("s:f.fits", (
        RankedReplica(Replica("UK_RSE", "https://uk/f.fits"), UK, 12.3),
        RankedReplica(Replica("ES_RSE", "https://es/f.fits"), ES, 1650.4),
    ), metadata, file_bytes=1234)


def service():
    return resolver(), Settings()


def ask(maxrec: int | None = None, **args) -> object:
    return answer(args, ClientFacts(peer="10.0.0.1"), maxrec, service)


# --- rows of one file ---------------------------------------------------------------


def test_this_rows_chosen_first_with_metadata_and_distance() -> None:
    rows = [vars(d) for d in replica_links(link_set(), first_is="nearest replica")]
    assert [row["access_url"] for row in rows] == ["https://uk/f.fits", "https://es/f.fits"]
    # The size is Rucio's (what the download gets), not the metadata's 99.
    assert rows[0]["content_length"] == 1234 and rows[0]["content_type"] == "application/fits"
    assert rows[0]["description"] == (
        "Eridanus at UKSRC (UK_RSE), 12 km from the client: nearest replica")
    assert rows[1]["description"].endswith("1,650 km from the client: fallback 1")


def test_without_table_metadata_the_did_names_it() -> None:
    rows = [vars(d) for d in replica_links(link_set(FileMetadata()), first_is=None)]
    assert rows[0]["content_length"] == 1234
    assert rows[0]["description"].startswith("s:f.fits at UKSRC")
    assert rows[0]["description"].endswith(": chosen replica")


def test_without_rucios_size_the_length_comes_from_the_table() -> None:
    unsized = LinkSet("s:f.fits", link_set().replicas, ERIDANUS)
    assert [row.content_length for row in replica_links(unsized, None)] == [99, 99]


def test_every_replica_row_carries_rucios_checksum() -> None:
    checked = LinkSet("s:f.fits", link_set().replicas, ERIDANUS, 1234, "0012abcd")
    assert [row.adler32 for row in replica_links(checked, None)] == ["0012abcd"] * 2
    assert [row.adler32 for row in replica_links(link_set(), None)] == [None, None]


@pytest.mark.parametrize(("product_type", "qualifier"), [
    ("cube", "#cube"), (" Image ", "#image"), ("timeseries", "#timeseries"),
    ("dynamic-spectrum", "#dynamic-spectrum"), ("catalogue", None), ("", None), (None, None),
    ("#cube", None),
])
def test_content_qualifier_is_the_product_type_term(product_type, qualifier) -> None:
    assert content_qualifier(product_type) == qualifier
    typed = LinkSet("s:f.fits", link_set().replicas,
                    FileMetadata("Eridanus", "application/fits", 99, product_type), 1234)
    assert {row.content_qualifier for row in replica_links(typed, None)} == {qualifier}


def test_link_auth_is_the_sites_else_the_configured_default() -> None:
    open_uk = replace(UK, link_auth="false")
    mixed = LinkSet("s:f.fits", (
        RankedReplica(Replica("UK_RSE", "https://uk/f.fits"), open_uk, 12.3),
        RankedReplica(Replica("ES_RSE", "https://es/f.fits"), ES, 1650.4),
        RankedReplica(Replica("XX_RSE", "https://xx/f.fits"), None, None),
    ), ERIDANUS, 1234)
    assert [row.link_auth for row in replica_links(mixed, None, link_auth="true")] == [
        "false", "true", "true"]
    assert [row.link_auth for row in replica_links(mixed, None)] == ["false", None, None]


def test_a_site_with_an_unknown_link_auth_value_is_refused() -> None:
    with pytest.raises(ValueError, match="link_auth='yes' is not one of true, false, optional"):
        replace(UK, link_auth="yes")


def test_the_answer_says_the_configured_link_auth() -> None:
    for configured, said in (("true", "true"), ("optional", "optional"), ("", None)):
        settings = Settings(sites=SiteSettings(link_auth=configured))
        result = answer({"ID": ["s:uk"], "client_ip_address": "1.2.3.4"},
                        ClientFacts(peer="10.0.0.1"), None, lambda s=settings: (resolver(), s))
        assert {row.link_auth for row in result.rows if isinstance(row, ReplicaLink)} == {said}


def test_choice_info_names_method_address_place_and_database() -> None:
    client = ClientLocation("130.246.210.120", "client_ip_address parameter",
                            Position(51.71, -1.36, "Appleton, GB"))
    sort, text = explain_ranking(DatalinkRequest(ranking=1, must_include_soda=True), client, "DB")
    assert sort == "nearest_by_client"
    assert "130.246.210.120 (Appleton, GB) at 51.71, -1.36" in text
    assert "with DB" in text and "ranking=1" in text and "only sites offering SODA" in text


def test_choice_info_when_the_client_cannot_be_located() -> None:
    client = ClientLocation("127.0.0.1", "peer", problem="127.0.0.1 is a loopback address")
    _, text = explain_ranking(DatalinkRequest(), client, "DB")
    assert "could not be located (127.0.0.1 is a loopback address)" in text


def test_with_a_ranking_the_first_row_is_the_chosen_not_the_nearest() -> None:
    rows = [vars(d) for d in replica_links(link_set(), first_is="nearest replica", ranking=1)]
    assert rows[0]["description"].endswith(": chosen replica (ranking=1)")
    assert rows[1]["description"].endswith(": fallback 1")


def test_sort_random_is_explained_as_random() -> None:
    _, text = explain_ranking(DatalinkRequest(sort="random"), ClientLocation(None, "peer"), "DB")
    assert text == "replicas in random order"


# --- answer: the whole request -------------------------------------------------------


def test_answer_gives_replicas_then_every_sites_soda_per_id_in_id_order() -> None:
    result = ask(ID=["s:uk", "s:both"], client_ip_address="1.2.3.4", must_include_soda="no")
    kinds = [(type(row).__name__, row.did) for row in result.rows]
    # s:both is nearest at UK, which has no SODA; Spain's SODA is described for fallback 1.
    assert kinds == [("ReplicaLink", "s:uk"), ("ReplicaLink", "s:both"),
                     ("ReplicaLink", "s:both"), ("SodaLink", "s:both")]
    soda = result.rows[-1]
    assert (soda.site_name, soda.rank) == ("SPSRC", 1)
    assert soda.description.endswith("at SPSRC (the site of fallback 1)")
    assert result.ranking[0] == "nearest_by_client" and not result.overflowed


def test_soda_rows_follow_the_replicas_when_the_chosen_site_offers_soda() -> None:
    settings = Settings(sites=SiteSettings(soda_id_authority="ivo.test"))
    result = answer({"ID": "s:both", "client_ip_address": "1.2.3.4",
                     "must_include_soda": "true"}, ClientFacts(peer="10.0.0.1"), None,
                    lambda: (resolver(), settings))
    assert [type(row) for row in result.rows] == [ReplicaLink, SodaLink]
    assert result.rows[1].kind == "sync" and result.rows[1].site_name == "SPSRC"
    assert result.rows[1].rank == 0
    # The prototype's ID form (the default), from the chosen replica's URL https://es/both.
    assert result.rows[1].soda_id == "ivo://ivo.test?s/both"


def test_a_bad_parameter_is_a_usage_fault_row_per_id() -> None:
    result = ask(ID=["s:uk", "s:both"], sort="fastest")
    assert [row.fault for row in result.rows] == [Fault.USAGE, Fault.USAGE]
    assert f"sort='fastest' is not one of {', '.join(SORTS)}" in result.rows[0].message
    assert result.ranking is None


def test_a_misconfigured_service_is_a_fatal_fault_row_per_id() -> None:
    def broken():
        raise ConfigError("[rucio] username must be set")

    result = answer({"ID": ["a:b", "c:d"]}, RAL, None, broken)
    assert [row.fault for row in result.rows] == [Fault.FATAL, Fault.FATAL]
    assert result.rows[0].message == (
        "the service is misconfigured: [rucio] username must be set")


def test_negative_maxrec_fails_the_whole_request_naming_maxrec() -> None:
    with pytest.raises(UsageError) as caught:
        ask(maxrec=-1, ID="s:uk")
    assert caught.value.parameter == "MAXREC"


def test_maxrec_keeps_each_ids_rows_together_and_says_overflow() -> None:
    result = ask(maxrec=2, ID=["s:uk", "s:both"], client_ip_address="1.2.3.4")
    assert [row.did for row in result.rows] == ["s:uk"]
    assert result.overflowed


def test_no_id_asks_nothing_and_gets_no_rows() -> None:
    def untouched():
        raise AssertionError("no ID: the resolver must not be built")

    result = answer({}, RAL, None, untouched)
    assert result.rows == [] and result.ranking is None and not result.overflowed


def test_at_most_max_ids_are_resolved() -> None:
    result = ask(ID=[f"s:f{n}" for n in range(MAX_IDS + 5)])
    assert len(result.rows) == MAX_IDS and result.overflowed
    assert all(isinstance(row, LinkFault) for row in result.rows)


# -- no site information: nobody is called nearest --------------------------------------


def test_without_site_information_no_replica_is_called_nearest() -> None:
    service = resolver(FakeRucio(FILES), FakeSites(error=True))
    result = answer({"ID": ["s:both"], "client_ip_address": "1.2.3.4"}, ClientFacts(), None,
                    lambda: (service, Settings()))
    descriptions = [row.description for row in result.rows]
    # RSE-name order (ES_RSE before UK_RSE), no distance claimed, nobody "nearest".
    assert descriptions == ["obs at ES_RSE: chosen replica", "obs at UK_RSE: fallback 1"]
    sort, how = result.ranking
    assert sort == "nearest_by_client"
    assert "site information is unavailable" in how
    assert "none is called nearest: replicas are in RSE-name order" in how
    assert "ordered by great-circle distance" not in how


def test_an_rse_without_a_position_is_named_in_the_explanation() -> None:
    files = {"s:f": (Replica("UK_RSE", "https://uk/f"), Replica("XX_RSE", "https://xx/f"))}
    service = resolver(FakeRucio(files))
    result = answer({"ID": ["s:f"], "client_ip_address": "1.2.3.4"}, ClientFacts(), None,
                    lambda: (service, Settings()))
    first, second = (row.description for row in result.rows)
    assert first.endswith("km from the client: nearest replica")
    assert second == "s:f at XX_RSE: fallback 1"
    assert "the positions of XX_RSE are unknown" in result.ranking[1]


def test_an_unlocated_client_gets_rse_name_order_and_is_told_so() -> None:
    service = resolver()
    result = answer({"ID": ["s:both"]}, ClientFacts(peer="127.0.0.1"), None,
                    lambda: (service, Settings()))
    assert [row.description for row in result.rows][0] == "obs at SPSRC (ES_RSE): chosen replica"
    assert "replicas are in RSE-name order" in result.ranking[1]


# --- the SODA services of every site ----------------------------------------------------


def soda_site(name: str, template: str | None = None) -> Site:
    return Site(name, Position(0.0, 0.0, name),
                soda_sync=SodaService(SODA_SYNC, f"https://soda.{name}/sync", None, template),
                soda_async=SodaService(SODA_ASYNC, f"https://soda.{name}/async", None, template))


def test_every_soda_site_in_replica_order_each_with_its_own_id() -> None:
    replicas = LinkSet("sc:a/f.fits", (
        RankedReplica(Replica("UK_RSE", "https://uk/disk/sc/a/f.fits"), UK, 10.0),
        RankedReplica(Replica("ES_RSE", "https://es:8443/x/sc/9b/98/a/f.fits"),
                      soda_site("SPSRC"), 20.0),
        RankedReplica(Replica("ES_TAPE", "https://tape.es/sc/a/f.fits"), soda_site("SPSRC"), 21.0),
        RankedReplica(Replica("AU_RSE", "https://au/sc/a/f.fits"),
                      soda_site("AUSSRC", "{did}"), 30.0),
        RankedReplica(Replica("XX_RSE", "https://xx/sc/a/f.fits"), None, None),
    ), FileMetadata("obs", extent={"s_ra": 10.0, "s_dec": 20.0, "s_fov": 1.0,
                                   "em_min": 0.2, "em_max": 0.3}))
    links = soda_links(replicas, "ivo://{authority}?{scope}/{path}", "skao.int")
    assert [(link.site_name, link.kind, link.rank) for link in links] == [
        ("SPSRC", "sync", 1), ("SPSRC", "async", 1), ("AUSSRC", "sync", 3),
        ("AUSSRC", "async", 3)]
    # SPSRC is described once, from its best-ranked replica's URL.
    assert [link.soda_id for link in links] == [
        "ivo://skao.int?sc/9b/98/a/f.fits", "ivo://skao.int?sc/9b/98/a/f.fits",
        "sc:a/f.fits", "sc:a/f.fits"]
    assert links[0].values["CIRCLE"] == (None, "10 20 0.5")
    assert links[0].values["BAND"] == ("0.2", "0.3")
    assert all(link.values == links[0].values for link in links)


def test_a_chosen_site_without_soda_gives_the_next_sites_and_none_gives_none() -> None:
    links = soda_links(link_set(), "{did}", "a")
    assert [(link.site_name, link.kind, link.rank, link.soda_id) for link in links] == [
        ("SPSRC", "sync", 1, "s:f.fits")]
    only_uk = LinkSet("s:f", (RankedReplica(Replica("UK_RSE", "https://uk/f"), UK, 1.0),),
                      ERIDANUS)
    assert soda_links(only_uk, "{did}", "a") == []


# --- dlget: the same decision as a redirect ---------------------------------------------


def get(**args) -> Redirect:
    return redirect(args, ClientFacts(peer="10.0.0.1"), service)


def test_dlget_redirects_to_the_replica_the_links_document_puts_first() -> None:
    for args in ({"client_ip_address": "1.2.3.4"}, {"client_ip_address": "1.2.3.4", "ranking": "1"},
                 {}):
        first = next(row for row in ask(ID="s:both", **args).rows
                     if isinstance(row, ReplicaLink))
        assert get(ID="s:both", **args) == Redirect(303, location=first.access_url)
    assert get(ID="s:both", client_ip_address="1.2.3.4").location == "https://uk/both"
    assert get(id="s:both", client_ip_address="1.2.3.4", ranking="1").location == "https://es/both"


@pytest.mark.parametrize(("args", "status", "said"), [
    ({"ID": "s:nope"}, 404, "NotFoundFault: Rucio knows no file s:nope"),
    ({"ID": "s:none"}, 404, "NotFoundFault: s:none has no available replica"),
    ({"ID": "not a did"}, 400, "UsageFault: ID 'not a did' is not a Rucio DID"),
    ({"ID": "s:both", "sort": "fastest"}, 400, "UsageFault: sort='fastest'"),
    ({}, 400, "UsageFault: dlget takes exactly one ID"),
    ({"ID": ["s:both", "s:uk"]}, 400, "not 2; ask dlmeta for several"),
])
def test_dlget_faults_are_errors_with_their_status(args, status, said) -> None:
    answer_ = get(**args)
    assert answer_.status == status and answer_.location is None
    assert said in answer_.message
    assert answer_.retry_after is None  # nothing changes by waiting


def test_dlget_when_rucio_is_down_is_a_server_error_to_retry() -> None:
    rucio = FakeRucio(FILES, error=RucioUnavailable("refused", None, None))
    answer_ = redirect({"ID": "s:both"}, ClientFacts(), lambda: (resolver(rucio), Settings()))
    assert answer_.status == 503 and answer_.message.startswith("TransientFault:")
    assert answer_.retry_after == 30


# --- the file's extra links from its metadata --------------------------------------------


PREVIEWS = ('[{"access_url": "https://p.example/q.png", "semantics": "#preview",'
            ' "content_type": "image/png"}, {"access_url": "ftp://bad"}]')


def test_extra_links_follow_the_replicas_and_bad_ones_are_logged_once(caplog) -> None:
    from rucio_rd import datalink

    datalink._REPORTED.clear()
    with_previews = replace(link_set(), did="s:previews.fits",
                            metadata=replace(ERIDANUS, datalinks=PREVIEWS))
    for _ in range(3):
        rows = extra_links(with_previews)
        assert [(row.did, row.link.access_url, row.link.semantics) for row in rows] == [
            ("s:previews.fits", "https://p.example/q.png", "#preview")]
    warnings = [record.getMessage() for record in caplog.records
                if "extra links skipped" in record.getMessage()]
    assert warnings == ["s:previews.fits: extra links skipped (its metadata's datalinks):"
                        " entry 2: access_url 'ftp://bad' is not an http(s) URL"]
    assert extra_links(link_set()) == []


def test_the_answer_puts_extra_links_between_replicas_and_services() -> None:
    metadata = {"s:both": FileMetadata("obs", "application/fits", 7, datalinks=PREVIEWS)}
    resolver_ = replace(resolver(), metadata_lookup=lambda dids: metadata)
    result = answer({"ID": "s:both", "client_ip_address": "1.2.3.4"}, ClientFacts(), None,
                    lambda: (resolver_, Settings()))
    assert [type(row).__name__ for row in result.rows] == [
        "ReplicaLink", "ReplicaLink", "AuxiliaryLink", "SodaLink"]
    # dlget still sends the client to the first replica
    assert redirect({"ID": "s:both", "client_ip_address": "1.2.3.4"}, ClientFacts(),
                    lambda: (resolver_, Settings())).location == "https://uk/both"


def test_an_obs_id_xml_cannot_carry_is_described_with_replacement_characters() -> None:
    odd = replace(link_set(), metadata=replace(ERIDANUS, obs_id="Eri\ufffedanus\uffff\x07"))
    assert replica_links(odd, None)[0].description.startswith("Eri\ufffddanus\ufffd\ufffd at ")
