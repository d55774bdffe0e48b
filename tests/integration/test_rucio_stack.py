"""Integration tests: a real Rucio server on local PostgreSQL, seeded through its REST API.

Needs ``.venv-rucio`` (see res/requirements-rucio.txt), PostgreSQL on 127.0.0.1:5432 with
rights to create databases, ``requests`` and ``psycopg2``.  The databases
``rucio_rd_test_rucio`` and ``rucio_rd_test_meta`` are dropped and recreated at the start.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rucio_rd.stack.rucio_server import RucioServer, fresh_test_server
from rucio_rd.stack.seed import DEMO_FILES, DEMO_RSES, RucioREST, all_files, seed

pytestmark = pytest.mark.integration

PORT = 18190
DB_NAME = "rucio_rd_test_rucio"
META_DB_NAME = "rucio_rd_test_meta"
DATALINK_BASE = "http://127.0.0.1:18080/rucio/rucio/dl/dlmeta"
SYNTHETIC = 300

WALLABY = DEMO_FILES[0]
WALLABY_SPSRC_PFN = (
    "https://spsrc14.iaa.csic.es:18027/disk/dev/deterministic/sp3531_soda/9b/98/"
    "2023-07-18-16-40-27_ASK-WALLABY_Eridanus_cutout-574594-imagecube-42178.fits")
META_KEYS = {"s_ra", "s_dec", "obs_id", "access_url", "access_format", "content_type",
             "content_length"}


@pytest.fixture(scope="module")
def rucio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RucioServer]:
    if not (RucioServer(workdir=Path(".")).python).exists():
        pytest.fail("no .venv-rucio: run bin/install")
    server = fresh_test_server(tmp_path_factory.mktemp("rucio"), port=PORT, db_name=DB_NAME,
                               meta_db_name=META_DB_NAME)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def first_seed(rucio_server: RucioServer) -> dict[str, int]:
    return seed(rucio_server.url, rucio_server.credentials(), DATALINK_BASE, SYNTHETIC)


@pytest.fixture(scope="module")
def api(rucio_server: RucioServer, first_seed: dict[str, int]) -> RucioREST:
    return RucioREST(rucio_server.url, rucio_server.credentials())


def _meta_rows(server: RucioServer) -> list[tuple[Any, ...]]:
    psycopg2 = pytest.importorskip("psycopg2")
    with psycopg2.connect(server.meta_dsn()) as conn, conn.cursor() as cur:
        cur.execute("SELECT vo, scope, name, data, xmin::text FROM dids ORDER BY id")
        rows = cur.fetchall()
    conn.close()
    return rows


def test_first_seed_creates_everything(first_seed: dict[str, int]) -> None:
    files = all_files(SYNTHETIC)
    assert first_seed == {
        "rses_created": 3, "protocols_added": 3, "attributes_set": 9, "scopes_created": 4,
        "replicas_registered": sum(len(f.rses) for f in files),
        "metadata_written": len(files), "files": len(files),
    }


def test_replica_pfn_is_computed_by_rucio(api: RucioREST) -> None:
    body = {"dids": [{"scope": WALLABY.scope, "name": WALLABY.name}], "schemes": ["https"],
            "sort": "random"}
    entries = api.json_stream("POST", "/replicas/list", json=body)
    assert len(entries) == 1
    assert WALLABY_SPSRC_PFN in entries[0]["pfns"]
    assert set(entries[0]["rses"]) == {rse.name for rse in DEMO_RSES}
    assert entries[0]["rses"]["SPSRC_STORAGE"] == [WALLABY_SPSRC_PFN]


@pytest.mark.parametrize("rse", DEMO_RSES, ids=lambda rse: rse.name)
def test_rse_attributes(api: RucioREST, rse: Any) -> None:
    payload = api.request("GET", f"/rses/{rse.name}/attr/").json()
    attrs: dict[str, Any] = {}
    for item in payload if isinstance(payload, list) else [payload]:
        attrs.update(item)
    # Rucio stores attribute values as strings.
    assert float(attrs["latitude"]) == pytest.approx(rse.latitude)
    assert float(attrs["longitude"]) == pytest.approx(rse.longitude)
    assert attrs["site"] == rse.site


def test_metadata_via_rest(api: RucioREST) -> None:
    path = f"/dids/{WALLABY.scope}/{WALLABY.name}/meta"
    meta = api.request("GET", path, params={"plugin": "POSTGRES_JSON"}).json()
    assert meta == WALLABY.metadata(DATALINK_BASE)
    assert meta["access_url"] == f"{DATALINK_BASE}?id={WALLABY.scope}:{WALLABY.name}"
    # DID-column metadata still comes from Rucio's own table.
    assert api.request("GET", path).json()["bytes"] == WALLABY.bytes


def test_metadata_rows_in_meta_database(rucio_server: RucioServer, api: RucioREST) -> None:
    rows = _meta_rows(rucio_server)
    assert len(rows) == len(DEMO_FILES) + SYNTHETIC
    for vo, _scope, _name, data, _xmin in rows:
        assert vo == "def"
        assert set(data) >= META_KEYS
        assert -90.0 <= data["s_dec"] <= 90.0 and 0.0 <= data["s_ra"] < 360.0
    by_did = {(scope, name): data for _vo, scope, name, data, _xmin in rows}
    assert by_did[("testing", "PTF10tce.fits")]["obs_id"] == "PTF10tce"


def test_seeding_twice_changes_nothing(rucio_server: RucioServer, api: RucioREST) -> None:
    before = _meta_rows(rucio_server)
    again = seed(rucio_server.url, rucio_server.credentials(), DATALINK_BASE, SYNTHETIC)
    assert {key: value for key, value in again.items() if key != "files"} == dict.fromkeys(
        ("rses_created", "protocols_added", "attributes_set", "scopes_created",
         "replicas_registered", "metadata_written"), 0)
    # Same xmin: not even rewritten with equal values, so incremental syncs see no change.
    assert _meta_rows(rucio_server) == before


def test_setup_is_idempotent_while_running(rucio_server: RucioServer) -> None:
    rucio_server.setup()
    rucio_server.start()  # already answering: returns at once
    assert rucio_server.is_running()


def test_stop_stops_the_server(rucio_server: RucioServer) -> None:
    # Last test of the module: the fixture's own stop() is then a no-op.
    assert rucio_server.is_running()
    rucio_server.stop()
    assert not rucio_server.is_running()
    assert not rucio_server.pid_path.exists()
