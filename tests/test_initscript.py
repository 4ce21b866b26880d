"""The init container's script for real: busybox sh, a real tree, only its capabilities.

The script, its arguments, its mounts and its capabilities are all taken from
a real patch of a golden pod, and run the way a container runtime would run
them (see tests/sandbox.py).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import fusefs, helpers, sandbox
from webhook.engine import initcontainer, initscript, mutation
from webhook.engine.policy import Policy, default_policy

pytestmark = [
    pytest.mark.busybox,
    pytest.mark.skipif(sandbox.available() is not None, reason=str(sandbox.available())),
]


@pytest.fixture(params=["program", "script"])
def policy(request: pytest.FixtureRequest) -> Policy:
    """The built-in policy in each init container mode: every test of this module is a
    case of the conformance corpus both implementations must pass."""
    return with_mode(default_policy(), request.param)


def with_mode(base: Policy, mode: str) -> Policy:
    rules = tuple(
        r.model_copy(update={"init_container": r.init_container.model_copy(update={"mode": mode})})
        for r in base.spec.rules
    )
    return base.model_copy(update={"spec": base.spec.model_copy(update={"rules": rules})})


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
    """Guards the first run (everything fixed, links not followed) and the quick restart."""
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
    """Guards changing only what differs (ctimes of the rest unchanged)."""
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
    """Guards the flag recording the owner: a new owner walks again."""
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
    """Guards subPath: only that subdirectory is fixed."""
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
    assert "cannot change the owner of the volume root to 1001:1001" in result.stderr
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
    assert (
        "1 files have a hard link outside the volume (changing them would change the other"
        " names too), left alone, e.g. /app/api/storage/innocent-looking"
    ) in result.stderr
    assert os.lstat(storage / "plain").st_uid == 1001
    assert os.lstat(storage).st_uid == 1001


ODD_PATH = '/data/it\'s "$(touch /pwned)" `touch /pwned2` $HOME\nnext line'


def test_odd_mount_paths_reach_the_script_as_data(policy: Policy, tmp_path: Path) -> None:
    """Guards paths as arguments: quotes, $(...) and newlines are data, not code."""
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
    shown = ODD_PATH.replace("\n", "\\n")  # printed escaped, whole
    assert f"volume-init: {shown}: changed the owner of 2 entries" in result.stdout
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
    """Guards an existing fsGroup winning: ownership settles after one start."""
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
    """Guards nested storage: mounted in the init container and fixed."""
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


# -- Outcomes: never a false failure, never a false success, never outside ---------
# Each test below but one failed on the script before the xargs/mountinfo rework
# (commit 700ba49's), run the same way; its docstring says how.


def many_files(root: Path, count: int, *, per_dir: int = 250) -> list[Path]:
    """`count` root-owned files in directories of `per_dir`, made quickly."""
    made = []
    for i in range(count):
        directory = root / f"d{i // per_dir:04d}"
        if i % per_dir == 0:
            directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"f{i:06d}"
        path.write_bytes(b"")
        made.append(path)
    return made


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[list[Path]]:
    """Files the test makes immutable; made mutable again afterwards, for the cleanup."""
    marked: list[Path] = []
    yield marked
    for path in marked:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def test_a_failed_chown_in_any_batch_fails_the_run_with_an_exact_count(
    policy: Policy, tmp_path: Path, immutable: list[Path]
) -> None:
    """Before: the status of `find -exec {} +` decided, which busybox builds that split
    the list into batches take from the last batch only (an earlier failure passed
    silently); busybox 1.35 here runs one batch, and the run failed blaming root_squash
    and cutting the name at its newline. Now xargs makes ~35 batches of this tree and
    every one reports: the failure, its cause, the whole name, the exact count."""
    storage = tmp_path / "volume"
    files = many_files(storage, 20_000)
    stuck = files[len(files) // 3]
    stuck.rename(stuck.with_name("stuck\nname"))
    stuck = stuck.with_name("stuck\nname")
    subprocess.run(["chattr", "+i", str(stuck)], check=True)
    immutable.append(stuck)
    result = run_api_init(policy, storage, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert not (storage / ".init_permissions").exists()
    first = f"/app/api/storage/{stuck.parent.name}/stuck\\nname"
    assert f"could not change the owner of 1 entries to 1001:1001; first: {first}" in (
        result.stderr
    )
    assert "Operation not permitted (root can change owners elsewhere" in result.stderr
    assert "root_squash" not in result.stderr
    wrong = {k: v for k, v in owners(storage).items() if v != (1001, 1001)}
    assert wrong == {str(stuck.relative_to(storage)): (0, 0)}, "the rest is fixed"


def test_the_count_is_exact(policy: Policy, tmp_path: Path) -> None:
    """The count is summed from every batch's record (this one passed before too: it
    guards the sum, where the test above guards a batch that failed)."""
    storage = tmp_path / "volume"
    many_files(storage, 5_000)
    os.chown(storage / "d0003", 1001, 1001)  # already right: not counted
    result = run_api_init(policy, storage, tmp_path)
    assert result.returncode == 0, result.stderr
    # 5,000 files, 20 directories but one, and the volume root
    assert "changed the owner of 5020 entries to 1001:1001" in result.stdout


def test_a_bind_mount_inside_the_volume_is_not_crossed(
    policy: Policy, volume: tuple[Path, Path], tmp_path: Path
) -> None:
    """Before: -xdev compares st_dev, which a bind mount from the same filesystem
    shares, so everything behind the bind mount was given away."""
    storage, _ = volume
    node = tmp_path / "node-etc"
    (node / "ssh").mkdir(parents=True)
    (node / "ssh" / "ssh_host_key").write_text("secret")
    (node / "passwd").write_text("root:x:0:0")
    before = ctimes(node)
    before_owners = owners(node)
    init = injected_container(policy, "helm-api.yaml")
    mounts = ((node, "/app/api/storage/escape", False),)
    result = sandbox.run_container(init, {"app-data": storage}, tmp_path, mounts=mounts)
    assert result.returncode == 0, result.stderr
    assert owners(node) == before_owners
    assert ctimes(node) == before, "not even a no-op chown behind the mount"
    fixed = owners(storage)
    assert fixed.pop("escape") == (0, 0), "the mount point is the node's directory"
    assert set(fixed.values()) == {(1001, 1001)}


def test_a_read_only_mount_inside_the_volume_is_left_alone(
    policy: Policy, volume: tuple[Path, Path], tmp_path: Path
) -> None:
    """Before: chown failed on the read-only snapshot with EROFS, and the run failed
    with the root_squash explanation."""
    storage, _ = volume
    snapshot = tmp_path / "snapshot"
    (snapshot / "hourly.0").mkdir(parents=True)
    (snapshot / "hourly.0" / "report.pdf").write_text("old")
    init = injected_container(policy, "helm-api.yaml")
    mounts = ((snapshot, "/app/api/storage/archive", True),)
    result = sandbox.run_container(init, {"app-data": storage}, tmp_path, mounts=mounts)
    assert result.returncode == 0, result.stderr
    assert set(owners(snapshot).values()) == {(0, 0)}
    assert (storage / ".init_permissions").exists()


def test_snapshot_directories_and_lost_found_are_left_alone(
    policy: Policy, volume: tuple[Path, Path], tmp_path: Path
) -> None:
    """Before: `.snapshot` and `lost+found` were walked and chowned like the rest."""
    storage, _ = volume
    (storage / ".snapshot" / "nightly").mkdir(parents=True)
    (storage / "lost+found").mkdir()
    (storage / "upload_files" / "lost+found").mkdir()
    result = run_api_init(policy, storage, tmp_path)
    assert result.returncode == 0, result.stderr
    found = owners(storage)
    assert found.pop(".snapshot") == found.pop(".snapshot/nightly") == (0, 0)
    assert found.pop("lost+found") == (0, 0)
    assert set(found.values()) == {(1001, 1001)}, "only the root's lost+found is special"


def test_a_read_only_volume_already_owned_right_is_success(policy: Policy, tmp_path: Path) -> None:
    """Before: with no flag it walked, then failed to write the flag: exit 1."""
    storage = tmp_path / "volume"
    (storage / "privkeys").mkdir(parents=True)
    for path in (storage, storage / "privkeys"):
        os.chown(path, 1001, 1001)
    init = injected_container(policy, "helm-api.yaml")
    result = sandbox.run_container(
        init, {"app-data": storage}, tmp_path, read_only=frozenset({"app-data"})
    )
    assert result.returncode == 0, result.stderr
    assert "a read-only file system, already owned by 1001:1001" in result.stdout


def test_a_read_only_volume_is_never_called_root_squash(policy: Policy, tmp_path: Path) -> None:
    """Before: EROFS on the root produced the root_squash explanation, exit 1."""
    storage = tmp_path / "volume"
    storage.mkdir()
    init = injected_container(policy, "helm-api.yaml")
    result = sandbox.run_container(
        init, {"app-data": storage}, tmp_path, read_only=frozenset({"app-data"})
    )
    assert result.returncode == 0, result.stderr
    assert "a read-only file system owned by 0:0, not 1001:1001: left as it is" in result.stderr
    assert "root_squash" not in result.stderr


def test_entries_that_vanish_meanwhile_are_not_failure(policy: Policy, tmp_path: Path) -> None:
    """Before: a file deleted between find and chown failed its batch, and the run
    (when it was the last batch) or the count. Ten runs against a writer that keeps
    creating and deleting files, as an older pod on a shared volume does."""
    storage = tmp_path / "volume"
    many_files(storage, 3_000)
    churn = storage / "churn"
    churn.mkdir()
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            for j in range(50):
                (churn / f"tmp-{i}-{j}").write_bytes(b"x")
            for j in range(50):
                (churn / f"tmp-{i}-{j}").unlink()
            sub = churn / f"dir-{i}"
            sub.mkdir()
            (sub / "f").write_bytes(b"x")
            (sub / "f").unlink()
            sub.rmdir()
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for run in range(10):
            subprocess.run(["chown", "-R", "0:0", str(storage)], check=False)
            (storage / ".init_permissions").unlink(missing_ok=True)
            result = run_api_init(policy, storage, tmp_path)
            assert result.returncode == 0, f"run {run}: {result.stderr}"
    finally:
        stop.set()
        thread.join()
    stable = {k: v for k, v in owners(storage).items() if not k.startswith("churn/")}
    assert set(stable.values()) == {(1001, 1001)}


def test_a_flag_path_that_is_a_directory_is_a_warning(
    policy: Policy, volume: tuple[Path, Path], tmp_path: Path
) -> None:
    """Before: `rm -f` could not remove the directory: exit 1 after fixing everything."""
    storage, _ = volume
    (storage / ".init_permissions").mkdir()
    result = run_api_init(policy, storage, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "is a directory; the next start walks the volume again" in result.stderr
    assert set(owners(storage).values()) == {(1001, 1001)}


def test_a_flag_root_may_not_write_is_a_warning(policy: Policy, tmp_path: Path) -> None:
    """Before: exit 1. As on a root_squash export that was chowned on the server (the
    script's own advice): the tree is right, but root may not create the flag."""
    storage = tmp_path / "volume"
    (storage / "privkeys").mkdir(parents=True)
    for path in (storage, storage / "privkeys"):
        os.chown(path, 1001, 1001)
    result = run_api_init(policy, storage, tmp_path, caps="-all,+chown")
    assert result.returncode == 0, result.stderr
    assert "the flag file could not be written: Permission denied" in result.stderr
    assert sorted(p.name for p in storage.iterdir()) == ["privkeys"], "nothing left behind"


def test_api_and_worker_starting_together_both_write_the_flag(
    policy: Policy, volume: tuple[Path, Path], tmp_path: Path
) -> None:
    """Before: the flag's temporary file was `.init_permissions.tmp.$$`, and `$$` is 1
    in every container: pods starting together on one ReadWriteMany volume truncated
    and renamed each other's file ("the flag file could not be written" in most runs).
    Each run in its own PID namespace, so each script is PID 1 as in a pod."""
    storage, _ = volume
    init = injected_container(policy, "helm-api.yaml")
    runs = 12

    def start(i: int) -> sandbox.Result:
        workdir = tmp_path / f"pod{i}"
        workdir.mkdir()
        return sandbox.run_container(init, {"app-data": storage}, workdir, pid_namespace=True)

    with concurrent.futures.ThreadPoolExecutor(runs) as pool:
        results = list(pool.map(start, range(runs)))
    for result in results:
        assert result.returncode == 0, result.stderr
        assert "flag file could not be written" not in result.stderr, result.stderr
    assert (storage / ".init_permissions").read_text() == "1001:1001\n"
    assert sorted(p.name for p in storage.glob(".init_permissions*")) == [".init_permissions"]
    assert set(owners(storage).values()) == {(1001, 1001)}


def test_the_script_prints_as_a_yaml_block() -> None:
    """Before: three literal tabs in the script; go-yaml (kubectl get -o yaml) and
    PyYAML refuse tabs in a block scalar, so every pod showed the script as one
    quoted line. Now `|` block style is possible, and chosen by a dumper asked for it."""
    text = initscript.script_text(user=1001, group=1001)
    assert "\t" not in text
    assert not [line for line in text.splitlines() if line != line.rstrip()], "trailing spaces"

    class Block(yaml.SafeDumper):
        pass

    Block.add_representer(
        str, lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:str", value, "|")
    )
    dumped = yaml.dump({"script": text}, Dumper=Block)
    assert dumped.startswith(("script: |", '"script": |')), dumped[:80]
    assert yaml.safe_load(dumped)["script"] == text


def test_a_full_disk_leaves_no_flag_behind(policy: Policy, tmp_path: Path) -> None:
    """Before: the flag was removed, then written empty and root-owned, exit 1."""
    image = tmp_path / "small.ext4"
    storage = tmp_path / "volume"
    storage.mkdir()
    subprocess.run(["truncate", "-s", "4M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(storage)], check=True)
    try:
        (storage / "data").mkdir()
        with (storage / "fill").open("wb") as fill, contextlib.suppress(OSError):
            while True:
                fill.write(b"\0" * 65536)
                fill.flush()
                os.fsync(fill.fileno())
        with contextlib.suppress(OSError):
            for i in range(100_000):  # and the last blocks a directory could grow into
                (storage / "data" / f"n{i}").touch()
        result = run_api_init(policy, storage, tmp_path)
        assert result.returncode == 0, result.stderr
        assert "the flag file could not be written: No space left on device" in result.stderr
        assert not (storage / ".init_permissions").exists()
        assert not list(storage.glob(".init_permissions*"))
        assert os.lstat(storage / "fill").st_uid == 1001
    finally:
        subprocess.run(["umount", str(storage)], check=True)


def test_hard_links_inside_the_volume_are_fixed(policy: Policy, tmp_path: Path) -> None:
    """Before: every file with two names was left alone, with one shell and one line
    per file. 20,000 files with both names inside: all fixed, one pass."""
    storage = tmp_path / "volume"
    files = many_files(storage, 20_000)
    (storage / "links").mkdir()
    for path in files:
        os.link(path, storage / "links" / f"{path.parent.name}-{path.name}")
    started = time.monotonic()
    result = run_api_init(policy, storage, tmp_path)
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert set(owners(storage).values()) == {(1001, 1001)}
    assert "hard link" not in result.stderr
    print(f"20,000 files with two names each: {took:.1f} s")


def test_restarts_stay_quick_and_a_full_pass_can_be_asked_for(
    policy: Policy, volume: tuple[Path, Path], tmp_path: Path
) -> None:
    """Before: there was no way but deleting the flag by hand. The flag's fast path skips
    the walk, so a file root wrote later is not fixed on restart; a new token in the
    pod's annotation volume-init.dify.ai/full-pass forces one full walk."""
    storage, _ = volume
    pod = helpers.load_pod(helpers.PODS / "helm-api.yaml")
    init = mutation.mutate(pod, policy, namespace="dify").pod["spec"]["initContainers"][0]
    assert sandbox.run_container(init, {"app-data": storage}, tmp_path).returncode == 0
    late = storage / "written-by-an-old-root-release"
    late.write_text("x")
    again = sandbox.run_container(init, {"app-data": storage}, tmp_path)
    assert "nothing to do" in again.stdout
    assert os.lstat(late).st_uid == 0, "the trade-off the README states"

    pod["metadata"]["annotations"] = {initcontainer.FULL_PASS_ANNOTATION: "2026-11-28"}
    init = mutation.mutate(pod, policy, namespace="dify").pod["spec"]["initContainers"][0]
    full = sandbox.run_container(init, {"app-data": storage}, tmp_path)
    assert full.returncode == 0, full.stderr
    assert "changed the owner of 1 entries" in full.stdout
    assert os.lstat(late).st_uid == 1001
    assert (storage / ".init_permissions").read_text() == "1001:1001 2026-11-28\n"
    once = sandbox.run_container(init, {"app-data": storage}, tmp_path)
    assert "nothing to do" in once.stdout, "one full pass per token"


def test_a_path_beyond_path_max_is_named_as_a_walk_limit(policy: Policy, tmp_path: Path) -> None:
    """Before: find's error ended the pipeline and the run blamed root_squash."""
    storage = tmp_path / "volume"
    storage.mkdir()
    fd = os.open(storage, os.O_RDONLY)
    try:
        for _ in range(25):  # 25 x 200 bytes: beyond PATH_MAX (4096)
            os.mkdir("d" * 200, dir_fd=fd)
            inner = os.open("d" * 200, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
        os.close(os.open("bottom", os.O_CREAT | os.O_WRONLY, dir_fd=fd))
    finally:
        os.close(fd)
    result = run_api_init(policy, storage, tmp_path)
    assert result.returncode == 1
    assert "a path longer than PATH_MAX, which" in result.stderr
    assert "File name too long" in result.stderr
    assert "root_squash" not in result.stderr
    assert not (storage / ".init_permissions").exists()
    subprocess.run(["rm", "-rf", str(storage)], check=True)


def write_as(uid: int, gid: int, directory: Path) -> str:
    """What the app running as uid:gid (no supplementary groups: fsGroup does nothing
    on NFS or hostPath) gets when it writes a file into `directory`."""
    done = subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--",
         "sh", "-c", 'echo data > "$1/upload" && echo write-ok', "-", str(directory)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return (done.stdout + done.stderr).strip()


def test_the_volume_goes_to_the_user_the_app_runs_as(policy: Policy, tmp_path: Path) -> None:
    """Before: the tree went to the policy's 1001:1001 while the app kept its own
    runAsUser 1000, and on NFS or hostPath it lost write access. The real script, run
    as the injected init container, with the owner each decision gives: the app writes
    after today's (`write-ok`), and is refused after the policy's owner."""
    pod = helpers.load_pod(helpers.PODS / "app-runs-as-uid-1000.yaml")
    decision = mutation.mutate(pod, policy, namespace="dify")
    init = decision.pod["spec"]["initContainers"][0]
    results = {}
    # NB: pytest's tmp_path is below a 0700 directory UID 1000 cannot pass through.
    shared = Path(tempfile.mkdtemp(prefix="dvi-app-user-"))
    try:
        shared.chmod(0o755)
        for owner, container in (
            ("app", init),
            ("policy", initcontainer_for_owner(init, 1001, 1001)),
        ):
            storage = shared / owner
            (storage / "upload_files").mkdir(parents=True)
            workdir = tmp_path / owner
            workdir.mkdir()
            result = sandbox.run_container(container, {"storage": storage}, workdir)
            assert result.returncode == 0, result.stderr
            results[owner] = write_as(1000, 1000, storage / "upload_files")
    finally:
        shutil.rmtree(shared)
    assert results["app"] == "write-ok"
    assert "Permission denied" in results["policy"], results


def initcontainer_for_owner(init: dict[str, Any], user: int, group: int) -> dict[str, Any]:
    """The same init container, for another owner (its script rendered again, or its
    program's --owner)."""
    command = list(init["command"])
    if command[:2] == ["sh", "-c"]:
        command[2] = initscript.script_text(user=user, group=group)
    else:
        command[command.index("--owner") + 1] = f"{user}:{group}"
    return {**init, "command": command}


@pytest.mark.parametrize(
    ("subtype", "said"),
    [
        (
            "s3fs",
            "The volume is fuse.s3fs, an object store mounted through FUSE: it keeps no owners",
        ),
        (
            "sshfs",
            "The volume is fuse.sshfs, a FUSE file system: owners are what its daemon reports",
        ),
    ],
)
def test_a_fuse_mount_that_refuses_chown_is_named_not_root_squash(
    policy: Policy, tmp_path: Path, subtype: str, said: str
) -> None:
    """Before: every EPERM on the volume root was explained as NFS root_squash. On a
    real FUSE mount (mountinfo type fuse.s3fs, as an S3 bucket through a CSI driver)
    whose daemon refuses chown, the message now names the file system type and its
    uid/gid options, and says what to do for that kind of storage."""
    source = tmp_path / "bucket"
    (source / "upload_files").mkdir(parents=True)
    with fusefs.mounted(source, tmp_path / "mnt", subtype=subtype, deny_chown=True) as storage:
        result = run_api_init(policy, storage, tmp_path / "run")
    assert result.returncode == 1
    assert said in result.stderr, result.stderr
    assert "(uid/gid options: user_id=0,group_id=0)" in result.stderr
    assert "root_squash" not in result.stderr


def test_an_smb_share_is_told_to_use_its_mount_options() -> None:
    """The SMB/CIFS branch of the script's own `owners_hint`, on the super options a
    kernel cifs mount shows in mountinfo (no SMB server here to mount one)."""
    script = initscript.script_text(user=1001, group=1001)
    start = script.index("owners_hint() {")
    function = script[start : script.index("\n}\n", start) + 3]
    run = subprocess.run(
        ["busybox", "sh", "-c", function + "owners_hint",],
        env={"fstype": "cifs", "idopts": "uid=0,noforceuid,gid=0,noforcegid",
             "VI_USER": "1001", "VI_GROUP": "1001", "want": "1001:1001", "PATH": "/bin:/usr/bin"},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert run.stdout.startswith(
        "The volume is cifs, an SMB/CIFS share: owners come from its mount options"
        " (uid/gid options: uid=0,noforceuid,gid=0,noforcegid), not from chown; mount it with"
        " uid=1001,gid=1001,forceuid,forcegid (CSI: mountOptions)."
    ), run.stdout
