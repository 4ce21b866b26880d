"""`dify-volume-init fix-ownership` as a program (webhook/fixer.py): what the script's
conformance corpus (tests/test_initscript.py, run in both modes) does not reach:
its standard-library start, the termination log, threads on slow storage, its own
command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import fusefs, helpers, sandbox
from tests.test_initscript import many_files, owners
from webhook import fixer
from webhook.engine import mutation
from webhook.engine.policy import default_policy

ROOT = Path(__file__).resolve().parent.parent


def program_container(pod_file: str = "helm-api.yaml") -> dict[str, Any]:
    pod = helpers.load_pod(helpers.PODS / pod_file)
    decision = mutation.mutate(pod, default_policy(), namespace="dify")
    init: dict[str, Any] = decision.pod["spec"]["initContainers"][0]
    assert init["command"][:2] == ["dify-volume-init", "fix-ownership"]
    return init


def test_it_starts_with_the_standard_library_alone() -> None:
    """Guards the fixer's start: launched as the console script launches it, on an
    interpreter without site-packages (-S), it loads nothing but the standard library
    and three modules of its own (the engine's pydantic would double its start)."""
    probe = (
        "import sys; sys.argv = ['dify-volume-init', 'fix-ownership', '--help'];"
        "from webhook import launch; code = launch.main();"
        "mine = sorted(m for m in sys.modules if m.split('.')[0] == 'webhook');"
        "other = sorted({m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names)"
        " - {'webhook', '__main__'});"
        "print(code, mine, other)"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", probe],
        capture_output=True, text=True, check=True, cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": os.environ["PATH"]},
    )  # fmt: skip
    assert done.stdout.strip() == "2 ['webhook', 'webhook.fixer', 'webhook.launch'] []"


def test_the_summary_goes_to_the_termination_log(tmp_path: Path) -> None:
    """Guards what `kubectl describe pod` shows: one line naming the volume and what
    was done, written where the kubelet reads it; the same line on stdout."""
    storage = tmp_path / "volume"
    many_files(storage, 30)
    entries = len(owners(storage))  # every one root's, the root included
    log = tmp_path / "termination-log"
    result = sandbox.run_container(
        program_container(), {"app-data": storage}, tmp_path / "run", termination_log=log
    )
    assert result.returncode == 0, result.stderr
    said = log.read_text()
    assert said.startswith(
        f"fix-ownership: /app/api/storage: changed the owner of {entries} entries to 1001:1001 in "
    ), said
    assert "\n" not in said
    assert result.stdout.startswith(
        f"volume-init: /app/api/storage: changed the owner of {entries} "
    )
    again = sandbox.run_container(
        program_container(), {"app-data": storage}, tmp_path / "run", termination_log=log
    )
    assert again.returncode == 0
    assert log.read_text() == "fix-ownership: /app/api/storage: already owned by 1001:1001"


@pytest.mark.parametrize("parallel", ["1", "8"])
def test_threads_change_nothing_but_the_time(tmp_path: Path, parallel: str) -> None:
    """Guards the pool: the same tree, the same owners and the same exact count,
    whether one thread walks it or eight."""
    storage = tmp_path / "volume"
    many_files(storage, 600, per_dir=40)
    (storage / "link").symlink_to("/etc/passwd")
    entries = len(owners(storage))
    done = subprocess.run(
        [sys.executable, "-m", "webhook", "fix-ownership", "--owner", "1001:1001",
         "--parallel", parallel, str(storage)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"changed the owner of {entries} entries" in done.stdout
    assert set(owners(storage).values()) == {(1001, 1001)}
    assert os.lstat("/etc/passwd").st_uid == 0


def test_slow_storage_is_walked_by_many_threads(tmp_path: Path) -> None:
    """Guards the adaptive pool: on a FUSE file system that adds 2 ms to every call
    (as network storage does), the first entries time it and the rest is walked by
    PARALLEL_SLOW threads; on local disk by one."""
    source = tmp_path / "source"
    many_files(source, 200, per_dir=20)
    local = subprocess.run(
        [sys.executable, "-m", "webhook", "fix-ownership", "--owner", "1001:1001", str(source)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "threads)" not in local.stdout
    for path in [source, *source.rglob("*")]:
        os.lchown(path, 0, 0)
    (source / fixer.FLAG).unlink()
    with fusefs.mounted(source, tmp_path / "mnt", latency_ms=2) as storage:
        slow = subprocess.run(
            [sys.executable, "-m", "webhook", "fix-ownership", "--owner", "1001:1001",
             str(storage)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    assert f"({fixer.PARALLEL_SLOW} threads)" in slow.stdout, slow.stdout
    assert set(owners(source).values()) == {(1001, 1001)}


@pytest.mark.parametrize(
    ("args", "said"),
    [
        ([], "--owner UID:GID is required"),
        (["--owner", "1001"], "--owner '1001': expected UID:GID, e.g. 1001:1001"),
        (["--owner", "1001:x", "/v"], "expected UID:GID"),
        (["--owner", "1001:1001"], "no volume directory given"),
        (["--owner", "1001:1001", "--parallel", "0", "/v"], "a number of threads, 1-256"),
        (["--owner", "1001:1001", "--flag", "../x", "/v"], "a file name in the volume"),
        (["--owner", "1001:1001", "--bogus", "/v"], "unknown option --bogus"),
        (["--owner"], "--owner needs a value"),
    ],
)
def test_a_bad_command_line_is_one_line_and_exit_2(args: list[str], said: str) -> None:
    """Guards the usage errors: one line naming what is wrong, exit 2, nothing done."""
    done = subprocess.run(
        [sys.executable, "-m", "webhook", "fix-ownership", *args],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and said in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_a_missing_directory_fails_and_the_others_are_still_fixed(tmp_path: Path) -> None:
    """Guards several volumes: one that is not a directory is exit 1 with its own
    line, and the next is fixed anyway."""
    good = tmp_path / "good"
    many_files(good, 3)
    done = subprocess.run(
        [sys.executable, "-m", "webhook", "fix-ownership", "--owner", "1001:1001", "--",
         str(tmp_path / "missing"), str(good)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert f"{tmp_path / 'missing'}: not a mounted directory; check the volumeMount" in done.stderr
    assert set(owners(good).values()) == {(1001, 1001)}


def test_mountinfo_is_read_as_the_kernel_writes_it(tmp_path: Path) -> None:
    """Guards mount_info on a table with escaped names, read-only super options and
    mounts above, at and below the root."""
    table = tmp_path / "mountinfo"
    table.write_text(
        "22 1 0:21 / / rw,relatime - ext4 /dev/sda1 rw\n"
        "30 22 0:40 / /app/api/storage rw,relatime - cifs //srv/share"
        " rw,vers=3.1.1,uid=0,noforceuid,gid=0,noforcegid,file_mode=0755\n"
        "31 30 0:41 / /app/api/storage/snap\\040shot ro - nfs4 srv:/x ro,vers=4.2\n"
        "32 22 0:42 / /app/api/storage-other rw - tmpfs tmpfs rw\n"
    )
    info = fixer.mount_info("/app/api/storage", str(table))
    assert info.fstype == "cifs"
    assert info.id_options == "uid=0,noforceuid,gid=0,noforcegid,file_mode=0755"
    assert info.below == {"/app/api/storage/snap shot"}
    assert not info.read_only
    assert "forceuid,forcegid (CSI: mountOptions)" in fixer.owners_hint(
        info, fixer.Owner(1001, 1001)
    )


def test_the_walkthrough_patch_is_small() -> None:
    """Guards what every Dify pod carries into etcd: the README walk-through's patch is
    at most 2 KB in program mode (the script made it 12.9 KB)."""
    import json

    from webhook.engine import admission

    review = json.loads((ROOT / "examples" / "admission-review.json").read_text())
    decision = admission.answer(review, default_policy()).decision
    assert decision is not None
    size = len(json.dumps(decision.patch, separators=(",", ":")))
    assert size <= 2048, size


def test_the_termination_log_keeps_to_what_the_kubelet_reads(tmp_path: Path) -> None:
    """Guards the termination log's cap: the kubelet keeps 4096 bytes of it, so a
    summary of many volumes is cut there (whole up to that byte), never written
    past it; and nothing is written where there is no such file (outside a pod)."""

    log = fixer.Log()
    for n in range(100):
        log.summary(f"/app/api/storage/volume-{n:03}: changed the owner of 1 entries")
    path = tmp_path / "termination-log"
    log.write_termination_log(str(tmp_path / "absent"))
    assert not (tmp_path / "absent").exists()
    path.write_text("")
    log.write_termination_log(str(path))
    data = path.read_bytes()
    assert len(data) == fixer.TERMINATION_LOG_MAX == 4096
    assert data.startswith(b"fix-ownership: /app/api/storage/volume-000: changed")


def test_a_parallel_walk_closes_every_directory_it_opens(tmp_path: Path) -> None:
    """Guards the descriptors: every directory the threads open is closed (an empty
    one as soon as it is listed, the others when their last batch is done), and
    the flag's (a walk of 300 directories by 8 threads that kept them would run a
    large volume out of descriptors)."""

    storage = tmp_path / "volume"
    for n in range(300):
        (storage / f"d{n:03}").mkdir(parents=True)
        if n % 2:
            (storage / f"d{n:03}" / "file").write_text("x")
    me = f"{os.getuid()}:{os.getgid()}"
    before = sorted(os.listdir("/proc/self/fd"))
    assert fixer.main(["--owner", me, "--parallel", "8", "--", str(storage)]) == 0
    assert fixer.main(["--owner", me, "--parallel", "1", "--", str(storage / "d001")]) == 0
    assert sorted(os.listdir("/proc/self/fd")) == before
    assert (storage / ".init_permissions").exists()


def test_help_is_the_usage() -> None:
    """Guards `fix-ownership --help`: the usage, in one message (exit 2, as every
    command line it cannot run)."""
    done = subprocess.run(
        [sys.executable, "-m", "webhook", "fix-ownership", "--help"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "fix-ownership --owner UID:GID" in done.stderr, done.stderr


def test_a_flag_that_cannot_be_written_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards the flag's clean-up: when it cannot be given to the owner (the I/O
    error here), its temporary file goes too; the run warns and succeeds."""
    storage = tmp_path / "volume"
    (storage / "file").parent.mkdir()
    (storage / "file").write_text("x")

    def failing(fd: int, user: int, group: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fchown", failing)
    me = f"{os.getuid()}:{os.getgid()}"
    assert fixer.main(["--owner", me, "--", str(storage)]) == 0
    assert sorted(p.name for p in storage.iterdir()) == ["file"]
