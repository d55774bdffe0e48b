"""A SODA cutout through the services a DataLink answer describes.

The chosen replica's site is asked first, then every other site with a
synchronous SODA service, in the DataLink service's order.  Each service gets
the ID its descriptor presets, and the token goes only to that service's own
host (never to one named in ``never``, such as the DataLink service's).  A
failure (unreachable, refused, an error document, something that is not FITS)
is said in one line and the next site is asked.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import requests

from rucio_rd.client.download import local_name
from rucio_rd.client.links import FileLinks, SodaEndpoint, origin
from rucio_rd.client.tokens import Token, sends_token

__all__ = ["Cutout", "CutoutError", "cutout", "soda_parameters"]

TIMEOUT = (5.0, 120.0)
FITS_START = b"SIMPLE  ="
FITS_BLOCK = 2880


@dataclass(frozen=True)
class Cutout:
    """The cutout on disk and the service that made it."""

    path: Path
    endpoint: SodaEndpoint
    size: int
    failures: tuple[str, ...] = ()


class CutoutError(Exception):
    """No SODA service made the cutout; the message says why, one line per site."""


def soda_parameters(circle: Sequence[float] | None = None,
                    band: Sequence[float] | None = None) -> dict[str, str]:
    """SODA 1.0's CIRCLE (RA, Dec, radius in degrees) and BAND (metres) parameters."""
    parameters: dict[str, str] = {}
    if circle is not None:
        ra, dec, radius = (float(value) for value in circle)
        if not (all(map(math.isfinite, (ra, dec, radius))) and -90 <= dec <= 90
                and 0 < radius <= 180):
            raise ValueError(f"CIRCLE {ra} {dec} {radius}: want RA, Dec in -90..90 and a "
                             "radius in 0..180 degrees")
        parameters["CIRCLE"] = f"{ra % 360:.10g} {dec:.10g} {radius:.10g}"
    if band is not None:
        low, high = (float(value) for value in band)
        if not (math.isfinite(low) and math.isfinite(high) and 0 <= low <= high):
            raise ValueError(f"BAND {low} {high}: want two wavelengths in metres, low first")
        parameters["BAND"] = f"{low:.10g} {high:.10g}"
    if not parameters:
        raise ValueError("a cutout needs a CIRCLE or a BAND")
    return parameters


def _ordered(links: FileLinks, first_site: str | None) -> list[SodaEndpoint]:
    sites = list(links.soda_sites())
    if first_site in sites:
        sites.remove(first_site)
        sites.insert(0, first_site)
    return [endpoint for site in sites for endpoint in links.soda_at(site)[:1]]


def _error_text(response: requests.Response) -> str:
    text = response.text[:2000] if response.content else ""
    # A DALI error document carries its message in an INFO or as plain text.
    marker = 'name="QUERY_STATUS"'
    if marker in text:
        start = text.find(">", text.find(marker)) + 1
        end = text.find("<", start)
        if 0 < start < end:
            return " ".join(text[start:end].split())[:200]
    return " ".join(text.split())[:200]


def cutout(links: FileLinks, parameters: dict[str, str], directory: str | Path = ".",
           token: Token | None = None, *, first_site: str | None = None,
           session: requests.Session | None = None, never: Collection[str] = (),
           report: Callable[[str], None] | None = None,
           timeout: tuple[float, float] = TIMEOUT, allow_http: bool = False) -> Cutout:
    """Cut ``links``' file with ``parameters`` (see :func:`soda_parameters`) at the
    first site whose SODA service delivers a FITS file; save it in ``directory``."""
    endpoints = _ordered(links, first_site)
    if not endpoints:
        raise CutoutError(f"no site holding {links.did} offers a synchronous SODA service")
    session = session or requests.Session()
    barred = [*never, *([links.source] if links.source else [])]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = local_name(links.did).removesuffix(".fits")
    path = directory / f"{stem}-cutout.fits"
    failures: list[str] = []
    for endpoint in endpoints:
        where = origin(endpoint.access_url)
        headers = dict(token.header) if token and sends_token(
            endpoint.access_url, barred, allow_http) else {}
        label = f"SODA at {endpoint.site or (where[1] if where else '?')}"
        try:
            response = session.get(endpoint.access_url,
                                   params={"ID": endpoint.soda_id, **parameters},
                                   headers=headers, timeout=timeout, allow_redirects=False)
        except requests.RequestException as exc:
            failures.append(f"{label}: unreachable ({type(exc).__name__}) "
                            f"({endpoint.access_url})")
        else:
            body = response.content
            # Whole FITS blocks: a transfer cut short is no cutout.
            if (response.status_code == 200 and body.startswith(FITS_START)
                    and len(body) % FITS_BLOCK == 0):
                part = path.with_name(path.name + ".part")
                part.write_bytes(body)
                part.replace(path)
                return Cutout(path, endpoint, len(body), tuple(failures))
            what = (f"HTTP {response.status_code}" if response.status_code != 200
                    else "not a FITS file" if not body.startswith(FITS_START)
                    else f"a FITS file cut short ({len(body):,} bytes)")
            detail = _error_text(response) if response.status_code != 200 else ""
            failures.append(f"{label}: {what}" + (f": {detail}" if detail else "")
                            + f" ({endpoint.access_url})")
        if report is not None:
            report(failures[-1])
    raise CutoutError(f"no SODA service cut out {links.did}:\n  " + "\n  ".join(failures))
