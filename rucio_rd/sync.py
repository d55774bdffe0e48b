"""Keep the published table in step with Rucio's metadata table, set-based and
incremental.

Rucio's POSTGRES_JSON did-meta table (``id``, ``vo``, ``scope``, ``name``,
``data jsonb``) lives in the metadata database; the published table
(``rucio.main``) in DaCHS's.  :func:`sync` brings the second in step with the
first without a Python call per record:

1. the metadata database computes, for every record of the VO, its id and
   a hash of its JSON text (:func:`digests_sql`), read in parallel streams
   on one snapshot; the list is streamed with COPY into a temporary table of
   DaCHS's database;
2. there, one join with the ``meta_id``/``meta_digest`` of the published rows
   and the records rejected before (``rucio.sync_rejects``) finds what is
   new or changed (to fetch) and what is gone (to delete);
3. the metadata database turns the records to fetch into rows, validating
   them in SQL (:func:`rows_sql`: the rules of :mod:`rucio_rd.metadata`), and
   streams them with COPY into a second temporary table;
4. one transaction deletes, updates and inserts, records the rejected
   records with their reasons, and notes the run in ``rucio.sync_runs``.

``full=True`` fetches every record instead of the changed ones.  Until the
commit of step 4 the published table is untouched, so a sync killed at any
moment leaves it as it was, and readers (cone search, TAP) are never blocked:
the changes are row updates, not a table rebuild.

Into an empty published table (the first sync, ``dachs imp``) a sync is a
bulk load instead (:func:`load_sql`): every record streamed straight into
the table with one COPY, the spatial index filled as it goes and the others
built afterwards.

Nothing is installed in Rucio's database and the metadata connection only reads,
unless the operator opts in to change capture (:mod:`rucio_rd.capture`); then
a sync of every record also removes the entries of its change log that it
has applied (``changes``), so that the log stays short without a follower
(one DaCHS instance per log: the entries of every VO go).
Syncs of one DaCHS database take turns (an advisory lock).
"""

from __future__ import annotations

import contextlib
import io
import os
import selectors
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from rucio_rd.metadata import (
    BOOKKEEPING_COLUMNS,
    DATALINK_PATH,
    MAX_DATALINKS_BYTES,
    ROW_COLUMNS,
    WHITESPACE,
)
from rucio_rd.model import NAME_MAX, NAME_PATTERN, SCOPE_MAX, SCOPE_PATTERN

__all__ = [
    "BOOKKEEPING_SQL",
    "SYNC_LOCK",
    "SYNC_COLUMNS",
    "SyncRefused",
    "SyncReport",
    "UNUSABLE",
    "bulk_streams",
    "digests_sql",
    "forget_sql",
    "load_sql",
    "printable_report",
    "rows_sql",
    "sync",
]

#: The published table's columns a sync writes: the rows' and the bookkeeping pair.
SYNC_COLUMNS = (*ROW_COLUMNS, *BOOKKEEPING_COLUMNS)
_MAX_TEXT = 4096
# A number as the metadata may spell it in a JSON string (no inf/nan, exponents
# short enough for numeric): what float() takes, less its exotica.
_NUMBER_TEXT = r"^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]{1,3})?\s*$"
_OPTIONAL_TEXT = ("obs_id", "access_format", "content_type", "dataproduct_type",
                  "obs_collection", "target_name", "facility_name", "instrument_name")
_OPTIONAL_FLOAT = ("s_fov", "t_min", "t_max", "em_min", "em_max")

#: The advisory lock that makes syncs of one DaCHS database take turns.
SYNC_LOCK = 0x7275_6369_6F72_64  # "rucio rd"

#: The tables the sync keeps in DaCHS's database next to the published one.
BOOKKEEPING_SQL = """
CREATE TABLE IF NOT EXISTS rucio.sync_rejects (
    meta_id bigint PRIMARY KEY,
    meta_digest text NOT NULL,
    did text NOT NULL,
    reason text NOT NULL);
GRANT SELECT ON rucio.sync_rejects TO PUBLIC;
CREATE TABLE IF NOT EXISTS rucio.sync_runs (
    finished timestamptz NOT NULL DEFAULT now(),
    mode text NOT NULL,
    records bigint NOT NULL,
    fetched bigint NOT NULL,
    added bigint NOT NULL,
    changed bigint NOT NULL,
    deleted bigint NOT NULL,
    rejected bigint NOT NULL,
    seconds double precision NOT NULL);
GRANT SELECT ON rucio.sync_runs TO PUBLIC;
"""


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _double(number: str) -> str:
    """SQL for the numeric ``number`` as double precision: beyond 1e300 is no coordinate
    or size (NULL), below 1e-300 is 0, as float() has it (the cast would fail on
    either, and with it the whole sync)."""
    return (f"CASE WHEN {number} BETWEEN -1e300 AND 1e300 THEN CASE WHEN {number}"
            f" BETWEEN -1e-300 AND 1e-300 THEN 0::float8 ELSE {number}::float8 END END")


def _numeric(key: str) -> str:
    """SQL for the JSON value ``j_<key>`` (jsonb, taken out of the record once) as
    numeric: a JSON number as it is, a string when it spells a number, else NULL."""
    value = f"j_{key}"
    return (f"CASE jsonb_typeof({value}) WHEN 'number' THEN {value}::numeric"
            f" WHEN 'string' THEN CASE WHEN {value} #>> '{{}}' ~ {_literal(_NUMBER_TEXT)}"
            f" THEN btrim({value} #>> '{{}}')::numeric END END")


def _trimmed(key: str) -> str:
    """SQL for the text ``t_<key>`` (``d->>key``) trimmed, or NULL: a JSON string or
    number; not true, false, an object or an array (whose type is looked up
    only when the text starts as one of them would: ``t``, ``f``, ``{``, ``[``).

    btrim() with a set walks every character of the text and of the set, so it
    is called only when the first character or the last byte is not printable
    ASCII, as a whitespace character never is.  The last byte is that of
    textsend(), the text in the client encoding (UTF-8, as the server's:
    :func:`sync` checks and sets both).
    """
    text = f"t_{key}"
    return (f"CASE WHEN {text} IS NULL OR (ascii({text}) IN (116, 102, 123, 91)"
            f" AND ({text} IN ('true', 'false') OR ascii({text}) IN (123, 91))"
            f" AND jsonb_typeof(d->{_literal(key)}) <> 'string') THEN NULL"
            f" WHEN ascii({text}) BETWEEN 33 AND 126 THEN CASE"
            f" WHEN get_byte(textsend({text}), length(textsend({text})) - 1) BETWEEN 33 AND 126"
            f" THEN {text} ELSE btrim({text}, {_literal(WHITESPACE)}) END"
            f" ELSE btrim({text}, {_literal(WHITESPACE)}) END")


def _text(key: str) -> str:
    """SQL for the trimmed ``x_<key>`` as text of at most 4096 characters, or NULL
    (left() counts characters through the whole text: only when it may be too long)."""
    text = f"x_{key}"
    return (f"NULLIF(CASE WHEN octet_length({text}) > {_MAX_TEXT} THEN left({text}, {_MAX_TEXT})"
            f" ELSE {text} END, '')")


def digests_sql(table: str, only_ids: bool = False, parted: bool = False) -> str:
    """The metadata side of step 1: ``meta_id, meta_digest`` of every record of the VO
    (``%(vo)s``), or of those among ``%(ids)s``; ``parted`` as for :func:`rows_sql`."""
    return f"SELECT id, {_DIGEST} FROM {table} WHERE {_where(only_ids, parted)}"


def _where(only_ids: bool, parted: bool) -> str:
    """Which records of the metadata table a query is about (see :func:`rows_sql`)."""
    # Records without an id (Rucio's table always gives one) cannot be followed: left out.
    where = "vo = %(vo)s AND id IS NOT NULL" + (
        " AND id IN (SELECT unnest(%(ids)s::bigint[]))" if only_ids else "")
    if parted:
        where += " AND (id %% %(parts)s + %(parts)s) %% %(parts)s = %(part)s"
    return where


# The digest of a record: PostgreSQL's 64-bit hash of its JSON text (not of the jsonb
# value: jsonb_hash_extended XORs rotated hashes of the keys and values, so that some
# changes, two equal values 32 places apart changed alike, leave it as it was).
# "null" for a record without data.
_DIGEST = "COALESCE(hashtextextended(data::text, 0)::text, 'null')"
# The metadata's datalinks as metadata.datalinks_text has them: an array as its JSON
# text, a string as it is (its length is judged later, on the text).
_DATALINKS = ("CASE jsonb_typeof(j_datalinks) WHEN 'array' THEN j_datalinks::text"
              " WHEN 'string' THEN j_datalinks #>> '{}' END")
_NUMBERS = ("s_ra", "s_dec", "content_length", "calib_level", *_OPTIONAL_FLOAT)
_TEXTS = ("access_url", *_OPTIONAL_TEXT)


def rows_sql(table: str, only_ids: bool, parted: bool = False) -> str:
    """The metadata side of step 3: one line per record, ``bad_reason`` first (NULL
    for a good record), then :data:`SYNC_COLUMNS`.

    Parameters are ``%(vo)s``, with ``only_ids`` ``%(ids)s`` (a bigint
    array), and with ``parted`` ``%(parts)s`` and ``%(part)s``: only the records
    whose id is ``part`` modulo ``parts`` (one of several parallel streams).
    The rules are those of :func:`rucio_rd.metadata.row_from_record`;
    the database and the connection's client encoding must be UTF-8
    (:func:`_trimmed`);
    ``access_url`` is the metadata's (the caller may replace it).  Each value is
    looked up in the JSON once, turned into a number once (each step a query
    of its own, kept apart by ``OFFSET 0``), then judged and formatted.
    """
    looked_up = ", ".join([*(f"d->{_literal(key)} AS j_{key}" for key in _NUMBERS),
                           *(f"d->>{_literal(key)} AS t_{key}" for key in _TEXTS),
                           "d->'datalinks' AS j_datalinks"])
    converted = ", ".join([*(f"{_numeric(key)} AS n_{key}" for key in _NUMBERS),
                           *(f"{_trimmed(key)} AS x_{key}" for key in _TEXTS),
                           f"{_DATALINKS} AS x_datalinks"])
    judged = ", ".join([f"{_double('n_s_ra')} AS ra", f"{_double('n_s_dec')} AS dec",
                        # judged as the doubles they are in Python (2.0000000000000001 is 2)
                        f"{_double('n_content_length')} AS f_content_length",
                        f"{_double('n_calib_level')} AS f_calib_level",
                        f"CASE WHEN octet_length(x_access_url) > {_MAX_TEXT}"
                        " THEN length(x_access_url) END AS url_length",
                        *(f"{_text(key)} AS v_{key}" for key in _TEXTS)])
    # (The patterns admit ASCII only: after them, octet_length is the length.)
    reason = f"""CASE
        WHEN NOT is_object THEN 'metadata is not a JSON object'
        WHEN scope !~ {_literal(SCOPE_PATTERN)} OR name !~ {_literal(NAME_PATTERN)}
             OR octet_length(scope) > {SCOPE_MAX} OR octet_length(name) > {NAME_MAX}
             OR name LIKE '/%%' OR name LIKE '%%//%%'
            THEN 'damaged DID (not a Rucio scope:name)'
        WHEN NOT has_position THEN 'no s_ra/s_dec'
        WHEN ra IS NULL THEN 's_ra is not a number'
        WHEN dec IS NULL THEN 's_dec is not a number'
        WHEN NOT (ra >= 0 AND ra < 360) THEN 's_ra is outside [0, 360)'
        WHEN NOT (dec BETWEEN -90 AND 90) THEN 's_dec is outside [-90, 90]'
        WHEN url_length > {_MAX_TEXT} THEN 'access_url is longer than {_MAX_TEXT} characters'
        WHEN v_access_url IS NULL THEN 'no access_url'
    END"""
    # Below 2**63, as a double (bigint's range, as in Python).
    byte_count = ("f_content_length >= 0 AND f_content_length = trunc(f_content_length)"
                  " AND f_content_length < 9223372036854775808::float8")
    columns = {
        "did": "scope || ':' || name",
        "scope": "scope",
        "name": "name",
        "s_ra": "ra",
        "s_dec": "dec",
        "access_url": "v_access_url",
        "content_length": f"CASE WHEN {byte_count} THEN f_content_length::bigint END",
        "access_estsize": f"CASE WHEN {byte_count} THEN ceil(f_content_length / 1024)::bigint END",
        "calib_level": "CASE WHEN f_calib_level IN (0, 1, 2, 3, 4)"
                       " THEN f_calib_level::smallint END",
        "datalinks": f"CASE WHEN octet_length(x_datalinks) <= {MAX_DATALINKS_BYTES}"
                     " THEN x_datalinks END",
        "meta_id": "id",
        "meta_digest": "digest",
        **{key: f"v_{key}" for key in _OPTIONAL_TEXT},
        **{key: _double(f"n_{key}") for key in _OPTIONAL_FLOAT},
    }
    select = ",\n        ".join([f"{reason} AS bad_reason",
                                   *(f"{columns[name]} AS {name}" for name in SYNC_COLUMNS)])
    # A semi-join with the ids (hashed), not "= ANY", which compares every record with
    # every id; Rucio's table has no index on id.
    where = _where(only_ids, parted)
    return f"""SELECT {select}
FROM (
    SELECT *, {judged}
    FROM (
        SELECT id, scope, name, digest, is_object, j_s_ra IS NOT NULL AND j_s_dec IS NOT NULL
               AS has_position, {converted}
        FROM (
            SELECT id, scope, name, digest, is_object, d, {looked_up}
            FROM (SELECT id, scope::text AS scope, name::text AS name, {_DIGEST} AS digest,
                         COALESCE(jsonb_typeof(data) = 'object', false) AS is_object,
                         CASE WHEN jsonb_typeof(data) = 'object' THEN data END AS d
                  FROM {table} WHERE {where} OFFSET 0) AS records
            OFFSET 0) AS looked_up
        OFFSET 0) AS converted
    OFFSET 0) AS judged"""


#: How a row of the published table that is really an unusable record is marked
#: while the bulk load runs (:func:`load_sql`); no reader ever sees one.
UNUSABLE = "unusable:"


def load_sql(table: str, parted: bool) -> str:
    """The metadata side of a bulk load into the empty published table: every record
    of :func:`rows_sql` as a row of :data:`SYNC_COLUMNS`.

    An unusable record comes as a row too, so that one COPY takes them all:
    its ``meta_digest`` starts with :data:`UNUSABLE`, its ``access_url`` is the
    reason and its position 0.  ``%(prefix)s`` (text, or NULL to keep the
    metadata's access_url) starts each row's DataLink URL.
    """
    values = {name: name for name in SYNC_COLUMNS}
    values.update(
        s_ra="COALESCE(s_ra, 0)", s_dec="COALESCE(s_dec, 0)",
        access_url=f"CASE WHEN bad_reason IS NOT NULL THEN bad_reason"
                   f" WHEN %(prefix)s::text IS NULL THEN access_url"
                   f" ELSE %(prefix)s || {_encoded_did('did').replace('%', '%%')} END",
        meta_digest=f"CASE WHEN bad_reason IS NULL THEN meta_digest"
                    f" ELSE {_literal(UNUSABLE)} || meta_digest END")
    select = ", ".join(values[name] for name in SYNC_COLUMNS)
    return f"SELECT {select} FROM ({rows_sql(table, False, parted)}) AS judged_rows"



def _encoded_did(did: str) -> str:
    """SQL for the DID as the DataLink URL carries it (metadata.datalink_access_url):
    '/' and '+' percent-encoded, the colon kept."""
    return f"replace(replace({did}, '/', '%2F'), '+', '%2B')"


class SyncRefused(RuntimeError):
    """The sync will not run; the message says why (it would empty most of the
    published table, or the table was made by an older version)."""


@dataclass
class SyncReport:
    """What one sync did."""

    mode: str
    records: int = 0  # metadata records of the VO
    fetched: int = 0  # records turned into rows (new, changed, or all with full)
    added: int = 0
    changed: int = 0
    deleted: int = 0
    rejected: int = 0  # records (newly) found unusable
    reasons: dict[str, int] = field(default_factory=dict)  # all rejected records, per reason
    examples: dict[str, list[str]] = field(default_factory=dict)  # a few DIDs per reason
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)  # seconds per step
    forgotten: int = 0  # entries of the change log this sync made unnecessary, removed
    warnings: list[str] = field(default_factory=list)  # what went wrong after the commit
    # the change-log entries the sync's snapshot saw (numbers), to remove after the commit
    logged: list[int] = field(default_factory=list, repr=False)

    def lap(self, stage: str, since: float) -> float:
        """Note the seconds of ``stage`` since ``since``; return now."""
        now = time.monotonic()
        self.stages[stage] = now - since
        return now

    def summary(self) -> str:
        stages = ", ".join(f"{stage} {seconds:.1f}" for stage, seconds in self.stages.items())
        return (f"{self.mode} sync: {self.records} metadata records, {self.fetched} fetched;"
                f" {self.added} added, {self.changed} changed, {self.deleted} deleted,"
                f" {sum(self.reasons.values())} unusable; {self.seconds:.1f} s ({stages})")


class _SourceFailed(Exception):
    """A source of :func:`_copy_between` failed; its own exception is raised instead."""


class _Lines:
    """A file to COPY FROM that reads several pipes at once and hands out whole lines.

    Each pipe carries the COPY text of one producer; lines are never split
    between reads, so the streams interleave line by line, in chunks.
    """

    def __init__(self, descriptors: Sequence[int], failures: Sequence[BaseException]) -> None:
        self._failures = failures
        self.source_failed = False  # set when a source's failure stopped the reading
        self._open = {descriptor: b"" for descriptor in descriptors}
        self._selector = selectors.DefaultSelector()
        for descriptor in descriptors:
            self._selector.register(descriptor, selectors.EVENT_READ)

    def read(self, size: int = -1) -> bytes:
        while self._open:
            for key, _ in self._selector.select():
                descriptor = key.fd
                chunk = os.read(descriptor, 1 << 17)
                rest = self._open[descriptor] + chunk
                if not chunk:  # this producer is done
                    del self._open[descriptor]
                    self._selector.unregister(descriptor)
                    os.close(descriptor)
                    if self._failures:  # it failed: the COPY in stops here
                        self.source_failed = True
                        raise _SourceFailed
                    continue
                cut = rest.rfind(b"\n") + 1
                self._open[descriptor] = rest[cut:]
                if cut:
                    return rest[:cut]
        return b""

    def close(self) -> None:
        for descriptor in self._open:
            self._selector.unregister(descriptor)
            os.close(descriptor)
        self._open.clear()
        self._selector.close()


def _copy_between(sources: Sequence[tuple[Any, str]], target: Any, into: str,
                  options: str = "") -> int:
    """Stream the rows of each ``(connection, statement)`` of ``sources`` into the
    ``target`` table; return how many.

    Each source's COPY out runs in a thread of its own writing into a pipe;
    the caller's COPY in reads them all at once (:class:`_Lines`), so the
    sources work in parallel and memory stays flat whatever the size.  When
    a source fails, the COPY in stops at once and that failure is raised;
    when the COPY in fails, the sources' queries are cancelled and its
    failure is raised.
    """
    failure: list[BaseException] = []
    stopping = threading.Event()  # failures from here on are what stopping the sources did

    def produce(source: Any, statement: str, write_end: int) -> None:
        sink = os.fdopen(write_end, "wb", buffering=1 << 17)
        try:
            with source.cursor() as cursor:
                cursor.copy_expert(f"COPY ({statement}) TO STDOUT WITH (ENCODING 'UTF8')",
                                   sink)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            if not stopping.is_set():
                failure.append(exc)  # before the pipe closes: the reader then knows
        finally:
            try:
                sink.close()
            except OSError:  # the reader is gone (it failed itself)
                pass

    pipes = [os.pipe() for _ in sources]
    lines = _Lines([read_end for read_end, _ in pipes], failure)
    threads = [threading.Thread(target=produce, args=(source, statement, write_end),
                                name="rucio_rd sync COPY out", daemon=True)
               for (source, statement), (_, write_end) in zip(sources, pipes, strict=True)]
    started: list[threading.Thread] = []

    def stop() -> None:
        lines.close()  # a producer still writing gets EPIPE and ends
        for (_, write_end), thread in zip(pipes, threads, strict=True):
            if thread not in started:
                os.close(write_end)
        for thread in started:
            thread.join()

    try:
        for thread in threads:
            thread.start()
            started.append(thread)
        with target.cursor() as cursor:
            cursor.copy_expert(f"COPY {into} FROM STDIN WITH (ENCODING 'UTF8'{options})", lines,
                               size=1 << 17)
            copied = cursor.rowcount
    except BaseException as exc:
        # Stop every source still sending (a finished one ignores it), so that none
        # is left in the middle of its COPY.
        stopping.set()
        for source, _ in sources:
            try:
                source.cancel()
            except Exception:  # noqa: BLE001, S110 - a source already done or gone
                pass
        stop()
        # (psycopg2 turns the exception of read() into one of its own.)
        if lines.source_failed:  # the cause, not what it did to the COPY in
            raise failure[0] from exc
        raise  # the COPY in's own failure; the sources' are its consequences
    stop()
    if failure:
        raise failure[0]
    return copied


def bulk_streams() -> int:
    """How many metadata connections a bulk load reads with: one per CPU core, up to 4."""
    return max(1, min(4, os.cpu_count() or 1))


def _statement(connection: Any, query: str, params: dict[str, Any]) -> str:
    with connection.cursor() as cursor:
        return cursor.mogrify(query, params).decode()


def sync(meta: Any, dachs: Any, *, table: str, vo: str = "def", full: bool = False,
         published: str = "rucio.main", server_url: str | None = None,
         examples: int = 5, only: Sequence[int] | None = None,
         connect: Callable[[], Any] | None = None, streams: int = 1,
         commit: bool = True, changes: str | None = None) -> SyncReport:
    """Bring ``published`` in step with the metadata ``table``; see the module's text.

    Parameters
    ----------
    meta
        A psycopg2 connection to the metadata database (only read, but for
        the entries of ``changes`` it removes).
    dachs
        A psycopg2 connection to DaCHS's database, not in autocommit mode;
        committed once at the end.
    server_url
        DaCHS's ``[web] serverURL``: rows then carry this server's DataLink
        URL as ``access_url``; None keeps the metadata's.
    only
        Sync just these record ids (the change log of :mod:`rucio_rd.capture`):
        those gone from the metadata are deleted, the others compared as usual.
    connect, streams
        A bulk load into the empty table reads with ``streams`` connections at
        once, each a share of the records: ``meta`` and as many more as
        ``connect`` opens (it closes them afterwards).
    commit
        False leaves the transaction to the caller (``dachs imp``).
    changes
        The change log of :mod:`rucio_rd.capture`, where it is installed: a
        sync of every record (not ``only``) that commits then removes the
        entries its snapshot of the metadata saw (at most
        :data:`FORGET_AT_ONCE`), since it has applied what they stand for;
        so the log stays short when no follower runs.  ``meta`` must then
        be allowed to delete from it; if not, the report says so.
    """
    started = time.monotonic()
    report = SyncReport("full" if full else "captured" if only is not None else "incremental")
    if not meta.autocommit:
        meta.set_session(readonly=True, autocommit=True)
    _check_encoding(meta)
    with dachs.cursor() as cursor:
        # One sync at a time (a scheduled one beside a follower): the second waits.
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (SYNC_LOCK,))
        # Joins of a million keys in memory, not in batches on disk.
        cursor.execute("SET LOCAL work_mem = '256MB'")
        cursor.execute("SELECT to_regclass('rucio.sync_rejects') IS NULL"
                       " OR to_regclass('rucio.sync_runs') IS NULL")
        if cursor.fetchone()[0]:
            cursor.execute(BOOKKEEPING_SQL)
        _check_columns(cursor, published)
        cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {published})")
        if only is None and not cursor.fetchone()[0]:
            report.mode = "bulk"
            _load(cursor, meta, connect, streams, table, vo, published, server_url, report,
                  changes)
        else:
            _sync_rows(cursor, meta, connect if only is None else None, streams, table, vo,
                       full, published, server_url, only, report,
                       changes if only is None else None)
        lap = time.monotonic()
        _report_rejects(cursor, report, examples)
        report.seconds = time.monotonic() - started
        cursor.execute(
            "INSERT INTO rucio.sync_runs (mode, records, fetched, added, changed, deleted,"
            " rejected, seconds) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (report.mode, report.records, report.fetched, report.added, report.changed,
             report.deleted, report.rejected, report.seconds))
        cursor.execute("DELETE FROM rucio.sync_runs WHERE finished < now() - interval '30 days'")
        if report.mode == "bulk" or report.added or report.changed or report.deleted:
            # A full sync counts afresh (the count DaCHS keeps may be an estimate).
            _note_in_dachs(cursor, published, None if report.mode in ("bulk", "full")
                           else report.added - report.deleted)
    if commit:
        dachs.commit()
    lap = report.lap("commit", lap)
    if commit and report.logged and changes is not None:
        _forget_logged(meta, changes, report)
        report.lap("forget", lap)
    return report


#: The most change-log entries one sync removes (the rest go with the next).
FORGET_AT_ONCE = 100_000


def _logged(source: Any, changes: str | None, report: SyncReport) -> list[int]:
    """The numbers of the entries of the change log ``changes`` that ``source``'s
    snapshot sees (the oldest :data:`FORGET_AT_ONCE`); none without a log, or
    when the metadata role may not read and delete them (the report says so)."""
    if changes is None:
        return []
    with source.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%(log)s) IS NOT NULL", {"log": changes})
        if not cursor.fetchone()[0]:  # capture removed meanwhile
            return []
        cursor.execute("SELECT has_table_privilege(%(log)s, 'SELECT')"
                       " AND has_table_privilege(%(log)s, 'DELETE')", {"log": changes})
        if not cursor.fetchone()[0]:
            report.warnings.append(
                f"the change log {changes} keeps the entries this sync applied: this"
                " metadata role may not read and delete them (GRANT SELECT, DELETE)")
            return []
        cursor.execute(f"SELECT seq FROM {changes} ORDER BY seq LIMIT %s", (FORGET_AT_ONCE,))
        return [seq for seq, in cursor.fetchall()]


def _forget_logged(meta: Any, changes: str, report: SyncReport) -> None:
    """Remove the entries ``report.logged`` from the change log (a write of its own,
    after the sync's commit: the entries stand for writes the sync applied).

    A failure (the connection lost meanwhile, a lock timeout) is a warning in
    the report, never an error: the sync itself has committed.
    """
    import psycopg2

    try:
        with meta.cursor() as cursor:
            cursor.execute("BEGIN READ WRITE")
            cursor.execute(forget_sql(changes), (report.logged,))
            forgotten = cursor.rowcount
            cursor.execute("COMMIT")
        report.forgotten = forgotten
    except psycopg2.Error as exc:
        report.warnings.append(
            f"the change log {changes} keeps {len(report.logged)} entries this sync"
            f" applied: {' '.join(str(exc).split())}")
        if not meta.closed:
            try:
                with meta.cursor() as cursor:
                    cursor.execute("ROLLBACK")
            except psycopg2.Error:  # the connection is gone after all
                pass


def forget_sql(changes: str) -> str:
    """DELETE of the entries numbered ``%s`` (an array) of the change log ``changes``,
    locked in the order of their numbers first, so that two syncs removing
    overlapping entries (a scheduled one and a follower) never deadlock."""
    return (f"DELETE FROM {changes} WHERE seq IN (SELECT seq FROM {changes}"
            f" WHERE seq = ANY(%s) ORDER BY seq FOR UPDATE)")


def _check_encoding(meta: Any) -> None:
    """Refuse a metadata database that is not UTF-8 (the rules trim Unicode
    whitespace, which other encodings cannot even spell in a query); read in
    UTF-8, as :func:`_trimmed` expects."""
    encoding = meta.info.parameter_status("server_encoding")  # known since connecting
    if encoding != "UTF8":
        raise SyncRefused(
            f"Rucio's metadata database is encoded in {encoding}: rucio_rd reads UTF-8"
            " metadata databases only (PostgreSQL's and Rucio's usual encoding)")
    meta.set_client_encoding("UTF8")


def _check_columns(cursor: Any, published: str) -> None:
    """Refuse a published table that lacks columns the sync writes (one imported by
    an older rucio_rd: the upgrade's ``rucio-rd deploy`` imports it anew)."""
    cursor.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass"
                   " AND attnum > 0 AND NOT attisdropped", (published,))
    missing = sorted(set(SYNC_COLUMNS) - {name for name, in cursor.fetchall()})
    if missing:
        raise SyncRefused(
            f"the published table {published} has no column {', '.join(missing)}: it was"
            " imported by an older rucio_rd; run rucio-rd deploy (it imports the table"
            " anew), then sync")


def _sync_rows(cursor: Any, meta: Any, connect: Callable[[], Any] | None, streams: int,
               table: str, vo: str, full: bool, published: str, server_url: str | None,
               only: Sequence[int] | None, report: SyncReport,
               changes: str | None = None) -> None:
    """Steps 1 to 4 of the module's text, into a published table that has rows; the
    digests of an incremental sync are read in ``streams`` at once (see :func:`sync`)."""
    columns = ", ".join(f"{name} {_TYPES[name]}" for name in SYNC_COLUMNS)
    cursor.execute("CREATE TEMP TABLE sync_keys (meta_id bigint, meta_digest text)"
                   " ON COMMIT DROP;"
                   f" CREATE TEMP TABLE sync_rows (bad_reason text, {columns})"
                   " ON COMMIT DROP")
    lap = time.monotonic()
    if full:  # every record is fetched: its id and digest come with it
        with _shared_snapshot(meta, None, 1, workers=True):
            report.logged = _logged(meta, changes, report)
            _copy_between([(meta, _statement(meta, rows_sql(table, only_ids=False),
                                             {"vo": vo}))], cursor.connection, "sync_rows")
        cursor.execute("INSERT INTO sync_keys SELECT meta_id, meta_digest FROM sync_rows")
        report.records = report.fetched = cursor.rowcount
        cursor.execute("CREATE INDEX ON sync_keys (meta_id); ANALYZE sync_keys")
        lap = report.lap("fetch", lap)
    else:
        keys: dict[str, Any] = {"vo": vo}
        if only is not None:
            keys["ids"] = list(only)
        with _shared_snapshot(meta, connect, streams, workers=True) as sources:
            report.logged = _logged(meta, changes, report)
            keys["parts"] = len(sources)
            report.records = _copy_between(
                [(source, _statement(source, digests_sql(table, only is not None, True),
                                     {**keys, "part": part}))
                 for part, source in enumerate(sources)], cursor.connection, "sync_keys")
        # (No index: the keys are only ever joined as a whole, by hash.)
        cursor.execute("ANALYZE sync_keys")
        lap = report.lap("digests", lap)
        if only is None:
            _refuse_mass_deletion(cursor, published, report.records, vo)
        # In one pass over both (an index-only scan of the published side): what to
        # fetch, new or changed records not rejected as they are now, and what is
        # gone from the metadata.
        # (A captured sync is about its records only: nothing else is gone.)
        cursor.execute(f"""
            CREATE TEMP TABLE sync_diff ON COMMIT DROP AS
            SELECT k.meta_id AS wanted, CASE WHEN k.meta_id IS NULL THEN m.meta_id END AS gone
            FROM sync_keys k
            {"FULL" if only is None else "LEFT"} JOIN (SELECT meta_id, meta_digest
                FROM {published} WHERE meta_id IS NOT NULL) m ON m.meta_id = k.meta_id
            LEFT JOIN rucio.sync_rejects r ON r.meta_id = k.meta_id
            WHERE k.meta_id IS NULL
               OR (m.meta_digest IS DISTINCT FROM k.meta_digest
                   AND r.meta_digest IS DISTINCT FROM k.meta_digest)""")
        cursor.execute("SELECT wanted FROM sync_diff WHERE wanted IS NOT NULL")
        wanted = [row[0] for row in cursor.fetchall()]
        report.fetched = len(wanted)
        lap = report.lap("compare", lap)
        if wanted:
            fetch = {"vo": vo, "ids": wanted}
            _copy_between([(meta, _statement(meta, rows_sql(table, only_ids=True), fetch))],
                          cursor.connection, "sync_rows")
        lap = report.lap("fetch", lap)
    access_url = "s.access_url"
    if server_url is not None:
        access_url = f"{_literal(_datalink_prefix(server_url))} || {_encoded_did('s.did')}"
    _apply(cursor, published, report, full, access_url, only, diffed=not full and only is None)
    report.lap("apply", lap)


def _datalink_prefix(server_url: str) -> str:
    return f"{server_url.rstrip('/')}{DATALINK_PATH}?id="


@contextlib.contextmanager
def _shared_snapshot(meta: Any, connect: Callable[[], Any] | None,
                     streams: int, workers: bool = False) -> Iterator[list[Any]]:
    """``meta`` and ``streams - 1`` more connections from ``connect``, each in a
    read-only transaction that sees the same snapshot of the metadata database
    (so that parallel streams agree: no record twice, none lost), for as long
    as the ``with`` block reads.  A server (or pooler) that cannot share a
    snapshot gets one stream.  The more connections are closed afterwards and
    ``meta`` is back out of any transaction (or the error says it is not).
    ``workers``: PostgreSQL may use parallel workers for one stream alone."""
    import psycopg2

    sources = [meta]
    try:
        if connect is not None:
            for _ in range(streams - 1):
                sources.append(connect())  # one at a time: all are closed, whatever fails
        if len(sources) > 1:
            try:
                for source in sources[1:]:
                    source.set_session(readonly=True, autocommit=True)
                    source.set_client_encoding("UTF8")
                with meta.cursor() as cursor:
                    _begin_reading(cursor, workers=False)
                    cursor.execute("SELECT pg_export_snapshot()")
                    snapshot = cursor.fetchone()[0]
                for source in sources[1:]:
                    with source.cursor() as cursor:
                        _begin_reading(cursor, snapshot, workers=False)
            except psycopg2.Error:
                _end_reading(sources)
                del sources[1:]
        if len(sources) == 1:
            with meta.cursor() as cursor:
                _begin_reading(cursor, workers=workers)
        yield sources
    finally:
        _end_reading(sources)


def _begin_reading(cursor: Any, snapshot: str | None = None, *, workers: bool) -> None:
    """Start the read-only transaction of one stream (on ``snapshot``, if given),
    without PostgreSQL's parallel workers unless ``workers``."""
    cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    if snapshot is not None:
        cursor.execute("SET TRANSACTION SNAPSHOT %s", (snapshot,))
    if not workers:
        # Each stream is one process of its own: parallel workers would only
        # compete with the other streams (and the COPY in, which fills the
        # spatial index) for the cores, and pass every JSON document between
        # processes.
        cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")


def _end_reading(sources: list[Any]) -> None:
    """Roll back the read transactions of ``sources``; close all but the first, which
    must end up out of any transaction (it is the caller's)."""
    import psycopg2
    from psycopg2.extensions import TRANSACTION_STATUS_IDLE

    try:
        for source in sources:
            if source.closed or source.info.transaction_status == TRANSACTION_STATUS_IDLE:
                continue
            try:
                with source.cursor() as cursor:
                    cursor.execute("ROLLBACK")  # it only read
            except psycopg2.Error:  # noqa: PERF203 - a broken connection: checked below
                pass
    finally:
        for source in sources[1:]:
            source.close()
    meta = sources[0]
    if not meta.closed and meta.info.transaction_status != TRANSACTION_STATUS_IDLE:
        raise RuntimeError("the metadata connection could not end its read transaction")


def _load(cursor: Any, meta: Any, connect: Callable[[], Any] | None, streams: int,
          table: str, vo: str, published: str, server_url: str | None,
          report: SyncReport, changes: str | None = None) -> None:
    """A bulk load of every record into the empty ``published`` table.

    The metadata connections (``meta`` and ``streams - 1`` from ``connect``, on one
    snapshot; one fewer when a GiST index stays, see :func:`_drop_indexes`) each
    stream a share of the rows (:func:`load_sql`) straight into the table with
    one COPY, its B-tree indexes dropped and built afterwards in one go, its
    spatial (GiST) index filled by the COPY; the unusable records, which came along marked, move
    to ``rucio.sync_rejects`` before the indexes are built, in the same
    transaction, so that no reader ever sees them.  Readers of the empty
    table wait for the commit.  (Under ``dachs imp`` the table is new and has
    no indexes yet: DaCHS makes them afterwards.)
    """
    lap = time.monotonic()
    cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
    cursor.execute("SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE confrelid = %s::regclass)",
                   (published,))
    if not cursor.fetchone()[0]:
        # No row is visible, but a table emptied by DELETE still holds the dead ones,
        # and a kept index their entries: both go (the table is locked anyway).
        cursor.execute(f"TRUNCATE {published}")
    indexes, kept = _drop_indexes(cursor, published)
    if kept:  # the COPY in fills a GiST index as it goes: that takes a core of its own
        streams = max(1, streams - 1)
    prefix = None if server_url is None else _datalink_prefix(server_url)
    with _shared_snapshot(meta, connect, streams) as sources:  # only while reading
        report.logged = _logged(meta, changes, report)
        statements = [(source, _statement(source, load_sql(table, parted=True),
                                          {"vo": vo, "prefix": prefix, "parts": len(sources),
                                           "part": part}))
                      for part, source in enumerate(sources)]
        report.records = report.fetched = _copy_between(
            statements, cursor.connection, f"{published} ({', '.join(SYNC_COLUMNS)})")
    lap = report.lap("load", lap)
    cursor.execute("DELETE FROM rucio.sync_rejects")
    cursor.execute(f"""
        WITH unusable AS (
            DELETE FROM {published} WHERE meta_digest LIKE {_literal(UNUSABLE + "%%")}
            RETURNING meta_id, meta_digest, did, access_url)
        INSERT INTO rucio.sync_rejects (meta_id, meta_digest, did, reason)
        SELECT meta_id, substr(meta_digest, {len(UNUSABLE) + 1}), did, access_url
        FROM unusable""")
    report.rejected = cursor.rowcount
    report.added = report.records - report.rejected
    lap = report.lap("sort out", lap)
    _remake_indexes(cursor, published, indexes)
    report.lap("index", lap)


def _note_in_dachs(cursor: Any, published: str, growth: int | None) -> None:
    """Tell DaCHS's own metadata: the data of the table's RD was updated now (its
    "Data updated", the registry record's date), and how many rows it has
    (VOSI tables' nrows: counted, or, with ``growth``, the known count changed
    by that much).  DaCHS reads them when it loads the RD."""
    cursor.execute("SELECT to_regclass('dc.tablemeta') IS NOT NULL"
                   " AND to_regclass('dc.rdmeta') IS NOT NULL")
    if not cursor.fetchone()[0]:
        return  # not a DaCHS database (tests of the sync alone)
    cursor.execute(f"""
        UPDATE dc.tablemeta SET nrows = CASE WHEN %(growth)s::bigint IS NOT NULL
            AND nrows IS NOT NULL THEN nrows + %(growth)s ELSE (SELECT count(*) FROM {published})
            END
        WHERE tablename = %(table)s""", {"table": published, "growth": growth})
    cursor.execute("""
        UPDATE dc.rdmeta SET data_updated = now() AT TIME ZONE 'UTC'
        WHERE sourcerd = (SELECT sourcerd FROM dc.tablemeta WHERE tablename = %(table)s)""",
                   {"table": published})


def _refuse_mass_deletion(cursor: Any, published: str, records: int, vo: str) -> None:
    """An incremental sync never takes away more than half of the published rows:
    that is a wrong VO or table, or a metadata table emptied by accident, more
    likely than real deletions (``--full`` does it if it is meant)."""
    cursor.execute(f"SELECT count(*) FROM {published}")
    rows = cursor.fetchone()[0]
    if rows >= 10 and records < rows // 2:
        raise SyncRefused(
            f"the metadata table has {records} records of VO {vo!r} but {rows} rows are"
            " published: an incremental sync would delete more than half of them. Check"
            " [metadata] table and vo; if the records are really gone, run with --full")


_TYPES = {name: "text" for name in SYNC_COLUMNS}
_TYPES.update({name: "double precision" for name in ("s_ra", "s_dec", *_OPTIONAL_FLOAT)})
_TYPES.update(access_estsize="bigint", content_length="bigint", calib_level="smallint",
              meta_id="bigint")


def _apply(cursor: Any, published: str, report: SyncReport, full: bool,
           access_url: str = "s.access_url", only: Sequence[int] | None = None,
           diffed: bool = False) -> None:
    """Step 4: deletions, rejections, updates and insertions, in the caller's transaction.

    ``access_url`` is the SQL for a row's access_url (over ``sync_rows s``);
    ``only``: the record ids this sync is about (None: all); ``diffed``: the
    records gone from the metadata are the ``gone`` of ``sync_diff``.
    """
    if only is not None:
        cursor.execute("CREATE TEMP TABLE sync_scope ON COMMIT DROP AS"
                       " SELECT unnest(%s::bigint[]) AS meta_id", (list(only),))
    cursor.execute("CREATE INDEX ON sync_rows (meta_id); CREATE INDEX ON sync_rows (did);"
                   " ANALYZE sync_rows")
    # Gone from the metadata, published before the sync knew it, or fetched and
    # now unusable: out of the table.  (Separate statements, so that each is a
    # plain join the planner does in one pass.)
    report.deleted = 0
    if diffed:
        statements = [f"DELETE FROM {published} m WHERE m.meta_id IS NULL",
                      f"DELETE FROM {published} m USING sync_diff g WHERE g.gone = m.meta_id"]
    elif only is None:
        statements = [f"DELETE FROM {published} m WHERE m.meta_id IS NULL",
                      f"""DELETE FROM {published} m WHERE NOT EXISTS
                          (SELECT 1 FROM sync_keys k WHERE k.meta_id = m.meta_id)"""]
    else:
        statements = [f"""DELETE FROM {published} m
                          WHERE m.meta_id IN (SELECT meta_id FROM sync_scope)
                            AND NOT EXISTS (SELECT 1 FROM sync_keys k
                                            WHERE k.meta_id = m.meta_id)"""]
    statements.append(f"""DELETE FROM {published} m USING sync_rows s
                           WHERE s.meta_id = m.meta_id AND s.bad_reason IS NOT NULL""")
    for statement in statements:
        cursor.execute(statement)
        report.deleted += cursor.rowcount
    _record_rejects(cursor, report, only is not None)
    values = _values(access_url)
    updates = ", ".join(f"{name} = {values[name]}" for name in SYNC_COLUMNS
                        if name != "meta_id")
    # A row changes when its record did, or (--full: after a change of the rules or
    # of the server's URL) when what it would now be differs from what it is.
    changed = "m.meta_digest IS DISTINCT FROM s.meta_digest"
    if full:
        published_now = ", ".join(f"m.{name}" for name in SYNC_COLUMNS)
        wanted_now = ", ".join(values[name] for name in SYNC_COLUMNS)
        changed = f"ROW({published_now}) IS DISTINCT FROM ROW({wanted_now})"
    cursor.execute(f"""
        UPDATE {published} m SET {updates}
        FROM sync_rows s
        WHERE s.bad_reason IS NULL AND s.meta_id = m.meta_id AND {changed}""")
    report.changed = cursor.rowcount
    # A DID published under another record id (deleted and registered again) is
    # replaced by the new record.
    cursor.execute(f"""
        DELETE FROM {published} m USING sync_rows s
        WHERE s.bad_reason IS NULL AND s.did = m.did AND s.meta_id <> m.meta_id""")
    report.deleted += cursor.rowcount
    _insert_new(cursor, published, report, access_url)


def _values(access_url: str) -> dict[str, str]:
    """SQL per published column over ``sync_rows s``."""
    values = {name: f"s.{name}" for name in SYNC_COLUMNS}
    values["access_url"] = access_url
    return values


def _record_rejects(cursor: Any, report: SyncReport, scoped: bool = False) -> None:
    """Forget rejections of records gone or fetched again; note this sync's.

    ``scoped``: only the records of ``sync_scope`` are this sync's business.
    """
    in_scope = " AND r.meta_id IN (SELECT meta_id FROM sync_scope)" if scoped else ""
    cursor.execute(f"""
        DELETE FROM rucio.sync_rejects r
        WHERE NOT EXISTS (SELECT 1 FROM sync_keys k WHERE k.meta_id = r.meta_id){in_scope}""")
    cursor.execute("DELETE FROM rucio.sync_rejects r USING sync_rows s"
                   " WHERE s.meta_id = r.meta_id")
    cursor.execute("""
        INSERT INTO rucio.sync_rejects (meta_id, meta_digest, did, reason)
        SELECT meta_id, meta_digest, did, bad_reason FROM sync_rows
        WHERE bad_reason IS NOT NULL""")
    report.rejected = cursor.rowcount


def _insert_new(cursor: Any, published: str, report: SyncReport, access_url: str) -> None:
    """Insert the good fetched rows not yet published."""
    values = _values(access_url)
    # Which rows are new is decided before inserting (an insert that checked the
    # table it fills would scan its own new rows again and again).
    cursor.execute(f"""
        CREATE TEMP TABLE sync_new ON COMMIT DROP AS
        SELECT s.meta_id FROM sync_rows s
        WHERE s.bad_reason IS NULL
          AND NOT EXISTS (SELECT 1 FROM {published} m WHERE m.meta_id = s.meta_id)""")
    cursor.execute(f"""
        INSERT INTO {published} ({", ".join(SYNC_COLUMNS)})
        SELECT {", ".join(values[name] for name in SYNC_COLUMNS)}
        FROM sync_rows s JOIN sync_new n ON n.meta_id = s.meta_id""")
    report.added = cursor.rowcount


def _drop_indexes(cursor: Any, published: str) -> tuple[list[str], bool]:
    """Drop the B-tree (and other non-GiST) indexes of ``published``, and the
    constraints they back; return the statements that make them again as they
    were (clustering included), and whether GiST indexes were kept.

    A GiST index whose operator classes cannot sort (pgSphere's ``spoint``)
    stays: PostgreSQL 15 builds one by inserting every row in turn, which the
    COPY does as well, in its own process while the metadata database works
    on another core (a build afterwards would be as slow and keep the other
    core idle).
    """
    cursor.execute("""
        SELECT pg_get_indexdef(i.indexrelid), i.indisclustered,
               quote_ident(n.nspname) || '.' || quote_ident(c.relname),
               quote_ident(c.relname), quote_ident(k.conname), pg_get_constraintdef(k.oid),
               c.relam = (SELECT oid FROM pg_am WHERE amname = 'gist')
               -- an operator class that sorts (support function 11) builds faster
               AND NOT EXISTS (SELECT 1 FROM unnest(i.indclass::oid[]) AS k(opclass)
                               JOIN pg_opclass o ON o.oid = k.opclass
                               JOIN pg_amproc p ON p.amprocfamily = o.opcfamily
                                AND p.amproclefttype = o.opcintype AND p.amprocnum = 11)
        FROM pg_index i
        JOIN pg_class c ON c.oid = i.indexrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid
        WHERE i.indrelid = %(table)s::regclass
          -- what a foreign key depends on stays (as DaCHS keeps it)
          AND NOT EXISTS (SELECT 1 FROM pg_constraint f
                          WHERE f.contype = 'f' AND f.conindid = i.indexrelid)""",
                   {"table": published})
    remakes = []
    kept = False
    for definition, clustered, qualified, name, constraint, constraint_def, gist \
            in cursor.fetchall():
        if gist and constraint is None:
            kept = True
            continue
        if constraint is None:
            cursor.execute(f"DROP INDEX {qualified}")
            remakes.append(definition)
        else:
            cursor.execute(f"ALTER TABLE {published} DROP CONSTRAINT {constraint}")
            remakes.append(f"ALTER TABLE {published} ADD CONSTRAINT {constraint}"
                           f" {constraint_def}")
        if clustered:
            remakes.append(f"ALTER TABLE {published} CLUSTER ON {name}")
    return remakes, kept


def _remake_indexes(cursor: Any, published: str, remakes: Sequence[str]) -> None:
    for statement in remakes:
        cursor.execute(statement)
    cursor.execute(f"ANALYZE {published}")


def _report_rejects(cursor: Any, report: SyncReport, examples: int) -> None:
    cursor.execute("""
        SELECT reason, count(*), (array_agg(did ORDER BY did))[1:%(examples)s]
        FROM rucio.sync_rejects GROUP BY reason ORDER BY count(*) DESC""",
                   {"examples": examples})
    for reason, count, dids in cursor.fetchall():
        report.reasons[reason] = count
        report.examples[reason] = list(dids)


def printable_report(report: SyncReport) -> str:
    """The report as the operator reads it: the summary, then unusable records per reason."""
    out = io.StringIO()
    print(report.summary(), file=out)
    for reason, count in report.reasons.items():
        shown = ", ".join(repr(did) for did in report.examples.get(reason, ()))
        print(f"  unusable: {count} x {reason}: e.g. {shown}", file=out)
    if report.forgotten:
        print(f"  change log: {report.forgotten} applied entries removed", file=out)
    for warning in report.warnings:
        print(f"  warning: {warning}", file=out)
    return out.getvalue().rstrip("\n")

