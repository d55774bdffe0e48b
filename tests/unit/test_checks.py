"""Unit tests for rucio_rd.checks: the operator's checks, without DaCHS or servers."""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rucio_rd import checks, config
from rucio_rd.checks import FAIL, OK, WARN, Outcome, ServerAccount
from rucio_rd.model import SODA_SYNC, Position, Site, SiteCatalogue, SodaService
from rucio_rd.rucio import RucioAuthError, RucioUnavailable

# A server account that is not ours and in none of our groups.
SERVER = ServerAccount("gavo", uid=64000, gids=frozenset({64000}), group="gavo")


@pytest.fixture
def open_dir() -> Path:
    """A directory every user can reach (pytest's own are closed to other users)."""
    path = Path(tempfile.mkdtemp(prefix="rucio_rd-unit-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def secret(directory: Path, mode: int, gid: int | None = None) -> Path:
    path = directory / "secret"
    path.write_text("s3cret")
    path.chmod(mode)
    if gid is not None:
        os.chown(path, -1, gid)
    return path


def settings_with(tmp_path: Path, text: str) -> config.Settings:
    path = tmp_path / "rucio_rd.toml"
    path.write_text(text)
    return config.load_settings(path, environ={})


# --- readable_by ------------------------------------------------------------------------


def test_owner_only_file_is_not_readable_by_the_server(open_dir: Path) -> None:
    problem = checks.readable_by(secret(open_dir, 0o600), SERVER)
    assert problem is not None
    assert "gavo cannot read it" in problem and "-rw-------" in problem


def test_group_readable_file_in_the_servers_group_is_readable(open_dir: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can give a file to another group")
    assert checks.readable_by(secret(open_dir, 0o640, gid=64000), SERVER) is None


def test_group_readable_file_of_another_group_is_not_readable(open_dir: Path) -> None:
    assert checks.readable_by(secret(open_dir, 0o640), SERVER) is not None


def test_closed_directory_is_named(open_dir: Path) -> None:
    path = secret(open_dir, 0o644)
    open_dir.chmod(0o700)
    problem = checks.readable_by(path, SERVER)
    assert problem == f"the directory {open_dir} is closed to gavo"


def test_missing_file_is_named(open_dir: Path) -> None:
    problem = checks.readable_by(open_dir / "absent", SERVER)
    assert problem is not None and "absent" in problem


def test_root_reads_everything(open_dir: Path) -> None:
    root = ServerAccount("root", 0, frozenset({0}))
    assert checks.readable_by(secret(open_dir, 0o000), root) is None


# --- check_secret_files ----------------------------------------------------------------


def test_world_readable_password_file_fails_saying_chmod(open_dir: Path) -> None:
    path = secret(open_dir, 0o644)
    settings = settings_with(open_dir, f'[rucio]\npassword_file = "{path}"\n')
    [outcome] = checks.check_secret_files(settings, SERVER)
    assert outcome.status == FAIL
    assert outcome.message == f"{path} is readable by every user (mode -rw-r--r--); chmod o-rwx it"
    assert "s3cret" not in outcome.line()


def test_unreadable_password_file_fails_saying_chgrp(open_dir: Path) -> None:
    path = secret(open_dir, 0o600)
    settings = settings_with(open_dir, f'[rucio]\npassword_file = "{path}"\n')
    [outcome] = checks.check_secret_files(settings, SERVER)
    assert outcome.status == FAIL
    assert f"chgrp gavo {path} && chmod 640 {path}" in outcome.message


def test_private_password_file_readable_by_the_server_passes(open_dir: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can give a file to another group")
    path = secret(open_dir, 0o640, gid=64000)
    settings = settings_with(open_dir, f'[rucio]\npassword_file = "{path}"\n')
    [outcome] = checks.check_secret_files(settings, SERVER)
    assert outcome == Outcome("secret [rucio] password_file", OK,
                              f"{path} is readable by gavo and not by others")


def test_secret_readable_by_another_group_fails_saying_chgrp(open_dir: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can give a file to another group")
    path = secret(open_dir, 0o640, gid=64001)  # the server's uid owns none of it
    os.chown(path, 64000, -1)
    settings = settings_with(open_dir, f'[rucio]\npassword_file = "{path}"\n')
    [outcome] = checks.check_secret_files(settings, SERVER)
    assert outcome.status == FAIL
    assert outcome.message.endswith("(mode -rw-r-----); chgrp gavo it")
    assert "readable by the group" in outcome.message


def test_configuration_file_is_held_to_the_same_rule(open_dir: Path) -> None:
    settings = settings_with(open_dir, "")
    (open_dir / "rucio_rd.toml").chmod(0o644)
    [outcome] = checks.check_secret_files(settings, SERVER, open_dir / "rucio_rd.toml")
    assert outcome.name == "secret configuration file" and outcome.status == FAIL


def test_secret_files_of_other_auth_methods_are_not_checked(open_dir: Path) -> None:
    path = secret(open_dir, 0o600)
    settings = settings_with(
        open_dir, f'[rucio]\nauth = "userpass"\noidc_client_secret_file = "{path}"\n')
    assert checks.check_secret_files(settings, SERVER) == []


# --- check_authority, check_configuration, check_rd_link -------------------------------


@pytest.mark.parametrize("authority", ["", "x-unregistered"])
def test_unregistered_authority_fails_saying_how_to_set_it(authority: str) -> None:
    outcome = checks.check_authority(authority)
    assert outcome.status == FAIL
    assert "dachs pub" in outcome.message and "authority: data.example.org" in outcome.message


def test_real_authority_passes() -> None:
    assert checks.check_authority("data.example.org") == Outcome(
        "DaCHS authority", OK, "ivo://data.example.org")


def test_missing_configuration_fails_naming_deploy() -> None:
    outcome, settings = checks.check_configuration(None)
    assert settings is None and outcome.status == FAIL and "rucio-rd deploy" in outcome.message


def test_configuration_without_credentials_fails_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "rucio_rd.toml"
    path.write_text('[rucio]\nauth = "userpass"\n')
    outcome, settings = checks.check_configuration(path)
    assert settings is None and outcome.status == FAIL
    assert "[rucio] username must be set" in outcome.message


def test_rd_link_to_another_directory_fails(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "rucio").symlink_to(tmp_path / "elsewhere")
    outcome = checks.check_rd_link(tmp_path / "inputs", tmp_path / "rd")
    assert outcome.status == FAIL and "not this installation's" in outcome.message


def test_rd_link_to_this_rd_passes(tmp_path: Path) -> None:
    (tmp_path / "rd").mkdir()
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "rucio").symlink_to(tmp_path / "rd")
    assert checks.check_rd_link(tmp_path / "inputs", tmp_path / "rd").status == OK


# --- Rucio ------------------------------------------------------------------------------


class FakeRucio:
    def __init__(self, whoami=None, ping=None) -> None:
        self._whoami, self._ping = whoami, ping

    def ping(self):
        if isinstance(self._ping, Exception):
            raise self._ping
        return {"version": "41.5.1"}

    def whoami(self):
        if isinstance(self._whoami, Exception):
            raise self._whoami
        return {"account": "datalink"}


def test_rucio_accepting_the_credentials_passes_naming_version_and_account() -> None:
    outcome = checks.check_rucio(config.Settings(), FakeRucio())
    assert outcome.status == OK
    assert "Rucio 41.5.1" in outcome.message and "account datalink" in outcome.message


def test_rucio_refusing_the_credentials_is_refuses() -> None:
    state, message = checks.rucio_state(
        config.Settings(), FakeRucio(whoami=RucioAuthError("401 CannotAuthenticate")))
    assert state == checks.RUCIO_REFUSES
    assert "refuses the service's credentials" in message and "[rucio] auth" in message


def test_rucio_down_is_unreachable() -> None:
    state, message = checks.rucio_state(
        config.Settings(), FakeRucio(ping=RucioUnavailable("connection refused")))
    assert state == checks.RUCIO_UNREACHABLE and "[rucio] url" in message


# --- sites ------------------------------------------------------------------------------

SODA = SodaService(SODA_SYNC, "https://soda.example/sync")
CATALOGUE = SiteCatalogue({
    "SPAIN": Site("ES", Position(37.2, -3.6), soda_sync=SODA),
    "SPAIN_TAPE": Site("ES", Position(37.2, -3.6), soda_sync=SODA),
    "UK": Site("UK", Position(51.6, -1.3)),
    "NOWHERE": Site("XX", None),
})


def test_sites_are_counted_once_per_site() -> None:
    [outcome] = checks.check_sites(config.Settings(), lambda: CATALOGUE)
    assert outcome.status == OK
    assert "3 sites, 4 RSEs (3 with a position), 1 SODA services" in outcome.message


def test_rucio_rses_without_position_are_a_warning_naming_them() -> None:
    outcomes = checks.check_sites(config.Settings(), lambda: CATALOGUE,
                                  lambda: ["SPAIN", "UK", "NOWHERE", "MOON"])
    assert outcomes[1].status == WARN
    assert outcomes[1].message.endswith("MOON, NOWHERE")


def test_unreachable_site_source_fails_naming_it() -> None:
    def down():
        raise ConnectionError("connection refused")

    [outcome] = checks.check_sites(config.Settings(), down)
    assert outcome.status == FAIL
    assert outcome.message == "http://127.0.0.1:18200 cannot be read: connection refused"


# --- metadata ---------------------------------------------------------------------------


@pytest.mark.parametrize("dsn, shown", [
    ("dbname=meta host=db password=TopSecret user=rucio",
     "dbname=meta host=db password=*** user=rucio"),
    ("postgresql://rucio:TopSecret@db:5432/meta", "user=rucio password=*** host=db port=5432"
     " dbname=meta"),
    ("dbname=meta host=127.0.0.1", "dbname=meta host=127.0.0.1"),
    ("password='Top Secret", "(a connection string that libpq cannot parse)"),
])
def test_dsns_are_shown_without_their_password(dsn: str, shown: str) -> None:
    # libpq's own order of the keywords
    assert sorted(checks.redacted_dsn(dsn).split()) == sorted(shown.split())


def test_unreachable_metadata_database_fails_without_the_password() -> None:
    settings = config.Settings(metadata=config.MetadataSettings(
        dsn="host=127.0.0.1 port=9 dbname=meta password=TopSecret connect_timeout=2"))
    outcome = checks.check_metadata(settings)
    assert outcome.status == FAIL and "TopSecret" not in outcome.message
    assert "password=***" in outcome.message


# --- GeoIP ------------------------------------------------------------------------------


def test_embedded_geoip_database_is_a_warning_for_its_age() -> None:
    outcome = checks.check_geoip(config.Settings(), datetime(2026, 11, 26, tzinfo=UTC))
    assert outcome.status == WARN
    assert "built 2018-07-03, 8 years old" in outcome.message
    assert "[geoip] database" in outcome.message


def test_young_geoip_database_passes() -> None:
    outcome = checks.check_geoip(config.Settings(), datetime(2018, 12, 1, tzinfo=UTC))
    assert outcome.status == OK


def test_missing_geoip_database_fails_naming_the_key(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, f'[geoip]\ndatabase = "{tmp_path}/none.mmdb"\n')
    outcome = checks.check_geoip(settings)
    assert outcome.status == FAIL and "[geoip] database" in outcome.message


# --- published table --------------------------------------------------------------------


def test_published_table_gives_rows_and_import_time() -> None:
    answers = {
        "SELECT to_regclass": [(True,)],
        "SELECT count": [(303,)],
        "SELECT data_updated": [(datetime(2026, 11, 26, 9, 38, 8),)],
    }

    def query(statement: str):
        return next(rows for start, rows in answers.items() if statement.startswith(start))

    assert checks.check_published(query) == Outcome(
        "published table", OK, "rucio.main: 303 rows, last imported 2026-11-26 09:38:08 UTC")


def test_missing_published_table_fails_naming_deploy() -> None:
    outcome = checks.check_published(lambda statement: [(False,)])
    assert outcome.status == FAIL and "run rucio-rd deploy" in outcome.message


def test_outcome_line_is_status_name_message() -> None:
    assert Outcome("Rucio", FAIL, "down").line() == "FAIL  Rucio: down"
    assert checks.failed([Outcome("a", WARN, ""), Outcome("b", FAIL, "")]) == [
        Outcome("b", FAIL, "")]


def test_sync_shows_the_last_run_and_the_unusable_records() -> None:
    answers = {
        "SELECT to_regclass": [(True,)],
        "SELECT finished": [(datetime(2026, 11, 26, 12, 0, 5), "incremental", 1000, 3, 2, 1,
                             False)],
        "SELECT reason": [("no access_url", 2, "s:a.fits"), ("s_ra is not a number", 1,
                                                             "s:b.fits")],
    }

    def query(statement: str):
        return next(rows for start, rows in answers.items() if statement.startswith(start))

    assert checks.check_sync(query) == [
        Outcome("last sync", OK, "2026-11-26 12:00:05 UTC (incremental): 1000 metadata"
                                 " records; 3 added, 2 changed, 1 deleted"),
        Outcome("unusable records", WARN, "2 x no access_url (e.g. 's:a.fits')"),
        Outcome("unusable records", WARN, "1 x s_ra is not a number (e.g. 's:b.fits')"),
    ]


def test_an_old_or_missing_sync_is_a_warning() -> None:
    never = checks.check_sync(lambda statement: [(False,)])
    assert [outcome.status for outcome in never] == [WARN]
    assert "never run" in never[0].message
    answers = {"SELECT to_regclass": [(True,)],
               "SELECT finished": [(datetime(2026, 1, 1), "full", 5, 5, 0, 0, True)],
               "SELECT reason": []}
    [old] = checks.check_sync(
        lambda statement: next(rows for start, rows in answers.items()
                               if statement.startswith(start)))
    assert old.status == WARN and "is the schedule running?" in old.message
