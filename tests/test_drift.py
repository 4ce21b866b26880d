"""The policy cannot silently drift from the webhook configuration.

The selection (pod selectors, excluded namespaces, the opt-in selector) is
what the webhook configuration is rendered from; `manifests` stamps its
fingerprint on the configuration and into the Deployment, and the server
compares it with the policy it loads, at start and on every reload.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from webhook.engine import policy
from webhook.install import manifests
from webhook.serving import reload, server
from webhook.serving.settings import Settings

DEFAULT = policy.default_policy_text()


def fingerprint(text: str) -> str:
    return policy.selection_fingerprint(policy.parse_policy(text, source="p.yaml"))


def test_manifests_stamp_the_selection_on_the_configuration_and_the_deployment() -> None:
    """Guards the stamp: the webhook configuration's annotation and the Deployment's
    VOLUME_INIT_SELECTION carry the fingerprint of the policy they were rendered from."""
    loaded = policy.default_policy()
    found = {o["kind"]: o for o in manifests.objects(loaded, DEFAULT)}
    expected = policy.selection_fingerprint(loaded)
    config = found["MutatingWebhookConfiguration"]
    assert config["metadata"]["annotations"][manifests.SELECTION_ANNOTATION] == expected
    env = found["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "VOLUME_INIT_SELECTION", "value": expected} in env


@pytest.mark.parametrize(
    ("old", "new", "drifts"),
    [
        ("values: [api, worker, beat]", "values: [api, worker]", True),
        ("kube-node-lease]", "kube-node-lease, sandbox]", True),
        (
            "  excludeNamespaces:",
            "  namespaceSelector: {matchLabels: {opt: in}}\n  excludeNamespaces:",
            True,
        ),
        ("mountPaths: [/app/api/storage]", "mountPaths: [/app/api/storage, /data]", False),
        ("user: 1001", "user: 1002", False),
        ("image: busybox:1.36.1", "image: busybox:1.37.0", False),
        ("nonRootSince: 1.10.1", "nonRootSince: 1.11.0", False),
    ],
)
def test_only_selection_changes_change_the_fingerprint(old: str, new: str, drifts: bool) -> None:
    """Guards what counts as drift: selectors and namespaces do, the rest does not."""
    assert old in DEFAULT
    assert (fingerprint(DEFAULT.replace(old, new, 1)) != fingerprint(DEFAULT)) is drifts


def test_the_server_reports_drift_at_start_and_on_reload(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Guards the server's check: the gauge and one warning at start when the policy
    differs from the configured selection, and again after a reload that fixes or
    breaks it."""
    path = tmp_path / "policy.yaml"
    path.write_text(DEFAULT)
    settings = Settings(policy=path, selection=fingerprint(DEFAULT))
    runtime = server.build_runtime(settings)
    assert runtime.metrics.selection_drift._value.get() == 0
    path.write_text(DEFAULT.replace("values: [api, worker, beat]", "values: [api]"))
    (policy_watch,) = [w for w in reload.watchers(settings, runtime, None) if w.name == "policy"]
    with caplog.at_level(logging.WARNING, logger="webhook"):
        policy_watch.load()
    assert runtime.metrics.selection_drift._value.get() == 1
    warned = [r for r in caplog.records if "selects pods differently" in r.getMessage()]
    assert len(warned) == 1
    stale = Settings(policy=path, selection=fingerprint(DEFAULT))
    assert server.build_runtime(stale).metrics.selection_drift._value.get() == 1
    unset = Settings(policy=path)
    assert server.build_runtime(unset).metrics.selection_drift._value.get() == 0


def test_policy_check_prints_the_selection(tmp_path: Path) -> None:
    """Guards `policy check` naming the selection and its fingerprint."""
    path = tmp_path / "p.yaml"
    path.write_text(DEFAULT)
    result = subprocess.run(
        [sys.executable, "-m", "webhook", "policy", "check", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    second = result.stdout.splitlines()[1]
    assert second.startswith(f"selection {fingerprint(DEFAULT)}: pods matching ")
    assert "namespaces excluded: kube-system, kube-public, kube-node-lease" in second
