"""The import side of the resource descriptor: rows for ``rucio/rucio#import``.

The RD's embedded grammar calls :func:`iterate_rows`; everything it does is in
:mod:`rucio_rd.metadata` and :mod:`rucio_rd.config`, so this module only
joins them to DaCHS (finding the configuration under DaCHS's rootDir and
reporting skipped records through DaCHS's user interface).  It must not hold
any logic worth testing on its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from rucio_rd import metadata
from rucio_rd.dachs_config import load_dachs_settings

__all__ = ["iterate_rows"]


def iterate_rows() -> Iterator[dict[str, Any]]:
    """Yield the table rows from Rucio's metadata table, then report what was skipped."""
    from gavo import base

    settings = load_dachs_settings()
    report = metadata.ImportReport(max_listed=settings.metadata.max_bad_records_reported)
    records = metadata.read_metadata_table(
        settings.metadata.dsn, settings.metadata.table, settings.metadata.vo
    )
    access_url_for = None
    if settings.metadata.access_url == "datalink":
        server_url = base.getConfig("web", "serverURL")
        access_url_for = lambda did: metadata.datalink_access_url(server_url, did)  # noqa: E731
    yield from metadata.rows_from_records(records, report, access_url_for)
    for bad in report.bad_records:
        base.ui.notifyWarning(f"rucio_rd: skipped {bad.did}: {bad.reason}")
    if report.skipped > len(report.bad_records):
        base.ui.notifyWarning(
            f"rucio_rd: {report.skipped - len(report.bad_records)} more skipped records not listed"
        )
    base.ui.notifyInfo(f"rucio_rd: {report.summary()}")
