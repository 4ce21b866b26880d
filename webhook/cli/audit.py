"""`audit`: live pods the policy would have patched (or refused) that carry no status."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from webhook import files
from webhook.cli.common import EXIT_CHANGED, EXIT_OK, checked, documents, files_flag, policy_flag
from webhook.engine import PRODUCT
from webhook.engine.errors import InvalidObject, UsageError
from webhook.k8s import names

ASSUMED_SELECTION = (
    "selection assumed: without --namespaces FILE (kubectl get namespaces -o json) every"
    " namespace counts as selected and not enforcing Pod Security restricted, so some pods"
    " listed may never be sent to the webhook"
)


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "audit",
        help="list live pods the policy would have patched but that carry no status annotation",
        description="Read live pods as `kubectl get pods -A -o json` (or -o yaml) prints them"
        " and list each pod the policy would have patched (or refused) that carries no"
        " status annotation, with its owning workload, then the command per workload that"
        " replaces them with patched pods. Exit 1 when any, 0 when none, 2 on bad input.",
    )
    parser.set_defaults(handler=run)
    files_flag(parser, "the output of `kubectl get pods -A -o json` (a file, or - for stdin)")
    policy_flag(parser)
    parser.add_argument(
        "--namespaces",
        metavar="FILE",
        help="the output of `kubectl get namespaces -o json`: leave out pods the apiserver"
        " would never send (excluded, inject=disabled, outside the opt-in selector) and judge"
        " pods in namespaces enforcing Pod Security restricted as the restricted entry does;"
        " default none (every namespace assumed selected)",
    )
    parser.add_argument(
        "--webhook-namespace",
        default=PRODUCT,
        help=f"the webhook's own namespace, never patched; default {PRODUCT}",
    )


def run(args: argparse.Namespace) -> int:
    from webhook.install import manifests  # noqa: PLC0415
    from webhook.review import audit  # noqa: PLC0415 - keeps `serve` lean
    from webhook.review.selection import Selection  # noqa: PLC0415

    loaded = files.load_policy(args.policy)
    webhook_namespace = checked("--webhook-namespace", names.dns_label, args.webhook_namespace)
    what = ", ".join(files.STDIN if f == "-" else f for f in args.files)
    selection = None
    if args.namespaces is not None:
        try:
            labels = audit.namespace_labels(documents([args.namespaces]))
        except InvalidObject as exc:
            raise UsageError(f"{args.namespaces}: {exc}") from None
        configuration = manifests.webhook_configuration(loaded, namespace=webhook_namespace)
        selection = Selection(configuration["webhooks"], labels)
    try:
        live = audit.pods(documents(args.files))
        findings = audit.audit(
            live, loaded, webhook_namespace=webhook_namespace, selection=selection
        )
    except InvalidObject as exc:
        raise UsageError(f"{what}: {exc}") from None
    if selection is None:
        print(f"note: {ASSUMED_SELECTION}", file=sys.stderr)
    sys.stdout.write(audit.report(findings))
    return EXIT_CHANGED if findings else EXIT_OK
