"""Where the client's token comes from, and what it says when there is none.

The Rucio answers here are the shapes a real Rucio gives (the integration
tests ask the real one); a login without the token header is the notebook's
``KeyError: 'x-rucio-auth-token'``.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rucio_rd.client.tokens import (
    Token,
    TokenError,
    environment_token,
    file_token,
    oidc_token,
    userpass_token,
)


def test_a_token_file_is_read_and_its_line_end_dropped(tmp_path) -> None:
    path = tmp_path / "token"
    path.write_text("abc.def-ghi\n")
    token = file_token(path)
    assert (token.value, token.source) == ("abc.def-ghi", f"the token file {path}")
    assert token.header == {"Authorization": "Bearer abc.def-ghi"}
    assert "abc" not in repr(token)


@pytest.mark.parametrize(("content", "says"), [
    (b"", "holds no token (it is empty)"),
    (b"two words", "does not hold a bearer token"),
    (b"\xff\xfe", "is not text"),
])
def test_a_bad_token_file_says_what_is_wrong(tmp_path, content: bytes, says: str) -> None:
    path = tmp_path / "token"
    path.write_bytes(content)
    with pytest.raises(TokenError, match=re.escape(says)):
        file_token(path)


def test_a_missing_token_file_is_named(tmp_path) -> None:
    with pytest.raises(TokenError, match=f"cannot read the token file {tmp_path}/nope"):
        file_token(tmp_path / "nope")


def test_the_environment_gives_bearer_token_first_then_rucio_then_a_file(tmp_path) -> None:
    path = tmp_path / "bt"
    path.write_text("from-file")
    assert environment_token({}) is None
    assert environment_token({"BEARER_TOKEN_FILE": str(path)}).value == "from-file"
    assert environment_token({"RUCIO_AUTH_TOKEN": "r", "BEARER_TOKEN_FILE": str(path)}
                             ).source == "$RUCIO_AUTH_TOKEN"
    assert environment_token({"BEARER_TOKEN": "b", "RUCIO_AUTH_TOKEN": "r"}).value == "b"


class Rucio(BaseHTTPRequestHandler):
    """Rucio's auth endpoints as they answer in the cases the client must explain."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        self.server.seen.append((self.path, dict(self.headers)))
        mode = self.server.mode
        if self.path == "/auth/userpass":
            if mode == "good" and self.headers.get("X-Rucio-Password") == "right":
                return self._answer(200, {"X-Rucio-Auth-Token": "root-abc"})
            return self._answer(401, {"ExceptionClass": "CannotAuthenticate",
                                      "ExceptionMessage": "Cannot authenticate to account "
                                                          "root with given credentials"})
        if self.path == "/auth/oidc":
            if mode == "no-oidc":
                return self._answer(401, {}, {"ExceptionClass": "CannotAuthenticate",
                                              "ExceptionMessage": "no OIDC client"})
            return self._answer(200, {"X-Rucio-OIDC-Auth-URL": "https://rucio/auth/login?x"})
        if self.path.startswith("/auth/oidc_redirect?"):
            if mode == "keyerror":  # the notebook's case: 200 and no token header
                return self._answer(200, {}, None, b"<html>Please close this window</html>")
            return self._answer(200, {"X-Rucio-Auth-Token": "oidc-abc"})
        return self._answer(404, {})

    def _answer(self, status, headers, body_json=None, body=b"") -> None:
        if body_json is not None:
            body = json.dumps(body_json).encode()
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def rucio() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Rucio)
    server.seen, server.mode = [], "good"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()


def test_userpass_gives_rucios_token(rucio) -> None:
    token = userpass_token(rucio.url, "root", "ddmlab", "right")
    assert token == Token("root-abc", f"Rucio's userpass login at {rucio.url}")
    headers = rucio.seen[0][1]
    assert (headers["X-Rucio-Account"], headers["X-Rucio-Username"]) == ("root", "ddmlab")


def test_a_rejected_userpass_login_quotes_rucio_and_says_what_to_check(rucio) -> None:
    with pytest.raises(TokenError) as raised:
        userpass_token(rucio.url, "root", "ddmlab", "wrong")
    message = str(raised.value)
    assert "X-Rucio-Auth-Token missing" in message
    assert "HTTP 401 CannotAuthenticate: Cannot authenticate to account root" in message
    assert message.endswith("check the account, username and password")
    assert "wrong" not in message


def test_the_oidc_flow_asks_for_the_code_and_fetches_the_token(rucio) -> None:
    shown: list[str] = []
    token = oidc_token(rucio.url, "root", ask=lambda prompt: "code=abc&state=x",
                       show=shown.append)
    assert token.value == "oidc-abc"
    assert shown == ["Log in at https://rucio/auth/login?x and paste the code it shows:"]
    assert rucio.seen[1][0] == "/auth/oidc_redirect?code=abc&state=x"
    assert rucio.seen[1][1]["X-Rucio-Client-Fetch-Token"] == "True"


def test_the_notebooks_keyerror_becomes_a_message_with_what_came_back(rucio) -> None:
    rucio.mode = "keyerror"
    with pytest.raises(TokenError) as raised:
        oidc_token(rucio.url, ask=lambda prompt: "abc", show=lambda text: None)
    message = str(raised.value)
    assert "gave no token for that code (X-Rucio-Auth-Token missing): HTTP 200" in message
    assert "Please close this window" in message
    assert "log in again and paste the new code at once" in message


def test_a_rucio_without_oidc_says_to_use_another_login(rucio) -> None:
    rucio.mode = "no-oidc"
    with pytest.raises(TokenError, match="HTTP 401 CannotAuthenticate: no OIDC client; this "
                                         "Rucio may not offer OIDC logins"):
        oidc_token(rucio.url, ask=lambda prompt: "abc", show=lambda text: None)


def test_an_unreachable_rucio_is_named() -> None:
    with pytest.raises(TokenError, match="cannot reach Rucio at http://127.0.0.1:9/auth/userpass"):
        userpass_token("http://127.0.0.1:9", "root", "u", "p")


@pytest.mark.parametrize(("url", "never", "allow_http", "sent"), [
    ("https://storage.example/f", [], False, True),
    ("http://storage.example/f", [], False, False),  # cleartext to another machine
    ("http://storage.example/f", [], True, True),
    ("http://127.0.0.2:18400/f", [], False, True),  # this machine
    ("https://dl.example:8443/f", ["https://dl.example/rucio/dl"], False, False),
    ("http://127.0.0.1:9/f", ["http://localhost:8080/dl"], False, False),
    ("http://[::1]:9/f", ["http://localhost:8080/dl"], False, False),
    ("http://127.0.0.2:9/f", ["http://localhost:8080/dl"], False, True),
    ("https://DL.example./f", ["https://dl.example/"], False, False),
    ("ftp://storage.example/f", [], True, False),
    ("https:///f", [], False, False),
])
def test_where_a_token_may_go(url, never, allow_http, sent) -> None:
    from rucio_rd.client.tokens import sends_token

    assert sends_token(url, never, allow_http) is sent


def test_a_token_that_cannot_be_a_header_is_refused_when_made() -> None:
    with pytest.raises(TokenError, match="does not hold a bearer token"):
        Token("abc\n def", "a notebook")
    assert Token("abc\n", "a notebook").value == "abc"


def test_an_oidc_url_without_a_query_is_taken_as_it_is(rucio) -> None:
    token = oidc_token(rucio.url, ask=lambda prompt: "https://rucio/auth/oidc_code",
                       show=lambda text: None)
    assert token.value == "oidc-abc"
    assert rucio.seen[-1][0] == "/auth/oidc_redirect?https://rucio/auth/oidc_code"


def test_no_terminal_for_the_oidc_code_is_a_message(rucio) -> None:
    def closed(prompt):
        raise EOFError

    with pytest.raises(TokenError, match="no code was given"):
        oidc_token(rucio.url, ask=closed, show=lambda text: None)
