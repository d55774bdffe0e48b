"""The astronomer's last mile against the whole stack: the notebook's file found by
cone search, its replicas from DataLink, a token from the real Rucio, the
download from the site's nginx (which asks Rucio about the token), a cutout
from AUSSRC's real SODA service (DaCHS's), and the quick-look PNG.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from astropy.io import fits

from rucio_rd import client
from rucio_rd.client.links import FileLinks
from rucio_rd.stack.demo import CONE_PATH, Stack
from rucio_rd.stack.seed import ASTRONOMER, DEMO_FILES

ERIDANUS = (53.75308, -24.93365)
RAL = "130.246.210.120"  # a UK client (Appleton, GB in GeoLite2 2018)
WALLABY, _, PTF = DEMO_FILES
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def token(stack: Stack) -> client.Token:
    return client.userpass_token(stack.rucio.url, ASTRONOMER, ASTRONOMER,
                                 stack.rucio.astronomer_password())


def notebook_links(stack: Stack, **params) -> FileLinks:
    """The notebook's steps: cone search, results[0], its access_url with the
    notebook's parameters."""
    results = client.search(stack.cone_url, *ERIDANUS, 1)
    assert results[0]["access_url"].endswith(f"?id={WALLABY.did}")
    return client.links(results[0]["access_url"], client_ip_address=RAL, **params)


def test_the_notebooks_file_falls_back_from_spsrc_and_lands_verified(
        stack: Stack, token, tmp_path) -> None:
    links = notebook_links(stack, must_include_soda=True)
    assert [replica.site for replica in links.replicas] == ["SPSRC", "AUSSRC"]
    said: list[str] = []
    got = client.download(links, tmp_path, token, report=said.append)
    assert [failure.replica.site for failure in got.failures] == ["SPSRC"]
    assert said == [str(got.failures[0])]
    assert said[0].startswith("SPSRC: unreachable: no such host spsrc14.iaa.csic.es")
    assert got.replica.site == "AUSSRC" and got.verified
    assert got.adler32 == WALLABY.adler32 == links.replicas[1].adler32
    assert got.path.read_bytes() == WALLABY.content
    with fits.open(got.path) as hdus:
        assert hdus[0].data.shape == (48, 128, 128)
        assert hdus[0].header["OBJECT"] == "Eridanus_full_image"


def test_without_must_include_soda_the_uk_replica_delivers(stack: Stack, token,
                                                           tmp_path) -> None:
    got = client.download(notebook_links(stack), tmp_path, token)
    assert (got.replica.site, got.failures) == ("UKSRC", ())
    assert f"{zlib.adler32(got.path.read_bytes()):08x}" == WALLABY.adler32


@pytest.fixture()
def corrupted_uk_copy(stack: Stack) -> Iterator[Path]:
    path = stack.storage.file_path("UKSRC_RAL_STORAGE", WALLABY.scope, WALLABY.name)
    original = path.read_bytes()
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0xFF  # one flipped byte: same size, other checksum
    path.write_bytes(bytes(damaged))
    yield path
    path.write_bytes(original)


def test_a_corrupted_replica_is_detected_and_skipped(stack: Stack, token, tmp_path,
                                                     corrupted_uk_copy) -> None:
    got = client.download(notebook_links(stack), tmp_path, token)
    reasons = [(failure.replica.site, failure.reason.split(":")[0])
               for failure in got.failures]
    assert reasons == [("UKSRC", "wrong checksum"), ("SPSRC", "unreachable")]
    assert got.replica.site == "AUSSRC" and got.path.read_bytes() == WALLABY.content


def test_without_a_token_the_storage_refuses_and_the_client_says_how_to_get_one(
        stack: Stack, tmp_path) -> None:
    with pytest.raises(client.DownloadError) as raised:
        client.download(notebook_links(stack), tmp_path, None)
    message = str(raised.value)
    assert "UKSRC: wants a token and none was given (HTTP 401" in message
    assert "The storage wants a bearer token" in message
    assert not list(tmp_path.iterdir())


def test_a_token_rucio_does_not_know_is_refused_by_every_site(stack: Stack,
                                                              tmp_path) -> None:
    forged = client.Token("root-rucio-rd-root-20261126-forged", "a test")
    with pytest.raises(client.DownloadError) as raised:
        client.download(notebook_links(stack), tmp_path, forged)
    message = str(raised.value)
    assert "UKSRC: refused the token (HTTP 401" in message, message
    assert "AUSSRC: refused the token (HTTP 401" in message
    assert "forged" not in message


def test_rucio_refusing_the_password_is_said_clearly(stack: Stack) -> None:
    with pytest.raises(client.TokenError) as raised:
        client.userpass_token(stack.rucio.url, ASTRONOMER, ASTRONOMER, "not-the-password")
    message = str(raised.value)
    assert "X-Rucio-Auth-Token missing" in message and "CannotAuthenticate" in message
    assert "check the account, username and password" in message
    assert "not-the-password" not in message


def test_a_rucio_without_oidc_gives_a_message_not_a_keyerror(stack: Stack) -> None:
    with pytest.raises(client.TokenError) as raised:
        client.oidc_token(stack.rucio.url, ASTRONOMER, ask=lambda prompt: "x",
                          show=lambda text: None)
    assert "gave no OIDC login URL" in str(raised.value)
    assert "use a token file, $BEARER_TOKEN or a userpass login" in str(raised.value)


def test_a_cutout_through_the_real_soda_service_is_a_smaller_valid_fits(
        stack: Stack, token, tmp_path) -> None:
    links = notebook_links(stack, must_include_soda=True)
    made = client.cutout(links, client.soda_parameters(circle=(*ERIDANUS, 0.05),
                                                       band=(0.220, 0.225)),
                         tmp_path, token, first_site="AUSSRC")
    assert made.endpoint.site == "AUSSRC" and made.failures == ()
    assert made.endpoint.soda_id == f"ivo://aussrc.example/~?{WALLABY.scope}/{WALLABY.name}"
    with fits.open(made.path) as hdus:
        data = hdus[0].data
        assert 0 < data.size < 48 * 128 * 128 / 10
        assert data.shape[0] < 48 and data.shape[1] < 128
        assert hdus[0].header["CTYPE1"] == "RA---SIN"
    assert made.size < WALLABY.bytes


def test_a_cutout_falls_back_from_spsrcs_unreachable_soda_to_aussrc(
        stack: Stack, token, tmp_path) -> None:
    links = notebook_links(stack, must_include_soda=True)
    said: list[str] = []
    made = client.cutout(links, client.soda_parameters(circle=(*ERIDANUS, 0.05)), tmp_path,
                         token, first_site="SPSRC", report=said.append)
    assert made.endpoint.site == "AUSSRC"
    assert len(said) == 1 and said[0].startswith("SODA at SPSRC: unreachable")


def test_the_soda_service_wants_the_token_too(stack: Stack, tmp_path) -> None:
    links = notebook_links(stack, must_include_soda=True)
    with pytest.raises(client.CutoutError, match="SODA at AUSSRC: HTTP 401"):
        client.cutout(links, client.soda_parameters(circle=(*ERIDANUS, 0.05)), tmp_path,
                      None, first_site="AUSSRC")


class Recorder(BaseHTTPRequestHandler):
    """A reverse proxy in front of DaCHS that notes every request's headers."""

    def log_message(self, *args) -> None:
        pass

    def _forward(self, method: str) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append((method, self.path, dict(self.headers)))
        upstream = requests.request(
            method, self.server.target + self.path, data=body or None, timeout=30,
            headers={k: v for k, v in self.headers.items()
                     if k.lower() not in ("host", "content-length")})
        payload = upstream.content
        self.send_response(upstream.status_code)
        self.send_header("Content-Type", upstream.headers.get("Content-Type", "text/plain"))
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:  # noqa: N802
        self._forward("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._forward("POST")


def test_the_command_does_the_notebooks_flow_and_no_token_reaches_dachs(
        stack: Stack, tmp_path) -> None:
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    proxy.seen, proxy.target = [], stack.dachs.server_url
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    front = f"http://127.0.0.1:{proxy.server_address[1]}"
    password = tmp_path / "password"
    password.write_text(stack.rucio.astronomer_password())
    logged_before = len(stack.storage.log_lines())
    try:
        result = subprocess.run(
            [sys.executable, "-m", "rucio_rd.client", "--cone", front + CONE_PATH,
             "--pos", *map(str, ERIDANUS), "--radius", "1", "--client-ip", RAL,
             "--must-include-soda", "--rucio", stack.rucio.url, "--username", ASTRONOMER,
             "--password-file", str(password), "--circle", *map(str, ERIDANUS), "0.05",
             "--png", "-o", str(tmp_path / "out")],
            capture_output=True, encoding="utf-8", cwd=REPO, timeout=300)
        # The DataLink request went to DaCHS directly (the access_url); ask it through
        # the proxy as well, with the token in the environment.
        again = subprocess.run(
            [sys.executable, "-m", "rucio_rd.client", "--links",
             f"{front}/rucio/rucio/dl/dlmeta?ID={WALLABY.did}", "--client-ip", RAL,
             "-o", str(tmp_path / "again")],
            capture_output=True, encoding="utf-8", cwd=REPO, timeout=300,
            env={"PATH": "/usr/bin:/bin", "BEARER_TOKEN": client.userpass_token(
                stack.rucio.url, ASTRONOMER, ASTRONOMER, password.read_text()).value})
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert result.returncode == 0, result.stderr
    assert "failed: SPSRC: unreachable" in result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith(f"(3,150,720 bytes from AUSSRC, adler32 {WALLABY.adler32} "
                             "verified)")
    assert "cut out by SODA at AUSSRC" in lines[1]
    png = Path(lines[2])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert again.returncode == 0, again.stderr
    assert "token: from $BEARER_TOKEN" in again.stderr
    assert "from UKSRC" in again.stdout
    paths = [path for _, path, _ in proxy.seen]
    assert any(path.startswith(CONE_PATH) for path in paths)
    assert any(path.startswith("/rucio/rucio/dl/dlmeta") for path in paths)
    for _, path, headers in proxy.seen:
        assert not {"authorization", "x-rucio-auth-token"} & {h.lower() for h in headers}, path
    # This run's storage requests: each with the token, for the file and the cutout.
    logged = stack.storage.log_lines()[logged_before:]
    assert logged and all(line.endswith("token=given") for line in logged), logged
    assert any("/soda/sync?ID=" in line for line in logged)
    assert any(f"/disk/{WALLABY.scope}/" in line for line in logged)
