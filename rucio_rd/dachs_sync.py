"""``rucio-rd sync``: the sync of :mod:`rucio_rd.sync` on a DaCHS instance.

It joins the configuration (under DaCHS's rootDir), DaCHS's admin connection
and ``[web] serverURL`` to :func:`rucio_rd.sync.sync`, and says what happened;
it holds no logic worth testing on its own.
"""

from __future__ import annotations

from rucio_rd.sync import printable_report, sync

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """``rucio-rd sync [--full]``: sync the DaCHS instance that GAVOSETTINGS names."""
    import argparse
    import sys

    import psycopg2

    parser = argparse.ArgumentParser(
        prog="rucio-rd sync",
        description="Bring the published table (rucio.main) in step with Rucio's metadata"
        " table: new, changed and deleted records, incrementally (only what changed is"
        " fetched). The DaCHS instance is the one GAVOSETTINGS names.")
    parser.add_argument("--full", action="store_true",
                        help="fetch every record again, not only the changed ones")
    args = parser.parse_args(argv)

    from gavo import base

    from rucio_rd.checks import redacted_dsn
    from rucio_rd.config import ConfigError
    from rucio_rd.dachs_config import load_dachs_settings

    try:
        settings = load_dachs_settings()
    except ConfigError as exc:
        print(f"rucio-rd sync: the configuration is unusable: {exc}", file=sys.stderr)
        return 1
    where = redacted_dsn(settings.metadata.dsn)
    try:
        meta = psycopg2.connect(settings.metadata.dsn, connect_timeout=10)
    except psycopg2.Error as exc:
        print(f"rucio-rd sync: cannot reach Rucio's metadata database ({where}):"
              f" {' '.join(str(exc).split())}; the published table is unchanged",
              file=sys.stderr)
        return 1
    server_url = (base.getConfig("web", "serverURL")
                  if settings.metadata.access_url == "datalink" else None)
    dachs = base.getDBConnection("admin")
    try:
        report = sync(meta, dachs, table=settings.metadata.table, vo=settings.metadata.vo,
                      full=args.full, server_url=server_url,
                      examples=settings.metadata.max_bad_records_reported or 5)
    except psycopg2.Error as exc:
        dachs.rollback()
        print(f"rucio-rd sync: failed ({' '.join(str(exc).split())});"
              " the published table is unchanged", file=sys.stderr)
        return 1
    finally:
        meta.close()
        dachs.close()
    print(printable_report(report))
    return 0
