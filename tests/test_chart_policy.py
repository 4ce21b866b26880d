"""One policy, whoever reads it: the chart and the server accept, refuse and select alike.

The chart's `values.schema.json` holds, under `policy`, the JSON Schema the server's
policy model generates; Helm validates values against it with its own validator (Go
regular expressions, draft-07). For a corpus of policies that are wrong in the ways
people get them wrong (a snake_case key, a typo, an empty selector, root, a system
mount path, `:latest`) and for generated valid ones, the chart and the server must
agree: both refuse, or both accept and render the same webhook selection and
fingerprint. The fingerprint is canonical: rewriting a policy without changing what
is sent keeps it, in Python and in the chart's template alike.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_chart import CHART, RELEASE, keyed, render, without_ca_bundles
from webhook.engine import policy
from webhook.engine.errors import PolicyError
from webhook.install import manifests

SCHEMA = CHART / "values.schema.json"
CONFIG = ("MutatingWebhookConfiguration", RELEASE)


def test_the_chart_schema_is_the_one_the_policy_model_generates() -> None:
    """Guards the chart's policy schema against drift from the server's model
    (REFRESH_GOLDEN=1 rewrites it)."""
    values_schema = json.loads(SCHEMA.read_text())
    if os.environ.get("REFRESH_GOLDEN") == "1":
        values_schema["properties"]["policy"] = policy.json_schema()
        SCHEMA.write_text(json.dumps(values_schema, indent=2) + "\n")
    assert values_schema["properties"]["policy"] == policy.json_schema(), (
        "values.schema.json differs from the policy model: run REFRESH_GOLDEN=1 make test"
    )


def default_policy() -> dict[str, Any]:
    value: dict[str, Any] = yaml.safe_load(policy.default_policy_text())
    return value


def edit(path: str, value: Any, *, remove: bool = False) -> dict[str, Any]:
    """The default policy with the value at the dotted `path` set (or removed)."""
    doc = default_policy()
    parts = [int(p) if p.isdigit() else p for p in path.split(".")]
    target: Any = doc
    for part in parts[:-1]:
        target = target[part]
    if remove:
        del target[parts[-1]]
    else:
        target[parts[-1]] = value
    return doc


SELECTOR = "spec.rules.0.podSelectors.0"
RULE = "spec.rules.0"
CORPUS: dict[str, dict[str, Any]] = {
    "default": default_policy(),
    "snake_case key": edit(f"{RULE}.mount_paths", ["/data"]),
    "snake_case selector": edit(f"{SELECTOR}.match_labels", {"app": "dify-api"}),
    "matchlabels typo": edit(SELECTOR, {"matchlabels": {"app": "dify-api"}}),
    "empty selector": edit(SELECTOR, {}),
    "selector of empty parts": edit(SELECTOR, {"matchLabels": {}, "matchExpressions": []}),
    "empty namespace selector": edit("spec.namespaceSelector", {}),
    "user root": edit(f"{RULE}.user", 0),
    "user as text": edit(f"{RULE}.user", "1001"),
    "group too large": edit(f"{RULE}.group", 2**31),
    "bad label key": edit(f"{SELECTOR}.matchLabels", {"-bad": "x"}),
    "bad label value": edit(f"{SELECTOR}.matchLabels", {"app": "has space"}),
    "label value a boolean": edit(f"{SELECTOR}.matchLabels", {"app": True}),
    "In without values": edit(f"{SELECTOR}.matchExpressions", [{"key": "a", "operator": "In"}]),
    "Exists with values": edit(
        f"{SELECTOR}.matchExpressions", [{"key": "a", "operator": "Exists", "values": ["x"]}]
    ),
    "unknown operator": edit(
        f"{SELECTOR}.matchExpressions", [{"key": "a", "operator": "Equals", "values": ["x"]}]
    ),
    "relative mount path": edit(f"{RULE}.mountPaths", ["app/api/storage"]),
    "mount path /etc": edit(f"{RULE}.mountPaths", ["/etc"]),
    "mount path below /proc": edit(f"{RULE}.mountPaths", ["/proc/1"]),
    "mount path /var": edit(f"{RULE}.mountPaths", ["/var"]),
    "mount path /lib64": edit(f"{RULE}.mountPaths", ["/lib64/x"]),
    "mount path /": edit(f"{RULE}.mountPaths", ["/"]),
    "mount path fine": edit(f"{RULE}.mountPaths", ["/var/lib/dify"]),
    "bad rule name": edit(f"{RULE}.name", "Dify_Storage"),
    "duplicate rule names": edit("spec.rules", [default_policy()["spec"]["rules"][0]] * 2),
    "image latest": edit(f"{RULE}.initContainer.image", "busybox:latest"),
    "image without tag": edit(f"{RULE}.initContainer.image", "busybox"),
    "image by digest": edit(f"{RULE}.initContainer.image", "busybox@sha256:" + "a" * 64),
    "image with shell": edit(f"{RULE}.initContainer.image", "busybox:1.36;rm"),
    "quantity bad": edit(f"{RULE}.initContainer.resources", {"requests": {"cpu": "ten"}}),
    "quantity negative": edit(f"{RULE}.initContainer.resources", {"limits": {"memory": "-1Mi"}}),
    "quantity a number": edit(f"{RULE}.initContainer.resources", {"limits": {"cpu": 1}}),
    "resource name unknown": edit(f"{RULE}.initContainer.resources", {"limits": {"gpu": "1"}}),
    "resource kubernetes.io": edit(
        f"{RULE}.initContainer.resources", {"limits": {"kubernetes.io/x": "1"}}
    ),
    "resource extended": edit(f"{RULE}.initContainer.resources", {"limits": {"ex.com/gpu": "1"}}),
    "version unquoted": edit(f"{RULE}.images.0.nonRootSince", 1.1),
    "version bad": edit(f"{RULE}.images.0.nonRootSince", "one"),
    "repository with tag": edit(f"{RULE}.images.0.repository", "langgenius/dify-api:1.0"),
    "excluded namespace bad": edit("spec.excludeNamespaces", ["Kube_System"]),
    "no rules": edit("spec.rules", []),
    "no mount paths": edit(f"{RULE}.mountPaths", []),
    "unknown top-level": {**default_policy(), "extra": 1},
    "wrong kind": {**default_policy(), "kind": "Policy"},
    "pod security restricted": edit("spec.podSecurity", {"clusterDefault": "restricted"}),
    "pod security unknown level": edit("spec.podSecurity", {"clusterDefault": "strict"}),
    "pod security snake_case": edit("spec.podSecurity", {"cluster_default": "restricted"}),
}
# What a JSON Schema cannot say: the chart's templates check these (dvi.checkPolicy).
CORPUS.update(
    {
        "requests above limits": edit(
            f"{RULE}.initContainer.resources",
            {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}},
        ),
        "requests equal to limits in other units": edit(
            f"{RULE}.initContainer.resources",
            {
                "requests": {"memory": "1Gi", "cpu": "100m"},
                "limits": {"memory": "1024Mi", "cpu": 0.1},
            },
        ),
        "requests by exponent above limits": edit(
            f"{RULE}.initContainer.resources",
            {"requests": {"memory": "1e4"}, "limits": {"memory": "1k"}},
        ),
        "system path spelled unnormalised": edit(f"{RULE}.mountPaths", ["/app/../etc"]),
        "system path with doubled slashes": edit(f"{RULE}.mountPaths", ["//var//lib//kubelet/x"]),
        "fine path spelled unnormalised": edit(f"{RULE}.mountPaths", ["/app//api/./storage/"]),
    }
)


def test_the_templates_system_paths_are_the_models() -> None:
    """Guards the one copy the chart keeps: its system-path expression is the model's."""
    template = (CHART / "templates" / "_helpers.tpl").read_text()
    start = template.index('{{- define "dvi.systemPaths" -}}\n') + len(
        '{{- define "dvi.systemPaths" -}}\n'
    )
    copy_ = template[start : template.index("\n{{- end -}}", start)]
    schema = policy.json_schema()
    rule = schema["properties"]["spec"]["properties"]["rules"]["items"]
    assert copy_ == rule["properties"]["mountPaths"]["items"]["not"]["pattern"]


def server_accepts(doc: dict[str, Any]) -> bool:
    try:
        policy.parse_policy(json.dumps(doc), source="values")
    except PolicyError:
        return False
    return True


def render_policy(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The chart with `doc` as its policy: lists in the values replace the default's,
    and keys the default has but `doc` lacks are set to null so they are removed."""
    values = copy.deepcopy(doc)
    for key in ("apiVersion", "kind"):
        values.setdefault(key, None)
    spec = values.setdefault("spec", {})
    for key in ("excludeNamespaces", "namespaceSelector"):
        spec.setdefault(key, None)
    return render({"policy": values})


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_the_chart_and_the_server_accept_and_refuse_alike(case: str) -> None:
    """Guards one policy for both readers: each case of the corpus is refused by both or
    accepted by both (an empty selector is refused by both: it rendered
    `objectSelector: {}`, every pod of the cluster sent to a server refusing the policy;
    snake_case keys the server took were ignored by the chart; requests above limits and
    an unnormalised system path were rendered into a ConfigMap the server refused)."""
    doc = CORPUS[case]
    server = server_accepts(doc)
    chart = chart_accepts_doc(doc)
    assert server == chart, f"{case}: server {'accepts' if server else 'refuses'}, chart differs"


def chart_accepts_doc(doc: dict[str, Any]) -> bool:
    try:
        objects = render_policy(doc)
    except (helm.HelmValuesError, helm.HelmRenderError):
        return False
    config = keyed(objects)[CONFIG]
    for entry in config["webhooks"]:
        assert entry["objectSelector"], "an empty objectSelector was rendered"
    return True


# Generated policies: valid ones, written many equivalent ways.
label_keys = st.sampled_from(["app", "component", "app.kubernetes.io/name", "tier", "dify.ai/x"])
label_values = st.sampled_from(["dify-api", "dify-worker", "api", "worker", "y", "1.0", "on"])


@st.composite
def requirements(draw: st.DrawFn) -> dict[str, Any]:
    operator = draw(st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]))
    entry: dict[str, Any] = {"key": draw(label_keys), "operator": operator}
    if operator in ("In", "NotIn"):
        entry["values"] = draw(st.lists(label_values, min_size=1, max_size=3))
    return entry


@st.composite
def selectors(draw: st.DrawFn) -> dict[str, Any]:
    selector: dict[str, Any] = {}
    labels = draw(st.dictionaries(label_keys, label_values, max_size=2))
    expressions = draw(st.lists(requirements(), max_size=3))
    if labels or not expressions:
        selector["matchLabels"] = labels or {draw(label_keys): draw(label_values)}
    if expressions:
        selector["matchExpressions"] = expressions
    return selector


@st.composite
def policies(draw: st.DrawFn) -> dict[str, Any]:
    rules = []
    for index in range(draw(st.integers(1, 3))):
        rules.append(
            {
                "name": f"rule-{index}",
                "podSelectors": draw(st.lists(selectors(), min_size=1, max_size=3)),
                "mountPaths": ["/app/api/storage"],
            }
        )
    spec: dict[str, Any] = {"rules": rules}
    excluded = draw(st.lists(st.sampled_from(["kube-system", "legacy", "a", "b"]), max_size=4))
    if excluded:
        spec["excludeNamespaces"] = excluded
    if draw(st.booleans()):
        spec["namespaceSelector"] = draw(selectors())
    default = draw(st.sampled_from([None, "privileged", "baseline", "restricted"]))
    if default is not None:
        spec["podSecurity"] = {"clusterDefault": default}
    return {"apiVersion": "volume-init.dify.ai/v1", "kind": "VolumeInitPolicy", "spec": spec}


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(policies())
def test_generated_policies_select_alike_in_the_chart_manifests_and_the_server(
    doc: dict[str, Any],
) -> None:
    """Guards the derived selection over 200 generated policies: the chart's webhook
    entries (selectors, exclusions, opt-in) equal what `manifests` renders, and its
    fingerprint (configuration and Deployment) equals the one the server loads."""
    text = json.dumps(doc)  # NB: PyYAML writes `y` unquoted, which Kubernetes reads as true
    loaded = policy.parse_policy(text, source="generated")
    chart = keyed(render_policy(doc))
    expected = keyed(manifests.objects(loaded, text))
    assert without_ca_bundles(chart[CONFIG])["webhooks"] == expected[CONFIG]["webhooks"]
    fingerprint = policy.selection_fingerprint(loaded)
    annotations = chart[CONFIG]["metadata"]["annotations"]
    assert annotations[manifests.SELECTION_ANNOTATION] == fingerprint
    (container,) = chart[("Deployment", RELEASE)]["spec"]["template"]["spec"]["containers"]
    assert {"name": "VOLUME_INIT_SELECTION", "value": fingerprint} in container["env"]


def rewritten(doc: dict[str, Any], seed: int) -> dict[str, Any]:
    """`doc` written another way that sends the same pods: values, expressions,
    selectors, rules and exclusions reordered and duplicated, matchLabels written as
    In, the rules split and merged, kube-system listed."""
    import random

    rng = random.Random(seed)
    doc = copy.deepcopy(doc)
    spec = doc["spec"]

    def rewrite(selector: dict[str, Any]) -> dict[str, Any]:
        expressions = []
        for given_entry in selector.get("matchExpressions", []):
            entry = dict(given_entry)
            if "values" in entry:
                entry["values"] = [*entry["values"], *entry["values"][:1]]
                rng.shuffle(entry["values"])
            expressions.append(entry)
        labels = dict(selector.get("matchLabels", {}))
        for key in list(labels):
            if rng.random() < 0.5:
                expressions.append({"key": key, "operator": "In", "values": [labels.pop(key)]})
        expressions += expressions[:1]
        rng.shuffle(expressions)
        out: dict[str, Any] = {}
        if labels:
            out["matchLabels"] = labels
        if expressions:
            out["matchExpressions"] = expressions
        return out

    selectors_all = [rewrite(s) for r in spec["rules"] for s in r["podSelectors"]]
    selectors_all += selectors_all[:1]
    rng.shuffle(selectors_all)
    cut = rng.randint(1, len(selectors_all))
    groups = [selectors_all[:cut], selectors_all[cut:]]
    spec["rules"] = [
        {"name": f"r{i}", "podSelectors": g, "mountPaths": ["/app/api/storage"]}
        for i, g in enumerate(groups)
        if g
    ]
    excluded = [*spec.get("excludeNamespaces", []), "kube-system"]
    excluded += excluded[:1]
    rng.shuffle(excluded)
    spec["excludeNamespaces"] = excluded
    if spec.get("namespaceSelector"):
        spec["namespaceSelector"] = rewrite(spec["namespaceSelector"])
    return doc


@settings(max_examples=60, deadline=None, derandomize=True)
@given(policies(), st.integers(0, 2**16))
def test_the_fingerprint_fires_only_on_a_real_change(doc: dict[str, Any], seed: int) -> None:
    """Guards the canonical fingerprint: a policy rewritten without changing what is sent
    keeps it, in Python and in the chart's template (before, any reordering changed it);
    a real change (one more value in a selector) changes it."""
    original = policy.parse_policy(json.dumps(doc), source="a")
    same = rewritten(doc, seed)
    fingerprint = policy.selection_fingerprint(original)
    assert policy.selection_fingerprint(policy.parse_policy(json.dumps(same), source="b")) == (
        fingerprint
    )
    chart = keyed(render_policy(same))[CONFIG]["metadata"]["annotations"]
    assert chart[manifests.SELECTION_ANNOTATION] == fingerprint
    changed = copy.deepcopy(doc)
    first = changed["spec"]["rules"][0]["podSelectors"][0]
    first.setdefault("matchLabels", {})["changed.example/k"] = "v"
    other = policy.parse_policy(json.dumps(changed), source="c")
    assert policy.selection_fingerprint(other) != fingerprint


HOSTILE = "x\"\n  injected: true\n' #}}{{"


def test_hostile_strings_in_values_stay_strings(tmp_path: Path) -> None:
    """Guards the templates' quoting: a value with newlines and quotes renders as that
    very string, adding no key (it could inject YAML before)."""
    values = {
        "priorityClassName": HOSTILE,
        "image": {"pullPolicy": "Always"},
        "certificates": {"mode": "certManager", "certManager": {"duration": HOSTILE}},
        "metrics": {"serviceMonitor": {"enabled": True, "interval": HOSTILE}},
    }
    found = keyed(render(values))
    pod = found[("Deployment", RELEASE)]["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == HOSTILE
    assert found[("Certificate", RELEASE)]["spec"]["duration"] == HOSTILE
    assert found[("ServiceMonitor", RELEASE)]["spec"]["endpoints"][0]["interval"] == HOSTILE
    for obj in found.values():
        assert not any_key(obj, "injected"), obj["kind"]


def any_key(value: Any, key: str) -> bool:
    if isinstance(value, dict):
        return key in value or any(any_key(v, key) for v in value.values())
    if isinstance(value, list):
        return any(any_key(v, key) for v in value)
    return False


def test_the_charts_default_policy_is_the_built_in_one() -> None:
    """Guards the one copy that cannot be generated (values.yaml carries comments for
    `helm show values`): the chart's `policy` is the built-in policy, value for value."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["policy"] == yaml.safe_load(policy.default_policy_text())
