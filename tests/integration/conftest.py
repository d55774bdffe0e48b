"""The integration stack: a real Rucio server, the site-directory stand-in and a
private DaCHS instance, on ports and databases of their own (never the demo's,
never a system DaCHS), brought up once per test session from empty databases.

DaCHS runs as Debian's dachs.service runs it (``/usr/bin/dachs serve start``,
as the user ``gavo``), so the stack lives in a directory that user can reach
(pytest's own temporary directories are closed to other users).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import pyvo
from astropy.utils.data import import_file_to_cache

from rucio_rd.stack.debian import source_digest
from rucio_rd.stack.demo import Layout, Stack

TEST_PORTS = {"rucio_port": 18191, "sites_port": 18291, "dachs_port": 18080, "legacy_port": 18391,
              "storage_port": 18491, "soda_port": 18481}
BUILD_STAMP = Path("/usr/share/rucio-rd/BUILD")


@pytest.fixture(scope="session", autouse=True)
def datalink_vocabulary() -> None:
    """pyvo's bysemantics() needs the IVOA datalink vocabulary; there is no internet here."""
    source = Path(pyvo.__file__).parent / "dal" / "tests" / "data" / "datalink" / "datalink.desise"
    import_file_to_cache("http://www.ivoa.net/rdf/datalink/core", str(source),
                         remove_original=False)


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    installed = BUILD_STAMP.read_text().strip() if BUILD_STAMP.is_file() else None
    if installed != source_digest():
        pytest.fail("the installed python3-rucio-rd is not this checkout's: run bin/install"
                    " (bin/test does) so that DaCHS runs the code under test")
    workdir = Path(tempfile.mkdtemp(prefix="rucio_rd-it-", dir="/var/tmp"))
    workdir.chmod(0o755)
    layout = Layout(
        workdir=workdir,
        rucio_db="rucio_rd_it_rucio",
        meta_db="rucio_rd_it_meta",
        dachs_db="rucio_rd_it_dachs",
        soda_db="rucio_rd_it_aussrc",
        synthetic_files=300,
        sites_ttl=1.0,  # short, so that the site-directory outage test sees a refresh fail
        # Every request reaches Rucio (the tests change what it holds and stop it; the
        # cache is the unit tests' and the benchmark's), and faults end quickly.
        replica_cache_ttl=0.0,
        rucio_timeout=5.0,
        circuit_retry_after=2.0,
        **TEST_PORTS,
    )
    stack = Stack(layout)
    try:
        stack.up(fresh=True, log=lambda message: None)
        yield stack
    finally:
        stack.down()
        shutil.rmtree(workdir, ignore_errors=True)
