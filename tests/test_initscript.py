"""The init container's script for real: busybox sh, a real tree, only its capabilities.

The script, its arguments, its mounts and its capabilities are all taken from
a real patch of a golden pod, and run the way a container runtime would run
them (see tests/sandbox.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests import helpers, sandbox
from webhook import mutation
from webhook.policy import Policy

pytestmark = [
    pytest.mark.busybox,
    pytest.mark.skipif(sandbox.available() is not None, reason=str(sandbox.available())),
]


def injected_container(policy: Policy, pod_file: str) -> dict[str, Any]:
    pod = helpers.load_pod(helpers.PODS / pod_file)
    decision = mutation.mutate(pod, policy, namespace="dify")
    init = decision.pod["spec"]["initContainers"][0]
    assert init["name"] == "volume-permissions"
    return init


def run_api_init(
    policy: Policy, storage: Path, tmp_path: Path, *, caps: str | None = None
) -> sandbox.Result:
    """The dify-helm api pod's injected init container, run on `storage`."""
    init = injected_container(policy, "helm-api.yaml")
    return sandbox.run_container(init, {"app-data": storage}, tmp_path, caps=caps)


def build_tree(root: Path, outside: Path) -> None:
    """Root-owned files and directories, a foreign 0700 directory, links out, odd names."""
    (root / "upload_files" / "tenant-1").mkdir(parents=True)
    (root / "upload_files" / "tenant-1" / "report.pdf").write_bytes(b"%PDF")
    (root / "privkeys").mkdir()
    (root / "privkeys" / "private.pem").write_text("key")
    private = root / "other-user-0700"
    private.mkdir()
    (private / "inside.txt").write_text("x")
    os.chown(private / "inside.txt", 4242, 4242)
    os.chown(private, 4242, 4242)
    private.chmod(0o700)
    (root / 'it\'s a "quoted" name $(touch pwned) `id`').write_text("q")
    (root / "dir with spaces").mkdir()
    (root / "dir with spaces" / "file").write_text("s")
    target = outside / "target.txt"
    target.write_text("do not chown me")
    (root / "link-out-absolute").symlink_to(target)
    (root / "link-out-relative").symlink_to(Path("..") / outside.name / "target.txt")
    os.chown(root, 0, 0)


def owners(root: Path) -> dict[str, tuple[int, int]]:
    found = {".": (os.lstat(root).st_uid, os.lstat(root).st_gid)}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory) / name
            st = os.lstat(path)
            found[str(path.relative_to(root))] = (st.st_uid, st.st_gid)
    return found


def ctimes(root: Path) -> dict[str, int]:
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in [".", *dirs, *files]:
            path = Path(directory) / name
            found[str(path)] = os.lstat(path).st_ctime_ns
    return found


@pytest.fixture
def volume(tmp_path: Path) -> tuple[Path, Path]:
    outside = tmp_path / "outside"
    outside.mkdir()
    storage = tmp_path / "volume"
    storage.mkdir()
    build_tree(storage, outside)
    return storage, outside


def test_fixes_the_tree_then_exits_at_once(
    policy: Policy, volume: tuple[Path, Path], tmp_path: Path
) -> None:
    storage, outside = volume
    init = injected_container(policy, "helm-api.yaml")
    assert sandbox.capability_set(init) == "-all,+chown,+dac_override"

    first = sandbox.run_container(init, {"app-data": storage}, tmp_path)
    assert first.returncode == 0, first.stderr
    assert "/app/api/storage: changed the owner of" in first.stdout
    assert set(owners(storage).values()) == {(1001, 1001)}
    flag = storage / ".init_permissions"
    assert flag.read_text() == "1001:1001\n"
    assert (flag.stat().st_uid, flag.stat().st_gid) == (1001, 1001)
    # links were changed themselves; their targets outside the tree were not followed
    assert (outside / "target.txt").stat().st_uid == 0
    assert not (storage / "pwned").exists() and not Path("/pwned").exists()

    before = ctimes(storage)
    second = sandbox.run_container(init, {"app-data": storage}, tmp_path)
    assert second.returncode == 0, second.stderr
    assert "already owned by 1001:1001, nothing to do" in second.stdout
    assert ctimes(storage) == before


def test_only_entries_that_differ_are_changed(
    policy: Policy, volume: tuple[Path, Path], tmp_path: Path
) -> None:
    storage, _ = volume
    init = injected_container(policy, "helm-api.yaml")
    assert sandbox.run_container(init, {"app-data": storage}, tmp_path).returncode == 0
    (storage / ".init_permissions").unlink()
    os.chown(storage / "privkeys" / "private.pem", 0, 0, follow_symlinks=False)
    untouched = os.lstat(storage / "upload_files").st_ctime_ns
    result = sandbox.run_container(init, {"app-data": storage}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "changed the owner of 1 entries" in result.stdout
    assert os.lstat(storage / "upload_files").st_ctime_ns == untouched
    assert set(owners(storage).values()) == {(1001, 1001)}


def test_a_new_owner_runs_again(policy: Policy, volume: tuple[Path, Path], tmp_path: Path) -> None:
    storage, _ = volume
    init = injected_container(policy, "helm-api.yaml")
    assert sandbox.run_container(init, {"app-data": storage}, tmp_path).returncode == 0
    rule = policy.spec.rules[0].model_copy(update={"user": 2000, "group": 2001})
    other = policy.model_copy(update={"spec": policy.spec.model_copy(update={"rules": (rule,)})})
    init2 = injected_container(other, "helm-api.yaml")
    result = sandbox.run_container(init2, {"app-data": storage}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert set(owners(storage).values()) == {(2000, 2001)}
    assert (storage / ".init_permissions").read_text() == "2000:2001\n"


def test_subpath_is_mounted_and_fixed_alone(policy: Policy, tmp_path: Path) -> None:
    storage = tmp_path / "volume"
    (storage / "api-storage" / "files").mkdir(parents=True)
    (storage / "elsewhere").mkdir()
    init = injected_container(policy, "helm-api-subpath.yaml")
    assert init["volumeMounts"] == [
        {"name": "app-data", "mountPath": "/app/api/storage", "subPath": "api-storage"}
    ]
    result = sandbox.run_container(init, {"app-data": storage}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert os.lstat(storage / "api-storage" / "files").st_uid == 1001
    assert (storage / "api-storage" / ".init_permissions").exists()
    assert os.lstat(storage / "elsewhere").st_uid == 0


def test_without_chown_capability_it_fails_and_says_why(
    policy: Policy, volume: tuple[Path, Path], tmp_path: Path
) -> None:
    """Simulates an NFS export with root_squash: root may not give files away."""
    storage, _ = volume
    result = run_api_init(policy, storage, tmp_path, caps="-all,+dac_override")
    assert result.returncode != 0
    assert "cannot change the owner of '/app/api/storage" in result.stderr
    assert "root_squash" in result.stderr
    assert not (storage / ".init_permissions").exists()
    assert result.stderr.count("Operation not permitted") <= 3, "errors must stay readable"


def test_the_script_needs_dac_override_for_foreign_private_directories(
    policy: Policy, volume: tuple[Path, Path], tmp_path: Path
) -> None:
    """Why CAP_DAC_OVERRIDE is declared: without it a 0700 directory of another user stops it."""
    storage, _ = volume
    result = run_api_init(policy, storage, tmp_path, caps="-all,+chown")
    assert result.returncode != 0
    assert os.lstat(storage / "other-user-0700" / "inside.txt").st_uid == 4242


def test_hard_links_are_left_alone(policy: Policy, tmp_path: Path) -> None:
    """A hard link in the volume to a file elsewhere: chowning it would chown that file."""
    storage = tmp_path / "volume"
    storage.mkdir()
    outside = tmp_path / "shadow"
    outside.write_text("root:x:0:0")
    os.link(outside, storage / "innocent-looking")
    (storage / "plain").write_text("p")
    result = run_api_init(policy, storage, tmp_path)
    assert result.returncode == 0, result.stderr
    assert (outside.stat().st_uid, outside.stat().st_gid) == (0, 0)
    assert "innocent-looking: has other hard links, left alone" in result.stderr
    assert os.lstat(storage / "plain").st_uid == 1001
    assert os.lstat(storage).st_uid == 1001


ODD_PATH = '/data/it\'s "$(touch /pwned)" `touch /pwned2` $HOME\nnext line'


def test_odd_mount_paths_reach_the_script_as_data(policy: Policy, tmp_path: Path) -> None:
    rule = policy.spec.rules[0].model_copy(update={"mount_paths": (ODD_PATH,)})
    odd = policy.model_copy(update={"spec": policy.spec.model_copy(update={"rules": (rule,)})})
    pod = helpers.load_pod(helpers.PODS / "helm-api.yaml")
    pod["spec"]["containers"][0]["volumeMounts"][0]["mountPath"] = ODD_PATH
    decision = mutation.mutate(pod, odd, namespace="dify")
    init = decision.pod["spec"]["initContainers"][0]
    assert init["command"][-1] == ODD_PATH
    assert ODD_PATH not in init["command"][2], "paths are arguments, never script text"
    storage = tmp_path / "volume"
    storage.mkdir()
    (storage / "f").write_text("x")
    result = sandbox.run_container(init, {"app-data": storage}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"volume-init: {ODD_PATH}: changed the owner of 2 entries" in result.stdout
    assert set(owners(storage).values()) == {(1001, 1001)}
    assert not any(p.name in ("pwned", "pwned2") for p in tmp_path.rglob("*"))


def kubelet_fs_group_pass(root: Path, fs_group: int) -> None:
    """What the kubelet does to a volume for `fsGroup` (volume.SetVolumeOwnership):
    the group of every entry becomes fsGroup, group read/write is added, and
    directories get the setgid bit. Symbolic links are not followed."""
    for directory, dirs, files in os.walk(root):
        for name in [".", *dirs, *files]:
            path = Path(directory) / name
            os.lchown(path, -1, fs_group)
            st = os.lstat(path)
            if path.is_symlink():
                continue
            extra = 0o2070 if path.is_dir() else 0o060
            os.chmod(path, (st.st_mode & 0o7777) | extra)


def test_an_existing_fs_group_and_the_kubelet_agree(
    policy: Policy, volume: tuple[Path, Path], tmp_path: Path
) -> None:
    storage, _ = volume
    init = injected_container(policy, "helm-api-fsgroup.yaml")
    seen = []
    for start in range(3):
        result = sandbox.run_container(init, {"app-data": storage}, tmp_path)
        assert result.returncode == 0, result.stderr
        if start > 0:
            assert "already owned by 1001:2000, nothing to do" in result.stdout
        kubelet_fs_group_pass(storage, 2000)
        seen.append(owners(storage))
    assert set(seen[0].values()) == {(1001, 2000)}
    assert seen[0] == seen[1] == seen[2], "ownership must settle after the first start"
    assert (storage / ".init_permissions").read_text() == "1001:2000\n"


def test_storage_mounted_below_the_storage_path_is_fixed_too(
    policy: Policy, tmp_path: Path
) -> None:
    storage = tmp_path / "storage-pvc"
    (storage / "privkeys").mkdir(parents=True)
    (storage / "privkeys" / "private.pem").write_text("key")
    uploads = tmp_path / "uploads-share"
    (uploads / "tenant-1").mkdir(parents=True)
    (uploads / "tenant-1" / "image.png").write_bytes(b"png")
    init = injected_container(policy, "nested-nfs-upload-files.yaml")
    assert [m["mountPath"] for m in init["volumeMounts"]] == [
        "/app/api/storage",
        "/app/api/storage/upload_files",
    ]
    result = sandbox.run_container(init, {"app-data": storage, "uploads": uploads}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert set(owners(uploads).values()) == {(1001, 1001)}
    # The share's mount point in the storage volume was made by the runtime (here
    # the sandbox) and lies under the share whenever a container runs.
    found = owners(storage)
    assert found.pop("upload_files") == (0, 0)
    assert set(found.values()) == {(1001, 1001)}
    assert (uploads / ".init_permissions").read_text() == "1001:1001\n"
    assert (storage / ".init_permissions").read_text() == "1001:1001\n"
