"""The client's SODA cutouts (site order, fallback, token scope, answers that are
not FITS), its DataLink reading and its quick-look picture."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.io.votable import parse as parse_votable
from pyvo.dal.adhoc import DatalinkResults

from rucio_rd.client.cutout import CutoutError, cutout, soda_parameters
from rucio_rd.client.links import FileLinks, Replica, SodaEndpoint, file_links
from rucio_rd.client.quicklook import QuicklookError, quicklook
from rucio_rd.client.tokens import Token

TOKEN = Token("soda-token", "a test")
RECORDED = Path(__file__).resolve().parents[1] / "data" / "datalink" / \
    "ral-must-include-soda.xml"


def small_fits() -> bytes:
    buffer = io.BytesIO()
    fits.PrimaryHDU(np.zeros((2, 4, 4), dtype=np.float32)).writeto(buffer)
    return buffer.getvalue()


class Soda(BaseHTTPRequestHandler):
    """A SODA sync service: the path's first part says how it answers."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        self.server.seen.append((self.path, dict(self.headers)))
        kind = self.path.strip("/").split("/")[0]
        if kind == "error":
            body = (b'<VOTABLE><RESOURCE type="results"><INFO name="QUERY_STATUS" '
                    b'value="ERROR">Field CIRCLE: outside of the cube</INFO></RESOURCE>'
                    b'</VOTABLE>')
            status = 422
        elif kind == "html":
            body, status = b"<html>maintenance</html>", 200
        elif kind == "short":
            body, status = small_fits()[:4000], 200
        else:
            body, status = small_fits(), 200
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def soda() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Soda)
    server.seen = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()


def links_with(*endpoints: SodaEndpoint) -> FileLinks:
    return FileLinks("scope:cube.fits", (Replica("http://x/cube.fits", "A"),), endpoints)


def test_soda_parameters_are_soda_10s_text() -> None:
    assert soda_parameters(circle=(370, -24.5, 0.05), band=(0.21, 0.22)) == {
        "CIRCLE": "10 -24.5 0.05", "BAND": "0.21 0.22"}


@pytest.mark.parametrize(("circle", "band", "says"), [
    ((1, 95, 1), None, "Dec in -90..90"), ((1, 2, 0), None, "radius in 0..180"),
    ((1, 2, float("nan")), None, "CIRCLE"), (None, (0.3, 0.2), "low first"),
    (None, None, "needs a CIRCLE or a BAND")])
def test_bad_cutout_parameters_are_refused_before_any_request(circle, band, says) -> None:
    with pytest.raises(ValueError, match=says):
        soda_parameters(circle, band)


def test_the_chosen_site_is_asked_first_then_the_others(soda, tmp_path) -> None:
    links = links_with(SodaEndpoint("A", soda.url + "/error/sync", "ivo://a?x"),
                       SodaEndpoint("B", soda.url + "/ok/sync", "ivo://b?x"))
    said: list[str] = []
    made = cutout(links, {"CIRCLE": "1 2 0.1"}, tmp_path, TOKEN, first_site="B",
                  report=said.append)
    assert made.endpoint.site == "B" and said == []
    assert made.path == tmp_path / "cube-cutout.fits"
    assert fits.getdata(made.path).shape == (2, 4, 4)
    assert soda.seen[0][0] == "/ok/sync?ID=ivo%3A%2F%2Fb%3Fx&CIRCLE=1+2+0.1"


def test_an_error_document_and_a_page_that_is_not_fits_fall_back(soda, tmp_path) -> None:
    links = links_with(SodaEndpoint("A", soda.url + "/error/sync", "ivo://a?x"),
                       SodaEndpoint("B", soda.url + "/html/sync", "ivo://b?x"),
                       SodaEndpoint("C", soda.url + "/ok/sync", "ivo://c?x"))
    said: list[str] = []
    made = cutout(links, {"BAND": "0.2 0.3"}, tmp_path, TOKEN, report=said.append)
    assert made.endpoint.site == "C"
    assert said[0] == (f"SODA at A: HTTP 422: Field CIRCLE: outside of the cube "
                       f"({soda.url}/error/sync)")
    assert said[1] == f"SODA at B: not a FITS file ({soda.url}/html/sync)"


def test_a_fits_file_cut_short_is_no_cutout(soda, tmp_path) -> None:
    links = links_with(SodaEndpoint("A", soda.url + "/short/sync", "ivo://a?x"))
    with pytest.raises(CutoutError, match=r"SODA at A: a FITS file cut short \(4,000 bytes\)"):
        cutout(links, {"CIRCLE": "1 2 0.1"}, tmp_path)
    assert not list(tmp_path.glob("*.fits"))


def test_a_cutout_row_without_its_descriptor_is_passed_over() -> None:
    document = RECORDED.read_text().replace('ID="soda_sync_SPSRC"', 'ID="elsewhere"', 1)
    path = Path("/var/tmp") / "rucio_rd-missing-descriptor.xml"
    path.write_text(document)
    try:
        links = file_links(DatalinkResults(parse_votable(str(path))))
    finally:
        path.unlink()
    assert links.replicas and "https://spsrc-soda.iaa.csic.es:443/soda/sync" not in [
        endpoint.access_url for endpoint in links.soda]


def test_the_token_goes_to_each_service_but_never_to_the_datalink_host(soda,
                                                                       tmp_path) -> None:
    links = links_with(SodaEndpoint("A", soda.url + "/ok/sync", "ivo://a?x"))
    cutout(links, {"CIRCLE": "1 2 0.1"}, tmp_path, TOKEN)
    assert soda.seen[-1][1]["Authorization"] == "Bearer soda-token"
    cutout(links, {"CIRCLE": "1 2 0.1"}, tmp_path, TOKEN, never=[soda.url + "/dl/dlmeta"])
    assert "Authorization" not in soda.seen[-1][1]


def test_only_synchronous_services_are_used(tmp_path) -> None:
    links = links_with(SodaEndpoint("A", "http://127.0.0.1:9/async", "ivo://a?x",
                                    "ivo://ivoa.net/std/SODA#async-1.0"))
    with pytest.raises(CutoutError, match="offers a synchronous SODA service"):
        cutout(links, {"CIRCLE": "1 2 0.1"}, tmp_path)


def test_every_service_failing_is_one_error_with_a_line_each(tmp_path) -> None:
    links = links_with(SodaEndpoint("A", "http://127.0.0.1:9/sync", "ivo://a?x"),
                       SodaEndpoint("B", "http://spsrc-soda.invalid/sync", "ivo://b?x"))
    with pytest.raises(CutoutError) as raised:
        cutout(links, {"CIRCLE": "1 2 0.1"}, tmp_path)
    lines = str(raised.value).splitlines()
    assert lines[0] == "no SODA service cut out scope:cube.fits:"
    assert [line.split(":")[0].strip() for line in lines[1:]] == ["SODA at A", "SODA at B"]


def test_a_recorded_answer_gives_replicas_checksums_and_soda_ids() -> None:
    results = DatalinkResults(parse_votable(str(RECORDED)))
    ptf = file_links(results)  # the first ID's
    assert ptf.did == "testing:PTF10tce.fits"
    assert ptf.replicas[0].url.startswith("https://spsrc14.iaa.csic.es:18027/")
    assert all(len(replica.adler32 or "") == 8 for replica in ptf.replicas)
    assert [endpoint.access_url.split("/")[2] for endpoint in ptf.soda][:1] == [
        "spsrc-soda.iaa.csic.es:443"]
    assert ptf.soda[0].soda_id == "ivo://rucio-rd.example?testing/5b/f5/PTF10tce.fits"
    assert [endpoint.is_sync for endpoint in ptf.soda][:2] == [True, False]


def cube_file(path: Path, shape=(8, 16, 16), spectral: bool = True) -> Path:
    data = np.zeros(shape, dtype=np.float32)
    data[5, 8, 8] = 10.0  # a line in channel 5
    header = fits.Header()
    header["CTYPE1"], header["CTYPE2"] = "RA---SIN", "DEC--SIN"
    header["CRVAL1"], header["CRVAL2"], header["CDELT1"], header["CDELT2"] = 53.7, -24.9, \
        -0.002, 0.002
    header["CRPIX1"] = header["CRPIX2"] = 8.5
    if spectral:
        header["CTYPE3"], header["CUNIT3"] = "FREQ", "Hz"
        header["CRVAL3"], header["CDELT3"], header["CRPIX3"] = 1.3e9, 1e6, 1.0
    header["OBJECT"] = "test cube"
    fits.PrimaryHDU(data, header=header).writeto(path)
    return path


def test_the_quicklook_of_a_cube_draws_its_brightest_channel_with_sky_axes(tmp_path) -> None:
    import matplotlib.image

    png = quicklook(cube_file(tmp_path / "cube.fits"))
    assert png == tmp_path / "cube.png"
    picture = matplotlib.image.imread(png)
    assert picture.shape[:2] == (600, 700)
    # A lit pixel somewhere: the channel with the line was drawn, not an empty one.
    assert picture[..., :3].max() == 1.0


def test_the_quicklook_takes_a_channel_and_refuses_one_outside(tmp_path) -> None:
    path = cube_file(tmp_path / "cube.fits")
    assert quicklook(path, tmp_path / "c0.png", channel=0).exists()
    with pytest.raises(QuicklookError, match="channel 8: the cube has channels 0..7"):
        quicklook(path, tmp_path / "c8.png", channel=8)


def test_a_file_that_is_not_fits_is_said_so(tmp_path) -> None:
    path = tmp_path / "x.fits"
    path.write_bytes(b"<html>not fits</html>")
    with pytest.raises(QuicklookError, match="not a readable FITS file"):
        quicklook(path)
