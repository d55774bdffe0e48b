"""Download one file from the first replica that delivers it intact.

The replicas come in the DataLink service's order (the chosen one first).  For
each: GET it with the bearer token (sent to that replica's own host only, never
to a host named in ``never`` such as the DataLink service's), following
redirects without the token when they leave that host; retry a broken transfer
and resume it where it stopped (``Range``); check the size and Rucio's Adler-32
checksum; on any failure (unreachable, 401/403, 404, 5xx, wrong size or
checksum) say it in one line and go on to the next replica.  The file is
written as ``NAME.part`` and renamed only once it is verified.
"""

from __future__ import annotations

import time
import urllib.parse
import zlib
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import requests

from rucio_rd.client.links import FileLinks, Replica, origin
from rucio_rd.client.tokens import Token, sends_token

__all__ = ["DownloadError", "Downloaded", "Failure", "download", "local_name"]

CHUNK = 256 * 1024
TIMEOUT = (5.0, 30.0)  # (connect, between two reads) seconds
MAX_REDIRECTS = 5
REFUSED = (401, 403)

Progress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class Failure:
    """Why one replica did not deliver the file."""

    replica: Replica
    reason: str
    status: int | None = None

    def __str__(self) -> str:
        return f"{self.replica.where}: {self.reason} ({self.replica.url})"


@dataclass(frozen=True)
class Downloaded:
    """The file on disk, the replica it came from and the replicas that failed before."""

    path: Path
    replica: Replica
    size: int
    adler32: str
    verified: bool
    failures: tuple[Failure, ...] = ()


class DownloadError(Exception):
    """No replica delivered the file; ``failures`` says why, one per replica."""

    def __init__(self, did: str, failures: tuple[Failure, ...], advice: str = "") -> None:
        self.did = did
        self.failures = failures
        lines = [f"no replica of {did} could be downloaded:"]
        lines += [f"  {failure}" for failure in failures]
        if advice:
            lines.append(advice)
        super().__init__("\n".join(lines))


class _Failed(Exception):
    def __init__(self, reason: str, retry: bool = False, status: int | None = None,
                 restart: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.retry, self.status, self.restart = reason, retry, status, restart


def local_name(did: str) -> str:
    """The file name a DID is saved under: its name's last path component."""
    name = did.split(":", 1)[-1].rsplit("/", 1)[-1].strip()
    cleaned = "".join(char if char.isprintable() and char not in "\\\x00" else "_"
                      for char in name)
    if cleaned in ("", ".", ".."):
        raise ValueError(f"the DID {did!r} names no file")
    # Not a hidden file (.bashrc): the name is the data lake's, the directory the user's.
    return "_" + cleaned[1:] if cleaned.startswith(".") else cleaned


def _adler32_of(path: Path) -> int:
    value = 1
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            value = zlib.adler32(chunk, value)
    return value


def _short(response: requests.Response) -> str:
    reason = response.reason or ""
    return f"HTTP {response.status_code}" + (f" {reason}" if reason else "")


class _Transfer:
    """One replica's GETs (redirects, resume) into the part file."""

    def __init__(self, session: requests.Session, token: Token | None,
                 never: Collection[str], timeout: tuple[float, float],
                 progress: Progress | None, allow_http: bool = False) -> None:
        self.session, self.token, self.never = session, token, tuple(never)
        self.timeout, self.progress, self.allow_http = timeout, progress, allow_http

    def headers_for(self, url: str, allowed: tuple[str, str, int] | None) -> dict[str, str]:
        where = origin(url)
        if self.token is None or where is None or where != allowed or not sends_token(
                url, self.never, self.allow_http):
            return {}
        return dict(self.token.header)

    def open(self, url: str, offset: int) -> requests.Response:
        allowed = origin(url)
        for _ in range(MAX_REDIRECTS + 1):
            headers = self.headers_for(url, allowed)
            if offset:
                headers["Range"] = f"bytes={offset}-"
            try:
                response = self.session.get(url, headers=headers, stream=True,
                                            timeout=self.timeout, allow_redirects=False)
            except requests.exceptions.ConnectionError as exc:
                cause = str(exc.__context__ or exc)
                if "Name or service not known" in cause or "nodename nor servname" in cause:
                    raise _Failed(f"unreachable: no such host {urllib.parse.urlsplit(url).hostname}"
                                  ) from None
                raise _Failed(f"unreachable: {type(exc).__name__}", retry=True) from None
            except requests.exceptions.ConnectTimeout:
                raise _Failed(f"no connection within {self.timeout[0]:g} s",
                              retry=True) from None
            except requests.exceptions.Timeout:
                raise _Failed(f"no answer within {self.timeout[1]:g} s", retry=True) from None
            except requests.exceptions.SSLError as exc:
                raise _Failed(f"TLS failed: {exc.__context__ or exc}") from None
            except requests.RequestException as exc:
                raise _Failed(f"request failed: {type(exc).__name__}: {exc}") from None
            if response.is_redirect and response.headers.get("Location"):
                url = urllib.parse.urljoin(url, response.headers["Location"])
                response.close()
                continue
            return response
        raise _Failed(f"more than {MAX_REDIRECTS} redirects")

    def fetch(self, replica: Replica, part: Path) -> None:
        offset = part.stat().st_size if part.exists() else 0
        if replica.length is not None and offset > replica.length:
            part.unlink()
            offset = 0
        response = self.open(replica.url, offset)
        with response:
            status = response.status_code
            if status in REFUSED:
                said = ("refused the token" if self.token is not None
                        else "wants a token and none was given")
                raise _Failed(f"{said} ({_short(response)})", status=status)
            if status == 416 and offset and offset == replica.length:
                return  # the part file is complete already: verified below
            if status == 416:
                raise _Failed(f"could not resume ({_short(response)})", retry=True,
                              restart=True, status=status)
            if status >= 500:
                raise _Failed(f"server error ({_short(response)})", retry=True, status=status)
            if status not in (200, 206):
                raise _Failed(f"no file ({_short(response)})", status=status)
            if status == 206:
                start = _range_start(response.headers.get("Content-Range", ""))
                if start != offset:
                    raise _Failed("answered another range than asked", retry=True,
                                  restart=True)
            else:
                offset = 0
            total = _total(response, offset, replica.length)
            mode = "ab" if offset else "wb"
            done = offset
            try:
                with part.open(mode) as stream:
                    for chunk in response.iter_content(CHUNK):
                        stream.write(chunk)
                        done += len(chunk)
                        if self.progress is not None:
                            self.progress(done, total)
            except (requests.RequestException, ConnectionError) as exc:
                raise _Failed(f"transfer broke after {done:,} bytes ({type(exc).__name__})",
                              retry=True) from None
            if total is not None and done < total:
                raise _Failed(f"transfer ended after {done:,} of {total:,} bytes", retry=True)


def _range_start(content_range: str) -> int | None:
    try:
        unit, _, rest = content_range.partition(" ")
        return int(rest.split("-", 1)[0]) if unit == "bytes" else None
    except ValueError:
        return None


def _total(response: requests.Response, offset: int, expected: int | None) -> int | None:
    length = response.headers.get("Content-Length")
    if length and length.isdigit() and "Content-Encoding" not in response.headers:
        return offset + int(length)
    return expected


def download(links: FileLinks, directory: str | Path = ".", token: Token | None = None, *,
             session: requests.Session | None = None, progress: Progress | None = None,
             report: Callable[[str], None] | None = None, retries: int = 2,
             backoff: float = 0.5, timeout: tuple[float, float] = TIMEOUT,
             never: Collection[str] = (), allow_http: bool = False) -> Downloaded:
    """Download ``links``' file into ``directory`` from the first replica that works.

    The token goes to the host of the replica being tried, over https (or http
    to this machine; anywhere with ``allow_http``), and never to the host of
    the DataLink service the links came from or of a URL in ``never`` (the
    cone search's, say), even if a replica pointed there.  ``report`` gets one
    line per failed replica as it fails.  Raises :class:`DownloadError` when
    none worked.
    """
    if not links.replicas:
        raise DownloadError(links.did, (), "the DataLink answer lists no replica"
                            + (": " + "; ".join(links.errors) if links.errors else ""))
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / local_name(links.did)
    part = path.with_name(path.name + ".part")
    barred = [*never, *([links.source] if links.source else [])]
    transfer = _Transfer(session or requests.Session(), token, barred, timeout, progress,
                         allow_http)
    failures: list[Failure] = []
    checksums = {replica.adler32.lower() for replica in links.replicas if replica.adler32}
    for replica in links.replicas:
        # A part file left by another replica or an earlier run is resumed only
        # where a checksum will judge the whole; if that fails, the replica gets
        # a second chance from the start before it is blamed.
        if part.exists() and not checksums:
            part.unlink()
        while True:
            resumed = part.exists()
            failure = _try_replica(transfer, replica, part, retries, backoff)
            if failure is None:
                size = part.stat().st_size
                checksum = f"{_adler32_of(part):08x}"
                failure = _verify(replica, size, checksum)
                if failure is None:
                    part.replace(path)
                    return Downloaded(path, replica, size, checksum,
                                      replica.adler32 is not None, tuple(failures))
                part.unlink()
                if resumed:
                    continue
            break
        failures.append(failure)
        if report is not None:
            report(str(failure))
    if part.exists():
        part.unlink()
    raise DownloadError(links.did, tuple(failures), _advice(failures, token))


def _try_replica(transfer: _Transfer, replica: Replica, part: Path, retries: int,
                 backoff: float) -> Failure | None:
    attempt = 0
    while True:
        try:
            transfer.fetch(replica, part)
            return None
        except _Failed as failed:
            if failed.restart and part.exists():
                part.unlink()
            if not failed.retry or attempt >= retries:
                tries = f" (after {attempt + 1} tries)" if attempt else ""
                return Failure(replica, failed.reason + tries, failed.status)
            attempt += 1
            time.sleep(backoff * attempt)


def _verify(replica: Replica, size: int, checksum: str) -> Failure | None:
    if replica.length is not None and size != replica.length:
        return Failure(replica, f"wrong size: {size:,} bytes, Rucio says {replica.length:,}")
    if replica.adler32 is not None and checksum != replica.adler32.lower().rjust(8, "0"):
        return Failure(replica, f"wrong checksum: adler32 {checksum}, Rucio says "
                                f"{replica.adler32}")
    return None


def _advice(failures: list[Failure], token: Token | None) -> str:
    refused = [failure for failure in failures if failure.status in REFUSED]
    if refused and token is None:
        return ("The storage wants a bearer token: give one (--token-file, $BEARER_TOKEN, "
                "--rucio with --username, or --oidc).")
    if refused and all(failure.status is not None for failure in failures) and \
            len(refused) == len(failures):
        return (f"Every site refused the token from {token.source}: it may have expired or "
                "belong to another Rucio; get a new one.")
    if refused:
        return (f"{len(refused)} site(s) refused the token from {token.source}: it may have "
                "expired; get a new one.")
    return ""
