"""The sync at a million records: a full import, an incremental sync with 1% of the
records changed, and cone searches while a sync runs and while none does.

Makes a POSTGRES_JSON-shaped metadata table (``id``, ``vo``, ``scope``,
``name``, ``data jsonb``) with N records clustered as survey fields are (a few
hundred fields, positions scattered around each centre), deploys rucio_rd into
a DaCHS instance of its own (the table published empty), then in one run:

1. ``rucio-rd sync --full``: every record into the published table, spatial
   index and primary key maintained (rows per second);
2. cone searches (radius 0.1° and 1°, SCS endpoint, new connection each) with
   no sync running;
3. 1% of the records changed in the metadata table (a third added, a third
   moved, a third deleted), then ``rucio-rd sync`` timed while cone searches
   run against the server (their latency meanwhile);
4. change capture: the median time of a one-record metadata write (an UPDATE
   of ``data``, as Rucio's plugin does) with no trigger, with this plugin's
   capture trigger, and with a trigger of the prototype's design (upserting
   ``jsonb_populate_record`` of the JSON into an ObsCore-like table in the
   same database); and with ``rucio-rd sync --follow`` running, how long a
   write takes to show up in a cone search;
5. the prototype's design for discovery: cone queries (SQL, as DaCHS's pgSphere
   cone search asks) against a view reading ``s_ra``/``s_dec`` from the JSON
   column, with no index.

Nothing here needs Rucio.  All traffic goes to 127.0.0.1.  Run:

    .venv/bin/python bench/sync_bench.py [--rows 1000000] [--requests 200]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg2
import requests
from benchlib import percentile

from rucio_rd.stack.dachs_instance import DachsInstance

META_DB = "rucio_rd_bench_sync_meta"
FIELDS = 300


def make_metadata_table() -> None:
    subprocess.run(["dropdb", "--if-exists", "--force", META_DB], check=True)
    subprocess.run(["createdb", META_DB], check=True)
    with psycopg2.connect(dbname=META_DB) as connection, connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE dids (id bigint GENERATED ALWAYS AS IDENTITY, vo varchar NOT NULL,"
            " scope varchar NOT NULL, name varchar NOT NULL, data jsonb DEFAULT '{}',"
            " UNIQUE (scope, name))")
    connection.close()


def record_sql(first: int, count: int) -> str:
    """INSERT of ``count`` records numbered from ``first``, clustered in FIELDS fields."""
    return f"""
        INSERT INTO dids (vo, scope, name, data)
        SELECT 'def', 'bench', 'file-' || i || '.fits', jsonb_build_object(
            's_ra', mod((360.0 * (i % {FIELDS}) / {FIELDS} + 2 * (random() - 0.5))::numeric
                        + 360, 360),
            's_dec', greatest(-89.9, least(89.9,
                     degrees(asin(2 * ((i::bigint * 7919) % {FIELDS}) / {FIELDS}.0 - 1))
                     + 2 * (random() - 0.5))),
            's_fov', 0.5,
            'obs_id', 'obs-' || i,
            'access_url', 'https://storage.example/bench/file-' || i || '.fits',
            'content_type', 'application/fits',
            'content_length', (random() * 1e9)::bigint,
            'dataproduct_type', 'cube')
        FROM generate_series({first}, {first + count - 1}) AS i"""


def change_one_percent(rows: int) -> int:
    """Add, move and delete a third of 1% each; return how many records changed."""
    third = max(1, rows // 300)
    with psycopg2.connect(dbname=META_DB) as connection, connection.cursor() as cursor:
        cursor.execute(record_sql(rows + 1, third))
        cursor.execute(f"""UPDATE dids SET data = data || jsonb_build_object(
                               's_ra', mod((data->>'s_ra')::numeric + 1, 360))
                           WHERE id IN (SELECT id FROM dids ORDER BY id OFFSET {third}
                                        LIMIT {third})""")
        cursor.execute(f"DELETE FROM dids WHERE id IN (SELECT id FROM dids ORDER BY id"
                       f" OFFSET {3 * third} LIMIT {third})")
    connection.close()
    return 3 * third



def cone_times(url: str, radius: float, count: int, rng: random.Random,
               stop: threading.Event | None = None) -> list[float]:
    times = []
    for index in range(count):
        if stop is not None and stop.is_set() and index >= 10:
            break
        field = rng.randrange(FIELDS)
        ra = 360.0 * field / FIELDS
        dec = math.degrees(math.asin(2 * ((field * 7919) % FIELDS) / FIELDS - 1))
        started = time.perf_counter()
        response = requests.get(url, params={"RA": ra, "DEC": dec, "SR": radius}, timeout=120)
        response.raise_for_status()
        times.append((time.perf_counter() - started) * 1000)
    return times


PROTOTYPE_VIEW = """
CREATE EXTENSION IF NOT EXISTS pg_sphere;
CREATE VIEW proto_positions AS
SELECT scope, name, (data->>'s_ra')::float8 AS s_ra, (data->>'s_dec')::float8 AS s_dec,
       data->>'access_url' AS access_url
FROM dids WHERE data ? 's_ra' AND data ? 's_dec';
"""


def prototype_view_times(radius: float, count: int, rng: random.Random) -> list[float]:
    """ms per cone query against a view reading the position from the JSON column,
    with no index (the prototype's design), in SQL as DaCHS's pgSphere SCS asks."""
    connection = psycopg2.connect(dbname=META_DB)
    connection.autocommit = True
    times = []
    with connection.cursor() as cursor:
        for _ in range(count):
            field = rng.randrange(FIELDS)
            ra = 360.0 * field / FIELDS
            dec = math.degrees(math.asin(2 * ((field * 7919) % FIELDS) / FIELDS - 1))
            started = time.perf_counter()
            cursor.execute(
                "SELECT scope, name, s_ra, s_dec, access_url FROM proto_positions"
                " WHERE spoint(radians(s_ra), radians(s_dec))"
                " @ scircle(spoint(radians(%s), radians(%s)), radians(%s))", (ra, dec, radius))
            cursor.fetchall()
            times.append((time.perf_counter() - started) * 1000)
    connection.close()
    return times


PROTOTYPE_TRIGGER = """
CREATE TABLE proto_obscore (obs_id text PRIMARY KEY, s_ra double precision,
    s_dec double precision, s_fov double precision, access_url text, content_type text,
    content_length bigint, dataproduct_type text);
CREATE FUNCTION proto_upsert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO proto_obscore
    SELECT * FROM jsonb_populate_record(NULL::proto_obscore, NEW.data)
    ON CONFLICT (obs_id) DO UPDATE SET s_ra = EXCLUDED.s_ra, s_dec = EXCLUDED.s_dec,
        s_fov = EXCLUDED.s_fov, access_url = EXCLUDED.access_url,
        content_type = EXCLUDED.content_type, content_length = EXCLUDED.content_length,
        dataproduct_type = EXCLUDED.dataproduct_type;
    RETURN NEW;
EXCEPTION WHEN others THEN
    RAISE NOTICE 'skipped %', NEW.name;
    RETURN NEW;
END $$;
CREATE TRIGGER proto_upsert AFTER INSERT OR UPDATE ON dids
    FOR EACH ROW EXECUTE FUNCTION proto_upsert();
"""


def write_ms(count: int, rows: int) -> float:
    """Median ms of one-record UPDATEs of ``data`` (autocommit, as Rucio's plugin),
    after as many unmeasured ones."""
    connection = psycopg2.connect(dbname=META_DB)
    connection.autocommit = True
    times = []
    with connection.cursor() as cursor:
        for index in range(-count, count):
            started = time.perf_counter()
            # As Rucio's plugin writes: by scope and name (its unique index).
            cursor.execute("UPDATE dids SET data = data || jsonb_build_object('note', %s)"
                           " WHERE scope = 'bench' AND name = %s",
                           (index, f"file-{1 + (index * 4999) % (rows // 2)}.fits"))
            if index >= 0:
                times.append((time.perf_counter() - started) * 1000)
    connection.close()
    return statistics.median(times)


def measure_capture(dachs: DachsInstance, url: str, writes: int, rows: int) -> dict:
    results: dict = {"no trigger": write_ms(writes, rows)}
    subprocess.run(["/usr/bin/rucio-rd", "sync", "--install-capture"], env=dachs.env(),
                   check=True, capture_output=True, cwd="/")
    results["rucio_rd capture trigger"] = write_ms(writes, rows)
    follower = subprocess.Popen(["/usr/bin/rucio-rd", "sync", "--follow"], env=dachs.env(),
                                cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(8)  # its first (incremental) sync
        seen = []
        # Not "with psycopg2.connect()": that opens a transaction even in autocommit.
        connection = psycopg2.connect(dbname=META_DB)
        connection.autocommit = True
        for index in range(10):
            ra, dec = 5.0 + index, 70.0
            with connection.cursor() as cursor:
                cursor.execute(
                    "INSERT INTO dids (vo, scope, name, data) VALUES ('def', 'live', %s,"
                    " jsonb_build_object('s_ra', %s, 's_dec', %s, 'access_url', 'x'))",
                    (f"live-{index}.fits", ra, dec))
            started = time.monotonic()
            while time.monotonic() - started < 30:
                response = requests.get(url, params={"RA": ra, "DEC": dec, "SR": 0.001,
                                                     "RESPONSEFORMAT": "csv"}, timeout=30)
                if b"live-" in response.content:
                    break
                time.sleep(0.02)
            seen.append(time.monotonic() - started)
        connection.close()
        results["visible"] = seen
    finally:
        follower.terminate()
        follower.wait(30)
        subprocess.run(["/usr/bin/rucio-rd", "sync", "--remove-capture"], env=dachs.env(),
                       check=True, capture_output=True, cwd="/")
    with psycopg2.connect(dbname=META_DB) as connection, connection.cursor() as cursor:
        cursor.execute(PROTOTYPE_TRIGGER)
    connection.close()
    results["prototype's trigger"] = write_ms(writes, rows)
    return results


def timed_sync(dachs: DachsInstance, *args: str) -> tuple[float, str]:
    started = time.monotonic()
    result = subprocess.run(["/usr/bin/rucio-rd", "sync", *args], env=dachs.env(),
                            capture_output=True, encoding="utf-8", cwd="/")
    seconds = time.monotonic() - started
    if result.returncode != 0:
        sys.exit(f"sync failed:\n{result.stdout}{result.stderr}")
    return seconds, result.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--view-requests", type=int, default=10,
                        help="cone queries per radius against the prototype's view")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)

    make_metadata_table()
    workdir = Path(tempfile.mkdtemp(prefix="rucio_rd_bench_sync_", dir="/var/tmp"))
    workdir.chmod(0o755)  # DaCHS's server runs as gavo
    dachs = DachsInstance(workdir / "dachs", port=18085, db_name="rucio_rd_bench_sync_dachs")
    dachs.drop()
    dachs.setup()
    config = workdir / "rucio_rd.toml"
    config.write_text(f'[metadata]\ndsn = "dbname={META_DB}"\ntable = "dids"\n'
                      'access_url = "metadata"\n')
    try:
        deployed = subprocess.run(  # publishes the (still empty) table
            ["/usr/bin/rucio-rd", "deploy", "--skip-rucio", "--config", str(config)],
            env=dachs.env(), capture_output=True, encoding="utf-8", errors="replace")
        if deployed.returncode != 0:
            sys.exit(f"deploy failed:\n{deployed.stdout}{deployed.stderr}")
        print(f"generating {args.rows:,} clustered metadata records...", file=sys.stderr)
        with psycopg2.connect(dbname=META_DB) as connection, connection.cursor() as cursor:
            cursor.execute(record_sql(1, args.rows))
            cursor.execute("ANALYZE dids")
        connection.close()
        full_seconds, full_out = timed_sync(dachs, "--full")
        dachs.start()
        url = dachs.server_url + "/rucio/rucio/cone/scs.xml"
        rng = random.Random(42)
        idle = {radius: cone_times(url, radius, args.requests, rng) for radius in (0.1, 1.0)}
        changed = change_one_percent(args.rows)
        during: dict[float, list[float]] = {0.1: [], 1.0: []}
        stop = threading.Event()

        def cones_meanwhile() -> None:
            while not stop.is_set():
                for radius in (0.1, 1.0):
                    during[radius].extend(cone_times(url, radius, 1, rng))

        thread = threading.Thread(target=cones_meanwhile)
        thread.start()
        time.sleep(0.5)
        incremental_seconds, incremental_out = timed_sync(dachs)
        stop.set()
        thread.join()
        capture = measure_capture(dachs, url, args.writes, args.rows)
        with psycopg2.connect(dbname=META_DB) as connection, connection.cursor() as cursor:
            cursor.execute(PROTOTYPE_VIEW)
        connection.close()
        view = {radius: prototype_view_times(radius, args.view_requests, rng)
                for radius in (0.1, 1.0)}
        print(f"\nfull import, {args.rows:,} records: {full_seconds:.1f} s ="
              f" {args.rows / full_seconds:,.0f} rows/s\n  {full_out}")
        print(f"incremental sync, {changed:,} records changed (1%):"
              f" {incremental_seconds:.1f} s\n  {incremental_out}")
        print(f"{'radius':>8} {'sync':>8} {'median ms':>10} {'p95 ms':>10} {'n':>5}")
        for radius in (0.1, 1.0):
            for label, times in (("none", idle[radius]), ("running", during[radius])):
                if times:
                    print(f"{radius:8.1f} {label:>8} {statistics.median(times):10.1f}"
                          f" {percentile(times, 0.95):10.1f} {len(times):5d}")
        for radius in (0.1, 1.0):
            times = view[radius]
            print(f"{radius:8.1f} {'proto':>8} {statistics.median(times):10.1f}"
                  f" {percentile(times, 0.95):10.1f} {len(times):5d}"
                  "  (the prototype's design: a view over the JSON, no index; SQL, no HTTP)")
        print("\none-record metadata write (UPDATE of data), median ms:")
        for label in ("no trigger", "rucio_rd capture trigger", "prototype's trigger"):
            print(f"  {label:28} {capture[label]:6.3f}")
        seen = capture["visible"]
        print(f"with rucio-rd sync --follow: a write in a cone search after median"
              f" {statistics.median(seen):.2f} s, max {max(seen):.2f} s ({len(seen)} writes)")
    finally:
        if not args.keep:
            dachs.drop()
            subprocess.run(["dropdb", "--if-exists", META_DB], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
