"""Unit tests for rucio_rd.extra_links: the metadata's datalinks, judged."""

from __future__ import annotations

import json

import pytest

from rucio_rd.extra_links import MAX_EXTRA_LINKS, ExtraLink, parse_extra_links
from rucio_rd.metadata import MAX_DATALINKS_BYTES, datalinks_text

PREVIEW = {"access_url": "https://spsrc.example/previews/cube.png", "semantics": "#preview",
           "description": "Moment-0 map", "content_type": "image/png", "content_length": 2048}


def test_a_json_array_of_links() -> None:
    links, problems = parse_extra_links(json.dumps([PREVIEW, {
        "access_url": "http://aux.example/cal.tar", "description": "calibration tables"}]))
    assert problems == []
    assert links == [
        ExtraLink("https://spsrc.example/previews/cube.png", "#preview", "Moment-0 map",
                  "image/png", 2048),
        ExtraLink("http://aux.example/cal.tar", "#auxiliary", "calibration tables")]


def test_the_prototypes_python_list_literal() -> None:
    text = str([{"access_url": "https://x.example/p.png", "semantics": "#preview",
                 "description": "it's a preview"}])
    assert text.startswith("[{'access_url'")  # single quotes: not JSON
    links, problems = parse_extra_links(text)
    assert problems == [] and links[0].description == "it's a preview"


@pytest.mark.parametrize(("entry", "problem"), [
    ({"semantics": "#preview"}, "no access_url"),
    ({"access_url": "ftp://x.example/f"}, "is not an http(s) URL"),
    ({"access_url": "javascript:alert(1)"}, "is not an http(s) URL"),
    ({"access_url": "https://x.example/a b"}, "white space"),
    ({"access_url": "https:///nohost"}, "is not an http(s) URL"),
    ({"access_url": 42}, "access_url is not text"),
    ({"access_url": "https://x.example/f", "semantics": "#this"}, "the replicas'"),
    ({"access_url": "https://x.example/f", "semantics": "preview"}, "neither a #term"),
    ({"access_url": "https://x.example/f", "semantics": "#Preview!"}, "neither a #term"),
    ({"access_url": "https://x.example/f", "content_type": "png"}, "is not a media type"),
    ({"access_url": "https://x.example/f", "content_length": -1}, "not a byte count"),
    ({"access_url": "https://x.example/f", "content_length": "12"}, "not a byte count"),
    ({"access_url": "https://x.example/f", "content_length": True}, "not a byte count"),
    ({"access_url": "https://x.example/f", "description": "a\x00b"}, "control characters"),
    ({"access_url": "https://x.example/f", "description": "d" * 4097}, "longer than 4096"),
    ("https://x.example/f", "a str, not an object"),
    (None, "a NoneType, not an object"),
])
def test_a_bad_entry_is_skipped_and_named_and_the_good_ones_kept(entry, problem) -> None:
    links, problems = parse_extra_links(json.dumps([PREVIEW, entry, PREVIEW]))
    assert len(links) == 2
    assert len(problems) == 1 and problems[0].startswith("entry 2: ")
    assert problem in problems[0]


def test_other_vocabularies_are_full_uris() -> None:
    links, problems = parse_extra_links(json.dumps([
        {"access_url": "https://x.example/f", "semantics": "http://example.org/v#thing"},
        {"access_url": "https://x.example/g", "semantics": "ivo://example.org/vocab#t",
         "content_type": "application/x-votable+xml;content=datalink"}]))
    assert problems == [] and [link.semantics for link in links] == [
        "http://example.org/v#thing", "ivo://example.org/vocab#t"]


@pytest.mark.parametrize(("text", "problem"), [
    ("{'access_url': 'https://x'}", "a dict, not a list of links"),
    ("not a list", "cannot be read: neither a JSON array nor a list literal"),
    ("[" * 5000 + "]" * 5000, "cannot be read"),
    ("__import__('os').system('true')", "cannot be read"),
    ("[" + "1" * 5000 + "]", "cannot be read"),
    ("x" * 70000, "longer than 65536 characters"),
])
def test_an_unreadable_value_is_one_problem(text: str, problem: str) -> None:
    links, problems = parse_extra_links(text)
    assert links == [] and len(problems) == 1 and problem in problems[0]


def test_nothing_is_nothing() -> None:
    assert parse_extra_links(None) == ([], [])
    assert parse_extra_links("  ") == ([], [])
    assert parse_extra_links("[]") == ([], [])


def test_at_most_so_many_links_per_file() -> None:
    links, problems = parse_extra_links(json.dumps([PREVIEW] * (MAX_EXTRA_LINKS + 5)))
    assert len(links) == MAX_EXTRA_LINKS
    assert problems == [f"entries {MAX_EXTRA_LINKS + 1} to {MAX_EXTRA_LINKS + 5}: more than"
                        f" {MAX_EXTRA_LINKS} extra links"]


# --- what the sync publishes (the Python reference of its SQL) --------------------------


def test_the_published_datalinks_column() -> None:
    assert json.loads(datalinks_text([PREVIEW])) == [PREVIEW]
    assert datalinks_text("[{'access_url': 'x'}]") == "[{'access_url': 'x'}]"
    assert datalinks_text({"access_url": "x"}) is None
    assert datalinks_text(7) is None and datalinks_text(None) is None
    assert datalinks_text(["é" * (MAX_DATALINKS_BYTES // 2)]) is None
    assert datalinks_text("x" * MAX_DATALINKS_BYTES) == "x" * MAX_DATALINKS_BYTES


@pytest.mark.parametrize(("entry", "problem"), [
    # A lone surrogate (the prototype's literal can make one) or a non-character would
    # break the VOTable; non-ASCII would be mangled in the links table's char columns.
    ({"access_url": "https://x.example/f", "description": "\ud800"}, "non-characters"),
    ({"access_url": "https://x.example/f", "description": "a\uffffb"}, "non-characters"),
    ({"access_url": "https://x.example/é"}, "access_url holds characters that are not ASCII"),
    ({"access_url": "https://x.example/f", "semantics": "http://v.example/é"}, "not ASCII"),
])
def test_what_a_votable_cannot_carry_is_refused(entry, problem) -> None:
    links, problems = parse_extra_links(str([PREVIEW, entry]))
    assert len(links) == 1 and len(problems) == 1 and problem in problems[0]


def test_a_description_may_hold_any_other_unicode() -> None:
    links, problems = parse_extra_links(json.dumps([{**PREVIEW, "description": "Ω 射电 ü"}]))
    assert problems == [] and links[0].description == "Ω 射电 ü"


def test_a_whole_number_length_written_as_a_float_is_a_byte_count() -> None:
    links, _ = parse_extra_links('[{"access_url": "https://x.example/f", "content_length": 1e3}]')
    assert links[0].content_length == 1000
    links, problems = parse_extra_links(
        '[{"access_url": "https://x.example/f", "content_length": 10.5}]')
    assert links == [] and "not a byte count" in problems[0]


def test_answers_are_fresh_lists() -> None:
    text = json.dumps([PREVIEW])
    first, _ = parse_extra_links(text)
    first.clear()
    assert len(parse_extra_links(text)[0]) == 1
