"""Run a real Rucio server (PyPI ``rucio`` 41.x) on the local PostgreSQL for the demo and tests.

The server lives in its own virtual environment (``.venv-rucio``, built from
``res/requirements-rucio.txt``) because Rucio pins library versions that must not
leak into DaCHS's interpreter.  This module therefore never imports ``rucio``: it
writes the configuration, then drives the venv's ``python`` and ``gunicorn`` through
``subprocess``.  It needs only the standard library.

Layout of ``workdir``::

    rucio.cfg          Rucio server configuration (RUCIO_CONFIG points here)
    alembic.ini        schema versioning, script_location inside the venv
    credentials.json   root's userpass identity, mode 600, generated once
    trace/             Rucio's trace log directory (must be writable)
    server.log         gunicorn + Rucio log;  server.pid  pid of the gunicorn master

Metadata: the POSTGRES_JSON did-meta plugin
(``rucio.core.did_meta_plugins.postgres_meta.ExternalPostgresJSONDidMeta``) is listed
*before* Rucio's default JSON plugin.  Rucio hands a key to the first plugin whose
``manages_key()`` is true; the DID_COLUMN plugin always comes first (keys that are
columns of the ``dids`` table: ``events``, ``guid``, ``project``, ...), and both JSON
plugins claim every other key, so all custom keys (``s_ra``, ``obs_id``, ...) land in
the external database.  The default JSON plugin stays listed so that
``GET /dids/{scope}/{name}/meta?plugin=JSON`` keeps answering.  Beware that
``plugin=ALL`` answers 404 for a DID without a POSTGRES_JSON row (the plugin raises
DataIdentifierNotFound).

The metadata table is created by the plugin itself (``postgres_table_is_managed``) in
database ``meta_db_name``, schema ``public``, table ``dids``, with exactly these columns
(DDL from ``ExternalPostgresJSONDidMeta._try_create_metadata_table``)::

    id     bigint  NOT NULL GENERATED ALWAYS AS IDENTITY
    vo     varchar NOT NULL          -- 'def' on a single-VO server
    scope  varchar NOT NULL          -- external scope name, e.g. 'testing'
    name   varchar NOT NULL
    data   jsonb   DEFAULT '{}'      -- the key/value metadata of the DID
    UNIQUE (scope, name)

Setting metadata is an upsert that merges keys (``data = dids.data || EXCLUDED.data``);
deleting a key removes it from ``data``; the row itself is never deleted by Rucio.
Note that the plugin keeps one psycopg connection per server process and leaves a
read transaction open after a GET, so DDL on ``dids`` (ALTER/TRUNCATE) waits while the
server runs.

CLI::

    python -m rucio_rd.stack.rucio_server {setup,start,stop,status} --workdir DIR \
        [--port N] [--db NAME] [--meta-db NAME]
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
# RUCIO_RD_RUCIO_VENV overrides the checkout-relative default (e.g. for an installed package).
DEFAULT_VENV = Path(os.environ.get("RUCIO_RD_RUCIO_VENV") or REPO_ROOT / ".venv-rucio")
WSGI_APP = "rucio.web.rest.flaskapi.v1.main:application"
POSTGRES_JSON_PLUGIN = "rucio.core.did_meta_plugins.postgres_meta.ExternalPostgresJSONDidMeta"
DEFAULT_JSON_PLUGIN = "rucio.core.did_meta_plugins.json_meta.JSONDidMeta"
META_TABLE = "dids"
ROOT_USERNAME = "rucio-rd-root"
# Rucio 41's default REST endpoints, spelled out so that an upgrade cannot silently add
# 'traces' (it needs a message broker and a trace directory).
API_ENDPOINTS = (
    "accounts", "auth", "config", "credentials", "dids", "dirac", "export", "heartbeats",
    "identities", "import", "lifetime_exceptions", "locks", "meta_conventions", "ping",
    "redirect", "replicas", "requests", "rses", "rules", "scopes", "subscriptions",
)

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
BOOTSTRAP_TIMEOUT_S = 300.0

# Runs inside .venv-rucio (RUCIO_CONFIG set); parameters, including the root password,
# arrive as JSON on stdin so that they never show up in a process listing or a file
# other than credentials.json.
_BOOTSTRAP_SCRIPT = r'''
import json, sys
import psycopg
from psycopg import sql

params = json.load(sys.stdin)


def ensure_database(name):
    with psycopg.connect(params["admin_conninfo"], autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if row is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"created database {name}")


for db_name in params["databases"]:
    ensure_database(db_name)

from sqlalchemy import inspect, update
from rucio.db.sqla.session import get_engine

if not inspect(get_engine()).has_table("alembic_version"):
    from rucio.db.sqla.util import build_database, create_base_vo, create_root_account
    build_database()
    create_base_vo()
    create_root_account()  # [bootstrap] identities are blank: root gets no default identity
    print("built Rucio schema, base VO and root account")

# Importing the plugin module instantiates every configured plugin; POSTGRES_JSON then
# creates its (managed) metadata table with its own DDL.
import rucio.core.did_meta_plugins  # noqa: F401

import hashlib, os
from rucio.common import exception
from rucio.common.types import InternalAccount
from rucio.core.identity import add_account_identity, verify_identity
from rucio.db.sqla import models
from rucio.db.sqla.constants import IdentityType
from rucio.db.sqla.session import get_session

username, password = params["username"], params["password"]
try:
    verify_identity(username, IdentityType.USERPASS, password)
except exception.IdentityNotFound:
    # The identity exists with another password (credentials.json was recreated):
    # store the new one, hashed the way rucio.core.identity.add_identity does.
    salt = os.urandom(255)
    digest = hashlib.sha256(salt + password.encode()).hexdigest()
    with get_session()() as session, session.begin():
        session.execute(
            update(models.Identity)
            .where(models.Identity.identity == username,
                   models.Identity.identity_type == IdentityType.USERPASS)
            .values(salt=salt, password=digest))
    print(f"reset password of userpass identity {username}")
except exception.IdentityError:
    add_account_identity(username, IdentityType.USERPASS, InternalAccount("root"),
                         email="root@localhost", default=True, password=password)
    print(f"added userpass identity {username} to account root")
'''

_DROP_SCRIPT = r'''
import json, sys
import psycopg
from psycopg import sql

params = json.load(sys.stdin)
with psycopg.connect(params["admin_conninfo"], autocommit=True) as conn:
    for name in params["databases"]:
        # FORCE: a crashed server may still hold connections.
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        conn.execute(drop.format(sql.Identifier(name)))
        print(f"dropped database {name}")
'''


class RucioServerError(RuntimeError):
    """The Rucio server could not be set up, started or stopped."""


def _default_pg_user() -> str:
    return os.environ.get("PGUSER") or getpass.getuser()


@dataclass
class RucioServer:
    """One Rucio server: its configuration directory, port and two PostgreSQL databases."""

    workdir: Path
    port: int = 18100
    db_name: str = "rucio_rd_rucio"
    meta_db_name: str = "rucio_meta"
    venv: Path = DEFAULT_VENV
    pg_host: str = "127.0.0.1"
    pg_port: int = 5432
    pg_user: str = field(default_factory=_default_pg_user)
    workers: int = 2

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir).resolve()
        self.venv = Path(self.venv)

    # -- paths and addresses -------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "rucio.cfg"

    @property
    def alembic_path(self) -> Path:
        return self.workdir / "alembic.ini"

    @property
    def credentials_path(self) -> Path:
        return self.workdir / "credentials.json"

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    @property
    def pid_path(self) -> Path:
        return self.workdir / "server.pid"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def meta_dsn(self) -> str:
        """libpq DSN of the POSTGRES_JSON metadata database (table ``dids``)."""
        return (f"dbname={self.meta_db_name} host={self.pg_host} port={self.pg_port} "
                f"user={self.pg_user}")

    def _db_url(self) -> str:
        return (f"postgresql+psycopg://{self.pg_user}@{self.pg_host}:{self.pg_port}/"
                f"{self.db_name}")

    def _admin_conninfo(self) -> str:
        return f"dbname=postgres host={self.pg_host} port={self.pg_port} user={self.pg_user}"

    # -- credentials ---------------------------------------------------------------------

    def credentials(self) -> dict[str, str]:
        """Root's userpass credentials; generated (random password) on first use."""
        if self.credentials_path.exists():
            return self._read_credentials()
        creds = {"account": "root", "username": ROOT_USERNAME,
                 "password": secrets.token_urlsafe(24)}
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Create with mode 600 from the start: the password must never be world-readable.
        fd = os.open(self.credentials_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(creds, out)
        return creds

    @property
    def astronomer_password_path(self) -> Path:
        """The demo astronomer's password (account and username ``astronomer``)."""
        return self.workdir / "astronomer-password"

    def astronomer_password(self) -> str:
        """The demo astronomer's Rucio password; generated (random) on first use."""
        path = self.astronomer_password_path
        if not path.exists():
            self.workdir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(18) + "\n")
        return path.read_text().strip()

    def _read_credentials(self) -> dict[str, str]:
        try:
            creds = json.loads(self.credentials_path.read_text())
        except (OSError, ValueError) as exc:
            raise RucioServerError(f"unreadable credentials file {self.credentials_path}: "
                                   f"{exc}") from exc
        missing = {"account", "username", "password"} - set(creds)
        if missing:
            raise RucioServerError(f"credentials file {self.credentials_path} lacks "
                                   f"{sorted(missing)}")
        return creds

    # -- configuration -------------------------------------------------------------------

    def _migrate_repo(self) -> Path:
        matches = sorted(self.venv.glob("lib/python3*/site-packages/rucio/db/sqla/migrate_repo"))
        if not matches:
            raise RucioServerError(f"no rucio installation in venv {self.venv}; create it with "
                                   f"'/usr/bin/python3 -m venv {self.venv}' and "
                                   f"'{self.venv}/bin/pip install -r "
                                   f"{REPO_ROOT / 'res/requirements-rucio.txt'}'")
        return matches[-1]

    def render_config(self) -> str:
        """The rucio.cfg text (no secrets in it: PostgreSQL uses trust/peer auth)."""
        return f"""\
# Written by rucio_rd.stack.rucio_server; rewritten by every setup().
[common]
logdir = {self.workdir}
loglevel = WARNING

[database]
default = {self._db_url()}
pool_recycle = 3600
pool_reset_on_return = rollback

[alembic]
cfg = {self.alembic_path}

[bootstrap]
# Blank identities: create_root_account() then adds none; setup() adds root's
# userpass identity with the password from credentials.json.
userpass_identity =
userpass_pwd =
x509_identity =
gss_identity =
ssh_identity =

[api]
# Rucio splits this on commas without stripping newlines: keep it on one line.
endpoints = {",".join(API_ENDPOINTS)}

[policy]
permission = generic
schema = generic
lfn2pfn_algorithm_default = hash

[trace]
tracedir = {self.workdir / "trace"}

[metadata]
plugins = {POSTGRES_JSON_PLUGIN},{DEFAULT_JSON_PLUGIN}
postgres_service_host = {self.pg_host}
postgres_service_port = {self.pg_port}
postgres_db = {self.meta_db_name}
postgres_user = {self.pg_user}
postgres_password =
postgres_table = {META_TABLE}
postgres_table_is_managed = True
"""

    def render_alembic_ini(self) -> str:
        return f"""\
[alembic]
sqlalchemy.url = {self._db_url()}
script_location = {self._migrate_repo()}

[loggers]
keys = root

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARN
handlers = console

[handler_console]
class = StreamHandler
args = (sys.stderr,)
formatter = generic

[formatter_generic]
format = %%(levelname)-5.5s [%%(name)s] %%(message)s
"""

    def write_config(self) -> None:
        (self.workdir / "trace").mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.render_config())
        self.alembic_path.write_text(self.render_alembic_ini())

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["RUCIO_CONFIG"] = str(self.config_path)
        # The venv must not see the caller's packages (e.g. DaCHS's venv).
        env.pop("PYTHONPATH", None)
        env.pop("PYTHONHOME", None)
        return env

    def _run_in_venv(self, script: str, params: dict[str, Any], what: str) -> None:
        if not self.python.exists():
            raise RucioServerError(f"interpreter {self.python} missing; build {self.venv} first")
        proc = subprocess.run([str(self.python), "-c", script], input=json.dumps(params),
                              capture_output=True, encoding="utf-8", env=self._env(),
                              cwd=self.workdir, timeout=BOOTSTRAP_TIMEOUT_S, check=False)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
            raise RucioServerError(f"{what} failed (exit {proc.returncode}):\n{tail}")

    # -- lifecycle -----------------------------------------------------------------------

    def setup(self) -> None:
        """Idempotently create databases, write config, bootstrap schema, VO and root."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.write_config()
        creds = self.credentials()
        params = {"admin_conninfo": self._admin_conninfo(),
                  "databases": [self.db_name, self.meta_db_name],
                  "username": creds["username"], "password": creds["password"]}
        self._run_in_venv(_BOOTSTRAP_SCRIPT, params, f"bootstrap of Rucio database {self.db_name}")

    def drop_databases(self) -> None:
        """Drop both databases (for hermetic tests); the server must be stopped."""
        if self.is_running():
            raise RucioServerError(f"refusing to drop databases: server on {self.url} is up")
        params = {"admin_conninfo": self._admin_conninfo(),
                  "databases": [self.db_name, self.meta_db_name]}
        self._run_in_venv(_DROP_SCRIPT, params, "dropping databases")

    def is_running(self) -> bool:
        """True when a Rucio server answers GET /ping on our port."""
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=2) as resp:
                return resp.status == 200 and b"version" in resp.read()
        except (OSError, urllib.error.URLError, ValueError):
            return False

    def start(self) -> None:
        """Start gunicorn detached unless a server already answers; wait for /ping."""
        if self.is_running():
            return
        if not self.config_path.exists():
            raise RucioServerError(f"no {self.config_path}; run setup() first")
        gunicorn = self.venv / "bin" / "gunicorn"
        # Sync workers only: the POSTGRES_JSON plugin shares one psycopg connection per
        # process, which is not safe across threads.
        cmd = [str(gunicorn), "--bind", f"127.0.0.1:{self.port}",
               "--workers", str(self.workers), "--worker-class", "sync", "--timeout", "120",
               "--capture-output", "--log-level", "warning",
               "--error-logfile", str(self.log_path), WSGI_APP]
        with self.log_path.open("ab") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    env=self._env(), cwd=self.workdir, start_new_session=True)
        self.pid_path.write_text(f"{proc.pid}\n")
        self._wait_until_up(proc)

    def _wait_until_up(self, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.is_running():
                return
            if proc.poll() is not None:
                self.pid_path.unlink(missing_ok=True)
                raise RucioServerError(f"gunicorn exited with {proc.returncode} on port "
                                       f"{self.port}:\n{self._log_tail()}")
            time.sleep(0.25)
        self.stop()
        raise RucioServerError(f"Rucio on {self.url} did not answer /ping within "
                               f"{START_TIMEOUT_S:.0f} s:\n{self._log_tail()}")

    def _log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _started_pid(self) -> int | None:
        """The gunicorn master from our pid file, if it is still that process."""
        try:
            pid = int(self.pid_path.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        # Guard against a recycled pid: only ever signal our own gunicorn.
        return pid if b"gunicorn" in cmdline and str(self.port).encode() in cmdline else None

    def stop(self) -> None:
        """Stop the gunicorn that start() launched (its process group) and wait for it."""
        pid = self._started_pid()
        if pid is None:
            self.pid_path.unlink(missing_ok=True)
            return
        os.killpg(pid, signal.SIGTERM)
        if not self._wait_gone(pid, STOP_TIMEOUT_S):
            os.killpg(pid, signal.SIGKILL)
            self._wait_gone(pid, 5.0)
        self.pid_path.unlink(missing_ok=True)

    @staticmethod
    def _wait_gone(pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                # Reap it if it is our child (start() and stop() in one process).
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return True
            except ChildProcessError:
                pass
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.1)
        return False


def fresh_test_server(workdir: Path, port: int = 18190, db_name: str = "rucio_rd_test_rucio",
                      meta_db_name: str = "rucio_rd_test_meta") -> RucioServer:
    """A started server on freshly recreated databases (for test fixtures); stop() it after."""
    server = RucioServer(workdir=Path(workdir), port=port, db_name=db_name,
                         meta_db_name=meta_db_name)
    if server.is_running():
        raise RucioServerError(f"port {port} already serves Rucio; stop that server first")
    server.workdir.mkdir(parents=True, exist_ok=True)
    server.write_config()
    server.drop_databases()
    server.setup()
    server.start()
    return server


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["setup", "start", "stop", "status"])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=18100)
    parser.add_argument("--db", default="rucio_rd_rucio")
    parser.add_argument("--meta-db", default="rucio_meta")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    server = RucioServer(workdir=args.workdir, port=args.port, db_name=args.db,
                         meta_db_name=args.meta_db, venv=args.venv)
    try:
        if args.command == "setup":
            server.setup()
            print(f"Rucio set up in {server.workdir} (databases {server.db_name}, "
                  f"{server.meta_db_name})")
        elif args.command == "start":
            started = time.monotonic()
            server.start()
            print(f"Rucio answers on {server.url} ({time.monotonic() - started:.1f} s)")
        elif args.command == "stop":
            server.stop()
            print(f"Rucio on {server.url} stopped")
        else:
            running = server.is_running()
            print(f"Rucio on {server.url}: {'running' if running else 'not running'}")
            return 0 if running else 3
    except RucioServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
