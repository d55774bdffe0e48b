"""The datalink core of rucio/rucio#dl: DaCHS's customCore needs a module with a Core class."""

from rucio_rd.dachs_datalink import RucioDatalinkCore as Core  # noqa: F401
