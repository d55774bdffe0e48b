"""The notebook's first cell, and the table behind it, against the real stack.

DaCHS serves the cone search and TAP on its own port; the rows come from the
real Rucio server's POSTGRES_JSON metadata table, seeded through Rucio's REST
API; pyvo is the client.
"""

from __future__ import annotations

import csv
import io
import re
import subprocess

import psycopg2
import pytest
import requests
from pyvo.dal import DALQueryError, TAPService, conesearch

from rucio_rd.stack.demo import Stack
from rucio_rd.stack.seed import DEMO_FILES

ERIDANUS = (53.75308, -24.93365)
PTF10TCE = (349.791, 9.196)
NOTEBOOK_COLUMNS = ["_r", "obs_id", "s_ra", "s_dec", "access_url", "access_format"]
DATALINK_FORMAT = "application/x-votable+xml;content=datalink"
WALLABY = (
    "sp3531_soda:2023-07-18-16-40-27_ASK-WALLABY_Eridanus_cutout-574594-imagecube-42178.fits")
ERIDANUS_DIDS = {
    "sp3531_soda:2023-07-18-16-40-27_ASK-WALLABY_Eridanus_cutout-574594-imagecube-42178.fits",
    "orange:2023-07-10-17-21-37_cutout-574594-imagecube-42178.fits",
}


def _dids(table) -> set[str]:
    return {url.split("?id=")[1].split("&")[0] for url in table["access_url"]}


def test_notebook_cone_search_returns_both_eridanus_files(stack: Stack) -> None:
    results = conesearch(stack.cone_url, pos=ERIDANUS, radius=1)
    table = results.to_table()[NOTEBOOK_COLUMNS]
    assert len(table) == 2
    assert _dids(table) == ERIDANUS_DIDS
    for row in table:
        assert row["_r"] == pytest.approx(0.0, abs=1e-9)
        assert row["obs_id"] == "Eridanus_full_image"
        assert (row["s_ra"], row["s_dec"]) == pytest.approx(ERIDANUS)
        assert row["access_format"] == DATALINK_FORMAT
        assert row["access_url"].startswith(stack.datalink_url + "?id=")


def test_files_at_the_same_distance_come_in_registration_order(stack: Stack) -> None:
    # The notebook takes results[0]: the WALLABY file, registered before orange's.
    firsts = set()
    for _ in range(6):
        results = conesearch(stack.cone_url, pos=ERIDANUS, radius=1)
        firsts.add(results[0]["access_url"].split("?id=")[1])
    assert firsts == {WALLABY}
    text = requests.get(stack.cone_url, params={"RA": ERIDANUS[0], "DEC": ERIDANUS[1], "SR": 1,
                                                "RESPONSEFORMAT": "csv", "VERB": "3"},
                        timeout=30).text
    ids = [int(row["meta_id"]) for row in csv.DictReader(io.StringIO(text))]
    assert ids == sorted(ids) and len(ids) == 2


def test_the_cone_form_left_at_its_default_sort_order_answers(stack: Stack) -> None:
    # A browser sends the "Sort by" menu's first choice: DaCHS's default sort order.
    form_url = stack.dachs.server_url + "/rucio/rucio/cone/form"
    page = requests.get(form_url, timeout=30).text
    menu = re.search(r'<select name="_DBOPTIONS_ORDER"[^>]*>\s*<option value="([^"]*)"', page)
    assert menu, "the form has no sort menu"
    assert menu.group(1) == "_r,meta_id"
    answer = requests.get(form_url, timeout=30, params={
        "hscs_pos": f"{ERIDANUS[0]},{ERIDANUS[1]}", "hscs_sr": "60",
        "_DBOPTIONS_ORDER": menu.group(1), "_DBOPTIONS_DIR": "ASC", "MAXREC": "100",
        "__nevow_form__": "genForm", "submit": "Go"})
    assert answer.status_code == 200
    assert "correct the following" not in answer.text
    orange = next(did for did in ERIDANUS_DIDS if did != WALLABY)
    assert answer.text.index(WALLABY.split(":")[1]) < answer.text.index(orange.split(":")[1])


def test_cone_columns_carry_scs_ucds_and_units(stack: Stack) -> None:
    # SCS 1.03 wants UCD1 words for the main position and ID in scs.xml.
    results = conesearch(stack.cone_url, pos=ERIDANUS, radius=1)
    fields = {field.name: field for field in results.fielddescs}
    assert fields["s_ra"].ucd == "POS_EQ_RA_MAIN"
    assert fields["s_dec"].ucd == "POS_EQ_DEC_MAIN"
    assert fields["did"].ucd == "ID_MAIN"
    assert str(fields["s_ra"].unit) == "deg"
    assert fields["access_url"].ucd == "meta.ref.url"


def test_table_metadata_in_tap_schema_is_complete(stack: Stack) -> None:
    tap = TAPService(stack.dachs.server_url + "/tap")
    columns = tap.search(
        "SELECT column_name, unit, ucd, description FROM tap_schema.columns"
        " WHERE table_name = 'rucio.main'"
    ).to_table()
    by_name = {row["column_name"]: row for row in columns}
    assert by_name["s_ra"]["ucd"] == "pos.eq.ra;meta.main"
    assert by_name["s_dec"]["unit"] == "deg"
    assert by_name["content_length"]["unit"] == "byte"
    assert all(row["description"] and row["ucd"] for row in columns)


def test_cone_elsewhere_finds_other_files_not_eridanus(stack: Stack) -> None:
    table = conesearch(stack.cone_url, pos=PTF10TCE, radius=0.5).to_table()
    assert _dids(table) == {"testing:PTF10tce.fits"}
    assert list(table["obs_id"]) == ["PTF10tce"]


def test_small_cone_far_from_everything_is_empty(stack: Stack) -> None:
    # The synthetic files keep 2 degrees away from the named ones.
    table = conesearch(stack.cone_url, pos=(PTF10TCE[0], PTF10TCE[1] + 1.0), radius=0.1).to_table()
    assert len(table) == 0


def test_cone_without_radius_is_a_clear_error(stack: Stack) -> None:
    with pytest.raises(DALQueryError, match="SR"):
        conesearch(stack.cone_url, pos=ERIDANUS, radius=None).to_table()


def test_all_seeded_files_are_published(stack: Stack) -> None:
    tap = TAPService(stack.dachs.server_url + "/tap")
    count = tap.search("SELECT COUNT(*) AS n FROM rucio.main").to_table()["n"][0]
    assert count == len(DEMO_FILES) + stack.layout.synthetic_files


def test_obscore_finds_the_eridanus_files_by_adql(stack: Stack) -> None:
    tap = TAPService(stack.dachs.server_url + "/tap")
    table = tap.search(
        "SELECT obs_id, access_url, access_format, obs_publisher_did FROM ivoa.obscore"
        " WHERE 1 = CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', 53.75308, -24.93365, 1))"
    ).to_table()
    assert _dids(table) == ERIDANUS_DIDS
    assert set(table["access_format"]) == {DATALINK_FORMAT}
    assert all(did.startswith("ivo://") for did in table["obs_publisher_did"])


def test_rd_regression_tests_pass(stack: Stack) -> None:
    output = stack.dachs.dachs("test", "rucio/rucio")
    assert "0 of 5 bad" in output


def test_rd_validates_clean(stack: Stack) -> None:
    assert "rucio/rucio -- OK" in stack.dachs.dachs("val", "rucio/rucio")


def _meta_connection(stack: Stack):
    connection = psycopg2.connect(stack.rucio.meta_dsn())
    connection.autocommit = True
    return connection


def test_bad_records_are_skipped_and_reported_not_fatal(stack: Stack) -> None:
    bad = {
        "no coordinates": '{"obs_id": "x", "access_url": "http://x/?id=bad:a"}',
        "ra out of range": '{"s_ra": 400, "s_dec": 0, "access_url": "http://x/?id=bad:b"}',
        "dec is text": '{"s_ra": 10, "s_dec": "north", "access_url": "http://x/?id=bad:c"}',
        "not an object": '[1, 2, 3]',
        "no access_url": '{"s_ra": 10, "s_dec": 10}',
    }
    connection = _meta_connection(stack)
    try:
        with connection.cursor() as cursor:
            for index, data in enumerate(bad.values()):
                cursor.execute(
                    "INSERT INTO dids (vo, scope, name, data) VALUES ('def', 'bad', %s, %s)",
                    (f"bad-{index}.fits", data),
                )
            # A file of another VO of a multi-VO Rucio is not ours to publish.
            cursor.execute(
                "INSERT INTO dids (vo, scope, name, data) VALUES ('oth', 'other',"
                " 'elsewhere.fits', '{\"s_ra\": 1, \"s_dec\": 1, \"access_url\": \"u\"}')")
        output = stack.deploy()
        # dachs imp is the bulk sync, reporting the unusable records per reason.
        assert f"{len(bad)} unusable" in output, output
        assert "unusable: 1 x s_ra is outside [0, 360): e.g. 'bad:bad-1.fits'" in output, output
        tap = TAPService(stack.dachs.server_url + "/tap")
        count = tap.search("SELECT COUNT(*) AS n FROM rucio.main").to_table()["n"][0]
        assert count == len(DEMO_FILES) + stack.layout.synthetic_files
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM dids WHERE scope = 'bad' OR vo = 'oth'")
        connection.close()


def test_failed_import_keeps_published_rows(stack: Stack) -> None:
    tap = TAPService(stack.dachs.server_url + "/tap")
    before = tap.search("SELECT COUNT(*) AS n FROM rucio.main").to_table()["n"][0]
    config = stack.dachs.plugin_config
    good = config.read_text()
    try:
        # The metadata table vanishes from under the importer (renamed source).
        config.write_text(good.replace('table = "dids"', 'table = "no_such_table"'))
        with pytest.raises(Exception, match="no_such_table"):
            stack.dachs.dachs("imp", "rucio/rucio")
    finally:
        config.write_text(good)
    after = tap.search("SELECT COUNT(*) AS n FROM rucio.main").to_table()["n"][0]
    assert after == before > 0
    assert len(conesearch(stack.cone_url, pos=ERIDANUS, radius=1).to_table()) == 2


def _stilts(*args: str) -> str:
    result = subprocess.run(["stilts", *args], capture_output=True, encoding="utf-8", timeout=600)
    return result.stdout + result.stderr


def test_taplint_reports_no_errors(stack: Stack) -> None:
    # A bare DaCHS 2.7 passes taplint with 0 errors; our table must keep it so
    # (ivoa.obscore's mandatory columns included).
    report = _stilts("taplint", f"tapurl={stack.dachs.server_url}/tap", "report=E")
    assert "Totals: Errors: 0" in report, report


def test_votlint_finds_nothing_wrong_with_the_cone_response(stack: Stack, tmp_path) -> None:
    response = requests.get(stack.cone_url, params={"RA": 53.75, "DEC": -24.93, "SR": 1},
                            timeout=30)
    document = tmp_path / "cone.xml"
    document.write_bytes(response.content)
    report = _stilts("votlint", f"votable={document}")
    assert "ERROR" not in report and "WARNING" not in report, report
