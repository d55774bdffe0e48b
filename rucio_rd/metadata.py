"""Turn Rucio's per-file JSON metadata into rows of the published table.

Rucio's POSTGRES_JSON did-meta plugin keeps one row per DID in a PostgreSQL
table (``scope``, ``name``, ``data`` as JSONB).  A record becomes a row when
its JSON carries usable ``s_ra``/``s_dec`` (degrees) and an ``access_url``;
the other ObsCore fields are taken where present; an unusable record raises
:class:`BadRecordError` with the reason.

These are the rules in Python, the reference: the sync (:mod:`rucio_rd.sync`)
applies them in SQL, inside PostgreSQL, and a test holds the two together
record by record (``tests/integration/test_sync_rules.py``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from rucio_rd.model import NAME_MAX, NAME_PATTERN, SCOPE_MAX, SCOPE_PATTERN

__all__ = [
    "BOOKKEEPING_COLUMNS",
    "DATALINK_PATH",
    "ROW_COLUMNS",
    "WHITESPACE",
    "MAX_DATALINKS_BYTES",
    "BadRecordError",
    "datalink_access_url",
    "datalinks_text",
    "row_from_record",
]

#: Where the RD rucio/rucio serves its DataLink service on a DaCHS server.
DATALINK_PATH = "/rucio/rucio/dl/dlmeta"

# Columns of the published table filled from a record, in table order.
ROW_COLUMNS = (
    "did",
    "scope",
    "name",
    "obs_id",
    "s_ra",
    "s_dec",
    "s_fov",
    "access_url",
    "access_format",
    "access_estsize",
    "content_type",
    "content_length",
    "dataproduct_type",
    "calib_level",
    "obs_collection",
    "target_name",
    "facility_name",
    "instrument_name",
    "t_min",
    "t_max",
    "em_min",
    "em_max",
    "datalinks",
)

#: The columns after those that say which metadata record a row came from, and in
#: which version (its id in Rucio's table, the MD5 of its JSON text).
BOOKKEEPING_COLUMNS = ("meta_id", "meta_digest")

_OPTIONAL_TEXT = (
    "obs_id",
    "access_format",
    "content_type",
    "dataproduct_type",
    "obs_collection",
    "target_name",
    "facility_name",
    "instrument_name",
)
_OPTIONAL_FLOAT = ("s_fov", "t_min", "t_max", "em_min", "em_max")
_MAX_TEXT = 4096
#: The longest ``datalinks`` kept (UTF-8 bytes of its text): extra links, not a catalogue.
MAX_DATALINKS_BYTES = 65536
_MAX_BIGINT = 2**63 - 1
#: What Python's str.strip() takes away (and so the sync's SQL too): Unicode whitespace.
WHITESPACE = "".join(chr(code) for code in range(0x3001) if chr(code).isspace())
_SCOPE = re.compile(SCOPE_PATTERN)
_NAME = re.compile(NAME_PATTERN)


class BadRecordError(ValueError):
    """A record that cannot become a row; the message says why."""


def _number(value: Any, what: str) -> float:
    # JSON booleans are ints in Python; a coordinate of "true" is not a number.
    if isinstance(value, bool) or value is None:
        raise BadRecordError(f"{what} is {json.dumps(value)}, not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadRecordError(f"{what} is {str(value)[:40]!r}, not a number") from None
    except OverflowError:
        raise BadRecordError(f"{what} is a number too large for a float") from None
    if not math.isfinite(number):
        if isinstance(value, _JsonNumber):  # a JSON number beyond a double's range
            raise BadRecordError(f"{what} is a number too large for a float")
        raise BadRecordError(f"{what} is {str(value)[:40]!r}, not a finite number")
    return number


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip(WHITESPACE)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        text = str(value)
    else:
        raise BadRecordError(f"{value!r} is not text")
    if "\x00" in text:
        raise BadRecordError("text with a NUL character")
    return text[:_MAX_TEXT] or None


class _JsonNumber(str):
    """A JSON number kept as its text: float() of it where a number is wanted, the
    text itself where text is (as PostgreSQL's ``->>`` gives it)."""

    __slots__ = ()


def _parse_data(data: Any) -> dict[str, Any]:
    if isinstance(data, bytes | bytearray | memoryview):
        data = bytes(data).decode("utf-8", errors="replace")
    if isinstance(data, str):
        try:
            data = json.loads(data, parse_int=_JsonNumber, parse_float=_JsonNumber)
        except json.JSONDecodeError as exc:
            raise BadRecordError(f"metadata is not valid JSON ({exc.msg})") from None
        except (ValueError, RecursionError) as exc:
            # e.g. an integer of more than 4300 digits, or objects nested thousands deep
            reason = "nested too deep" if isinstance(exc, RecursionError) else str(exc)[:80]
            raise BadRecordError(f"metadata cannot be read as JSON ({reason})") from None
    if not isinstance(data, dict):
        kind = "number" if isinstance(data, _JsonNumber) else type(data).__name__
        raise BadRecordError(f"metadata is a JSON {kind}, not an object")
    return data


def datalink_access_url(server_url: str, did: str) -> str:
    """This server's DataLink URL for ``did``: ``<server>/rucio/rucio/dl/dlmeta?id=<did>``.

    The DID is percent-encoded except for its colon, so that the notebook's
    ``url.split('?id=')[1].split('&')[0].split(':')`` still finds scope and name.
    """
    return f"{server_url.rstrip('/')}{DATALINK_PATH}?id={quote(did, safe=':')}"


def _plain(value: Any) -> Any:
    """A parsed JSON value with its numbers as numbers again (not :class:`_JsonNumber`)."""
    if isinstance(value, _JsonNumber):
        return json.loads(value)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def datalinks_text(value: Any) -> str | None:
    """The published ``datalinks`` column for the metadata's ``datalinks`` value: a
    JSON array as JSON text, a string as it is (the SKA prototype stores a Python
    list literal in one), else None; None too beyond :data:`MAX_DATALINKS_BYTES`.
    Which entries are links is judged where they are served
    (:mod:`rucio_rd.extra_links`)."""
    if isinstance(value, list):
        text = json.dumps(_plain(value), ensure_ascii=False)
    elif isinstance(value, str) and not isinstance(value, _JsonNumber):
        text = value
    else:
        return None
    return text if len(text.encode("utf-8")) <= MAX_DATALINKS_BYTES else None


def row_from_record(
    scope: str, name: str, data: Any, access_url_for: Callable[[str], str] | None = None
) -> tuple[dict[str, Any], int]:
    """Build a table row from one metadata record.

    Returns the row and the number of optional fields that were present but
    unusable (they are left NULL).  Raises :class:`BadRecordError` when the
    record cannot be published at all.  The metadata's ``access_url`` marks a
    record for publication; with ``access_url_for`` (DID to URL) the row
    carries that function's URL instead of the metadata's.
    """
    if not scope or not name:
        raise BadRecordError("empty scope or name")
    meta = _parse_data(data)
    if (not _SCOPE.fullmatch(scope) or len(scope) > SCOPE_MAX or not _NAME.fullmatch(name)
            or len(name) > NAME_MAX or name.startswith("/") or "//" in name):
        raise BadRecordError("damaged DID (not a Rucio scope:name)")
    if "s_ra" not in meta or "s_dec" not in meta:
        raise BadRecordError("no s_ra/s_dec")
    ra = _number(meta["s_ra"], "s_ra")
    dec = _number(meta["s_dec"], "s_dec")
    if not 0 <= ra < 360:
        raise BadRecordError(f"s_ra={ra} is outside [0, 360)")
    if not -90 <= dec <= 90:
        raise BadRecordError(f"s_dec={dec} is outside [-90, 90]")
    raw_url = meta.get("access_url")
    # A cut URL would be a broken link: refuse it instead of truncating.
    if isinstance(raw_url, str) and len(raw_url.strip()) > _MAX_TEXT:
        raise BadRecordError(f"access_url is longer than {_MAX_TEXT} characters")
    try:
        access_url = _text(raw_url)
    except BadRecordError as exc:
        raise BadRecordError(f"access_url: {exc}") from None
    if not access_url:
        raise BadRecordError("no access_url")

    dropped = 0
    row: dict[str, Any] = dict.fromkeys(ROW_COLUMNS)
    row.update(did=f"{scope}:{name}", scope=scope, name=name, s_ra=ra, s_dec=dec)
    row["access_url"] = access_url if access_url_for is None else access_url_for(row["did"])
    for key in _OPTIONAL_TEXT:
        try:
            row[key] = _text(meta.get(key))
        except BadRecordError:
            dropped += 1
    for key in _OPTIONAL_FLOAT:
        if meta.get(key) is None:
            continue
        try:
            row[key] = _number(meta[key], key)
        except BadRecordError:
            dropped += 1
    if meta.get("content_length") is not None:
        try:
            length = _number(meta["content_length"], "content_length")
            if length < 0 or length != int(length) or length > _MAX_BIGINT:
                raise BadRecordError("content_length is not a byte count")
            row["content_length"] = int(length)
            row["access_estsize"] = math.ceil(length / 1024)
        except BadRecordError:
            dropped += 1
    if meta.get("calib_level") is not None:
        try:
            level = _number(meta["calib_level"], "calib_level")
            if level not in (0, 1, 2, 3, 4):
                raise BadRecordError("calib_level is not 0..4")
            row["calib_level"] = int(level)
        except BadRecordError:
            dropped += 1
    row["datalinks"] = datalinks_text(meta.get("datalinks"))
    if row["datalinks"] is None and meta.get("datalinks") is not None:
        dropped += 1
    return row, dropped
