"""The plugin's settings as DaCHS sees them: the configuration file under DaCHS's rootDir.

Shared by the import (:mod:`rucio_rd.dachs_import`) and the DataLink service
(:mod:`rucio_rd.dachs_datalink`); ``$RUCIO_RD_CONFIG`` wins, as everywhere.
"""

from __future__ import annotations

from rucio_rd import config

__all__ = ["load_dachs_settings"]


def load_dachs_settings() -> config.Settings:
    """The plugin's settings for the DaCHS instance this process belongs to."""
    from gavo import base

    return config.load_settings(config.find_config_file(base.getConfig("rootDir")))
