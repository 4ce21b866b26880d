"""The cluster-wide policy (docs/design.md#the-policy): its schema, its validation and its loading.

A policy says which pods to fix (label selectors), which of their volumes (by
mount path), for which owner (user/group) and with which init container. It is
a frozen pydantic model built from YAML; the YAML field names are the contract
users and their tools write, so unknown fields are refused rather than ignored,
and every error names the file, the line and the field.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from decimal import Decimal
from importlib import resources
from typing import Annotated, Any, Literal

import pydantic
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

from webhook.engine import hostpaths, images, yamlfile
from webhook.engine.errors import PolicyError

MAX_ID = 2_147_483_647

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUANTITY = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+))([eE][+-]?\d+|[KMGTPE]i|[numkMGTPE])?$")
_SUFFIXES = {
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{
        s: Decimal(10) ** e
        for s, e in zip("numkMGTPE", (-9, -6, -3, 3, 6, 9, 12, 15, 18), strict=True)
    },
    "": Decimal(1),
}
# The container resources Kubernetes knows by a bare name; any other must be an
# extended resource, `domain/name` outside kubernetes.io (validateResourceName).
_STANDARD_RESOURCES = ("cpu", "memory", "ephemeral-storage")


def shown(value: object, limit: int = 64) -> str:
    """`value` quoted for a message, cut to `limit` characters: a 100 KB label value
    is named, not echoed."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def _label_key(key: str) -> str:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        raise ValueError(f"label key {shown(key)}: prefix must be a DNS subdomain")
    if not _LABEL_NAME.match(name):
        raise ValueError(
            f"label key {shown(key)}: name must be 1-63 alphanumerics, '-', '_' or '.',"
            " starting and ending with an alphanumeric"
        )
    return key


def _label_value(value: str) -> str:
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        raise ValueError(
            f"label value {shown(value)} must be at most 63 alphanumerics, '-', '_' or '.',"
            " starting and ending with an alphanumeric"
        )
    return value


def _absolute_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"{shown(value)} must be an absolute path (starting with '/')")
    if "\x00" in value:
        raise ValueError("a path cannot contain a NUL character")
    return hostpaths.normalize(value)


def _mount_path(value: str) -> str:
    """A storage mount path, normalised: never `/` or a system path, where the volume
    mounted in the init container would hide its own shell (`/bin`)."""
    normalized = _absolute_path(value)
    refused = hostpaths.refusal(normalized)
    if refused is not None:
        named = f"{shown(value)} is {normalized}, which" if normalized != value else shown(value)
        refused = "the root directory" if normalized == "/" else refused
        raise ValueError(f"{named} is {refused}: storage is never mounted there")
    return normalized


def _non_root(value: int) -> int:
    if value == 0:
        raise ValueError(
            "0 is root: the policy exists to run Dify as non-root; give the id Dify"
            " runs as (1001 since Dify 1.10.1)"
        )
    return value


def dns_label(value: str) -> str:
    """A DNS-1123 label (a namespace, a container name), or `ValueError` saying why not."""
    if not _DNS1123_LABEL.match(value):
        raise ValueError(
            f"{shown(value)} must be a DNS-1123 label (at most 63 lower-case alphanumerics or '-')"
        )
    return value


def service_name(value: str) -> str:
    """A DNS-1035 label (a Service's name), or `ValueError` saying why not."""
    if not _DNS1035_LABEL.match(value):
        raise ValueError(
            f"{shown(value)} must be a DNS-1035 label (at most 63 lower-case alphanumerics"
            " or '-', starting with a letter)"
        )
    return value


def image_reference(value: str) -> str:
    """An image reference by distribution/reference's grammar, pinned by tag or digest."""
    named = shown(value, 80)
    name, at, digest = value.partition("@")
    reference = images.parse(name)
    if at and not images.DIGEST.match(digest):
        raise ValueError(f"image {named}: the digest after '@' is malformed")
    if (
        not images.REPOSITORY.match(reference.repository)
        or len(reference.repository) > images.NAME_MAX
        or (reference.tag is not None and not images.TAG.match(reference.tag))
    ):
        raise ValueError(
            f"image {named} is not an image reference (registry/repository:tag or @digest;"
            " lower-case, no spaces or shell characters)"
        )
    if not at and reference.tag is None:
        raise ValueError(f"image {named} has no tag: pin it, e.g. busybox:1.36.1")
    if not at and reference.tag == "latest":
        raise ValueError(f"image {named} uses ':latest': pin a version, e.g. busybox:1.36.1")
    return value


def _quantity(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a resource quantity must be a number or a string such as 10m or 16Mi")
    if isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str) or len(value) > 64 or not _QUANTITY.match(value):
        raise ValueError(f"{shown(value)} is not a Kubernetes quantity (e.g. 10m, 16Mi, 1)")
    if quantity_value(value) < 0:
        raise ValueError(f"{shown(value)} is negative: a resource quantity must not be")
    return value


def quantity_value(text: str) -> Decimal:
    """The number a valid quantity stands for (`16Mi` -> 16777216, `10m` -> 0.01)."""
    match = _QUANTITY.match(text)
    assert match is not None, text  # validated before
    number, suffix = match.groups()
    if suffix and suffix[0] in "eE":
        return Decimal(number) * Decimal(10) ** int(suffix[1:])
    return Decimal(number) * _SUFFIXES[suffix or ""]


def _resource_name(name: str) -> str:
    if name in _STANDARD_RESOURCES or name.startswith("hugepages-"):
        return name
    prefix, slash, rest = name.partition("/")
    if (
        slash
        and rest
        and _DNS1123_SUBDOMAIN.match(prefix)
        and _LABEL_NAME.match(rest)
        and not (prefix == "kubernetes.io" or prefix.endswith(".kubernetes.io"))
    ):
        return name
    raise ValueError(
        f"{shown(name)} is not a container resource: cpu, memory, ephemeral-storage,"
        " hugepages-<size> or an extended resource such as example.com/device"
    )


def _repository(value: str) -> str:
    if not images.REPOSITORY.match(value):
        raise ValueError(
            f"{shown(value)} is not an image repository (no tag, no digest),"
            " e.g. langgenius/dify-api"
        )
    return value


def _version(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("quote the version, e.g. '1.10.1' (YAML reads 1.10 as the number 1.1)")
    if images.parse_version(value) is None:
        raise ValueError(f"{shown(value)} is not a version such as 1.10.1")
    return value


LabelKey = Annotated[str, AfterValidator(_label_key)]
LabelValue = Annotated[str, AfterValidator(_label_value)]
AbsolutePath = Annotated[str, AfterValidator(_absolute_path)]
MountPath = Annotated[str, AfterValidator(_mount_path)]
Quantity = Annotated[str, BeforeValidator(_quantity)]
ResourceName = Annotated[str, AfterValidator(_resource_name)]
Id = Annotated[int, Field(ge=0, le=MAX_ID, strict=True), AfterValidator(_non_root)]


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        str_strip_whitespace=False,
    )


class LabelSelectorRequirement(_Model):
    """One `matchExpressions` entry, with Kubernetes' semantics."""

    key: LabelKey
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: tuple[LabelValue, ...] = ()

    @pydantic.model_validator(mode="after")
    def _values_fit_operator(self) -> LabelSelectorRequirement:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"operator {self.operator} needs a non-empty values list")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"operator {self.operator} takes no values")
        return self

    def matches(self, labels: dict[str, str]) -> bool:
        """Kubernetes LabelSelectorRequirement semantics (NotIn matches an absent key)."""
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "NotIn":
            return labels.get(self.key) not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels


class LabelSelector(_Model):
    """A Kubernetes LabelSelector: every matchLabels pair and every expression must hold."""

    match_labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    match_expressions: tuple[LabelSelectorRequirement, ...] = ()

    @pydantic.model_validator(mode="after")
    def _not_empty(self) -> LabelSelector:
        if not self.match_labels and not self.match_expressions:
            raise ValueError(
                "a pod selector needs matchLabels or matchExpressions"
                " (an empty selector would match every pod)"
            )
        return self

    def matches(self, labels: dict[str, str]) -> bool:
        """True when the labels satisfy the whole selector."""
        for key, value in self.match_labels.items():
            if labels.get(key) != value:
                return False
        return all(expr.matches(labels) for expr in self.match_expressions)

    @functools.cached_property
    def description(self) -> str:
        """The selector in `kubectl get -l` syntax, for messages (computed once)."""
        parts = [f"{k}={v}" for k, v in self.match_labels.items()]
        for expr in self.match_expressions:
            if expr.operator == "Exists":
                parts.append(expr.key)
            elif expr.operator == "DoesNotExist":
                parts.append(f"!{expr.key}")
            else:
                verb = "in" if expr.operator == "In" else "notin"
                parts.append(f"{expr.key} {verb} ({','.join(expr.values)})")
        return ",".join(parts)


class ResourceRequirements(_Model):
    """The init container's `resources`, checked as Kubernetes checks a container's."""

    requests: dict[ResourceName, Quantity] = Field(default_factory=dict)
    limits: dict[ResourceName, Quantity] = Field(default_factory=dict)

    @pydantic.model_validator(mode="after")
    def _requests_within_limits(self) -> ResourceRequirements:
        for name, request in self.requests.items():
            limit = self.limits.get(name)
            if limit is not None and quantity_value(request) > quantity_value(limit):
                raise ValueError(
                    f"requests.{name} {request} is more than limits.{name} {limit}:"
                    " Kubernetes refuses such a pod"
                )
        return self

    def to_k8s(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        if self.requests:
            out["requests"] = dict(self.requests)
        if self.limits:
            out["limits"] = dict(self.limits)
        return out


class InitContainer(_Model):
    """What the injected init container is called and which image runs it."""

    name: Annotated[str, AfterValidator(dns_label)] = "volume-permissions"
    image: Annotated[str, AfterValidator(image_reference)] = "busybox:1.36.1"
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)


class ImageRule(_Model):
    """One app image a rule fixes, and the version from which it runs as non-root."""

    repository: Annotated[str, AfterValidator(_repository)]
    non_root_since: Annotated[str, BeforeValidator(_version)] | None = None

    @property
    def since(self) -> images.Version | None:
        """`non_root_since` as numbers (validated, so parsable)."""
        return None if self.non_root_since is None else images.parse_version(self.non_root_since)

    def runs_as_root(self, reference: str) -> bool:
        """The image's tag names a version older than `nonRootSince`.

        `latest`, a digest without a tag or an unparsable tag count as current.
        """
        if self.since is None:
            return False
        version = images.version_of(reference)
        return version is not None and version < self.since


class Rule(_Model):
    """Which pods (selectors) get which volumes (mount paths) owned by whom."""

    name: Annotated[str, AfterValidator(dns_label)]
    pod_selectors: tuple[LabelSelector, ...] = Field(min_length=1)
    mount_paths: tuple[MountPath, ...] = Field(min_length=1)
    user: Id = 1001
    group: Id = 1001
    init_container: InitContainer = Field(default_factory=InitContainer)
    allowed_host_path_prefixes: tuple[AbsolutePath, ...] = ()
    forbidden_host_path_prefixes: tuple[AbsolutePath, ...] = ()
    """Added to the built-in forbidden host paths, never replacing them."""
    images: tuple[ImageRule, ...] = ()
    """When set, only containers running one of these images count."""

    @property
    def mount_path_set(self) -> frozenset[str]:
        """`mount_paths` as a set, for lookups."""
        return frozenset(self.mount_paths)

    def image_rule(self, reference: Any) -> ImageRule | None:
        """The entry of `images` the image `reference` runs, or None."""
        if not isinstance(reference, str):
            return None
        repository = images.parse(reference).repository
        for entry in self.images:
            if images.repository_matches(repository, entry.repository):
                return entry
        return None

    def matching_selector(self, labels: dict[str, str]) -> LabelSelector | None:
        """The first selector the labels satisfy (a pod matches when ANY does)."""
        for selector in self.pod_selectors:
            if selector.matches(labels):
                return selector
        return None


class PolicySpec(_Model):
    """The `spec` of a policy: namespaces left alone and the ordered rules."""

    exclude_namespaces: tuple[Annotated[str, AfterValidator(dns_label)], ...] = ()
    namespace_selector: LabelSelector | None = None
    """When set, only namespaces it matches are sent (opt-in); the exclusions still apply.
    The apiserver applies it (it is rendered into the webhook configuration)."""
    rules: tuple[Rule, ...] = Field(min_length=1)

    @pydantic.field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
        seen: set[str] = set()
        for rule in rules:
            if rule.name in seen:
                raise ValueError(f"duplicate rule name {shown(rule.name)}")
            seen.add(rule.name)
        return rules


class Policy(_Model):
    """A whole `VolumeInitPolicy` document."""

    api_version: Literal["volume-init.dify.ai/v1"]
    kind: Literal["VolumeInitPolicy"]
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: PolicySpec


def parse_policy(text: str, *, source: str) -> Policy:
    """Validate the YAML `text` of a policy; errors are `PolicyError("source:line: ...")`."""
    errors = policy_errors(text, source=source)
    if errors:
        raise PolicyError(_summary(errors, source))
    return _parse_unchecked(text)


def policy_errors(text: str, *, source: str) -> list[str]:
    """Every problem of a policy text, one `source:line: field: reason` line each."""
    try:
        doc = yamlfile.load_one(text)
    except yamlfile.YAMLFileError as exc:
        return [f"{source}:{exc.line}: invalid YAML: {exc.message}"]
    if not isinstance(doc.value, dict):
        return [f"{source}:{doc.start_line}: a policy must be a YAML mapping"]
    try:
        Policy.model_validate(doc.value)
    except pydantic.ValidationError as exc:
        errors = exc.errors()
        # NB: a sequence whose items failed also reports itself "too short";
        # that echo only hides the real error, so drop it.
        failing = [tuple(e["loc"]) for e in errors]
        errors = [e for e in errors if not (e["type"] == "too_short" and _has_child(e, failing))]
        return [_format_error(err, doc, source) for err in errors]
    return []


def _has_child(error: Any, failing: list[tuple[Any, ...]]) -> bool:
    loc = tuple(error["loc"])
    return any(len(f) > len(loc) and f[: len(loc)] == loc for f in failing)


@functools.lru_cache(maxsize=8)
def _parse_unchecked(text: str) -> Policy:
    return Policy.model_validate(yamlfile.load_one(text).value)


def _format_error(err: Any, doc: yamlfile.DocumentWithLines, source: str) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    # pydantic puts the failing dict key into loc with a `[key]` suffix; drop it.
    loc = tuple(p for p in loc if p != "[key]")
    field = _dotted(loc) or "(document)"
    message = err["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if err["type"] == "extra_forbidden":
        message = "unknown field (check its spelling and indentation)"
    elif err["type"] == "missing":
        message = "required field is missing"
    return f"{source}:{doc.line_of(loc)}: {field}: {message}"


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _summary(errors: list[str], source: str) -> str:
    if len(errors) == 1:
        return errors[0]
    return (
        f"{errors[0]} (and {len(errors) - 1} more;"
        f" run `dify-volume-init policy check {source}` to list them)"
    )


def default_policy_text() -> str:
    """The YAML text of the built-in policy (docs/design.md#the-policy)."""
    return resources.files("webhook.engine").joinpath("default-policy.yaml").read_text("utf-8")


def default_policy() -> Policy:
    """The built-in policy."""
    return parse_policy(default_policy_text(), source="<built-in policy>")


def selection(policy: Policy) -> dict[str, Any]:
    """What the webhook configuration is derived from: the pod selectors of each rule,
    the excluded namespaces and the opt-in namespace selector. A policy edit that
    changes this needs the webhook configuration re-applied."""
    opt_in = policy.spec.namespace_selector
    return {
        "podSelectors": [
            [
                s.model_dump(mode="json", by_alias=True, exclude_defaults=True)
                for s in r.pod_selectors
            ]
            for r in policy.spec.rules
        ],
        "excludeNamespaces": list(policy.spec.exclude_namespaces),
        "namespaceSelector": (
            None
            if opt_in is None
            else opt_in.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        ),
    }


def selection_fingerprint(policy: Policy) -> str:
    """A short digest of `selection(policy)`, stamped on what `manifests` renders."""
    canonical = json.dumps(selection(policy), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
