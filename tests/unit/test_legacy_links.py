"""Unit tests for rucio_rd.legacy_links: the prototype's URLs redirect with every parameter."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from rucio_rd.legacy_links import make_server, redirect_location

TARGET = "http://dachs.example:8080"


@pytest.mark.parametrize("path", ["/links", "/rucio/links", "/rucio/links/"])
def test_legacy_paths_go_to_the_datalink_service_with_the_query_unchanged(path: str) -> None:
    query = "id=orange:a.fits&client_ip_address=130.246.210.120&must_include_soda=True"
    assert redirect_location(TARGET, f"{path}?{query}") == (
        f"{TARGET}/rucio/rucio/dl/dlmeta?{query}")


def test_without_query_string() -> None:
    assert redirect_location(TARGET + "/", "/links") == f"{TARGET}/rucio/rucio/dl/dlmeta"


@pytest.mark.parametrize("path", ["/", "/rucio", "/links/extra", "/rucio/rucio/dl/dlmeta"])
def test_other_paths_are_not_redirected(path: str) -> None:
    assert redirect_location(TARGET, path) is None


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    server = make_server(TARGET, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_server_answers_307_with_location(server: str) -> None:
    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as caught:
        opener.open(f"{server}/rucio/links?id=testing:PTF10tce.fits", timeout=5)
    assert caught.value.code == 307
    assert caught.value.headers["Location"] == (
        f"{TARGET}/rucio/rucio/dl/dlmeta?id=testing:PTF10tce.fits")


def test_server_answers_404_elsewhere(server: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{server}/elsewhere", timeout=5)
    assert caught.value.code == 404
