"""Where Dify really keeps its files: STORAGE_TYPE and hostPath types (issue: storage
that is really there). Each case was seen failing on the engine before `storagetype`."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from webhook.engine import mutation, policy, storagetype


def pod(*envs: list[dict[str, Any]], env_from: bool = False) -> dict[str, Any]:
    containers = []
    for index, env in enumerate(envs):
        container: dict[str, Any] = {
            "name": f"c{index}",
            "image": "langgenius/dify-api:1.13.3",
            "env": env,
            "volumeMounts": [{"name": "data", "mountPath": "/app/api/storage"}],
        }
        if env_from:
            container["envFrom"] = [{"configMapRef": {"name": "dify"}}]
        containers.append(container)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "labels": {"app.kubernetes.io/name": "dify", "component": "api"}},
        "spec": {"containers": containers, "volumes": [{"name": "data", "emptyDir": {}}]},
    }


def env(**values: str) -> list[dict[str, Any]]:
    return [{"name": k, "value": v} for k, v in values.items()]


@pytest.mark.parametrize(
    ("subject", "reason"),
    [
        (pod(env(STORAGE_TYPE="s3")), "storage-not-local"),
        (pod(env(STORAGE_TYPE="azure-blob")), "storage-not-local"),
        (pod(env(STORAGE_TYPE="opendal", OPENDAL_SCHEME="s3")), "storage-not-local"),
        (pod(env(OPENDAL_SCHEME="oss")), "storage-not-local"),  # opendal is Dify's default
        (pod(env(STORAGE_TYPE="opendal", OPENDAL_SCHEME="fs")), "injected"),
        (pod(env(STORAGE_TYPE="local")), "injected"),
        (pod(env()), "injected"),
        # the last entry of a name wins, as the kubelet reads it
        (pod(env(STORAGE_TYPE="s3") + env(STORAGE_TYPE="opendal")), "injected"),
        # api on S3 but a worker mounting the same storage locally: it is fixed
        (pod(env(STORAGE_TYPE="s3"), env()), "injected"),
        (pod(env(STORAGE_TYPE="s3"), env(STORAGE_TYPE="google-storage")), "storage-not-local"),
    ],
    ids=[
        "s3", "azure", "opendal-s3", "default-opendal-oss", "opendal-fs", "local", "none",
        "last-wins", "one-local", "all-remote",
    ],
)  # fmt: skip
def test_storage_type_decides(subject: dict[str, Any], reason: str) -> None:
    """Guards `storage-not-local`: the pod is left alone only when every app container
    mounting the storage writes to an object store by its own literal env."""
    assert mutation.mutate(subject, policy.default_policy(), namespace="dify").reason == reason


def test_unreadable_values_are_said_and_assumed_local() -> None:
    """Guards the limits of reading env: a STORAGE_TYPE from valueFrom or envFrom is
    named in a warning, and the pod is fixed as today."""
    from_secret = pod(
        [{"name": "STORAGE_TYPE", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]
    )
    decision = mutation.mutate(from_secret, policy.default_policy(), namespace="dify")
    assert decision.reason == "injected"
    assert "container c0: STORAGE_TYPE comes from valueFrom" in " ".join(decision.warnings)
    decision = mutation.mutate(pod(env(), env_from=True), policy.default_policy(), namespace="dify")
    assert decision.reason == "injected"
    assert "STORAGE_TYPE comes from envFrom" in " ".join(decision.warnings)
    literal = mutation.mutate(
        pod(env(STORAGE_TYPE="s3"), env_from=True), policy.default_policy(), namespace="dify"
    )
    assert literal.reason == "storage-not-local", "a literal env entry wins over envFrom"


def test_the_policy_can_turn_it_off() -> None:
    """Guards `skipObjectStorage: false`: the pod is fixed whatever STORAGE_TYPE says."""
    text = policy.default_policy_text().replace(
        "    - name: dify-storage\n",
        "    - name: dify-storage\n      skipObjectStorage: false\n",
        1,
    )
    loaded = policy.parse_policy(text, source="p")
    assert (
        mutation.mutate(pod(env(STORAGE_TYPE="s3")), loaded, namespace="dify").reason == "injected"
    )


@pytest.mark.parametrize("kind", ["File", "FileOrCreate", "Socket", "CharDevice", "BlockDevice"])
def test_a_host_path_that_is_not_a_directory_is_left_alone(kind: str) -> None:
    """Guards `hostpath-not-directory`: walking a file, socket or device as a tree exits
    1 and the pod never starts; Directory, DirectoryOrCreate and no type are fixed."""
    subject = pod(env())
    subject["spec"]["volumes"] = [
        {"name": "data", "hostPath": {"path": "/srv/dify/x", "type": kind}}
    ]
    assert mutation.mutate(subject, policy.default_policy(), namespace="dify").reason == (
        "hostpath-not-directory"
    )
    for fine in ("Directory", "DirectoryOrCreate", "", None):
        other = copy.deepcopy(subject)
        other["spec"]["volumes"][0]["hostPath"]["type"] = fine
        assert (
            mutation.mutate(other, policy.default_policy(), namespace="dify").reason == "injected"
        )


def test_odd_env_shapes_never_crash() -> None:
    """Guards the reader against shapes the engine's checks do not cover."""
    for odd in (True, "STORAGE_TYPE=s3", {"STORAGE_TYPE": "s3"}, [1, None, {"name": ["x"]}]):
        assert storagetype.of({"env": odd, "envFrom": odd}).remote is None
