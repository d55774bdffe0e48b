"""Load and soak: a bounded mix of clients against one DaCHS process, per service.

Brings up a stack of its own (Rucio, site-directory stand-in, DaCHS on ports
and databases that neither the demo nor the tests use), then runs, in one go:

- **load**: ``--clients`` concurrent clients for ``--load-seconds``, each
  picking at random a cone search (SCS), a synchronous TAP query, a DataLink
  request for a popular file (the same ID) or for a random file of the 300;
- **soak**: ``--soak-clients`` clients with the same mix for ``--soak-seconds``;
- **load with Rucio hanging**: the Rucio server's processes stopped (SIGSTOP)
  for ``--hang-seconds`` while the load runs; DataLink answers fault rows,
  the other services must not notice.

Per phase and service: requests, failures (HTTP status other than 200, a
DALI error document, or no answer within 60 s), median and p99 in ms; and
the DaCHS server's resident memory at the start and the end of each phase.
All traffic goes to 127.0.0.1; counts and durations are bounded.

Run: ``.venv/bin/python bench/load_soak.py`` (``--help`` for the knobs).
"""

from __future__ import annotations

import argparse
import html
import os
import random
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import defaultdict
from pathlib import Path

import requests
from benchlib import percentile

from rucio_rd.stack.demo import Layout, Stack
from rucio_rd.stack.seed import DEMO_FILES, all_files

RAL = "130.246.210.120"
SERVICES = ("cone", "tap", "datalink popular", "datalink random")



def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _fault(resp: requests.Response) -> str | None:
    """Why an answer is no good answer (None for a good one)."""
    if resp.status_code != 200:
        return f"HTTP {resp.status_code}"
    found = re.search(rb"\w+Fault: [^<]{0,160}", resp.content)
    if found is not None:
        return found.group().decode("utf-8", "replace")
    error = re.search(rb'value="ERROR"[^>/]*>([^<]{1,160})', resp.content)
    if error is not None:
        return "DALI error: " + html.unescape(error.group(1).decode("utf-8", "replace")).strip()
    return "DALI error" if b'value="ERROR"' in resp.content else None


class Mix:
    """The requests of the mix; each returns why the answer was no good one, or None."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.dids = [f.did for f in all_files(300)]
        self.tap = stack.dachs.server_url + "/tap/sync"

    def cone(self, session: requests.Session, rng: random.Random) -> str | None:
        params = {"RA": f"{rng.uniform(0, 360):.4f}", "DEC": f"{rng.uniform(-60, 60):.4f}",
                  "SR": "5"}
        resp = session.get(self.stack.cone_url, params=params, timeout=60)
        return _fault(resp)

    def tap_query(self, session: requests.Session, rng: random.Random) -> str | None:
        query = ("SELECT TOP 20 did, s_ra, s_dec FROM rucio.main WHERE 1=CONTAINS("
                 f"POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', {rng.uniform(0, 360):.3f},"
                 f" {rng.uniform(-60, 60):.3f}, 10))")
        resp = session.post(self.tap, data={"REQUEST": "doQuery", "LANG": "ADQL",
                                            "QUERY": query}, timeout=60)
        return _fault(resp)

    def datalink(self, session: requests.Session, did: str, expect_links: bool
                 ) -> str | None:
        url = self.stack.datalink_url + "?" + urllib.parse.urlencode(
            {"ID": did, "client_ip_address": RAL})
        resp = session.get(url, timeout=60)
        if resp.status_code == 200 and b"<VOTABLE" not in resp.content:
            return "no VOTable"
        fault = _fault(resp)
        if fault is not None and fault.startswith("HTTP"):
            return fault
        return fault if expect_links else None

    def call(self, service: str, session: requests.Session, rng: random.Random,
             rucio_up: bool) -> str | None:
        if service == "cone":
            return self.cone(session, rng)
        if service == "tap":
            return self.tap_query(session, rng)
        did = DEMO_FILES[0].did if service == "datalink popular" else rng.choice(self.dids)
        return self.datalink(session, did, expect_links=rucio_up)


def run_phase(mix: Mix, pid: int, clients: int, seconds: float, rucio_up: bool = True,
              ) -> dict:
    samples: dict[str, list[float]] = defaultdict(list)
    failures: dict[str, int] = defaultdict(int)
    reasons: dict[str, set[str]] = defaultdict(set)  # a few of each service's
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    rss_start = rss_mib(pid)

    def client(index: int) -> None:
        rng = random.Random(index)
        session = requests.Session()
        while time.monotonic() < stop_at:
            service = rng.choice(SERVICES)
            started = time.perf_counter()
            try:
                fault = mix.call(service, session, rng, rucio_up)
            except requests.RequestException as exc:
                fault = type(exc).__name__
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                samples[service].append(elapsed)
                if fault is not None:
                    failures[service] += 1
                    if len(reasons[service]) < 3:
                        reasons[service].add(fault)

    threads = [threading.Thread(target=client, args=(index,)) for index in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"samples": samples, "failures": failures, "reasons": reasons,
            "rss": (rss_start, rss_mib(pid))}


def report(title: str, result: dict, clients: int, seconds: float) -> None:
    print(f"\n{title}: {clients} clients, {seconds:.0f} s; DaCHS RSS"
          f" {result['rss'][0]:.0f} -> {result['rss'][1]:.0f} MiB")
    print(f"{'service':18} {'requests':>9} {'failures':>9} {'median ms':>10} {'p99 ms':>9}")
    for service in SERVICES:
        samples = result["samples"].get(service, [])
        if not samples:
            continue
        print(f"{service:18} {len(samples):9d} {result['failures'].get(service, 0):9d}"
              f" {statistics.median(samples):10.1f} {percentile(samples, 0.99):9.1f}")
    for service, reasons in result["reasons"].items():
        for reason in sorted(reasons):
            print(f"  {service} failed with: {reason}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--load-seconds", type=float, default=60.0)
    parser.add_argument("--soak-clients", type=int, default=4)
    parser.add_argument("--soak-seconds", type=float, default=300.0)
    parser.add_argument("--hang-seconds", type=float, default=30.0)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="rucio_rd_load_", dir="/var/tmp"))
    workdir.chmod(0o755)  # DaCHS's server runs as gavo
    stack = Stack(Layout(
        workdir=workdir, rucio_port=18194, sites_port=18294, dachs_port=18084,
        legacy_port=18394, storage_port=18494, soda_port=18484, soda_db="rucio_rd_load_aussrc",
        rucio_db="rucio_rd_load_rucio", meta_db="rucio_rd_load_meta",
        dachs_db="rucio_rd_load_dachs", synthetic_files=300,
    ))
    print("bringing up the load stack...", file=sys.stderr)
    stack.up(fresh=True, log=lambda message: None)
    try:
        mix = Mix(stack)
        pid = stack.dachs._own_pid()
        assert pid is not None, "no DaCHS server pid"
        for service in SERVICES:  # warm up every path once
            mix.call(service, requests.Session(), random.Random(0), True)
        load = run_phase(mix, pid, args.clients, args.load_seconds)
        report("load", load, args.clients, args.load_seconds)
        soak = run_phase(mix, pid, args.soak_clients, args.soak_seconds)
        report("soak", soak, args.soak_clients, args.soak_seconds)
        rucio = int(stack.rucio.pid_path.read_text().strip())
        os.killpg(rucio, signal.SIGSTOP)
        try:
            hung = run_phase(mix, pid, args.clients, args.hang_seconds, rucio_up=False)
        finally:
            os.killpg(rucio, signal.SIGCONT)
        report("load with Rucio hanging (DataLink answers fault rows)", hung, args.clients,
               args.hang_seconds)
        failed = sum(sum(phase["failures"].values()) for phase in (load, soak)) + sum(
            count for service, count in hung["failures"].items()
            if not service.startswith("datalink"))
        print(f"\nfailures outside DataLink-with-Rucio-hanging: {failed}")
        return 1 if failed else 0
    finally:
        if not args.keep:
            stack.down()


if __name__ == "__main__":
    sys.exit(main())
