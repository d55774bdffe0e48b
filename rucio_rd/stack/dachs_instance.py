"""A private DaCHS instance: its own settings file, root directory, database and port.

The demo and the integration tests never touch a system DaCHS: they make an
instance with ``GAVOSETTINGS=<root>/gavo.rc`` and ``GAVOCUSTOM=/invalid``,
initialise it with ``dachs init`` on a database of its own, and run it exactly
as Debian's ``dachs.service`` does: Debian's ``/usr/bin/dachs serve start``
on ``/usr/bin/python3``, which drops to DaCHS's user (``gavo``) when started
as root and imports the installed Debian package ``python3-rucio-rd``.  So the
instance's root must be reachable by that user.  Nothing here knows about Rucio.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from rucio_rd.stack.process import owned_pid, terminate

__all__ = ["DachsError", "DachsInstance"]

REPO = Path(__file__).resolve().parents[2]


class DachsError(RuntimeError):
    """A DaCHS command failed; the message carries its output."""


def _database_exists(name: str) -> bool:
    out = subprocess.run(
        ["psql", "-d", "postgres", "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],
        capture_output=True, encoding="utf-8", check=True,
    )
    return out.stdout.strip() == "1"


def _dachs_initialised(name: str) -> bool:
    out = subprocess.run(
        ["psql", "-d", name, "-tAc", "SELECT to_regclass('dc.tablemeta') IS NOT NULL"],
        capture_output=True, encoding="utf-8", check=True,
    )
    return out.stdout.strip() == "t"


@dataclass
class DachsInstance:
    """A DaCHS instance rooted at ``root`` serving on ``port``."""

    root: Path
    port: int = 8080
    db_name: str = "rucio_rd_dachs"
    host: str = "localhost"
    executable: Path = Path("/usr/bin/dachs")
    authority: str = "rucio-rd.example"
    sitename: str = "rucio_rd demo data centre"
    # Loaded at start-up, so that the plugin's server-wide fixes
    # (rucio_rd.dachs_server) apply from the first connection on.
    preload: str = "rucio/rucio"
    with_obscore: bool = True  # import //obscore at init (the plugin's deploy wants it)

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", self.db_name):
            raise ValueError(f"db_name={self.db_name!r}: use lower-case letters, digits and _")

    @property
    def server_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def settings_file(self) -> Path:
        return self.root / "gavo.rc"

    @property
    def pid_path(self) -> Path:
        """Where ``dachs serve start`` notes the server's pid (its stateDir)."""
        return self.root / "state" / "web.pid"

    @property
    def log_path(self) -> Path:
        """The server's standard error (DaCHS's own logs are beside it)."""
        return self.root / "logs" / "server.stderr"

    @property
    def info_log_path(self) -> Path:
        """DaCHS's timestamped log of infos and warnings (the plugin's lines go here)."""
        return self.root / "logs" / "dcInfos"

    @property
    def plugin_config(self) -> Path:
        return self.root / "etc" / "rucio_rd.toml"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(GAVOSETTINGS=str(self.settings_file), GAVOCUSTOM="/invalid")
        env.pop("RUCIO_RD_CONFIG", None)
        return env

    def command(self, *args: str) -> list[str]:
        return [str(self.executable), *args]

    def dachs(self, *args: str, check: bool = True, timeout: float = 600) -> str:
        """Run a dachs command in this instance; return its output."""
        result = subprocess.run(
            self.command(*args), env=self.env(), capture_output=True, encoding="utf-8",
            timeout=timeout,
        )
        output = result.stdout + result.stderr
        if check and result.returncode != 0:
            raise DachsError(f"dachs {' '.join(args)} failed ({result.returncode}):\n{output}")
        return output

    def write_settings(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.settings_file.write_text(
            "[general]\n"
            f"rootDir: {self.root}\n"
            "[web]\n"
            f"serverPort: {self.port}\n"
            "bindAddress: 127.0.0.1\n"
            f"serverURL: {self.server_url}\n"
            f"sitename: {self.sitename}\n"
            + (f"preloadRDs: {self.preload}\n" if self.preload else "")
            + "[ivoa]\n"
            f"authority: {self.authority}\n"
        )

    def setup(self) -> None:
        """Create the instance if it is not there; a second call changes nothing."""
        fresh_files = not (self.root / "etc" / "feed").exists()
        self.write_settings()
        if fresh_files and _database_exists(self.db_name):
            # A database whose instance files are gone (the instance moved) cannot
            # be initialised again; it holds nothing a deploy does not re-create.
            self.stop()
            subprocess.run(["dropdb", "--force", self.db_name], check=True)
        if not _database_exists(self.db_name):
            subprocess.run(["createdb", self.db_name], check=True)
        if not _dachs_initialised(self.db_name):
            self.dachs("init", "-d", f"dbname={self.db_name}")
            if self.with_obscore:
                self.dachs("imp", "//obscore")

    def drop(self) -> None:
        """Remove the instance's database (its files are the caller's to remove)."""
        self.stop()
        subprocess.run(["dropdb", "--if-exists", "--force", self.db_name], check=True)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.server_url + "/", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _own_pid(self) -> int | None:
        return owned_pid(self.pid_path, ("dachs", "serve"),
                         (f"GAVOSETTINGS={self.settings_file}",))

    def is_running(self) -> bool:
        """This instance's server answers (not just anything on its port)."""
        return self._own_pid() is not None and self._answers()

    def start(self, timeout: float = 60) -> None:
        """``dachs serve start`` (a daemon, as DaCHS's user) until the root page answers."""
        if self.is_running():
            return
        if self._answers():
            raise DachsError(
                f"port {self.port} already answers, but not this instance's DaCHS"
                f" ({self.root}); stop that server (a system DaCHS: systemctl stop dachs)"
            )
        self.stop()  # a stale pid file would make "serve start" refuse
        self.dachs("serve", "start", timeout=timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._own_pid() is not None and self._answers():
                return
            time.sleep(0.2)
        tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:]) \
            if self.log_path.exists() else "(no log)"
        self.stop()
        raise DachsError(f"dachs serve start: no answer within {timeout} s:\n{tail}\n"
                         f"(logs: {self.log_path.parent})")

    def reload(self) -> None:
        """``dachs serve reload``: the server re-reads its configuration, keeps serving."""
        self.dachs("serve", "reload")

    def stop(self) -> None:
        pid = self._own_pid()
        if pid is None:
            self.pid_path.unlink(missing_ok=True)
            return
        self.dachs("serve", "stop", check=False, timeout=30)
        terminate(pid)  # should "serve stop" have left it running
        self.pid_path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("setup", "start", "stop", "status"))
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--db", default="rucio_rd_dachs")
    args = parser.parse_args(argv)
    instance = DachsInstance(args.root, args.port, args.db)
    if args.action == "setup":
        instance.setup()
    elif args.action == "start":
        instance.start()
    elif args.action == "stop":
        instance.stop()
    print("running" if instance.is_running() else "stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
