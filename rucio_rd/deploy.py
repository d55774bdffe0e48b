"""Deploy rucio_rd into a DaCHS instance: the operator's one command (``rucio-rd deploy``).

Which instance is DaCHS's own business: the usual ``GAVOSETTINGS`` (and
``GAVOCUSTOM``) environment picks it, as for any ``dachs`` command.

A deploy cannot half-fail.  It first checks everything it can without
changing anything (:func:`preflight`: DaCHS's authority, the configuration,
the secret files as DaCHS's server user sees them, the GeoIP database,
Rucio's metadata table, Rucio and the service's credentials, the RD link
place) and stops there if anything fails.  Then it changes things in an
order that keeps service running, undoing its own changes if a step fails:

1. link this package's ``inputs/rucio`` into DaCHS's inputsDir (the RD
   ``rucio/rucio``, the notebook's ``/rucio/rucio/cone/scs.xml``), and give
   DaCHS the UAT terms the RD names if its vocabulary cache has none (hosts
   without internet); ``dachs val rucio/rucio``;
2. install the configuration at ``<rootDir>/etc/rucio_rd.toml``, mode 0640 in
   DaCHS's group, replacing the old one in one step;
3. ``dachs imp //obscore`` (once), ``dachs imp rucio/rucio`` (one
   transaction: the published rows stay as they were until it commits, and
   stay if it fails);
4. ``dachs pub rucio/rucio``, and ``dachs serve reload`` when a server of
   this instance runs (so that it reads the new configuration).

A failure before the import commits restores the previous link and
configuration, and nothing is published that was not.  Every step can be
repeated: a second run re-imports and changes nothing else.  A running server
keeps answering throughout (queries on the table wait for the import's
commit); new code needs a restart.
"""

from __future__ import annotations

import argparse
import grp
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from rucio_rd import checks, config, resources

__all__ = ["DeployError", "deploy", "install_config", "link_inputs", "preflight",
           "seed_vocabulary_cache", "write_private"]

DACHS_COMMAND = "/usr/bin/dachs"
UAT_CACHE_NAME = "http:=2F=2Fwww.ivoa.net=2Frdf=2Fuat"


class DeployError(RuntimeError):
    """A deployment step failed; the message says which and how to fix it."""


# --- the RD link -----------------------------------------------------------------------


def link_inputs(inputs_dir: Path, source: Path | None = None) -> Path:
    """Make ``<inputs_dir>/rucio`` a link to ``source``; refuse to replace a real directory."""
    return _link(Path(inputs_dir) / "rucio", source or resources.rd_dir())


def _link_blocker(target: Path) -> str | None:
    """Why ``target`` cannot become our link, or None."""
    if target.exists() and not target.is_symlink():
        return (f"{target} exists and is not a link; move it away to deploy rucio_rd"
                " (a copy of the RD there would shadow the installed one)")
    return None


def _link(target: Path, source: Path) -> Path:
    if target.is_symlink():
        if target.resolve() == source.resolve():
            return target
        target.unlink()
    elif target.exists():
        raise DeployError(_link_blocker(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(source.resolve(), target_is_directory=source.is_dir())
    return target


def _undo_link(target: Path) -> Callable[[], None]:
    """What puts ``target`` back the way it is now."""
    previous = os.readlink(target) if target.is_symlink() else None

    def undo() -> None:
        if target.is_symlink():
            target.unlink()
        if previous is not None:
            target.symlink_to(previous)

    return undo


# --- the configuration -----------------------------------------------------------------


def _chosen_config(target: Path, given: Path | None) -> Path:
    if given is not None:
        return Path(given)
    if target.exists():
        return target
    return resources.config_template()


def install_config(etc_dir: Path, given: Path | None, group: str | None = None) -> Path:
    """Place and validate the plugin configuration; return its path.

    The file replaces the old one in one step (a reader never sees half a
    file) and is mode 0640, in ``group`` (DaCHS's ``[general] group``, whose
    members run the server) so the server can read it.  An invalid file
    raises :class:`~rucio_rd.config.ConfigError` before anything is written.
    """
    target = Path(etc_dir) / config.CONFIG_FILE_NAME
    source = _chosen_config(target, given)
    config.load_settings(source)
    if source.resolve() == target.resolve():
        return target  # a file the operator keeps there keeps its mode
    return write_private(target, source.read_bytes(), group)


def write_private(target: Path, content: bytes, group: str | None = None) -> Path:
    """Write ``target`` mode 0640 in ``group`` (DaCHS's server reads it, nobody else),
    replacing any old file in one step: it may hold a password."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, scratch = tempfile.mkstemp(prefix=".rucio_rd.", dir=target.parent)
    try:
        with os.fdopen(descriptor, "wb") as sink:  # mkstemp makes it 0600
            sink.write(content)
        os.chmod(scratch, 0o640)
        if group:
            _give_to_group(Path(scratch), group, target)
        os.replace(scratch, target)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise
    return target


def _give_to_group(path: Path, group: str, shown: Path) -> None:
    try:
        os.chown(path, -1, grp.getgrnam(group).gr_gid)
    except KeyError:
        pass  # no such group here: the server runs as the file's owner
    except PermissionError:
        print(f"  note: could not give {shown} to group {group}: the DaCHS server may not be"
              " able to read it (run rucio-rd deploy as root or as its owner)", file=sys.stderr)


def _undo_config(target: Path) -> Callable[[], None]:
    """What puts the configuration back the way it is now (content, mode, group)."""
    if not target.exists():
        return lambda: target.unlink(missing_ok=True)
    content, info = target.read_bytes(), target.stat()

    def undo() -> None:
        target.write_bytes(content)
        os.chmod(target, info.st_mode & 0o7777)
        try:
            os.chown(target, info.st_uid, info.st_gid)
        except PermissionError:
            pass

    return undo


# --- DaCHS -----------------------------------------------------------------------------


def seed_vocabulary_cache(cache_dir: Path) -> bool:
    """Give DaCHS the UAT terms the RD uses where its cache has no UAT; True if written.

    DaCHS fetches http://www.ivoa.net/rdf/uat into its cacheDir to check the
    RD's subjects (``dachs val``, ``dachs pub``); on a host without internet
    that fails.  The seed holds only the real UAT concepts the RD names and
    is old enough that DaCHS replaces it by a real download where it can.
    """
    cached = Path(cache_dir) / UAT_CACHE_NAME
    if cached.exists():
        return False
    cached.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(resources.uat_seed(), cached)
    cached.chmod(0o664)
    os.utime(cached, (0, 0))
    return True


def _dachs(*args: str) -> str:
    """Run Debian's dachs (never through ``python -m``: the current directory must not
    decide which rucio_rd DaCHS imports)."""
    command = DACHS_COMMAND if Path(DACHS_COMMAND).exists() else shutil.which("dachs")
    if command is None:
        raise DeployError("no dachs command: install Debian's gavodachs2-server")
    # DaCHS's output may name records in any script: never let decoding fail.
    result = subprocess.run([command, *args], capture_output=True, text=True, cwd="/",
                            encoding="utf-8", errors="replace")
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise DeployError(f"dachs {' '.join(args)} failed:\n{output.strip()}")
    return output


def _obscore_missing() -> bool:
    from gavo import base

    with base.getTableConn() as connection:
        return not list(connection.query("SELECT to_regclass('ivoa._obscoresources')"))[0][0]


# --- the deploy ------------------------------------------------------------------------


def preflight(setup: checks.DachsSetup, config_path: Path,
              try_rucio: bool = True) -> list[checks.Outcome]:
    """Everything a deploy needs, checked without changing anything."""
    outcomes = [checks.check_authority(setup.authority)]
    blocker = _link_blocker(setup.inputs_dir / "rucio")
    outcomes.append(checks.Outcome("resource descriptor", checks.FAIL, blocker) if blocker
                    else checks.Outcome("resource descriptor", checks.OK,
                                        f"{setup.inputs_dir / 'rucio'} -> {resources.rd_dir()}"))
    outcome, settings = checks.check_configuration(config_path, need_rucio=try_rucio)
    if settings is None and config_path.resolve() == resources.config_template().resolve():
        outcome = checks.Outcome(outcome.name, checks.FAIL, (
            f"{outcome.message}. No configuration is installed yet: copy"
            f" {config_path}, fill in [metadata] and [rucio], and give it with --config"))
    outcomes.append(outcome)
    if settings is None:
        return outcomes
    # A configuration kept where it is keeps its mode: it is held to the secrets' rule.
    kept = config_path if config_path.resolve() == setup.config_path.resolve() else None
    outcomes += checks.check_secret_files(settings, setup.server_account(), kept)
    outcomes.append(checks.check_geoip(settings))
    outcomes.append(checks.check_metadata(settings))
    if try_rucio:
        outcomes.append(checks.check_rucio(settings))
    else:
        outcomes.append(checks.Outcome("Rucio", checks.WARN, (
            "not tried (--skip-rucio): the DataLink service answers with faults until"
            f" {settings.rucio.url} accepts its credentials")))
    overrides = sorted(name for name in os.environ
                       if name.startswith(config.ENV_PREFIX) and name != config.CONFIG_ENV)
    if overrides:
        outcomes.append(checks.Outcome("environment", checks.WARN, (
            f"{', '.join(overrides)} set here: the DaCHS server needs the same environment"
            " (e.g. systemctl edit dachs, Environment=...)")))
    return outcomes


def deploy(config_file: Path | None = None, import_data: bool = True,
           setup: checks.DachsSetup | None = None, try_rucio: bool = True) -> None:
    """Deploy into the DaCHS instance ``setup`` describes (DaCHS's own by default).

    ``config_file`` is installed as the configuration (else the installed one
    is kept).  Raises :class:`DeployError` saying what failed and in what
    state it left the instance.
    """
    setup = setup or checks.DachsSetup.from_dachs()
    print(f"DaCHS instance at {setup.root_dir}")
    target = setup.config_path
    outcomes = preflight(setup, _chosen_config(target, config_file), try_rucio)
    for outcome in outcomes:
        print(f"  {outcome.line()}")
    if checks.failed(outcomes):
        raise DeployError("nothing was changed: fix what failed above and run rucio-rd"
                          " deploy again")
    link = setup.inputs_dir / "rucio"
    undo = [_undo_link(link), _undo_config(target)]
    try:
        print(f"  linked {link_inputs(setup.inputs_dir)}")
        if seed_vocabulary_cache(setup.cache_dir):
            print(f"  seeded DaCHS's vocabulary cache with the UAT terms of the RD"
                  f" ({setup.cache_dir / UAT_CACHE_NAME})")
        _dachs("val", checks.RD_ID)
        print(f"  validated {checks.RD_ID}; configuration"
              f" {install_config(target.parent, config_file, setup.group)}")
        imported = None
        if import_data:
            if _obscore_missing():
                _dachs("imp", "//obscore")
            imported = _dachs("imp", checks.RD_ID)
    except BaseException:
        for step in reversed(undo):
            step()
        print("  the previous link and configuration are back; the published table is as"
              " it was", file=sys.stderr)
        raise
    # From here on the import has committed: nothing is undone any more.
    if imported is not None:
        for line in imported.splitlines():
            if "rucio_rd:" in line or "Rows affected" in line:
                print(f"  {line.strip()}")
        try:
            _dachs("pub", checks.RD_ID)
        except DeployError as exc:
            raise DeployError(f"the table was imported with the new configuration, but"
                              f" publishing failed: {exc}; fix it and run rucio-rd deploy"
                              " again") from None
        print(f"  imported and published {checks.RD_ID}")
    _reload_running_server(setup)
    interpreter = checks.check_server_interpreter()
    if interpreter.status != checks.OK:
        print(f"  {interpreter.line()}")


def _reload_running_server(setup: checks.DachsSetup) -> None:
    """``dachs serve reload`` if this instance's server runs; else say how to."""
    if setup.running_server() is None:
        print("  no running server of this instance was found (none, or one without a pid"
              " file, as under systemd): it reads the new configuration after"
              " 'systemctl kill -s HUP dachs', 'dachs serve reload' or a restart")
        return
    _dachs("serve", "reload")
    print("  the running server reloads its configuration (dachs serve reload)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="rucio-rd deploy", description="Deploy rucio_rd into a DaCHS instance"
        " (GAVOSETTINGS picks it); changes nothing unless every check passes.")
    parser.add_argument("--config", type=Path, help="plugin configuration (TOML) to install")
    parser.add_argument(
        "--no-import", action="store_true",
        help="link, validate and configure only; do not import or publish")
    parser.add_argument(
        "--skip-rucio", action="store_true",
        help="do not try Rucio and the service's credentials (a host that publishes the"
        " table only, or Rucio deliberately down); the DataLink service fails until it can")
    args = parser.parse_args(argv)
    try:
        deploy(args.config, import_data=not args.no_import, try_rucio=not args.skip_rucio)
    except (DeployError, config.ConfigError) as exc:
        print(f"deploy failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
