"""The plugin's settings as DaCHS sees them: the configuration file under DaCHS's rootDir.

Shared by the import (:mod:`rucio_rd.dachs_import`) and the DataLink service
(:mod:`rucio_rd.dachs_datalink`); ``$RUCIO_RD_CONFIG`` wins, as everywhere.
"""

from __future__ import annotations

from rucio_rd import config

__all__ = ["load_dachs_settings", "sync_options"]


def load_dachs_settings() -> config.Settings:
    """The plugin's settings for the DaCHS instance this process belongs to."""
    from gavo import base

    return config.load_settings(config.find_config_file(base.getConfig("rootDir")))


def sync_options(settings: config.Settings) -> dict[str, object]:
    """The keyword arguments of :func:`rucio_rd.sync.sync` that the settings and
    DaCHS's ``[web] serverURL`` give (shared by ``rucio-rd sync`` and ``dachs imp``)."""
    from gavo import base

    server_url = (base.getConfig("web", "serverURL")
                  if settings.metadata.access_url == "datalink" else None)
    return {"table": settings.metadata.table, "vo": settings.metadata.vo,
            "server_url": server_url,
            # 0 names them all, as the configuration documents
            "examples": settings.metadata.max_bad_records_reported or 2**31 - 1}
