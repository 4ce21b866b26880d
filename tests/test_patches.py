"""The patch builder (webhook/engine/patches.py) on its own: what each call records,
checked against an independent JSON Patch implementation (`jsonpatch`)."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import pytest

from webhook.engine import initcontainer
from webhook.engine.patches import PatchBuilder, _child, pointer


def pod() -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "labels": {"app": "a"}},
        "spec": {
            "containers": [{"name": "c", "securityContext": {"runAsUser": None}}],
            "volumes": [],
        },
    }


def applied(original: dict[str, Any], builder: PatchBuilder) -> dict[str, Any]:
    """The builder's operations applied by jsonpatch equal its result; the original
    is untouched."""
    before = copy.deepcopy(original)
    result: dict[str, Any] = jsonpatch.apply_patch(original, builder.operations)
    assert original == before, "the builder changed the pod it was given"
    assert result == builder.result
    return result


def test_a_value_already_set_is_kept_and_a_null_one_is_set() -> None:
    original = pod()
    builder = PatchBuilder(original)
    assert builder.set_default(("metadata", "labels"), "app", "b") is False
    assert builder.operations == []
    assert builder.set_default(("spec", "containers", 0, "securityContext"), "runAsUser", 7)
    assert builder.set_default(("metadata", "labels"), "app", "b", overwrite=True)
    result = applied(original, builder)
    assert result["spec"]["containers"][0]["securityContext"]["runAsUser"] == 7
    assert result["metadata"]["labels"]["app"] == "b"


def test_missing_mappings_are_added_whole_by_one_operation() -> None:
    original = pod()
    builder = PatchBuilder(original)
    builder.set_default(("spec", "securityContext", "seLinuxOptions"), "level", "s0")
    assert builder.operations == [
        {"op": "add", "path": "/spec/securityContext", "value": {"seLinuxOptions": {"level": "s0"}}}
    ]
    applied(original, builder)
    with pytest.raises(ValueError, match="cannot create array entries"):
        builder.set_default(("spec", "initContainers", 0), "name", "x")


def test_set_defaults_adds_only_what_is_missing() -> None:
    original = pod()
    builder = PatchBuilder(original)
    builder.set_defaults(("metadata", "labels"), {"app": "z"})
    assert builder.operations == []
    builder.set_defaults(("metadata", "labels"), {"app": "z", "tier": "t", "none": None})
    assert [op["path"] for op in builder.operations] == [
        "/metadata/labels/tier",
        "/metadata/labels/none",
    ]
    builder.set_defaults(("metadata", "annotations"), {"a/b~c": "v", "gone": None})
    assert builder.operations[-1] == {
        "op": "add",
        "path": "/metadata/annotations",
        "value": {"a/b~c": "v"},
    }
    applied(original, builder)


def test_insert_goes_into_an_array_or_adds_it() -> None:
    original = pod()
    builder = PatchBuilder(original)
    builder.insert(("spec", "initContainers"), 0, {"name": "first"})
    builder.insert(("spec", "containers"), 0, {"name": "zeroth"})
    builder.insert(("spec", "containers"), 99, {"name": "last"})
    assert [op["path"] for op in builder.operations] == [
        "/spec/initContainers",
        "/spec/containers/0",
        "/spec/containers/2",
    ]
    result = applied(original, builder)
    assert [c["name"] for c in result["spec"]["containers"]] == ["zeroth", "c", "last"]


def test_a_container_on_the_path_of_a_change_is_copied_once() -> None:
    """Copy on write: the second change on the same path works on the same copy
    (a large managedFields is never copied at all)."""
    original = pod()
    builder = PatchBuilder(original)
    first = builder._writable(("spec", "containers"))
    assert first is not original["spec"]["containers"]
    assert builder._writable(("spec", "containers")) is first
    assert builder.result["metadata"] is original["metadata"]


@pytest.mark.parametrize(
    ("node", "part", "expected"),
    [
        ({"a": 1}, "a", 1),
        ({"0": 1}, 0, None),
        ([5, 6], 1, 6),
        ([5, 6], "1", None),
        ([5, 6], 2, None),
        ([5, 6], -1, None),
        ("text", "a", None),
    ],
)
def test_a_part_of_the_wrong_kind_leads_nowhere(node: Any, part: Any, expected: Any) -> None:
    assert _child(node, part) == expected


def test_pointers_escape_tilde_and_slash() -> None:
    assert pointer(()) == ""
    assert pointer(("metadata", "annotations", "volume-init.dify.ai/status")) == (
        "/metadata/annotations/volume-init.dify.ai~1status"
    )
    assert pointer(("a~b", 0)) == "/a~0b/0"


def test_a_key_is_placed_before_the_one_named_or_last() -> None:
    """Guards the injected container's key order (what kubectl shows, what the
    goldens hold): before `before` when present, else at the end."""
    container = {"name": "n", "image": "i", "command": ["c"]}
    assert list(initcontainer._with(container, "env", [], before="command")) == [
        "name",
        "image",
        "env",
        "command",
    ]
    assert list(initcontainer._with(container, "env", [], before="absent")) == [
        "name",
        "image",
        "command",
        "env",
    ]
    assert initcontainer._with(container, "image", "j", before="command")["image"] == "j"
