"""Unit tests for rucio_rd.http: the shared bounded request's helpers."""

from __future__ import annotations

import pytest

from rucio_rd.http import header_safe, redact_url, scrub


def test_scrub_removes_secrets_userinfo_and_query_strings() -> None:
    text = ("GET https://svc:pa55@sites.example/api?token=abc failed; secret s3cr3t"
            " and http://u@h/x?y=1")
    assert scrub(text, ["s3cr3t", None, ""]) == (
        "GET https://sites.example/api?... failed; secret <secret> and http://h/x?...")


def test_scrub_removes_the_query_of_a_bare_path_as_urllib3_writes_it() -> None:
    text = ("HTTPConnectionPool(host='h', port=9): Max retries exceeded with url:"
            " /api?apikey=SECRET/storages/grafana (Caused by NewConnectionError(...))")
    assert "SECRET" not in scrub(text)
    assert "url: /api?... (Caused by" in scrub(text)


@pytest.mark.parametrize("url, shown", [
    ("https://user:pw@sites.example:8443/api/v1?key=1#frag", "https://sites.example:8443/api/v1"),
    ("http://[::1]:18200/", "http://[::1]:18200/"),
    ("http://host:notaport/x", "http://host/x"),
])
def test_redact_url_keeps_scheme_host_port_and_path(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize("value, safe", [("Bearer abc.def", True), ("tab\there", False),
                                          ("ümlaut", False)])
def test_header_safe_is_printable_ascii(value: str, safe: bool) -> None:
    assert header_safe(value) is safe
