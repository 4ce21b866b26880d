"""The command line (README: commands): parse arguments, call the rooms, print.

Each subcommand is a module here with `register` (its parser, which names its
handler with `set_defaults`) and `run` (the handler). Exit codes: 0 success;
1 `review --exit-code` or `audit` found something; 2 bad input or usage, one
line on stderr naming the file and what is wrong; 70 a bug in this program
(EX_SOFTWARE), one line saying so (`--debug` or VOLUME_INIT_DEBUG=1 shows the
traceback). Never a traceback otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from webhook import __version__
from webhook.cli import audit, certs, common, manifests, policy, review, serve
from webhook.cli.common import EXIT_BUG, EXIT_USAGE
from webhook.engine import PRODUCT, limits
from webhook.engine.errors import UsageError

COMMANDS = (serve, review, certs, manifests, policy, audit)
# Kept for callers of the command line's messages (tests, docs).
ASSUMED_SELECTION = audit.ASSUMED_SELECTION
NO_CA_BUNDLE = manifests.NO_CA_BUNDLE


def build_parser() -> argparse.ArgumentParser:
    parser = common.Parser(
        prog=PRODUCT,
        description="Mutating admission webhook that makes Dify's storage volumes writable"
        " by Dify's non-root containers.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="on an internal error, show the traceback (also VOLUME_INIT_DEBUG=1)",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=common.Parser)
    for command in COMMANDS:
        command.register(commands)
    commands.add_parser(
        "fix-ownership",
        help="give volume directories to the app's user, as the init container does",
        description="fix-ownership --owner UID:GID [--flag NAME] [--parallel N] [--] PATH...:"
        " the init container's ownership fix, usable by hand (standard library only; its"
        " own parser is webhook/fixer.py's)",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `dify-volume-init` and `python -m webhook`."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["fix-ownership"]:  # NB: its own parser (webhook/launch.py)
        from webhook import fixer  # noqa: PLC0415

        return fixer.main(arguments[1:])
    args = build_parser().parse_args(arguments)
    debug = args.debug or bool(os.environ.get("VOLUME_INIT_DEBUG"))
    try:
        code: int = args.handler(args)
    except UsageError as exc:
        print(f"{PRODUCT}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except (RecursionError, MemoryError, OSError, ValueError) as exc:
        # NB: inputs are meant to be refused with their own line before this; one that
        # gets here is still the input's doing: one line, exit 2 (exit 1 is "found").
        if debug:
            raise
        print(f"{PRODUCT}: {_bad_input(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        # A TypeError, LookupError, AttributeError, AssertionError...: this program is
        # wrong, not the input; say so, and never as "bad input".
        if debug:
            raise
        print(
            f"{PRODUCT}: internal error (a bug, not your input): {type(exc).__name__}: {exc};"
            f" please report it with --debug's traceback (`{PRODUCT} --debug {args.command}"
            " ...`)",
            file=sys.stderr,
        )
        return EXIT_BUG
    return code


def _bad_input(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return f"the input is nested too deeply (the limit is {limits.MAX_NESTING} levels)"
    if isinstance(exc, MemoryError):
        return "out of memory reading the input"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename or 'output'}: {exc.strerror}"
    return (
        f"the input has a value this command cannot handle ({exc}); please report it"
        " with the input (--debug shows where it failed)"
    )
