"""Where the plugin's files live: under ``/usr/share/rucio-rd`` when Debian's
package ``python3-rucio-rd`` is installed, else beside the package in a source
checkout.

The installed files win even when this module was imported from a checkout:
Debian's DaCHS always imports the installed package, and the RD a deploy links
must be the one that belongs to that code.  Both layouts hold the same
relative paths (``inputs/rucio/rucio.rd``, ``res/...``), so the rest of the
package asks this module and never builds paths of its own.  This module
imports nothing of the package and does no I/O beyond looking whether a file
exists.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "EMBEDDED_GEOIP_DATABASE",
    "SYSTEM_DATA_DIR",
    "config_template",
    "data_dir",
    "rd_dir",
    "uat_seed",
]

#: Where Debian's python3-rucio-rd puts the RD, templates and vocabularies.
SYSTEM_DATA_DIR = Path("/usr/share/rucio-rd")
#: Where Debian's rucio-rd-geolite2 puts the GeoLite2 City database (2018).
EMBEDDED_GEOIP_DATABASE = SYSTEM_DATA_DIR / "geoip" / "GeoLite2-City.mmdb"

_CHECKOUT = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    """The directory holding ``inputs/`` and ``res/``: the installed one if any."""
    if (SYSTEM_DATA_DIR / "inputs" / "rucio" / "rucio.rd").is_file():
        return SYSTEM_DATA_DIR
    return _CHECKOUT


def rd_dir() -> Path:
    """The RD directory (``rucio.rd``, ``dlcore.py``) that DaCHS's inputs link to."""
    return data_dir() / "inputs" / "rucio"


def config_template() -> Path:
    """The commented configuration template, every key with its default."""
    return data_dir() / "res" / "rucio_rd.toml.example"


def uat_seed() -> Path:
    """The UAT concepts the RD names, for DaCHS caches on hosts without internet."""
    return data_dir() / "res" / "vocabularies" / "uat-offline-subset.desise"
