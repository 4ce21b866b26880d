"""The YAML emitter: whatever it writes, a YAML reader reads back as the same value."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import helpers
from webhook.k8s import emit

tricky = st.sampled_from(
    [
        "yes",
        "No",
        "on",
        "OFF",
        "y",
        "n",
        "~",
        "null",
        "Null",
        "true",
        "=",
        "<<",
        "1:20",
        "0o17",
        "0x1F",
        "1_000",
        ".5",
        "-.inf",
        ".NaN",
        "+1",
        "1e3",
        "2026-11-28",
        "a: b",
        "a:",
        ":a",
        "- x",
        "#x",
        "x #y",
        "&a",
        "*a",
        "!tag",
        "%x",
        "@x",
        "`x",
        "{a}",
        "[a]",
        "a,b",
        "'q'",
        '"q"',
        "|",
        ">",
        "?",
        "",
        " ",
        " lead",
        "trail ",
        "line\\n",
        "two\\nlines",
        "a\\n\\nb\\n",
        "tab\\tin",
        "x\\n ",
        "\\n",
        "\\nlead",
        "\\u2028",
        "caf\\u00e9",
        "busybox:1.36.1",
        "/app/api/storage",
        "v1",
        "app.kubernetes.io/name",
    ]
).map(lambda s: s.encode().decode("unicode_escape") if "\\\\" in s else s)
strings = st.one_of(tricky, st.text(max_size=12))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    strings,
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(strings, inner, max_size=4)
    ),
    max_leaves=25,
)


@settings(max_examples=2000, deadline=None)
@given(value=values)
def test_round_trip(value: Any) -> None:
    """Guards the YAML writer: PyYAML reads back what it writes, for generated values."""
    text = emit.emit(value)
    assert yaml.safe_load(text) == value, text


@pytest.mark.parametrize(
    "pod_file", helpers.pod_inputs(), ids=[p.stem for p in helpers.pod_inputs()]
)
def test_round_trip_of_real_pods(pod_file: Any) -> None:
    """Guards the YAML writer on every golden pod."""
    pod = helpers.load_pod(pod_file)
    assert yaml.safe_load(emit.emit(pod)) == pod


def test_layout_is_kubectls() -> None:
    """Guards the writer's layout (key order, indentation) against kubectl's."""
    pod = {
        "metadata": {"name": "x", "labels": {}},
        "spec": {
            "containers": [{"name": "a", "args": ["-c", "echo\nhi\n"], "ports": []}],
            "volumes": [],
        },
    }
    assert emit.emit(pod) == (
        "metadata:\n"
        "  name: x\n"
        "  labels: {}\n"
        "spec:\n"
        "  containers:\n"
        "  - name: a\n"
        "    args:\n"
        '    - "-c"\n'
        "    - |\n"
        "      echo\n"
        "      hi\n"
        "    ports: []\n"
        "  volumes: []\n"
    )
