"""The package's layering, checked from the import statements of its modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "rucio_rd"


def imported(module: str) -> set[str]:
    """The modules ``rucio_rd.<module>`` imports, anywhere in it."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            if node.module == "rucio_rd":
                names.update(f"rucio_rd.{alias.name}" for alias in node.names)
    return names


def package_imports(module: str) -> set[str]:
    return {name for name in imported(module) if name.startswith("rucio_rd")}


@pytest.mark.parametrize(("module", "allowed"), [
    ("model", set()),
    ("resources", set()),
    ("deadline", set()),
    ("http", {"rucio_rd.deadline"}),
    # config validates [sites] source against the table of site sources (lazily)
    ("config", {"rucio_rd.sites", "rucio_rd.model", "rucio_rd.soda"}),
    ("soda", set()),
    # the server-wide fixes patch Twisted and DaCHS only
    ("dachs_server", {"rucio_rd.dali"}),
    ("dali", set()),
    ("guard", set()),
    ("replica_cache", {"rucio_rd.model"}),
    ("datalink_page", set()),
])
def test_the_bottom_modules_import_nothing_else_of_the_package(module: str, allowed) -> None:
    assert package_imports(module) <= allowed


def test_ranking_is_pure_values_and_distances() -> None:
    assert package_imports("ranking") == {"rucio_rd.model"}
    assert not imported("ranking") & {"requests", "gavo", "psycopg2", "geoip2", "maxminddb"}


def test_no_module_outside_the_dachs_glue_imports_dachs() -> None:
    glue = {"dachs_datalink", "dachs_import", "dachs_config", "dachs_server", "dachs_sync",
            "checks", "deploy"}
    for path in PACKAGE.glob("*.py"):
        if path.stem not in glue:
            assert not any(name.startswith("gavo") for name in imported(path.stem)), path.stem


def test_the_installed_plugin_never_imports_the_developer_stack() -> None:
    for path in PACKAGE.glob("*.py"):
        assert not any(name.startswith("rucio_rd.stack") for name in imported(path.stem)), (
            path.stem)


def test_test_modules_have_names_of_their_own() -> None:
    # pytest imports tests/unit and tests/integration by basename: two alike collide.
    tests = Path(__file__).resolve().parents[1]
    names = [path.name for path in tests.rglob("test_*.py")]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_the_client_stands_apart_from_the_service() -> None:
    """The astronomer's client imports its own modules only (no DaCHS, no service)."""
    for path in (PACKAGE / "client").glob("*.py"):
        names = imported(f"client/{path.stem}")
        assert {name for name in names if name.startswith("rucio_rd")} <= {
            "rucio_rd", "rucio_rd.client", *(f"rucio_rd.client.{other.stem}"
                                             for other in (PACKAGE / "client").glob("*.py"))
        }, path.stem
        assert not any(name.startswith(("gavo", "psycopg2", "geoip2")) for name in names)
