"""Integration tests of rucio_rd.rucio against a real Rucio 41 server.

The server runs on port 18192 with databases ``rucio_rd_client_rucio`` and
``rucio_rd_client_meta`` (dropped and recreated at the start), seeded with the demo
data lake and 20 synthetic files.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rucio_rd.model import Replica
from rucio_rd.rucio import RucioAuthError, RucioClient, RucioUnavailable
from rucio_rd.stack.rucio_server import RucioServer, fresh_test_server
from rucio_rd.stack.seed import DEMO_FILES, DEMO_RSES, seed, synthetic_files
from rucio_rd.tokens import UserpassTokens

pytestmark = pytest.mark.integration

PORT = 18192
DB_NAME = "rucio_rd_client_rucio"
META_DB_NAME = "rucio_rd_client_meta"
DATALINK_BASE = "http://127.0.0.1:18080/rucio/rucio/dl/dlmeta"
SYNTHETIC = 20

WALLABY = DEMO_FILES[0]
WALLABY_SPSRC_PFN = (
    "https://spsrc14.iaa.csic.es:18027/disk/dev/deterministic/sp3531_soda/9b/98/"
    "2023-07-18-16-40-27_ASK-WALLABY_Eridanus_cutout-574594-imagecube-42178.fits")


@pytest.fixture(scope="module")
def rucio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RucioServer]:
    if not RucioServer(workdir=Path(".")).python.exists():
        pytest.fail("no .venv-rucio: run bin/install")
    server = fresh_test_server(tmp_path_factory.mktemp("rucio-client"), port=PORT,
                               db_name=DB_NAME, meta_db_name=META_DB_NAME)
    try:
        seed(server.url, server.credentials(), DATALINK_BASE, synthetic=SYNTHETIC)
        yield server
    finally:
        server.stop()


def make_client(server: RucioServer, password: str | None = None,
                timeout: float = 5.0) -> RucioClient:
    creds = server.credentials()
    tokens = UserpassTokens(server.url, creds["account"], creds["username"],
                            password if password is not None else creds["password"],
                            timeout=timeout)
    return RucioClient(server.url, tokens, timeout=timeout)


@pytest.fixture(scope="module")
def rucio(rucio_server: RucioServer) -> RucioClient:
    return make_client(rucio_server)


def test_demo_files_in_one_call(rucio: RucioClient) -> None:
    listing = rucio.list_replicas([f.did for f in DEMO_FILES])
    assert set(listing.found) == {f.did for f in DEMO_FILES} and not listing.missing
    for demo in DEMO_FILES:
        found = listing.found[demo.did]
        assert found.bytes == demo.bytes
        assert {replica.rse for replica in found.replicas} == set(demo.rses)
        assert all(replica.pfn.startswith("https://") for replica in found.replicas)
    wallaby = listing.found[WALLABY.did].replicas
    assert Replica("SPSRC_STORAGE", WALLABY_SPSRC_PFN) in wallaby
    assert [replica.rse for replica in wallaby] == sorted(rse.name for rse in DEMO_RSES)


def test_schemes_filter_is_passed_to_rucio(rucio: RucioClient) -> None:
    listing = rucio.list_replicas([WALLABY.did], schemes=["https"])
    assert Replica("SPSRC_STORAGE", WALLABY_SPSRC_PFN) in listing.found[WALLABY.did].replicas
    # A known file without replicas in the asked schemes is found, with none.
    listing = rucio.list_replicas([WALLABY.did], schemes=["root"])
    assert listing.found[WALLABY.did].replicas == () and not listing.missing


def test_unknown_did_among_known_ones_is_missing(rucio: RucioClient) -> None:
    known = [f.did for f in DEMO_FILES]
    unknown = "testing:no-such-file.fits"
    listing = rucio.list_replicas([known[0], unknown, *known[1:]])
    assert listing.missing == {unknown}
    assert set(listing.found) == set(known)


def test_unknown_scope_is_missing(rucio: RucioClient) -> None:
    listing = rucio.list_replicas([WALLABY.did, "no_such_scope:x.fits"])
    assert listing.missing == {"no_such_scope:x.fits"}
    assert set(listing.found) == {WALLABY.did}


def test_dids_rucio_cannot_hold_do_not_spoil_the_others(rucio: RucioClient) -> None:
    # Sent to Rucio, each of these fails the whole call (500 DatabaseException or
    # 400 InvalidObject); the client answers them as missing.
    odd = ["testing:" + "n" * 251, "s" * 26 + ":x", "testing:---", "testing:a\x00b"]
    listing = rucio.list_replicas([WALLABY.did, *odd])
    assert listing.missing == set(odd)
    assert set(listing.found) == {WALLABY.did}


def test_synthetic_files_in_one_call(rucio: RucioClient) -> None:
    files = synthetic_files(SYNTHETIC)
    listing = rucio.list_replicas([f.did for f in files])
    assert len(listing.found) == SYNTHETIC
    for demo in files:
        assert {r.rse for r in listing.found[demo.did].replicas} == set(demo.rses)


def test_rse_attributes_give_latitude_strings(rucio: RucioClient) -> None:
    for rse in DEMO_RSES:
        attributes = rucio.rse_attributes(rse.name)
        assert isinstance(attributes["latitude"], str)
        assert float(attributes["latitude"]) == pytest.approx(rse.latitude)
        assert float(attributes["longitude"]) == pytest.approx(rse.longitude)
        assert attributes["site"] == rse.site


def test_list_rses_and_ping(rucio: RucioClient) -> None:
    assert set(rucio.list_rses()) == {rse.name for rse in DEMO_RSES}
    assert rucio.ping()["version"].startswith("41.")


def test_forgotten_token_is_renewed(rucio_server: RucioServer) -> None:
    client = make_client(rucio_server)
    client.list_replicas([WALLABY.did])
    # A token Rucio does not know (as after a server's token table was cleared).
    client.tokens._cached.value = "root-unknown-token"  # type: ignore[attr-defined]
    assert WALLABY.did in client.list_replicas([WALLABY.did]).found


def test_wrong_password_is_an_auth_error(rucio_server: RucioServer,
                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    password = "wrong-password-0123456789"
    client = make_client(rucio_server, password=password)
    with pytest.raises(RucioAuthError) as info:
        client.list_replicas([WALLABY.did])
    assert "CannotAuthenticate" in str(info.value) and "401" in str(info.value)
    assert password not in str(info.value) and password not in caplog.text
    assert rucio_server.credentials()["password"] not in caplog.text


def test_timings(rucio: RucioClient, record_property: pytest.RecordProperty) -> None:
    """Not a benchmark: prints the round trip of one call for 1 and 10 DIDs."""
    dids = [f.did for f in synthetic_files(SYNTHETIC)][:10]
    rucio.list_replicas(dids[:1])  # warm the token and the connection
    for count in (1, 10):
        samples = []
        for _ in range(10):
            started = time.perf_counter()
            rucio.list_replicas(dids[:count])
            samples.append(time.perf_counter() - started)
        median = sorted(samples)[len(samples) // 2]
        record_property(f"list_replicas_{count}_dids_median_ms", round(median * 1000, 1))
        print(f"list_replicas of {count} DID(s): median {median * 1000:.1f} ms")
        assert median < 2.0


def test_stopped_server_is_unavailable_quickly(rucio_server: RucioServer) -> None:
    # Last test of the module: the fixture's own stop() is then a no-op.
    client = make_client(rucio_server, timeout=2.0)
    client.list_replicas([WALLABY.did])
    rucio_server.stop()
    started = time.monotonic()
    with pytest.raises(RucioUnavailable):
        client.list_replicas([WALLABY.did])
    assert time.monotonic() - started < 2.0
