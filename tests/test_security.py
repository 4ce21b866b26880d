"""Security of the mutation: what must never be chowned, and whose pods are never touched."""

from __future__ import annotations

import copy

import pytest

from tests import helpers
from webhook.engine import mutation, policy
from webhook.engine.policy import Policy

POD = helpers.load_pod(helpers.PODS / "plain-api-hostpath.yaml")


def with_host_path(path: str) -> dict[str, object]:
    pod = copy.deepcopy(POD)
    pod["spec"]["volumes"][0]["hostPath"]["path"] = path
    return pod


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "//",
        "/.",
        "/etc",
        "/etc/",
        "/etc/dify",
        "/etc//dify/",
        "/srv/../etc/dify",
        "/srv/dify/../../etc",
        "/usr/local/dify",
        "/bin",
        "/sbin/x",
        "/lib",
        "/lib64/x",
        "/libexec",
        "/boot",
        "/dev/shm",
        "/proc/1/root",
        "/sys/fs",
        "/run/containerd",
        "/var/run/docker.sock",
        "/var/lib/kubelet/pods",
        "/var/lib/docker",
        "/var/lib/containerd/x",
        "/var/log",
        "/var/log/../log/pods",
        "/var",
        "/var/",
        "/var/lib",
        "relative/path",
        "../etc",
    ],
)
def test_dangerous_host_paths_are_refused(path: str, policy: Policy) -> None:
    """Guards the hostPath refusals, normalized."""
    decision = mutation.mutate(with_host_path(path), policy, namespace="default")
    assert decision.outcome == "denied", decision.message
    assert decision.patch == []
    assert "volume storage" in decision.message
    assert path in decision.message


@pytest.mark.parametrize(
    "path", ["/srv/dify", "/srv/dify/", "/data/dify/storage", "/var/lib/dify", "/mnt/nfs/dify"]
)
def test_ordinary_host_paths_are_fixed(path: str, policy: Policy) -> None:
    """Guards ordinary hostPaths from false refusals."""
    decision = mutation.mutate(with_host_path(path), policy, namespace="default")
    assert decision.outcome == "injected"


def test_allowed_prefixes_are_whole_path_components() -> None:
    """Guards allowedHostPathPrefixes by whole path components."""
    text = policy.default_policy_text().replace(
        "allowedHostPathPrefixes: []", "allowedHostPathPrefixes: [/data/]"
    )
    restricted = policy.parse_policy(text, source="p.yaml")
    assert restricted.spec.rules[0].allowed_host_path_prefixes == ("/data",)
    ok = mutation.mutate(with_host_path("/data/dify"), restricted, namespace="default")
    assert ok.outcome == "injected"
    for path in ("/database/dify", "/srv/dify", "/data/../srv"):
        refused = mutation.mutate(with_host_path(path), restricted, namespace="default")
        assert refused.outcome == "denied"
        assert "outside the policy's allowedHostPathPrefixes (/data)" in refused.message


def test_the_webhooks_own_namespace_is_never_injected_whatever_the_policy() -> None:
    """Guards the webhook's own namespace even under a policy that excludes nothing."""
    text = policy.default_policy_text().replace(
        "excludeNamespaces: [kube-system, kube-public, kube-node-lease]", "excludeNamespaces: []"
    )
    permissive = policy.parse_policy(text, source="p.yaml")
    pod = helpers.load_pod(helpers.PODS / "helm-api.yaml")
    own = mutation.mutate(
        pod, permissive, namespace="webhooks", protected_namespaces=frozenset({"webhooks"})
    )
    assert own.reason == "excluded-namespace"
    other = mutation.mutate(
        pod, permissive, namespace="kube-public", protected_namespaces=frozenset({"webhooks"})
    )
    assert other.outcome == "injected"  # the policy chose to allow kube-public
    system = mutation.mutate(
        pod, permissive, namespace="kube-system", protected_namespaces=frozenset({"webhooks"})
    )
    assert system.reason == "excluded-namespace"  # never sent, whatever the policy says


def test_root_app_containers_get_a_warning_not_a_silent_override(policy: Policy) -> None:
    """Guards an app container's runAsUser 0: the pod is left alone (it can write the
    storage as root; a runAsGroup or a chown to 1001 would take that away), warned."""
    pod = helpers.load_pod(helpers.PODS / "helm-api.yaml")
    pod["spec"]["containers"][0]["securityContext"] = {"runAsUser": 0}
    decision = mutation.mutate(pod, policy, namespace="dify")
    assert (decision.reason, decision.patch) == ("app-runs-as-root", [])
    container = decision.pod["spec"]["containers"][0]["securityContext"]
    assert container == {"runAsUser": 0}
    assert any("runs as root (runAsUser: 0" in w for w in decision.warnings)
