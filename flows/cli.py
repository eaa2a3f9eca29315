"""`nerflow`: run, rerun and inspect pipeline runs, check data, manage the stage cache, predict.

Every command exits with the codes of one table (nerflow.flows.errors, docs/cli.md): 0 done, 1 a bug (traceback),
2 bad input, 3 a service unreachable, 4 refused by a rule, 130 interrupted, 141 the reader of the output went
away (`nerflow ... | head`). A user-caused error prints one line, `error: <where>: <what>`; tracebacks only for
bugs, or for everything with --debug. A mistyped command gets the closest one (`Parser`). The verbs live in
flows/commands/, one module per group; heavy libraries load only in the commands that need them.
"""
from __future__ import annotations

import argparse
import difflib
import logging
import os
import select
import sys

from nerflow import redact
from nerflow.flows import errors, interrupts
from nerflow.flows.commands import (
    approval,
    cache,
    data,
    drift,
    explain,
    models,
    predict,
    run,
    runners,
    schedule,
    train_node,
    tune,
)
from nerflow.flows.errors import EXIT_BAD_INPUT, EXIT_BUG, EXIT_INTERRUPTED  # noqa: F401 - the table, re-exported

log = logging.getLogger("nerflow.cli")

EXIT_CLOSED_PIPE = 128 + 13   # 128 + SIGPIPE: what a shell reports for a tool whose reader went away


class Parser(argparse.ArgumentParser):
    """argparse, but an unknown command (or sub-command, or choice) names the closest valid one: Python 3.11's
    argparse only lists them all (3.14 has `suggest_on_error`). Sub-parsers are made of this class too."""

    def _check_value(self, action: argparse.Action, value) -> None:
        if action.choices is not None and value not in action.choices:
            self.unknown_choice(action, value)
        super()._check_value(action, value)

    def unknown_choice(self, action: argparse.Action, value) -> None:
        """Exit 2 with one `error:` line and the usage that lists what is valid."""
        close = difflib.get_close_matches(str(value), [str(c) for c in action.choices], n=1)
        if isinstance(action, argparse._SubParsersAction):
            words = self.prog.split()[1:]   # the command words before this one ("cache" in `nerflow cache lss`)
            said = f"unknown command {' '.join([*words, str(value)])!r}"
            hint = f"; did you mean {' '.join([*words, close[0]])!r}?" if close else ""
        else:
            said = f"{'/'.join(action.option_strings) or action.dest}: unknown value {str(value)!r}"
            hint = f"; did you mean {close[0]!r}?" if close else ""
        self.exit(2, f"error: {said}{hint}\n{self.format_usage()}")   # the usage lists the valid ones


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="nerflow", description="run, rerun and inspect pipeline runs, schedule "
                                     "them, check data, manage the stage cache, predict, explain, "
                                     "check for drift",
                                     epilog="exit codes: 0 done, 1 bug, 2 bad input, 3 service unreachable, "
                                            "4 refused, 5 drift found (drift --fail-on-drift), 130 interrupted, "
                                            "141 output pipe closed (docs/cli.md)")
    parser.add_argument("--debug", action="store_true", help="print the traceback of every error")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (run, models, approval, cache, data, predict, explain, drift, schedule, runners, train_node,
                  tune):
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
            code = args.func(args)
            sys.stdout.flush()   # a reader that went away is found here, not in the interpreter's exit
            return code
        except BaseException as e:  # noqa: BLE001 - every way out gets its exit code and at most one message
            if isinstance(e, SystemExit):
                raise
            if isinstance(e, BrokenPipeError) and stdout_reader_gone():
                return closed_pipe()
            code = errors.classify(e)
            if code == EXIT_INTERRUPTED:
                print(redact.text(f"\ninterrupted ({e or type(e).__name__}): nothing was registered; run the same "
                                  "command again to continue"), file=sys.stderr)
            elif code == EXIT_BUG or args.debug:
                print(errors.format_bug(e), file=sys.stderr)
            else:
                print(errors.message(e, code), file=sys.stderr)
            return code


def stdout_reader_gone() -> bool:
    """Whether stdout is a pipe (or socket) whose reading end is closed: `nerflow cache ls | head -n1` once head
    has its line. A BrokenPipeError from anything else (a server's socket) is not this."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):   # no real file behind stdout (a test's capture), or no poll
        return False


def closed_pipe() -> int:
    """End quietly, as a shell tool killed by SIGPIPE would: nothing more to say, and nobody to say it to. What
    is still buffered for stdout goes to /dev/null, else the interpreter's last flush reports the broken pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_CLOSED_PIPE


if __name__ == "__main__":
    sys.exit(main())
