"""Public Dify deployments nobody here wrote, decided as the webhook would decide them
(tests/testdata/corpus/index.yaml says where each comes from and why each decision).

Each workload is reviewed with the built-in policy at its repository's own image tag
and again with every Dify api image raised to a current release, as its owners will
raise it: the decision must be the one written down, and an injected one must be a
patch that applies and leaves a valid pod.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml

from tests import podvalidity
from webhook.engine.policy import Policy
from webhook.k8s import images
from webhook.review import documents

CORPUS = Path(__file__).parent / "testdata" / "corpus"
INDEX = yaml.safe_load((CORPUS / "index.yaml").read_text())
SOURCES = INDEX["sources"]
CURRENT = INDEX["current"]
# The api image's last path segment in the corpus: Dify's own, and one site's build.
API_IMAGES = frozenset({"dify-api", "api"})


def raised(workload: dict[str, Any], tag: str) -> dict[str, Any]:
    """The workload with every api image at `tag`, behind the same registry and path."""
    out = copy.deepcopy(workload)
    spec = out["spec"]["template"]["spec"]
    for container in [*(spec.get("containers") or ()), *(spec.get("initContainers") or ())]:
        ref = images.parse(container.get("image") or "")
        if ref.repository.rsplit("/", 1)[-1] in API_IMAGES:
            container["image"] = f"{ref.repository}:{tag}"
    return out


def test_the_corpus_is_what_the_index_says() -> None:
    """Guards the corpus itself: at least ten repositories, each file indexed with its
    commit, each workload in it given an expected decision, and no more."""
    assert len(SOURCES) >= 10
    files = {p.name for p in CORPUS.glob("*.yaml")} - {"index.yaml"}
    assert files == {s["file"] for s in SOURCES}
    for source in SOURCES:
        text = (CORPUS / source["file"]).read_text()
        assert text.startswith(f"# {source['repository']} at {source['commit']}\n")
        found = [f"{d['kind']}/{d['metadata']['name']}" for d in yaml.safe_load_all(text)]
        assert sorted(found) == sorted(source["expect"]), source["file"]


@pytest.mark.parametrize("source", SOURCES, ids=[s["file"][: -len(".yaml")] for s in SOURCES])
def test_each_public_deployment_is_decided_as_written(
    source: dict[str, Any], policy: Policy
) -> None:
    """Guards the decisions on real deployments: at their own tag and at a current one
    (before issue 22, the generic `app: api` StatefulSets were missed at current)."""
    options = documents.Options(policy=policy, namespace="dify")
    got: dict[str, list[str]] = {}
    for workload in yaml.safe_load_all((CORPUS / source["file"]).read_text()):
        key = f"{workload['kind']}/{workload['metadata']['name']}"
        for document in (workload, raised(workload, CURRENT)):
            reviewed = documents.review(document, options)
            assert reviewed.decision is not None, (key, reviewed.note or reviewed.error)
            got.setdefault(key, []).append(reviewed.decision.reason)
            if reviewed.decision.reason == "injected":
                patched = jsonpatch.apply_patch(document, reviewed.patch)
                assert patched == reviewed.result
                pod = {"apiVersion": "v1", "kind": "Pod", **patched["spec"]["template"]}
                assert podvalidity.problems(pod) == [], key
    assert got == source["expect"]
