"""The import side of the resource descriptor: ``dachs imp rucio/rucio`` is a sync.

The RD's ``import`` data element has no grammar: DaCHS creates the empty
table, its ``preIndex`` script calls :func:`load`, which runs the set-based
sync of :mod:`rucio_rd.sync` (a bulk load, the same as ``rucio-rd sync`` into
an empty table) inside DaCHS's import transaction, and DaCHS then builds the
indexes and commits.  This module only joins the configuration under DaCHS's
rootDir, DaCHS's ``[web] serverURL`` and its user interface to the sync; it
must not hold any logic worth testing on its own.
"""

from __future__ import annotations

from typing import Any

from rucio_rd.dachs_config import load_dachs_settings, sync_options

__all__ = ["load"]


def load(table: Any) -> None:
    """Fill the DaCHS table ``table`` (just created, empty) from Rucio's metadata."""
    import psycopg2
    from gavo import base

    from rucio_rd.sync import bulk_streams, printable_report, sync

    settings = load_dachs_settings()

    def connect() -> Any:
        return psycopg2.connect(settings.metadata.dsn, connect_timeout=10)

    meta = connect()
    try:
        report = sync(meta, table.connection, full=True, published=table.tableDef.getQName(),
                      connect=connect, streams=bulk_streams(), commit=False,
                      **sync_options(settings))
    finally:
        meta.close()
    for line in printable_report(report).splitlines():
        (base.ui.notifyWarning if line.startswith("  unusable") else base.ui.notifyInfo)(
            f"rucio_rd: {line.strip()}")
