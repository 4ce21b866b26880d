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
from collections.abc import Iterable
from importlib import resources
from typing import Annotated, Any, Literal

import pydantic
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

from webhook.engine import hostpaths, yamlfile
from webhook.engine.errors import PolicyError
from webhook.k8s import images, names

MAX_ID = 2_147_483_647


def _absolute_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"{names.shown(value)} must be an absolute path (starting with '/')")
    if "\x00" in value:
        raise ValueError("a path cannot contain a NUL character")
    return hostpaths.normalize(value)


def _mount_path(value: str) -> str:
    """A storage mount path, normalised: never `/` or a system path, where the volume
    mounted in the init container would hide its own shell (`/bin`)."""
    normalized = _absolute_path(value)
    refused = hostpaths.refusal(normalized)
    if refused is not None:
        named = (
            f"{names.shown(value)} is {normalized}, which"
            if normalized != value
            else names.shown(value)
        )
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


def _repository(value: str) -> str:
    if not images.REPOSITORY.match(value):
        raise ValueError(
            f"{names.shown(value)} is not an image repository (no tag, no digest),"
            " e.g. langgenius/dify-api"
        )
    return value


def _version(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("quote the version, e.g. '1.10.1' (YAML reads 1.10 as the number 1.1)")
    if images.parse_version(value) is None:
        raise ValueError(f"{names.shown(value)} is not a version such as 1.10.1")
    return value


# The JSON Schema of each checked value (values.schema.json is generated from the model,
# so Helm refuses what the server refuses): the same expressions written for RE2 (no
# lookaround), which Helm's validator uses.
_DNS_SUBDOMAIN_RE = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_LABEL_NAME_RE = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_SYSTEM_PATHS = "|".join(p[1:] for p in hostpaths.FORBIDDEN)
_CONTAINING = "|".join(  # the directories that hold a system path: /var, /var/lib, /opt
    sorted(
        {
            "/".join(p[1:].split("/")[:i])
            for p in hostpaths.FORBIDDEN
            for i in range(1, p.count("/"))
        }
    )
)
_STRING_SCHEMAS: dict[str, dict[str, Any]] = {
    "label key": {
        "type": "string",
        "maxLength": 317,
        "pattern": f"^({_DNS_SUBDOMAIN_RE}/)?{_LABEL_NAME_RE}$",
    },
    "label value": {
        "type": "string",
        "maxLength": 63,
        "pattern": "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$",
    },
    "absolute path": {"type": "string", "pattern": "^/"},
    "mount path": {
        "type": "string",
        "pattern": "^/",
        "not": {"pattern": f"^/(lib[^/]*(/.*)?|({_SYSTEM_PATHS})(/.*)?|{_CONTAINING})?/?$"},
    },
    "quantity": {
        "type": ["string", "number"],
        "maxLength": 64,
        "pattern": r"^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[KMGTPE]i|[numkMGTPE])?$",
        "minimum": 0,
    },
    "resource name": {
        "type": "string",
        "pattern": "^(cpu|memory|ephemeral-storage|hugepages-.*"
        f"|{_DNS_SUBDOMAIN_RE}/{_LABEL_NAME_RE})$",
        "not": {"pattern": "^([^/]*\\.)?kubernetes\\.io/"},
    },
    "dns label": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"},
    "dns subdomain": {
        "type": "string",
        "maxLength": 253,
        "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    },
    "repository": {
        "type": "string",
        "maxLength": images.NAME_MAX,
        "pattern": images.REPOSITORY.pattern,
    },
    "image": {
        "type": "string",
        "pattern": f"^{images.REPOSITORY.pattern[1:-1]}(:{images.TAG.pattern[1:-1]})?"
        f"(@{images.DIGEST.pattern[1:-1]})?$",
        "anyOf": [{"pattern": ":[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"}, {"pattern": "@"}],
        "not": {"pattern": "^[^@]*:latest$"},
    },
    "version": {
        "type": "string",
        "pattern": r"^[vV]?[0-9]{1,9}\.[0-9]{1,9}(\.[0-9]{1,9})?([^0-9].*)?$",
    },
}


def _schema(name: str) -> WithJsonSchema:
    return WithJsonSchema(_STRING_SCHEMAS[name])


LabelKey = Annotated[str, AfterValidator(names.label_key), _schema("label key")]
LabelValue = Annotated[str, AfterValidator(names.label_value), _schema("label value")]
AbsolutePath = Annotated[str, AfterValidator(_absolute_path), _schema("absolute path")]
MountPath = Annotated[str, AfterValidator(_mount_path), _schema("mount path")]
Quantity = Annotated[str, BeforeValidator(names.quantity), _schema("quantity")]
ResourceName = Annotated[str, AfterValidator(names.resource_name), _schema("resource name")]
DnsLabel = Annotated[str, AfterValidator(names.dns_label), _schema("dns label")]
DnsSubdomain = Annotated[str, AfterValidator(names.dns_subdomain), _schema("dns subdomain")]
Id = Annotated[
    int,
    Field(ge=0, le=MAX_ID, strict=True),
    AfterValidator(_non_root),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": MAX_ID}),
]


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        validate_by_name=False,
        validate_by_alias=True,
        str_strip_whitespace=False,
    )


class LabelSelectorRequirement(_Model):
    """One `matchExpressions` entry, with Kubernetes' semantics."""

    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [
                {
                    "if": {"properties": {"operator": {"enum": ["In", "NotIn"]}}},
                    "then": {"required": ["values"], "properties": {"values": {"minItems": 1}}},
                },
                {
                    "if": {"properties": {"operator": {"enum": ["Exists", "DoesNotExist"]}}},
                    "then": {"properties": {"values": {"maxItems": 0}}},
                },
            ]
        }
    )

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

    model_config = ConfigDict(
        json_schema_extra={  # NB: an empty selector would select every pod
            "anyOf": [
                {"required": ["matchLabels"], "properties": {"matchLabels": {"minProperties": 1}}},
                {
                    "required": ["matchExpressions"],
                    "properties": {"matchExpressions": {"minItems": 1}},
                },
            ]
        }
    )

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
            if limit is not None and names.quantity_value(request) > names.quantity_value(limit):
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

    name: DnsLabel = "volume-permissions"
    mode: Literal["program", "script"] = "program"
    """program: `dify-volume-init fix-ownership` from the webhook's own image (a patch
    of about 1 KB); script: the busybox shell script, where only busybox can be pulled."""
    image: Annotated[str, AfterValidator(names.image_reference), _schema("image")] = (
        "busybox:1.36.1"
    )
    """The image of script mode."""
    program_image: (
        Annotated[str, AfterValidator(names.image_reference), _schema("image")] | None
    ) = None
    """The image of program mode; unset: the image the webhook itself runs."""
    image_pull_secrets: tuple[DnsSubdomain, ...] = ()
    """Secrets a patched pod gets in `imagePullSecrets` (added where absent), for an
    init container image from a private registry."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    # NB: the built-in policy's values (a test holds them equal): an init container
    # with no requests is refused in a namespace whose ResourceQuota needs them.
    resources: ResourceRequirements = Field(
        default_factory=lambda: ResourceRequirements(
            requests={"cpu": "10m", "memory": "16Mi"}, limits={"memory": "64Mi"}
        )
    )


class ImageRule(_Model):
    """One app image a rule fixes, and the version from which it runs as non-root."""

    repository: Annotated[str, AfterValidator(_repository), _schema("repository")]
    """Matched after any registry, mirror path or project: `dify-api` is the image's
    last path segment, `langgenius/dify-api` its last two."""
    non_root_since: Annotated[str, BeforeValidator(_version), _schema("version")] | None = None
    untagged_digest: Literal["current", "leaveAlone"] = "current"
    """An image pinned by digest with no tag names no version: `current` takes it as
    at least nonRootSince, `leaveAlone` leaves its pod alone (image-version-unknown)."""

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

    def version_unknown(self, reference: str) -> bool:
        """Pinned by digest with no tag, and the policy does not take that as current."""
        if self.untagged_digest == "current" or self.since is None:
            return False
        parsed = images.parse(reference)
        return parsed.tag is None and parsed.digest is not None


class Rule(_Model):
    """Which pods (selectors) get which volumes (mount paths) owned by whom."""

    name: DnsLabel
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
    skip_object_storage: bool = True
    """Leave alone a pod whose app containers' STORAGE_TYPE names an object store."""
    follow_app_user: bool = True
    """When the app containers set their own runAsUser, give the volume to that UID (and
    their group); false: leave such a pod alone (app-user-not-policy)."""
    warn_image_not_listed: bool = True
    """Warn when a selected pod mounts the storage from an image not in `images`; off
    for a rule of generic labels (`app: api`), where most such pods are not Dify."""

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


class PodSecurity(_Model):
    """What the cluster's Pod Security admission enforces where a namespace says nothing."""

    cluster_default: Literal["privileged", "baseline", "restricted"] = "baseline"
    """The `defaults.enforce` of the cluster's PodSecurity AdmissionConfiguration
    (hardened distributions such as RKE2 set restricted): namespaces with no `enforce`
    label get the answer of that level."""


class PolicySpec(_Model):
    """The `spec` of a policy: namespaces left alone and the ordered rules."""

    exclude_namespaces: tuple[DnsLabel, ...] = ()
    pod_security: PodSecurity = Field(default_factory=PodSecurity)
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
                raise ValueError(f"duplicate rule name {names.shown(rule.name)}")
            seen.add(rule.name)
        return rules


class Policy(_Model):
    """A whole `VolumeInitPolicy` document."""

    api_version: Literal["volume-init.dify.ai/v1"]
    kind: Literal["VolumeInitPolicy"]
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: PolicySpec

    def with_program_image(self, image: str) -> Policy:
        """The policy with `image` (the one the webhook runs) as program mode's image
        wherever a rule names none."""
        rules = tuple(
            rule.model_copy(
                update={
                    "init_container": rule.init_container.model_copy(
                        update={"program_image": image}
                    )
                }
            )
            if rule.init_container.program_image is None
            else rule
            for rule in self.spec.rules
        )
        return self.model_copy(update={"spec": self.spec.model_copy(update={"rules": rules})})


def parse_policy(text: str, *, source: str) -> Policy:
    """Validate the YAML `text` of a policy; errors are `PolicyError("source:line: ...")`."""
    loaded, errors = _validated(text, source)
    if loaded is None:
        raise PolicyError(_summary(list(errors), source))
    return loaded


def policy_errors(text: str, *, source: str) -> list[str]:
    """Every problem of a policy text, one `source:line: field: reason` line each."""
    return list(_validated(text, source)[1])


@functools.lru_cache(maxsize=8)
def _validated(text: str, source: str) -> tuple[Policy | None, tuple[str, ...]]:
    """The policy, or None and its problems: the text is read and validated once (a
    reload of the same text, or the same text from another source, is not repeated:
    the policy is frozen)."""
    try:
        doc = yamlfile.load_one(text)
    except yamlfile.YAMLFileError as exc:
        return None, (f"{source}:{exc.line}: invalid YAML: {exc.message}",)
    if not isinstance(doc.value, dict):
        return None, (f"{source}:{doc.start_line}: a policy must be a YAML mapping",)
    try:
        return Policy.model_validate(doc.value), ()
    except pydantic.ValidationError as exc:
        errors = exc.errors()
        # NB: a sequence whose items failed also reports itself "too short";
        # that echo only hides the real error, so drop it.
        failing = [tuple(e["loc"]) for e in errors]
        errors = [e for e in errors if not (e["type"] == "too_short" and _has_child(e, failing))]
        return None, tuple(_format_error(err, doc, source) for err in errors)


def _has_child(error: Any, failing: list[tuple[Any, ...]]) -> bool:
    loc = tuple(error["loc"])
    return any(len(f) > len(loc) and f[: len(loc)] == loc for f in failing)


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


ALWAYS_EXCLUDED = ("kube-system",)
"""Namespaces every webhook configuration leaves out whatever the policy says (with the
webhook's own): listing them in `excludeNamespaces` changes nothing that is sent."""


def excluded_namespaces(policy: Policy, own: Iterable[str] = ()) -> tuple[str, ...]:
    """The namespaces no pod is fixed in: the webhook's `own`, those always excluded and
    the policy's list, in that order. The one definition: the engine's decision, the
    webhook configuration `manifests` renders and `review` all take it from here (and
    the chart's `webhook.yaml` builds the same list, held equal by its tests)."""
    return tuple(dict.fromkeys((*own, *ALWAYS_EXCLUDED, *policy.spec.exclude_namespaces)))


def canonical_selection(policy: Policy) -> str:
    """What the webhook configuration is derived from, in one canonical form: the pod
    selectors of every rule (a set: rule order, selector order, duplicates and how the
    selectors are split between rules do not count), the excluded namespaces (a set,
    less those always excluded) and the opt-in namespace selector. Each selector is the
    sorted set of its requirements, `matchLabels {k: v}` written as `k In [v]`, values
    sorted without duplicates. The chart's `dvi.selection` template builds the same
    text, byte for byte; a policy edit that changes it needs the webhook configuration
    re-applied."""
    selectors = sorted({_canonical(s) for r in policy.spec.rules for s in r.pod_selectors})
    excluded = sorted(set(policy.spec.exclude_namespaces) - set(ALWAYS_EXCLUDED))
    opt_in = policy.spec.namespace_selector
    # NB: only a restricted default changes where pods are sent: the key is left out
    # otherwise, so the fingerprints of policies without it stay as they were.
    default = policy.spec.pod_security.cluster_default
    restricted = ',"podSecurityDefault":"restricted"' if default == "restricted" else ""
    return (
        f'{{"excludeNamespaces":{_json(excluded)},'
        f'"namespaceSelector":{"null" if opt_in is None else _canonical(opt_in)},'
        f'"podSelectors":[{",".join(selectors)}]{restricted}}}'
    )


def _canonical(selector: LabelSelector) -> str:
    requirements = {
        _json({"key": key, "operator": "In", "values": [value]})
        for key, value in selector.match_labels.items()
    }
    for expression in selector.match_expressions:
        entry: dict[str, Any] = {"key": expression.key, "operator": expression.operator}
        if expression.values:
            entry["values"] = sorted(set(expression.values))
        requirements.add(_json(entry))
    return f"[{','.join(sorted(requirements))}]"


def _json(value: Any) -> str:
    """JSON as Go's encoding/json writes it for these values: keys sorted, no spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def selection_fingerprint(policy: Policy) -> str:
    """A short digest of `canonical_selection(policy)`, stamped on what `manifests`
    renders: it changes only when what the apiserver sends changes."""
    return hashlib.sha256(canonical_selection(policy).encode()).hexdigest()[:16]


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a policy document, self-contained (no `$ref`), as the chart's
    values.schema.json holds it under `policy`: what it refuses, the server refuses."""
    schema = Policy.model_json_schema(by_alias=True, mode="validation")
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(definitions[node["$ref"].rsplit("/", 1)[1]])
            out = {
                k: inline(v)
                for k, v in node.items()
                if k not in ("title", "default", "description")
            }
            if "patternProperties" in out:
                # NB: a key schema becomes patternProperties, which lets a key that does not
                # match through; the server refuses such a key, so the schema must too.
                ((pattern, values),) = out.pop("patternProperties").items()
                out["propertyNames"] = {**out.get("propertyNames", {}), "pattern": pattern}
                out["additionalProperties"] = values
            return out
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    inlined: dict[str, Any] = inline(schema)
    return inlined
