"""`review`: the dry run, the engine over manifests, with no cluster."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from webhook import files
from webhook.cli.common import (
    EXIT_CHANGED,
    EXIT_OK,
    EXIT_USAGE,
    checked,
    files_flag,
    notes,
    policy_flag,
)
from webhook.engine import DEFAULT_IMAGE, policy
from webhook.engine.admission import DEFAULT_NAMESPACE
from webhook.engine.errors import UsageError
from webhook.k8s import names

if TYPE_CHECKING:
    from webhook.review.documents import Options, ReviewedObject
    from webhook.review.selection import Selection


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "review",
        help="show what the webhook would do to manifests, with no cluster",
        description="Dry-run review: run the webhook's engine on Pods, workloads (their pod"
        " templates), AdmissionReviews and Lists, and show the result. Explanations, warnings"
        " and errors go to stderr, so -o yaml can be piped to kubectl apply -f -.",
    )
    parser.set_defaults(handler=run)
    _input_flags(parser)
    _output_flags(parser)


def _input_flags(parser: argparse.ArgumentParser) -> None:
    """What is reviewed, and as the webhook would see it where."""
    files_flag(
        parser,
        "a manifest file, a directory (its *.yaml, *.yml, *.json) or - for stdin; repeatable",
    )
    parser.add_argument(
        "-R",
        "--recursive",
        action="store_true",
        help="read directories given to -f and their subdirectories, as kubectl -R does",
    )
    policy_flag(parser)
    parser.add_argument(
        "--namespace-labels",
        metavar="K=V,...",
        help="the namespace's labels, to decide with the rendered webhook configuration"
        " as the apiserver does (default: every namespace is assumed selected)",
    )
    parser.add_argument(
        "--image",
        help="the image the webhook runs, which the init container runs in program mode"
        f" where the policy names none (default: {DEFAULT_IMAGE})",
    )
    parser.add_argument(
        "-n",
        "--namespace",
        default=DEFAULT_NAMESPACE,
        help="namespace of objects that name none (default: default)",
    )
    parser.add_argument(
        "--pod-security",
        choices=["baseline", "restricted"],
        default="baseline",
        help="restricted: review as for a namespace enforcing Pod Security restricted"
        " (no init container, securityContext only); default baseline",
    )


def _output_flags(parser: argparse.ArgumentParser) -> None:
    """What is shown, and the exit code."""
    parser.add_argument(
        "-o",
        "--output",
        choices=["diff", "patch", "yaml", "json"],
        default="diff",
        help="diff (default): a unified diff per changed object; patch: each object's JSON"
        " Patch for kubectl patch --type json; yaml/json: every document, the changed ones"
        " mutated",
    )
    parser.add_argument(
        "--exit-code",
        action="store_true",
        help="exit 1 when anything would change (a patch or a refusal), 0 when nothing would",
    )
    parser.add_argument(
        "--explain",
        action="store_true",
        help="one line per object on stderr: the rule and volume it fixes, or why not",
    )
    parser.add_argument(
        "--color",
        choices=["auto", "always", "never"],
        default="auto",
        help="colour diffs: auto (default) on a terminal unless NO_COLOR is set",
    )


def run(args: argparse.Namespace) -> int:
    from webhook.review import documents, sources  # noqa: PLC0415 - keeps `serve` lean

    inputs, lines = sources.expand(args.files, recursive=args.recursive)
    notes(lines)
    options = _options(args)
    items: list[ReviewedObject] = []
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
    bad = _explain(items, explain=args.explain) or bad
    _write(args, items, results, complete=not unreadable)
    if bad:
        return EXIT_USAGE
    if args.exit_code and any(item.changed for item in items):
        return EXIT_CHANGED
    return EXIT_OK


def _options(args: argparse.Namespace) -> Options:
    """The review's options from the flags: the policy, the image, the namespace's view."""
    from webhook.review import documents  # noqa: PLC0415

    loaded = files.load_policy(args.policy)
    if args.image is not None:
        loaded = loaded.with_program_image(checked("--image", names.image_reference, args.image))
    restricted = args.pod_security == "restricted"
    if args.explain and loaded.spec.namespace_selector and args.namespace_labels is None:
        notes(
            [
                "the policy's namespaceSelector"
                f" ({loaded.spec.namespace_selector.description}) is applied by the"
                " apiserver; the review assumes the namespace is selected"
                " (--namespace-labels checks it)"
            ]
        )
    return documents.Options(
        policy=loaded,
        namespace=args.namespace,
        restricted=restricted,
        selection=_selection(loaded, _labels(args.namespace_labels), restricted=restricted),
    )


def _explain(items: list[ReviewedObject], *, explain: bool) -> bool:
    """The explanations, refusals, errors and warnings on stderr; True when any failed."""
    from webhook.review import output  # noqa: PLC0415

    bad = False
    for item in items:
        if item.error:
            bad = True
            print(output.explain(item), file=sys.stderr)
        elif explain or (item.decision is not None and item.decision.outcome == "denied"):
            print(output.explain(item), file=sys.stderr)
        for warning in item.decision.warnings if item.decision else ():
            print(f"Warning: {item.label}: {warning}", file=sys.stderr)
    return bad


def _write(
    args: argparse.Namespace,
    items: list[ReviewedObject],
    results: list[tuple[Any, str]],
    *,
    complete: bool,
) -> None:
    from webhook.review import output  # noqa: PLC0415

    colour = args.color == "always" or (
        args.color == "auto" and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    )
    if args.output == "diff":
        sys.stdout.write(output.diff(items, colour=colour))
    elif args.output == "patch":
        sys.stdout.write(output.patches(items))
    elif complete:
        # NB: a stream with a document missing must not reach `kubectl apply`.
        if args.output == "yaml":
            sys.stdout.write(output.documents_yaml(results))
        else:
            sys.stdout.write(output.documents_json([value for value, _ in results]))


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


def _selection(
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
