"""The operator's commands against the real stack: ``rucio-rd check``, a deploy that
cannot half-fail, and a configuration change picked up by ``dachs serve reload``.

Each test that changes the stack's configuration puts it back before it ends.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
import tomllib
from pathlib import Path

import psycopg2
import pytest
import requests

from rucio_rd.stack.dachs_instance import DachsInstance
from rucio_rd.stack.demo import Stack, write_server_secret

WALLABY = "sp3531_soda:2023-07-18-16-40-27_ASK-WALLABY_Eridanus_cutout-574594-imagecube-42178.fits"


def variant(stack: Stack, name: str, **sections: dict) -> Path:
    """The stack's plugin configuration with some keys changed, as a new file."""
    document = tomllib.loads(stack.plugin_config_source.read_text())
    for section, changes in sections.items():
        document.setdefault(section, {}).update(changes)
    path = Path(stack.layout.workdir) / "variants" / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o755)
    lines = []
    for section, values in document.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in values.items())
    # like an operator's file: readable by the server's group, not by others
    return write_server_secret(path, "\n".join(lines) + "\n")


def wrong_password_file(stack: Stack) -> Path:
    return write_server_secret(Path(stack.layout.workdir) / "variants" / "wrong-password",
                               "not-the-password")


def rucio_rd(stack: Stack, *args: str, config: Path | None = None,
             settings: Path | None = None) -> subprocess.CompletedProcess:
    env = stack.dachs.env()
    if config is not None:
        env["RUCIO_RD_CONFIG"] = str(config)
    if settings is not None:
        env["GAVOSETTINGS"] = str(settings)
    return subprocess.run(["/usr/bin/rucio-rd", *args], env=env, cwd="/", capture_output=True,
                          encoding="utf-8", timeout=300)


def lines_of(result: subprocess.CompletedProcess, status: str) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.lstrip().startswith(status)]


# --- rucio-rd check ---------------------------------------------------------------------


def test_check_passes_on_the_stack(stack: Stack) -> None:
    result = rucio_rd(stack, "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines_of(result, "FAIL") == []
    for name in ("plugin for DaCHS", "DaCHS authority", "resource descriptor", "configuration",
                 "secret [rucio] password_file", "Rucio", "sites (site_directory)",
                 "RSE positions", "GeoIP database", "metadata table", "published table",
                 "last sync"):
        assert re.search(rf"^(ok|warn)\s+{re.escape(name)}: ", result.stdout, re.MULTILINE), name
    assert "3 sites, 3 RSEs (3 with a position), 4 SODA services" in result.stdout
    assert re.search(r"published table: rucio\.main: 303 rows, last imported \d{4}-",
                     result.stdout)
    assert "GeoLite2-City built 2018-07-03" in result.stdout
    assert stack.rucio.credentials()["password"] not in result.stdout


def test_check_fails_naming_a_wrong_rucio_password(stack: Stack) -> None:
    config = variant(stack, "wrong-password",
                     rucio={"password_file": str(wrong_password_file(stack))})
    result = rucio_rd(stack, "check", config=config)
    assert result.returncode == 1
    [failure] = lines_of(result, "FAIL")
    assert failure.startswith("FAIL  Rucio: ")
    assert "refuses the service's credentials" in failure
    assert "not-the-password" not in result.stdout + result.stderr


def test_check_fails_naming_an_unreadable_password_file(stack: Stack) -> None:
    secret = Path(stack.layout.workdir) / "variants" / "root-only-password"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text(stack.rucio.credentials()["password"])
    secret.chmod(0o600)
    config = variant(stack, "root-only", rucio={"password_file": str(secret)})
    result = rucio_rd(stack, "check", config=config)
    assert result.returncode == 1
    [failure] = lines_of(result, "FAIL")
    assert failure.startswith("FAIL  secret [rucio] password_file: ")
    assert "gavo cannot read it" in failure and f"chgrp gavo {secret}" in failure


def test_check_fails_naming_an_unreachable_site_directory(stack: Stack) -> None:
    config = variant(stack, "no-sites", sites={"url": "http://127.0.0.1:9"})
    result = rucio_rd(stack, "check", config=config)
    assert result.returncode == 1
    [failure] = lines_of(result, "FAIL")
    assert failure.startswith("FAIL  sites (site_directory): http://127.0.0.1:9 cannot be read")


# --- a deploy that cannot half-fail -------------------------------------------------------


def state(stack: Stack) -> dict:
    """What a failed deploy must leave alone: configuration, RD link, published rows."""
    installed = stack.dachs.plugin_config
    info = installed.stat()
    with psycopg2.connect(dbname=stack.layout.dachs_db) as connection, \
            connection.cursor() as cursor:
        cursor.execute("SELECT count(*), md5(string_agg(did || access_url, ',' ORDER BY did))"
                       " FROM rucio.main")
        rows = cursor.fetchone()
        cursor.execute("SELECT data_updated FROM dc.rdmeta WHERE sourcerd = 'rucio/rucio'")
        updated = cursor.fetchone()
        cursor.execute("SELECT resid, deleted FROM dc.resources WHERE sourcerd = 'rucio/rucio'"
                       " ORDER BY resid")
        published = cursor.fetchall()
    connection.close()
    return {
        "config": hashlib.sha256(installed.read_bytes()).hexdigest(),
        "config mode": (info.st_mode, info.st_uid, info.st_gid),
        "link": os.readlink(stack.dachs.root / "inputs" / "rucio"),
        "rows": rows,
        "imported": updated,
        "published": published,
    }


@pytest.mark.parametrize("name, changes, failing", [
    ("wrong Rucio password", "wrong_password", "Rucio"),
    ("bad metadata dsn", {"metadata": {"dsn": "dbname=no_such_database host=127.0.0.1"}},
     "metadata table"),
    ("unreadable password file", "root_only", "secret [rucio] password_file"),
    ("unknown key", {"rucio": {"pasword": "typo"}}, "configuration"),
], ids=["wrong-password", "bad-dsn", "unreadable-secret", "unknown-key"])
def test_deploy_with_a_bad_setting_changes_nothing(
    stack: Stack, name: str, changes, failing: str
) -> None:
    if changes == "wrong_password":
        changes = {"rucio": {"password_file": str(wrong_password_file(stack))}}
    elif changes == "root_only":
        secret = Path(stack.layout.workdir) / "variants" / "root-only-secret"
        secret.parent.mkdir(parents=True, exist_ok=True)
        secret.write_text(stack.rucio.credentials()["password"])
        secret.chmod(0o600)
        changes = {"rucio": {"password_file": str(secret)}}
    before = state(stack)
    result = rucio_rd(stack, "deploy", "--config", str(variant(stack, "bad", **changes)))
    assert result.returncode == 1, result.stdout
    assert re.search(rf"^\s+FAIL\s+{re.escape(failing)}: ", result.stdout, re.MULTILINE), \
        result.stdout
    assert "nothing was changed" in result.stderr
    assert state(stack) == before


def test_deploy_refuses_dachs_default_authority_before_changing_anything(stack: Stack) -> None:
    settings = Path(stack.layout.workdir) / "variants" / "gavo-unregistered.rc"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(stack.dachs.settings_file.read_text().replace(
        "authority: rucio-rd.example", "authority: x-unregistered"))
    before = state(stack)
    result = rucio_rd(stack, "deploy", "--config", str(stack.plugin_config_source),
                      settings=settings)
    assert result.returncode == 1
    assert "FAIL  DaCHS authority: [ivoa] authority is 'x-unregistered'" in result.stdout
    assert state(stack) == before


def no_data_table(stack: Stack) -> str:
    """A metadata table every check can read, but without a data column: imports fail."""
    with psycopg2.connect(dbname=stack.layout.meta_db) as connection, \
            connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS no_data_dids (vo text, scope text, name text)")
    connection.close()
    return "no_data_dids"


def test_deploy_whose_import_fails_puts_the_configuration_back(stack: Stack) -> None:
    no_data_table(stack)
    before = state(stack)
    result = rucio_rd(stack, "deploy", "--config",
                      str(variant(stack, "no-data", metadata={"table": "no_data_dids"})))
    assert result.returncode == 1, result.stdout
    assert "dachs imp rucio/rucio failed" in result.stderr
    assert "the previous link and configuration are back" in result.stderr
    assert state(stack) == before
    assert rucio_rd(stack, "check").returncode == 0


def test_a_failed_first_deploy_publishes_nothing(stack: Stack) -> None:
    """A new DaCHS instance, a deploy whose import fails: no link, no config, no resource."""
    second = DachsInstance(Path(stack.layout.workdir) / "second-dachs", port=18088,
                           db_name="rucio_rd_it_second_dachs")
    try:
        second.setup()
        result = subprocess.run(
            ["/usr/bin/rucio-rd", "deploy", "--config",
             str(variant(stack, "second-no-data", metadata={"table": no_data_table(stack)}))],
            env=second.env(), cwd="/", capture_output=True, encoding="utf-8", timeout=300)
        assert result.returncode == 1, result.stdout
        assert "dachs imp rucio/rucio failed" in result.stderr
        assert not (second.root / "inputs" / "rucio").exists()
        assert not second.plugin_config.exists()
        with psycopg2.connect(dbname=second.db_name) as connection, \
                connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM dc.resources WHERE sourcerd = 'rucio/rucio'")
            assert cursor.fetchone()[0] == 0
        connection.close()
    finally:
        second.drop()


def test_deploy_names_non_ascii_records_it_skips(stack: Stack) -> None:
    with psycopg2.connect(dbname=stack.layout.meta_db) as connection, \
            connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS dids_unicode")
        # As Rucio's: every record has an id.
        cursor.execute("CREATE TABLE dids_unicode AS SELECT * FROM dids")
        cursor.execute("INSERT INTO dids_unicode (id, vo, scope, name, data)"
                       " SELECT max(id) + 1, 'def', 'user.zoë', 'bäd-ε.fits',"
                       " '{\"s_ra\": \"north\"}' FROM dids")
    connection.close()
    try:
        result = rucio_rd(stack, "deploy", "--config",
                          str(variant(stack, "unicode", metadata={"table": "dids_unicode"})))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "e.g. 'user.zoë:bäd-ε.fits'" in result.stdout, result.stdout
        assert "303 added, 0 changed, 0 deleted, 1 unusable" in result.stdout, result.stdout
    finally:
        restored = rucio_rd(stack, "deploy", "--config", str(stack.plugin_config_source))
        assert restored.returncode == 0, restored.stdout + restored.stderr


def test_deploy_again_reimports_and_keeps_serving(stack: Stack) -> None:
    before = state(stack)
    result = rucio_rd(stack, "deploy", "--config", str(stack.plugin_config_source))
    assert result.returncode == 0, result.stdout + result.stderr
    after = state(stack)
    assert after["rows"] == before["rows"] and after["config"] == before["config"]
    assert after["imported"] > before["imported"]
    assert requests.get(stack.cone_url, params={"RA": 53.75, "DEC": -24.93, "SR": 1},
                        timeout=30).status_code == 200


# --- dachs serve reload -----------------------------------------------------------------


def availability(stack: Stack) -> str:
    return requests.get(stack.dachs.server_url + "/rucio/rucio/dl/availability",
                        timeout=60).text


def wait_for(predicate, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def test_configuration_change_is_picked_up_by_serve_reload(stack: Stack) -> None:
    installed = stack.dachs.plugin_config
    good = installed.read_bytes()
    wrong = variant(stack, "reload-wrong-password",
                    rucio={"password_file": str(wrong_password_file(stack))})
    assert "<avl:available>true</avl:available>" in availability(stack)
    try:
        installed.write_bytes(wrong.read_bytes())
        stack.dachs.reload()
        assert wait_for(lambda: "<avl:available>false</avl:available>" in availability(stack))
        assert "refuses this service's credentials" in availability(stack)
        text = requests.get(stack.datalink_url, params={"ID": WALLABY}, timeout=60).text
        assert "FatalFault" in text
    finally:
        installed.write_bytes(good)
        stack.dachs.reload()
    assert wait_for(lambda: "<avl:available>true</avl:available>" in availability(stack))
    text = requests.get(stack.datalink_url, params={"ID": WALLABY}, timeout=60).text
    assert "https://" in text and "Fault" not in text
