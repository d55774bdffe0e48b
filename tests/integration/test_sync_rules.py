"""The sync's SQL judges records as the Python rules do.

:func:`rucio_rd.sync.rows_sql` turns metadata records into rows inside
PostgreSQL; :func:`rucio_rd.metadata.row_from_record` is the same rules in
Python (the reference, unit-tested on its own).  Here both judge the same
awkward records, stored in a real jsonb column, and must agree record by
record: usable or not, and the value of every published column.
"""

from __future__ import annotations

import json
import math
import subprocess

import psycopg2
import pytest

from rucio_rd.metadata import BadRecordError, row_from_record
from rucio_rd.sync import SYNC_COLUMNS, SyncRefused, rows_sql, sync

DB = "rucio_rd_it_rules"
BASE = '"s_ra": 10.5, "s_dec": -20.25, "access_url": "https://example.org/x.fits"'

# (scope, name, JSON text or None for SQL NULL)
RECORDS = [
    ("s", "good.fits", "{" + BASE + "}"),
    ("s", "string-number.fits", '{"s_ra": " 10.5 ", "s_dec": "-2e1", "access_url": "u"}'),
    ("s", "text-ra.fits", '{"s_ra": "abc", "s_dec": 1, "access_url": "u"}'),
    ("s", "true-ra.fits", '{"s_ra": true, "s_dec": 1, "access_url": "u"}'),
    ("s", "null-dec.fits", '{"s_ra": 1, "s_dec": null, "access_url": "u"}'),
    ("s", "no-dec.fits", '{"s_ra": 1, "access_url": "u"}'),
    ("s", "ra-360.fits", '{"s_ra": 360, "s_dec": 1, "access_url": "u"}'),
    ("s", "dec-90.fits", '{"s_ra": 0, "s_dec": 90, "access_url": "u"}'),
    ("s", "dec-91.fits", '{"s_ra": 0, "s_dec": 91, "access_url": "u"}'),
    ("s", "tiny.fits", '{"s_ra": 1e-330, "s_dec": 0, "access_url": "u", "s_fov": "1e-330"}'),
    ("s", "vast.fits", '{"s_ra": 1, "s_dec": 1e400, "access_url": "u"}'),
    ("s", "nan.fits", '{"s_ra": "nan", "s_dec": 1, "access_url": "u"}'),
    ("s", "inf.fits", '{"s_ra": 1, "s_dec": "-Infinity", "access_url": "u"}'),
    ("s", "no-url.fits", '{"s_ra": 1, "s_dec": 1}'),
    ("s", "blank-url.fits", '{"s_ra": 1, "s_dec": 1, "access_url": "  \\t "}'),
    ("s", "number-url.fits", '{"s_ra": 1, "s_dec": 1, "access_url": 42}'),
    ("s", "object-url.fits", '{"s_ra": 1, "s_dec": 1, "access_url": {"href": "u"}}'),
    ("s", "padded-url.fits", '{"s_ra": 1, "s_dec": 1, "access_url": "\\n https://e.org/p \\r"}'),
    ("s", "long-url.fits", '{"s_ra": 1, "s_dec": 1, "access_url": "' + "u" * 4097 + '"}'),
    ("s", "texts.fits", "{" + BASE + ', "obs_id": "true", "target_name": "{x}",'
     ' "facility_name": false, "instrument_name": ["a"], "obs_collection": 7,'
     ' "content_type": "  ", "dataproduct_type": "' + "é" * 5000 + '"}'),
    ("s", "numbers.fits", "{" + BASE + ', "s_fov": "0.5", "t_min": 60000.5, "t_max": "x",'
     ' "em_min": true, "em_max": 1e-7, "content_length": "2.0000000000000001",'
     ' "calib_level": "2.0000000000000001"}'),
    ("s", "bad-numbers.fits", "{" + BASE + ', "content_length": -1, "calib_level": 5}'),
    ("s", "fraction.fits", "{" + BASE + ', "content_length": 10.5, "calib_level": 1.5}'),
    ("s", "huge-length.fits", "{" + BASE + ', "content_length": 1e19}'),
    ("s", "kib.fits", "{" + BASE + ', "content_length": 1025}'),
    ("s", "big-length.fits", "{" + BASE + ', "content_length": 9.22e18}'),
    ("s", "too-big-length.fits", "{" + BASE + ', "content_length": 9223372036854775808}'),
    ("s", "nbsp-url.fits", '{"s_ra": 1, "s_dec": 1, "access_url": "\\u00a0\\u3000"}'),
    ("s", "nbsp-padded.fits", '{"s_ra": 1, "s_dec": 1, "access_url": "\\u2003https://e.org\\u00a0"}'),
    # Texts that start and end in printable ASCII are taken as they are; any other is trimmed.
    ("s", "ascii-then-ideographic-space.fits",
     '{"s_ra": 1, "s_dec": 1, "access_url": "https://e.org/x\\u3000"}'),
    ("s", "ascii-then-next-line.fits", '{"s_ra": 1, "s_dec": 1, "access_url": "https://e.org/x\\u0085"}'),
    ("s", "ascii-then-tab.fits", '{"s_ra": 1, "s_dec": 1, "access_url": "https://e.org/x\\t"}'),
    ("s", "accented-ends.fits", "{" + BASE + ', "obs_id": "obsé", "target_name": "éM31 ",'
     ' "facility_name": "A", "instrument_name": "~"}'),
    ("s", "number-text.fits",
     "{" + BASE + ', "obs_id": 1e-7, "target_name": 12345678901234567890}'),
    ("s", "array.fits", "[1, 2]"),
    ("s", "string.fits", '"text"'),
    ("s", "null.fits", None),
    ("s", "damaged\nname.fits", "{" + BASE + "}"),
    ("s", "/rooted.fits", "{" + BASE + "}"),
    ("s", "double//slash.fits", "{" + BASE + "}"),
    ("bad scope", "x.fits", "{" + BASE + "}"),
    ("s" * 26, "x.fits", "{" + BASE + "}"),
    ("s", "sub/dir+plus.fits", "{" + BASE + "}"),
    # The extra links: an array as its JSON (compared parsed), a string as it is.
    ("s", "links-array.fits", "{" + BASE + ', "datalinks": [{"access_url": "https://p/q.png",'
     ' "semantics": "#preview", "content_length": 1e3, "z": [1.5, null, true], "é": "ü"}]}'),
    ("s", "links-string.fits", "{" + BASE + ', "datalinks":'
     ' "[{\'access_url\': \'https://p/q.png\', \'semantics\': \'#preview\'}]"}'),
    ("s", "links-object.fits", "{" + BASE + ', "datalinks": {"access_url": "https://p"}}'),
    ("s", "links-number.fits", "{" + BASE + ', "datalinks": 3}'),
    ("s", "links-null.fits", "{" + BASE + ', "datalinks": null}'),
    ("s", "links-long.fits", "{" + BASE + ', "datalinks": ["' + "é" * 32768 + '"]}'),
    ("s", "links-long-string.fits", "{" + BASE + ', "datalinks": "' + "x" * 65536 + '"}'),
]


@pytest.fixture(scope="module")
def judged() -> dict[tuple[str, str], tuple]:
    subprocess.run(["dropdb", "--if-exists", DB], check=True)
    subprocess.run(["createdb", DB], check=True)
    try:
        connection = psycopg2.connect(dbname=DB)
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("CREATE TABLE dids (id bigint GENERATED ALWAYS AS IDENTITY,"
                           " vo text NOT NULL, scope text NOT NULL, name text NOT NULL,"
                           " data jsonb)")
            for scope, name, text in RECORDS:
                cursor.execute("INSERT INTO dids (vo, scope, name, data)"
                               " VALUES ('def', %s, %s, %s::jsonb)", (scope, name, text))
            cursor.execute(rows_sql("dids", only_ids=False), {"vo": "def"})
            rows = cursor.fetchall()
            cursor.execute("SELECT scope, name, data::text FROM dids")
            stored = {(scope, name): text for scope, name, text in cursor.fetchall()}
        connection.close()
    finally:
        subprocess.run(["dropdb", "--if-exists", DB], check=False)
    judged = {}
    for row in rows:
        values = dict(zip(("bad_reason", *SYNC_COLUMNS), row, strict=True))
        judged[(values["scope"], values["name"])] = (values, stored[(values["scope"],
                                                                     values["name"])])
    return judged


@pytest.mark.parametrize("scope,name", [(scope, name) for scope, name, _ in RECORDS])
def test_sql_and_python_agree(judged, scope: str, name: str) -> None:
    sql, stored = judged[(scope, name)]
    try:
        row, _dropped = row_from_record(scope, name, stored)
    except BadRecordError as exc:
        assert sql["bad_reason"] is not None, (str(exc), sql)
        return
    assert sql["bad_reason"] is None, (sql["bad_reason"], row)
    for column, expected in row.items():
        got = sql[column]
        if column == "datalinks" and got != expected:
            # An array: jsonb writes its own JSON text (key order, spacing), the same JSON.
            assert json.loads(got) == json.loads(expected), (got, expected)
        elif isinstance(expected, float) and got is not None:
            assert math.isclose(got, expected, rel_tol=1e-15, abs_tol=0), column
        else:
            assert got == expected, (column, got, expected)


def test_a_metadata_database_not_in_utf8_is_refused_saying_so() -> None:
    database = DB + "_latin1"
    subprocess.run(["dropdb", "--if-exists", database], check=True)
    subprocess.run(["createdb", "-E", "LATIN1", "-T", "template0", "--locale=C", database],
                   check=True)
    try:
        connection = psycopg2.connect(dbname=database)
        try:
            with pytest.raises(SyncRefused, match="encoded in LATIN1: rucio_rd reads UTF-8"):
                sync(connection, None, table="dids")  # before anything else is touched
        finally:
            connection.close()
    finally:
        subprocess.run(["dropdb", "--if-exists", database], check=False)
