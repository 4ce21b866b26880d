"""`policy check` and `policy default`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from webhook import files
from webhook.cli.common import EXIT_OK, EXIT_USAGE
from webhook.engine import policy


def register(commands: Any) -> None:
    policy_cmd = commands.add_parser("policy", help="work with policy files")
    policy_sub = policy_cmd.add_subparsers(
        dest="policy_command", metavar="{check,default}", required=True
    )
    check = policy_sub.add_parser(
        "check", help="validate a policy file; errors name the line and the field"
    )
    check.add_argument("file", help="the policy file ('-' for standard input)")
    check.set_defaults(handler=check_file)
    policy_sub.add_parser("default", help="print the built-in policy").set_defaults(
        handler=print_default
    )


def print_default(args: argparse.Namespace) -> int:
    sys.stdout.write(policy.default_policy_text())
    return EXIT_OK


def check_file(args: argparse.Namespace) -> int:
    text = files.read_policy_text(args.file)
    source = files.STDIN if args.file == "-" else args.file
    errors = policy.policy_errors(text, source=source)
    for line in errors:
        print(line, file=sys.stderr)
    if errors:
        return EXIT_USAGE
    loaded = policy.parse_policy(text, source=source)
    rules = ", ".join(rule.name for rule in loaded.spec.rules)
    print(f"{source}: valid ({len(loaded.spec.rules)} rule(s): {rules})")
    print(f"selection {policy.selection_fingerprint(loaded)}: {_selection(loaded)}")
    return EXIT_OK


def _selection(loaded: policy.Policy) -> str:
    """What the webhook configuration rendered from `loaded` selects, in one line."""
    selectors = " | ".join(s.description for r in loaded.spec.rules for s in r.pod_selectors)
    excluded = ", ".join(loaded.spec.exclude_namespaces) or "none"
    opt_in = loaded.spec.namespace_selector
    return (
        f"pods matching {selectors}; namespaces excluded: {excluded} and the webhook's own"
        + (f"; only namespaces matching {opt_in.description}" if opt_in else "")
        + (
            "; namespaces with no Pod Security enforce label get the restricted answer"
            if loaded.spec.pod_security.cluster_default == "restricted"
            else ""
        )
    )
