"""What the subcommands share: exit codes, the parser class, flag checks, input reading."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from webhook.engine.errors import UsageError

EXIT_OK = 0
EXIT_CHANGED = 1
EXIT_USAGE = 2
EXIT_BUG = 70  # EX_SOFTWARE (sysexits.h): an internal error, not the user's input


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def files_flag(parser: argparse.ArgumentParser, what: str) -> None:
    """`-f/--filename FILE`, repeatable and required, as kubectl spells it."""
    parser.add_argument(
        "-f",
        "--filename",
        dest="files",
        action="append",
        required=True,
        metavar="FILE",
        help=f"{what}; required",
    )


def policy_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", help="policy file (default: the built-in policy)")


def checked(
    flag: str, check: Callable[[str], str], value: str | None, default: str | None = None
) -> str:
    """`value` (or `default` when the flag was not given) passed through `check`;
    its `ValueError` becomes the one line `flag: reason`."""
    if value is None:
        assert default is not None
        return default
    try:
        return check(value)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from None


def notes(lines: list[str]) -> None:
    for line in lines:
        print(f"note: {line}", file=sys.stderr)


def documents(paths: list[str]) -> list[Any]:
    """Every document of the files (or `-`), or a `UsageError` for the first unreadable one."""
    from webhook.review import sources  # noqa: PLC0415 - keeps `serve` lean

    found = []
    inputs, lines = sources.expand(paths)
    notes(lines)
    for source in inputs:
        for document in sources.read(source):
            if isinstance(document, sources.InputProblem):
                raise UsageError(str(document))
            found.append(document.value)
    return found
