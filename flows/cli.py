"""`nerflow`: run, rerun and inspect pipeline runs, check data, manage the stage cache, predict.

Every command exits with the codes of one table (nerflow.flows.errors, docs/cli.md): 0 done, 1 a bug (traceback),
2 bad input, 3 a service unreachable, 4 refused by a rule, 130 interrupted. A user-caused error prints one line,
`error: <where>: <what>`; tracebacks only for bugs, or for everything with --debug. The verbs live in
flows/commands/, one module per group; heavy libraries load only in the commands that need them.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from nerflow.flows import errors, interrupts
from nerflow.flows.commands import cache, data, models, predict, run, schedule, train_node
from nerflow.flows.errors import EXIT_BAD_INPUT, EXIT_BUG, EXIT_INTERRUPTED  # noqa: F401 - the table, re-exported

log = logging.getLogger("nerflow.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nerflow", description="run, rerun and inspect pipeline runs, schedule "
                                     "them, check data, manage the stage cache, predict",
                                     epilog="exit codes: 0 done, 1 bug, 2 bad input, 3 service unreachable, "
                                            "4 refused, 130 interrupted (docs/cli.md)")
    parser.add_argument("--debug", action="store_true", help="print the traceback of every error")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (run, models, cache, data, predict, schedule, train_node):
        group.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from nerflow.flows.console import configure_output

    configure_output()
    for key, value in errors.MLFLOW_HTTP_BOUNDS.items():   # one unreachable-server call fails in seconds
        os.environ.setdefault(key, value)
    with interrupts.handled():
        try:
            return args.func(args)
        except BaseException as e:  # noqa: BLE001 - every way out gets its exit code and at most one message
            if isinstance(e, SystemExit):
                raise
            code = errors.classify(e)
            if code == EXIT_INTERRUPTED:
                print(f"\ninterrupted ({e or type(e).__name__}): nothing was registered; run the same command "
                      "again to continue", file=sys.stderr)
            elif code == EXIT_BUG or args.debug:
                print(errors.format_bug(e), file=sys.stderr)
            else:
                print(errors.message(e, code), file=sys.stderr)
            return code


if __name__ == "__main__":
    sys.exit(main())
