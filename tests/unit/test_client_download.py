"""The client's download: fallback over replicas, resume, checksum, token scope.

Against small local HTTP servers that behave as storage does and as it fails:
refusing the token, erring, cutting a transfer off, serving other bytes,
redirecting to another host.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rucio_rd.client.download import DownloadError, download, local_name
from rucio_rd.client.links import FileLinks, Replica
from rucio_rd.client.tokens import Token

CONTENT = bytes(range(256)) * 4096  # 1 MiB
ADLER = f"{zlib.adler32(CONTENT):08x}"
TOKEN = Token("secret-token-123", "a test")


class Storage(BaseHTTPRequestHandler):
    """Serves ``CONTENT`` at every path; the path's first part says how it misbehaves."""

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        server = self.server
        server.seen.append((self.path, dict(self.headers)))
        kind = self.path.strip("/").split("/")[0]
        if kind == "token" and self.headers.get("Authorization") != f"Bearer {TOKEN.value}":
            return self._status(401)
        if kind == "error":
            return self._status(503)
        if kind == "missing":
            return self._status(404)
        if kind == "redirect":
            self.send_response(302)
            self.send_header("Location", server.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        body = CONTENT
        if kind == "corrupt":
            body = CONTENT[:1000] + b"X" + CONTENT[1001:]
        start = 0
        asked = self.headers.get("Range")
        if asked and kind != "norange":
            start = int(asked.split("=")[1].rstrip("-"))
        if kind == "cut" and server.cuts > 0:
            # Promise everything, send a third, hang up.
            server.cuts -= 1
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            self.wfile.write(body[start:start + len(body) // 3])
            self.wfile.flush()
            self.close_connection = True
            return None
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])
        return None

    def _status(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


def serving(address: str) -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer((address, 0), Storage)
    server.seen, server.cuts, server.redirect_to = [], 0, ""
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture()
def storage() -> Iterator[ThreadingHTTPServer]:
    yield from serving("127.0.0.1")


@pytest.fixture()
def other_storage() -> Iterator[ThreadingHTTPServer]:
    """Another host: a token must not follow a redirect there."""
    yield from serving("127.0.0.2")


def url(server: ThreadingHTTPServer, path: str) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/{path}"


def replica(location: str, site: str = "SITE", adler32: str | None = ADLER,
            length: int | None = len(CONTENT)) -> Replica:
    return Replica(location, site, adler32, length)


def links(*replicas: Replica) -> FileLinks:
    return FileLinks("scope:dir/file.fits", tuple(replicas))


def fetch(tmp_path: Path, *replicas: Replica, **kwargs):
    reported: list[str] = []
    got = download(links(*replicas), tmp_path, kwargs.pop("token", TOKEN),
                   report=reported.append, backoff=0.01, **kwargs)
    return got, reported


def test_the_first_replica_that_works_delivers_a_verified_file(tmp_path, storage) -> None:
    got, reported = fetch(tmp_path, replica(url(storage, "token/file.fits")))
    assert got.path == tmp_path / "file.fits"
    assert got.path.read_bytes() == CONTENT
    assert (got.adler32, got.verified, got.size, reported) == (ADLER, True, len(CONTENT), [])
    assert not (tmp_path / "file.fits.part").exists()


def test_falls_back_past_unreachable_refused_erring_and_missing_replicas(
        tmp_path, storage) -> None:
    unreachable = replica("https://spsrc14.iaa.csic.es.invalid:18027/disk/file.fits", "SPSRC")
    got, reported = fetch(
        tmp_path, unreachable,
        replica(url(storage, "token/file.fits"), "UK"),
        replica(url(storage, "error/file.fits"), "ERR"),
        replica(url(storage, "missing/file.fits"), "GONE"),
        replica(url(storage, "plain/file.fits"), "AUS"),
        token=Token("not-the-right-one", "a test"))
    assert got.replica.site == "AUS"
    assert got.path.read_bytes() == CONTENT
    assert [line.split(":")[0] for line in reported] == ["SPSRC", "UK", "ERR", "GONE"]
    assert "no such host" in reported[0]
    assert "refused the token (HTTP 401" in reported[1]
    assert "server error (HTTP 503" in reported[2] and "after 3 tries" in reported[2]
    assert "no file (HTTP 404" in reported[3]
    assert [failure.status for failure in got.failures] == [None, 401, 503, 404]


def test_a_wrong_checksum_is_caught_and_the_next_replica_used(tmp_path, storage) -> None:
    got, reported = fetch(tmp_path, replica(url(storage, "corrupt/file.fits"), "BAD"),
                          replica(url(storage, "plain/file.fits"), "GOOD"))
    assert got.replica.site == "GOOD" and got.path.read_bytes() == CONTENT
    assert reported == [f"BAD: wrong checksum: adler32 "
                        f"{zlib.adler32(CONTENT[:1000] + b'X' + CONTENT[1001:]):08x}, "
                        f"Rucio says {ADLER} ({url(storage, 'corrupt/file.fits')})"]


def test_a_wrong_size_is_caught(tmp_path, storage) -> None:
    with pytest.raises(DownloadError, match="wrong size: 1,048,576 bytes, Rucio says 1,000"):
        fetch(tmp_path, replica(url(storage, "plain/file.fits"), length=1000))
    assert not list(tmp_path.iterdir())


def test_a_broken_transfer_resumes_where_it_stopped(tmp_path, storage) -> None:
    storage.cuts = 2
    got, reported = fetch(tmp_path, replica(url(storage, "cut/file.fits")))
    assert got.path.read_bytes() == CONTENT and reported == []
    ranges = [headers.get("Range") for _, headers in storage.seen]
    third = len(CONTENT) // 3
    assert ranges == [None, f"bytes={third}-", f"bytes={2 * third}-"]


def test_a_transfer_broken_at_one_site_resumes_at_the_next(tmp_path, storage,
                                                           other_storage) -> None:
    storage.cuts = 5
    got, reported = fetch(tmp_path, replica(url(storage, "cut/file.fits"), "FIRST"),
                          replica(url(other_storage, "plain/file.fits"), "SECOND"),
                          retries=0)
    assert got.replica.site == "SECOND" and got.path.read_bytes() == CONTENT
    assert "transfer" in reported[0]
    assert other_storage.seen[0][1].get("Range") == f"bytes={len(CONTENT) // 3}-"


def test_a_resumed_part_that_fails_the_checksum_is_fetched_again_whole(
        tmp_path, storage) -> None:
    (tmp_path / "file.fits.part").write_bytes(b"junk from an older run")
    got, reported = fetch(tmp_path, replica(url(storage, "plain/file.fits")))
    assert got.path.read_bytes() == CONTENT and reported == []
    assert [headers.get("Range") for _, headers in storage.seen] == ["bytes=22-", None]


def test_without_a_checksum_a_leftover_part_is_not_trusted(tmp_path, storage) -> None:
    (tmp_path / "file.fits.part").write_bytes(b"junk")
    got, _ = fetch(tmp_path, replica(url(storage, "plain/file.fits"), adler32=None))
    assert got.path.read_bytes() == CONTENT and got.verified is False
    assert storage.seen[0][1].get("Range") is None


def test_the_token_goes_to_the_replica_host_only_not_across_a_redirect(
        tmp_path, storage, other_storage) -> None:
    storage.redirect_to = url(other_storage, "plain/file.fits")
    got, _ = fetch(tmp_path, replica(url(storage, "redirect/file.fits")))
    assert got.path.read_bytes() == CONTENT
    assert storage.seen[0][1].get("Authorization") == f"Bearer {TOKEN.value}"
    assert "Authorization" not in other_storage.seen[0][1]


def test_the_token_never_goes_to_the_datalink_services_host(tmp_path, storage) -> None:
    here = FileLinks("scope:dir/file.fits", (replica(url(storage, "token/file.fits")),),
                     source=f"http://localhost:{storage.server_address[1] + 1}/dl/dlmeta")
    with pytest.raises(DownloadError, match="refused the token"):
        download(here, tmp_path, TOKEN, backoff=0.01)
    assert all("Authorization" not in headers for _, headers in storage.seen)


def test_the_token_never_goes_to_a_host_named_never(tmp_path, storage) -> None:
    with pytest.raises(DownloadError, match="refused the token"):
        fetch(tmp_path, replica(url(storage, "token/file.fits")),
              never=[url(storage, "rucio/rucio/dl/dlmeta")])
    assert all("Authorization" not in headers for _, headers in storage.seen)


def test_every_site_refusing_the_token_says_get_a_new_one(tmp_path, storage) -> None:
    with pytest.raises(DownloadError) as raised:
        fetch(tmp_path, replica(url(storage, "token/a.fits"), "A"),
              replica(url(storage, "token/b.fits"), "B"), token=Token("old", "$BEARER_TOKEN"))
    message = str(raised.value)
    assert message.splitlines()[0] == "no replica of scope:dir/file.fits could be downloaded:"
    assert "Every site refused the token from $BEARER_TOKEN" in message
    assert "old" not in message.replace("could", "")


def test_no_token_at_all_says_how_to_give_one(tmp_path, storage) -> None:
    with pytest.raises(DownloadError, match="The storage wants a bearer token"):
        fetch(tmp_path, replica(url(storage, "token/a.fits")), token=None)


def test_progress_reaches_the_whole_size(tmp_path, storage) -> None:
    seen: list[tuple[int, int | None]] = []
    fetch(tmp_path, replica(url(storage, "plain/file.fits")),
          progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (len(CONTENT), len(CONTENT))
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_no_replica_at_all_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(DownloadError, match="lists no replica: NotFoundFault: gone"):
        download(FileLinks("s:f", (), errors=("NotFoundFault: gone",)), tmp_path)


@pytest.mark.parametrize(("did", "name"), [
    ("scope:file.fits", "file.fits"), ("scope:a/b/c.fits", "c.fits"),
    ("scope:odd\x00name", "odd_name"), ("scope:.bashrc", "_bashrc")])
def test_local_names_stay_in_the_directory(did: str, name: str) -> None:
    assert local_name(did) == name


@pytest.mark.parametrize("did", ["scope:..", "scope:a/", "scope:."])
def test_a_did_naming_no_file_is_refused(did: str) -> None:
    with pytest.raises(ValueError, match="names no file"):
        local_name(did)
