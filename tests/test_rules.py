"""The edges of each rule that keeps a pod from being made worse, one small pod at a time.

The golden pods show each class on a realistic Dify pod; these pin down the
edges: which image references and tags count, which env entries a
`subPathExpr` needs and in what order, which OS selections mean Windows,
which host paths are node state, what an explicit null means, and when an
init container is ours.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import pytest

from tests import helpers, podvalidity
from webhook.engine import envexpand, hostpaths, initcontainer, mutation, policy
from webhook.engine.policy import Policy
from webhook.k8s import images


def api_pod() -> dict[str, Any]:
    return copy.deepcopy(helpers.load_pod(helpers.PODS / "helm-api.yaml"))


def decide(pod: dict[str, Any], p: Policy, **kwargs: Any) -> mutation.Decision:
    return mutation.mutate(pod, p, namespace="dify", **kwargs)


# -- images -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "repository", "tag", "digest"),
    [
        ("langgenius/dify-api:1.10.1", "langgenius/dify-api", "1.10.1", None),
        ("registry:5000/langgenius/dify-api", "registry:5000/langgenius/dify-api", None, None),
        ("r.io/a/b:v2@sha256:" + "f" * 64, "r.io/a/b", "v2", "sha256:" + "f" * 64),
        ("busybox", "busybox", None, None),
    ],
)
def test_image_references_split(
    reference: str, repository: str, tag: str | None, digest: str | None
) -> None:
    """Guards images.parse: registry ports, tags and digests are told apart."""
    assert images.parse(reference) == (repository, tag, digest)


@pytest.mark.parametrize(
    ("tag", "version"),
    [
        ("1.10.1", (1, 10, 1)),
        ("v1.11.0", (1, 11, 0)),
        ("1.10.1-fix.1", (1, 10, 1)),
        ("1.10", (1, 10, 0)),
        ("latest", None),
        ("main-20261101", None),
        ("110", None),
    ],
)
def test_tag_versions(tag: str, version: tuple[int, int, int] | None) -> None:
    """Guards parse_version: v-prefixes and fix suffixes parse; other tags name none."""
    assert images.parse_version(tag) == version


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        ("langgenius/dify-api:1.10.1", "injected"),
        ("langgenius/dify-api:1.10.1-fix.1", "injected"),
        ("langgenius/dify-api:v1.11.0", "injected"),
        ("langgenius/dify-api:latest", "injected"),
        ("langgenius/dify-api", "injected"),
        ("langgenius/dify-api@sha256:" + "a" * 64, "injected"),
        ("langgenius/dify-api:nightly", "injected"),
        ("docker.io/langgenius/dify-api:1.11.1", "injected"),
        ("mirror.example.com/hub/langgenius/dify-api:1.11.1", "injected"),
        ("langgenius/dify-api:1.10.0", "image-runs-as-root"),
        ("langgenius/dify-api:v0.15.3", "image-runs-as-root"),
        ("langgenius/dify-api:1.9.2@sha256:" + "a" * 64, "image-runs-as-root"),
        ("langgenius/dify-api-custom:1.11.1", "image-not-listed"),
        ("other/langgenius-dify-api:1.11.1", "image-not-listed"),
        ("langgenius/dify-web:1.11.1", "image-not-listed"),
        ("harbor.example/library/dify-api:1.13.3", "injected"),
        ("harbor.example:8443/dify-api:1.13.3", "injected"),
        ("registry.cn-hangzhou.aliyuncs.com/langgenius/dify-api:1.13.3", "injected"),
        ("harbor.example/library/dify-api:1.9.0", "image-runs-as-root"),
        ("langgenius/dify-ee-api:3.0.0", "image-not-listed"),
        ("registry.example/dify-enterprise/dify-ee-api:3.0.0", "image-not-listed"),
    ],
)
def test_the_images_guard(policy: Policy, image: str, reason: str) -> None:
    """Guards the images guard: mirrors count, older tags skip, other repositories not."""
    pod = api_pod()
    pod["spec"]["containers"][0]["image"] = image
    assert decide(pod, policy).reason == reason


def test_a_rule_without_images_counts_every_container(policy: Policy) -> None:
    """Guards that the images guard applies only when a rule lists images."""
    rule = policy.spec.rules[0].model_copy(update={"images": ()})
    open_policy = policy.model_copy(
        update={"spec": policy.spec.model_copy(update={"rules": (rule,)})}
    )
    pod = api_pod()
    pod["spec"]["containers"][0]["image"] = "langgenius/dify-api:1.9.0"
    assert decide(pod, open_policy).reason == "injected"


def test_a_later_rule_with_its_images_can_take_the_pod() -> None:
    """Guards rule order: a rule whose images do not match passes the pod on to the next."""
    text = policy.default_policy_text().replace("  rules:\n", "  rules:\n" + SITE_RULE, 1)
    p = policy.parse_policy(text, source="p.yaml")
    pod = api_pod()
    pod["metadata"]["labels"] = {"app": "api"}
    pod["spec"]["containers"][0]["image"] = "registry.corp/dify/api:2.0.0"
    decision = decide(pod, p)
    assert (decision.reason, decision.rule) == ("injected", "site-api")
    pod["spec"]["containers"][0]["image"] = "nginx:1.27"
    decision = decide(pod, p)
    assert (decision.reason, decision.rule) == ("image-not-listed", "site-api")


def test_a_digest_with_no_tag_follows_the_policy(policy: Policy) -> None:
    """Guards untaggedDigest: `current` (the default) injects an image pinned by digest
    alone; `leaveAlone` leaves the pod alone with its own reason and a warning."""
    pod = api_pod()
    pod["spec"]["containers"][0]["image"] = "harbor.example/library/dify-api@sha256:" + "b" * 64
    assert decide(pod, policy).reason == "injected"
    text = policy_text_with("untaggedDigest: current", "untaggedDigest: leaveAlone")
    decision = decide(pod, text)
    assert decision.reason == "image-version-unknown"
    assert "pinned by digest with no tag" in decision.warnings[0]
    pod["spec"]["containers"][0]["image"] = "dify-api:1.13.3@sha256:" + "b" * 64
    assert decide(pod, text).reason == "injected"


def policy_text_with(old: str, new: str) -> Policy:
    text = policy.default_policy_text()
    assert old in text
    return policy.parse_policy(text.replace(old, new), source="p.yaml")


@pytest.mark.parametrize(
    ("labels", "image", "mounts", "reason", "rule", "warned"),
    [
        ({"app": "api"}, "langgenius/dify-api:1.13.3", True, "injected", "dify-generic-labels", 0),
        ({"app": "worker"}, "harbor.example/library/dify-api:1.13.3", True, "injected", None, 0),
        ({"app": "worker-beat"}, "dify-api:1.13.3", True, "injected", None, 0),
        ({"app": "beat"}, "dify-api:1.13.3", True, "injected", None, 0),
        ({"app": "api"}, "langgenius/dify-api:1.9.0", True, "image-runs-as-root", None, 1),
        ({"app": "api"}, "nginx:1.27", True, "image-not-listed", None, 0),
        ({"app": "api"}, "nginx:1.27", False, "no-storage-mount", None, 0),
        ({"app": "web"}, "langgenius/dify-api:1.13.3", True, "no-rule-matched", None, 0),
        ({"app": "dify-api"}, "nginx:1.27", True, "image-not-listed", "dify-storage", 1),
    ],
)
def test_generic_labels_are_guarded_by_the_image(  # noqa: PLR0917
    policy: Policy,
    labels: dict[str, str],
    image: str,
    mounts: bool,
    reason: str,
    rule: str | None,
    warned: int,
) -> None:
    """Guards the default's `app in (api, worker, worker-beat, work-beat, beat)` rule: Dify's image
    is fixed behind any mirror, any other image is never touched nor warned about
    (warnImageNotListed: false), where the Dify-named labels still warn."""
    pod = api_pod()
    pod["metadata"]["labels"] = labels
    container = pod["spec"]["containers"][0]
    container["image"] = image
    if not mounts:
        container["volumeMounts"] = []
    decision = decide(pod, policy)
    assert decision.reason == reason
    if rule is not None:
        assert decision.rule == rule
    assert len(decision.warnings) == warned, decision.warnings


SITE_RULE = """\
    - name: site-api
      podSelectors: [{matchLabels: {app: api}}]
      mountPaths: [/app/api/storage]
      images: [{repository: dify/api, nonRootSince: "1.10.1"}]
"""


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        ("{repository: langgenius/dify-api, nonRootSince: 1.10}", "quote the version"),
        ("{repository: langgenius/dify-api, nonRootSince: soon}", "is not a version"),
        ("{repository: 'langgenius/dify-api:1.10.1'}", "is not an image repository"),
        ("{repository: LangGenius/Dify-API}", "is not an image repository"),
        ("{nonRootSince: 1.10.1}", "repository: required field is missing"),
    ],
)
def test_images_entries_are_validated(entry: str, error: str) -> None:
    """Guards the policy's validation of images entries (quoted versions, bare repositories)."""
    text = policy.default_policy_text()
    start = text.index("      images:")
    errors = policy.policy_errors(text[:start] + f"      images: [{entry}]\n", source="p.yaml")
    assert errors and error in errors[0], errors


# -- subPathExpr ----------------------------------------------------------------


def test_env_closure_follows_references_in_order() -> None:
    """Guards envexpand: every entry a subPathExpr depends on, transitively, in order."""
    env = [
        {"name": "A", "value": "$(B)-a"},  # B is not yet defined here: stays literal
        {"name": "B", "value": "b"},
        {"name": "UNUSED", "value": "$(B)"},
        {"name": "C", "value": "$(A)/$(B)"},
        {"name": "A", "value": "again"},
        {"name": "D", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
    ]
    got = envexpand.requirement({}, env, ["x/$(C)"], name="api")
    assert [v["name"] for v in got.env] == ["A", "B", "C", "A"]
    assert got.env == (env[0], env[1], env[3], env[4])


@pytest.mark.parametrize(
    ("value_from", "reproducible"),
    [
        ({"fieldRef": {"fieldPath": "metadata.name"}}, True),
        ({"configMapKeyRef": {"name": "c", "key": "k"}}, True),
        ({"secretKeyRef": {"name": "s", "key": "k"}}, True),
        ({"resourceFieldRef": {"containerName": "api", "resource": "limits.cpu"}}, True),
        ({"resourceFieldRef": {"resource": "limits.cpu"}}, False),
        ({"fileKeyRef": {"volumeName": "v", "path": "p", "key": "k"}}, False),
        ({"somethingNew": {}}, False),
    ],
)
def test_which_env_sources_an_init_container_resolves_alike(
    policy: Policy, value_from: dict[str, Any], reproducible: bool
) -> None:
    """Guards which valueFrom sources are copied and which skip the pod."""
    pod = api_pod()
    container = pod["spec"]["containers"][0]
    container["env"] = [{"name": "X", "valueFrom": value_from}]
    container["volumeMounts"][0]["subPathExpr"] = "data/$(X)"
    decision = decide(pod, policy)
    assert decision.reason == ("injected" if reproducible else "subpath-expr-unresolvable")
    if reproducible:
        assert decision.pod["spec"]["initContainers"][0]["env"] == container["env"]


def test_two_containers_must_agree_on_the_variables_they_share(policy: Policy) -> None:
    """Guards envexpand.merge: conflicting definitions or envFrom skip the pod."""
    pod = api_pod()
    worker = copy.deepcopy(pod["spec"]["containers"][0])
    worker["name"] = "worker"
    pod["spec"]["containers"].append(worker)
    for container, value in zip(pod["spec"]["containers"], ("a", "a"), strict=True):
        container["env"] = [{"name": "DIR", "value": value}]
        container["volumeMounts"][0]["subPathExpr"] = "$(DIR)"
    assert decide(pod, policy).reason == "injected"
    worker["env"][0]["value"] = "b"
    decision = decide(pod, policy)
    assert decision.reason == "subpath-expr-unresolvable"
    assert "define DIR differently" in decision.message
    worker["env"][0]["value"] = "a"
    worker["envFrom"] = [{"configMapRef": {"name": "other"}}]
    assert "different envFrom" in decide(pod, policy).message


def test_restricted_mode_needs_no_init_container_env(policy: Policy) -> None:
    """Guards restricted mode (no init container) from a skip for the init env."""
    pod = helpers.load_pod(helpers.PODS / "subpathexpr-resourcefieldref.yaml")
    assert decide(pod, policy, restricted=True).reason == "restricted"


# -- names ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["initContainers", "containers", "ephemeralContainers"])
def test_the_init_container_name_is_unique_across_every_kind(policy: Policy, kind: str) -> None:
    """Guards name uniqueness across all container kinds, and its reinvocation."""
    pod = api_pod()
    pod["spec"].setdefault(kind, []).append({"name": "volume-permissions", "image": "x:1"})
    decision = decide(pod, policy)
    assert decision.reason == "injected"
    init = decision.pod["spec"]["initContainers"][0]
    assert init["name"] == "volume-permissions-2"
    assert (
        '"initContainer":"volume-permissions-2"'
        in (decision.pod["metadata"]["annotations"][mutation.STATUS_ANNOTATION])
    )
    assert decide(decision.pod, policy).reason == "already-injected"


def test_a_long_configured_name_stays_a_dns_label(policy: Policy) -> None:
    """Guards the suffixed name staying within 63 characters."""
    long_name = "v" * 63
    rule = policy.spec.rules[0]
    named = rule.model_copy(
        update={"init_container": rule.init_container.model_copy(update={"name": long_name})}
    )
    p = policy.model_copy(update={"spec": policy.spec.model_copy(update={"rules": (named,)})})
    pod = api_pod()
    pod["spec"]["containers"].append({"name": long_name, "image": "x:1"})
    init = decide(pod, p).pod["spec"]["initContainers"][0]
    assert init["name"] == "v" * 61 + "-2"


def test_ours_is_recognised_by_its_script_when_the_annotation_is_gone(policy: Policy) -> None:
    """Guards reinvocation when another tool dropped the status annotation."""
    patched = decide(api_pod(), policy).pod
    del patched["metadata"]["annotations"][mutation.STATUS_ANNOTATION]
    again = decide(patched, policy)
    assert again.reason == "already-injected"
    assert again.patch == []


# -- Windows --------------------------------------------------------------------


def required_terms(*terms: list[dict[str, Any]]) -> dict[str, Any]:
    """`spec.affinity` requiring one of `terms` (each a list of matchExpressions)."""
    selector = {"nodeSelectorTerms": [{"matchExpressions": t} for t in terms]}
    return {
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": selector}}
    }


def os_is(operator: str, *values: str) -> dict[str, Any]:
    return {"key": "kubernetes.io/os", "operator": operator, "values": list(values)}


WINDOWS_CASES = [
    ({"nodeSelector": {"kubernetes.io/os": "windows"}}, True),
    ({"nodeSelector": {"beta.kubernetes.io/os": "windows"}}, True),
    ({"nodeSelector": {"kubernetes.io/os": "linux"}}, False),
    (required_terms([os_is("In", "windows")]), True),
    (required_terms([os_is("NotIn", "linux")]), True),
    (required_terms([os_is("In", "windows"), os_is("In", "windows")]), True),
    (required_terms([os_is("In", "linux", "windows")]), False),
    # a second term allows Linux nodes
    (
        required_terms(
            [os_is("In", "windows")], [{"key": "zone", "operator": "In", "values": ["a"]}]
        ),
        False,
    ),
    (required_terms([{"key": "kubernetes.io/os", "operator": "Exists"}]), False),
]


@pytest.mark.parametrize(("scheduling", "windows"), WINDOWS_CASES)
def test_windows_pods_by_node_selection(
    policy: Policy, scheduling: dict[str, Any], windows: bool
) -> None:
    """Guards Windows detection by nodeSelector and required node affinity, and its Linux edges."""
    pod = api_pod()
    pod["spec"].update(scheduling)
    assert (decide(pod, policy).reason == "windows-pod") is windows


# -- host paths -----------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/var/lib/containers/storage",
        "/var/lib/etcd",
        "/var/lib/rancher/k3s/storage/dify",
        "/var/lib/cni/networks",
        "/opt/cni/bin",
        "/var/lib/kube-proxy",
        "/var/lib/calico",
        "/var/lib/cilium/bpffs",
        "/opt",  # contains /opt/cni
        "/var/lib/../lib/etcd/",
    ],
)
def test_node_state_is_never_chowned(path: str) -> None:
    """Guards the built-in list of node agents' state, below and above."""
    assert hostpaths.refusal(path) is not None


def test_a_policy_adds_forbidden_prefixes_but_cannot_remove_the_built_in_ones() -> None:
    """Guards forbiddenHostPathPrefixes adding to the built-in list."""
    text = policy.default_policy_text().replace(
        "forbiddenHostPathPrefixes: []", "forbiddenHostPathPrefixes: [/srv/shared]"
    )
    p = policy.parse_policy(text, source="p.yaml")
    pod = helpers.load_pod(helpers.PODS / "plain-api-hostpath.yaml")
    for path, outcome in (
        ("/srv/shared/dify", "denied"),
        ("/srv/dify", "injected"),
        ("/var/lib/etcd/dify", "denied"),
    ):
        pod["spec"]["volumes"][0]["hostPath"]["path"] = path
        assert decide(pod, p).outcome == outcome, path


def test_forbidden_prefixes_are_validated() -> None:
    """Guards the validation of forbiddenHostPathPrefixes (absolute paths)."""
    text = helpers.first_rule_policy_text().replace(
        "forbiddenHostPathPrefixes: []", "forbiddenHostPathPrefixes: [srv]"
    )
    (error,) = policy.policy_errors(text, source="p.yaml")
    assert "forbiddenHostPathPrefixes[0]" in error and "absolute path" in error


# -- read-only and nulls ----------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        {"persistentVolumeClaim": {"claimName": "d", "readOnly": True}},
        {"nfs": {"server": "n", "path": "/e", "readOnly": True}},
        {"csi": {"driver": "d", "readOnly": True}},
        {"iscsi": {"targetPortal": "t", "iqn": "i", "lun": 0, "readOnly": True}},
        {"cephfs": {"monitors": ["m"], "readOnly": True}},
        {"azureFile": {"secretName": "s", "shareName": "x", "readOnly": True}},
        {"image": {"reference": "seed:1"}},
        {"secret": {"secretName": "s"}},
        {"projected": {"sources": []}},
        {"downwardAPI": {"items": []}},
    ],
)
def test_read_only_sources_are_left_alone(policy: Policy, source: dict[str, Any]) -> None:
    """Guards read-only-storage for every read-only source kind."""
    pod = api_pod()
    pod["spec"]["volumes"] = [{"name": "app-data", **source}]
    decision = decide(pod, policy)
    assert (decision.outcome, decision.reason) == ("skipped", "read-only-storage")
    assert decision.warnings[0].startswith("not injected: ")


def test_one_read_write_mount_of_a_volume_is_enough(policy: Policy) -> None:
    """Guards that a volume some container mounts read-write is fixed, read-write."""
    pod = api_pod()
    beat = copy.deepcopy(pod["spec"]["containers"][0])
    beat["name"] = "beat"
    beat["volumeMounts"][0]["readOnly"] = True
    pod["spec"]["containers"].append(beat)
    decision = decide(pod, policy)
    assert decision.reason == "injected"
    init = decision.pod["spec"]["initContainers"][0]
    assert all(not m.get("readOnly") for m in init["volumeMounts"])


def test_an_explicit_null_is_unset(policy: Policy) -> None:
    """Guards explicit nulls: the pod-level value applies and is reported."""
    pod = api_pod()
    pod["spec"]["securityContext"] = {"runAsUser": 0, "runAsNonRoot": None}
    pod["spec"]["containers"][0]["securityContext"] = {"runAsUser": None, "runAsNonRoot": None}
    decision = decide(pod, policy)
    assert decision.reason == "app-runs-as-root", "the pod-level 0 applies through the null"
    assert "runAsUser: 0, set on the pod" in decision.message
    pod["spec"]["securityContext"] = {"runAsUser": 1000, "runAsNonRoot": None}
    decision = decide(pod, policy)
    assert decision.reason == "injected" and "for 1000:1001" in decision.message


def test_messages_name_the_policy_owner_not_a_constant(policy: Policy) -> None:
    """Guards messages using the policy's user, not a hard-coded 1001."""
    rule = policy.spec.rules[0].model_copy(update={"user": 2500, "group": 2600})
    p = policy.model_copy(update={"spec": policy.spec.model_copy(update={"rules": (rule,)})})
    pod = api_pod()
    pod["spec"]["securityContext"] = {"runAsGroup": 0}
    decision = decide(pod, p)
    text = " ".join([decision.message, *decision.warnings])
    assert "2500" in text and "1001" not in text


# -- the init container's mounts --------------------------------------------------


def test_storage_trees_never_nest_in_the_init_container_whichever_comes_first(
    policy: Policy,
) -> None:
    """Guards `initcontainer._directories`: with nested storage paths in a rule, the
    tree found second is placed beside the first (`-2`) whether its path is below
    the first one's directory or above it. (It looped forever on the first order:
    `/app/api/storage/sub-N` is below `/app/api/storage` for every N.)"""
    rule = policy.spec.rules[0].model_copy(
        update={"mount_paths": ("/app/api/storage", "/app/api/storage/sub")}
    )
    p = policy.model_copy(update={"spec": policy.spec.model_copy(update={"rules": (rule,)})})
    for first, second in (
        ("/app/api/storage", "/app/api/storage/sub"),
        ("/app/api/storage/sub", "/app/api/storage"),
    ):
        pod = api_pod()
        api = pod["spec"]["containers"][0]
        api["volumeMounts"] = [{"name": "app-data", "mountPath": first}]
        worker = {**copy.deepcopy(api), "name": "worker"}
        worker["volumeMounts"] = [{"name": "app-data", "mountPath": second, "subPath": "w"}]
        pod["spec"]["containers"].append(worker)
        decision = decide(pod, p)
        assert decision.reason == "injected", decision.message
        init = decision.pod["spec"]["initContainers"][0]
        paths = [m["mountPath"] for m in init["volumeMounts"]]
        assert paths == [first, "/app/api/storage-2"]
        assert init["command"][init["command"].index("--") + 1 :] == paths
        assert not any(hostpaths.within(a, b) for a in paths for b in paths if a != b)


def test_a_reinvocation_gives_a_container_added_since_the_security_context() -> None:
    """Guards reinvocation: after our patch, another webhook adds a container that mounts
    the fixed storage; the second call gives it runAsUser/runAsGroup/runAsNonRoot and
    nothing else, a third call changes nothing, and a container mounting a volume the
    init container does not fix gets nothing."""
    import jsonpatch

    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "labels": {"app.kubernetes.io/name": "dify", "component": "api"}},
        "spec": {
            "containers": [
                {
                    "name": "api",
                    "image": "langgenius/dify-api:1.10.1",
                    "volumeMounts": [{"name": "data", "mountPath": "/app/api/storage"}],
                }
            ],
            "volumes": [{"name": "data", "emptyDir": {}}, {"name": "other", "emptyDir": {}}],
        },
    }
    first = mutation.mutate(pod, policy.default_policy(), namespace="dify")
    patched = jsonpatch.apply_patch(pod, first.patch)
    for name, volume in (("uploader", "data"), ("stranger", "other")):
        patched["spec"]["containers"].append(
            {
                "name": name,
                "image": "langgenius/dify-api:1.10.1",
                "volumeMounts": [{"name": volume, "mountPath": "/app/api/storage"}],
            }
        )
    second = mutation.mutate(patched, policy.default_policy(), namespace="dify")
    assert second.outcome == "injected" and "container uploader" in second.message
    assert [op["path"] for op in second.patch] == ["/spec/containers/1/securityContext"]
    assert second.patch[0]["value"] == {"runAsUser": 1001, "runAsGroup": 1001, "runAsNonRoot": True}
    third = mutation.mutate(
        jsonpatch.apply_patch(patched, second.patch), policy.default_policy(), namespace="dify"
    )
    assert (third.reason, third.patch) == ("already-injected", [])


def test_the_volume_goes_to_the_user_the_app_runs_as(policy: Policy) -> None:
    """Guards the identity rule: an app that runs as another UID gets the volume for that
    UID (and its runAsGroup), not the policy's 1001 (it lost write access on NFS and
    hostPath, where fsGroup does nothing); an app that runs as root is left alone (it got
    runAsGroup 1001 and, with drop ALL, lost write access); two apps on different UIDs
    are left alone."""
    pod = api_pod()
    pod["spec"]["containers"][0]["securityContext"] = {"runAsUser": 1000, "runAsGroup": 1000}
    decision = decide(pod, policy)
    assert decision.reason == "injected" and "for 1000:1000" in decision.message
    init = decision.pod["spec"]["initContainers"][0]
    assert init["command"][2:4] == ["--owner", "1000:1000"]
    assert "container api runs as UID 1000 (set on the container)" in " ".join(decision.warnings)
    root = api_pod()
    root["spec"]["containers"][0]["securityContext"] = {"runAsUser": 0}
    assert decide(root, policy).reason == "app-runs-as-root"
    two = api_pod()
    worker = copy.deepcopy(two["spec"]["containers"][0])
    worker["name"] = "worker"
    worker["securityContext"] = {"runAsUser": 2000}
    two["spec"]["containers"][0]["securityContext"] = {"runAsUser": 1000}
    two["spec"]["containers"].append(worker)
    assert decide(two, policy).reason == "app-users-differ"
    same = api_pod()
    same["spec"]["securityContext"] = {"runAsUser": 1001}
    decision = decide(same, policy)
    assert decision.reason == "injected" and not any("runs as UID" in w for w in decision.warnings)


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        ({"type": "Localhost", "localhostProfile": "dify-api"}, {"type": "RuntimeDefault"}),
        ({"type": "RuntimeDefault"}, None),
        (None, None),
    ],
)
def test_a_pod_level_apparmor_localhost_profile_is_not_inherited_silently(
    policy: Policy, profile: dict[str, str] | None, expected: dict[str, str] | None
) -> None:
    """Before: a pod-level AppArmor Localhost profile, written for the app, was inherited
    by the init container without a word (and may deny its chown). Now the init
    container runs under RuntimeDefault and a warning says so; other profiles are
    inherited as before (the node may not enforce AppArmor at all)."""
    pod = api_pod()
    if profile is not None:
        pod["spec"]["securityContext"] = {"appArmorProfile": profile}
    decision = decide(pod, policy)
    assert decision.reason == "injected"
    init = decision.pod["spec"]["initContainers"][0]
    assert init["securityContext"].get("appArmorProfile") == expected
    said = [w for w in decision.warnings if "AppArmor" in w]
    if expected is None:
        assert said == []
    else:
        assert said == [
            "the pod's AppArmor profile Localhost/dify-api is the app's: the init container"
            " volume-permissions runs under RuntimeDefault instead, so that its chown is not"
            " denied by a profile written for the app"
        ]
        assert podvalidity.problems(decision.pod) == []


def test_the_injected_container_is_known_by_the_status_annotation_alone() -> None:
    """Guards recognising our init container by the status annotation: a pod that
    carries it under the name the annotation records, its command rewritten by
    another webhook (a wrapper, a mesh), is not given a second one, whose name
    would clash and make kube-apiserver refuse the pod."""
    pod = helpers.load_pod(helpers.PODS / "helm-api.yaml")
    first = mutation.mutate(pod, policy.default_policy(), namespace="dify")
    assert first.outcome == "injected"
    patched = jsonpatch.apply_patch(pod, first.patch)
    (ours,) = patched["spec"]["initContainers"]
    ours["command"] = ["/wrapper", "--", "run"]
    again = mutation.mutate(patched, policy.default_policy(), namespace="dify")
    assert again.reason == "already-injected", again.reason
    assert not any(op["path"].startswith("/spec/initContainers") for op in again.patch)


@pytest.mark.parametrize("token", ["two words", "x" * 64, "-leading", "a\nb", "$(id)"])
def test_a_malformed_full_pass_token_is_ignored_and_said(token: str) -> None:
    """Guards the full-pass token's check: only 1-63 letters, digits or . _ : + -
    reach the init container's environment (and its flag file); anything else is
    left out with a warning naming the annotation."""
    pod = helpers.load_pod(helpers.PODS / "helm-api.yaml")
    pod["metadata"].setdefault("annotations", {})[initcontainer.FULL_PASS_ANNOTATION] = token
    decision = mutation.mutate(pod, policy.default_policy(), namespace="dify")
    patched = jsonpatch.apply_patch(pod, decision.patch)
    (ours,) = patched["spec"]["initContainers"]
    assert all(e["name"] != initcontainer.FULL_PASS_ENV for e in ours.get("env", ()))
    assert any(initcontainer.FULL_PASS_ANNOTATION in w for w in decision.warnings)
    pod["metadata"]["annotations"][initcontainer.FULL_PASS_ANNOTATION] = "2026-12-02"
    patched = jsonpatch.apply_patch(
        pod, mutation.mutate(pod, policy.default_policy(), namespace="dify").patch
    )
    env = patched["spec"]["initContainers"][0]["env"]
    assert {"name": initcontainer.FULL_PASS_ENV, "value": "2026-12-02"} in env


def _api_pod() -> dict[str, Any]:
    return helpers.load_pod(helpers.PODS / "helm-api.yaml")


def _patched(pod: dict[str, Any], rules: Policy | None = None) -> tuple[Any, dict[str, Any]]:
    decision = mutation.mutate(pod, rules or policy.default_policy(), namespace="dify")
    return decision, jsonpatch.apply_patch(pod, decision.patch)


def test_what_the_pod_level_security_context_sets_is_not_repeated_on_the_app() -> None:
    """Guards reading a field at pod level when the container leaves it unset: the
    pod's own runAsUser/runAsGroup/runAsNonRoot (the policy's values) are in force,
    so the app container is given none of its own."""
    pod = _api_pod()
    pod["spec"]["securityContext"] = {"runAsUser": 1001, "runAsGroup": 1001, "runAsNonRoot": True}
    decision, patched = _patched(pod)
    assert decision.outcome == "injected"
    assert "securityContext" not in patched["spec"]["containers"][0]


def test_run_as_non_root_false_is_left_and_said() -> None:
    """Guards the warning for an app that says runAsNonRoot: false: left as it is,
    and the contradiction named."""
    pod = _api_pod()
    pod["spec"]["containers"][0]["securityContext"] = {"runAsNonRoot": False}
    decision, patched = _patched(pod)
    assert patched["spec"]["containers"][0]["securityContext"]["runAsNonRoot"] is False
    assert any("runAsNonRoot is false" in w for w in decision.warnings), decision.warnings


def test_of_two_rules_that_pass_the_one_that_saw_another_image_is_said() -> None:
    """Guards which skip is reported when every matching rule passes on a pod: the
    rule that found storage mounted by an image it does not list says more than
    one that found no storage at all, whatever their order."""
    text = helpers.first_rule_policy_text()
    loaded = policy.parse_policy(text, source="p")
    first = loaded.spec.rules[0]
    elsewhere = first.model_copy(update={"name": "elsewhere", "mount_paths": ("/data",)})
    rules = loaded.model_copy(
        update={"spec": loaded.spec.model_copy(update={"rules": (elsewhere, first)})}
    )
    pod = _api_pod()
    pod["spec"]["containers"][0]["image"] = "example.com/not-dify:1.0"
    decision = mutation.mutate(pod, rules, namespace="dify")
    assert (decision.reason, decision.rule) == ("image-not-listed", first.name)


def test_two_app_containers_on_one_volume_give_the_init_container_one_mount() -> None:
    """Guards the collapse of identical mount trees: a worker sidecar mounting
    the same volume at the same path is fixed once (a second mount at the same
    path would make kube-apiserver refuse the pod)."""
    pod = _api_pod()
    twin = copy.deepcopy(pod["spec"]["containers"][0]) | {"name": "worker"}
    pod["spec"]["containers"].append(twin)
    decision, patched = _patched(pod)
    assert decision.outcome == "injected"
    (ours,) = patched["spec"]["initContainers"]
    assert [m["mountPath"] for m in ours["volumeMounts"]] == ["/app/api/storage"]
    assert podvalidity.problems(patched) == []


def test_a_malformed_pull_secret_of_the_pod_is_no_crash() -> None:
    """Guards the pull-secret merge against a pod's malformed entry (a list for a
    name, found by the fuzzer): the policy's secret is added beside it, and the
    apiserver judges the pod's own (it was a TypeError, so an internal error)."""
    pod = _api_pod()
    pod["spec"]["imagePullSecrets"] = [{"name": ["regcred"]}]
    decision, patched = _patched(pod, _with_init(image_pull_secrets=("regcred",)))
    assert decision.outcome == "injected"
    assert patched["spec"]["imagePullSecrets"] == [{"name": ["regcred"]}, {"name": "regcred"}]


def _with_init(**update: Any) -> Policy:
    """The built-in policy with its first rule's initContainer changed."""
    loaded = policy.default_policy()
    rule = loaded.spec.rules[0]
    rule = rule.model_copy(update={"init_container": rule.init_container.model_copy(update=update)})
    return loaded.model_copy(update={"spec": loaded.spec.model_copy(update={"rules": (rule,)})})


def test_the_pod_level_group_goes_with_the_pod_level_user() -> None:
    """Guards reading runAsGroup at pod level when the container sets none: an app
    running as 1000:3000 by its pod's securityContext gets its volume as 1000:3000
    (not 1000 with the policy's group)."""
    pod = _api_pod()
    pod["spec"]["securityContext"] = {"runAsUser": 1000, "runAsGroup": 3000}
    decision, patched = _patched(pod)
    assert decision.outcome == "injected"
    command = patched["spec"]["initContainers"][0]["command"]
    assert command[command.index("--owner") + 1] == "1000:3000", command


def test_a_script_mode_container_is_known_by_its_command_alone() -> None:
    """Guards recognising our init container by its command in script mode: a pod
    that carries it with the status annotation dropped (by another tool) is not
    given a second one."""
    rules = _with_init(mode="script")
    pod = _api_pod()
    first, patched = _patched(pod, rules)
    assert first.outcome == "injected"
    patched["metadata"]["annotations"].pop(mutation.STATUS_ANNOTATION)
    again = mutation.mutate(patched, rules, namespace="dify")
    assert again.reason == "already-injected", again.reason


def test_the_policys_pull_policy_reaches_the_init_container() -> None:
    """Guards initContainer.imagePullPolicy: set on the injected container when the
    policy names one, absent (the kubelet's default) when it does not."""
    _, patched = _patched(_api_pod(), _with_init(image_pull_policy="Always"))
    assert patched["spec"]["initContainers"][0]["imagePullPolicy"] == "Always"
    _, patched = _patched(_api_pod())
    assert "imagePullPolicy" not in patched["spec"]["initContainers"][0]
