"""A small Python HTTP server of the stack run as a background process of its own.

Used for the site-directory stand-in and the prototype-URL redirector: start
it detached (its own session, a pid file and a log in the work directory),
wait until it answers, stop it by the pid file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ServerProcess"]

REPO = Path(__file__).resolve().parents[2]


@dataclass
class ServerProcess:
    """``python -m <module> --port <port> <arguments>`` in the background."""

    name: str
    module: str
    workdir: Path
    port: int
    arguments: list[str] = field(default_factory=list)
    probe_path: str = "/"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid_path(self) -> Path:
        return Path(self.workdir) / f"{self.name}.pid"

    def is_running(self) -> bool:
        """True when something answers HTTP on the port (any status)."""
        try:
            with urllib.request.urlopen(self.url + self.probe_path, timeout=2):
                return True
        except urllib.error.HTTPError:
            return True
        except (urllib.error.URLError, OSError):
            return False

    def start(self, timeout: float = 15) -> None:
        if self.is_running():
            return
        Path(self.workdir).mkdir(parents=True, exist_ok=True)
        log = open(Path(self.workdir) / f"{self.name}.log", "ab")
        process = subprocess.Popen(
            [sys.executable, "-m", self.module, "--port", str(self.port), *self.arguments],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=REPO,
        )
        self.pid_path.write_text(str(process.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({process.returncode}); see its log")
            if self.is_running():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer within {timeout}s")

    def stop(self) -> None:
        if not self.pid_path.exists():
            return
        try:
            os.kill(int(self.pid_path.read_text()), signal.SIGTERM)
        except ProcessLookupError:
            pass
        self.pid_path.unlink(missing_ok=True)
        for _ in range(50):
            if not self.is_running():
                return
            time.sleep(0.1)
