"""Near-live sync, for operators who allow it: change capture in Rucio's metadata
database.

:func:`install` adds to the metadata database one table (``rucio_rd_changes``:
the ids of the records written, in order), one function and one trigger on
Rucio's table; every insert, update or delete of a record then logs its id and
sends a ``NOTIFY rucio_rd_changes`` (once per transaction).  :func:`remove`
takes all three away again.  Without them nothing of this plugin is in Rucio's
database.

:func:`follow` listens for the notifications and syncs just the logged
records (:func:`rucio_rd.sync.sync` with ``only``), then forgets the log
entries it applied; an entry is forgotten only after its sync committed, so a
follower killed at any moment loses nothing (the next one applies it again).
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable
from typing import Any

from rucio_rd.sync import SyncReport, forget_sql, sync

__all__ = ["CHANNEL", "apply_logged", "follow", "install", "install_sql", "installed",
           "installed_log", "log_table", "remove", "remove_sql"]

CHANNEL = "rucio_rd_changes"
LOG_TABLE = "rucio_rd_changes"
FUNCTION = "rucio_rd_capture"


def _trigger_name(table: str) -> str:
    return f"rucio_rd_capture_{table.replace('.', '_')}"


def _schema_of(meta: Any, table: str) -> str:
    """The schema Rucio's ``table`` is in (the log and the function go there too)."""
    with meta.cursor() as cursor:
        cursor.execute("SELECT n.nspname FROM pg_class c JOIN pg_namespace n"
                       " ON n.oid = c.relnamespace WHERE c.oid = %s::regclass", (table,))
        return cursor.fetchone()[0]


def install_sql(table: str, schema: str) -> str:
    """The statements that install change capture on Rucio's ``table`` (in ``schema``).

    The function runs with its owner's rights and a fixed search path
    (``SECURITY DEFINER``), so Rucio's own role, whatever it is, can write its
    records without any right on the log.
    """
    log, function = f'"{schema}".{LOG_TABLE}', f'"{schema}".{FUNCTION}'
    return f"""
CREATE TABLE IF NOT EXISTS {log} (
    seq bigserial PRIMARY KEY,
    meta_id bigint NOT NULL);
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO {log} (meta_id) VALUES (OLD.id);
    ELSE
        INSERT INTO {log} (meta_id) VALUES (NEW.id);
    END IF;
    PERFORM pg_notify('{CHANNEL}', '');
    RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION {function}() FROM PUBLIC;
DROP TRIGGER IF EXISTS {_trigger_name(table)} ON {table};
CREATE TRIGGER {_trigger_name(table)} AFTER INSERT OR UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION {function}();
"""


def remove_sql(table: str, schema: str) -> str:
    """The statements that remove everything :func:`install_sql` installs."""
    return f"""
DROP TRIGGER IF EXISTS {_trigger_name(table)} ON {table};
DROP FUNCTION IF EXISTS "{schema}".{FUNCTION}();
DROP TABLE IF EXISTS "{schema}".{LOG_TABLE};
"""


def install(meta: Any, table: str) -> None:
    """Install change capture on Rucio's ``table`` (the connection must own it)."""
    with meta.cursor() as cursor:
        cursor.execute(install_sql(table, _schema_of(meta, table)))
    meta.commit()


def remove(meta: Any, table: str) -> None:
    """Remove change capture from Rucio's ``table`` again."""
    with meta.cursor() as cursor:
        cursor.execute(remove_sql(table, _schema_of(meta, table)))
    meta.commit()


def installed(meta: Any, table: str) -> bool:
    """Whether the trigger is on Rucio's ``table`` (and so its log exists)."""
    with meta.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_trigger WHERE tgname = %s"
                       " AND tgrelid = %s::regclass", (_trigger_name(table), table))
        found = cursor.fetchone()[0] > 0
    meta.rollback()
    return found


def log_table(meta: Any, table: str) -> str:
    """The qualified name of the change log that capture keeps beside Rucio's ``table``."""
    return f'"{_schema_of(meta, table)}".{LOG_TABLE}'


def installed_log(meta: Any, table: str) -> str | None:
    """:func:`log_table` where capture is installed on ``table``, else None; ``meta``
    is left out of any transaction."""
    if not installed(meta, table):
        return None
    log = log_table(meta, table)
    meta.rollback()
    return log


def apply_logged(meta: Any, reader: Any, dachs: Any, log: str, **options: Any
                 ) -> SyncReport | None:
    """Sync the records logged so far; forget exactly the entries read, once that sync
    has committed.

    Entries are forgotten by their numbers, not "up to the highest": a
    transaction of Rucio that commits later may hold a lower number, and its
    entry must stay for the next round.  ``log`` is :func:`log_table`'s name;
    ``meta`` writes (it forgets entries), ``reader`` reads the records (an
    autocommit connection, as :func:`rucio_rd.sync.sync` wants).
    """
    with meta.cursor() as cursor:
        cursor.execute(f"SELECT array_agg(seq), array_agg(DISTINCT meta_id) FROM {log}")
        seqs, ids = cursor.fetchone()
    meta.rollback()
    if not seqs:
        return None
    report = sync(reader, dachs, only=ids, **options)
    with meta.cursor() as cursor:
        cursor.execute(forget_sql(log), (seqs,))
    meta.commit()
    return report


def follow(meta: Any, reader: Any, dachs: Any, *, log: Callable[[str], None],
           stop: Callable[[], bool] = lambda: False, wait: float = 60.0,
           **options: Any) -> None:
    """Apply logged changes as their notifications arrive (and every ``wait`` seconds
    anyway), until ``stop()`` says so."""
    listener = reader  # an autocommit connection
    with listener.cursor() as cursor:
        cursor.execute(f"LISTEN {CHANNEL}")
    changes = log_table(meta, options["table"])
    meta.rollback()
    while not stop():
        listener.notifies.clear()  # what was notified so far is applied now
        report = apply_logged(meta, reader, dachs, changes, **options)
        if report is not None:
            log(report.summary())
        if listener.notifies:
            continue  # written while that sync ran
        ready, _, _ = select.select([listener], [], [], wait)
        if ready:
            listener.poll()
            time.sleep(0.05)  # let a burst of writes end, to take them in one sync
