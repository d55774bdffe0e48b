"""The demo's storage: real FITS files behind Debian's nginx, with Rucio's tokens.

Every demo file is a real FITS file made here, the same bytes on every run (a
seeded generator, no dates in the headers): the WALLABY cubes are small HI
cubes (48 channels of 128 x 128 pixels, 3 MB) with a SIN projection and a
frequency axis over their published band, PTF10tce an image, the synthetic
files small images.  Rucio registers each replica with the file's real size
and Adler-32, so a download can be checked against the DataLink answer.

The UK and Australian sites serve their replicas from loopback addresses of
their own (127.0.0.2, 127.0.0.3), each through an nginx ``server`` that lets
a GET through only with a bearer token Rucio accepts: ``auth_request`` asks
Rucio's ``GET /auth/validate`` with the token, as SRCNet storage checks
Rucio-issued tokens.  SPSRC keeps the notebook's address, which is not
reachable from here: a client must fall back from it.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import pwd
import shutil
import signal
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["LOCAL_SITES", "StorageServer", "fits_content", "replica_path"]

NGINX = "/usr/sbin/nginx"
WORKER_USER = "www-data"  # the nginx workers' user (and group); the files are world-readable


@dataclass(frozen=True)
class LocalSite:
    """A demo site whose storage this machine serves: its RSE and loopback address."""

    rse: str
    site: str
    address: str
    prefix: str = "/disk"


LOCAL_SITES: tuple[LocalSite, ...] = (
    LocalSite("UKSRC_RAL_STORAGE", "UKSRC", "127.0.0.2"),
    LocalSite("AUSSRC_STORAGE", "AUSSRC", "127.0.0.3"),
)


def replica_path(prefix: str, scope: str, name: str) -> str:
    """Rucio's deterministic path of a file below an RSE's prefix (its default
    ``lfn2pfn``: two levels of the MD5 of ``scope:name``)."""
    digest = hashlib.md5(f"{scope}:{name}".encode()).hexdigest()  # noqa: S324 - Rucio's
    return f"{prefix.rstrip('/')}/{scope}/{digest[0:2]}/{digest[2:4]}/{name}"


# -- the files ---------------------------------------------------------------------------

HI_REST_HZ = 1.420405751e9
CUBE_SHAPE = (48, 128, 128)  # channels, y, x
IMAGE_SIDE = 256
SYNTHETIC_SIDE = 32


def _sources(rng: Any, count: int, side: int) -> list[tuple[float, float, float, float]]:
    """(x, y, width, peak) of ``count`` Gaussian sources on a ``side``-pixel square."""
    return [(rng.uniform(0.2, 0.8) * side, rng.uniform(0.2, 0.8) * side,
             rng.uniform(1.5, side / 12), rng.uniform(0.5, 1.0)) for _ in range(count)]


def _sky(rng: Any, side: int, count: int, noise: float) -> Any:
    import numpy as np

    y, x = np.mgrid[0:side, 0:side]
    image = rng.normal(0.0, noise, (side, side))
    for cx, cy, width, peak in _sources(rng, count, side):
        image += peak * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * width ** 2))
    return image


def _celestial(header: Any, ra: float, dec: float, side: int, pixel_deg: float,
               projection: str) -> None:
    header["CTYPE1"], header["CTYPE2"] = f"RA---{projection}", f"DEC--{projection}"
    header["CRVAL1"], header["CRVAL2"] = ra, dec
    header["CRPIX1"] = header["CRPIX2"] = (side + 1) / 2
    header["CDELT1"], header["CDELT2"] = -pixel_deg, pixel_deg
    header["CUNIT1"] = header["CUNIT2"] = "deg"
    header["RADESYS"], header["EQUINOX"] = "ICRS", 2000.0


@functools.cache
def fits_content(scope: str, name: str, ra: float, dec: float, obs_id: str,
                 kind: str = "image", fov_deg: float | None = None,
                 band_m: tuple[float, float] | None = None) -> bytes:
    """The bytes of a demo file: a ``cube`` (an HI cube over ``band_m``), an
    ``image``, or a ``small`` image; the same bytes for the same arguments."""
    import numpy as np
    from astropy.io import fits

    rng = np.random.default_rng(zlib.crc32(f"{scope}:{name}".encode()))
    header = fits.Header()
    if kind == "cube":
        channels, side, _ = CUBE_SHAPE
        low_hz, high_hz = (299_792_458.0 / band_m[1], 299_792_458.0 / band_m[0])
        frequencies = np.linspace(low_hz, high_hz, channels)
        line = rng.uniform(0.3, 0.7) * (high_hz - low_hz) + low_hz
        profile = np.exp(-((frequencies - line) ** 2) / (2 * (4e6) ** 2))
        sky = _sky(rng, side, 6, 0.0)
        data = (profile[:, None, None] * sky[None, :, :] * 0.02
                + rng.normal(0.0, 0.0016, (channels, side, side)))
        _celestial(header, ra, dec, side, (fov_deg or 0.25) / side, "SIN")
        header["CTYPE3"], header["CUNIT3"] = "FREQ", "Hz"
        header["CRVAL3"], header["CRPIX3"] = low_hz, 1.0
        header["CDELT3"] = (high_hz - low_hz) / (channels - 1)
        header["SPECSYS"], header["RESTFRQ"] = "BARYCENT", HI_REST_HZ
        header["BUNIT"], header["TELESCOP"] = "Jy/beam", "ASKAP"
    else:
        side = IMAGE_SIDE if kind == "image" else SYNTHETIC_SIDE
        data = _sky(rng, side, 12 if kind == "image" else 2, 0.02) * 1000 + 200
        _celestial(header, ra, dec, side, (fov_deg or side / 3600) / side, "TAN")
        header["BUNIT"] = "adu"
    header["OBJECT"] = obs_id
    header["ORIGIN"] = "rucio_rd demo (generated)"
    hdu = fits.PrimaryHDU(data.astype(np.float32), header=header)
    buffer = io.BytesIO()
    hdu.writeto(buffer)
    return buffer.getvalue()


# -- the server --------------------------------------------------------------------------

_CONFIG = """\
# written by rucio_rd.stack.storage: the demo sites' storage
user {worker} {worker};
worker_processes 1;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log notice;
events {{ worker_connections 512; }}
http {{
    types {{ application/fits fits; image/png png; text/plain txt log; }}
    default_type application/octet-stream;
    sendfile on;
    server_tokens off;
    # What is logged: never the Authorization header or the token.
    log_format storage '$server_addr $remote_addr "$request" $status $body_bytes_sent '
                       'token=$token_state';
    access_log {workdir}/access.log storage;
    client_body_temp_path {workdir}/tmp/body;
    proxy_temp_path {workdir}/tmp/proxy;
    fastcgi_temp_path {workdir}/tmp/fastcgi;
    uwsgi_temp_path {workdir}/tmp/uwsgi;
    scgi_temp_path {workdir}/tmp/scgi;
    map $http_authorization $bearer_token {{
        "~*^Bearer\\s+(?<token>\\S+)$" $token;
        default "";
    }}
    map $bearer_token $token_state {{ "" none; default given; }}
{servers}
}}
"""

_SERVER = """\
    server {{
        # {site}'s storage ({rse})
        listen {address}:{port};
        root {root};
        location / {{ return 404; }}
        location {prefix}/ {{
            auth_request /_rucio_validate;
            error_page 401 = @refused;
            error_page 500 = @unchecked;
        }}
        location @unchecked {{
            add_header Retry-After 30 always;
            return 503 "{site} storage: the token could not be checked with Rucio now\n";
        }}
        location @refused {{
            add_header WWW-Authenticate 'Bearer realm="{site} storage"' always;
            return 401 "{site} storage: a bearer token that Rucio accepts is required\\n";
        }}
{soda}        location = /_rucio_validate {{
            internal;
            if ($bearer_token = "") {{ return 401; }}
            proxy_pass {rucio_url}/auth/validate;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header Authorization "";
            proxy_set_header X-Rucio-Auth-Token $bearer_token;
            proxy_set_header Accept "application/octet-stream";
            proxy_connect_timeout 5s;
            proxy_read_timeout 10s;
            # Rucio 41 answers a token it does not know with 500 CannotAuthenticate.
            proxy_intercept_errors on;
            error_page 500 = @rucio_said;
        }}
        location @rucio_said {{
            if ($upstream_http_exceptionclass = "CannotAuthenticate") {{ return 401; }}
            return 503;
        }}
    }}
"""


_SODA = """\
        # {site}'s SODA service (a DaCHS of its own), behind the same token check
        location = /soda/sync {{
            auth_request /_rucio_validate;
            error_page 401 = @refused;
            error_page 500 = @unchecked;
            proxy_set_header Authorization "";  # checked here; DaCHS needs no token
            proxy_pass {sync};
            proxy_read_timeout 120s;
        }}
        location /soda/async {{
            auth_request /_rucio_validate;
            error_page 401 = @refused;
            error_page 500 = @unchecked;
            proxy_set_header Authorization "";
            proxy_pass {async_};
        }}
"""


class StorageServer:
    """nginx serving the local sites' replicas, each on its loopback address."""

    def __init__(self, workdir: Path, files_root: Path, port: int, rucio_url: str,
                 sites: Iterable[LocalSite] = LOCAL_SITES,
                 soda: Mapping[str, tuple[str, str]] | None = None) -> None:
        """``soda``: site name -> the (sync, async) endpoints of its SODA service,
        which this server passes ``/soda/sync`` and ``/soda/async`` on to."""
        self.soda = dict(soda or {})
        self.workdir = Path(workdir)
        self.files_root = Path(files_root)
        self.port = port
        self.rucio_url = rucio_url.rstrip("/")
        self.sites = tuple(sites)

    @property
    def config_path(self) -> Path:
        return self.workdir / "nginx.conf"

    @property
    def access_log(self) -> Path:
        return self.workdir / "access.log"

    def soda_url(self, site_name: str, kind: str = "sync") -> str:
        """The public URL of a local site's SODA service (``kind`` sync or async)."""
        site = next(site for site in self.sites if site.site == site_name)
        return f"http://{site.address}:{self.port}/soda/{kind}"

    def base_url(self, rse: str) -> str:
        site = self.site_of(rse)
        return f"http://{site.address}:{self.port}"

    def site_of(self, rse: str) -> LocalSite:
        for site in self.sites:
            if site.rse == rse:
                return site
        raise KeyError(f"{rse} is not served on this machine")

    def file_path(self, rse: str, scope: str, name: str) -> Path:
        site = self.site_of(rse)
        return self.files_root / site.site / replica_path(site.prefix, scope, name).lstrip("/")

    def write_files(self, files: Iterable[tuple[str, str, str, bytes]]) -> int:
        """Put ``(rse, scope, name, content)`` in place where missing or different;
        return how many were written."""
        written = 0
        for rse, scope, name, content in files:
            path = self.file_path(rse, scope, name)
            try:
                if path.stat().st_size == len(content) and path.read_bytes() == content:
                    continue
            except OSError:
                pass
            path.parent.mkdir(parents=True, exist_ok=True)
            part = path.with_name(path.name + ".part")
            part.write_bytes(content)
            part.chmod(0o644)
            part.replace(path)
            written += 1
        _open_up(self.files_root)
        return written

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        worker = pwd.getpwnam(WORKER_USER)
        for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            temp = self.workdir / "tmp" / name
            temp.mkdir(parents=True, exist_ok=True)
            os.chown(temp, worker.pw_uid, worker.pw_gid)
        servers = "".join(
            _SERVER.format(site=site.site, rse=site.rse, address=site.address, port=self.port,
                           root=self.files_root / site.site, prefix=site.prefix,
                           rucio_url=self.rucio_url,
                           soda=_SODA.format(site=site.site, sync=self.soda[site.site][0],
                                             async_=self.soda[site.site][1])
                           if site.site in self.soda else "")
            for site in self.sites)
        self.config_path.write_text(_CONFIG.format(workdir=self.workdir, servers=servers,
                                                   worker=WORKER_USER))
        return self.config_path

    def is_running(self) -> bool:
        from rucio_rd.stack.process import answers_http

        return answers_http(self.base_url(self.sites[0].rse) + "/")

    def start(self, timeout: float = 15) -> None:
        from rucio_rd.stack.process import launch

        if self.is_running():
            return
        self.write_config()
        check = _run([NGINX, "-t", "-q", "-e", str(self.workdir / "error.log"),
                      "-c", str(self.config_path)])
        if check:
            raise RuntimeError(f"nginx refuses {self.config_path}:\n{check}")
        launch("storage (nginx)",
               [NGINX, "-e", str(self.workdir / "error.log"), "-c", str(self.config_path)],
               log_path=self.workdir / "nginx.log", pid_path=self.workdir / "launched.pid",
               answers=self.is_running, timeout=timeout)

    def stop(self) -> None:
        from rucio_rd.stack.process import owned_pid, terminate

        pid = owned_pid(self.workdir / "launched.pid", (NGINX, str(self.config_path)))
        (self.workdir / "launched.pid").unlink(missing_ok=True)
        if pid is not None:
            try:
                os.kill(pid, signal.SIGQUIT)  # nginx's graceful stop
            except ProcessLookupError:
                return
            terminate(pid, grace=5.0)

    def remove_files(self) -> None:
        shutil.rmtree(self.files_root, ignore_errors=True)

    def log_lines(self) -> list[str]:
        try:
            return self.access_log.read_text(errors="replace").splitlines()
        except OSError:
            return []


def _open_up(root: Path) -> None:
    """Directories the nginx workers can enter (the files are made 0644)."""
    for directory in [root, *(path for path in root.rglob("*") if path.is_dir())]:
        directory.chmod(0o755)


def _run(command: list[str]) -> str:
    """The output of a command that failed, or "" when it succeeded."""
    import subprocess

    result = subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace")
    return "" if result.returncode == 0 else (result.stdout + result.stderr).strip()

