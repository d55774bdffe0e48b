"""Unit tests for rucio_rd.soda: the IDs the sites' SODA services take, and the extents."""

from __future__ import annotations

import math

import pytest

from rucio_rd.soda import (
    DID_ID_TEMPLATE,
    PROTOTYPE_ID_TEMPLATE,
    extent_values,
    id_template_problem,
    path_below_scope,
    soda_id,
)

WALLABY_NAME = "2023-07-18-16-40-27_ASK-WALLABY_Eridanus_cutout-574594-imagecube-42178.fits"
WALLABY = f"sp3531_soda:{WALLABY_NAME}"
SPSRC_URL = ("https://spsrc14.iaa.csic.es:18027/disk/dev/deterministic/sp3531_soda/9b/98/"
             + WALLABY_NAME)


def test_the_notebooks_file_gets_the_prototypes_id() -> None:
    # The prototype's ID for the notebook's file, as the issue quotes it.
    assert soda_id(PROTOTYPE_ID_TEMPLATE, authority="skao.int", did=WALLABY, url=SPSRC_URL) == (
        f"ivo://skao.int?sp3531_soda/9b/98/{WALLABY_NAME}")


@pytest.mark.parametrize(("template", "expected"), [
    (DID_ID_TEMPLATE, WALLABY),
    ("{url}", SPSRC_URL),
    ("ivo://{authority}/~?{scope}/{name}", f"ivo://a.b/~?sp3531_soda/{WALLABY_NAME}"),
    ("{{literal}} {scope}", "{literal} sp3531_soda"),
])
def test_other_templates(template: str, expected: str) -> None:
    assert soda_id(template, authority="a.b", did=WALLABY, url=SPSRC_URL) == expected


@pytest.mark.parametrize(("url", "expected"), [
    ("https://h/disk/sp3531_soda/9b/98/f.fits", "9b/98/f.fits"),
    # The scope in the host name or in a longer directory name is not the directory.
    ("https://sp3531_soda.example/x/sp3531_soda_old/f.fits", "f.fits"),
    ("https://h/sp3531_soda//f.fits", "f.fits"),
    ("https://h/a/sp3531_soda/b/sp3531_soda/f.fits", "b/sp3531_soda/f.fits"),
    ("https://h/a/sp3531_soda/f.fits?x=sp3531_soda/y", "f.fits"),
    # No directory named after the scope, or nothing below it: the name.
    ("https://h/data/f.fits", "f.fits"),
    ("https://h/data/sp3531_soda", "f.fits"),
    ("https://h/data/sp3531_soda/", "f.fits"),
])
def test_the_path_below_the_scope(url: str, expected: str) -> None:
    assert path_below_scope(url, "sp3531_soda", "f.fits") == expected


@pytest.mark.parametrize(("template", "problem"), [
    ("", "non-empty text"),
    (None, "non-empty text"),
    ("ivo://{authority}?{scope}/{pth}", "uses {pth}"),
    ("{did!r}", "no conversion"),
    ("{did:>40}", "no conversion"),
    ("{0}", "uses {0}"),
    ("{}", "uses {}"),
    ("ivo://{authority", "is not a template"),
    ("}", "is not a template"),
])
def test_bad_templates_are_named(template: object, problem: str) -> None:
    assert problem in id_template_problem(template)
    if isinstance(template, str) and template:
        with pytest.raises(ValueError, match="template|uses|conversion"):
            soda_id(template, authority="a", did=WALLABY, url=SPSRC_URL)


def test_good_templates_have_no_problem() -> None:
    for template in (PROTOTYPE_ID_TEMPLATE, DID_ID_TEMPLATE, "{url}", "x{{y}}"):
        assert id_template_problem(template) is None


def test_a_did_without_a_colon_is_refused() -> None:
    with pytest.raises(ValueError, match="not a Rucio DID"):
        soda_id(DID_ID_TEMPLATE, authority="a", did="nocolon", url=SPSRC_URL)


# --- extents --------------------------------------------------------------------------


def test_a_field_bounds_circle_and_polygon_and_wavelengths_bound_band() -> None:
    values = extent_values({"s_ra": 53.75308, "s_dec": -24.93365, "s_fov": 0.25,
                            "em_min": 0.2111, "em_max": 0.2315})
    assert set(values) == {"CIRCLE", "POLYGON", "BAND"}
    assert values["CIRCLE"] == (None, "53.75308 -24.93365 0.125")
    assert values["BAND"] == ("0.2111", "0.2315")
    low, polygon = values["POLYGON"]
    corners = [float(number) for number in polygon.split()]
    assert low is None and len(corners) == 16
    for ra, dec in zip(corners[::2], corners[1::2], strict=True):
        # every corner lies outside the circle, by 1/cos(22.5 deg) at most
        separation = math.degrees(math.acos(
            math.sin(math.radians(dec)) * math.sin(math.radians(-24.93365))
            + math.cos(math.radians(dec)) * math.cos(math.radians(-24.93365))
            * math.cos(math.radians(ra - 53.75308))))
        assert 0.125 <= separation <= 0.125 / math.cos(math.pi / 8) + 1e-9


def test_a_polygon_across_ra_zero_keeps_ra_in_range() -> None:
    _, polygon = extent_values({"s_ra": 0.01, "s_dec": 0.0, "s_fov": 1.0})["POLYGON"]
    ras = [float(number) for number in polygon.split()[::2]]
    assert all(0 <= ra < 360 for ra in ras) and max(ras) > 359


@pytest.mark.parametrize("extent", [
    {}, {"s_ra": 10.0, "s_dec": 20.0}, {"s_ra": 10.0, "s_dec": 20.0, "s_fov": 0.0},
    {"s_ra": 10.0, "s_dec": 20.0, "s_fov": 170.0}, {"s_ra": None, "s_dec": 2.0, "s_fov": 1.0},
    {"s_ra": 10.0, "s_dec": 20.0, "s_fov": float("nan")},
    {"s_ra": 10.0, "s_dec": 20.0, "s_fov": True},
])
def test_without_a_usable_field_there_is_no_spatial_extent(extent) -> None:
    values = extent_values(extent)
    assert "CIRCLE" not in values and "POLYGON" not in values


def test_time_and_one_sided_or_swapped_intervals() -> None:
    values = extent_values({"t_min": 60143.69, "t_max": 60143.7, "em_max": 0.3,
                            "em_min": None})
    assert values == {"TIME": ("60143.69", "60143.7"), "BAND": (None, "0.3")}
    assert extent_values({"em_min": 0.5, "em_max": 0.2})["BAND"] == ("0.2", "0.5")
    assert extent_values({"t_min": float("inf")}) == {}
