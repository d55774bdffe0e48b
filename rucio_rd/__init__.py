"""rucio_rd: publish a Rucio data lake to the Virtual Observatory through GAVO DaCHS.

The package holds the plugin's logic (configuration, reading Rucio's metadata
table, and later the datalink ranking); the resource descriptor in
``inputs/rucio/rucio.rd`` only calls into it.  ``rucio_rd.stack`` holds the
developer stack (a real Rucio server, a site-directory stand-in, a private
DaCHS instance) used by the demo and the integration tests.
"""

__version__ = "0.1.0"
