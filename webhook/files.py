"""The files a user gives the product, read: the one place the shells do file I/O for them.

The engine is pure (text in, values out); the command line and the server
read the policy file here and hand its text to `policy.parse_policy`. Every
failure is a one-line `UsageError` naming the file.
"""

from __future__ import annotations

from pathlib import Path

from webhook.engine import policy
from webhook.engine.errors import PolicyError


def load_policy(path: str | Path | None) -> policy.Policy:
    """The policy in the file at `path`, or the built-in one when `path` is None."""
    if path is None:
        return policy.default_policy()
    return policy.parse_policy(read_policy_text(path), source=str(path))


def read_policy_text(path: str | Path) -> str:
    """The text of a policy file; unreadable files raise a one-line `PolicyError`."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise PolicyError(f"{path}: policy file not found") from None
    except IsADirectoryError:
        raise PolicyError(f"{path}: is a directory, not a policy file") from None
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read policy file: {exc.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{path}: not UTF-8 text (byte {exc.start})") from None
