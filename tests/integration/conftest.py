"""The integration stack: a real Rucio server, the site-directory stand-in and a
private DaCHS instance, on ports and databases of their own (never the demo's,
never a system DaCHS), brought up once per test session from empty databases.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rucio_rd.stack.demo import Layout, Stack

TEST_PORTS = {"rucio_port": 18191, "sites_port": 18291, "dachs_port": 18080, "legacy_port": 18391}


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    layout = Layout(
        workdir=tmp_path_factory.mktemp("stack"),
        rucio_db="rucio_rd_it_rucio",
        meta_db="rucio_rd_it_meta",
        dachs_db="rucio_rd_it_dachs",
        synthetic_files=300,
        sites_ttl=1.0,  # short, so that the site-directory outage test sees a refresh fail
        **TEST_PORTS,
    )
    stack = Stack(layout)
    try:
        stack.up(fresh=True, log=lambda message: None)
        yield stack
    finally:
        stack.down()
