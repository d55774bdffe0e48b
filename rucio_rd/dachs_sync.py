"""``rucio-rd sync``: the sync of :mod:`rucio_rd.sync` on a DaCHS instance.

It joins the configuration (under DaCHS's rootDir), DaCHS's admin connection
and ``[web] serverURL`` to :func:`rucio_rd.sync.sync`, and says what happened;
it holds no logic worth testing on its own.
"""

from __future__ import annotations

from typing import Any

from rucio_rd import capture
from rucio_rd.sync import SyncRefused, bulk_streams, printable_report, sync

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
    capture_group = parser.add_mutually_exclusive_group()
    capture_group.add_argument(
        "--install-capture", action="store_true",
        help="install change capture in Rucio's metadata database (a log table, a function"
        " and a trigger; needs a DSN that may create them), then exit")
    capture_group.add_argument("--remove-capture", action="store_true",
                               help="remove change capture from it again, then exit")
    capture_group.add_argument(
        "--follow", action="store_true",
        help="keep running: apply every captured metadata write as it happens")
    args = parser.parse_args(argv)

    from gavo import base

    from rucio_rd.checks import redacted_dsn
    from rucio_rd.config import ConfigError
    from rucio_rd.dachs_config import load_dachs_settings, sync_options

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
    options = sync_options(settings)
    try:
        if args.install_capture or args.remove_capture:
            (capture.install if args.install_capture else capture.remove)(
                meta, settings.metadata.table)
            print(f"change capture {'installed in' if args.install_capture else 'removed from'}"
                  f" {where}, table {settings.metadata.table}")
            return 0
        dachs = base.getDBConnection("admin")
        try:
            if args.follow:
                return _follow(meta, settings.metadata.dsn, dachs, options)
            report = sync(meta, dachs, full=args.full, **options,
                          changes=capture.installed_log(meta, options["table"]),
                          connect=lambda: psycopg2.connect(settings.metadata.dsn,
                                                           connect_timeout=10),
                          streams=bulk_streams())
        except (psycopg2.Error, SyncRefused):
            dachs.rollback()
            raise
        finally:
            dachs.close()
    except (psycopg2.Error, SyncRefused) as exc:
        print(f"rucio-rd sync: failed ({' '.join(str(exc).split())});"
              " the published table is unchanged", file=sys.stderr)
        return 1
    finally:
        meta.close()
    print(printable_report(report))
    return 0


def _follow(meta: Any, dsn: str, dachs: Any, options: dict[str, Any]) -> int:
    """``--follow``: a first incremental sync, then every captured write as it comes."""
    import signal
    import sys

    import psycopg2

    if not capture.installed(meta, options["table"]):
        print("rucio-rd sync --follow: change capture is not installed in the metadata"
              " database; run rucio-rd sync --install-capture first", file=sys.stderr)
        return 1
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda number, frame: stopping.append(number))
    reader = psycopg2.connect(dsn, connect_timeout=10)
    reader.autocommit = True
    try:
        print(printable_report(sync(reader, dachs, **options,
                                    changes=capture.installed_log(meta, options["table"]))),
              flush=True)
        capture.follow(meta, reader, dachs, log=lambda text: print(text, flush=True),
                       stop=lambda: bool(stopping), wait=5.0, **options)
    except KeyboardInterrupt:
        pass
    finally:
        reader.close()
    return 0
