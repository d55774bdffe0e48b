"""Shared fixtures of the unit tests."""

from __future__ import annotations

import os

import pytest

from rucio_rd import config


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Code under test reads os.environ for overrides: keep RUCIO_RD_* of the shell out."""
    for name in list(os.environ):
        if name.startswith(config.ENV_PREFIX):
            monkeypatch.delenv(name)
