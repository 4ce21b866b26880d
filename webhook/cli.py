"""The command line (README: commands): parse arguments, call the core, print.

Exit codes: 0 success; 1 `review --exit-code` found changes; 2 bad input or
usage, with one line on stderr naming the file and what is wrong (never a
traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args, get_origin

import pydantic

from webhook import __version__, files
from webhook.engine import DEFAULT_IMAGE, PRODUCT, limits, policy
from webhook.engine.admission import DEFAULT_NAMESPACE
from webhook.engine.errors import InvalidObject, UsageError
from webhook.k8s import names as k8s_names

if TYPE_CHECKING:
    from webhook.review.selection import Selection

EXIT_OK = 0
EXIT_CHANGED = 1
EXIT_USAGE = 2
NO_CA_BUNDLE = (
    "no --ca-bundle: the webhook configuration has no caBundle, so the apiserver cannot"
    " verify the webhook's certificate and every call fails: with failurePolicy Ignore,"
    " pods are admitted unpatched until one is set (give --ca-bundle DIR/ca.crt from"
    " `certs`, or --cert-manager)"
)
ASSUMED_SELECTION = (
    "selection assumed: without --namespaces FILE (kubectl get namespaces -o json) every"
    " namespace counts as selected and not enforcing Pod Security restricted, so some pods"
    " listed may never be sent to the webhook"
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _settings_flags(serve: argparse.ArgumentParser) -> None:
    """One flag per field of the settings model: its name, choices, default and help."""
    from webhook.serving.settings import Settings  # noqa: PLC0415 - pydantic-settings only

    for name, field in Settings.model_fields.items():
        choices = get_args(field.annotation) if get_origin(field.annotation) is Literal else None
        default = "; default none" if field.default in (None, "") else f"; default {field.default}"
        serve.add_argument(
            "--" + name.replace("_", "-"),
            choices=choices,
            help=f"{field.description}{default}; env VOLUME_INIT_{name.upper()}",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PRODUCT,
        description="Mutating admission webhook that makes Dify's storage volumes writable"
        " by Dify's non-root containers.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    _serve_command(commands)
    _review_command(commands)
    _certs_command(commands)
    _manifests_command(commands)
    _policy_command(commands)
    _audit_command(commands)
    _fix_ownership_command(commands)
    return parser


def _serve_command(commands: Any) -> None:
    """`serve`: the HTTPS admission server; its flags come from the settings model."""
    serve = commands.add_parser(
        "serve",
        help="run the HTTPS admission server",
        description="Run the HTTPS admission server. Every flag also reads the environment"
        " variable VOLUME_INIT_<FLAG> (e.g. VOLUME_INIT_PORT); flags win.",
    )
    _settings_flags(serve)


def _files_flag(parser: argparse.ArgumentParser, what: str) -> None:
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


def _review_command(commands: Any) -> None:
    """`review`: the dry run over manifests."""
    review = commands.add_parser(
        "review",
        help="show what the webhook would do to manifests, with no cluster",
        description="Dry-run review: run the webhook's engine on Pods, workloads (their pod"
        " templates), AdmissionReviews and Lists, and show the result. Explanations, warnings"
        " and errors go to stderr, so -o yaml can be piped to kubectl apply -f -.",
    )
    _files_flag(
        review,
        "a manifest file, a directory (its *.yaml, *.yml, *.json) or - for stdin; repeatable",
    )
    review.add_argument(
        "-R",
        "--recursive",
        action="store_true",
        help="read directories given to -f and their subdirectories, as kubectl -R does",
    )
    review.add_argument("--policy", help="policy file (default: the built-in policy)")
    review.add_argument(
        "--namespace-labels",
        metavar="K=V,...",
        help="the namespace's labels, to decide with the rendered webhook configuration"
        " as the apiserver does (default: every namespace is assumed selected)",
    )
    review.add_argument(
        "--image",
        help="the image the webhook runs, which the init container runs in program mode"
        f" where the policy names none (default: {DEFAULT_IMAGE})",
    )
    review.add_argument(
        "-n",
        "--namespace",
        default=DEFAULT_NAMESPACE,
        help="namespace of objects that name none (default: default)",
    )
    review.add_argument(
        "-o",
        "--output",
        choices=["diff", "patch", "yaml", "json"],
        default="diff",
        help="diff (default): a unified diff per changed object; patch: each object's JSON"
        " Patch for kubectl patch --type json; yaml/json: every document, the changed ones"
        " mutated",
    )
    review.add_argument(
        "--pod-security",
        choices=["baseline", "restricted"],
        default="baseline",
        help="restricted: review as for a namespace enforcing Pod Security restricted"
        " (no init container, securityContext only); default baseline",
    )
    review.add_argument(
        "--exit-code",
        action="store_true",
        help="exit 1 when anything would change (a patch or a refusal), 0 when nothing would",
    )
    review.add_argument(
        "--explain",
        action="store_true",
        help="one line per object on stderr: the rule and volume it fixes, or why not",
    )
    review.add_argument(
        "--color",
        choices=["auto", "always", "never"],
        default="auto",
        help="colour diffs: auto (default) on a terminal unless NO_COLOR is set",
    )


def _certs_command(commands: Any) -> None:
    """`certs`: the CA and serving certificate files, renewal and CA rotation."""
    certs_cmd = commands.add_parser(
        "certs",
        help="write, renew or rotate the webhook's CA and serving certificate",
        description="Write ca.crt, ca.key, tls.crt and tls.key (ECDSA P-256; keys 0600) for"
        " <service>.<namespace>.svc and its other names; run again (or with --renew) to renew"
        " the serving certificate from the same CA, so the webhook configuration's caBundle"
        " stays valid. --rotate-ca moves to a new CA in three steps with overlap. Says on"
        " stderr what it wrote, which file the caBundle must hold (`manifests --ca-bundle"
        " FILE`) and what to do next.",
    )
    certs_cmd.add_argument(
        "--service", help=f"Service name (default: kept from tls.crt, else {PRODUCT})"
    )
    certs_cmd.add_argument(
        "-n",
        "--namespace",
        "--webhook-namespace",
        dest="namespace",
        help=f"its namespace, the webhook's own (default: kept from tls.crt, else {PRODUCT})",
    )
    certs_cmd.add_argument("--out-dir", default="certs", help="the directory (default certs/)")
    certs_cmd.add_argument(
        "--days",
        type=int,
        default=365,
        help="serving certificate lifetime in days; default 365, the most",
    )
    step = certs_cmd.add_mutually_exclusive_group()
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
    certs_cmd.add_argument(
        "--ca-cert",
        metavar="FILE",
        help="sign with this CA (an organisation's; PEM, with --ca-key);"
        " default: the CA kept in --out-dir",
    )
    certs_cmd.add_argument(
        "--ca-key",
        metavar="FILE",
        help="the key of --ca-cert (PEM, unencrypted; never copied); default none",
    )
    certs_cmd.add_argument(
        "--lock-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for another `certs` working on --out-dir; default 30",
    )
    certs_cmd.add_argument(
        "--print-ca-bundle",
        action="store_true",
        help="only print the caBundle the webhook configuration must hold now (base64, on"
        " stdout) and write nothing; goes alone, with --out-dir",
    )


def _manifests_command(commands: Any) -> None:
    """`manifests`: the deployment objects."""
    manifests_cmd = commands.add_parser(
        "manifests",
        help="print the deployment YAML (the same objects as deploy/)",
        description="Print every object of the install: Namespace, ServiceAccount, the policy"
        " ConfigMap, Deployment, PodDisruptionBudget, Service and the"
        " MutatingWebhookConfiguration, whose object selection is derived from the policy.",
    )
    manifests_cmd.add_argument("--policy", help="policy file (default: the built-in policy)")
    manifests_cmd.add_argument(
        "-n",
        "--namespace",
        "--webhook-namespace",
        dest="namespace",
        default=PRODUCT,
        help=f"the namespace of the objects: the webhook's own; default {PRODUCT}",
    )
    manifests_cmd.add_argument("--image", help="webhook image (default: the release image)")
    tls_source = manifests_cmd.add_mutually_exclusive_group()
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


def _policy_command(commands: Any) -> None:
    """`policy check` and `policy default`."""
    policy_cmd = commands.add_parser("policy", help="work with policy files")
    policy_sub = policy_cmd.add_subparsers(
        dest="policy_command", metavar="{check,default}", required=True
    )
    check = policy_sub.add_parser(
        "check", help="validate a policy file; errors name the line and the field"
    )
    check.add_argument("file", help="the policy file ('-' for standard input)")
    policy_sub.add_parser("default", help="print the built-in policy")


def _fix_ownership_command(commands: Any) -> None:
    """`fix-ownership`: listed here for --help; its own parser is webhook/fixer.py's (the
    console script goes straight there, with the standard library alone)."""
    commands.add_parser(
        "fix-ownership",
        help="give volume directories to the app's user, as the init container does",
        description="fix-ownership --owner UID:GID [--flag NAME] [--parallel N] [--] PATH...:"
        " the init container's ownership fix, usable by hand (standard library only)",
        add_help=False,
    )


def _audit_command(commands: Any) -> None:
    """`audit`: live pods the policy would have patched, unpatched."""
    audit = commands.add_parser(
        "audit",
        help="list live pods the policy would have patched but that carry no status annotation",
        description="Read live pods as `kubectl get pods -A -o json` (or -o yaml) prints them"
        " and list each pod the policy would have patched (or refused) that carries no"
        " status annotation, with its owning workload, then the command per workload that"
        " replaces them with patched pods. Exit 1 when any, 0 when none, 2 on bad input.",
    )
    _files_flag(audit, "the output of `kubectl get pods -A -o json` (a file, or - for stdin)")
    audit.add_argument("--policy", help="policy file (default: the built-in policy)")
    audit.add_argument(
        "--namespaces",
        metavar="FILE",
        help="the output of `kubectl get namespaces -o json`: leave out pods the apiserver"
        " would never send (excluded, inject=disabled, outside the opt-in selector) and judge"
        " pods in namespaces enforcing Pod Security restricted as the restricted entry does;"
        " default none (every namespace assumed selected)",
    )
    audit.add_argument(
        "--webhook-namespace",
        default=PRODUCT,
        help=f"the webhook's own namespace, never patched; default {PRODUCT}",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `dify-volume-init` and `python -m webhook`."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["fix-ownership"]:  # NB: its own parser (webhook/launch.py)
        from webhook import fixer  # noqa: PLC0415

        return fixer.main(arguments[1:])
    args = build_parser().parse_args(arguments)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "policy":
            return _policy(args)
        if args.command == "review":
            return _review(args)
        if args.command == "certs":
            return _certs(args)
        if args.command == "manifests":
            return _manifests(args)
        if args.command == "audit":
            return _audit(args)
    except UsageError as exc:
        print(f"{PRODUCT}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except (
        RecursionError,
        MemoryError,
        ValueError,
        TypeError,
        LookupError,
        AttributeError,
        OSError,
    ) as exc:
        # NB: the last resort: every input is meant to be refused above with its own
        # line; one that gets here still gets one line and exit 2, never a traceback
        # (exit 1 is `review --exit-code`'s "would change").
        if os.environ.get("VOLUME_INIT_DEBUG"):
            raise
        print(f"{PRODUCT}: {_last_resort(exc)}", file=sys.stderr)
        return EXIT_USAGE
    raise AssertionError(args.command)  # pragma: no cover - argparse requires a command


def _last_resort(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return f"the input is nested too deeply (the limit is {limits.MAX_NESTING} levels)"
    if isinstance(exc, MemoryError):
        return "out of memory reading the input"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename or 'output'}: {exc.strerror}"
    return (
        "the input has a value this command cannot handle; please report it with the"
        " input (VOLUME_INIT_DEBUG=1 shows where it failed)"
    )


def _audit(args: argparse.Namespace) -> int:
    from webhook.install import manifests  # noqa: PLC0415
    from webhook.review import audit  # noqa: PLC0415 - keeps `serve` lean
    from webhook.review.selection import Selection  # noqa: PLC0415

    loaded = files.load_policy(args.policy)
    webhook_namespace = _checked("--webhook-namespace", k8s_names.dns_label, args.webhook_namespace)
    what = ", ".join(files.STDIN if f == "-" else f for f in args.files)
    selection = None
    if args.namespaces is not None:
        try:
            labels = audit.namespace_labels(_documents([args.namespaces]))
        except InvalidObject as exc:
            raise UsageError(f"{args.namespaces}: {exc}") from None
        configuration = manifests.webhook_configuration(loaded, namespace=webhook_namespace)
        selection = Selection(configuration["webhooks"], labels)
    try:
        live = audit.pods(_documents(args.files))
        findings = audit.audit(
            live, loaded, webhook_namespace=webhook_namespace, selection=selection
        )
    except InvalidObject as exc:
        raise UsageError(f"{what}: {exc}") from None
    if selection is None:
        print(f"note: {ASSUMED_SELECTION}", file=sys.stderr)
    sys.stdout.write(audit.report(findings))
    return 1 if findings else EXIT_OK


def _documents(paths: list[str]) -> list[Any]:
    """Every document of the files (or `-`), or a `UsageError` for the first unreadable one."""
    from webhook.review import sources  # noqa: PLC0415

    documents = []
    inputs, notes = sources.expand(paths)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    for source in inputs:
        for document in sources.read(source):
            if isinstance(document, sources.InputProblem):
                raise UsageError(str(document))
            documents.append(document.value)
    return documents


def _labels(text: str | None) -> dict[str, str] | None:
    """`K=V,...` as a mapping; None when not given."""
    if text is None:
        return None
    labels: dict[str, str] = {}
    for pair in filter(None, (part.strip() for part in text.split(","))):
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise UsageError(f"--namespace-labels: {pair!r} is not KEY=VALUE")
        labels[key] = value
    return labels


def _review_selection(
    loaded: policy.Policy, labels: dict[str, str] | None, *, restricted: bool
) -> Selection | None:
    """With `--namespace-labels`, the entries `manifests` renders and those labels, so
    `review` decides which pods are sent, and to which entry, as the apiserver does
    (`--pod-security restricted` adds the enforce label when the labels lack one)."""
    if labels is None:
        return None
    from webhook.install import manifests  # noqa: PLC0415
    from webhook.review.selection import ENFORCE_LABEL, Selection  # noqa: PLC0415

    if restricted:
        labels = {ENFORCE_LABEL: "restricted", **labels}
    configuration = manifests.webhook_configuration(loaded)
    return Selection(configuration["webhooks"], {}, other_labels=labels)


def _serve(args: argparse.Namespace) -> int:
    # NB: imported here so that `policy check` does not pay for uvicorn and FastAPI.
    from webhook.serving import server  # noqa: PLC0415
    from webhook.serving.settings import Settings  # noqa: PLC0415

    flags = {
        name: getattr(args, name)
        for name in Settings.model_fields
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
    selectors = " | ".join(s.description for r in loaded.spec.rules for s in r.pod_selectors)
    excluded = ", ".join(loaded.spec.exclude_namespaces) or "none"
    opt_in = loaded.spec.namespace_selector
    print(
        f"selection {policy.selection_fingerprint(loaded)}: pods matching {selectors};"
        f" namespaces excluded: {excluded} and the webhook's own"
        + (f"; only namespaces matching {opt_in.description}" if opt_in else "")
        + (
            "; namespaces with no Pod Security enforce label get the restricted answer"
            if loaded.spec.pod_security.cluster_default == "restricted"
            else ""
        )
    )
    return EXIT_OK


def _review(args: argparse.Namespace) -> int:
    from webhook.review import documents, output, sources  # noqa: PLC0415 - keeps `serve` lean

    inputs, notes = sources.expand(args.files, recursive=args.recursive)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    loaded = files.load_policy(args.policy)
    if args.image is not None:
        loaded = loaded.with_program_image(
            _checked("--image", k8s_names.image_reference, args.image)
        )
    restricted = args.pod_security == "restricted"
    options = documents.Options(
        policy=loaded,
        namespace=args.namespace,
        restricted=restricted,
        selection=_review_selection(loaded, _labels(args.namespace_labels), restricted=restricted),
    )
    if args.explain and loaded.spec.namespace_selector and args.namespace_labels is None:
        print(
            "note: the policy's namespaceSelector"
            f" ({loaded.spec.namespace_selector.description}) is applied by the apiserver;"
            " the review assumes the namespace is selected (--namespace-labels checks it)",
            file=sys.stderr,
        )
    items: list[documents.ReviewedObject] = []
    results: list[tuple[Any, str]] = []
    bad = unreadable = False
    for source in inputs:
        for document in sources.read(source):
            if isinstance(document, sources.InputProblem):
                print(document, file=sys.stderr)
                bad = unreadable = True
                continue
            for warning in document.warnings:
                print(warning, file=sys.stderr)
            reviewed = documents.review(
                document.value, options, source=document.source, line=document.line
            )
            unchanged = reviewed.result is document.value
            results.append((reviewed.result, document.text if unchanged else ""))
            items.extend(reviewed.flat())
    for item in items:
        if item.error:
            bad = True
            print(output.explain(item), file=sys.stderr)
        elif args.explain or (item.decision is not None and item.decision.outcome == "denied"):
            print(output.explain(item), file=sys.stderr)
        for warning in item.decision.warnings if item.decision else ():
            print(f"Warning: {item.label}: {warning}", file=sys.stderr)
    colour = args.color == "always" or (
        args.color == "auto" and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    )
    if args.output == "diff":
        sys.stdout.write(output.diff(items, colour=colour))
    elif args.output == "patch":
        sys.stdout.write(output.patches(items))
    elif not unreadable:
        # NB: a stream with a document missing must not reach `kubectl apply`.
        if args.output == "yaml":
            sys.stdout.write(output.documents_yaml(results))
        else:
            sys.stdout.write(output.documents_json([value for value, _ in results]))
    if bad:
        return EXIT_USAGE
    if args.exit_code and any(item.changed for item in items):
        return EXIT_CHANGED
    return EXIT_OK


def _certs(args: argparse.Namespace) -> int:
    import base64  # noqa: PLC0415

    from webhook.certs import pki, rotation, store  # noqa: PLC0415

    directory = Path(args.out_dir)
    if not 0 <= args.lock_timeout <= 3600:  # NB: also refuses nan, which would wait forever
        raise UsageError("--lock-timeout must be between 0 and 3600 seconds")
    if args.print_ca_bundle:
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
    if (args.ca_cert is None) != (args.ca_key is None):
        raise UsageError("--ca-cert and --ca-key go together")
    if not 1 <= args.days <= pki.LEAF_MAX_DAYS:
        raise UsageError(f"--days must be between 1 and {pki.LEAF_MAX_DAYS}")
    given = given_pem = None
    if args.ca_cert is not None:
        given = pki.load_authority(Path(args.ca_cert), Path(args.ca_key))
        given_pem = pki.read_ca_bundle(Path(args.ca_cert))
    service = (
        None
        if args.service is None
        else _checked("--service", k8s_names.service_name, args.service)
    )
    namespace = (
        None
        if args.namespace is None
        else _checked("--namespace", k8s_names.dns_label, args.namespace)
    )
    with store.locked(directory, timeout=args.lock_timeout) as recovered:
        for line in recovered:
            print(line, file=sys.stderr)
        names = None
        if service is not None or namespace is not None:
            # NB: the one not given is kept from the serving certificate in place.
            kept_service, kept_namespace = rotation.service_in_place(directory)
            names = pki.service_names(service or kept_service, namespace or kept_namespace)
        request = rotation.Request(
            directory, names, days=args.days, given=given, given_pem=given_pem or b""
        )
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


def _checked(
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


def _manifests(args: argparse.Namespace) -> int:
    from webhook.install import manifests  # noqa: PLC0415

    namespace = _checked("--namespace", k8s_names.dns_label, args.namespace)
    image = _checked("--image", k8s_names.image_reference, args.image, DEFAULT_IMAGE)

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
    sys.stdout.write(
        manifests.to_yaml(
            manifests.objects(
                loaded,
                text,
                namespace=namespace,
                image=image,
                ca_bundle=ca_bundle,
                cert_manager=args.cert_manager,
            )
        )
    )
    return EXIT_OK
