"""The astronomer's side of the notebook's flow, as a Python API and a command.

Cone search (pyvo) → the DataLink answer (the replicas, nearest first, and the
sites' SODA services) → a Rucio token → the file from the first replica that
delivers it intact (checked against Rucio's Adler-32), an optional SODA cutout,
and a quick-look PNG.  In a notebook::

    from rucio_rd import client
    results = client.search("http://localhost:8080/rucio/rucio/cone/scs.xml",
                            53.75308, -24.93365, 1)
    links = client.links(results[0]["access_url"], client_ip_address="130.246.210.120")
    token = client.userpass_token("http://127.0.0.1:18100", "astronomer", "astronomer",
                                  open(".stack/demo/rucio/astronomer-password").read().strip())
    got = client.download(links, "data", token, progress=client.ProgressBar())
    made = client.cutout(links, client.soda_parameters(circle=(53.75308, -24.93365, 0.05)),
                         "data", token, first_site=got.replica.site)
    client.quicklook(made.path)

The command is ``python3 -m rucio_rd.client --help`` (``bin/rucio-rd-client``).
This package never imports DaCHS and is not used by the service.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from rucio_rd.client.cutout import Cutout, CutoutError, cutout, soda_parameters
from rucio_rd.client.download import Downloaded, DownloadError, Failure, download
from rucio_rd.client.links import FileLinks, LinksError, Replica, SodaEndpoint, read_links
from rucio_rd.client.quicklook import QuicklookError, quicklook
from rucio_rd.client.tokens import (
    Token,
    TokenError,
    environment_token,
    file_token,
    oidc_token,
    userpass_token,
)

__all__ = ["Cutout", "CutoutError", "DownloadError", "Downloaded", "Failure", "FileLinks",
           "LinksError", "ProgressBar", "QuicklookError", "Replica", "SodaEndpoint", "Token",
           "TokenError", "cutout", "download", "environment_token", "file_token", "links",
           "oidc_token", "quicklook", "search", "soda_parameters", "userpass_token"]


def search(cone_url: str, ra: float, dec: float, radius: float, session: Any = None) -> Any:
    """A Simple Cone Search (pyvo's ``SCSService``): the rows, nearest first."""
    from pyvo.dal import DALAccessError, SCSService

    try:
        return SCSService(cone_url, session=session).search(pos=(ra, dec), radius=radius)
    except DALAccessError as exc:  # service, query (an error document) and format errors
        raise LinksError(f"the cone search at {cone_url} failed: {exc}") from None


def links(access_url: str, did: str | None = None, *, client_ip_address: str | None = None,
          must_include_soda: bool = False, session: Any = None) -> FileLinks:
    """What the DataLink service at a result's ``access_url`` offers for its file."""
    params = []
    if client_ip_address:
        params.append(("client_ip_address", client_ip_address))
    if must_include_soda:
        params.append(("must_include_soda", "True"))
    return read_links(access_url, did, session=session, params=params)


class ProgressBar:
    """Prints a download's progress on one line (``\\r``), at most five times a second."""

    def __init__(self, stream: TextIO | None = None, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self._last = 0.0

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        finished = total is not None and done >= total
        if not finished and now - self._last < 0.2:
            return
        self._last = now
        if total:
            share = min(done / total, 1.0)
            filled = int(share * self.width)
            bar = "#" * filled + "." * (self.width - filled)
            text = f"\r  [{bar}] {share:4.0%} {done / 1e6:,.1f} of {total / 1e6:,.1f} MB"
        else:
            text = f"\r  {done / 1e6:,.1f} MB"
        self.stream.write(text + ("\n" if finished else ""))
        self.stream.flush()
