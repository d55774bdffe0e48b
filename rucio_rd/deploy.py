"""Deploy rucio_rd into a DaCHS instance: the operator's one command (``bin/deploy``).

Which instance is DaCHS's own business: the usual ``GAVOSETTINGS`` (and
``GAVOCUSTOM``) environment picks it, as for any ``dachs`` command.  The steps:

1. link this project's ``inputs/rucio`` into DaCHS's inputsDir (so the RD
   ``rucio/rucio`` gives the notebook's ``/rucio/rucio/cone/scs.xml``);
2. put the plugin configuration at ``<rootDir>/etc/rucio_rd.toml`` (the file
   given, else the template if there is none yet) and validate it;
3. check that Rucio's metadata table can be read;
4. ``dachs imp //obscore`` (once), ``dachs imp rucio/rucio``, ``dachs pub``,
   ``dachs val``.

Every step can be repeated: a second run changes nothing but re-importing.
DaCHS must run on an interpreter that can import ``rucio_rd`` (this project's
virtual environment: ``bin/dachs``).
"""

from __future__ import annotations

import argparse
import grp
import os
import subprocess
import sys
from pathlib import Path

from rucio_rd import config

__all__ = ["DeployError", "deploy", "link_inputs"]

REPO = Path(__file__).resolve().parents[1]
RD_DIR = REPO / "inputs" / "rucio"
CONFIG_TEMPLATE = REPO / "res" / "rucio_rd.toml.example"


class DeployError(RuntimeError):
    """A deployment step failed; the message says which and how to fix it."""


def link_inputs(inputs_dir: Path, source: Path = RD_DIR) -> Path:
    """Make ``<inputs_dir>/rucio`` a link to ``source``; refuse to replace a real directory."""
    return _link(Path(inputs_dir) / "rucio", source)


def _link(target: Path, source: Path) -> Path:
    if target.is_symlink():
        if target.resolve() == source.resolve():
            return target
        target.unlink()
    elif target.exists():
        raise DeployError(
            f"{target} exists and is not a link to {source}; move it away to deploy rucio_rd"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(source.resolve(), target_is_directory=source.is_dir())
    return target


def install_config(etc_dir: Path, given: Path | None, group: str | None = None) -> Path:
    """Place and validate the plugin configuration; return its path.

    The file is mode 0640; with ``group`` (DaCHS's ``[general] group``, whose
    members run the server) it belongs to that group so the server can read it.
    """
    target = Path(etc_dir) / config.CONFIG_FILE_NAME
    source = None
    if given is not None:
        config.load_settings(given)
        if Path(given).resolve() != target.resolve():
            source = Path(given)
    elif not target.exists():
        source = CONFIG_TEMPLATE
    if source is not None:  # a file we write; one the operator keeps keeps its mode
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_private(target, Path(source).read_bytes())
        if group:
            try:
                os.chown(target, -1, grp.getgrnam(group).gr_gid)
            except KeyError:
                pass  # no such group here: the server runs as the file's owner
            except PermissionError:
                print(f"  note: could not give {target} to group {group}: the DaCHS server"
                      " may not be able to read it (run bin/deploy as root or as its owner)",
                      file=sys.stderr)
    config.load_settings(target)
    return target


def _write_private(target: Path, content: bytes) -> None:
    """Write ``target`` mode 0640 from the start: it may hold a password."""
    if target.exists():
        target.chmod(0o640)
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(descriptor, "wb") as sink:
        sink.write(content)
    target.chmod(0o640)  # whatever the umask made of it


def server_interpreter_warning(python: str = "/usr/bin/python3") -> str | None:
    """A warning when Debian's dachs service (on ``python``) could not import rucio_rd."""
    if not Path(python).exists() or Path(python).resolve() == Path(sys.executable).resolve():
        return None
    result = subprocess.run([python, "-c", "import rucio_rd"], capture_output=True)
    if result.returncode == 0:
        return None
    return (
        f"{python} (Debian's dachs service) cannot import rucio_rd; run the server with"
        " bin/dachs serve, or see the README (Running under Debian's dachs service)"
    )


def check_metadata_source(settings: config.Settings) -> int:
    """Count the records in Rucio's metadata table, or fail saying why it cannot be read."""
    import psycopg2
    from psycopg2 import sql

    try:
        connection = psycopg2.connect(settings.metadata.dsn, connect_timeout=10)
    except psycopg2.Error as exc:
        raise DeployError(
            f"cannot connect to the metadata database ([metadata] dsn): {exc}".strip()
        ) from None
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                sql.SQL("SELECT count(*) FROM {}").format(
                    sql.Identifier(*settings.metadata.table.split("."))
                )
            )
            return cursor.fetchone()[0]
    except psycopg2.Error as exc:
        raise DeployError(
            f"cannot read [metadata] table = {settings.metadata.table!r}: {exc}".strip()
        ) from None
    finally:
        connection.close()


def _dachs(*args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gavo.user.cli", *args], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise DeployError(f"dachs {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    for line in (result.stdout + result.stderr).splitlines():
        if "rucio_rd:" in line or "Rows affected" in line:
            print(f"  {line.strip()}")


def deploy(config_file: Path | None = None, import_data: bool = True) -> None:
    from gavo import base

    root = Path(base.getConfig("rootDir"))
    print(f"DaCHS instance at {root}")
    print(f"  linked {link_inputs(Path(base.getConfig('inputsDir')))}")
    config_path = install_config(root / "etc", config_file, base.getConfig("group"))
    print(f"  configuration {config_path}")
    settings = config.load_settings(config_path)
    print(f"  metadata table has {check_metadata_source(settings)} records")
    if not import_data:
        return
    _dachs("imp", "//obscore")
    _dachs("imp", "rucio/rucio")
    _dachs("pub", "rucio/rucio")
    _dachs("val", "rucio/rucio")
    print("  imported, published and validated rucio/rucio")
    warning = server_interpreter_warning()
    if warning:
        print(f"  note: {warning}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Deploy rucio_rd into a DaCHS instance.")
    parser.add_argument("--config", type=Path, help="plugin configuration (TOML) to install")
    parser.add_argument(
        "--no-import", action="store_true", help="link and configure only; do not import"
    )
    args = parser.parse_args(argv)
    try:
        deploy(args.config, import_data=not args.no_import)
    except (DeployError, config.ConfigError) as exc:
        print(f"deploy failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
