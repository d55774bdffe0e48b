"""``rucio-rd`` (``python3 -m rucio_rd``): the operator's command.

``rucio-rd check`` checks a deployment, one line per check, and exits 1 when
any fails; ``rucio-rd deploy`` deploys (see :mod:`rucio_rd.deploy`).  Both
work on the DaCHS instance that ``GAVOSETTINGS`` names, like ``dachs``.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def check(argv: list[str]) -> int:
    from rucio_rd import checks

    argparse.ArgumentParser(
        prog="rucio-rd check",
        description="Check rucio_rd's deployment in a DaCHS instance (GAVOSETTINGS picks it)."
        " One line per check; exit status 1 when any fails (warnings do not).",
    ).parse_args(argv)
    outcomes = checks.all_checks(checks.DachsSetup.from_dachs())
    for outcome in outcomes:
        print(outcome.line())
    bad = checks.failed(outcomes)
    print(f"{len(outcomes)} checks, {len(bad)} failed")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = {"check": check, "deploy": _deploy, "sync": _sync}
    usage = ("usage: rucio-rd {check,deploy,sync} [options]   (rucio-rd <command> --help)\n"
             "  check   check the deployment in the DaCHS instance GAVOSETTINGS names\n"
             "  deploy  deploy into it (checks everything before changing anything)\n"
             "  sync    bring its published table in step with Rucio's metadata")
    if argv and argv[0] in ("-h", "--help"):
        print(usage)
        return 0
    if not argv or argv[0] not in commands:
        print(usage, file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])


def _deploy(argv: list[str]) -> int:
    from rucio_rd import deploy

    return deploy.main(argv)


def _sync(argv: list[str]) -> int:
    from rucio_rd import dachs_sync

    return dachs_sync.main(argv)


if __name__ == "__main__":
    sys.exit(main())
