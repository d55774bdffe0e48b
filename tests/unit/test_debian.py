"""Unit tests for the Debian packages that install rucio_rd for Debian's DaCHS."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from rucio_rd.stack import debian


@pytest.fixture(scope="module")
def plugin_deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return debian.build_plugin_package(tmp_path_factory.mktemp("debs"))


def contents(deb: Path) -> set[str]:
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, encoding="utf-8",
                             check=True).stdout
    return {line.split()[-1].lstrip(".") for line in listing.splitlines()}


def field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True, encoding="utf-8",
                          check=True).stdout.strip()


def test_plugin_package_installs_the_package_for_debians_python(plugin_deb: Path) -> None:
    files = contents(plugin_deb)
    assert "/usr/lib/python3/dist-packages/rucio_rd/dachs_datalink.py" in files
    assert "/usr/lib/python3/dist-packages/rucio_rd/__main__.py" in files
    assert "/usr/bin/rucio-rd" in files


def test_plugin_package_leaves_the_developer_stack_out(plugin_deb: Path) -> None:
    assert not any("/rucio_rd/stack" in name for name in contents(plugin_deb))


def test_plugin_package_ships_the_rd_and_the_templates(plugin_deb: Path) -> None:
    files = contents(plugin_deb)
    for name in ("inputs/rucio/rucio.rd", "inputs/rucio/dlcore.py", "res/rucio_rd.toml.example",
                 "res/vocabularies/uat-offline-subset.desise", "BUILD"):
        assert f"/usr/share/rucio-rd/{name}" in files


def test_plugin_package_depends_on_debians_packages(plugin_deb: Path) -> None:
    depends = field(plugin_deb, "Depends")
    for package in ("python3-geoip2", "python3-requests", "python3-psycopg2",
                    "gavodachs2-server"):
        assert package in depends
    assert field(plugin_deb, "Recommends") == "rucio-rd-geolite2"
    assert field(plugin_deb, "Architecture") == "all"


def test_digest_changes_with_any_shipped_file(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    for relative in debian.plugin_files():
        (repo / relative).parent.mkdir(parents=True, exist_ok=True)
        (repo / relative).write_bytes((debian.REPO / relative).read_bytes())
    (repo / "rucio_rd/stack").mkdir(parents=True, exist_ok=True)
    (repo / "rucio_rd/stack/debian.py").write_bytes(Path(debian.__file__).read_bytes())
    before = debian.source_digest(repo)
    (repo / "inputs/rucio/rucio.rd").write_text("<resource/>")
    assert debian.source_digest(repo) != before
