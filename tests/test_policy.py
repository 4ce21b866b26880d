"""Policy loading and validation (docs/design.md#the-policy), and LabelSelector semantics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers import first_rule_policy_text
from webhook import files
from webhook.engine import policy
from webhook.engine.errors import PolicyError, UsageError
from webhook.engine.policy import LabelSelector

DEFAULT = first_rule_policy_text()


def errors_of(text: str) -> list[str]:
    return policy.policy_errors(text, source="p.yaml")


def test_default_policy_is_the_spec_example() -> None:
    """Guards the built-in policy's content."""
    p = policy.default_policy()
    rule = p.spec.rules[0]
    assert p.spec.exclude_namespaces == ("kube-system", "kube-public", "kube-node-lease")
    assert rule.name == "dify-storage"
    assert rule.mount_paths == ("/app/api/storage",)
    assert (rule.user, rule.group) == (1001, 1001)
    assert rule.init_container.image == "busybox:1.36.1"
    assert rule.init_container.resources.to_k8s() == {
        "requests": {"cpu": "10m", "memory": "16Mi"},
        "limits": {"memory": "64Mi"},
    }
    assert len(rule.pod_selectors) == 4
    assert [(i.repository, i.non_root_since, i.untagged_digest) for i in rule.images] == [
        ("dify-api", "1.10.1", "current")
    ]
    assert rule.forbidden_host_path_prefixes == ()
    assert rule.warn_image_not_listed
    generic = p.spec.rules[1]
    assert generic.name == "dify-generic-labels"
    described = [s.description for s in generic.pod_selectors]
    assert described == ["app in (api,worker,worker-beat,work-beat,beat)"]
    assert generic.images == rule.images and not generic.warn_image_not_listed
    same = {"pod_selectors", "name", "warn_image_not_listed"}
    assert generic.model_dump(exclude=same) == rule.model_dump(exclude=same)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "      user: 1001",
            "      user: 1001\n      bogus: 1",
            "p.yaml:25: spec.rules[0].bogus: unknown field",
        ),
        (
            "operator: In, values: [api",
            "operator: in, values: [api",
            "p.yaml:13: spec.rules[0].podSelectors[0].matchExpressions[0].operator",
        ),
        (
            "mountPaths: [/app/api/storage]",
            "mountPaths: [app/api/storage]",
            "p.yaml:23: spec.rules[0].mountPaths[0]: 'app/api/storage' must be an absolute path",
        ),
        (
            "user: 1001",
            "user: 2147483648",
            "p.yaml:24: spec.rules[0].user: Input should be less than or equal to 2147483647",
        ),
        (
            "group: 1001",
            "group: -1",
            "p.yaml:25: spec.rules[0].group: Input should be greater than or equal to 0",
        ),
        (
            "user: 1001",
            'user: "1001"',
            "p.yaml:24: spec.rules[0].user: Input should be a valid integer",
        ),
        (
            "busybox:1.36.1 ",
            "busybox ",
            "p.yaml:28: spec.rules[0].initContainer.image: image 'busybox' has no tag",
        ),
        ("busybox:1.36.1 ", "busybox:latest ", "uses ':latest'"),
        ("busybox:1.36.1 ", "registry.local:5000/busybox ", "has no tag"),
        (
            "{key: component, operator: In, values: [api, worker, beat]}",
            "{key: component, operator: Exists, values: [api]}",
            "operator Exists takes no values",
        ),
        (
            "{key: component, operator: In, values: [api, worker, beat]}",
            "{key: component, operator: In, values: []}",
            "operator In needs a non-empty values list",
        ),
        ("apiVersion: volume-init.dify.ai/v1", "apiVersion: v1", "p.yaml:3: apiVersion"),
        (
            "resources: {requests: {cpu: 10m",
            "resources: {requests: {cpu: ten",
            "is not a Kubernetes quantity",
        ),
        (
            "allowedHostPathPrefixes: []",
            "allowedHostPathPrefixes: [data]",
            "allowedHostPathPrefixes[0]",
        ),
    ],
)
def test_validation_names_line_and_field(old: str, new: str, expected: str) -> None:
    """Guards validation messages: file, line, field and reason for each refusal."""
    assert old in DEFAULT
    errors = errors_of(DEFAULT.replace(old, new, 1))
    assert errors, "the policy should be refused"
    assert expected in errors[0], errors


def test_duplicate_rule_names_are_refused() -> None:
    """Guards unique rule names."""
    extra = (
        "    - name: dify-storage\n"
        "      podSelectors: [{matchLabels: {a: b}}]\n"
        "      mountPaths: [/x]\n"
    )
    errors = errors_of(DEFAULT + extra)
    assert errors == ["p.yaml:8: spec.rules: duplicate rule name 'dify-storage'"]


def test_empty_selector_is_refused() -> None:
    """Guards that an empty selector (every pod) is refused."""
    extra = "    - name: other\n      podSelectors: [{}]\n      mountPaths: [/x]\n"
    (error,) = errors_of(DEFAULT + extra)
    assert "spec.rules[1].podSelectors[0]" in error and "every pod" in error


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("spec: [", "invalid YAML: while parsing a flow node"),
        ("a: 1\na: 2\n", "p.yaml:2: invalid YAML: duplicate key 'a'"),
        ("- 1\n", "must be a YAML mapping"),
        ("", "must be a YAML mapping"),
        ("kind: VolumeInitPolicy\n", "apiVersion: required field is missing"),
    ],
)
def test_unparseable_policies(text: str, expected: str) -> None:
    """Guards invalid YAML and non-mappings: one line with the line number."""
    assert expected in errors_of(text)[0]


def test_parse_raises_one_line_summary() -> None:
    """Guards parse_policy's single-line summary of several errors."""
    text = DEFAULT.replace("user: 1001", "user: -5").replace("group: 1001", "group: -5")
    with pytest.raises(PolicyError) as info:
        policy.parse_policy(text, source="p.yaml")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("p.yaml:24: spec.rules[0].user")
    assert "1 more" in message


def test_unreadable_files(tmp_path: pytest.TempPathFactory) -> None:
    """Guards unreadable policy files: one line naming the file."""
    with pytest.raises(UsageError, match="policy file not found"):
        files.load_policy("/nonexistent/policy.yaml")
    with pytest.raises(UsageError, match="is a directory"):
        files.load_policy(str(tmp_path))


@pytest.mark.parametrize(
    ("labels", "matches"),
    [
        ({"app.kubernetes.io/name": "dify", "component": "api"}, True),
        ({"app.kubernetes.io/name": "dify", "component": "web"}, False),
        ({"app.kubernetes.io/name": "dify"}, False),
        ({"component": "api"}, False),
    ],
)
def test_match_labels_and_in(labels: dict[str, str], matches: bool) -> None:
    """Guards LabelSelector matchLabels and In semantics."""
    selector = policy.default_policy().spec.rules[0].pod_selectors[0]
    assert selector.matches(labels) is matches


def test_selector_operators() -> None:
    """Guards NotIn, Exists and DoesNotExist as Kubernetes defines them."""

    def sel(op: str, values: list[str] | None = None) -> LabelSelector:
        expr: dict[str, object] = {"key": "tier", "operator": op}
        if values is not None:
            expr["values"] = values
        return LabelSelector.model_validate({"matchExpressions": [expr]})

    assert sel("NotIn", ["web"]).matches({}) is True  # absent key satisfies NotIn
    assert sel("NotIn", ["web"]).matches({"tier": "web"}) is False
    assert sel("NotIn", ["web"]).matches({"tier": "api"}) is True
    assert sel("Exists").matches({"tier": ""}) is True
    assert sel("Exists").matches({}) is False
    assert sel("DoesNotExist").matches({}) is True
    assert sel("DoesNotExist").matches({"tier": "x"}) is False
    assert sel("In", ["a", "b"]).matches({"tier": "b"}) is True
    assert sel("In", ["a", "b"]).matches({"tier": "c"}) is False


def test_yaml_is_read_as_kubernetes_reads_it() -> None:
    """Guards the reader against YAML 1.1's differences from sigs.k8s.io/yaml (what
    kubectl and Helm read with): `y`/`n` are booleans, `0o1751` and `1e3` numbers, `1:20`
    text, a key `y` is "true". A label value written `y` is refused with its line, as
    Helm's schema refuses it (it was read as the text "y" here and as true there)."""
    from webhook.engine import yamlfile

    read = yamlfile.load_one("a: [y, N, 0o1751, 1e3, 1.5e1, '1e3', 1:20, 017]\ny: 1\n").value
    assert read == {"a": [True, False, 1001, 1000, 15, "1e3", "1:20", 15], "true": 1}
    text = policy.default_policy_text().replace("values: [api, worker, beat]", "values: [y]")
    errors = policy.policy_errors(text, source="p.yaml")
    assert len(errors) == 1 and "Input should be a valid string" in errors[0], errors
    line = text.splitlines().index(next(x for x in text.splitlines() if "values: [y]" in x)) + 1
    assert errors[0].startswith(f"p.yaml:{line}: "), errors
    octal = policy.default_policy_text().replace("user: 1001", "user: 0o1751")
    assert policy.parse_policy(octal, source="p").spec.rules[0].user == 1001


def test_one_load_reads_and_validates_the_policy_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards the single validation: a policy file loaded is parsed and validated
    once (it was twice: once for its errors, once more for the model)."""

    calls: list[int] = []
    real = policy.Policy.model_validate

    def counted(value: Any, **kwargs: Any) -> policy.Policy:
        calls.append(1)
        return real(value, **kwargs)

    monkeypatch.setattr(policy.Policy, "model_validate", counted)
    path = tmp_path / "policy.yaml"
    path.write_text(policy.default_policy_text() + "# a text no earlier load cached\n")
    loaded = files.load_policy(path)
    assert loaded.spec.rules and calls == [1]
    assert files.load_policy(path) is loaded and calls == [1]  # the same text: cached


# Fields the built-in policy sets on purpose to other values than the model's
# defaults (which are what a user's policy gets when it leaves them out): the
# required ones, the image guard (a user's own rule has none unless it lists
# images) and the generic-label rule's silence about images not listed.
REQUIRED_OR_CHOSEN = {"name", "podSelectors", "mountPaths", "images", "warnImageNotListed"}


def test_the_models_defaults_are_the_built_in_policys_values() -> None:
    """Guards one source per default: every value the built-in policy writes out is
    the model's default (a rule that leaves it out gets the same), except the fields
    above; change one and the other must follow, or this fails."""
    import yaml

    built_in = yaml.safe_load(policy.default_policy_text())
    parsed = policy.default_policy()
    for written, rule in zip(built_in["spec"]["rules"], parsed.spec.rules, strict=True):
        minimal = {k: v for k, v in written.items() if k in REQUIRED_OR_CHOSEN}
        validated = policy.Policy.model_validate({**built_in, "spec": {"rules": [minimal]}})
        alone = validated.spec.rules[0]
        assert alone == rule, rule.name
    assert policy.PodSecurity() == parsed.spec.pod_security
