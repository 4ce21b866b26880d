"""What one pod may ask of the webhook, and where each limit comes from.

Every step of the decision is linear in the pod's size; these limits bound the
rest: how much a pod makes the webhook build (init container mounts, script
arguments, patch operations, warnings). A pod beyond them is left alone with
the reason `pod-too-large`: no Dify pod comes near them, and a pod that does
is not one the webhook can be sure to improve.
"""

from __future__ import annotations

from typing import Any

from webhook.engine import podshape

# kube-apiserver's own limit on a request body (`MaxRequestBodyBytes`, 3 MiB),
# which bounds every object it can send us; larger bodies get HTTP 413.
MAX_BODY_BYTES = 3 * 1024 * 1024

# Kubernetes sets no limit on containers. A Dify api/worker/beat pod has one,
# or two to four with a service-mesh proxy, a log shipper or a migration init
# container; 100 (init, regular and ephemeral together) is 25 times that.
MAX_CONTAINERS = 100

# Kubernetes sets no limit on volumes either. A Dify pod declares a handful
# (storage, config, secrets, the service account token); 256 is ample.
MAX_VOLUMES = 256

# Mounts at or below the storage paths: each becomes a mount of the injected
# init container and an argument of its script. Dify mounts one volume there;
# 32 leaves room for subPaths and nested shares.
MAX_STORAGE_MOUNTS = 32

# Linux's PATH_MAX: a longer mount path cannot be mounted by any runtime.
MAX_PATH_BYTES = 4096

# The env entries an init container copies for a `subPathExpr`: the expression
# names a variable or two (Dify's own containers have about seventy in all);
# beyond 64 the copy would only grow the pod toward etcd's 1.5 MiB object limit.
MAX_COPIED_ENV = 64

# kube-apiserver keeps 4 KiB of warnings per response and truncates each one
# to 256 characters beyond that (endpoints/filters/warning.go,
# truncateAtTotalRunes); ten warnings of one line each fit.
MAX_WARNINGS = 10


# What the product reads from files other people edit (a policy ConfigMap,
# manifests from CI, `kubectl get -o json`): each is refused past these, in
# one line, before it can stall a reader.

# Nesting: a Kubernetes object nests about 20 levels (managedFields'
# fieldsV1 the deepest); 100 is five times that, and far below the recursion
# any parser or serializer on the way can take.
MAX_NESTING = 100

# Aliases may add at most this many values beyond those the document writes
# out, or as many as it writes out, whichever is more: ordinary anchors (a
# Helm values file that reuses a block) stay far below; a "billion laughs"
# document of a few hundred bytes that expands to 10^9 values is refused
# after building 10,000 of them. (kube-apiserver's YAML decoder bounds
# aliasing by a ratio of the same kind: go-yaml's allowedAliasRatio.)
MAX_ALIAS_VALUES = 10_000

# The sizes of the files themselves are the readers': `files.MAX_POLICY_BYTES`,
# `files.MAX_MANIFEST_BYTES`, `certs.pki.MAX_PEM_BYTES`.


def exceeded(spec: dict[str, Any]) -> str | None:
    """Which container or volume limit the pod's spec exceeds, or None."""
    containers = sum(len(spec.get(kind) or ()) for kind in podshape.CONTAINER_KINDS)
    if containers > MAX_CONTAINERS:
        return f"{containers} containers, more than the {MAX_CONTAINERS} the webhook handles"
    volumes = len(spec.get("volumes") or ())
    if volumes > MAX_VOLUMES:
        return f"{volumes} volumes, more than the {MAX_VOLUMES} the webhook handles"
    return None


def capped(warnings: list[str]) -> list[str]:
    """`warnings` without repeats, at most `MAX_WARNINGS`, the last saying how many more."""
    unique = list(dict.fromkeys(warnings))
    if len(unique) <= MAX_WARNINGS:
        return unique
    kept = unique[: MAX_WARNINGS - 1]
    return [*kept, f"... and {len(unique) - len(kept)} more warnings like these"]
