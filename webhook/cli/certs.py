"""`certs`: the CA and serving certificate files, renewal and CA rotation."""

from __future__ import annotations

import argparse
import base64
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from webhook.cli.common import EXIT_OK, checked
from webhook.engine import PRODUCT
from webhook.engine.errors import UsageError
from webhook.k8s import names

if TYPE_CHECKING:
    from webhook.certs.rotation import Request


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "certs",
        help="write, renew or rotate the webhook's CA and serving certificate",
        description="Write ca.crt, ca.key, tls.crt and tls.key (ECDSA P-256; keys 0600) for"
        " <service>.<namespace>.svc and its other names; run again (or with --renew) to renew"
        " the serving certificate from the same CA, so the webhook configuration's caBundle"
        " stays valid. --rotate-ca moves to a new CA in three steps with overlap. Says on"
        " stderr what it wrote, which file the caBundle must hold (`manifests --ca-bundle"
        " FILE`) and what to do next.",
    )
    parser.set_defaults(handler=run)
    _subject_flags(parser)
    _step_flags(parser)
    parser.add_argument(
        "--lock-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for another `certs` working on --out-dir; default 30",
    )
    parser.add_argument(
        "--print-ca-bundle",
        action="store_true",
        help="only print the caBundle the webhook configuration must hold now (base64, on"
        " stdout) and write nothing; goes alone, with --out-dir",
    )


def _subject_flags(parser: argparse.ArgumentParser) -> None:
    """What the serving certificate is for, where it goes, for how long."""
    parser.add_argument(
        "--service", help=f"Service name (default: kept from tls.crt, else {PRODUCT})"
    )
    parser.add_argument(
        "-n",
        "--namespace",
        "--webhook-namespace",
        dest="namespace",
        help=f"its namespace, the webhook's own (default: kept from tls.crt, else {PRODUCT})",
    )
    parser.add_argument("--out-dir", default="certs", help="the directory (default certs/)")
    parser.add_argument(
        "--days",
        type=int,
        default=365,
        help="serving certificate lifetime in days; default 365, the most",
    )


def _step_flags(parser: argparse.ArgumentParser) -> None:
    """Which step (issue or renew, rotate, start over) and with which CA."""
    step = parser.add_mutually_exclusive_group()
    step.add_argument(
        "--renew",
        action="store_true",
        help="only renew the serving certificate from the CA in --out-dir (refused if none)",
    )
    step.add_argument(
        "--rotate-ca",
        nargs="?",
        const="start",
        metavar="STEP",
        help="CA rotation with overlap, one step per run: start (default; a new CA and a"
        " caBundle of old and new), switch (the serving certificate from the new CA),"
        " finish (the old CA dropped)",
    )
    step.add_argument(
        "--force",
        action="store_true",
        help="start over with a new CA: breaks the caBundle in place until it is replaced",
    )
    parser.add_argument(
        "--ca-cert",
        metavar="FILE",
        help="sign with this CA (an organisation's; PEM, with --ca-key);"
        " default: the CA kept in --out-dir",
    )
    parser.add_argument(
        "--ca-key",
        metavar="FILE",
        help="the key of --ca-cert (PEM, unencrypted; never copied); default none",
    )


def run(args: argparse.Namespace) -> int:
    from webhook.certs import pki, rotation, store  # noqa: PLC0415

    directory = Path(args.out_dir)
    if not 0 <= args.lock_timeout <= 3600:  # NB: also refuses nan, which would wait forever
        raise UsageError("--lock-timeout must be between 0 and 3600 seconds")
    if args.print_ca_bundle:
        return _print_ca_bundle(args, directory)
    request = _request(args, directory)
    service, namespace = _subject(args)
    with store.locked(directory, timeout=args.lock_timeout) as recovered:
        for line in recovered:
            print(line, file=sys.stderr)
        if service is not None or namespace is not None:
            # NB: the one not given is kept from the serving certificate in place.
            kept_service, kept_namespace = rotation.service_in_place(directory)
            dns_names = pki.service_names(service or kept_service, namespace or kept_namespace)
            request = dataclasses.replace(request, dns_names=dns_names)
        if args.rotate_ca is not None:
            outcome = rotation.rotate(request, args.rotate_ca)
        elif args.force:
            outcome = rotation.start_over(request)
        else:
            outcome = rotation.issue(request, renew_only=args.renew)
    for path in outcome.written:
        print(f"wrote {path}", file=sys.stderr)
    for path in outcome.removed:
        print(f"removed {path}", file=sys.stderr)
    for line in outcome.lines:
        print(line, file=sys.stderr)
    return EXIT_OK


def _subject(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """`--service` and `--namespace`, checked; None where not given."""
    service = (
        None if args.service is None else checked("--service", names.service_name, args.service)
    )
    namespace = (
        None if args.namespace is None else checked("--namespace", names.dns_label, args.namespace)
    )
    return service, namespace


def _request(args: argparse.Namespace, directory: Path) -> Request:
    """The checked flags as a `rotation.Request`; its names are filled in under the
    lock, from `_subject` and the certificate in place."""
    from webhook.certs import pki, rotation  # noqa: PLC0415

    if (args.ca_cert is None) != (args.ca_key is None):
        raise UsageError("--ca-cert and --ca-key go together")
    if not 1 <= args.days <= pki.LEAF_MAX_DAYS:
        raise UsageError(f"--days must be between 1 and {pki.LEAF_MAX_DAYS}")
    given = given_pem = None
    if args.ca_cert is not None:
        given = pki.load_authority(Path(args.ca_cert), Path(args.ca_key))
        given_pem = pki.read_ca_bundle(Path(args.ca_cert))
    return rotation.Request(
        directory, None, days=args.days, given=given, given_pem=given_pem or b""
    )


def _print_ca_bundle(args: argparse.Namespace, directory: Path) -> int:
    from webhook.certs import pki, rotation, store  # noqa: PLC0415

    steps = ("renew", "rotate_ca", "force", "ca_cert", "ca_key", "service", "namespace")
    mixed = [s for s in steps if getattr(args, s) not in (None, False)]
    if mixed:
        flag = "--" + mixed[0].replace("_", "-")
        raise UsageError(
            f"--print-ca-bundle only prints the caBundle in force and writes nothing;"
            f" run the step ({flag}) first, then --print-ca-bundle alone"
        )
    with store.locked(directory, timeout=args.lock_timeout, recover=False):
        bundle = pki.read_ca_bundle(rotation.bundle_in_force(directory))
    print(base64.b64encode(bundle).decode("ascii"))
    return EXIT_OK
