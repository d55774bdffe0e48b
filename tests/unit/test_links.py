"""Unit tests for rucio_rd.links: parameters, DIDs, the client's address, and resolution."""

from __future__ import annotations

import pytest
from fakes import CATALOGUE, ES, FILES, UK, FakeRucio, FakeSites, located, resolver  # noqa: F401

from rucio_rd.links import (
    ClientLocation,
    DatalinkRequest,
    FileMetadata,
    LinkFault,
    LinkSet,
    UsageError,
    all_values,
    client_address,
    crop_groups,
    parse_did,
    parse_request,
    printable,
)
from rucio_rd.ranking import SORTS
from rucio_rd.rucio import RucioError, RucioUnavailable

# --- parse_request -------------------------------------------------------------------


def test_defaults_when_nothing_is_given() -> None:
    assert parse_request({}) == DatalinkRequest("nearest_by_client", 0, None, False)


def test_all_parameters_parsed() -> None:
    request = parse_request({
        "SORT": ["random"], "RANKING": ["2"], "CLIENT_IP_ADDRESS": ["1.2.3.4"],
        "MUST_INCLUDE_SODA": ["True"],
    })
    assert request == DatalinkRequest("random", 2, "1.2.3.4", True)


@pytest.mark.parametrize("value", ["True", "true", "TRUE", "1", "yes"])
def test_must_include_soda_true_spellings(value: str) -> None:
    assert parse_request({"must_include_soda": [value]}).must_include_soda


@pytest.mark.parametrize("value", ["False", "false", "0", "no", ""])
def test_must_include_soda_false_spellings(value: str) -> None:
    assert not parse_request({"must_include_soda": [value]}).must_include_soda


@pytest.mark.parametrize(("args", "message"), [
    ({"sort": ["nearest"]}, f"sort='nearest' is not one of {', '.join(SORTS)}"),
    ({"ranking": ["-1"]}, "ranking='-1' is not a whole number >= 0"),
    ({"ranking": ["1.5"]}, "ranking='1.5' is not a whole number"),
    ({"ranking": ["9999999"]}, "is far more than any file's replicas"),
    ({"must_include_soda": ["maybe"]}, "must_include_soda='maybe' is not True or False"),
    ({"sort": ["random", "nearest_by_client"]}, "sort was given 2 times"),
    ({"sort": ["random"], "SORT": ["nearest_by_client"]}, "sort was given 2 times"),
])
def test_bad_parameters_raise_usage_errors_naming_the_value(args: dict, message: str) -> None:
    with pytest.raises(UsageError, match=None) as caught:
        parse_request(args)
    assert message in str(caught.value)


def test_overlong_values_are_cut_in_messages() -> None:
    with pytest.raises(UsageError) as caught:
        parse_request({"sort": ["x" * 10_000]})
    assert len(str(caught.value)) < 200


def test_repeated_identical_value_is_accepted() -> None:
    assert parse_request({"sort": ["random", "random"]}).sort == "random"


def test_all_values_merges_the_spellings_of_a_name() -> None:
    assert sorted(all_values({"ID": ["a"], "id": ["b"], "Id": "c", "other": ["x"]}, "ID")) == [
        "a", "b", "c"]


def test_crop_groups_keeps_each_ids_rows_together() -> None:
    groups = [["a1", "a2"], ["b1"], ["c1", "c2"]]
    assert crop_groups(groups, None) == (["a1", "a2", "b1", "c1", "c2"], False)
    assert crop_groups(groups, 5) == (["a1", "a2", "b1", "c1", "c2"], False)
    assert crop_groups(groups, 4) == (["a1", "a2", "b1"], True)
    assert crop_groups(groups, 1) == (["a1"], True)
    assert crop_groups(groups, 0) == ([], True)


def test_printable_replaces_control_characters() -> None:
    assert printable("a\x00b\x01c\nd") == "a\ufffdb\ufffdc\ufffdd"
    assert printable("scope:n\u00e4me") == "scope:n\u00e4me"


# --- parse_did -----------------------------------------------------------------------


def test_did_splits_at_the_first_colon() -> None:
    assert parse_did("testing:PTF10tce.fits") == ("testing", "PTF10tce.fits")
    assert parse_did("user.jdoe:a/b/c.fits") == ("user.jdoe", "a/b/c.fits")


@pytest.mark.parametrize(("text", "reason"), [
    ("no-colon", "expected scope:name"),
    (":name", "is not a Rucio scope"),
    ("scope:", "is not a Rucio file name"),
    ("a" * 26 + ":x", "is not a Rucio scope"),
    ("sc ope:x", "is not a Rucio scope"),
    ("scope:<b>", "is not a Rucio file name"),
    ("scope:x'; DROP TABLE y; --", "is not a Rucio file name"),
    ("scope:/abs", "is not a Rucio file name"),
    ("scope:" + "n" * 251, "is not a Rucio file name"),
])
def test_malformed_dids_are_usage_errors(text: str, reason: str) -> None:
    with pytest.raises(UsageError, match=reason):
        parse_did(text)


# --- client_address ------------------------------------------------------------------


def test_explicit_address_wins() -> None:
    assert client_address("1.2.3.4", "5.6.7.8", {"x-real-ip": "9.9.9.9"}, ["5.6.7.8"]) == (
        "1.2.3.4", "client_ip_address parameter")


def test_forwarding_headers_are_ignored_from_an_untrusted_peer() -> None:
    address, source = client_address(None, "5.6.7.8", {"x-forwarded-for": "1.1.1.1"}, [])
    assert (address, source) == ("5.6.7.8", "the connection's peer address")


def test_forwarded_for_from_a_trusted_proxy_takes_the_rightmost_untrusted_hop() -> None:
    headers = {"x-forwarded-for": "6.6.6.6, 1.2.3.4, 10.0.0.2"}
    address, source = client_address(None, "10.0.0.1", headers, ["10.0.0.0/8"])
    assert address == "1.2.3.4"
    assert "trusted proxy" in source


def test_real_ip_from_a_trusted_proxy() -> None:
    address, _ = client_address(None, "127.0.0.1", {"x-real-ip": "1.2.3.4"}, ["127.0.0.1"])
    assert address == "1.2.3.4"


def test_bad_trusted_proxy_entries_are_ignored() -> None:
    address, _ = client_address(None, "127.0.0.1", {"x-real-ip": "1.2.3.4"}, ["garbage"])
    assert address == "127.0.0.1"


# --- ReplicaResolver -----------------------------------------------------------------


def test_one_rucio_call_for_all_ids() -> None:
    rucio = FakeRucio(FILES)
    resolver(rucio).resolve(["s:both", "s:uk", "s:both", "bad"], DatalinkRequest(), located())
    assert rucio.calls == [["s:both", "s:uk"]]


def test_nearest_first_then_fallbacks_with_metadata() -> None:
    [result] = resolver().resolve(["s:both"], DatalinkRequest(), located())
    assert isinstance(result, LinkSet)
    assert [r.replica.rse for r in result.replicas] == ["UK_RSE", "ES_RSE"]
    assert result.metadata == FileMetadata("obs", "application/fits", 7)
    assert result.chosen_site == UK


def test_results_keep_the_order_of_the_ids_and_faults_stay_per_id() -> None:
    results = resolver().resolve(["s:unknown", "bad did", "s:uk", "s:none"],
                                 DatalinkRequest(), located())
    assert [type(r).__name__ for r in results] == ["LinkFault", "LinkFault", "LinkSet",
                                                   "LinkFault"]
    assert results[0].fault == "NotFoundFault" and "s:unknown" in results[0].message
    assert results[1].fault == "UsageFault"
    assert results[3].fault == "NotFoundFault" and "no available replica" in results[3].message


def test_ranking_out_of_range_is_a_usage_fault() -> None:
    [result] = resolver().resolve(["s:uk"], DatalinkRequest(ranking=1), located())
    assert result == LinkFault("s:uk", "UsageFault", "ranking=1 but only 1 replicas; use 0..0")


def test_must_include_soda_keeps_soda_sites_or_says_not_found() -> None:
    request = DatalinkRequest(must_include_soda=True)
    both, uk = resolver().resolve(["s:both", "s:uk"], request, located())
    assert [r.replica.rse for r in both.replicas] == ["ES_RSE"]
    assert uk.fault == "NotFoundFault" and "SODA" in uk.message


def test_an_explicit_address_that_cannot_be_located_is_a_usage_fault() -> None:
    client = located("10.0.0.1")
    assert client.position is None and "private" in client.problem
    [result] = resolver().resolve(["s:both"], DatalinkRequest(), client)
    assert result.fault == "UsageFault" and "private" in result.message


def test_an_unlocatable_peer_still_gets_links() -> None:
    client = located("127.0.0.1", "the connection's peer address")
    [result] = resolver().resolve(["s:both"], DatalinkRequest(), client)
    assert isinstance(result, LinkSet)
    assert {r.replica.rse for r in result.replicas} == {"UK_RSE", "ES_RSE"}


def test_no_address_at_all() -> None:
    client = resolver().locate(DatalinkRequest(), None, "the connection's peer address")
    assert client == ClientLocation(None, "the connection's peer address",
                                    problem="no client address is known")


def test_rucio_unavailable_is_a_transient_fault_for_every_id() -> None:
    rucio = FakeRucio(FILES, error=RucioUnavailable("connection refused"))
    results = resolver(rucio).resolve(["s:both", "s:uk"], DatalinkRequest(), located())
    assert {r.fault for r in results} == {"TransientFault"}
    assert all(r.message == "Rucio is unavailable; try again later" for r in results)


def test_rucio_error_is_a_default_fault() -> None:
    rucio = FakeRucio(FILES, error=RucioError("500 boom"))
    [result] = resolver(rucio).resolve(["s:both"], DatalinkRequest(), located())
    assert result.fault == "DefaultFault"


def test_site_source_failure_still_links_without_positions() -> None:
    [result] = resolver(sites=FakeSites(error=True)).resolve(
        ["s:both"], DatalinkRequest(), located())
    assert isinstance(result, LinkSet)
    assert all(r.distance_km is None for r in result.replicas)


def test_broken_metadata_lookup_does_not_cost_the_links() -> None:
    broken = resolver()

    def lookup(dids):
        raise RuntimeError("table gone")

    broken.metadata_lookup = lookup
    [result] = broken.resolve(["s:both"], DatalinkRequest(), located())
    assert result.metadata == FileMetadata(unavailable=True)
    assert [r.replica.rse for r in result.replicas] == ["UK_RSE", "ES_RSE"]


def test_a_row_says_when_the_published_metadata_could_not_be_read() -> None:
    from rucio_rd.datalink import replica_links

    broken = resolver()
    broken.metadata_lookup = lambda dids: (_ for _ in ()).throw(RuntimeError("db restarted"))
    [result] = broken.resolve(["s:both"], DatalinkRequest(), located())
    first = replica_links(result, "nearest replica")[0]
    assert first.content_type is None
    assert "(the published metadata could not be read: no content type)" in first.description


def test_must_include_soda_without_site_information_is_transient_not_not_found() -> None:
    [result] = resolver(sites=FakeSites(error=True)).resolve(
        ["s:both"], DatalinkRequest(must_include_soda=True), located())
    assert result.fault == "TransientFault"
    assert "site information is unavailable" in result.message


def test_refused_service_credentials_are_a_fatal_fault_for_the_operator() -> None:
    from rucio_rd.rucio import RucioAuthError

    rucio = FakeRucio(FILES, error=RucioAuthError("userpass refused: 401"))
    [result] = resolver(rucio).resolve(["s:both"], DatalinkRequest(), located())
    assert result.fault == "FatalFault" and "credentials" in result.message
    assert "401" not in result.message
