"""What a site's SODA service is told about a file: its ID, and what can be cut.

The SKA sites' SODA services find a file by its path on their storage, not by
the Rucio DID.  Each site names the form of ID it takes as a template
(:data:`ID_FIELDS` are the fields it may use); the SKA prototype's form,
:data:`PROTOTYPE_ID_TEMPLATE`, is the default.  :func:`soda_id` fills a
template in from the chosen replica's URL.

:func:`extent_values` turns what the metadata knows of a file's extent (its
position and field of view, wavelengths and times) into the ``VALUES`` of the
descriptors' input parameters, as DaCHS's own SODA descriptors give them, so
that a SODA form can show what there is to cut.

Pure functions: no I/O, nothing of DaCHS.
"""

from __future__ import annotations

import math
import string
import urllib.parse
from collections.abc import Mapping

__all__ = [
    "DID_ID_TEMPLATE",
    "EXTENT_COLUMNS",
    "ID_FIELDS",
    "PROTOTYPE_ID_TEMPLATE",
    "extent_values",
    "id_template_problem",
    "path_below_scope",
    "soda_id",
]

#: The published columns that bound what can be cut from a file (:func:`extent_values`).
EXTENT_COLUMNS = ("s_ra", "s_dec", "s_fov", "em_min", "em_max", "t_min", "t_max")

#: The fields an ID template may use.
ID_FIELDS = {
    "authority": "the IVOA authority ([sites] soda_id_authority, else DaCHS's [ivoa] authority)",
    "did": "the Rucio DID, scope:name",
    "scope": "the Rucio scope",
    "name": "the Rucio name",
    "path": "the replica URL's path below its scope's directory (the name if the scope is"
            " no directory of it)",
    "url": "the replica's URL",
}

#: The SKA prototype's form: ``ivo://<authority>?<scope>/<path below the scope>``.
PROTOTYPE_ID_TEMPLATE = "ivo://{authority}?{scope}/{path}"
#: The Rucio DID as it is.
DID_ID_TEMPLATE = "{did}"


def id_template_problem(template: object) -> str | None:
    """Why ``template`` cannot be an ID template, or None when it can.

    A template is text with ``{field}`` for the fields of :data:`ID_FIELDS`
    (``{{`` and ``}}`` for braces), and no conversions or format specs.
    """
    if not isinstance(template, str) or not template.strip():
        return "an ID template must be non-empty text"
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"{template!r} is not a template ({exc})"
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if field not in ID_FIELDS:
            return (f"{template!r} uses {{{field}}}; an ID template may use"
                    f" {', '.join('{' + name + '}' for name in ID_FIELDS)}")
        if spec or conversion:
            return f"{template!r}: {{{field}}} takes no conversion or format spec"
    return None


def path_below_scope(url: str, scope: str, name: str) -> str:
    """The part of ``url``'s path after the first directory named ``scope``
    (``/disk/sp3531_soda/9b/98/f.fits`` -> ``9b/98/f.fits``), or ``name``
    when no directory of the path is named so."""
    segments = urllib.parse.urlsplit(url).path.split("/")
    for index, segment in enumerate(segments[:-1]):
        if segment == scope:
            below = "/".join(segment for segment in segments[index + 1:] if segment)
            if below:
                return below
    return name


def soda_id(template: str, *, authority: str, did: str, url: str) -> str:
    """The ID a SODA service with this ID template takes for the file ``did``
    whose chosen replica at its site is at ``url``.

    Raises
    ------
    ValueError
        If the template is not one (:func:`id_template_problem`) or the DID
        has no colon.
    """
    problem = id_template_problem(template)
    if problem:
        raise ValueError(problem)
    scope, colon, name = did.partition(":")
    if not colon:
        raise ValueError(f"{did!r} is not a Rucio DID (scope:name)")
    return template.format(authority=authority, did=did, scope=scope, name=name, url=url,
                           path=path_below_scope(url, scope, name))


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _format(*numbers: float) -> str:
    return " ".join(f"{number:.10g}" for number in numbers)


def _octagon(ra: float, dec: float, fov: float) -> list[float]:
    """The regular spherical octagon circumscribing the field (the s_region of the
    published table): ra, dec pairs in degrees."""
    d = math.radians(max(-89.99999, min(89.99999, dec)))
    r = math.atan(math.tan(math.radians(fov / 2)) / math.cos(math.pi / 8))
    corners: list[float] = []
    for k in range(8):
        bearing = math.radians(45 * k)
        v = math.asin(math.sin(d) * math.cos(r) + math.cos(d) * math.sin(r) * math.cos(bearing))
        u = math.atan2(math.sin(bearing) * math.sin(r) * math.cos(d),
                       math.cos(r) - math.sin(d) * math.sin(v))
        corners.extend([(ra + math.degrees(u)) % 360, math.degrees(v)])
    return corners


def extent_values(extent: Mapping[str, object]) -> dict[str, tuple[str | None, str | None]]:
    """The ``(MIN, MAX)`` VALUES of the SODA parameters that the file's extent bounds.

    ``extent`` holds the published columns ``s_ra``, ``s_dec``, ``s_fov``
    (degrees), ``em_min``, ``em_max`` (metres), ``t_min``, ``t_max`` (MJD),
    any of them None or missing.  As DaCHS's own SODA descriptors have them:
    ``CIRCLE`` has the covering circle as its MAX, ``POLYGON`` a covering
    polygon, ``BAND`` and ``TIME`` the interval's ends as MIN and MAX.  A
    parameter is left out when the extent does not bound it.
    """
    values: dict[str, tuple[str | None, str | None]] = {}
    ra, dec, fov = (_number(extent.get(key)) for key in ("s_ra", "s_dec", "s_fov"))
    if ra is not None and dec is not None and fov is not None and 0 < fov < 160:
        values["CIRCLE"] = (None, _format(ra, dec, fov / 2))
        values["POLYGON"] = (None, _format(*_octagon(ra, dec, fov)))
    for parameter, low_key, high_key in (("BAND", "em_min", "em_max"),
                                         ("TIME", "t_min", "t_max")):
        low, high = _number(extent.get(low_key)), _number(extent.get(high_key))
        if low is not None and high is not None and low > high:
            low, high = high, low
        if low is not None or high is not None:
            values[parameter] = (None if low is None else _format(low),
                                 None if high is None else _format(high))
    return values
