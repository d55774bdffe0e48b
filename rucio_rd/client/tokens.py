"""The astronomer's Rucio token, as storage wants it: from a file, the environment,
Rucio's userpass login or Rucio's OIDC flow.

Where Rucio gives no token (the notebook's ``KeyError: 'x-rucio-auth-token'``)
the error says what came back and what to do.  A token is never printed: the
messages name where it came from, not what it is.
"""

from __future__ import annotations

import ipaddress
import os
import urllib.parse
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

__all__ = ["Token", "TokenError", "environment_token", "file_token", "oidc_token",
           "sends_token", "userpass_token"]

TOKEN_HEADER = "X-Rucio-Auth-Token"
TIMEOUT = (5.0, 30.0)
# WLCG Bearer Token Discovery (the form SRCNet storage and gfal read), then Rucio's.
ENVIRONMENT = ("BEARER_TOKEN", "RUCIO_AUTH_TOKEN")
ENVIRONMENT_FILE = "BEARER_TOKEN_FILE"
MAX_TOKEN_BYTES = 16384


class TokenError(Exception):
    """No usable token: the message says what happened and what to do."""


@dataclass(frozen=True)
class Token:
    """A bearer token and where it came from (for messages; never the token).

    The value is checked when made (one line of printable characters without
    spaces): a token that cannot be a header value must not get as far as
    the HTTP library, whose error would quote it.
    """

    value: str
    source: str

    def __post_init__(self) -> None:
        value = self.value.strip() if isinstance(self.value, str) else ""
        if not value:
            raise TokenError(f"{self.source} holds no token (it is empty)")
        if len(value) > MAX_TOKEN_BYTES or any(char.isspace() or not char.isprintable()
                                              for char in value):
            raise TokenError(f"{self.source} does not hold a bearer token (one line of "
                             "printable characters without spaces is expected)")
        object.__setattr__(self, "value", value)

    def __repr__(self) -> str:  # keep it out of tracebacks and notebooks
        return f"Token(source={self.source!r})"

    @property
    def header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.value}"}


def _is_loopback(host: str) -> bool:
    if host.rstrip(".").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def sends_token(url: str, never: Collection[str] = (), allow_http: bool = False) -> bool:
    """Whether a bearer token may go with a request to ``url``: over https (or
    http to this machine, or anywhere with ``allow_http``), and never to a host
    of ``never`` (URLs; the host compared, whatever the port or scheme)."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = (parts.hostname or "").rstrip(".").lower()
    except ValueError:
        return False
    if not host or parts.scheme.lower() not in ("http", "https"):
        return False
    if parts.scheme.lower() == "http" and not (allow_http or _is_loopback(host)):
        return False
    barred: set[str] = set()
    for other in never:
        try:
            barred |= _names((urllib.parse.urlsplit(other).hostname or "").rstrip(".").lower())
        except ValueError:
            continue
    return not _names(host) & barred


_THIS_MACHINE = frozenset({"localhost", "127.0.0.1", "::1"})


def _names(host: str) -> set[str]:
    """The names a host goes by here (localhost is 127.0.0.1 and ::1)."""
    return set(_THIS_MACHINE) if host in _THIS_MACHINE else {host}


def file_token(path: str | Path) -> Token:
    """The token in a file (Rucio's ``auth_token_for_account_*`` or a WLCG token file)."""
    path = Path(path).expanduser()
    try:
        data = path.read_bytes()[:MAX_TOKEN_BYTES + 1]
    except OSError as exc:
        raise TokenError(f"cannot read the token file {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise TokenError(f"the token file {path} is not text") from None
    return Token(text, f"the token file {path}")


def environment_token(environ: Mapping[str, str] | None = None) -> Token | None:
    """The token the environment gives (``BEARER_TOKEN``, ``RUCIO_AUTH_TOKEN``,
    ``BEARER_TOKEN_FILE``), or None."""
    environ = os.environ if environ is None else environ
    for name in ENVIRONMENT:
        if environ.get(name, "").strip():
            return Token(environ[name], f"${name}")
    if environ.get(ENVIRONMENT_FILE, "").strip():
        return file_token(environ[ENVIRONMENT_FILE])
    return None


def _rucio_error(response: requests.Response) -> str:
    """Rucio's own words for a failure: its ExceptionClass and ExceptionMessage."""
    text = f"HTTP {response.status_code}"
    # The body's message first: Rucio cuts the header's short and flattens it.
    try:
        body = response.json()
    except ValueError:
        body = None
    exception = message = None
    if isinstance(body, dict):
        exception, message = body.get("ExceptionClass"), body.get("ExceptionMessage")
    exception = exception or response.headers.get("ExceptionClass")
    message = message or response.headers.get("ExceptionMessage")
    if exception:
        text += f" {exception}"
    if message:
        message = str(message)
        if "Traceback (most recent call last)" in message:
            # Rucio puts its server's traceback in the message: its last line says it.
            lines = [line.strip() for line in message.splitlines() if line.strip()]
            message = lines[-1] if lines else message
        text += f": {message[:300]}"
    elif not exception and response.text.strip():
        text += f": {response.text.strip()[:200]!r}"
    return text


def _get(session: requests.Session, url: str, what: str, **kwargs: Any) -> requests.Response:
    try:
        return session.get(url, timeout=TIMEOUT, allow_redirects=False, **kwargs)
    except requests.RequestException as exc:
        raise TokenError(f"cannot reach Rucio at {url} for {what}: "
                         f"{type(exc).__name__}: {exc}") from None


def userpass_token(rucio_url: str, account: str, username: str, password: str,
                   session: requests.Session | None = None) -> Token:
    """Log in to Rucio with a username and password (``GET /auth/userpass``)."""
    session = session or requests.Session()
    url = rucio_url.rstrip("/") + "/auth/userpass"
    response = _get(session, url, "a userpass login", headers={
        "X-Rucio-Account": account, "X-Rucio-Username": username,
        "X-Rucio-Password": password})
    token = response.headers.get(TOKEN_HEADER)
    if response.status_code != 200 or not token:
        advice = ("check the account, username and password" if response.status_code in
                  (401, 403) else "check the Rucio URL")
        raise TokenError(f"Rucio at {url} gave no token ({TOKEN_HEADER} missing) for "
                         f"account {account!r}, user {username!r}: {_rucio_error(response)}; "
                         f"{advice}")
    return Token(token, f"Rucio's userpass login at {rucio_url}")


def oidc_token(rucio_url: str, account: str | None = None,
               ask: Callable[[str], str] = input, show: Callable[[str], None] = print,
               session: requests.Session | None = None) -> Token:
    """Rucio's interactive OIDC flow, as the notebook does it: ask Rucio for a login
    URL, let the person log in there and paste the code, fetch the token with it."""
    session = session or requests.Session()
    base = rucio_url.rstrip("/")
    headers = {"X-Rucio-Client-Authorize-Auto": "False"}
    if account:
        headers["X-Rucio-Account"] = account
    response = _get(session, base + "/auth/oidc", "an OIDC login URL", headers=headers)
    login_url = response.headers.get("X-Rucio-OIDC-Auth-URL")
    if response.status_code != 200 or not login_url:
        raise TokenError(
            f"Rucio at {base} gave no OIDC login URL (X-Rucio-OIDC-Auth-URL missing): "
            f"{_rucio_error(response)}; this Rucio may not offer OIDC logins: use a token "
            "file, $BEARER_TOKEN or a userpass login instead")
    show(f"Log in at {login_url} and paste the code it shows:")
    try:
        code = ask("code: ").strip()
    except EOFError:
        code = ""
    if not code:
        raise TokenError("no code was given: log in at the URL above and paste its code")
    # The code, or the whole URL the login ended at.
    query = code.split("?", 1)[-1] if code.startswith(("http://", "https://")) else code
    response = _get(session, f"{base}/auth/oidc_redirect?{query}", "the OIDC token",
                    headers={"X-Rucio-Client-Fetch-Token": "True"})
    token = response.headers.get(TOKEN_HEADER)
    if response.status_code != 200 or not token:
        raise TokenError(
            f"Rucio at {base} gave no token for that code ({TOKEN_HEADER} missing): "
            f"{_rucio_error(response)}; the code may have expired or been used: log in "
            "again and paste the new code at once")
    return Token(token, f"Rucio's OIDC login at {rucio_url}")
