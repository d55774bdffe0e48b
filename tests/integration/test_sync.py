"""``rucio-rd sync`` against the real stack: records written into Rucio's metadata
table (straight, as Rucio's POSTGRES_JSON plugin writes them, and through Rucio's
REST API) appear, change, move and disappear in the published table after a
sync; bad records are counted; a sync killed mid-way or without its metadata
database leaves the published table as it was.
"""

from __future__ import annotations

import csv
import datetime
import io
import os
import re
import signal
import subprocess
import time

import psycopg2
import pytest
import requests
from psycopg2.extras import Json

from rucio_rd import checks
from rucio_rd.stack.demo import Stack

GOOD = {"s_ra": 10.5, "s_dec": -20.25, "access_url": "https://example.org/x.fits",
        "obs_id": "sync-test", "content_type": "application/fits"}


def run_sync(stack: Stack, *args: str, env: dict | None = None
             ) -> subprocess.CompletedProcess:
    return subprocess.run(["/usr/bin/rucio-rd", "sync", *args],
                          env={**stack.dachs.env(), **(env or {})}, cwd="/",
                          capture_output=True, encoding="utf-8", timeout=300)


def synced(stack: Stack, *args: str) -> str:
    result = run_sync(stack, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def meta(stack: Stack):
    connection = psycopg2.connect(stack.rucio.meta_dsn())
    connection.autocommit = True
    return connection


def published(stack: Stack, did: str) -> tuple | None:
    with psycopg2.connect(dbname=stack.layout.dachs_db, host="127.0.0.1",
                          user="postgres") as connection, connection.cursor() as cursor:
        cursor.execute("SELECT s_ra, s_dec, access_url, obs_id FROM rucio.main WHERE did = %s",
                       (did,))
        return cursor.fetchone()


def published_count(stack: Stack) -> int:
    with psycopg2.connect(dbname=stack.layout.dachs_db, host="127.0.0.1",
                          user="postgres") as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM rucio.main")
        return cursor.fetchone()[0]


def cone_dids(stack: Stack, ra: float, dec: float) -> set[str]:
    resp = requests.get(stack.cone_url, params={"RA": ra, "DEC": dec, "SR": 0.01,
                                                "RESPONSEFORMAT": "csv"}, timeout=60)
    assert resp.status_code == 200
    return {row["did"] for row in csv.DictReader(io.StringIO(resp.text))}


def write(stack: Stack, scope: str, name: str, data) -> None:
    with meta(stack) as connection, connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO dids (vo, scope, name, data) VALUES ('def', %s, %s, %s)"
            " ON CONFLICT (scope, name) DO UPDATE SET data = EXCLUDED.data",
            (scope, name, None if data is None else Json(data)))


def write_text(stack: Stack, scope: str, name: str, text: str) -> None:
    """A record whose JSON is given as text (numbers Python's json would round)."""
    with meta(stack) as connection, connection.cursor() as cursor:
        cursor.execute("INSERT INTO dids (vo, scope, name, data)"
                       " VALUES ('def', %s, %s, %s::jsonb)", (scope, name, text))


def delete(stack: Stack, scope: str, name: str) -> None:
    with meta(stack) as connection, connection.cursor() as cursor:
        cursor.execute("DELETE FROM dids WHERE scope = %s AND name = %s", (scope, name))


@pytest.fixture
def clean(stack: Stack):
    """Records of these tests are removed again, and the table synced back."""
    yield
    with meta(stack) as connection, connection.cursor() as cursor:
        cursor.execute("DELETE FROM dids WHERE scope = 'synctest'")
    synced(stack)


def test_a_first_sync_after_the_import_changes_nothing_published(stack: Stack, clean) -> None:
    before = published_count(stack)
    out = synced(stack)
    assert "0 added, 0 changed, 0 deleted" in out, out
    assert published_count(stack) == before
    again = synced(stack)
    assert ", 0 fetched;" in again, again  # rejected records are not fetched again


def test_adds_changes_moves_and_deletes_appear_after_a_sync(stack: Stack, clean) -> None:
    write(stack, "synctest", "moved.fits", GOOD)
    write(stack, "synctest", "gone.fits", GOOD | {"s_ra": 11.5})
    write(stack, "synctest", "loses-url.fits", GOOD | {"s_ra": 12.5})
    synced(stack)
    assert cone_dids(stack, 10.5, -20.25) >= {"synctest:moved.fits"}
    write(stack, "synctest", "new.fits", GOOD | {"s_ra": 13.5, "obs_id": "new"})
    write(stack, "synctest", "moved.fits", GOOD | {"s_ra": 200.0, "s_dec": 45.0,
                                                   "access_url": "https://example.org/y"})
    delete(stack, "synctest", "gone.fits")
    write(stack, "synctest", "loses-url.fits", {"s_ra": 12.5, "s_dec": -20.25})
    out = synced(stack)
    assert "1 added, 1 changed, 2 deleted" in out, out
    assert published(stack, "synctest:new.fits")[3] == "new"
    assert "synctest:moved.fits" in cone_dids(stack, 200.0, 45.0)
    assert "synctest:moved.fits" not in cone_dids(stack, 10.5, -20.25)
    assert published(stack, "synctest:gone.fits") is None
    assert published(stack, "synctest:loses-url.fits") is None
    # The published access_url is this server's DataLink URL, percent-encoded.
    assert published(stack, "synctest:new.fits")[2] == (
        stack.dachs.server_url + "/rucio/rucio/dl/dlmeta?id=synctest:new.fits")


def test_bad_records_are_skipped_counted_and_listed(stack: Stack, clean) -> None:
    write(stack, "synctest", "good.fits", GOOD)
    write(stack, "synctest", "text-ra.fits", GOOD | {"s_ra": "abc"})
    write(stack, "synctest", "string-ra.fits", GOOD | {"s_ra": " 10.5 "})  # a number
    write(stack, "synctest", "far.fits", GOOD | {"s_dec": 91})
    write(stack, "synctest", "null-dec.fits", GOOD | {"s_dec": None})
    write(stack, "synctest", "no-url.fits", {"s_ra": 1, "s_dec": 1})
    write(stack, "synctest", "huge.fits", GOOD | {"s_ra": 1e200})
    write(stack, "synctest", "damaged\nname.fits", GOOD)  # the notebook's second row
    write(stack, "synctest", "array.fits", [1, 2])
    write(stack, "synctest", "no-data.fits", None)  # SQL NULL: the column allows it
    # A level as Python's float() reads it: 2.0000000000000001 is 2.
    write(stack, "synctest", "level.fits", GOOD | {"calib_level": "2.0000000000000001"})
    # Numbers a double cannot hold: too small is 0 (as Python has it), too large unusable;
    # neither may stop the sync of the others.
    write_text(stack, "synctest", "tiny.fits", '{"s_ra": 10.5, "s_dec": 1e-330,'
               ' "s_fov": "1e-330", "access_url": "https://example.org/t"}')
    write_text(stack, "synctest", "vast.fits", '{"s_ra": 10.5, "s_dec": 1e400,'
               ' "access_url": "https://example.org/v"}')
    out = synced(stack)
    assert published(stack, "synctest:tiny.fits")[:2] == (10.5, 0.0)
    assert published(stack, "synctest:vast.fits") is None
    assert published(stack, "synctest:good.fits") is not None
    assert published(stack, "synctest:string-ra.fits")[0] == 10.5
    with psycopg2.connect(dbname=stack.layout.dachs_db, host="127.0.0.1",
                          user="postgres") as connection, connection.cursor() as cursor:
        cursor.execute("SELECT calib_level FROM rucio.main WHERE did = 'synctest:level.fits'")
        assert cursor.fetchone() == (2,)
    connection.close()
    for reason, did in [("s_ra is not a number", "synctest:text-ra.fits"),
                        ("s_dec is outside [-90, 90]", "synctest:far.fits"),
                        ("s_dec is not a number", "synctest:null-dec.fits"),
                        ("no access_url", "synctest:no-url.fits"),
                        ("s_ra is outside [0, 360)", "synctest:huge.fits"),
                        ("damaged DID (not a Rucio scope:name)", "synctest:damaged\nname.fits"),
                        ("metadata is not a JSON object", "synctest:array.fits"),
                        ("metadata is not a JSON object", "synctest:no-data.fits")]:
        assert published(stack, did) is None
        line = next((line for line in out.splitlines() if reason in line), "")
        assert repr(did) in line, (reason, out)


def test_a_metadata_write_through_rucios_rest_api_appears_after_a_sync(stack: Stack) -> None:
    from rucio_rd.stack.seed import RucioREST, all_files

    target = all_files(300)[-1]
    api = RucioREST(stack.rucio.url, stack.rucio.credentials())
    api.request("POST", "/dids/bulkdidsmeta", json={"dids": [
        {"scope": target.scope, "name": target.name,
         "meta": {"s_ra": 300.125, "s_dec": 60.5}}]})
    try:
        synced(stack)
        assert target.did in cone_dids(stack, 300.125, 60.5)
    finally:
        original = target.metadata(stack.datalink_url)
        api.request("POST", "/dids/bulkdidsmeta", json={"dids": [
            {"scope": target.scope, "name": target.name, "meta": original}]})
        synced(stack)
    assert target.did not in cone_dids(stack, 300.125, 60.5)


def test_a_sync_killed_mid_way_loses_nothing_and_the_next_completes(stack: Stack,
                                                                   clean) -> None:
    write(stack, "synctest", "before.fits", GOOD)
    synced(stack)
    before = published_count(stack)
    write(stack, "synctest", "after.fits", GOOD | {"s_ra": 14.5})
    delete(stack, "synctest", "before.fits")
    blocker = psycopg2.connect(dbname=stack.layout.dachs_db, host="127.0.0.1",
                               user="postgres")
    try:
        with blocker.cursor() as cursor:  # readers go on; the sync's writes wait
            cursor.execute("LOCK TABLE rucio.main IN SHARE MODE")
        proc = subprocess.Popen(["/usr/bin/rucio-rd", "sync"], env=stack.dachs.env(),
                                cwd="/", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if not wait_for_lock_waiter(stack):
            proc.kill()
            out, err = proc.communicate(timeout=30)
            with psycopg2.connect(dbname="postgres", host="127.0.0.1", user="postgres") as c, \
                    c.cursor() as cur:
                cur.execute("SELECT datname, state, wait_event_type, wait_event, left(query, 80)"
                            " FROM pg_stat_activity WHERE state <> 'idle'")
                activity = cur.fetchall()
            pytest.fail(f"the sync never reached its writes: {out!r} {err!r} {activity}")
        assert cone_dids(stack, 10.5, -20.25)  # cone search answers meanwhile
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        blocker.rollback()
        blocker.close()
    assert published_count(stack) == before
    assert published(stack, "synctest:before.fits") is not None
    assert published(stack, "synctest:after.fits") is None
    out = synced(stack)
    assert "1 added" in out and "1 deleted" in out, out
    assert published(stack, "synctest:after.fits") is not None


def wait_for_lock_waiter(stack: Stack, timeout: float = 60) -> bool:
    """Whether a session of DaCHS's database comes to wait on a lock within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        connection = psycopg2.connect(dbname="postgres", host="127.0.0.1", user="postgres")
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
                               " AND wait_event_type = 'Lock'", (stack.layout.dachs_db,))
                if cursor.fetchone()[0]:
                    return True
        finally:
            connection.close()
        time.sleep(0.1)
    return False


def test_a_sync_without_its_metadata_database_says_so_and_changes_nothing(
        stack: Stack) -> None:
    before = published_count(stack)
    result = run_sync(stack, env={"RUCIO_RD_METADATA_DSN":
                                  "host=127.0.0.1 port=1 dbname=gone password=s3cret"})
    assert result.returncode == 1
    assert "cannot reach Rucio's metadata database" in result.stderr
    assert "unchanged" in result.stderr and "s3cret" not in result.stderr
    assert published_count(stack) == before


def test_the_last_sync_is_recorded(stack: Stack) -> None:
    synced(stack)
    with psycopg2.connect(dbname=stack.layout.dachs_db, host="127.0.0.1",
                          user="postgres") as connection, connection.cursor() as cursor:
        cursor.execute("SELECT mode, records, now() - finished < interval '1 minute'"
                       " FROM rucio.sync_runs ORDER BY finished DESC LIMIT 1")
        mode, records, recent = cursor.fetchone()
    assert mode == "incremental" and records >= 300 and recent
    check = subprocess.run(["/usr/bin/rucio-rd", "check"], env=stack.dachs.env(), cwd="/",
                           capture_output=True, encoding="utf-8", timeout=300)
    assert re.search(r"^ok\s+last sync: \d{4}-\d\d-\d\d [\d:]+ UTC \(incremental\): \d+"
                     r" metadata records", check.stdout, re.MULTILINE), check.stdout


def test_check_lists_the_unusable_records(stack: Stack, clean) -> None:
    write(stack, "synctest", "no-url.fits", {"s_ra": 1, "s_dec": 1})
    synced(stack)
    check = subprocess.run(["/usr/bin/rucio-rd", "check"], env=stack.dachs.env(), cwd="/",
                           capture_output=True, encoding="utf-8", timeout=300)
    assert re.search(r"^warn\s+unusable records: \d+ x no access_url \(e\.g\. '",
                     check.stdout, re.MULTILINE), check.stdout


def dachs_query(stack: Stack, statement: str) -> list[tuple]:
    with psycopg2.connect(dbname=stack.layout.dachs_db, host="127.0.0.1",
                          user="postgres") as connection, connection.cursor() as cursor:
        cursor.execute(statement)
        return cursor.fetchall() if cursor.description else []


def test_a_full_sync_refills_an_emptied_table_with_its_indexes(stack: Stack) -> None:
    before = published_count(stack)
    indexes = dachs_query(stack, "SELECT indexname FROM pg_indexes WHERE schemaname = 'rucio'"
                                 " AND tablename = 'main' ORDER BY 1")
    dachs_query(stack, "DELETE FROM rucio.main")
    # The metadata database cancels the bulk load's reads part-way: the sync says
    # so (the source's error, not a broken pipe) and the table is as it was.
    with meta(stack) as connection, connection.cursor() as cursor:
        cursor.execute(f"ALTER DATABASE {stack.layout.meta_db} SET statement_timeout = 1")
    try:
        failed = run_sync(stack, "--full")
    finally:
        with meta(stack) as connection, connection.cursor() as cursor:
            cursor.execute(f"ALTER DATABASE {stack.layout.meta_db} RESET statement_timeout")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "statement timeout" in failed.stderr and "Traceback" not in failed.stderr, \
        failed.stderr
    assert "the published table is unchanged" in failed.stderr
    assert published_count(stack) == 0
    assert dachs_query(stack, "SELECT indexname FROM pg_indexes WHERE schemaname = 'rucio'"
                              " AND tablename = 'main' ORDER BY 1") == indexes
    out = synced(stack, "--full")
    assert f"{before} added" in out, out
    assert published_count(stack) == before
    assert dachs_query(stack, "SELECT indexname FROM pg_indexes WHERE schemaname = 'rucio'"
                              " AND tablename = 'main' ORDER BY 1") == indexes
    assert dachs_query(stack, "SELECT count(*) FROM pg_index WHERE indisclustered"
                              " AND indrelid = 'rucio.main'::regclass") == [(1,)]
    assert "sp3531_soda:" + "2023-07-18-16-40-27_ASK-WALLABY_Eridanus_cutout-574594-imagecube" \
        "-42178.fits" in cone_dids(stack, 53.75308, -24.93365)
    again = synced(stack, "--full")  # nothing differs: nothing rewritten
    assert "0 added, 0 changed, 0 deleted" in again, again


def test_a_sync_that_would_empty_the_table_refuses(stack: Stack) -> None:
    before = published_count(stack)
    result = run_sync(stack, env={"RUCIO_RD_METADATA_VO": "no-such-vo"})
    assert result.returncode == 1
    assert "would delete more than half" in result.stderr and "--full" in result.stderr
    assert published_count(stack) == before


def trigger_count(stack: Stack) -> int:
    with meta(stack) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'rucio_rd_capture%%'")
        return cursor.fetchone()[0]


def visible_within(stack: Stack, predicate, timeout: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.05)
    return None


def test_with_change_capture_a_write_is_searchable_within_seconds(stack: Stack, clean) -> None:
    assert trigger_count(stack) == 0  # nothing of ours in Rucio's database by default
    synced(stack, "--install-capture")
    follower = subprocess.Popen(["/usr/bin/rucio-rd", "sync", "--follow"],
                                env=stack.dachs.env(), cwd="/", stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, encoding="utf-8")
    try:
        assert trigger_count(stack) == 1
        time.sleep(2)  # its first incremental sync
        write(stack, "synctest", "live.fits", GOOD | {"s_ra": 33.25, "s_dec": 12.5})
        seen = visible_within(stack, lambda: "synctest:live.fits" in cone_dids(stack, 33.25,
                                                                                   12.5), 10)
        assert seen is not None and seen < 2.0, seen
        write(stack, "synctest", "live.fits", GOOD | {"s_ra": 34.25, "s_dec": 12.5})
        assert visible_within(stack, lambda: "synctest:live.fits" in cone_dids(
            stack, 34.25, 12.5), 10) is not None
        delete(stack, "synctest", "live.fits")
        assert visible_within(stack, lambda: published(stack, "synctest:live.fits") is None,
                              10) is not None
    finally:
        follower.send_signal(signal.SIGTERM)
        out, err = follower.communicate(timeout=30)
        synced(stack, "--remove-capture")
    assert follower.returncode == 0, err
    assert "captured sync" in out
    assert trigger_count(stack) == 0


def logged_writes(stack: Stack) -> int:
    with meta(stack) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM rucio_rd_changes")
        return cursor.fetchone()[0]


def test_without_a_follower_the_scheduled_sync_applies_and_removes_the_logged_writes(
        stack: Stack, clean, monkeypatch) -> None:
    synced(stack, "--install-capture")
    reader = "rucio_rd_it_reader"
    try:
        write(stack, "synctest", "logged.fits", GOOD | {"s_ra": 35.25, "s_dec": 12.5})
        write(stack, "synctest", "logged.fits", GOOD | {"s_ra": 36.25, "s_dec": 12.5})
        write(stack, "synctest", "gone.fits", GOOD)
        delete(stack, "synctest", "gone.fits")
        assert logged_writes(stack) == 4
        check = subprocess.run(["/usr/bin/rucio-rd", "check"], env=stack.dachs.env(),
                               cwd="/", capture_output=True, encoding="utf-8", timeout=300)
        assert re.search(r"^ok\s+metadata table: dids: \d+ records .*; change capture"
                         r" installed, 4 logged writes waiting$", check.stdout,
                         re.MULTILINE), check.stdout
        monkeypatch.setattr(checks, "CAPTURE_BACKLOG_WARN", 3)  # a backlog: a warning
        with meta(stack) as connection:
            status, said = checks._capture_backlog(connection, "dids")
        assert status == checks.WARN and "4 logged writes waiting: is rucio-rd sync --follow" \
            " running?" in said, said
        # A write still open while the sync reads is not the sync's: its entry stays.
        pending = psycopg2.connect(stack.rucio.meta_dsn())
        try:
            with pending.cursor() as cursor:
                cursor.execute("UPDATE dids SET data = data || '{\"obs_id\": \"late\"}'"
                               " WHERE scope = 'synctest' AND name = 'logged.fits'")
            out = synced(stack)
            pending.commit()
        finally:
            pending.close()
        assert "change log: 4 applied entries removed" in out, out
        assert logged_writes(stack) == 1  # the late write
        assert "synctest:logged.fits" in cone_dids(stack, 36.25, 12.5)
        assert published(stack, "synctest:gone.fits") is None
        assert published(stack, "synctest:logged.fits")[3] == "sync-test"
        # --full and the bulk load into an emptied table trim the log as well.
        out = synced(stack, "--full")
        assert "change log: 1 applied entries removed" in out, out
        assert published(stack, "synctest:logged.fits")[3] == "late"
        write(stack, "synctest", "logged.fits", GOOD | {"s_ra": 37.25, "s_dec": 12.5})
        dachs_query(stack, "DELETE FROM rucio.main")
        out = synced(stack)
        assert "bulk sync" in out and "change log: 1 applied entries removed" in out, out
        assert "synctest:logged.fits" in cone_dids(stack, 37.25, 12.5)
        # A metadata role that may only read the records: the sync applies the write and
        # says that the log keeps its entry.
        with meta(stack) as connection, connection.cursor() as cursor:
            cursor.execute(f"DROP ROLE IF EXISTS {reader}")
            cursor.execute(f"CREATE ROLE {reader} LOGIN")
            cursor.execute(f"GRANT SELECT ON dids TO {reader}")
        write(stack, "synctest", "logged.fits", GOOD | {"s_ra": 38.25, "s_dec": 12.5})
        result = run_sync(stack, env={"RUCIO_RD_METADATA_DSN":
                                      f"{stack.rucio.meta_dsn()} user={reader}"})
        assert result.returncode == 0, result.stdout + result.stderr
        assert re.search(r"warning: the change log \S+ keeps the entries this sync applied:"
                         r" this metadata role may not read and delete them", result.stdout), \
            result.stdout
        assert "synctest:logged.fits" in cone_dids(stack, 38.25, 12.5)
        assert logged_writes(stack) == 1
    finally:
        synced(stack, "--remove-capture")
        with meta(stack) as connection, connection.cursor() as cursor:
            if role_exists(connection, reader):
                cursor.execute(f"DROP OWNED BY {reader}")
            cursor.execute(f"DROP ROLE IF EXISTS {reader}")
    assert trigger_count(stack) == 0


def role_exists(connection, role: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,))
        return cursor.fetchone()[0] > 0


def test_the_services_say_when_the_last_sync_ran_and_the_table_its_rows(stack: Stack,
                                                                        clean) -> None:
    # Pages seen before the sync (DaCHS keeps such pages and rendered meta items).
    for path in ("cone/info", "cone/form", "dl/info"):
        requests.get(f"{stack.dachs.server_url}/rucio/rucio/{path}", timeout=30)
    write(stack, "synctest", "fresh.fits", GOOD)
    synced(stack)
    with psycopg2.connect(dbname=stack.layout.dachs_db, host="127.0.0.1",
                          user="postgres") as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT max(finished) AT TIME ZONE 'UTC',"
            " (SELECT nrows FROM dc.tablemeta WHERE tablename = 'rucio.main'),"
            " (SELECT count(*) FROM rucio.main) FROM rucio.sync_runs")
        last, nrows, count = cursor.fetchone()
    connection.close()
    assert nrows == count  # VOSI's nrows, as DaCHS keeps it
    for service in ("cone", "dl"):
        assert_data_updated(stack, service, last)


def assert_data_updated(stack: Stack, service: str, last: datetime.datetime) -> None:
    deadline = time.monotonic() + 15  # the services read it at most every 5 s
    while True:
        page = requests.get(f"{stack.dachs.server_url}/rucio/rucio/{service}/info",
                            timeout=30).text
        shown = [datetime.datetime.fromisoformat(text) for text in re.findall(
            r"Data updated.{0,400}?(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)", page, re.S)]
        # DaCHS shows whole seconds, rounded.
        if shown and abs(shown[0] - last).total_seconds() <= 1 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert shown and abs(shown[0] - last).total_seconds() <= 1, (service, shown, last)


def test_obscore_region_queries_find_a_file_by_its_field(stack: Stack, clean) -> None:
    from pyvo.dal import TAPService

    write(stack, "synctest", "field.fits", GOOD | {"s_ra": 150.0, "s_dec": 30.0, "s_fov": 1.0})
    write(stack, "synctest", "polar.fits", GOOD | {"s_ra": 45.0, "s_dec": 89.9, "s_fov": 1.0})
    write(stack, "synctest", "pole.fits", GOOD | {"s_ra": 0.0, "s_dec": -90.0, "s_fov": 1.0})
    write(stack, "synctest", "pointlike.fits", GOOD | {"s_ra": 151.0, "s_dec": 30.0})
    synced(stack)
    tap = TAPService(stack.dachs.server_url + "/tap")

    def found(where: str) -> set[str]:
        table = tap.search("SELECT obs_publisher_did FROM ivoa.obscore WHERE " + where
                           + " AND obs_collection = 'synctest'").to_table()
        return {str(value).rsplit("/", 1)[-1] for value in table["obs_publisher_did"]}

    # 0.4 degrees from the centre is inside a field 1 degree across; 0.7 is not.
    assert found("1 = CONTAINS(POINT('ICRS', 150.0, 30.4), s_region)") == {"synctest:field.fits"}
    assert found("1 = CONTAINS(POINT('ICRS', 150.0, 30.7), s_region)") == set()
    assert found("1 = INTERSECTS(s_region, CIRCLE('ICRS', 150.5, 30.0, 0.1))") == {
        "synctest:field.fits"}
    # Around the pole, across RA 0/360: the footprint holds the pole itself.
    assert found("1 = CONTAINS(POINT('ICRS', 200.0, 90.0), s_region)") == {"synctest:polar.fits"}
    # Centred on the pole: the whole field, whatever the RA.
    for ra in (0.0, 100.0, 250.0):
        assert found(f"1 = CONTAINS(POINT('ICRS', {ra}, -89.6), s_region)") == {
            "synctest:pole.fits"}
    # Without a field size there is no footprint (s_region NULL); the position still finds it.
    assert found("s_region IS NULL") == {"synctest:pointlike.fits"}
    assert found("1 = CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', 151.0, 30.0, 0.01))"
                 ) == {"synctest:pointlike.fits"}
