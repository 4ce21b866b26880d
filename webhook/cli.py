"""The command line (SPEC §3): parse arguments, call the core, print.

Exit codes: 0 success, 2 bad input or usage, with one line on stderr naming
the file and what is wrong (never a traceback).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pydantic

from webhook import __version__, policy
from webhook.errors import UsageError

EXIT_OK = 0
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dify-volume-init",
        description="Mutating admission webhook that makes Dify's storage volumes writable"
        " by Dify's non-root containers.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    serve = commands.add_parser(
        "serve",
        help="run the HTTPS admission server",
        description="Run the HTTPS admission server. Every flag also reads the environment"
        " variable VOLUME_INIT_<FLAG> (e.g. VOLUME_INIT_PORT); flags win.",
    )
    serve.add_argument("--host", help="address to listen on (default 0.0.0.0)")
    serve.add_argument("--port", help="port to listen on (default 8443)")
    serve.add_argument(
        "--tls-cert",
        help="serving certificate, PEM (default certs/tls.crt; a development CA and"
        " certificate are generated in certs/ when both defaults are absent)",
    )
    serve.add_argument("--tls-key", help="serving key, PEM (default certs/tls.key)")
    serve.add_argument("--policy", help="policy file (default: the built-in policy)")
    serve.add_argument("--workers", help="server processes (default 1)")
    serve.add_argument("--log-format", choices=["json", "text"], help="default json")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--namespace", help="the webhook's own namespace, never mutated (default: its own)"
    )
    serve.add_argument("--service", help="Service name for development certificates")

    policy_cmd = commands.add_parser("policy", help="work with policy files")
    policy_sub = policy_cmd.add_subparsers(dest="policy_command", required=True)
    check = policy_sub.add_parser(
        "check", help="validate a policy file; errors name the line and the field"
    )
    check.add_argument("file", help="the policy file ('-' for standard input)")
    policy_sub.add_parser("default", help="print the built-in policy")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `dify-volume-init` and `python -m webhook`."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "policy":
            return _policy(args)
    except UsageError as exc:
        print(f"dify-volume-init: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    raise AssertionError(args.command)  # pragma: no cover - argparse requires a command


def _serve(args: argparse.Namespace) -> int:
    # NB: imported here so that `policy check` does not pay for uvicorn and FastAPI.
    from webhook import server  # noqa: PLC0415
    from webhook.settings import Settings  # noqa: PLC0415

    flags = {
        name: getattr(args, name)
        for name in (
            "host",
            "port",
            "tls_cert",
            "tls_key",
            "policy",
            "workers",
            "log_format",
            "log_level",
            "namespace",
            "service",
        )
        if getattr(args, name) is not None
    }
    try:
        settings = Settings(**flags)
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]) if error["loc"] else "settings"
        flag = "--" + name.replace("_", "-")
        env = "VOLUME_INIT_" + name.upper()
        raise UsageError(f"{flag} / {env}: {error['msg']}") from None
    server.serve(settings)
    return EXIT_OK


def _policy(args: argparse.Namespace) -> int:
    if args.policy_command == "default":
        sys.stdout.write(policy.default_policy_text())
        return EXIT_OK
    source = args.file
    if source == "-":
        text = sys.stdin.read()
        source = "<stdin>"
    else:
        text = policy.read_policy_text(Path(source))
    errors = policy.policy_errors(text, source=source)
    for line in errors:
        print(line, file=sys.stderr)
    if errors:
        return EXIT_USAGE
    loaded = policy.parse_policy(text, source=source)
    rules = ", ".join(rule.name for rule in loaded.spec.rules)
    print(f"{source}: valid ({len(loaded.spec.rules)} rule(s): {rules})")
    return EXIT_OK
