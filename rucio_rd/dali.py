"""DALI error documents: what a DALI service answers instead of a result when a
request fails as a whole (DALI 1.1, section 4.4).

The one place such a document is written, for the server's 414/431 answers
(:mod:`rucio_rd.dachs_server`) and ``dlget``'s faults
(:mod:`rucio_rd.dachs_datalink`).  Imports nothing of the package.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

__all__ = ["ERROR_MEDIA_TYPE", "error_document"]

#: The media type of :func:`error_document`'s answer.
ERROR_MEDIA_TYPE = "text/xml"


def error_document(message: str) -> bytes:
    """A VOTable whose results RESOURCE says ``QUERY_STATUS=ERROR`` and ``message``."""
    printable = "".join(char if char in "\t\n" or char >= " " else "\ufffd" for char in message)
    return ('<?xml version="1.0" encoding="utf-8"?>'
            '<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">'
            '<RESOURCE type="results">'
            f'<INFO name="QUERY_STATUS" value="ERROR">{escape(printable)}</INFO>'
            '</RESOURCE></VOTABLE>').encode()
