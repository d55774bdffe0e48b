"""The merging of several COPY streams into one (rucio_rd.sync._Lines): whole lines
only, from every pipe, and a stop when a source has failed."""

from __future__ import annotations

import os
import threading

import pytest

from rucio_rd.sync import _Lines, _SourceFailed


def _read_all(lines: _Lines) -> list[bytes]:
    chunks = []
    while chunk := lines.read(1 << 16):
        chunks.append(chunk)
    return chunks


def _writer(descriptor: int, pieces: list[bytes]) -> threading.Thread:
    def write() -> None:
        with os.fdopen(descriptor, "wb", buffering=0) as sink:
            for piece in pieces:
                sink.write(piece)

    thread = threading.Thread(target=write)
    thread.start()
    return thread


def test_lines_cut_across_writes_come_out_whole() -> None:
    read_end, write_end = os.pipe()
    lines = _Lines([read_end], [])
    writer = _writer(write_end, [b"a\tb", b"\nc\t", b"d\ne", b"\n"])
    chunks = _read_all(lines)
    writer.join()
    assert b"".join(chunks) == b"a\tb\nc\td\ne\n"
    assert all(chunk.endswith(b"\n") for chunk in chunks)
    lines.close()


def test_every_pipe_is_read_to_its_end() -> None:
    pipes = [os.pipe() for _ in range(3)]
    lines = _Lines([read_end for read_end, _ in pipes], [])
    writers = [_writer(write_end, [f"{index}-{row}\n".encode() for row in range(500)])
               for index, (_, write_end) in enumerate(pipes)]
    received = b"".join(_read_all(lines)).splitlines()
    for writer in writers:
        writer.join()
    assert sorted(received) == sorted(f"{index}-{row}".encode()
                                      for index in range(3) for row in range(500))
    lines.close()


def test_a_cut_last_line_of_a_failed_source_stops_the_reading() -> None:
    read_end, write_end = os.pipe()
    failures: list[BaseException] = []
    lines = _Lines([read_end], failures)

    def fail_part_way() -> None:  # as a producer does: the failure noted, then the pipe closed
        sink = os.fdopen(write_end, "wb", buffering=0)
        sink.write(b"whole\n")
        sink.write(b"cut")
        failures.append(RuntimeError("the metadata database went away"))
        sink.close()

    writer = threading.Thread(target=fail_part_way)
    writer.start()
    chunks = []
    with pytest.raises(_SourceFailed):
        while chunk := lines.read(1 << 16):
            chunks.append(chunk)
    writer.join()
    assert b"".join(chunks) == b"whole\n"  # the cut line never reaches the COPY in
    assert lines.source_failed
    lines.close()


def test_close_releases_pipes_not_read_to_the_end() -> None:
    read_end, write_end = os.pipe()
    lines = _Lines([read_end], [])
    lines.close()
    with pytest.raises(BrokenPipeError):  # the writer learns that nobody reads
        os.write(write_end, b"x\n")
    os.close(write_end)
