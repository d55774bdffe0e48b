"""The demo's SODA site: DaCHS's own SODA service over one site's storage.

The Australian site (AUSSRC) runs a DaCHS instance of its own (authority
``aussrc.example``) with ``res/soda-site/q.rd``: its products are the site's
replicas of the cubes, read where the site's nginx serves them from
(``inputs/aussrc/disk`` is that storage), each with the access reference
``SCOPE/NAME``, so the ID this SODA service takes is
``ivo://aussrc.example/~?SCOPE/NAME`` — the ``idTemplate`` the site directory
gives for it.  The instance listens on 127.0.0.1 only; the site's public side
is nginx (:mod:`rucio_rd.stack.storage`), which passes ``/soda/sync`` and
``/soda/async`` on only with a token Rucio accepts.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from rucio_rd.stack.dachs_instance import DachsInstance

__all__ = ["SODA_SITE_RD", "SodaSite"]

REPO = Path(__file__).resolve().parents[2]
SODA_SITE_RD = REPO / "res" / "soda-site" / "q.rd"
RD_ID = "aussrc/q"
SERVICE_PATH = "/aussrc/q/soda"


class SodaSite:
    """A DaCHS instance with the site's SODA service over ``storage_dir``."""

    def __init__(self, root: Path, port: int, db_name: str, storage_dir: Path,
                 authority: str = "aussrc.example") -> None:
        self.dachs = DachsInstance(root=root, port=port, db_name=db_name, authority=authority,
                                   sitename="AUSSRC demo site", preload="", with_obscore=False)
        self.storage_dir = Path(storage_dir)

    @property
    def sync_url(self) -> str:
        """The SODA sync endpoint on the instance itself (behind the site's nginx)."""
        return self.dachs.server_url + SERVICE_PATH + "/dlget"

    @property
    def async_url(self) -> str:
        return self.dachs.server_url + SERVICE_PATH + "/dlasync"

    def setup(self) -> None:
        """Make the instance, install the RD and import the site's cubes (idempotent)."""
        self.dachs.setup()
        rd_dir = self.dachs.root / "inputs" / "aussrc"
        rd_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SODA_SITE_RD, rd_dir / "q.rd")
        disk = rd_dir / "disk"
        if disk.is_symlink() and disk.resolve() != self.storage_dir.resolve():
            disk.unlink()
        if not disk.exists():
            disk.symlink_to(self.storage_dir, target_is_directory=True)
        for path in [self.dachs.root, self.dachs.root / "inputs", rd_dir]:
            path.chmod(0o755)
        self.dachs.dachs("imp", RD_ID)

    def start(self) -> None:
        self.dachs.start()

    def stop(self) -> None:
        self.dachs.stop()

    def drop(self) -> None:
        self.dachs.drop()
