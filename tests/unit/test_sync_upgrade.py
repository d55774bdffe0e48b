"""A sync into a published table made by an older rucio_rd is refused with advice,
before it writes anything (a real PostgreSQL at 127.0.0.1:5432, database ``test``;
skipped without one)."""

from __future__ import annotations

import psycopg2
import pytest
from fakes import PG

from rucio_rd.sync import SYNC_COLUMNS, SyncRefused, sync


@pytest.fixture
def connections():
    try:
        meta, dachs = psycopg2.connect(**PG), psycopg2.connect(**PG)
    except psycopg2.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {PG}: {exc}")
    meta.autocommit = True
    yield meta, dachs
    dachs.rollback()  # nothing of the test stays
    meta.close()
    dachs.close()


def test_a_table_without_the_new_column_is_refused_with_advice(connections) -> None:
    meta, dachs = connections
    with dachs.cursor() as cursor:
        cursor.execute("CREATE SCHEMA IF NOT EXISTS rucio")
        old_columns = [name for name in SYNC_COLUMNS if name != "datalinks"]
        cursor.execute("CREATE TABLE rucio.main_before_upgrade ("
                       + ", ".join(f"{name} text" for name in old_columns) + ")")
    with pytest.raises(SyncRefused) as refused:
        sync(meta, dachs, table="no_such_metadata_table",
             published="rucio.main_before_upgrade", commit=False)
    assert str(refused.value) == (
        "the published table rucio.main_before_upgrade has no column datalinks: it was"
        " imported by an older rucio_rd; run rucio-rd deploy (it imports the table anew),"
        " then sync")
