"""Unit tests for rucio_rd.dependencies and the table of site sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from rucio_rd import dependencies
from rucio_rd.config import ConfigError, load_settings
from rucio_rd.links import ReplicaResolver

REPO = Path(__file__).resolve().parents[2]


class FakeRucio:
    def list_rses(self) -> list[str]:
        return ["ES_RSE"]

    def rse_attributes(self, rse: str) -> dict:
        return {rse: True, "latitude": "37.19", "longitude": "-3.6", "site": "SPSRC"}


def settings_with(tmp_path: Path, text: str):
    path = tmp_path / "rucio_rd.toml"
    path.write_text(text)
    return load_settings(path, environ={})


def test_file_source_reads_the_site_directory_shapes(tmp_path: Path) -> None:
    settings = settings_with(
        tmp_path, f'[sites]\nsource = "file"\nfile = "{REPO / "res" / "site-directory.json"}"\n')
    catalogue = dependencies.make_site_source(settings, FakeRucio()).get()
    assert catalogue.site_for_rse("SPSRC_STORAGE").has_soda
    assert not catalogue.site_for_rse("UKSRC_RAL_STORAGE").has_soda


def test_rucio_source_reads_rse_attributes(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, '[sites]\nsource = "rucio"\n')
    site = dependencies.make_site_source(settings, FakeRucio()).get().site_for_rse("ES_RSE")
    assert (site.position.latitude, site.position.longitude) == (37.19, -3.6)


def test_site_directory_source_is_the_default(tmp_path: Path) -> None:
    source = dependencies.make_site_source(settings_with(tmp_path, ""), FakeRucio())
    assert source.get  # built without contacting anything


def test_resolver_is_built_without_contacting_servers(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    settings = settings_with(tmp_path, (
        '[rucio]\nurl = "http://127.0.0.1:9"\nusername = "u"\n'
        f'password_file = "{password}"\n'))
    resolver = dependencies.make_resolver(settings, metadata_lookup=lambda dids: {})
    assert isinstance(resolver, ReplicaResolver)
    assert "s3cret" not in repr(settings) and "s3cret" not in repr(resolver.rucio)


def test_missing_credentials_name_the_key(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, '[rucio]\nusername = "u"\n')
    with pytest.raises(ConfigError, match="password"):
        dependencies.make_resolver(settings)


def test_unreadable_password_file_names_the_key_not_the_content(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="password_file"):
        settings_with(tmp_path, f'[rucio]\npassword_file = "{tmp_path / "nope"}"\n')


def test_the_site_source_table_is_what_the_configuration_accepts(tmp_path: Path) -> None:
    from rucio_rd import config, sites

    for source in sites.SITE_SOURCES:
        settings = settings_with(tmp_path, f'[sites]\nsource = "{source}"\n')
        assert sites.describe_source(settings.sites)
    with pytest.raises(config.ConfigError, match="is not one of site_directory, file, rucio"):
        settings_with(tmp_path, '[sites]\nsource = "ldap"\n')
