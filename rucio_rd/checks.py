"""The operator's checks of a deployment, one function per check.

``rucio-rd check`` runs them all and prints one line each; ``rucio-rd
deploy`` runs those that must pass before it changes anything; the DataLink
service's VOSI availability uses :func:`check_rucio`.  Every check returns
:class:`Outcome` values and never raises for what it checks: a failure is an
outcome whose message says what is wrong and what to do.

The checks that need DaCHS take the facts they need as a :class:`DachsSetup`
(read from DaCHS's configuration by :meth:`DachsSetup.from_dachs`), so that
everything else here runs and is tested without DaCHS.  No check prints or
logs a secret: messages name keys and files, never their content.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from rucio_rd import config, resources

__all__ = [
    "FAIL",
    "OK",
    "RD_ID",
    "RUCIO_REFUSES",
    "RUCIO_UNREACHABLE",
    "RUCIO_USABLE",
    "WARN",
    "DachsSetup",
    "Outcome",
    "ServerAccount",
    "Status",
    "all_checks",
    "check_authority",
    "check_configuration",
    "check_geoip",
    "check_metadata",
    "check_published",
    "check_rd_link",
    "check_rucio",
    "check_secret_files",
    "check_server_interpreter",
    "check_sites",
    "dachs_query",
    "failed",
    "readable_by",
    "redacted_dsn",
    "rucio_state",
]


class Status(StrEnum):
    """How a check came out; only FAIL makes ``rucio-rd check`` exit 1."""

    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


OK, WARN, FAIL = Status.OK, Status.WARN, Status.FAIL

#: DaCHS's default authority, which ``dachs pub`` refuses.
UNREGISTERED_AUTHORITY = "x-unregistered"
GEOIP_MAX_AGE_DAYS = 365
RD_ID = "rucio/rucio"


@dataclass(frozen=True)
class Outcome:
    """The result of one check: its name, ``ok``/``warn``/``FAIL`` and what to say."""

    name: str
    status: Status
    message: str

    def line(self) -> str:
        return f"{self.status:<4}  {self.name}: {self.message}"


def failed(outcomes: Iterable[Outcome]) -> list[Outcome]:
    """The outcomes that failed (warnings do not)."""
    return [outcome for outcome in outcomes if outcome.status == FAIL]


@dataclass(frozen=True)
class ServerAccount:
    """Who DaCHS's server runs as: ``[web] user`` with ``[general] group``.

    DaCHS's ``serve start`` (what Debian's dachs.service runs) switches to
    this user and group when started as root.  Only the user's own uid and
    these two groups count: supplementary groups are not set up by DaCHS.
    """

    user: str
    uid: int
    gids: frozenset[int]
    group: str = ""

    @classmethod
    def lookup(cls, user: str, group: str | None) -> ServerAccount:
        """The account of ``user`` (KeyError when there is none)."""
        entry = pwd.getpwnam(user)
        gids = {entry.pw_gid}
        if group:
            try:
                gids.add(grp.getgrnam(group).gr_gid)
            except KeyError:
                pass
        return cls(user, entry.pw_uid, frozenset(gids), group or _group_name(entry.pw_gid))


def _may(mode: int, owner: int, group: int, account: ServerAccount, bit: int) -> bool:
    """Whether ``account`` has permission ``bit`` (4 read, 1 search) on a file."""
    if account.uid == 0:
        return True
    if owner == account.uid:
        return bool(mode & (bit << 6))
    if group in account.gids:
        return bool(mode & (bit << 3))
    return bool(mode & bit)


def readable_by(path: Path, account: ServerAccount) -> str | None:
    """None when ``account`` can read ``path``; else why not (which part of the path)."""
    path = Path(os.path.abspath(path))
    for directory in reversed(path.parents):
        try:
            info = directory.stat()
        except OSError as exc:
            return f"{directory} cannot be examined ({exc.strerror})"
        if not _may(info.st_mode, info.st_uid, info.st_gid, account, 1):
            return f"the directory {directory} is closed to {account.user}"
    try:
        info = path.stat()
    except OSError as exc:
        return f"{path} cannot be examined ({exc.strerror})"
    if not _may(info.st_mode, info.st_uid, info.st_gid, account, 4):
        return (f"{account.user} cannot read it (mode {stat.filemode(info.st_mode)},"
                f" owner {_user_name(info.st_uid)}, group {_group_name(info.st_gid)})")
    return None


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


@dataclass(frozen=True)
class DachsSetup:
    """What the checks need to know of the DaCHS instance."""

    root_dir: Path
    inputs_dir: Path
    cache_dir: Path
    state_dir: Path
    server_user: str
    group: str
    authority: str
    server_url: str

    @property
    def config_path(self) -> Path:
        return self.root_dir / "etc" / config.CONFIG_FILE_NAME

    @classmethod
    def from_dachs(cls) -> DachsSetup:
        """Read DaCHS's configuration (``GAVOSETTINGS`` picks the instance)."""
        from gavo import base

        return cls(
            root_dir=Path(base.getConfig("rootDir")),
            inputs_dir=Path(base.getConfig("inputsDir")),
            cache_dir=Path(base.getConfig("cacheDir")),
            state_dir=Path(base.getConfig("stateDir")),
            server_user=base.getConfig("web", "user") or "",
            group=base.getConfig("group") or "",
            authority=base.getConfig("ivoa", "authority") or "",
            server_url=base.getConfig("web", "serverURL") or "",
        )

    def running_server(self) -> int | None:
        """The pid of this instance's running ``dachs serve``, from its pid file, or None.

        A pid file can outlive its server (and its pid be reused): only a live
        process whose command line is DaCHS's server counts.
        """
        try:
            pid = int((self.state_dir / "web.pid").read_text().strip())
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        if any(part.endswith(b"dachs") for part in command) and b"serve" in command:
            return pid
        return None

    def server_account(self) -> ServerAccount | None:
        """The server's account, or None when DaCHS runs as whoever starts it."""
        if not self.server_user:
            return None
        try:
            return ServerAccount.lookup(self.server_user, self.group)
        except KeyError:
            return None


# --- the checks -------------------------------------------------------------------------


def check_authority(authority: str) -> Outcome:
    """DaCHS's ``[ivoa] authority`` is set to something ``dachs pub`` accepts."""
    if not authority or authority == UNREGISTERED_AUTHORITY:
        shown = repr(authority) if authority else "empty"
        return Outcome("DaCHS authority", FAIL, (
            f"[ivoa] authority is {shown}, which 'dachs pub' refuses; set"
            " it in DaCHS's settings (/etc/gavo.rc, or the file GAVOSETTINGS names), e.g."
            " '[ivoa]' then 'authority: data.example.org' (your own domain), then run"
            " 'dachs init' once more"))
    return Outcome("DaCHS authority", OK, f"ivo://{authority}")


def check_configuration(
    path: Path | None, need_rucio: bool = True
) -> tuple[Outcome, config.Settings | None]:
    """The plugin configuration loads and (with ``need_rucio``) names a usable Rucio client."""
    from rucio_rd.rucio import client_from_settings

    name = "configuration"
    if path is None:
        return Outcome(name, FAIL, (
            f"no {config.CONFIG_FILE_NAME} in DaCHS's etc directory; run rucio-rd deploy"
            f" (it installs {resources.config_template()})")), None
    try:
        settings = config.load_settings(path)
        if need_rucio:
            client_from_settings(settings.rucio)
    except config.ConfigError as exc:
        return Outcome(name, FAIL, f"{path}: {exc}"), None
    return Outcome(name, OK, f"{path} is valid"), settings


def _secret_files(settings: config.Settings) -> list[tuple[str, str]]:
    """The ``(key, path)`` of the secret files the configured auth method uses."""
    rucio = settings.rucio
    keys = config.AUTH_SECRET_FILES[rucio.auth]
    return [(key, getattr(rucio, key)) for key in keys if getattr(rucio, key)]


def _readable_by_others(info: os.stat_result, account: ServerAccount | None) -> str | None:
    """Who else than root, the owner and the server can read a file, and the way out."""
    mode = stat.filemode(info.st_mode)
    if info.st_mode & stat.S_IROTH:
        return f"every user (mode {mode}); chmod o-rwx it"
    allowed = {0} | (account.gids if account is not None else set())
    if info.st_mode & stat.S_IRGRP and info.st_gid not in allowed:
        group = _group_name(info.st_gid)
        fix = f"chgrp {account.group} it" if account is not None else "chmod g-rwx it"
        return f"the group {group} (mode {mode}); {fix}"
    return None


def check_secret_files(
    settings: config.Settings,
    account: ServerAccount | None,
    config_path: Path | None = None,
) -> list[Outcome]:
    """Each secret file is readable by the server's account and by nobody else.

    ``config_path`` (the installed configuration, which may hold a password
    too) is held to the same rule.
    """
    files = [(f"[rucio] {key}", Path(value)) for key, value in _secret_files(settings)]
    if config_path is not None:
        files.append(("configuration file", Path(config_path)))
    outcomes = []
    for what, path in files:
        name = f"secret {what}"
        if account is not None:
            problem = readable_by(path, account)
            if problem:
                outcomes.append(Outcome(name, FAIL, (
                    f"{path}: {problem}; the DaCHS server runs as {account.user}:"
                    f" e.g. chgrp {account.group} {path} && chmod 640 {path}")))
                continue
        try:
            info = path.stat()
        except OSError as exc:
            outcomes.append(Outcome(name, FAIL, f"{path} cannot be read ({exc.strerror})"))
            continue
        others = _readable_by_others(info, account)
        if others:
            outcomes.append(Outcome(name, FAIL, f"{path} is readable by {others}"))
            continue
        who = f"readable by {account.user}" if account is not None else "readable"
        outcomes.append(Outcome(name, OK, f"{path} is {who} and not by others"))
    return outcomes


#: What :func:`rucio_state` finds.
RUCIO_USABLE, RUCIO_REFUSES, RUCIO_UNREACHABLE = "usable", "refuses", "unreachable"


def rucio_state(settings: config.Settings, client=None) -> tuple[str, str]:
    """Whether Rucio answers and accepts the service's credentials, and the details.

    Returns one of :data:`RUCIO_USABLE`, :data:`RUCIO_REFUSES`,
    :data:`RUCIO_UNREACHABLE` with a message for the operator (URL, Rucio's
    version and account, or the error; never a secret).
    """
    from rucio_rd.rucio import RucioAuthError, RucioError, client_from_settings

    url = settings.rucio.url
    try:
        client = client or client_from_settings(settings.rucio)
        version = client.ping().get("version", "unknown version")
        identity = client.whoami()
    except RucioAuthError as exc:
        return RUCIO_REFUSES, (
            f"{url} refuses the service's credentials ({exc}); check"
            f" [rucio] auth = {settings.rucio.auth!r} and its keys")
    except (RucioError, config.ConfigError, OSError) as exc:
        return RUCIO_UNREACHABLE, (
            f"{url} cannot be used ({exc}); check [rucio] url and that Rucio is running")
    return RUCIO_USABLE, (
        f"{url} (Rucio {version}) accepts the service's credentials"
        f" (account {identity.get('account', '?')})")


def check_rucio(settings: config.Settings, client=None) -> Outcome:
    """Rucio answers, and accepts the service's credentials."""
    state, message = rucio_state(settings, client)
    return Outcome("Rucio", OK if state == RUCIO_USABLE else FAIL, message)


def check_sites(
    settings: config.Settings,
    fetch: Callable[[], object],
    rucio_rses: Callable[[], list[str]] | None = None,
) -> list[Outcome]:
    """The site source answers; what it knows; which of Rucio's RSEs no site places."""
    from rucio_rd.sites import describe_source

    where = describe_source(settings.sites)
    name = f"sites ({settings.sites.source})"
    try:
        catalogue = fetch()
    except Exception as exc:  # noqa: BLE001 - any failure of the source is the finding
        return [Outcome(name, FAIL, f"{where} cannot be read: {exc}")]
    sites = {site.name for site in catalogue.values()}
    placed = {rse for rse, site in catalogue.items() if site.position is not None}
    soda = sum((site.soda_sync is not None) + (site.soda_async is not None)
               for site in {site.name: site for site in catalogue.values()}.values())
    outcomes = [Outcome(name, OK, (
        f"{where}: {len(sites)} sites, {len(catalogue)} RSEs ({len(placed)} with a position),"
        f" {soda} SODA services"))]
    if rucio_rses is not None:
        try:
            unplaced = sorted(set(rucio_rses()) - placed)
        except Exception as exc:  # noqa: BLE001
            outcomes.append(Outcome("RSE positions", WARN, f"Rucio's RSEs cannot be listed: {exc}"))
        else:
            if unplaced:
                shown = ", ".join(unplaced[:20]) + (" ..." if len(unplaced) > 20 else "")
                outcomes.append(Outcome("RSE positions", WARN, (
                    f"{len(unplaced)} of Rucio's RSEs have no position in the site source"
                    f" (their replicas come last): {shown}")))
            else:
                outcomes.append(Outcome("RSE positions", OK,
                                        "every RSE Rucio has is placed by the site source"))
    return outcomes


def check_geoip(settings: config.Settings, today: datetime | None = None) -> Outcome:
    """The GeoIP database opens; warn when it is more than a year old."""
    from rucio_rd.geo import GeoLocator

    name = "GeoIP database"
    try:
        locator = GeoLocator(settings.geoip.database or None)
    except ValueError as exc:
        return Outcome(name, FAIL, f"{exc} ([geoip] database)")
    with locator:
        built = locator.build_date
        description = f"{locator.path}: {locator.description}"
    age = ((today or datetime.now(UTC)).date() - built).days
    if age > GEOIP_MAX_AGE_DAYS:
        return Outcome(name, WARN, (
            f"{description}, {age // 365} years old: positions of re-assigned address blocks"
            " will be wrong; set [geoip] database to a current GeoLite2-City.mmdb"))
    return Outcome(name, OK, description)


def redacted_dsn(dsn: str) -> str:
    """A libpq connection string (key=value or URI) fit to show: no password in it."""
    from psycopg2.extensions import make_dsn, parse_dsn

    try:
        parts = parse_dsn(dsn)
    except Exception:  # noqa: BLE001 - an unparseable DSN may still hold a password
        return "(a connection string that libpq cannot parse)"
    if "password" in parts:
        parts["password"] = "***"
    return make_dsn(**parts)


def check_metadata(settings: config.Settings) -> Outcome:
    """Rucio's metadata table can be read (as the user running this); its record count."""
    import psycopg2
    from psycopg2 import sql

    name = "metadata table"
    meta = settings.metadata
    try:
        connection = psycopg2.connect(meta.dsn, connect_timeout=10)
    except psycopg2.Error as exc:
        return Outcome(name, FAIL, (
            f"cannot connect to [metadata] dsn = {redacted_dsn(meta.dsn)!r}:"
            f" {str(exc).strip()}"))
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql.SQL("SELECT count(*) FILTER (WHERE vo = %s), count(*) FROM {}")
                           .format(sql.Identifier(*meta.table.split("."))), (meta.vo,))
            in_vo, total = cursor.fetchone()
        connection.rollback()
        status, capture_state = _capture_backlog(connection, meta.table)
    except psycopg2.Error as exc:
        return Outcome(name, FAIL, (
            f"cannot read [metadata] table = {meta.table!r}: {str(exc).strip()}"))
    finally:
        connection.close()
    return Outcome(name, status, f"{meta.table}: {in_vo} records of VO {meta.vo!r}"
                                 f" ({total} in all){capture_state}")


#: More logged writes than this waiting in capture's change log is a warning:
#: nothing applies the log (no rucio-rd sync --follow, no scheduled sync).
CAPTURE_BACKLOG_WARN = 100_000


def _capture_backlog(connection, table: str) -> tuple[Status, str]:
    """With change capture installed on ``table``: ``ok`` or ``warn`` and how many logged
    writes wait in its log; without: ``ok`` and nothing to say."""
    import psycopg2

    from rucio_rd import capture
    from rucio_rd.sync import FORGET_AT_ONCE

    log = capture.installed_log(connection, table)
    if log is None:
        return OK, ""
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {log}")  # noqa: S608 - a quoted name
            waiting = cursor.fetchone()[0]
    except psycopg2.Error as exc:
        return WARN, (f"; change capture installed, but its log {log} cannot be read:"
                      f" {str(exc).strip()}")
    finally:
        connection.rollback()
    text = f"; change capture installed, {waiting} logged writes waiting"
    if waiting > CAPTURE_BACKLOG_WARN:
        return WARN, (text + ": is rucio-rd sync --follow running? (each scheduled"
                      f" rucio-rd sync also removes up to {FORGET_AT_ONCE:,} it has applied)")
    return OK, text


def check_published(query: Callable[[str], list[tuple]], table: str = "rucio.main") -> Outcome:
    """The published table's row count and when it was last imported.

    ``query`` runs SQL on DaCHS's database and returns the rows.
    """
    name = "published table"
    try:
        exists = query(f"SELECT to_regclass('{table}') IS NOT NULL")[0][0]
        if not exists:
            return Outcome(name, FAIL, f"{table} does not exist; run rucio-rd deploy")
        count = query(f"SELECT count(*) FROM {table}")[0][0]
        updated = query(f"SELECT data_updated FROM dc.rdmeta WHERE sourcerd = '{RD_ID}'")
    except Exception as exc:  # noqa: BLE001
        return Outcome(name, FAIL, f"DaCHS's database cannot be read: {exc}")
    when = updated[0][0] if updated and updated[0][0] else None
    stamp = f"last imported {when:%Y-%m-%d %H:%M:%S} UTC" if when else "import time unknown"
    return Outcome(name, OK, f"{table}: {count} rows, {stamp}")


#: A sync older than this is a warning: the schedule (cron, systemd timer) has stopped.
SYNC_MAX_AGE_HOURS = 24


def check_sync(query: Callable[[str], list[tuple]]) -> list[Outcome]:
    """When the last ``rucio-rd sync`` ran and what it did, and the unusable records
    it keeps (per reason, with examples)."""
    name = "last sync"
    try:
        if not query("SELECT to_regclass('rucio.sync_runs') IS NOT NULL")[0][0]:
            return [Outcome(name, WARN, "never run; schedule rucio-rd sync (README:"
                                        " Keep the table current)")]
        runs = query("SELECT finished AT TIME ZONE 'UTC', mode, records, added, changed,"
                     " deleted,"
                     " now() - finished > interval '1 hour' * " + str(SYNC_MAX_AGE_HOURS)
                     + " FROM rucio.sync_runs ORDER BY finished DESC LIMIT 1")
        rejects = query("SELECT reason, count(*), min(did) FROM rucio.sync_rejects"
                        " GROUP BY reason ORDER BY count(*) DESC")
    except Exception as exc:  # noqa: BLE001
        return [Outcome(name, FAIL, f"DaCHS's database cannot be read: {exc}")]
    if not runs:
        return [Outcome(name, WARN, "never run; schedule rucio-rd sync")]
    finished, mode, records, added, changed, deleted, stale = runs[0]
    text = (f"{finished:%Y-%m-%d %H:%M:%S} UTC ({mode}): {records} metadata records;"
            f" {added} added, {changed} changed, {deleted} deleted")
    outcomes = [Outcome(name, WARN if stale else OK,
                        text + (f"; more than {SYNC_MAX_AGE_HOURS} h ago: is the schedule"
                                " running?" if stale else ""))]
    for reason, count, example in rejects:
        outcomes.append(Outcome("unusable records", WARN,
                                f"{count} x {reason} (e.g. {example!r})"))
    return outcomes


def check_rd_link(inputs_dir: Path, rd_dir: Path | None = None) -> Outcome:
    """``<inputsDir>/rucio`` is this package's RD directory (or a link to it)."""
    rd_dir = rd_dir or resources.rd_dir()
    link = Path(inputs_dir) / "rucio"
    name = "resource descriptor"
    if not link.exists():
        return Outcome(name, FAIL, f"{link} does not exist; run rucio-rd deploy")
    if link.resolve() != rd_dir.resolve():
        return Outcome(name, FAIL, (
            f"{link} is {link.resolve()}, not this installation's {rd_dir};"
            " rucio-rd deploy relinks it (it refuses to replace a real directory)"))
    return Outcome(name, OK, f"{link} -> {rd_dir}")


def check_server_interpreter(python: str = "/usr/bin/python3") -> Outcome:
    """Debian's interpreter (DaCHS's server, ``gavo taprun``) imports this plugin."""
    name = "plugin for DaCHS"
    if not Path(python).exists():
        return Outcome(name, WARN, f"{python} does not exist; DaCHS runs elsewhere")
    result = subprocess.run(
        [python, "-I", "-c", "import rucio_rd, sys; sys.stdout.write(rucio_rd.__file__)"],
        capture_output=True, text=True, encoding="utf-8", errors="replace", cwd="/",
    )
    if result.returncode != 0:
        return Outcome(name, FAIL, (
            f"{python} (DaCHS's interpreter) cannot import rucio_rd; install the Debian"
            " package python3-rucio-rd"))
    return Outcome(name, OK, f"{python} imports {Path(result.stdout).parent}")


def dachs_query(statement: str) -> list[tuple]:
    """Rows of ``statement`` on DaCHS's database (its trusted connection)."""
    from gavo import base

    with base.getTableConn() as connection:
        return list(connection.query(statement))


def all_checks(
    setup: DachsSetup, query: Callable[[str], list[tuple]] = dachs_query
) -> list[Outcome]:
    """Every check of a deployment, in the order ``rucio-rd check`` prints them."""
    from rucio_rd.rucio import client_from_settings
    from rucio_rd.sites import site_reader

    outcomes = [
        check_server_interpreter(),
        check_authority(setup.authority),
        check_rd_link(setup.inputs_dir),
    ]
    try:
        path = config.find_config_file(setup.root_dir)
    except config.ConfigError as exc:
        outcomes.append(Outcome("configuration", FAIL, str(exc)))
        path, settings = None, None
    else:
        outcome, settings = check_configuration(path)
        outcomes.append(outcome)
    if settings is not None:
        outcomes += check_secret_files(settings, setup.server_account(), path)
        client = client_from_settings(settings.rucio)
        rucio = check_rucio(settings, client)
        outcomes.append(rucio)
        outcomes += check_sites(settings, site_reader(settings.sites, client),
                                client.list_rses if rucio.status == OK else None)
        outcomes.append(check_geoip(settings))
        outcomes.append(check_metadata(settings))
    outcomes.append(check_published(query))
    outcomes += check_sync(query)
    return outcomes
