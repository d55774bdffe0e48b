"""Unit tests of rucio_rd.metadata: the rules that turn a metadata record into a row."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rucio_rd.metadata import (
    ROW_COLUMNS,
    BadRecordError,
    datalink_access_url,
    row_from_record,
)

GOOD: dict[str, Any] = {
    "s_ra": 53.16,
    "s_dec": -27.78,
    "access_url": "https://datalink.example/dl?ID=ivo://x?scope:file.fits",
}


def record(**changes: Any) -> dict[str, Any]:
    """GOOD with changes; a change to None removes the key."""
    data = dict(GOOD)
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def reason_for(data: Any, scope: str = "scope", name: str = "file.fits") -> str:
    with pytest.raises(BadRecordError) as caught:
        row_from_record(scope, name, data)
    return str(caught.value)


# --- a good record --------------------------------------------------------------------


def test_minimal_record_becomes_row_with_all_columns_in_order() -> None:
    row, dropped = row_from_record("scope", "file.fits", GOOD)
    assert tuple(row) == ROW_COLUMNS
    assert dropped == 0
    assert row["did"] == "scope:file.fits"
    assert row["scope"] == "scope"
    assert row["name"] == "file.fits"
    assert row["s_ra"] == 53.16
    assert row["s_dec"] == -27.78
    assert row["access_url"] == GOOD["access_url"]
    unset = set(ROW_COLUMNS) - {"did", "scope", "name", "s_ra", "s_dec", "access_url"}
    assert all(row[column] is None for column in unset)


def test_full_record_fills_every_optional_field() -> None:
    data = record(
        obs_id="obs-1",
        access_format="application/x-votable+xml;content=datalink",
        content_type="application/fits",
        dataproduct_type="cube",
        obs_collection="WALLABY",
        target_name="Eridanus",
        facility_name="ASKAP",
        instrument_name="ASKAP",
        s_fov=1.5,
        t_min=59000.25,
        t_max=59001,
        em_min=0.21,
        em_max=0.22,
        content_length=2048,
        calib_level=3,
    )
    row, dropped = row_from_record("wallaby", "cube.fits", data)
    assert dropped == 0
    assert row["obs_id"] == "obs-1"
    assert row["obs_collection"] == "WALLABY"
    assert row["s_fov"] == 1.5
    assert row["t_max"] == 59001.0 and isinstance(row["t_max"], float)
    assert row["content_length"] == 2048
    assert row["access_estsize"] == 2
    assert row["calib_level"] == 3


def test_unknown_keys_in_record_are_ignored() -> None:
    row, dropped = row_from_record("s", "n", record(something_else=[1, 2], nested={"a": 1}))
    assert dropped == 0
    assert "something_else" not in row


# --- the accepted forms of the metadata -----------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        json.dumps(GOOD),
        json.dumps(GOOD).encode(),
        bytearray(json.dumps(GOOD).encode()),
        memoryview(json.dumps(GOOD).encode()),
    ],
    ids=["str", "bytes", "bytearray", "memoryview"],
)
def test_json_text_and_bytes_are_parsed(data: Any) -> None:
    row, _ = row_from_record("s", "n", data)
    assert row["s_ra"] == GOOD["s_ra"]
    assert row["access_url"] == GOOD["access_url"]


def test_bytes_with_invalid_utf8_are_decoded_with_replacement() -> None:
    data = b'{"s_ra": 1, "s_dec": 2, "access_url": "https://x/\xff", "obs_id": "a\xfeb"}'
    row, dropped = row_from_record("s", "n", data)
    assert row["access_url"] == "https://x/\ufffd"
    assert row["obs_id"] == "a\ufffdb"
    assert dropped == 0


def test_broken_json_text_is_skipped_with_reason() -> None:
    assert "not valid JSON" in reason_for('{"s_ra": 1, "s_dec":')


def test_broken_json_bytes_are_skipped_with_reason() -> None:
    assert "not valid JSON" in reason_for(b"{not json}")


def test_empty_text_is_not_valid_json() -> None:
    assert "not valid JSON" in reason_for("")


@pytest.mark.parametrize(
    ("data", "kind"),
    [("[1, 2]", "list"), ([GOOD], "list"), ('"text"', "str"), ("42", "number")],
)
def test_json_that_is_not_an_object_is_skipped(data: Any, kind: str) -> None:
    reason = reason_for(data)
    assert "not an object" in reason
    assert kind in reason


@pytest.mark.parametrize("data", [None, "null"])
def test_null_metadata_is_skipped(data: Any) -> None:
    assert "not an object" in reason_for(data)


@pytest.mark.parametrize(("scope", "name"), [("", "n"), ("s", ""), ("", "")])
def test_empty_scope_or_name_is_skipped(scope: str, name: str) -> None:
    assert reason_for(GOOD, scope, name) == "empty scope or name"


# --- coordinates ----------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["s_ra", "s_dec"])
def test_record_without_coordinates_is_skipped(missing: str) -> None:
    assert reason_for(record(**{missing: None})) == "no s_ra/s_dec"


def test_record_with_null_coordinate_is_skipped() -> None:
    data = json.dumps(GOOD).replace("53.16", "null")
    assert reason_for(data) == "s_ra is null, not a number"


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"s_ra": 360}, "s_ra=360.0 is outside [0, 360)"),
        ({"s_ra": -0.1}, "s_ra=-0.1 is outside [0, 360)"),
        ({"s_ra": 1e6}, "s_ra="),
        ({"s_dec": 90.5}, "s_dec=90.5 is outside [-90, 90]"),
        ({"s_dec": -90.5}, "s_dec=-90.5 is outside [-90, 90]"),
        ({"s_dec": "91"}, "s_dec=91.0 is outside"),
    ],
)
def test_out_of_range_coordinates_are_skipped(changes: dict[str, Any], fragment: str) -> None:
    assert fragment in reason_for(record(**changes))


@pytest.mark.parametrize(
    ("ra", "dec"), [(0, -90), (0.0, 90), (359.999999, 0), (-0.0, 0)]
)
def test_coordinates_on_the_range_edges_are_accepted(ra: float, dec: float) -> None:
    row, _ = row_from_record("s", "n", record(s_ra=ra, s_dec=dec))
    assert (row["s_ra"], row["s_dec"]) == (ra, dec)


@pytest.mark.parametrize(
    "text",
    [
        '{"s_ra": NaN, "s_dec": 0, "access_url": "u"}',
        '{"s_ra": Infinity, "s_dec": 0, "access_url": "u"}',
        '{"s_ra": 1, "s_dec": -Infinity, "access_url": "u"}',
        '{"s_ra": 1e400, "s_dec": 0, "access_url": "u"}',
        '{"s_ra": "nan", "s_dec": 0, "access_url": "u"}',
        '{"s_ra": 1, "s_dec": "-inf", "access_url": "u"}',
    ],
)
def test_non_finite_coordinates_are_skipped(text: str) -> None:
    reason = reason_for(text)
    assert "not a finite number" in reason or "too large for a float" in reason


@pytest.mark.parametrize("flag", ["true", "false"])
@pytest.mark.parametrize("key", ["s_ra", "s_dec"])
def test_json_booleans_as_coordinates_are_skipped(key: str, flag: str) -> None:
    other = "s_dec" if key == "s_ra" else "s_ra"
    text = f'{{"{key}": {flag}, "{other}": 10, "access_url": "u"}}'
    assert reason_for(text) == f"{key} is {flag}, not a number"


@pytest.mark.parametrize("value", ["ten", "", "1,5", [1], {"deg": 1}])
def test_non_numeric_coordinate_is_skipped(value: Any) -> None:
    assert "s_ra is" in reason_for(record(s_ra=value))
    assert "not a number" in reason_for(record(s_ra=value))


def test_numeric_strings_are_accepted_as_coordinates() -> None:
    row, dropped = row_from_record("s", "n", record(s_ra="12.5", s_dec=" -45 "))
    assert row["s_ra"] == 12.5
    assert row["s_dec"] == -45.0
    assert isinstance(row["s_ra"], float)
    assert dropped == 0


# --- access_url -----------------------------------------------------------------------


@pytest.mark.parametrize("url", ["", "   ", "\t\n"])
def test_empty_access_url_is_skipped(url: str) -> None:
    assert reason_for(record(access_url=url)) == "no access_url"


def test_missing_access_url_is_skipped() -> None:
    assert reason_for(record(access_url=None)) == "no access_url"


def test_access_url_that_is_not_text_is_skipped() -> None:
    reason = reason_for(record(access_url=["https://x"]))
    assert reason.startswith("access_url: ")
    assert "is not text" in reason


@pytest.mark.parametrize("url", ["https://x/\x00y", json.loads('"https://x/\\u0000"')])
def test_access_url_with_nul_is_skipped(url: str) -> None:
    assert reason_for(record(access_url=url)) == "access_url: text with a NUL character"


def test_access_url_is_stripped() -> None:
    row, _ = row_from_record("s", "n", record(access_url="  https://x/y \n"))
    assert row["access_url"] == "https://x/y"


# --- optional text fields -------------------------------------------------------------


def test_nul_in_optional_text_drops_the_field_but_keeps_the_record() -> None:
    row, dropped = row_from_record("s", "n", record(obs_id="a\x00b", target_name="M31"))
    assert row["obs_id"] is None
    assert row["target_name"] == "M31"
    assert dropped == 1


def test_huge_text_is_truncated_to_4096_characters() -> None:
    row, dropped = row_from_record("s", "n", record(target_name="x" * 100_000))
    assert row["target_name"] == "x" * 4096
    assert dropped == 0


def test_access_url_too_long_to_store_whole_is_skipped_not_cut() -> None:
    reason = reason_for(record(access_url="https://x/" + "a" * 5000))
    assert reason == "access_url is longer than 4096 characters"


def test_text_at_the_limit_is_kept_whole() -> None:
    row, _ = row_from_record("s", "n", record(obs_id="y" * 4096))
    assert len(row["obs_id"]) == 4096


@pytest.mark.parametrize(("value", "text"), [(42, "42"), (1.5, "1.5")])
def test_numbers_in_text_fields_become_text(value: Any, text: str) -> None:
    row, dropped = row_from_record("s", "n", record(obs_id=value))
    assert row["obs_id"] == text
    assert dropped == 0


@pytest.mark.parametrize("value", [True, [1], {"a": 1}])
def test_non_text_in_text_field_is_dropped_and_counted(value: Any) -> None:
    row, dropped = row_from_record("s", "n", record(instrument_name=value))
    assert row["instrument_name"] is None
    assert dropped == 1


def test_blank_optional_text_becomes_null_without_counting() -> None:
    row, dropped = row_from_record("s", "n", record(obs_collection="   "))
    assert row["obs_collection"] is None
    assert dropped == 0


# --- optional numbers -----------------------------------------------------------------


@pytest.mark.parametrize("value", ["wide", True, float("nan"), float("inf"), [1]])
def test_unusable_optional_float_is_dropped_and_counted(value: Any) -> None:
    row, dropped = row_from_record("s", "n", record(s_fov=value))
    assert row["s_fov"] is None
    assert dropped == 1


def test_numeric_string_optional_float_is_accepted() -> None:
    row, dropped = row_from_record("s", "n", record(t_min="59000.5"))
    assert row["t_min"] == 59000.5
    assert dropped == 0


def test_every_unusable_field_is_counted() -> None:
    data = record(s_fov="x", t_min="x", em_max=True, obs_id={}, content_length=-1, calib_level=9)
    row, dropped = row_from_record("s", "n", data)
    assert dropped == 6
    assert row["s_ra"] == GOOD["s_ra"]


# --- content_length and access_estsize ------------------------------------------------


@pytest.mark.parametrize(
    ("length", "kilobytes"),
    [(0, 0), (1, 1), (1023, 1), (1024, 1), (1025, 2), (2048, 2), (1_048_577, 1025)],
)
def test_content_length_gives_access_estsize_in_kb_rounded_up(
    length: int, kilobytes: int
) -> None:
    row, dropped = row_from_record("s", "n", record(content_length=length))
    assert row["content_length"] == length
    assert row["access_estsize"] == kilobytes
    assert dropped == 0


def test_content_length_numeric_string_and_integral_float_are_accepted() -> None:
    row, _ = row_from_record("s", "n", record(content_length="4096"))
    assert (row["content_length"], row["access_estsize"]) == (4096, 4)
    row, _ = row_from_record("s", "n", record(content_length=3000.0))
    assert row["content_length"] == 3000
    assert isinstance(row["content_length"], int)


@pytest.mark.parametrize(
    "length", [-1, -0.5, 10.5, "big", "12kB", True, float("nan"), float("inf"), [1]]
)
def test_bad_content_length_is_dropped_but_record_kept(length: Any) -> None:
    row, dropped = row_from_record("s", "n", record(content_length=length))
    assert row["content_length"] is None
    assert row["access_estsize"] is None
    assert dropped == 1
    assert row["access_url"] == GOOD["access_url"]


def test_content_length_beyond_bigint_is_dropped() -> None:
    row, dropped = row_from_record("s", "n", record(content_length=1e19))
    assert row["content_length"] is None
    assert dropped == 1


# --- calib_level ----------------------------------------------------------------------


@pytest.mark.parametrize(("level", "expected"), [(0, 0), (4, 4), (2.0, 2), ("3", 3)])
def test_calib_level_zero_to_four_is_accepted(level: Any, expected: int) -> None:
    row, dropped = row_from_record("s", "n", record(calib_level=level))
    assert row["calib_level"] == expected
    assert isinstance(row["calib_level"], int)
    assert dropped == 0


@pytest.mark.parametrize("level", [-1, 5, 2.5, "two", True, float("nan")])
def test_calib_level_out_of_range_is_dropped_but_record_kept(level: Any) -> None:
    row, dropped = row_from_record("s", "n", record(calib_level=level))
    assert row["calib_level"] is None
    assert dropped == 1


# --- records built to break the importer (from the review) ----------------------------


def test_coordinate_too_large_for_a_float_is_skipped() -> None:
    # jsonb prints 1e400 as a 401-digit integer; float() of that overflows.
    huge = "1" + "0" * 400
    with pytest.raises(BadRecordError, match="too large"):
        row_from_record("s", "a", f'{{"s_ra": {huge}, "s_dec": 0, "access_url": "u"}}')


def test_content_length_too_large_for_a_float_is_dropped_not_fatal() -> None:
    row, dropped = row_from_record("s", "n", json.dumps(
        {"s_ra": 1, "s_dec": 2, "access_url": "u"})[:-1] + ', "content_length": ' + "9" * 400 + "}")
    assert row["content_length"] is None and dropped == 1


def test_integer_beyond_pythons_digit_limit_is_skipped() -> None:
    # Numbers stay text until float() takes them: no limit on an int's digits applies.
    text = '{"s_ra": ' + "1" * 5000 + ', "s_dec": 0, "access_url": "u"}'
    with pytest.raises(BadRecordError, match="too large for a float"):
        row_from_record("s", "a", text)


def test_a_number_in_a_text_field_is_its_json_text() -> None:
    # As PostgreSQL's ->> gives it (the sync's SQL), not Python's repr of a float.
    row, _ = row_from_record("s", "a", '{"s_ra": 1, "s_dec": 2, "access_url": "u",'
                                       ' "obs_id": 0.0000001, "target_name": 7}')
    assert (row["obs_id"], row["target_name"]) == ("0.0000001", "7")


def test_unicode_whitespace_is_trimmed() -> None:
    with pytest.raises(BadRecordError, match="no access_url"):
        row_from_record("s", "a", {"s_ra": 1, "s_dec": 2, "access_url": "\u00a0\u3000"})


def test_deeply_nested_json_is_skipped() -> None:
    text = '{"s_ra": 1, "s_dec": 2, "access_url": "u", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(BadRecordError, match="nested too deep"):
        row_from_record("s", "a", text)


def test_broken_json_and_non_objects_are_bad_records() -> None:
    with pytest.raises(BadRecordError, match="not valid JSON"):
        row_from_record("s", "a", "{")
    with pytest.raises(BadRecordError, match="not an object"):
        row_from_record("s", "a", "[]")


# --- the published access_url ---------------------------------------------------------


def test_datalink_access_url_is_this_servers_dlmeta_with_the_notebooks_id() -> None:
    url = datalink_access_url("https://vo.example.org/", "sp3531_soda:cube 1&2#3.fits")
    assert url == ("https://vo.example.org/rucio/rucio/dl/dlmeta"
                   "?id=sp3531_soda:cube%201%262%233.fits")
    # the notebook's own parsing of the URL still finds scope and name
    did = url.split("?id=")[1].split("&")[0]
    assert did.split(":") == ["sp3531_soda", "cube%201%262%233.fits"]


def test_access_url_for_replaces_the_metadatas_url() -> None:
    row, _ = row_from_record(
        "scope", "file.fits", record(),
        access_url_for=lambda did: datalink_access_url("http://here:8080", did))
    assert row["access_url"] == "http://here:8080/rucio/rucio/dl/dlmeta?id=scope:file.fits"


def test_access_url_for_still_needs_an_access_url_in_the_metadata() -> None:
    with pytest.raises(BadRecordError, match="no access_url"):
        row_from_record("scope", "file.fits", record(access_url=None),
                        access_url_for=lambda did: "http://here/" + did)
