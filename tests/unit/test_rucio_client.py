"""Unit tests of rucio_rd.rucio against a tiny in-process HTTP server.

The fake answers the shapes a real Rucio 41 answers (recorded with the integration
stack): ``X-Rucio-Auth-Token-Expires`` as an HTTP date in UTC, ``ExceptionClass`` /
``ExceptionMessage`` headers and JSON bodies on errors, ``application/x-json-stream``
bodies for ``POST /replicas/list`` and ``GET /rses/``.
"""

from __future__ import annotations

import base64
import email.utils
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import pytest
import requests

from rucio_rd.config import ConfigError, RucioSettings
from rucio_rd.model import Replica
from rucio_rd.rucio import (
    RucioAuthError,
    RucioClient,
    RucioError,
    RucioUnavailable,
    client_from_settings,
)
from rucio_rd.tokens import OIDCClientCredentialsTokens, TokenFileTokens, UserpassTokens

PASSWORD = "pw-Secret-4711"
CLIENT_SECRET = "cs-Secret/0815+&"
TOKEN_PREFIX = "root-rucio-rd-tok-"
WALLABY = "sp3531_soda:2023-07-18-16-40-27_ASK-WALLABY_Eridanus_cutout-574594-imagecube-42178.fits"
PTF = "testing:PTF10tce.fits"


# -- the fake server ---------------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    trickle: float = 0.0  # seconds between body bytes


def rucio_error(status: int, exception_class: str, message: str) -> Reply:
    return Reply(status, {"ExceptionClass": exception_class, "ExceptionMessage": message},
                 {"ExceptionClass": exception_class, "ExceptionMessage": message})


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class FakeRucio:
    """Routes (method, path) to handlers; records every request."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Callable[[Seen], Reply]] = {}
        self.seen: list[Seen] = []
        self.tokens: set[str] = set()
        self.issued = 0
        self.token_lifetime = 3600.0
        # DID -> the line Rucio would send for it
        self.files: dict[str, dict[str, Any]] = {}
        self.route("GET", "/auth/userpass", self.userpass)
        self.route("POST", "/replicas/list", self.replicas)
        self.route("GET", "/ping", lambda seen: Reply(200, {"version": "41.5.1"}))

    def route(self, method: str, path: str, handler: Callable[[Seen], Reply]) -> None:
        self.routes[(method, path)] = handler

    def calls(self, path: str) -> list[Seen]:
        return [seen for seen in self.seen if seen.path == path]

    def issue(self) -> str:
        self.issued += 1
        token = f"{TOKEN_PREFIX}{self.issued:04d}"
        self.tokens.add(token)
        return token

    def userpass(self, seen: Seen) -> Reply:
        if seen.headers.get("X-Rucio-Password") != PASSWORD:
            account = seen.headers.get("X-Rucio-Account")
            return rucio_error(401, "CannotAuthenticate",
                               f"Cannot authenticate to account {account} with given credentials")
        now = time.time()
        return Reply(200, b"", {
            "X-Rucio-Auth-Token": self.issue(),
            "X-Rucio-Auth-Token-Expires": email.utils.formatdate(
                now + self.token_lifetime, usegmt=True).replace("GMT", "UTC"),
        })

    def authorised(self, seen: Seen) -> bool:
        return seen.headers.get("X-Rucio-Auth-Token") in self.tokens

    def replicas(self, seen: Seen) -> Reply:
        if not self.authorised(seen):
            return rucio_error(401, "CannotAuthenticate",
                               "Cannot authenticate with given credentials")
        lines = []
        for did in seen.json()["dids"]:
            entry = self.files.get(f"{did['scope']}:{did['name']}")
            if entry is not None:
                lines.extend(entry if isinstance(entry, list) else [entry])
        return Reply(200, "".join(json.dumps(line) + "\n" for line in lines),
                     {"Content-Type": "application/x-json-stream"})


class _Handler(BaseHTTPRequestHandler):
    fake: FakeRucio

    def log_message(self, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        path = self.path.split("?", 1)[0]
        seen = Seen(self.command, path, dict(self.headers.items()), self.rfile.read(length))
        self.fake.seen.append(seen)
        handler = self.fake.routes.get((self.command, path))
        reply = handler(seen) if handler else rucio_error(404, "NotFound", f"no {path}")
        if reply.delay:
            time.sleep(reply.delay)
        body = reply.body
        if not isinstance(body, bytes | str):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        self.send_response(reply.status)
        headers = {"Content-Type": "application/json", **reply.headers}
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            if reply.trickle:
                for index in range(len(body)):
                    self.wfile.write(body[index:index + 1])
                    self.wfile.flush()
                    time.sleep(reply.trickle)
            else:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_GET = do_POST = _serve


@pytest.fixture
def fake() -> Iterator[FakeRucio]:
    state = FakeRucio()
    handler = type("Handler", (_Handler,), {"fake": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.block_on_close = False
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield state
    server.shutdown()
    server.server_close()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def file_line(did: str, rses: dict[str, list[str]], size: int | None = 1234) -> dict[str, Any]:
    scope, name = did.split(":", 1)
    pfns = {pfn: {"rse": rse, "type": "DISK", "domain": "wan", "priority": 1}
            for rse, urls in rses.items() for pfn in urls}
    return {"scope": scope, "name": name, "bytes": size, "md5": None, "adler32": "0000",
            "pfns": pfns, "rses": rses}


def userpass(fake: FakeRucio, clock: Callable[[], float] = time.time,
             password: str = PASSWORD, **kw: Any) -> UserpassTokens:
    return UserpassTokens(fake.url, "root", "rucio-rd-root", password,  # type: ignore[attr-defined]
                          timeout=2.0, clock=clock, **kw)


def client(fake: FakeRucio, tokens: Any = None, **kw: Any) -> RucioClient:
    kw.setdefault("timeout", 2.0)
    return RucioClient(fake.url, tokens or userpass(fake), **kw)  # type: ignore[attr-defined]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- userpass tokens ---------------------------------------------------------------------


def test_userpass_token_is_cached_until_the_refresh_margin(fake: FakeRucio) -> None:
    clock = Clock()
    tokens = userpass(fake, clock)
    first = tokens.token()
    assert first.startswith(TOKEN_PREFIX)
    headers = fake.calls("/auth/userpass")[0].headers
    assert headers["X-Rucio-Account"] == "root"
    assert headers["X-Rucio-Username"] == "rucio-rd-root"
    clock.now += 3600 - 300 - 5
    assert tokens.token() == first
    assert len(fake.calls("/auth/userpass")) == 1
    clock.now += 10  # within 300 s of the expiry: refresh before it runs out
    second = tokens.token()
    assert second != first
    assert len(fake.calls("/auth/userpass")) == 2


def test_userpass_short_lived_token_is_refreshed_half_way(fake: FakeRucio) -> None:
    fake.token_lifetime = 120  # shorter than the 300 s margin
    clock = Clock()
    tokens = userpass(fake, clock)
    first = tokens.token()
    clock.now += 50
    assert tokens.token() == first
    clock.now += 20
    assert tokens.token() != first


def test_userpass_invalidate_fetches_a_new_token(fake: FakeRucio) -> None:
    tokens = userpass(fake)
    first = tokens.token()
    tokens.invalidate()
    assert tokens.token() != first


def test_userpass_token_is_fetched_once_by_concurrent_threads(fake: FakeRucio) -> None:
    tokens = userpass(fake)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(tokens.token()))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and len(results) == 8
    assert len(fake.calls("/auth/userpass")) == 1


def test_wrong_password_raises_auth_error_without_the_password(
        fake: FakeRucio, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = userpass(fake, password="wrong-" + PASSWORD)
    with pytest.raises(RucioAuthError) as info:
        client(fake, tokens).list_replicas([PTF])
    text = str(info.value)
    assert "401" in text and "CannotAuthenticate" in text and "account root" in text
    assert PASSWORD not in text
    assert PASSWORD not in caplog.text
    assert PASSWORD not in repr(tokens)


def test_userpass_answer_without_token_is_an_auth_error(fake: FakeRucio) -> None:
    fake.route("GET", "/auth/userpass", lambda seen: Reply(200, b""))
    with pytest.raises(RucioAuthError, match="without a token"):
        userpass(fake).token()


def test_userpass_unparsable_expiry_falls_back_to_a_short_lifetime(fake: FakeRucio) -> None:
    fake.route("GET", "/auth/userpass", lambda seen: Reply(200, b"", {
        "X-Rucio-Auth-Token": fake.issue(), "X-Rucio-Auth-Token-Expires": "tomorrow"}))
    clock = Clock()
    tokens = userpass(fake, clock, refresh_margin=60)
    first = tokens.token()
    clock.now += 500
    assert tokens.token() == first
    clock.now += 100
    assert tokens.token() != first


# -- retries, errors and timeouts --------------------------------------------------------


def test_401_renews_the_token_once_and_retries(fake: FakeRucio) -> None:
    fake.files[PTF] = file_line(PTF, {"SPSRC_STORAGE": ["https://spsrc/PTF10tce.fits"]})
    rucio = client(fake)
    rucio.list_replicas([PTF])
    fake.tokens.clear()  # Rucio forgot the token (e.g. restarted with another DB)
    listing = rucio.list_replicas([PTF])
    assert PTF in listing.found
    assert len(fake.calls("/auth/userpass")) == 2
    assert len(fake.calls("/replicas/list")) == 3


def test_persistent_401_raises_auth_error_after_one_retry(fake: FakeRucio) -> None:
    fake.route("POST", "/replicas/list", lambda seen: rucio_error(
        401, "CannotAuthenticate", "Cannot authenticate with given credentials"))
    with pytest.raises(RucioAuthError) as info:
        client(fake).list_replicas([PTF])
    assert len(fake.calls("/replicas/list")) == 2
    assert TOKEN_PREFIX not in str(info.value)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_error_is_unavailable_with_rucio_exception(fake: FakeRucio, status: int) -> None:
    fake.route("POST", "/replicas/list",
               lambda seen: rucio_error(status, "RucioException", "An unknown exception"))
    with pytest.raises(RucioUnavailable) as info:
        client(fake).list_replicas([PTF])
    assert f"{status} RucioException: An unknown exception" in str(info.value)
    assert info.value.status == status
    assert TOKEN_PREFIX not in str(info.value)


def test_error_without_rucio_headers_uses_the_body(fake: FakeRucio) -> None:
    fake.route("GET", "/rses/X/attr/", lambda seen: Reply(404, {
        "ExceptionClass": "RSENotFound", "ExceptionMessage": "RSE 'X' cannot be found"}))
    with pytest.raises(RucioError) as info:
        client(fake).rse_attributes("X")
    assert not isinstance(info.value, RucioUnavailable)
    assert info.value.exception_class == "RSENotFound"
    assert "404 RSENotFound: RSE 'X' cannot be found" in str(info.value)


def test_connection_refused_is_unavailable_quickly() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    rucio = RucioClient(url, UserpassTokens(url, "root", "u", PASSWORD, timeout=0.5),
                        timeout=0.5)
    started = time.monotonic()
    with pytest.raises(RucioUnavailable) as info:
        rucio.list_replicas([PTF])
    assert time.monotonic() - started < 2
    assert PASSWORD not in str(info.value)
    with pytest.raises(RucioUnavailable):
        rucio.ping()


def test_slow_server_times_out_and_does_not_hang(fake: FakeRucio) -> None:
    fake.route("POST", "/replicas/list", lambda seen: Reply(200, b"", delay=3.0))
    rucio = client(fake, timeout=0.5)
    rucio.tokens.token()
    started = time.monotonic()
    with pytest.raises(RucioUnavailable, match="timed out|took longer|failed"):
        rucio.list_replicas([PTF])
    assert time.monotonic() - started < 2.5  # the server would take 3 s


def test_trickling_server_is_cut_off_at_the_deadline(fake: FakeRucio) -> None:
    # Each byte comes well within the read timeout, the whole body never would.
    line = json.dumps(file_line(PTF, {"SPSRC_STORAGE": ["https://spsrc/PTF10tce.fits"]}))
    fake.route("POST", "/replicas/list", lambda seen: Reply(200, line + "\n", trickle=0.05))
    rucio = client(fake, timeout=0.5)
    rucio.tokens.token()
    started = time.monotonic()
    with pytest.raises(RucioUnavailable, match="longer than 0.5 s"):
        rucio.list_replicas([PTF])
    assert time.monotonic() - started < 2


def test_slow_token_endpoint_times_out(fake: FakeRucio) -> None:
    fake.route("GET", "/auth/userpass", lambda seen: Reply(200, b"", delay=3.0))
    started = time.monotonic()
    with pytest.raises(RucioUnavailable):
        UserpassTokens(fake.url, "root", "u", PASSWORD, timeout=0.5).token()  # type: ignore[attr-defined]
    assert time.monotonic() - started < 1.5


# -- token file --------------------------------------------------------------------------


def test_token_file_with_a_bare_token(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("bare-token-123\n")
    assert TokenFileTokens(path).token() == "bare-token-123"


def test_token_file_with_json(tmp_path: Path) -> None:
    path = tmp_path / "token.json"
    path.write_text(json.dumps({"access_token": "json-token-456", "expires_in": 3600}))
    assert TokenFileTokens(path).token() == "json-token-456"


def test_token_file_is_reread_when_its_mtime_changes(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first-token")
    tokens = TokenFileTokens(path)
    assert tokens.token() == "first-token"
    path.write_text("other-token")  # same size: only the mtime tells
    stat = path.stat()
    import os

    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert tokens.token() == "other-token"


def test_token_file_is_not_reread_while_unchanged(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "token"
    path.write_text("first-token")
    tokens = TokenFileTokens(path)
    tokens.token()
    reads: list[int] = []
    original = Path.read_text
    monkeypatch.setattr(Path, "read_text",
                        lambda self, *a, **k: reads.append(1) or original(self, *a, **k))
    assert tokens.token() == "first-token"
    assert reads == []


@pytest.mark.parametrize("content, problem", [
    (None, "cannot be read"),
    ("", "is empty"),
    ("  \n", "is empty"),
    ('{"access_token": ', "broken JSON"),
    ('{"token_type": "Bearer"}', "no access_token"),
])
def test_unusable_token_file_names_its_path(tmp_path: Path, content: str | None,
                                            problem: str) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    with pytest.raises(RucioAuthError, match=problem) as info:
        TokenFileTokens(path).token()
    assert str(path) in str(info.value)


def test_token_file_token_is_sent_to_rucio(fake: FakeRucio, tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(fake.issue())
    fake.files[PTF] = file_line(PTF, {"SPSRC_STORAGE": ["https://spsrc/PTF10tce.fits"]})
    listing = client(fake, TokenFileTokens(path), account="root").list_replicas([PTF])
    assert PTF in listing.found
    headers = fake.calls("/replicas/list")[0].headers
    assert headers["X-Rucio-Auth-Token"] == path.read_text()
    assert headers["X-Rucio-Account"] == "root"


# -- OIDC client credentials -------------------------------------------------------------


def oidc_endpoint(fake: FakeRucio, expires_in: Any = 300) -> None:
    def handler(seen: Seen) -> Reply:
        form = {key: values[0] for key, values in parse_qs(seen.body.decode()).items()}
        auth = seen.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            client_id, secret = unquote(client_id), unquote(secret)
        else:
            client_id, secret = form.get("client_id"), form.get("client_secret")
        if form.get("grant_type") != "client_credentials":
            return Reply(400, {"error": "unsupported_grant_type"})
        if client_id != "rucio-rd" or secret != CLIENT_SECRET:
            return Reply(401, {"error": "invalid_client",
                               "error_description": "Bad client credentials"})
        body: dict[str, Any] = {"access_token": fake.issue(), "token_type": "Bearer"}
        if expires_in is not None:
            body["expires_in"] = expires_in
        return Reply(200, body)

    fake.route("POST", "/token", handler)


def oidc(fake: FakeRucio, secret: str = CLIENT_SECRET, **kw: Any) -> OIDCClientCredentialsTokens:
    return OIDCClientCredentialsTokens(f"{fake.url}/token", "rucio-rd", secret,  # type: ignore[attr-defined]
                                       timeout=2.0, **kw)


@pytest.mark.parametrize("auth_method", ["basic", "post"])
def test_oidc_token_is_cached_for_expires_in_minus_margin(fake: FakeRucio,
                                                          auth_method: str) -> None:
    oidc_endpoint(fake, expires_in=300)
    clock = Clock()
    tokens = oidc(fake, clock=clock, scope="openid", audience="rucio", auth_method=auth_method)
    first = tokens.token()
    form = parse_qs(fake.calls("/token")[0].body.decode())
    assert form["grant_type"] == ["client_credentials"]
    assert form["scope"] == ["openid"] and form["audience"] == ["rucio"]
    clock.now += 239
    assert tokens.token() == first
    clock.now += 2
    assert tokens.token() != first
    assert len(fake.calls("/token")) == 2


def test_oidc_without_expires_in_uses_a_short_lifetime(fake: FakeRucio) -> None:
    oidc_endpoint(fake, expires_in=None)
    clock = Clock()
    tokens = oidc(fake, clock=clock)
    first = tokens.token()
    clock.now += 500
    assert tokens.token() == first
    clock.now += 60
    assert tokens.token() != first


def test_oidc_error_response_is_an_auth_error_without_the_secret(
        fake: FakeRucio, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    oidc_endpoint(fake)
    tokens = oidc(fake, secret="wrong" + CLIENT_SECRET)
    with pytest.raises(RucioAuthError) as info:
        tokens.token()
    text = str(info.value)
    assert "invalid_client" in text and "Bad client credentials" in text
    assert CLIENT_SECRET not in text and CLIENT_SECRET not in caplog.text
    assert CLIENT_SECRET not in repr(tokens)


def test_oidc_server_error_is_unavailable(fake: FakeRucio) -> None:
    fake.route("POST", "/token", lambda seen: Reply(503, "down"))
    with pytest.raises(RucioUnavailable):
        oidc(fake).token()


def test_oidc_answer_without_access_token_is_an_auth_error(fake: FakeRucio) -> None:
    fake.route("POST", "/token", lambda seen: Reply(200, {"token_type": "Bearer"}))
    with pytest.raises(RucioAuthError, match="without an access_token"):
        oidc(fake).token()


def test_oidc_token_is_sent_to_rucio(fake: FakeRucio) -> None:
    oidc_endpoint(fake)
    fake.files[PTF] = file_line(PTF, {"SPSRC_STORAGE": ["https://spsrc/PTF10tce.fits"]})
    listing = client(fake, oidc(fake), account="root").list_replicas([PTF])
    assert listing.found[PTF].replicas == (Replica("SPSRC_STORAGE", "https://spsrc/PTF10tce.fits"),)


# -- replica listing ---------------------------------------------------------------------


def test_one_call_serves_all_dids_and_unknown_ones_are_missing(fake: FakeRucio) -> None:
    fake.files[WALLABY] = file_line(WALLABY, {
        "UKSRC_RAL_STORAGE": ["https://uk/w.fits"], "SPSRC_STORAGE": ["https://sp/w.fits"]},
        size=21_323_520)
    fake.files[PTF] = file_line(PTF, {"SPSRC_STORAGE": ["https://sp/PTF10tce.fits"]})
    listing = client(fake).list_replicas([WALLABY, "testing:nope.fits", PTF, "nope:x"])
    assert len(fake.calls("/replicas/list")) == 1
    body = fake.calls("/replicas/list")[0].json()
    assert body["sort"] == "random" and "schemes" not in body
    # Booleans as Rucio's REST layer wants them (0/1-like values flood its log).
    assert body["ignore_availability"] == "false" and body["resolve_archives"] == "true"
    assert not [key for key, value in body.items() if isinstance(value, bool | int)]
    assert body["dids"][1] == {"scope": "testing", "name": "nope.fits"}
    assert fake.calls("/replicas/list")[0].headers["Accept"] == "application/x-json-stream"
    assert set(listing.found) == {WALLABY, PTF}
    assert listing.missing == {"testing:nope.fits", "nope:x"}
    wallaby = listing.found[WALLABY]
    assert wallaby.did == WALLABY and wallaby.bytes == 21_323_520
    # one replica per RSE, ordered by RSE name
    assert wallaby.replicas == (Replica("SPSRC_STORAGE", "https://sp/w.fits"),
                                Replica("UKSRC_RAL_STORAGE", "https://uk/w.fits"))


@pytest.mark.parametrize(("given", "kept"), [
    ("425d1a05", "425d1a05"), ("425D1A05", "425d1a05"), ("0000", "00000000"),
    (" 12e711b4 ", "12e711b4"), ("", None), (None, None), ("12345678a", None),
    ("xyz", None), (12345, None), ("4 5", None),
])
def test_rucios_adler32_comes_as_eight_hex_digits_or_not_at_all(
        fake: FakeRucio, given: Any, kept: str | None) -> None:
    line = file_line(PTF, {"SPSRC_STORAGE": ["https://sp/PTF10tce.fits"]})
    line["adler32"] = given
    fake.files[PTF] = line
    assert client(fake).list_replicas([PTF]).found[PTF].adler32 == kept


def test_schemes_are_sent_and_the_first_pfn_per_rse_is_kept(fake: FakeRucio) -> None:
    fake.files[PTF] = file_line(PTF, {"SPSRC_STORAGE": ["davs://sp/a", "https://sp/a"]})
    listing = client(fake).list_replicas([PTF], schemes=["davs", "https"])
    assert fake.calls("/replicas/list")[0].json()["schemes"] == ["davs", "https"]
    assert listing.found[PTF].replicas == (Replica("SPSRC_STORAGE", "davs://sp/a"),)


def test_without_schemes_https_then_davs_pfns_are_preferred(fake: FakeRucio) -> None:
    fake.files[PTF] = file_line(PTF, {
        "A": ["root://a/f", "davs://a/f", "https://a/f"],
        "B": ["root://b/f", "davs://b/f"],
        "C": ["root://c/f", "srm://c/f"],
    })
    replicas = client(fake).list_replicas([PTF]).found[PTF].replicas
    assert replicas == (Replica("A", "https://a/f"), Replica("B", "davs://b/f"),
                        Replica("C", "root://c/f"))


def test_known_file_without_replicas_is_found_empty(fake: FakeRucio) -> None:
    fake.files[PTF] = {**file_line(PTF, {}), "pfns": {},
                       "states": {"SPSRC_STORAGE": "AVAILABLE"}}
    listing = client(fake).list_replicas([PTF], schemes=["root"])
    assert listing.found[PTF].replicas == () and not listing.missing


def test_dataset_did_is_missing_and_its_files_are_ignored(fake: FakeRucio) -> None:
    # Rucio expands a dataset into the lines of its files.
    fake.files["testing:my-dataset"] = [file_line(PTF, {"S": ["https://s/f"]})]
    listing = client(fake).list_replicas(["testing:my-dataset"])
    assert listing.missing == {"testing:my-dataset"} and not listing.found


def test_duplicate_dids_are_asked_once(fake: FakeRucio) -> None:
    fake.files[PTF] = file_line(PTF, {"S": ["https://s/f"]})
    listing = client(fake).list_replicas([PTF, PTF])
    assert len(fake.calls("/replicas/list")[0].json()["dids"]) == 1
    assert set(listing.found) == {PTF}


def test_empty_list_makes_no_call(fake: FakeRucio) -> None:
    listing = client(fake).list_replicas([])
    assert not listing.found and not listing.missing and fake.seen == []


@pytest.mark.parametrize("did", [
    "no-colon", "s" * 26 + ":x", "testing:" + "n" * 251, "testing:---", ":x", "testing:",
    "testing:a\x00b",
])
def test_dids_rucio_cannot_hold_are_missing_without_a_call(fake: FakeRucio, did: str) -> None:
    fake.files[PTF] = file_line(PTF, {"S": ["https://s/f"]})
    listing = client(fake).list_replicas([did, PTF])
    assert listing.missing == {did}
    assert fake.calls("/replicas/list")[0].json()["dids"] == [
        {"scope": "testing", "name": "PTF10tce.fits"}]


def test_stream_with_blank_lines_is_parsed(fake: FakeRucio) -> None:
    line = json.dumps(file_line(PTF, {"S": ["https://s/f"]}))
    fake.route("POST", "/replicas/list", lambda seen: Reply(200, f"\n{line}\n\n  \n"))
    assert PTF in client(fake).list_replicas([PTF]).found


def test_broken_stream_line_is_unavailable_not_missing(fake: FakeRucio) -> None:
    line = json.dumps(file_line(PTF, {"S": ["https://s/f"]}))
    fake.route("POST", "/replicas/list", lambda seen: Reply(200, f"{line}\n{line[:40]}\n"))
    with pytest.raises(RucioUnavailable, match="unparsable line 2"):
        client(fake).list_replicas([PTF])


def test_more_dids_than_the_limit_are_chunked(fake: FakeRucio) -> None:
    dids = [f"survey:synthetic-{number:04d}.fits" for number in range(7)]
    for did in dids[:-1]:
        fake.files[did] = file_line(did, {"S": [f"https://s/{did}"]})
    listing = client(fake, max_dids_per_call=3).list_replicas(dids)
    sizes = [len(seen.json()["dids"]) for seen in fake.calls("/replicas/list")]
    assert sizes == [3, 3, 1]
    assert set(listing.found) == set(dids[:-1]) and listing.missing == {dids[-1]}


def rejecting(fake: FakeRucio, bad: set[str], status: int = 500,
              exception_class: str = "DatabaseException") -> None:
    """Rucio fails a whole batch that holds any DID of ``bad``."""
    def handler(seen: Seen) -> Reply:
        names = {f"{did['scope']}:{did['name']}" for did in seen.json()["dids"]}
        if names & bad:
            return rucio_error(status, exception_class, "An unknown Database Exception")
        return fake.replicas(seen)

    fake.route("POST", "/replicas/list", handler)


@pytest.mark.parametrize("status, exception_class", [
    (500, "DatabaseException"), (400, "InvalidObject")])
def test_batch_rejected_for_one_did_is_bisected(fake: FakeRucio, status: int,
                                                exception_class: str) -> None:
    dids = [f"survey:synthetic-{number:04d}.fits" for number in range(32)]
    for did in dids:
        fake.files[did] = file_line(did, {"S": [f"https://s/{did}"]})
    bad = dids[13]
    rejecting(fake, {bad}, status, exception_class)
    listing = client(fake).list_replicas(dids)
    assert listing.missing == {bad}
    assert set(listing.found) == set(dids) - {bad}
    # 1 + 2 per level of a 32-DID bisection
    assert len(fake.calls("/replicas/list")) <= 1 + 2 * 5


@pytest.mark.parametrize("bad_positions", [(0,), (0, 31), (3, 17, 18)])
def test_bisection_finds_several_bad_dids_anywhere(fake: FakeRucio,
                                                   bad_positions: tuple[int, ...]) -> None:
    dids = [f"survey:synthetic-{number:04d}.fits" for number in range(32)]
    for did in dids:
        fake.files[did] = file_line(did, {"S": [f"https://s/{did}"]})
    bad = {dids[position] for position in bad_positions}
    rejecting(fake, bad)
    listing = client(fake).list_replicas(dids)
    assert listing.missing == bad and set(listing.found) == set(dids) - bad


def test_database_down_for_every_did_is_unavailable_and_bounded(fake: FakeRucio) -> None:
    dids = [f"survey:synthetic-{number:04d}.fits" for number in range(200)]
    rejecting(fake, set(dids))
    with pytest.raises(RucioUnavailable, match="DatabaseException"):
        client(fake).list_replicas(dids)
    # one call per level down to the first DID, and its sibling
    assert len(fake.calls("/replicas/list")) <= 10


def test_single_did_database_exception_is_unavailable(fake: FakeRucio) -> None:
    rejecting(fake, {PTF})
    with pytest.raises(RucioUnavailable):
        client(fake).list_replicas([PTF])


def test_other_client_errors_are_not_bisected(fake: FakeRucio) -> None:
    fake.route("POST", "/replicas/list",
               lambda seen: rucio_error(400, "ValueError", "Token must be set."))
    with pytest.raises(RucioError, match="ValueError") as info:
        client(fake).list_replicas([PTF, WALLABY])
    assert not isinstance(info.value, RucioUnavailable)
    assert len(fake.calls("/replicas/list")) == 1


# -- RSEs, ping --------------------------------------------------------------------------


def test_rse_attributes_quotes_the_name_and_merges_lists(fake: FakeRucio) -> None:
    fake.route("GET", "/rses/A%2FB/attr/",
               lambda seen: Reply(200, [{"latitude": "37.19"}, {"longitude": "-3.6"}]))
    assert client(fake).rse_attributes("A/B") == {"latitude": "37.19", "longitude": "-3.6"}


def test_rse_attributes_object_answer(fake: FakeRucio) -> None:
    answer = {"SPSRC_STORAGE": True, "latitude": "37.19", "longitude": "-3.6", "site": "SPSRC"}
    fake.route("GET", "/rses/SPSRC_STORAGE/attr/", lambda seen: Reply(200, answer))
    assert client(fake).rse_attributes("SPSRC_STORAGE") == answer


def test_list_rses_reads_the_stream(fake: FakeRucio) -> None:
    lines = "".join(json.dumps({"rse": name, "availability": 7}) + "\n" for name in "AB")
    fake.route("GET", "/rses/", lambda seen: Reply(200, lines))
    assert client(fake).list_rses() == ["A", "B"]


def test_ping_needs_no_token(fake: FakeRucio) -> None:
    assert client(fake).ping() == {"version": "41.5.1"}
    assert "X-Rucio-Auth-Token" not in fake.calls("/ping")[0].headers
    assert fake.calls("/auth/userpass") == []


# -- secrets -----------------------------------------------------------------------------


def test_secrets_are_absent_from_reprs(fake: FakeRucio, tmp_path: Path) -> None:
    tokens = userpass(fake)
    tokens.token()
    rucio = client(fake, tokens)
    oidc_tokens = oidc(fake)
    for text in (repr(tokens), repr(rucio), repr(oidc_tokens),
                 repr(TokenFileTokens(tmp_path / "t"))):
        assert PASSWORD not in text and CLIENT_SECRET not in text
        assert TOKEN_PREFIX not in text


def test_secrets_are_absent_from_logs_and_errors(fake: FakeRucio,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake.files[PTF] = file_line(PTF, {"S": ["https://s/f"]})
    rucio = client(fake)
    rucio.list_replicas([PTF])
    fake.tokens.clear()
    rucio.list_replicas([PTF])  # 401 and renewal are logged
    fake.route("POST", "/replicas/list", lambda seen: rucio_error(
        500, "RucioException", f"echoing {seen.headers.get('X-Rucio-Auth-Token')}"))
    with pytest.raises(RucioUnavailable) as info:
        rucio.list_replicas([PTF])
    assert "<secret>" in str(info.value)  # a token echoed by the server is scrubbed
    for text in (caplog.text, str(info.value)):
        assert TOKEN_PREFIX not in text and PASSWORD not in text
    assert "renewing the token" in caplog.text


# -- settings ----------------------------------------------------------------------------


def test_client_from_settings_userpass(fake: FakeRucio) -> None:
    settings = RucioSettings(url=fake.url, auth="userpass", account="root",  # type: ignore[attr-defined]
                             username="rucio-rd-root", password=PASSWORD, timeout=3.0)
    rucio = client_from_settings(settings)
    assert isinstance(rucio.tokens, UserpassTokens) and rucio.timeout == 3.0
    assert rucio.tokens.token().startswith(TOKEN_PREFIX)


def test_client_from_settings_token_file_and_oidc(tmp_path: Path) -> None:
    rucio = client_from_settings(RucioSettings(auth="token_file",
                                               token_file=str(tmp_path / "t")))
    assert isinstance(rucio.tokens, TokenFileTokens) and rucio.account == "root"
    rucio = client_from_settings(RucioSettings(
        auth="oidc", oidc_token_url="https://iam.example/token", oidc_client_id="id",
        oidc_client_secret=CLIENT_SECRET))
    assert isinstance(rucio.tokens, OIDCClientCredentialsTokens)
    assert CLIENT_SECRET not in repr(rucio)
    if hasattr(RucioSettings, "oidc_scope"):
        rucio = client_from_settings(RucioSettings(
            auth="oidc", oidc_token_url="https://iam.example/token", oidc_client_id="id",
            oidc_client_secret=CLIENT_SECRET, oidc_scope="openid", oidc_audience="rucio"))
        assert (rucio.tokens.scope, rucio.tokens.audience) == ("openid", "rucio")


@pytest.mark.parametrize("settings, key", [
    (RucioSettings(auth="userpass", username="u", password=""), "password"),
    (RucioSettings(auth="userpass", username="", password="p"), "username"),
    (RucioSettings(auth="token_file"), "token_file"),
    (RucioSettings(auth="oidc", oidc_token_url="https://t", oidc_client_id="i"),
     "oidc_client_secret"),
])
def test_client_from_settings_names_the_missing_key(settings: RucioSettings, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"\[rucio\] {key} must be set"):
        client_from_settings(settings)


def test_connection_errors_do_not_leak_through_requests(fake: FakeRucio) -> None:
    # A transport error deep in requests still comes out as RucioUnavailable.
    class Broken(requests.Session):
        def request(self, *args: Any, **kw: Any) -> Any:  # type: ignore[override]
            raise requests.exceptions.ChunkedEncodingError("connection broken")

    rucio = client(fake, session=Broken())
    with pytest.raises(RucioUnavailable, match="ChunkedEncodingError"):
        rucio.list_replicas([PTF])


# --- credentials no HTTP header can carry (from the review) ---------------------------


@pytest.mark.parametrize("content", ["QQsecretA1\nQQsecretB2", "QQs\u00f6cret\u20ac"])
def test_token_file_with_characters_no_header_can_carry_is_refused_unquoted(
    tmp_path: Path, content: str
) -> None:
    path = tmp_path / "token"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(RucioAuthError) as caught:
        TokenFileTokens(path).token()
    assert "QQs" not in str(caught.value)


@pytest.mark.parametrize("password", ["secret\nsecond-line", "p\u00e4ssw\u00f6rd\u20ac"])
def test_password_no_header_can_carry_is_an_auth_error_not_a_crash(
    fake: FakeRucio, password: str
) -> None:
    tokens = UserpassTokens(fake.url, "root", "ddmlab", password, timeout=2)
    with pytest.raises(RucioAuthError) as caught:
        tokens.token()
    assert "second-line" not in str(caught.value)
    assert "ssw" not in str(caught.value)


def test_failed_token_fetch_is_remembered_briefly_so_waiters_fail_at_once(
    fake: FakeRucio,
) -> None:
    fake.route("GET", "/auth/userpass", lambda seen: Reply(200, b"", delay=3.0))
    tokens = UserpassTokens(fake.url, "root", "u", PASSWORD, timeout=0.5)
    with pytest.raises(RucioUnavailable):
        tokens.token()
    with pytest.raises(RucioUnavailable):
        tokens.token()
    assert len(fake.calls("/auth/userpass")) == 1  # the second call asked nobody


def test_failed_early_renewal_keeps_the_current_token_until_it_expires(fake: FakeRucio) -> None:
    clock = Clock()
    tokens = userpass(fake, clock)
    first = tokens.token()
    fake.route("GET", "/auth/userpass",
               lambda seen: rucio_error(500, "DatabaseException", "database down"))
    clock.now += 3600 - 300 + 5  # in the renewal window, still valid
    assert tokens.token() == first
    clock.now += 1  # within the back-off: no new attempt, still the valid token
    assert tokens.token() == first
    assert len(fake.calls("/auth/userpass")) == 2
    clock.now += 400  # expired, and renewal still failing
    with pytest.raises(RucioUnavailable):
        tokens.token()
