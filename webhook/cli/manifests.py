"""`manifests`: every object of the install, derived from the policy."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from webhook import files
from webhook.cli.common import EXIT_OK, checked, policy_flag
from webhook.engine import DEFAULT_IMAGE, PRODUCT, policy
from webhook.k8s import names

NO_CA_BUNDLE = (
    "no --ca-bundle: the webhook configuration has no caBundle, so the apiserver cannot"
    " verify the webhook's certificate and every call fails: with failurePolicy Ignore,"
    " pods are admitted unpatched until one is set (give --ca-bundle DIR/ca.crt from"
    " `certs`, or --cert-manager)"
)


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "manifests",
        help="print the deployment YAML (the same objects as deploy/)",
        description="Print every object of the install: Namespace, ServiceAccount, the policy"
        " ConfigMap, Deployment, PodDisruptionBudget, Service and the"
        " MutatingWebhookConfiguration, whose object selection is derived from the policy.",
    )
    parser.set_defaults(handler=run)
    policy_flag(parser)
    parser.add_argument(
        "-n",
        "--namespace",
        "--webhook-namespace",
        dest="namespace",
        default=PRODUCT,
        help=f"the namespace of the objects: the webhook's own; default {PRODUCT}",
    )
    parser.add_argument("--image", help="webhook image (default: the release image)")
    tls_source = parser.add_mutually_exclusive_group()
    tls_source.add_argument(
        "--ca-bundle",
        metavar="FILE",
        help="CA certificate(s) (PEM) that signed the serving certificate; default none"
        " (the caBundle is left out)",
    )
    tls_source.add_argument(
        "--cert-manager",
        action="store_true",
        help="add a cert-manager Issuer and Certificate, and let cert-manager inject the CA",
    )


def run(args: argparse.Namespace) -> int:
    from webhook.install import manifests  # noqa: PLC0415

    namespace = checked("--namespace", names.dns_label, args.namespace)
    image = checked("--image", names.image_reference, args.image, DEFAULT_IMAGE)
    if args.policy:
        text = files.read_policy_text(Path(args.policy))
        loaded = policy.parse_policy(text, source=args.policy)
    else:
        text = policy.default_policy_text()
        loaded = policy.default_policy()
    ca_bundle = None
    if not args.ca_bundle and not args.cert_manager:
        print(f"note: {NO_CA_BUNDLE}", file=sys.stderr)
    if args.ca_bundle:
        from webhook.certs import pki  # noqa: PLC0415

        ca_bundle = pki.read_ca_bundle(Path(args.ca_bundle))
    found = manifests.objects(
        loaded,
        text,
        namespace=namespace,
        image=image,
        ca_bundle=ca_bundle,
        cert_manager=args.cert_manager,
    )
    sys.stdout.write(manifests.to_yaml(found))
    return EXIT_OK
