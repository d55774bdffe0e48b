"""A file's extra links from its metadata: previews, auxiliary files, related products.

The SKA prototype reads a ``datalinks`` key of a file's metadata, a list of
links (``access_url``, ``semantics``, ``description``, a content type), and
serves each as a row of the DataLink answer.  The sync publishes that key as
it is (:func:`rucio_rd.metadata.datalinks_text`: a JSON array as JSON text, or
the metadata's string, which in the prototype holds a Python list literal);
:func:`parse_extra_links` judges it where it is served.  A bad entry is
skipped and named in the returned problems, never a broken document; the
valid entries of the same list are kept.

Pure functions: no I/O, nothing of DaCHS.
"""

from __future__ import annotations

import ast
import functools
import json
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_EXTRA_LINKS", "ExtraLink", "parse_extra_links"]

#: The most extra links served per file (the rest are problems).
MAX_EXTRA_LINKS = 100
_MAX_TEXT = 4096
_MAX_PARSED = 65536
# A term of the DataLink core vocabulary, as a relative URI.
_TERM = re.compile(r"#[a-z][a-z0-9-]*")
_CONTENT_TYPE = re.compile(r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+"
                           r"(\s*;\s*[A-Za-z0-9!#$&^_.+-]+=[^;\s]+)*")


@dataclass(frozen=True)
class ExtraLink:
    """One extra link of a file, checked."""

    access_url: str
    semantics: str
    description: str | None = None
    content_type: str | None = None
    content_length: int | None = None


def _parse(text: str) -> Any:
    """The list in ``text``: JSON, else a Python literal (the prototype's form)."""
    if len(text) > _MAX_PARSED:
        raise ValueError(f"longer than {_MAX_PARSED} characters")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        pass
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise ValueError("neither a JSON array nor a list literal") from None


def _writable(char: str) -> bool:
    """Whether a VOTable (XML 1.0) can hold ``char``: no control characters but tab
    and newline, no surrogates (a Python literal can make a lone one), no U+FFFE/F."""
    code = ord(char)
    return (code >= 0x20 or char in "\t\n") and code != 0x7F and not (
        0xD800 <= code <= 0xDFFF) and code not in (0xFFFE, 0xFFFF)


def _text(entry: dict[str, Any], key: str, ascii_only: bool = False) -> str | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key} is not text")
    value = value.strip()
    if len(value) > _MAX_TEXT:
        raise ValueError(f"{key} is longer than {_MAX_TEXT} characters")
    if not all(_writable(char) for char in value):
        raise ValueError(f"{key} holds control characters or non-characters")
    if ascii_only and not value.isascii():
        # A char column of the links table: percent-encode what is not ASCII.
        raise ValueError(f"{key} holds characters that are not ASCII")
    return value or None


def _url(entry: dict[str, Any]) -> str:
    url = _text(entry, "access_url", ascii_only=True)
    if url is None:
        raise ValueError("no access_url")
    if any(char.isspace() for char in url):
        raise ValueError("access_url holds white space")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"access_url {url[:80]!r} is not an http(s) URL")
    return url


def _semantics(entry: dict[str, Any]) -> str:
    semantics = _text(entry, "semantics", ascii_only=True) or "#auxiliary"
    if semantics == "#this":
        raise ValueError("semantics #this is the replicas' (the service's own rows)")
    if _TERM.fullmatch(semantics):
        return semantics
    parts = urllib.parse.urlsplit(semantics)
    if parts.scheme in ("http", "https", "ivo") and parts.netloc and not any(
            char.isspace() for char in semantics):
        return semantics  # a concept of another vocabulary, as a full URI
    raise ValueError(f"semantics {semantics[:80]!r} is neither a #term of the DataLink"
                     " vocabulary nor a full URI")


def _content_type(entry: dict[str, Any]) -> str | None:
    content_type = _text(entry, "content_type", ascii_only=True)
    if content_type is not None and not _CONTENT_TYPE.fullmatch(content_type):
        raise ValueError(f"content_type {content_type[:80]!r} is not a media type")
    return content_type


def _content_length(entry: dict[str, Any]) -> int | None:
    value = entry.get("content_length")
    if value is None:
        return None
    # 1e3 is a byte count (the sync's Python reference reads it as 1000.0).
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise ValueError("content_length is not a byte count")
    return value


def parse_extra_links(text: str | None) -> tuple[list[ExtraLink], list[str]]:
    """The valid extra links in a published ``datalinks`` value, and what was wrong
    with the others (``"entry 2: access_url 'ftp://x' is not an http(s) URL"``).

    ``text`` is a JSON array of objects, or the same as a Python list literal.
    Each object needs an http(s) ``access_url``; ``semantics`` is a ``#term`` of
    the DataLink core vocabulary (``#preview``, ``#auxiliary``...; default
    ``#auxiliary``; not ``#this``, which the replicas are) or a full URI;
    ``description``, ``content_type`` (a media type) and ``content_length``
    (bytes) are optional.  At most :data:`MAX_EXTRA_LINKS` are served.  The judgement of each
    distinct text is cached.
    """
    if text is None or not text.strip():
        return [], []
    links, problems = _judged(text)
    return list(links), list(problems)


@functools.lru_cache(maxsize=1024)
def _judged(text: str) -> tuple[tuple[ExtraLink, ...], tuple[str, ...]]:
    """Cached: a file's extra links are served again and again, and parsing a
    Python literal costs a compile (which may print warnings) each time."""
    links, problems = _parse_extra_links(text)
    return tuple(links), tuple(problems)


def _parse_extra_links(text: str) -> tuple[list[ExtraLink], list[str]]:
    """:func:`parse_extra_links`, uncached."""
    try:
        parsed = _parse(text)
    except ValueError as exc:
        return [], [f"datalinks cannot be read: {exc}"]
    if not isinstance(parsed, list | tuple):
        return [], [f"datalinks is a {type(parsed).__name__}, not a list of links"]
    links: list[ExtraLink] = []
    problems: list[str] = []
    for number, entry in enumerate(parsed, start=1):
        if len(links) == MAX_EXTRA_LINKS:
            problems.append(f"entries {number} to {len(parsed)}: more than"
                            f" {MAX_EXTRA_LINKS} extra links")
            break
        if not isinstance(entry, dict):
            problems.append(f"entry {number}: a {type(entry).__name__}, not an object")
            continue
        try:
            links.append(ExtraLink(_url(entry), _semantics(entry), _text(entry, "description"),
                                   _content_type(entry), _content_length(entry)))
        except ValueError as exc:
            problems.append(f"entry {number}: {exc}")
    return links, problems
