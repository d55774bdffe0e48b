"""The whole stack on one machine: real Rucio, site-directory stand-in, private DaCHS.

``bin/demo`` runs :func:`main`; the integration tests use :class:`Stack` with a
layout of their own (other ports, other databases, a temporary directory), so
the demo and a test run never disturb each other.  Bringing the stack up is
idempotent: what already runs is reused.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rucio_rd.deploy import write_private
from rucio_rd.metadata import DATALINK_PATH
from rucio_rd.stack.dachs_instance import DachsInstance
from rucio_rd.stack.process import ServerProcess
from rucio_rd.stack.rucio_server import RucioServer
from rucio_rd.stack.seed import DEMO_DATA_VERSION, all_files, seed
from rucio_rd.stack.site_directory import DEFAULT_DATA, site_directory_process
from rucio_rd.stack.soda_site import SodaSite
from rucio_rd.stack.storage import LOCAL_SITES, StorageServer

SODA_SITE = "AUSSRC"  # the site that runs a real SODA service here

__all__ = ["DEMO_LAYOUT", "Layout", "Stack"]

REPO = Path(__file__).resolve().parents[2]
DEMO_SITE = REPO / "res" / "demo-site"
# The demo data centre's site metadata (DaCHS's etc/defaultmeta.txt).
DEFAULT_META = """\
publisher: rucio_rd demo
contact.name: rucio_rd demo operator
contact.email: operator@rucio-rd.example
contact.address: this machine (a demo)
creator.name: rucio_rd demo
authority.shortName: rucio_rd demo
_noresultwarning: No file of the data lake matched.
site.description: This data centre publishes the files of a Rucio data lake \\
  to the Virtual Observatory: find them by position, get the replica nearest \\
  to you from its storage site, or a cutout from the site's SODA service. \\
  The demo's data lake has three sites, SPSRC (Granada), UKSRC (Harwell) and \\
  AUSSRC (Perth), holding WALLABY HI cubes, PTF10tce and 300 synthetic images.
"""
# The operator's command of the installed Debian package python3-rucio-rd.
RUCIO_RD_COMMAND = "/usr/bin/rucio-rd"
SERVER_GROUP = "gavo"  # DaCHS's [general] group: the server runs in it
CONE_PATH = "/rucio/rucio/cone/scs.xml"


def _meta_entries(text: str) -> list[str]:
    """The logical lines of a DaCHS meta file (backslash continuations joined)."""
    entries: list[str] = []
    continued = False
    for line in text.splitlines():
        if continued:
            entries[-1] += "\n" + line
        else:
            entries.append(line)
        continued = line.rstrip().endswith("\\")
    return entries


def merged_meta(existing: str, ours: str) -> str:
    """``existing`` (DaCHS's defaultmeta.txt) with the keys ``ours`` sets replaced."""
    def key(entry: str) -> str:
        return entry.split(":", 1)[0].strip() if ":" in entry else ""

    mine = _meta_entries(ours)
    # DaCHS's placeholder telephone line says "Delete this line": deleted.
    replaced = {key(entry) for entry in mine} | {"contact.telephone"}
    kept = [entry for entry in _meta_entries(existing) if key(entry) not in replaced]
    return "\n".join(kept + mine) + "\n"


def write_server_secret(path: Path, secret: str, group: str = SERVER_GROUP) -> Path:
    """A secret file that DaCHS's server (in ``group``) can read and others cannot."""
    return write_private(path, secret.encode(), group)


@dataclass(frozen=True)
class Layout:
    """Where each part of a stack lives: directory, ports and database names."""

    workdir: Path
    rucio_port: int
    sites_port: int
    dachs_port: int
    rucio_db: str
    meta_db: str
    dachs_db: str
    legacy_port: int = 10000
    storage_port: int = 18400
    # The AUSSRC site's own DaCHS with its SODA service (behind the storage's nginx).
    soda_port: int = 18480
    soda_db: str = "rucio_rd_aussrc"
    synthetic_files: int = 300
    sites_ttl: float = 300.0
    # [rucio] keys of the plugin configuration other than the connection's.
    rucio_timeout: float = 10.0
    replica_cache_ttl: float = 10.0
    circuit_retry_after: float = 15.0
    # Where the files DaCHS's server (user gavo) reads go: its instance and the
    # Rucio password file.  None means workdir, which must then be reachable.
    server_dir: Path | None = None

    @property
    def server_files(self) -> Path:
        """The directory for what DaCHS's server reads (created reachable by all)."""
        path = Path(self.server_dir or self.workdir)
        if not path.exists():
            path.mkdir(parents=True)
            path.chmod(0o755)
        return path


DEMO_LAYOUT = Layout(
    workdir=REPO / ".stack" / "demo",
    # a checkout may sit where gavo cannot go (/root): DaCHS's part lives here
    server_dir=Path("/var/lib/rucio-rd-demo"),
    rucio_port=18100,
    sites_port=18200,
    dachs_port=8080,
    rucio_db="rucio_rd_rucio",
    meta_db="rucio_meta",
    dachs_db="rucio_rd_dachs",
)


class Stack:
    """The three servers of a layout, and the steps that connect them."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        workdir = Path(layout.workdir)
        self.rucio = RucioServer(
            workdir=workdir / "rucio", port=layout.rucio_port, db_name=layout.rucio_db,
            meta_db_name=layout.meta_db,
        )
        self.sites = site_directory_process(workdir=workdir / "sites", port=layout.sites_port,
                                            data=workdir / "site-directory.json")
        self.dachs = DachsInstance(
            root=layout.server_files / "dachs", port=layout.dachs_port, db_name=layout.dachs_db
        )
        files_root = layout.server_files / "storage"
        self.soda_site = SodaSite(
            root=layout.server_files / "aussrc-dachs", port=layout.soda_port,
            db_name=layout.soda_db, storage_dir=files_root / SODA_SITE / "disk")
        self.storage = StorageServer(
            workdir=workdir / "storage", files_root=files_root,
            port=layout.storage_port, rucio_url=self.rucio.url,
            soda={SODA_SITE: (self.soda_site.sync_url, self.soda_site.async_url)})
        # The prototype's DataLink URL (/links, /rucio/links), redirected to DaCHS.
        self.legacy = ServerProcess(
            "legacy-links", "rucio_rd.legacy_links", workdir / "legacy", layout.legacy_port,
            ["--target", self.dachs.server_url],
        )

    @property
    def cone_url(self) -> str:
        return self.dachs.server_url + CONE_PATH

    @property
    def datalink_url(self) -> str:
        return self.dachs.server_url + DATALINK_PATH

    @property
    def plugin_config_source(self) -> Path:
        return Path(self.layout.workdir) / "rucio_rd.toml"

    def write_plugin_config(self) -> Path:
        """The plugin configuration this stack deploys (no secrets in it)."""
        path = self.plugin_config_source
        path.parent.mkdir(parents=True, exist_ok=True)
        credentials = self.rucio.credentials()
        password_file = write_server_secret(self.layout.server_files / "rucio-password",
                                            credentials["password"])
        sections = {
            "metadata": {"dsn": self.rucio.meta_dsn(), "table": "dids"},
            "rucio": {
                "url": self.rucio.url, "auth": "userpass",
                "account": credentials["account"], "username": credentials["username"],
                "password_file": str(password_file),
                "timeout": self.layout.rucio_timeout,
                "replica_cache_ttl": self.layout.replica_cache_ttl,
                "circuit_retry_after": self.layout.circuit_retry_after,
            },
            "sites": {"source": "site_directory", "url": self.sites.url,
                      "ttl": self.layout.sites_ttl},
            # Everything reaches this stack from this machine: believe its proxy headers.
            "geoip": {"trusted_proxies": ["127.0.0.1"]},
        }
        lines = ["# written by rucio_rd.stack.demo for this stack"]
        for section, values in sections.items():
            lines.append(f"[{section}]")
            # JSON strings, numbers and lists of strings are valid TOML values.
            lines.extend(f"{key} = {json.dumps(value)}" for key, value in values.items())
        path.write_text("\n".join(lines) + "\n")
        return path

    def deploy(self) -> str:
        """Run the installed ``rucio-rd deploy`` against this stack's DaCHS; return its output."""
        result = subprocess.run(
            [RUCIO_RD_COMMAND, "deploy", "--config", str(self.write_plugin_config())],
            env=self.dachs.env(), capture_output=True, encoding="utf-8",
        )
        if result.returncode != 0:
            raise RuntimeError(f"deploy failed:\n{result.stdout}{result.stderr}")
        return result.stdout

    def write_site_directory(self) -> Path:
        """The site directory's content for this stack: the demo's, with the local
        sites' storage and AUSSRC's SODA service at their loopback addresses."""
        document = json.loads(DEFAULT_DATA.read_text())
        local = {site.rse: site for site in LOCAL_SITES}
        for storage in document["storages"]:
            if storage["name"] in local:
                storage.update(host=local[storage["name"]].address, srm="http",
                               port=self.layout.storage_port)
        for site in document["services"]:
            for service in site["services"]:
                if site["name"] == SODA_SITE and service["type"].startswith("SODA"):
                    kind = "async" if "async" in service["type"] else "sync"
                    address = next(s.address for s in LOCAL_SITES if s.site == SODA_SITE)
                    service.update(prefix="http", host=address, port=self.layout.storage_port,
                                   path=f"/soda/{kind}")
        path = Path(self.layout.workdir) / "site-directory.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=1) + "\n")
        return path

    def write_site_pages(self) -> None:
        """The demo data centre's own root page and site metadata (no DaCHS
        placeholder text): ``res/demo-site/root.html`` and ``defaultmeta.txt``."""
        root = self.dachs.root
        (root / "web" / "templates").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DEMO_SITE / "root.html", root / "web" / "templates" / "root.html")
        path = root / "etc" / "defaultmeta.txt"
        path.write_text(merged_meta(path.read_text() if path.exists() else "", DEFAULT_META))

    @property
    def data_version_path(self) -> Path:
        return Path(self.layout.workdir) / "data-version"

    def _data_changed(self) -> bool:
        """The databases hold an older demo's data (files of other sizes, other hosts)."""
        if not self.rucio.workdir.exists():
            return False
        try:
            return self.data_version_path.read_text().strip() != DEMO_DATA_VERSION
        except OSError:
            return True

    def write_storage_files(self) -> int:
        """The local sites' replicas of every demo file, as real files."""
        local = {site.rse for site in LOCAL_SITES}
        return self.storage.write_files(
            (rse, demo.scope, demo.name, demo.content)
            for demo in all_files(self.layout.synthetic_files)
            for rse in demo.rses if rse in local)

    def up(self, fresh: bool = False, log=print) -> None:
        """Bring everything up; ``fresh`` first drops the stack's databases (so does a
        change of the demo's data since the last run)."""
        started = time.monotonic()
        if not fresh and self._data_changed():
            log("the demo's data changed since the last run: starting from empty databases")
            fresh = True
        if fresh:
            self.down()
            self.rucio.workdir.mkdir(parents=True, exist_ok=True)
            self.rucio.write_config()
            self.rucio.drop_databases()
            self.dachs.drop()
            self.soda_site.drop()
        self.rucio.setup()
        self.rucio.start()
        log(f"Rucio server        {self.rucio.url}")
        self.write_site_directory()
        self.sites.start()
        log(f"site directory      {self.sites.url}")
        written = self.write_storage_files()
        self.soda_site.setup()
        self.soda_site.start()
        self.storage.start()
        log("storage (nginx)     " + ", ".join(
            f"{self.storage.base_url(site.rse)} ({site.site})" for site in LOCAL_SITES)
            + f"; {written} file(s) written")
        log(f"SODA at {SODA_SITE}      {self.storage.soda_url(SODA_SITE)} (DaCHS's SODA, "
            f"{self.soda_site.dachs.server_url})")
        counts = seed(
            self.rucio.url, self.rucio.credentials(), self.datalink_url,
            synthetic=self.layout.synthetic_files, storage_port=self.layout.storage_port,
            astronomer_password=self.rucio.astronomer_password(),
        )
        self.data_version_path.write_text(DEMO_DATA_VERSION + "\n")
        log(f"seeded through Rucio's REST API: {counts}")
        self.dachs.setup()
        self.write_site_pages()
        for line in self.deploy().splitlines():
            log(f"  {line}")
        self.dachs.start()
        self.legacy.start()
        log(f"prototype URLs      {self.legacy.url}/rucio/links?id=... (redirected)")
        log(f"DaCHS               {self.dachs.server_url}  (ready in "
            f"{time.monotonic() - started:.0f} s)")

    def down(self) -> None:
        self.legacy.stop()
        self.dachs.stop()
        self.storage.stop()
        self.soda_site.stop()
        self.sites.stop()
        self.rucio.stop()


PYVO_SNIPPET = """\
Try it with pyvo (.venv/bin/python):

    from pyvo.dal import conesearch
    results = conesearch("{cone}", pos=(53.75308, -24.93365), radius=1)
    print(results.to_table()['_r', 'obs_id', 's_ra', 's_dec', 'access_url', 'access_format'])

    from pyvo.dal.adhoc import DatalinkResults
    result = results[0]
    datalink = DatalinkResults.from_result_url(
        result["access_url"] + "&client_ip_address=130.246.210.120&must_include_soda=True")
    print(next(datalink.bysemantics("#this")).access_url)

    import pyvo
    tap = pyvo.dal.TAPService("{server}/tap")
    print(tap.search("SELECT obs_id, access_url FROM ivoa.obscore "
                     "WHERE 1=CONTAINS(POINT(s_ra, s_dec), CIRCLE(53.75, -24.93, 1))").to_table())

The notebook's last mile (token, download with fallback and checksum, SODA cutout
at AUSSRC, picture), as the demo's astronomer:

    bin/rucio-rd-client --cone {cone} --pos 53.75308 -24.93365 --radius 1 \\
        --client-ip 130.246.210.120 --must-include-soda --rucio {rucio} \\
        --username astronomer --password-file {astronomer_password} \\
        --circle 53.75308 -24.93365 0.05 --png -o data

With TOPCAT or STILTS (async TAP, their default):

    stilts tapquery tapurl={server}/tap adql="SELECT TOP 5 did, access_url FROM rucio.main"

Check the deployment, and use Debian's own dachs on this instance:

    bin/check --demo
    GAVOSETTINGS={settings} GAVOCUSTOM=/invalid dachs val rucio/rucio

In a browser: {server}/rucio/rucio/cone/form
DataLink:     {server}/rucio/rucio/dl/dlmeta?ID=testing:PTF10tce.fits
                  &client_ip_address=130.246.210.120   (one line, without the break)
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the rucio_rd demo stack.")
    parser.add_argument("--detach", action="store_true",
                        help="return once everything answers and leave it running")
    parser.add_argument("--stop", action="store_true", help="stop what the demo started")
    parser.add_argument("--fresh", action="store_true",
                        help="drop the demo's databases and start from scratch")
    args = parser.parse_args(argv)
    stack = Stack(DEMO_LAYOUT)
    if args.stop:
        stack.down()
        print("demo stopped")
        return 0
    stack.up(fresh=args.fresh)
    print()
    print(PYVO_SNIPPET.format(cone=stack.cone_url, server=stack.dachs.server_url,
                              settings=stack.dachs.settings_file, rucio=stack.rucio.url,
                              astronomer_password=stack.rucio.astronomer_password_path))
    if args.detach:
        print("Running in the background; stop it with: bin/demo --stop")
        return 0
    print("Serving; press Ctrl-C to stop.")
    try:
        while stack.dachs.is_running():
            time.sleep(2)
        print("DaCHS stopped", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if not args.detach:
            stack.down()


if __name__ == "__main__":
    sys.exit(main())
