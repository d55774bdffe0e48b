"""Seed a Rucio server with the demo data lake through its REST API.

Creates three deterministic RSEs (one https protocol each, RSE attributes ``site``,
``latitude``, ``longitude``), the scopes, file replicas and the POSTGRES_JSON metadata
that the DaCHS importer publishes (``s_ra``, ``s_dec``, ``obs_id``, ``access_url``,
``access_format``, ``content_type``, ``content_length``).  Only ``requests`` and the
standard library are used: no rucio-clients.

Every step is idempotent: existing RSEs, protocols and scopes are left alone, attributes,
replicas and metadata are read first and only what is missing or different is written,
so a second run succeeds and changes nothing.

REST endpoints used::

    GET  /auth/userpass                       token (X-Rucio-Auth-Token)
    POST /rses/{rse}                          create RSE (409 = exists)
    GET  /rses/{rse}/protocols                existing protocols
    POST /rses/{rse}/protocols/https          add protocol
    GET  /rses/{rse}/attr/   POST /rses/{rse}/attr/{key}      RSE attributes
    GET  /scopes/   POST /scopes/{account}/{scope}            scopes
    POST /replicas/list                       existing replicas (x-json-stream)
    POST /replicas                            register replicas, one request per RSE
    POST /dids/bulkmeta                       read POSTGRES_JSON metadata in bulk
    POST /dids/bulkdidsmeta                   write metadata in bulk

CLI::

    python -m rucio_rd.stack.seed --workdir DIR [--port N] --datalink-base URL
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import requests

from rucio_rd.rucio_http import flags
from rucio_rd.stack.storage import LOCAL_SITES, fits_content

# Changes when what the demo registers changes (files, sizes, RSE protocols): a stack
# whose databases hold another version starts from empty ones.
DEMO_DATA_VERSION = "2 (real files, loopback storage)"
META_PLUGIN = "POSTGRES_JSON"
ACCESS_FORMAT = "application/x-votable+xml;content=datalink"
CONTENT_TYPE = "application/fits"
PROTOCOL_IMPL = "rucio.rse.protocols.gfal.Default"
SYNTHETIC_SCOPE = "survey"
SYNTHETIC_SEED = 20230718
MIN_SEPARATION_DEG = 2.0
CHUNK = 500  # DIDs per bulk request: keeps request bodies and server transactions small
TIMEOUT = (5.0, 120.0)  # (connect, read) seconds


@dataclass(frozen=True)
class DemoRSE:
    """A deterministic RSE with one protocol (https unless said), located at a site."""

    name: str
    site: str
    hostname: str
    port: int
    prefix: str
    latitude: float
    longitude: float
    scheme: str = "https"


@dataclass(frozen=True)
class DemoFile:
    """A file DID with its position, replicas and size, and ObsCore metadata
    beyond the notebook's (``extra``: key, value pairs)."""

    scope: str
    name: str
    ra: float
    dec: float
    obs_id: str
    rses: tuple[str, ...]
    extra: tuple[tuple[str, Any], ...] = ()
    kind: str = "image"  # what the file is: "cube", "image" or a "small" image

    @property
    def did(self) -> str:
        return f"{self.scope}:{self.name}"

    @property
    def content(self) -> bytes:
        """The file itself: real FITS, the same bytes on every run (stack.storage)."""
        extra = dict(self.extra)
        band = ((extra["em_min"], extra["em_max"]) if "em_min" in extra and "em_max" in extra
                else None)
        return fits_content(self.scope, self.name, self.ra, self.dec, self.obs_id, self.kind,
                            extra.get("s_fov"), band)

    @property
    def bytes(self) -> int:
        return len(self.content)

    @property
    def adler32(self) -> str:
        return f"{zlib.adler32(self.content):08x}"

    def metadata(self, datalink_base: str) -> dict[str, Any]:
        return {
            "s_ra": self.ra,
            "s_dec": self.dec,
            "obs_id": self.obs_id,
            "access_url": f"{datalink_base}?id={self.did}",
            "access_format": ACCESS_FORMAT,
            "content_type": CONTENT_TYPE,
            "content_length": self.bytes,
            **dict(self.extra),
        }


DEMO_RSES: tuple[DemoRSE, ...] = (
    DemoRSE("SPSRC_STORAGE", "SPSRC", "spsrc14.iaa.csic.es", 18027,
            "/disk/dev/deterministic", 37.19, -3.60),
    DemoRSE("UKSRC_RAL_STORAGE", "UKSRC", "storage.uksrc.example", 443, "/disk", 51.57, -1.31),
    DemoRSE("AUSSRC_STORAGE", "AUSSRC", "storage.aussrc.example", 443, "/disk", -31.95, 115.86),
)
RSE_NAMES = tuple(rse.name for rse in DEMO_RSES)


def demo_rses(storage_port: int | None = None) -> tuple[DemoRSE, ...]:
    """The demo's RSEs; with ``storage_port``, the sites this machine serves
    (:data:`rucio_rd.stack.storage.LOCAL_SITES`) at their loopback address over
    http on that port, SPSRC still at the notebook's unreachable address."""
    if storage_port is None:
        return DEMO_RSES
    local = {site.rse: site for site in LOCAL_SITES}
    return tuple(
        replace(rse, scheme="http", hostname=local[rse.name].address, port=storage_port,
                prefix=local[rse.name].prefix) if rse.name in local else rse
        for rse in DEMO_RSES)

# The WALLABY cutouts: HI cubes, 0.25 degrees across, 1.295 to 1.42 GHz.
WALLABY_CUBE: tuple[tuple[str, Any], ...] = (
    ("dataproduct_type", "cube"), ("s_fov", 0.25), ("em_min", 0.2111), ("em_max", 0.2315))

# Extra links (the metadata's datalinks key): a JSON list for the notebook's file,
# the SKA prototype's form (a Python list literal in a string, one entry unusable)
# for orange's.
WALLABY_PREVIEW = {
    "access_url": "https://spsrc14.iaa.csic.es:18027/previews/sp3531_soda/"
                  "Eridanus_cutout-574594-moment0.png",
    "semantics": "#preview", "description": "Moment-0 map of the cube",
    "content_type": "image/png"}
ORANGE_DATALINKS = str([
    {"access_url": "https://storage.aussrc.example:443/previews/orange/cutout-574594.png",
     "semantics": "#preview", "description": "Quick-look image", "content_type": "image/png"},
    {"access_url": "ftp://storage.aussrc.example/orange/cutout-574594.log",
     "semantics": "#auxiliary", "description": "Processing log"}])

DEMO_FILES: tuple[DemoFile, ...] = (
    DemoFile("sp3531_soda",
             "2023-07-18-16-40-27_ASK-WALLABY_Eridanus_cutout-574594-imagecube-42178.fits",
             53.75308, -24.93365, "Eridanus_full_image", RSE_NAMES,
             (*WALLABY_CUBE, ("datalinks", [WALLABY_PREVIEW])), "cube"),
    DemoFile("orange", "2023-07-10-17-21-37_cutout-574594-imagecube-42178.fits",
             53.75308, -24.93365, "Eridanus_full_image", ("AUSSRC_STORAGE",),
             (*WALLABY_CUBE, ("datalinks", ORANGE_DATALINKS)), "cube"),
    DemoFile("testing", "PTF10tce.fits", 349.791, 9.196, "PTF10tce",
             ("UKSRC_RAL_STORAGE", "SPSRC_STORAGE"), (("dataproduct_type", "image"),)),
)
DEMO_SCOPES: tuple[str, ...] = ("sp3531_soda", "orange", "testing", SYNTHETIC_SCOPE)


class RucioRESTError(RuntimeError):
    """A Rucio REST call failed; the message names method, path, status and body."""


def angular_distance_deg(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """Great-circle distance in degrees (haversine, stable for small angles)."""
    ra1, dec1, ra2, dec2 = map(math.radians, (ra1, dec1, ra2, dec2))
    h = (math.sin((dec2 - dec1) / 2) ** 2
         + math.cos(dec1) * math.cos(dec2) * math.sin((ra2 - ra1) / 2) ** 2)
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(h))))


def synthetic_files(count: int, seed: int = SYNTHETIC_SEED) -> tuple[DemoFile, ...]:
    """``count`` files uniform on the sphere, none within 2 degrees of the named demo files."""
    rng = random.Random(seed)
    files: list[DemoFile] = []
    while len(files) < count:
        ra = round(rng.uniform(0.0, 360.0), 6) % 360.0
        dec = round(math.degrees(math.asin(rng.uniform(-1.0, 1.0))), 6)
        if any(angular_distance_deg(ra, dec, f.ra, f.dec) < MIN_SEPARATION_DEG
               for f in DEMO_FILES):
            continue
        number = len(files)
        rses = tuple(sorted(rng.sample(RSE_NAMES, rng.randint(1, len(RSE_NAMES)))))
        files.append(DemoFile(SYNTHETIC_SCOPE, f"synthetic-{number:04d}.fits", ra, dec,
                              f"synthetic-{number:04d}", rses, kind="small"))
    return tuple(files)


def all_files(synthetic: int) -> tuple[DemoFile, ...]:
    return DEMO_FILES + synthetic_files(synthetic)


def _chunks(items: list[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class RucioREST:
    """A minimal authenticated session on a Rucio server's REST API."""

    def __init__(self, url: str, credentials: dict[str, str],
                 timeout: tuple[float, float] = TIMEOUT) -> None:
        self.url = url.rstrip("/")
        self.account = credentials["account"]
        self.timeout = timeout
        self.session = requests.Session()
        self._authenticate(credentials)

    def _authenticate(self, credentials: dict[str, str]) -> None:
        headers = {"X-Rucio-Account": credentials["account"],
                   "X-Rucio-Username": credentials["username"],
                   "X-Rucio-Password": credentials["password"]}
        resp = self._send("GET", "/auth/userpass", headers=headers)
        token = resp.headers.get("X-Rucio-Auth-Token")
        if not token:
            raise RucioRESTError(f"GET {self.url}/auth/userpass answered {resp.status_code} "
                                 "without an X-Rucio-Auth-Token header")
        # The token lives only in the session headers; it is never printed or logged.
        self.session.headers["X-Rucio-Auth-Token"] = token

    def _send(self, method: str, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", self.timeout)
        try:
            return self.session.request(method, f"{self.url}{path}", **kw)
        except requests.RequestException as exc:
            raise RucioRESTError(f"{method} {self.url}{path} failed: {exc}") from exc

    def request(self, method: str, path: str, *, tolerate: Iterable[int] = (),
                **kw: Any) -> requests.Response:
        """Send a request; statuses >= 400 not in ``tolerate`` raise RucioRESTError."""
        resp = self._send(method, path, **kw)
        if resp.status_code >= 400 and resp.status_code not in set(tolerate):
            raise RucioRESTError(f"{method} {self.url}{path} answered {resp.status_code}: "
                                 f"{resp.text[:500]}")
        return resp

    def json_stream(self, method: str, path: str, **kw: Any) -> list[dict[str, Any]]:
        """A newline-delimited JSON response as a list of objects."""
        headers = {"Accept": "application/x-json-stream"}
        resp = self.request(method, path, headers=headers, **kw)
        return [json.loads(line) for line in resp.text.splitlines() if line.strip()]


# -- RSEs and scopes ---------------------------------------------------------------------


def _protocol(rse: DemoRSE) -> dict[str, Any]:
    ops = {"read": 1, "write": 1, "delete": 1}
    return {"scheme": rse.scheme, "hostname": rse.hostname, "port": rse.port, "prefix": rse.prefix,
            "impl": PROTOCOL_IMPL,
            "domains": {"lan": dict(ops),
                        "wan": {**ops, "third_party_copy_read": 1, "third_party_copy_write": 1}}}


def _rse_attributes(rse: DemoRSE) -> dict[str, Any]:
    return {"site": rse.site, "latitude": rse.latitude, "longitude": rse.longitude}


def ensure_rse(api: RucioREST, rse: DemoRSE, counts: dict[str, int]) -> None:
    """Create the RSE, its protocol and attributes where missing."""
    body = {"deterministic": True, "latitude": rse.latitude, "longitude": rse.longitude}
    if api.request("POST", f"/rses/{rse.name}", json=body, tolerate=(409,)).status_code != 409:
        counts["rses_created"] += 1

    # 404 RSEProtocolNotSupported is how Rucio says "no protocols yet".
    resp = api.request("GET", f"/rses/{rse.name}/protocols", tolerate=(404,))
    protocols = _protocol_list(resp.json()) if resp.status_code == 200 else []
    if not any(p.get("scheme") == rse.scheme and p.get("hostname") == rse.hostname
               and int(p.get("port", 0)) == rse.port for p in protocols):
        api.request("POST", f"/rses/{rse.name}/protocols/{rse.scheme}", json=_protocol(rse))
        counts["protocols_added"] += 1

    existing = _merge_dicts(api.request("GET", f"/rses/{rse.name}/attr/").json())
    for key, value in _rse_attributes(rse).items():
        if str(existing.get(key)) != str(value):
            api.request("POST", f"/rses/{rse.name}/attr/{key}", json={"value": value})
            counts["attributes_set"] += 1


def _protocol_list(payload: Any) -> list[dict[str, Any]]:
    # Rucio 41 answers a bare list; older servers wrapped it in {"protocols": [...]}.
    return payload.get("protocols", []) if isinstance(payload, dict) else payload


def _merge_dicts(payload: Any) -> dict[str, Any]:
    # GET /rses/{rse}/attr/ answers a list of one-key dicts on some versions, a dict on others.
    if isinstance(payload, dict):
        return payload
    merged: dict[str, Any] = {}
    for item in payload:
        merged.update(item)
    return merged


ASTRONOMER = "astronomer"


def ensure_astronomer(api: RucioREST, password: str) -> None:
    """The demo's astronomer: a USER account whose userpass login gives the token
    the storage checks (not the service's root account)."""
    email = f"{ASTRONOMER}@rucio-rd.example"
    api.request("POST", f"/accounts/{ASTRONOMER}", json={"type": "USER", "email": email},
                tolerate=(409,))
    # Adding an identity the account has already fails with a 500 (DatabaseException).
    identities = api.json_stream("GET", f"/accounts/{ASTRONOMER}/identities")
    if not any(entry.get("type") == "USERPASS" and entry.get("identity") == ASTRONOMER
               for entry in identities):
        api.request("PUT", f"/identities/{ASTRONOMER}/userpass", headers={
            "X-Rucio-Username": ASTRONOMER, "X-Rucio-Password": password,
            "X-Rucio-Email": email})


def ensure_scopes(api: RucioREST, scopes: Iterable[str], counts: dict[str, int]) -> None:
    existing = set(api.request("GET", "/scopes/").json())
    for scope in scopes:
        if scope not in existing:
            api.request("POST", f"/scopes/{api.account}/{scope}", tolerate=(409,))
            counts["scopes_created"] += 1


# -- replicas and metadata ---------------------------------------------------------------


def existing_replicas(api: RucioREST, files: list[DemoFile]) -> dict[str, set[str]]:
    """DID -> names of the RSEs that hold a replica (any state)."""
    found: dict[str, set[str]] = {}
    for chunk in _chunks(files):
        body = {"dids": [{"scope": f.scope, "name": f.name} for f in chunk],
                **flags(all_states=True, unavailable=False, ignore_availability=False,
                        resolve_archives=True, resolve_parents=False),
                "schemes": ["https", "http"],
                # Rucio's default 'geoip' sort tries to download a MaxMind database per
                # call and fills the server log; the order does not matter here.
                "sort": "random"}
        for entry in api.json_stream("POST", "/replicas/list", json=body):
            found[f"{entry['scope']}:{entry['name']}"] = set(entry.get("rses", {}))
    return found


def ensure_replicas(api: RucioREST, files: list[DemoFile], counts: dict[str, int]) -> None:
    """Register the missing replicas, one bulk POST /replicas per RSE."""
    have = existing_replicas(api, files)
    for rse in RSE_NAMES:
        missing = [f for f in files if rse in f.rses and rse not in have.get(f.did, set())]
        for chunk in _chunks(missing):
            body = {"rse": rse, **flags(ignore_availability=True),
                    "files": [{"scope": f.scope, "name": f.name, "bytes": f.bytes,
                               "adler32": f.adler32} for f in chunk]}
            api.request("POST", "/replicas", json=body)
            counts["replicas_registered"] += len(chunk)


def existing_metadata(api: RucioREST, files: list[DemoFile]) -> dict[str, dict[str, Any]]:
    """DID -> its POSTGRES_JSON metadata ({} when it has none yet)."""
    found: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(files):
        # inherit=True is the path on which Rucio maps "no metadata row" to {} instead of
        # failing the whole request with DataIdentifierNotFound.
        body = {"dids": [{"scope": f.scope, "name": f.name} for f in chunk],
                **flags(inherit=True), "plugin": META_PLUGIN}
        for entry in api.json_stream("POST", "/dids/bulkmeta", json=body):
            did = f"{entry.pop('scope')}:{entry.pop('name')}"
            found[did] = entry
    return found


def ensure_metadata(api: RucioREST, files: list[DemoFile], datalink_base: str,
                    counts: dict[str, int]) -> None:
    """Write the metadata of DIDs whose stored keys are missing or different."""
    have = existing_metadata(api, files)
    stale = []
    for f in files:
        wanted = f.metadata(datalink_base)
        stored = have.get(f.did, {})
        if any(stored.get(key) != value for key, value in wanted.items()):
            stale.append({"scope": f.scope, "name": f.name, "meta": wanted})
    for chunk in _chunks(stale):
        api.request("POST", "/dids/bulkdidsmeta", json={"dids": chunk})
        counts["metadata_written"] += len(chunk)


def seed(rucio_url: str, credentials: dict[str, str], datalink_base: str,
         synthetic: int = 300, storage_port: int | None = None,
         astronomer_password: str | None = None) -> dict[str, int]:
    """Seed the demo data lake; returns what was created or written (all 0 on a re-run).

    ``storage_port``: where this machine serves the local sites' files
    (:func:`demo_rses`); without it the RSEs keep their example hostnames.
    ``astronomer_password``: also make the astronomer's account (``astronomer``,
    a USER account with a userpass identity of that name)."""
    api = RucioREST(rucio_url, credentials)
    counts = dict.fromkeys(("rses_created", "protocols_added", "attributes_set",
                            "scopes_created", "replicas_registered", "metadata_written"), 0)
    if astronomer_password is not None:
        ensure_astronomer(api, astronomer_password)
    for rse in demo_rses(storage_port):
        ensure_rse(api, rse, counts)
    ensure_scopes(api, DEMO_SCOPES, counts)
    files = list(all_files(synthetic))
    ensure_replicas(api, files, counts)
    ensure_metadata(api, files, datalink_base, counts)
    counts["files"] = len(files)
    return counts


def main(argv: list[str] | None = None) -> int:
    from rucio_rd.stack.rucio_server import RucioServer  # stdlib-only, no rucio import

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=18100)
    parser.add_argument("--datalink-base", required=True,
                        help="e.g. http://localhost:8080/rucio/rucio/dl/dlmeta")
    parser.add_argument("--synthetic", type=int, default=300)
    args = parser.parse_args(argv)

    server = RucioServer(workdir=args.workdir, port=args.port)
    if not server.credentials_path.exists():
        print(f"error: no {server.credentials_path}; run rucio_server setup first",
              file=sys.stderr)
        return 1
    started = time.monotonic()
    try:
        counts = seed(server.url, server.credentials(), args.datalink_base, args.synthetic)
    except RucioRESTError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(counts), f"({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
