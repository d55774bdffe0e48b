"""Datalink latency and throughput on one DaCHS process, against the real local Rucio.

Brings up a stack of its own (Rucio, site-directory stand-in, DaCHS on
ports and databases that neither the demo nor the tests use), then measures,
in one run:

- the floor: one bare ``POST /replicas/list`` to the same Rucio (token
  cached, as a datalink service would hold it), for 1 and for 10 DIDs;
- the datalink service for 1 ID and for 10 IDs (median, p95);
- the ratio of datalink to floor, and 10 IDs against 10 single requests;
- throughput with a few concurrent clients for a fixed time;
- popular files: with the replica cache turned on (``[rucio]
  replica_cache_ttl``, by rewriting the installed configuration and
  ``dachs serve reload``), a warm repeat of one ID against one bare
  ``replicas/list``, and throughput for one ID under ``--popular-clients``
  clients with the cache off and on.

The first rows are measured with the cache off, so that every request
reaches Rucio.

All traffic goes to 127.0.0.1.  Run: ``.venv/bin/python bench/datalink_latency.py``
(``--requests N`` to change the sample size, ``--keep`` to leave the stack up).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import requests
from benchlib import percentile

from rucio_rd.stack.demo import Layout, Stack
from rucio_rd.stack.seed import DEMO_FILES, all_files

RAL = "130.246.210.120"



def timed(call, count: int, warmup: int = 10) -> list[float]:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def summary(name: str, samples: list[float]) -> tuple[str, float, float]:
    return name, statistics.median(samples), percentile(samples, 0.95)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--popular-clients", type=int, default=8)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="rucio_rd_bench_", dir="/var/tmp"))
    workdir.chmod(0o755)  # DaCHS's server runs as gavo
    stack = Stack(Layout(
        workdir=workdir, rucio_port=18193, sites_port=18293, dachs_port=18082,
        legacy_port=18393, storage_port=18493, soda_port=18483, soda_db="rucio_rd_bench_aussrc",
        rucio_db="rucio_rd_bench_rucio", meta_db="rucio_rd_bench_meta",
        dachs_db="rucio_rd_bench_dachs", synthetic_files=300, replica_cache_ttl=0.0,
    ))
    print("bringing up the bench stack...", file=sys.stderr)
    stack.up(fresh=True, log=lambda message: None)
    try:
        return run(stack, args)
    finally:
        if not args.keep:
            stack.down()


def run(stack: Stack, args: argparse.Namespace) -> int:
    one = [DEMO_FILES[0].did]
    ten = [f.did for f in DEMO_FILES] + [f.did for f in all_files(300)[3:10]]
    credentials = stack.rucio.credentials()
    auth = requests.get(stack.rucio.url + "/auth/userpass", timeout=10, headers={
        "X-Rucio-Account": credentials["account"], "X-Rucio-Username": credentials["username"],
        "X-Rucio-Password": credentials["password"]})
    auth.raise_for_status()
    token = auth.headers["X-Rucio-Auth-Token"]
    session = requests.Session()

    def bare(dids: list[str]):
        def call() -> None:
            body = {"dids": [dict(zip(("scope", "name"), did.split(":", 1), strict=True))
                             for did in dids], "sort": "random"}
            response = session.post(stack.rucio.url + "/replicas/list", json=body, timeout=30,
                                    headers={"X-Rucio-Auth-Token": token,
                                             "Accept": "application/x-json-stream"})
            response.raise_for_status()
            assert response.text.count("\n") >= len(dids) - 1
        return call

    def datalink(dids: list[str], client: requests.Session = session):
        url = stack.datalink_url + "?" + urllib.parse.urlencode(
            [("ID", did) for did in dids] + [("client_ip_address", RAL)])

        def call() -> None:
            response = client.get(url, timeout=30)
            response.raise_for_status()
            assert b"#this" in response.content and b"Fault" not in response.content
        return call

    rows = [
        summary("Rucio replicas/list, 1 DID (floor)", timed(bare(one), args.requests)),
        summary("datalink, 1 ID", timed(datalink(one), args.requests)),
        summary("Rucio replicas/list, 10 DIDs (floor)", timed(bare(ten), args.requests // 2)),
        summary("datalink, 10 IDs", timed(datalink(ten), args.requests // 2)),
    ]

    throughput, _ = concurrent(stack, one, args.clients, args.seconds)
    popular_off, busy_off = concurrent(stack, one, args.popular_clients, args.seconds)
    set_replica_cache(stack, 10.0)
    rows.append(summary("datalink, 1 ID, warm repeat (cache on)",
                        timed(datalink(one), args.requests)))
    popular_on, busy_on = concurrent(stack, one, args.popular_clients, args.seconds)

    print(f"\n{'measurement':40} {'median ms':>10} {'p95 ms':>10}")
    for name, median, p95 in rows:
        print(f"{name:40} {median:10.1f} {p95:10.1f}")
    floor1, dl1, floor10, dl10, warm = (row[1] for row in rows)
    print(f"\ndatalink / floor, 1 ID:         {dl1 / floor1:.2f}x  (target <= 1.3x)")
    print(f"overhead over the floor, 1 ID:   {dl1 - floor1:.1f} ms")
    print(f"10 IDs vs 10 single requests:    {dl10:.1f} ms vs {10 * dl1:.1f} ms "
          f"({dl10 / (10 * dl1):.2f})")
    print(f"throughput, 1 ID, {args.clients} clients, {args.seconds:.0f} s: "
          f"{throughput:.1f} requests/s")
    print(f"warm repeat / one bare replicas/list: {warm / floor1:.2f}x  (target <= 0.3x)")
    print(f"throughput, 1 popular ID, {args.popular_clients} clients, {args.seconds:.0f} s:"
          f" cache off {popular_off:.1f}/s, cache on {popular_on:.1f}/s"
          f" ({popular_on / popular_off:.1f}x, target >= 3x); answered 'busy'"
          f" (TransientFault) per second: {busy_off:.1f} and {busy_on:.1f}")
    return 0


def concurrent(stack: Stack, dids: list[str], clients: int, seconds: float
               ) -> tuple[float, float]:
    """Answers with links per second that ``clients`` concurrent clients get for ``dids``,
    and answers "busy" (all of [rucio] concurrent_calls taken) per second."""
    url = stack.datalink_url + "?" + urllib.parse.urlencode(
        [("ID", did) for did in dids] + [("client_ip_address", RAL)])
    done, busy = [0] * clients, [0] * clients
    stop_at = time.monotonic() + seconds

    def worker(index: int) -> None:
        session = requests.Session()
        while time.monotonic() < stop_at:
            response = session.get(url, timeout=30)
            response.raise_for_status()
            if b"the service is busy" in response.content:
                busy[index] += 1
            else:
                assert b"#this" in response.content and b"Fault" not in response.content
                done[index] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / seconds, sum(busy) / seconds


def set_replica_cache(stack: Stack, ttl: float) -> None:
    """Rewrite the installed configuration's replica_cache_ttl; ``dachs serve reload``."""
    path = stack.dachs.plugin_config
    text = re.sub(r"(?m)^replica_cache_ttl = .*$", f"replica_cache_ttl = {ttl}",
                  path.read_text(encoding="utf-8"))
    path.write_text(text, encoding="utf-8")
    stack.dachs.reload()
    time.sleep(1.0)


if __name__ == "__main__":
    sys.exit(main())
