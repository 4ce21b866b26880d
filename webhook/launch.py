"""The `dify-volume-init` console script: `fix-ownership` runs with the standard library
alone (it starts with every Dify pod); every other command loads the full command line."""

from __future__ import annotations

import sys


def main() -> int:
    if sys.argv[1:2] == ["fix-ownership"]:
        from webhook import fixer  # noqa: PLC0415 - nothing else loaded

        return fixer.main(sys.argv[2:])
    from webhook import cli  # noqa: PLC0415

    return cli.main()
