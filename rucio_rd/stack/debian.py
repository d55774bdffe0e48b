"""Builds and installs the Debian packages that make rucio_rd a plugin of Debian's DaCHS.

Debian's DaCHS runs on ``/usr/bin/python3``: its server, the ``gavo taprun``
processes behind async TAP and every ``dachs`` command.  The plugin must be
importable there, with its dependencies from Debian, and removable the way a
Debian administrator expects (``apt remove``).  So the source tree is turned
into two ``Architecture: all`` packages:

``python3-rucio-rd``
    ``/usr/lib/python3/dist-packages/rucio_rd`` (without the developer stack),
    ``/usr/share/rucio-rd/{inputs,res}`` (the RD, the configuration template,
    the example site file, the offline UAT seed), ``/usr/bin/rucio-rd``.
    Depends on python3-geoip2, python3-requests, python3-psycopg2 and
    gavodachs2-server; byte-compiled by ``py3compile`` like any Debian
    Python package.
``rucio-rd-geolite2``
    ``/usr/share/rucio-rd/geoip/GeoLite2-City.mmdb``, the 2018 GeoLite2 City
    database taken from the PyPI sdist of ``maxminddb-geolite2`` (the
    plugin's embedded default; Debian has no GeoLite2 City package).

``python -m rucio_rd.stack.debian ensure`` (run by ``bin/install``) builds
and installs whatever is missing or out of date: the plugin package when
its sources changed (a digest of the files it ships, recorded in
``/usr/share/rucio-rd/BUILD``), the database package once.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
from pathlib import Path

__all__ = [
    "GEOLITE_PACKAGE",
    "PLUGIN_PACKAGE",
    "build_geolite_package",
    "build_plugin_package",
    "ensure_installed",
    "package_version",
    "plugin_files",
    "source_digest",
]

REPO = Path(__file__).resolve().parents[2]
PLUGIN_PACKAGE = "python3-rucio-rd"
GEOLITE_PACKAGE = "rucio-rd-geolite2"
GEOLITE_VERSION = "2018.703"
SHARE = Path("usr/share/rucio-rd")
DIST_PACKAGES = Path("usr/lib/python3/dist-packages")
BUILD_STAMP = Path("/") / SHARE / "BUILD"

PLUGIN_DEPENDS = (
    "python3 (>= 3.11)",
    "python3-geoip2",
    "python3-requests",
    "python3-psycopg2",
    "gavodachs2-server (>= 2.7)",
)

# What the plugin package ships from the source tree, besides the package.
_SHARED_FILES = (
    "inputs/rucio/rucio.rd",
    "inputs/rucio/dlcore.py",
    "res/rucio_rd.toml.example",
    "res/site-directory.json",
    "res/vocabularies/uat-offline-subset.desise",
)

_COMMAND = """#!/usr/bin/python3
# rucio_rd's operator command (check, deploy); see rucio-rd --help.
import sys

from rucio_rd.__main__ import main

sys.exit(main())
"""

# py3compile/py3clean are what dh_python3 would have put here.
_POSTINST = """#!/bin/sh
set -e
if [ "$1" = configure ] && command -v py3compile >/dev/null 2>&1; then
    py3compile -p python3-rucio-rd
fi
"""
_PRERM = """#!/bin/sh
set -e
if command -v py3clean >/dev/null 2>&1; then
    py3clean -p python3-rucio-rd
fi
# DaCHS loads the RD's custom core from here (as root it may leave bytecode).
rm -rf /usr/share/rucio-rd/inputs/rucio/__pycache__
"""

_COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: rucio_rd

Files: *
License: BSD-3-Clause
"""

_GEOLITE_COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: GeoLite2 City (as shipped by the PyPI package maxminddb-geolite2 2018.703)
Source: https://pypi.org/project/maxminddb-geolite2/

Files: usr/share/rucio-rd/geoip/GeoLite2-City.mmdb
Copyright: MaxMind, Inc.
License: CC-BY-SA-4.0
 This product includes GeoLite2 data created by MaxMind, available from
 https://www.maxmind.com.  Built 2018-07-03: addresses allocated or moved
 since then are missing or misplaced; point [geoip] database at a current
 GeoLite2-City.mmdb in production.
"""


def plugin_files(repo: Path = REPO) -> list[Path]:
    """The source files the plugin package ships, relative to ``repo``, sorted: not the
    stack (the demo's and the tests') and not the astronomer's client (it needs pyvo,
    which DaCHS does not, and runs where the astronomer is)."""
    package = sorted(
        path.relative_to(repo)
        for path in (repo / "rucio_rd").rglob("*.py")
        if not {"stack", "client"} & set(path.relative_to(repo / "rucio_rd").parts[:-1])
        and "__pycache__" not in path.parts
    )
    return package + [Path(name) for name in _SHARED_FILES]


def source_digest(repo: Path = REPO) -> str:
    """A digest of everything that decides the plugin package's content."""
    digest = hashlib.sha256()
    for relative in [*plugin_files(repo), Path("rucio_rd/stack/debian.py")]:
        digest.update(str(relative).encode() + b"\0" + (repo / relative).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def package_version(repo: Path = REPO, built: float | None = None) -> str:
    """``<__version__>+<UTC build time>``: every build is newer, so apt upgrades to it."""
    text = (repo / "rucio_rd" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([0-9][0-9A-Za-z.~]*)"$', text, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no __version__ = \"...\" in {repo / 'rucio_rd' / '__init__.py'}")
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(built))
    return f"{match.group(1)}+{stamp}"


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _control(package: str, version: str, fields: dict[str, str], description: str,
             section: str = "python") -> str:
    lines = [f"Package: {package}", f"Version: {version}", "Architecture: all",
             "Maintainer: rucio_rd developers <rucio-rd@localhost>",
             f"Section: {section}", "Priority: optional"]
    lines += [f"{key}: {value}" for key, value in fields.items()]
    summary, *rest = textwrap.dedent(description).strip().splitlines()
    lines.append(f"Description: {summary.strip()}")
    lines += [f" {line}" if line.strip() else " ." for line in textwrap.dedent(
        "\n".join(rest)).splitlines()]
    return "\n".join(lines) + "\n"


def _dpkg_deb(root: Path, outdir: Path, name: str) -> Path:
    for directory in [root, *root.rglob("*")]:
        if directory.is_dir():
            directory.chmod(0o755)
    target = Path(outdir) / name
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root),
                    str(target)], check=True, capture_output=True)
    return target


def build_plugin_package(outdir: Path, repo: Path = REPO) -> Path:
    """Build ``python3-rucio-rd_<version>_all.deb`` into ``outdir``; return its path.

    Older builds of the package in ``outdir`` are removed, so that
    ``apt install ./<outdir>/python3-rucio-rd_*_all.deb`` names one file.
    """
    version = package_version(repo)
    for old in Path(outdir).glob(f"{PLUGIN_PACKAGE}_*_all.deb"):
        old.unlink()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "root"
        for relative in plugin_files(repo):
            if relative.parts[0] == "rucio_rd":
                target = root / DIST_PACKAGES / relative
            else:
                target = root / SHARE / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(repo / relative, target)
            target.chmod(0o644)
        _write(root / SHARE / "BUILD", source_digest(repo) + "\n")
        _write(root / "usr/bin/rucio-rd", _COMMAND, 0o755)
        doc = root / "usr/share/doc" / PLUGIN_PACKAGE
        _write(doc / "copyright", _COPYRIGHT)
        shutil.copyfile(repo / "README.md", doc / "README.md")
        _write(root / "DEBIAN/control", _control(
            PLUGIN_PACKAGE, version,
            {"Depends": ", ".join(PLUGIN_DEPENDS), "Recommends": GEOLITE_PACKAGE},
            """A GAVO DaCHS plugin publishing a Rucio data lake to the Virtual Observatory
            Cone search, TAP and ObsCore over the files of a Rucio data lake, and a
            DataLink service that hands each client the nearest replica of a file and
            the SODA services of the site holding it.

            The resource descriptor is installed in /usr/share/rucio-rd/inputs/rucio;
            "rucio-rd deploy" links it into DaCHS's inputs, and "rucio-rd check"
            checks a deployment."""))
        _write(root / "DEBIAN/postinst", _POSTINST, 0o755)
        _write(root / "DEBIAN/prerm", _PRERM, 0o755)
        return _dpkg_deb(root, outdir, f"{PLUGIN_PACKAGE}_{version}_all.deb")


def build_geolite_package(sdist: Path, outdir: Path) -> Path:
    """Build ``rucio-rd-geolite2`` from the ``maxminddb-geolite2`` sdist; return its path."""
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "root"
        target = root / SHARE / "geoip" / "GeoLite2-City.mmdb"
        target.parent.mkdir(parents=True)
        with tarfile.open(sdist) as archive:
            member = next((m for m in archive.getmembers()
                           if m.name.endswith("/GeoLite2-City.mmdb") and m.isfile()), None)
            if member is None:
                raise RuntimeError(f"{sdist} holds no GeoLite2-City.mmdb")
            with archive.extractfile(member) as source, open(target, "wb") as sink:
                shutil.copyfileobj(source, sink)
        target.chmod(0o644)
        _write(root / "usr/share/doc" / GEOLITE_PACKAGE / "copyright", _GEOLITE_COPYRIGHT)
        _write(root / "DEBIAN/control", _control(
            GEOLITE_PACKAGE, GEOLITE_VERSION, {},
            """GeoLite2 City database (2018) for rucio_rd's replica ranking
            The GeoLite2 City database by MaxMind as shipped by the PyPI package
            maxminddb-geolite2 2018.703, the default that rucio_rd geolocates
            clients with.  It is dated: use a current database in production.""",
            section="misc"))
        return _dpkg_deb(root, outdir, f"{GEOLITE_PACKAGE}_{GEOLITE_VERSION}_all.deb")


def _installed_version(package: str) -> str | None:
    result = subprocess.run(["dpkg-query", "-W", "-f=${Status} ${Version}", package],
                            capture_output=True, encoding="utf-8")
    status = result.stdout.split()
    if result.returncode != 0 or status[:3] != ["install", "ok", "installed"]:
        return None
    return status[3] if len(status) > 3 else ""


def _install(deb: Path) -> None:
    """dpkg -i (which reinstalls the same version), then let apt bring any dependency."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    result = subprocess.run(["dpkg", "-i", str(deb)], capture_output=True, encoding="utf-8",
                            env=env)
    if result.returncode != 0:
        fixed = subprocess.run(["apt-get", "-f", "install", "-y", "-q"], capture_output=True,
                               encoding="utf-8", env=env)
        if fixed.returncode != 0:
            raise RuntimeError(f"installing {deb.name} failed:\n{result.stderr}{fixed.stderr}")


def _fetch_geolite_sdist(cache: Path, pip: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    name = f"maxminddb-geolite2-{GEOLITE_VERSION}.tar.gz"
    if not (cache / name).is_file():
        subprocess.run([str(pip), "download", "-q", "--no-deps", "--no-binary", ":all:",
                        f"maxminddb-geolite2=={GEOLITE_VERSION}", "-d", str(cache)],
                       check=True, capture_output=True)
    return cache / name


def ensure_installed(workdir: Path, pip: Path, log=print) -> None:
    """Build and install what is missing or stale; a second call does nothing."""
    if _installed_version(GEOLITE_PACKAGE) != GEOLITE_VERSION:
        log(f"building and installing {GEOLITE_PACKAGE}")
        sdist = _fetch_geolite_sdist(workdir / "cache", pip)
        _install(build_geolite_package(sdist, workdir / "debs"))
    want = source_digest()
    have = BUILD_STAMP.read_text().strip() if BUILD_STAMP.is_file() else None
    if _installed_version(PLUGIN_PACKAGE) is None or have != want:
        log(f"building and installing {PLUGIN_PACKAGE} ({want})")
        _install(build_plugin_package(workdir / "debs"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    ensure = sub.add_parser("ensure", help="build and install what is missing or stale")
    ensure.add_argument("--workdir", type=Path, default=REPO / ".stack" / "debian")
    ensure.add_argument("--pip", type=Path, default=REPO / ".venv" / "bin" / "pip")
    build = sub.add_parser("build", help="build both packages into --outdir, install nothing")
    build.add_argument("--outdir", type=Path, default=REPO / "dist")
    build.add_argument("--workdir", type=Path, default=REPO / ".stack" / "debian")
    build.add_argument("--pip", type=Path, default=REPO / ".venv" / "bin" / "pip")
    sub.add_parser("current", help="exit 0 when the installed plugin package is current")
    args = parser.parse_args(argv)
    if args.action == "ensure":
        ensure_installed(args.workdir, args.pip, log=lambda m: print(f"[install] {m}"))
    elif args.action == "build":
        print(build_plugin_package(args.outdir))
        sdist = _fetch_geolite_sdist(args.workdir / "cache", args.pip)
        print(build_geolite_package(sdist, args.outdir))
    else:
        have = BUILD_STAMP.read_text().strip() if BUILD_STAMP.is_file() else None
        return 0 if have == source_digest() else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
