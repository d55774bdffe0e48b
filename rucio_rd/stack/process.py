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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ServerProcess", "answers_http", "is_gone", "launch", "owned_pid", "terminate"]

REPO = Path(__file__).resolve().parents[2]


def launch(
    name: str,
    command: list[str],
    log_path: Path,
    pid_path: Path,
    answers: Callable[[], bool],
    timeout: float,
    env: dict[str, str] | None = None,
) -> None:
    """Start ``command`` detached (own session, output to ``log_path``), note its pid,
    and wait until ``answers()``; raise RuntimeError with the log's tail if it exits
    or stays silent."""
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=REPO, env=env,
        )
    pid_path.write_text(str(process.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pid_path.unlink(missing_ok=True)
            raise RuntimeError(f"{name} exited ({process.returncode}):\n{_tail(log_path)}")
        if answers():
            return
        time.sleep(0.2)
    # Do not leave a silent server behind: it would hold the port for the next try.
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    pid_path.unlink(missing_ok=True)
    raise RuntimeError(f"{name} did not answer within {timeout}s:\n{_tail(log_path)}")


def answers_http(url: str) -> bool:
    """True when something answers HTTP at ``url`` (any status)."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def terminate(pid: int, grace: float = 10.0) -> None:
    """SIGTERM, and SIGKILL if the process is still there after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if is_gone(pid):
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and not is_gone(pid):
            time.sleep(0.1)


def is_gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its parent counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def owned_pid(pid_path: Path, cmdline_marks: tuple[str, ...] = (),
              environ_marks: tuple[str, ...] = ()) -> int | None:
    """The pid in ``pid_path`` if that process is still ours, else None.

    A pid file outlives its process (a reboot, a kill -9) and the pid may
    then belong to anything: only a process whose command line (and
    environment) carry the given marks is taken for ours and ever signalled.
    """
    try:
        pid = int(Path(pid_path).read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        environ = Path(f"/proc/{pid}/environ").read_bytes() if environ_marks else b""
    except (OSError, ValueError):
        return None
    if all(mark.encode() in cmdline for mark in cmdline_marks) and all(
        mark.encode() in environ for mark in environ_marks
    ):
        return pid
    return None


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
        return answers_http(self.url + self.probe_path)

    def start(self, timeout: float = 15) -> None:
        if self.is_running():
            return
        Path(self.workdir).mkdir(parents=True, exist_ok=True)
        launch(
            self.name,
            [sys.executable, "-m", self.module, "--port", str(self.port), *self.arguments],
            log_path=Path(self.workdir) / f"{self.name}.log", pid_path=self.pid_path,
            answers=self.is_running, timeout=timeout,
        )

    def stop(self) -> None:
        pid = owned_pid(self.pid_path, (self.module, str(self.port)))
        self.pid_path.unlink(missing_ok=True)
        if pid is not None:
            terminate(pid, grace=5.0)
