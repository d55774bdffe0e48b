"""Development stack: the services (Rucio, DaCHS, site directory) behind the demo and tests."""
