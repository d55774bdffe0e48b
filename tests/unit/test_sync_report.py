"""What ``rucio-rd sync`` prints of a sync (rucio_rd.sync.printable_report)."""

from __future__ import annotations

from rucio_rd.sync import SyncReport, printable_report


def test_a_quiet_sync_is_one_line() -> None:
    report = SyncReport("incremental", records=3, seconds=0.25, stages={"digests": 0.1})
    assert printable_report(report) == (
        "incremental sync: 3 metadata records, 0 fetched; 0 added, 0 changed, 0 deleted,"
        " 0 unusable; 0.2 s (digests 0.1)")


def test_unusable_records_the_change_log_and_warnings_get_lines_of_their_own() -> None:
    report = SyncReport("incremental", records=3, reasons={"no access_url": 2},
                        examples={"no access_url": ["s:a", "s:b"]}, forgotten=4,
                        warnings=["the change log x keeps 1 entries this sync applied: no"],
                        logged=[1, 2, 3, 4])
    lines = printable_report(report).splitlines()
    assert lines[1:] == ["  unusable: 2 x no access_url: e.g. 's:a', 's:b'",
                         "  change log: 4 applied entries removed",
                         "  warning: the change log x keeps 1 entries this sync applied: no"]
    assert "2 unusable" in lines[0]
    assert "logged" not in repr(report)  # the entry numbers are bookkeeping, not shown
