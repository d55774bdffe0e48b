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


class _Cursor:
    def __init__(self, connection: _Connection) -> None:
        self.connection = connection
        self.rowcount = 0

    def __enter__(self) -> _Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def execute(self, statement: str, params: object = None) -> None:
        self.connection.statements.append(statement)
        failure = self.connection.failures.get(statement.split()[0])
        if failure is not None:
            self.connection.closed = self.connection.closed or failure[1]
            raise failure[0]
        self.rowcount = 2


class _Connection:
    def __init__(self, failures: dict) -> None:
        self.failures = failures  # first word of a statement -> (exception, closes)
        self.statements: list[str] = []
        self.closed = False

    def cursor(self) -> _Cursor:
        return _Cursor(self)


def test_the_change_log_is_trimmed_after_the_commit_in_one_transaction() -> None:
    from rucio_rd.sync import _forget_logged

    report = SyncReport("incremental", logged=[3, 5])
    meta = _Connection({})
    _forget_logged(meta, '"public".rucio_rd_changes', report)
    assert meta.statements[0] == "BEGIN READ WRITE" and meta.statements[-1] == "COMMIT"
    assert "ORDER BY seq FOR UPDATE" in meta.statements[1]
    assert report.forgotten == 2 and not report.warnings


def test_a_connection_lost_before_the_trimming_is_a_warning_not_an_error() -> None:
    import psycopg2

    from rucio_rd.sync import _forget_logged

    report = SyncReport("incremental", logged=[3, 5])
    meta = _Connection({"DELETE": (psycopg2.OperationalError("server closed the connection"),
                                   True)})
    _forget_logged(meta, "log", report)  # no exception: the sync has committed
    assert report.forgotten == 0
    assert report.warnings == ["the change log log keeps 2 entries this sync applied:"
                               " server closed the connection"]
    assert "ROLLBACK" not in meta.statements  # nothing to roll back on a closed connection


def test_a_failed_trimming_is_rolled_back_and_a_failed_rollback_ignored() -> None:
    import psycopg2

    from rucio_rd.sync import _forget_logged

    report = SyncReport("incremental", logged=[3])
    meta = _Connection({"DELETE": (psycopg2.errors.LockNotAvailable("lock timeout"), False),
                        "ROLLBACK": (psycopg2.InterfaceError("connection already closed"),
                                     True)})
    _forget_logged(meta, "log", report)
    assert meta.statements[-1] == "ROLLBACK"
    assert report.warnings[0].endswith(": lock timeout")
