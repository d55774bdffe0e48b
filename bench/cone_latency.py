"""Cone-search latency over a large table, and the import throughput that fills it.

Makes a POSTGRES_JSON-shaped metadata table (``vo``, ``scope``, ``name``,
``data jsonb``, as Rucio's plugin keeps it) with N records spread uniformly
over the sky, deploys rucio_rd into a DaCHS instance of its own, times the
import (rows per second), then times Simple Cone Search requests at random
positions for radii of 0.1 and 1 degree (median, p95, rows returned).

Nothing here needs Rucio: the import reads the metadata table directly.  All
traffic goes to 127.0.0.1.  Run (under a minute for a million rows here):

    .venv/bin/python bench/cone_latency.py [--rows 1000000] [--requests 200]
"""

from __future__ import annotations

import argparse
import io
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg2
import requests
from astropy.io import votable
from benchlib import percentile

from rucio_rd.stack.dachs_instance import DachsInstance

META_DB = "rucio_rd_bench_cone_meta"


def make_metadata_table(rows: int) -> None:
    """``rows`` records at uniform random positions, generated inside PostgreSQL."""
    subprocess.run(["dropdb", "--if-exists", META_DB], check=True)
    subprocess.run(["createdb", META_DB], check=True)
    with psycopg2.connect(dbname=META_DB) as connection, connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE dids (id bigint GENERATED ALWAYS AS IDENTITY, vo varchar NOT NULL,"
            " scope varchar NOT NULL, name varchar NOT NULL, data jsonb DEFAULT '{}',"
            " UNIQUE (scope, name))"
        )
        cursor.execute(
            """
            INSERT INTO dids (vo, scope, name, data)
            SELECT 'def', 'bench', 'file-' || i || '.fits', jsonb_build_object(
                's_ra', 360 * random(),
                's_dec', degrees(asin(2 * random() - 1)),
                'obs_id', 'obs-' || i,
                'access_url', 'http://127.0.0.1:18083/rucio/rucio/dl/dlmeta?id=bench:file-'
                              || i || '.fits',
                'access_format', 'application/x-votable+xml;content=datalink',
                'content_type', 'application/fits',
                'content_length', (random() * 1e9)::bigint)
            FROM generate_series(1, %s) AS i
            """,
            (rows,),
        )
    connection.close()



def cone_samples(url: str, radius: float, count: int, rng: random.Random, keep_alive: bool):
    """Times of ``count`` cones at random positions (after 10 warm-up ones), and row counts.

    ``keep_alive`` reuses one connection (as pyvo's session does); otherwise
    every request opens its own (as curl or a fresh TOPCAT query would).
    """
    session = requests.Session() if keep_alive else requests
    times, sizes = [], []
    for index in range(count + 10):
        ra = 360 * rng.random()
        dec = math.degrees(math.asin(2 * rng.random() - 1))
        started = time.perf_counter()
        response = session.get(url, params={"RA": ra, "DEC": dec, "SR": radius}, timeout=120)
        elapsed = (time.perf_counter() - started) * 1000
        response.raise_for_status()
        if index >= 10:
            times.append(elapsed)
            table = votable.parse_single_table(io.BytesIO(response.content))
            sizes.append(len(table.array))
    return times, sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)

    print(f"generating {args.rows:,} metadata records...", file=sys.stderr)
    make_metadata_table(args.rows)
    workdir = Path(tempfile.mkdtemp(prefix="rucio_rd_bench_cone_", dir="/var/tmp"))
    workdir.chmod(0o755)  # DaCHS's server runs as gavo
    dachs = DachsInstance(workdir / "dachs", port=18083, db_name="rucio_rd_bench_cone_dachs")
    dachs.drop()
    dachs.setup()
    config = workdir / "rucio_rd.toml"
    config.write_text(f'[metadata]\ndsn = "dbname={META_DB}"\ntable = "dids"\n')
    try:
        print("importing through rucio-rd deploy...", file=sys.stderr)
        started = time.monotonic()
        # No Rucio here: the benchmark publishes the table only.
        deployed = subprocess.run(
            ["/usr/bin/rucio-rd", "deploy", "--skip-rucio", "--config", str(config)],
            env=dachs.env(), capture_output=True, text=True, encoding="utf-8", errors="replace",
        )
        if deployed.returncode != 0:
            sys.exit(f"deploy failed:\n{deployed.stdout}{deployed.stderr}")
        import_seconds = time.monotonic() - started
        dachs.start()
        url = dachs.server_url + "/rucio/rucio/cone/scs.xml"
        rng = random.Random(42)
        rows = []
        for keep_alive in (False, True):
            for radius in (0.1, 1.0):
                times, sizes = cone_samples(url, radius, args.requests, rng, keep_alive)
                rows.append((radius, keep_alive, statistics.median(times),
                             percentile(times, 0.95), statistics.mean(sizes)))
        density = args.rows / 41253.0
        print(f"\n{args.rows:,} rows; import (deploy: dachs imp, pub, val) "
              f"{import_seconds:.0f} s = {args.rows / import_seconds:,.0f} rows/s")
        print(f"{'radius':>8} {'connection':>11} {'median ms':>10} {'p95 ms':>10}"
              f" {'mean rows':>10} {'expected':>9}")
        for radius, keep_alive, median, p95, mean_rows in rows:
            expected = density * math.pi * radius**2
            kind = "keep-alive" if keep_alive else "new"
            print(f"{radius:8.1f} {kind:>11} {median:10.1f} {p95:10.1f} {mean_rows:10.1f}"
                  f" {expected:9.1f}")
    finally:
        if not args.keep:
            dachs.drop()
            subprocess.run(["dropdb", "--if-exists", META_DB], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
