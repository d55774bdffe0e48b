"""rucio_rd as a plugin of Debian's own DaCHS: no venv, no wrapper, no override.

The stack's DaCHS is Debian's ``/usr/bin/dachs serve start`` (what
``dachs.service`` runs) on ``/usr/bin/python3``, as the user ``gavo``,
importing the Debian package ``python3-rucio-rd``.  Async TAP (TOPCAT's
default) runs each query in a ``gavo taprun`` process of that interpreter.
"""

from __future__ import annotations

import pwd
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
from pyvo.dal import TAPService

from rucio_rd.stack.demo import Stack

WALLABY = "sp3531_soda:2023-07-18-16-40-27_ASK-WALLABY_Eridanus_cutout-574594-imagecube-42178.fits"
ASYNC_QUERY = ("SELECT did, access_url FROM rucio.main WHERE scope = 'sp3531_soda'"
               " OR did = 'testing:PTF10tce.fits'")


def debian_dachs(stack: Stack, *args: str) -> subprocess.CompletedProcess:
    """Debian's dachs on this stack's instance, from a neutral directory."""
    return subprocess.run(["/usr/bin/dachs", *args], env=stack.dachs.env(), cwd="/",
                          capture_output=True, encoding="utf-8", timeout=300)


def test_the_server_is_debians_dachs_running_as_gavo(stack: Stack) -> None:
    pid = int(stack.dachs.pid_path.read_text())
    status = Path(f"/proc/{pid}/status").read_text()
    uid = int(re.search(r"^Uid:\s+(\d+)", status, re.MULTILINE).group(1))
    assert uid == pwd.getpwnam("gavo").pw_uid
    assert Path(f"/proc/{pid}/exe").resolve() == Path("/usr/bin/python3").resolve()
    assert b"/usr/bin/dachs\0serve\0start" in Path(f"/proc/{pid}/cmdline").read_bytes()


def test_async_tap_through_pyvo_returns_rows(stack: Stack) -> None:
    tap = TAPService(stack.dachs.server_url + "/tap")
    table = tap.run_async(ASYNC_QUERY).to_table()
    assert set(table["did"]) == {WALLABY, "testing:PTF10tce.fits"}
    for url in table["access_url"]:
        assert url.startswith(stack.datalink_url + "?id=")


@pytest.mark.skipif(shutil.which("stilts") is None, reason="stilts is installed by bin/install")
def test_async_tap_through_stilts_tapquery_returns_rows(stack: Stack) -> None:
    # tapquery's default mode is async, as in TOPCAT's TAP window.
    result = subprocess.run(
        ["stilts", "tapquery", f"tapurl={stack.dachs.server_url}/tap",
         f"adql={ASYNC_QUERY}", "ofmt=csv"],
        capture_output=True, encoding="utf-8", timeout=180)
    assert result.returncode == 0, result.stderr
    assert WALLABY in result.stdout and "testing:PTF10tce.fits" in result.stdout


def test_debian_dachs_validates_the_rd(stack: Stack) -> None:
    result = debian_dachs(stack, "val", "rucio/rucio")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rucio/rucio -- OK" in result.stdout + result.stderr


def test_debian_dachs_runs_the_rds_regression_tests(stack: Stack) -> None:
    result = debian_dachs(stack, "test", "-u", stack.dachs.server_url, "rucio/rucio")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert re.search(r"\b0 of [1-9]\d* bad\b", output), output


def test_vosi_availability_says_rucio_accepts_the_credentials(stack: Stack) -> None:
    text = requests.get(stack.dachs.server_url + "/rucio/rucio/dl/availability", timeout=60).text
    assert "<avl:available>true</avl:available>" in text
    assert "accepts this service's credentials" in text


def test_plugin_log_lines_are_in_dachs_timestamped_log(stack: Stack) -> None:
    # the first request of the process configured the service and fetched a token
    requests.get(stack.datalink_url, params={"ID": WALLABY}, timeout=60)
    log = stack.dachs.info_log_path.read_text(errors="replace")
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ \[INFO \d+\] "
                     r"(While handling .*\n)?rucio_rd: DataLink service configured", log,
                     re.MULTILINE), log[-2000:]
    assert stack.rucio.credentials()["password"] not in log


def test_debians_python_imports_the_installed_package(stack: Stack) -> None:
    # DaCHS and gavo taprun run the installed package, wherever they are started from.
    result = subprocess.run(
        ["/usr/bin/python3", "-I", "-c", "import rucio_rd; print(rucio_rd.__file__)"],
        capture_output=True, encoding="utf-8", cwd="/")
    assert result.stdout.strip() == "/usr/lib/python3/dist-packages/rucio_rd/__init__.py"
