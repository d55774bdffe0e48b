"""Unit tests for the SKA site-directory stand-in, served in-process on a free port."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rucio_rd.stack import site_directory
from rucio_rd.stack.site_directory import load_directory, make_server, serve_in_thread

SHIPPED = Path(__file__).resolve().parents[2] / "res" / "site-directory.json"

SMALL = {
    "storages": [{"name": "RSE_A", "latitude": 1.5, "longitude": -2.5}],
    "services": [
        {"name": "SITE_A", "services": [
            {"type": "Rucio Storage Element (RSE)", "identifier": "RSE_A"}]},
    ],
}


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    """One server for the module: shutdown() waits out serve_forever's 0.5 s poll."""
    server = serve_in_thread(SMALL, 0)
    host, port = server.server_address[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.shutdown()
        server.server_close()


def get(url: str, method: str = "GET") -> tuple[int, str, Any]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers["Content-Type"], json.load(response)
    except urllib.error.HTTPError as error:
        with error:
            body = error.read()
            content_type = error.headers["Content-Type"]
        if content_type == "application/json":
            return error.code, content_type, json.loads(body)
        return error.code, content_type, body


# --- load_directory -------------------------------------------------------------------


def test_shipped_directory_loads_with_its_rses_and_sites() -> None:
    document = load_directory(SHIPPED)
    names = [storage["name"] for storage in document["storages"]]
    assert names == ["SPSRC_STORAGE", "UKSRC_RAL_STORAGE", "AUSSRC_STORAGE"]
    assert all(
        isinstance(s["latitude"], float) and isinstance(s["longitude"], float)
        for s in document["storages"]
    )
    assert [site["name"] for site in document["services"]] == ["SPSRC", "UKSRC", "AUSSRC"]


def test_shipped_directory_rses_are_all_named_by_some_site() -> None:
    document = load_directory(SHIPPED)
    identifiers = {
        service["identifier"]
        for site in document["services"]
        for service in site["services"]
        if service["type"] == "Rucio Storage Element (RSE)"
    }
    assert identifiers == {storage["name"] for storage in document["storages"]}


def test_default_data_is_the_shipped_file() -> None:
    assert site_directory.DEFAULT_DATA.resolve() == SHIPPED


def test_load_directory_accepts_a_string_path(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps(SMALL))
    assert load_directory(str(path)) == SMALL


@pytest.mark.parametrize(
    ("document", "key"),
    [
        ({"services": []}, "storages"),
        ({"storages": []}, "services"),
        ({"storages": {}, "services": []}, "storages"),
        ({"storages": [], "services": "SPSRC"}, "services"),
        ({"storages": None, "services": None}, "storages"),
    ],
)
def test_bad_directory_file_error_names_the_key_and_file(
    tmp_path: Path, document: dict[str, Any], key: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError) as caught:
        load_directory(path)
    assert f"'{key}' must be a list" in str(caught.value)
    assert str(path) in str(caught.value)


def test_directory_file_that_is_not_json_raises_value_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"storages": [')
    with pytest.raises(ValueError):
        load_directory(path)


def test_missing_directory_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_directory(tmp_path / "absent.json")


@pytest.mark.parametrize("text", ["[]", '"text"', "null"])
def test_directory_file_that_is_not_an_object_raises_value_error(
    tmp_path: Path, text: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ValueError):
        load_directory(path)


# --- the HTTP server ------------------------------------------------------------------


def test_ping_answers_ok(base_url: str) -> None:
    assert get(base_url + "/ping") == (200, "application/json", {"status": "ok"})


def test_storages_grafana_returns_the_storages(base_url: str) -> None:
    status, content_type, body = get(base_url + "/storages/grafana")
    assert (status, content_type) == (200, "application/json")
    assert body == SMALL["storages"]


def test_services_returns_the_sites(base_url: str) -> None:
    status, _, body = get(base_url + "/services")
    assert status == 200
    assert body == SMALL["services"]


@pytest.mark.parametrize("suffix", ["/services/", "/services?limit=1", "/services/?x=y"])
def test_trailing_slash_and_query_string_are_ignored(base_url: str, suffix: str) -> None:
    status, _, body = get(base_url + suffix)
    assert status == 200
    assert body == SMALL["services"]


@pytest.mark.parametrize(
    ("suffix", "path"),
    [("/", "/"), ("/nope", "/nope"), ("/storages", "/storages"), ("/ping/x?y=1", "/ping/x")],
)
def test_unknown_path_is_404_with_json_detail(base_url: str, suffix: str, path: str) -> None:
    assert get(base_url + suffix) == (
        404, "application/json", {"detail": f"no such endpoint: {path}"}
    )


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_writing_methods_are_not_supported(base_url: str, method: str) -> None:
    status, _, _ = get(base_url + "/services", method=method)
    assert status == 501


def test_server_answers_from_the_shipped_file() -> None:
    document = load_directory(SHIPPED)
    server = serve_in_thread(document, 0)
    try:
        port = server.server_address[1]
        _, _, body = get(f"http://127.0.0.1:{port}/storages/grafana")
    finally:
        server.shutdown()
        server.server_close()
    assert [entry["name"] for entry in body] == [s["name"] for s in document["storages"]]


def test_make_server_binds_the_requested_host_and_a_free_port() -> None:
    server = make_server(SMALL, 0)
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        assert port > 0
        assert server.daemon_threads
    finally:
        server.server_close()


def test_make_server_refuses_data_without_storages() -> None:
    with pytest.raises(KeyError):
        make_server({"services": []}, 0)
