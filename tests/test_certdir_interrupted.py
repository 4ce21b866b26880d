"""A certificate directory that cannot be wedged or torn.

`certs` is run for real and killed (SIGKILL: no handler, no `finally`) or
interrupted (SIGINT) at every file-system step of each day-two step, or its
file system fails at that step; the next `certs` must find a consistent set.
`openssl verify` judges the set: the serving certificate chains to the
caBundle in force, its key is its own, no staged file is left, every key 0600.
"""

from __future__ import annotations

import fcntl
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_certs import organisation
from tests.test_cli import run

# Runs `certs` with a counter on os.replace and os.fsync: at call N it is killed by the
# signal, as if the signal arrived there.
CRASHER = """
import os, signal, sys
from webhook import cli
# NB: a run started in the background by a shell inherits SIGINT ignored (POSIX, for
# asynchronous lists); Python then leaves it so, and the SIGINT below would do nothing.
signal.signal(signal.SIGINT, signal.default_int_handler)
limit, sig = int(sys.argv[1]), int(sys.argv[2])
calls = [0]
def counting(real):
    def call(*args, **kwargs):
        calls[0] += 1
        if calls[0] == limit:
            os.kill(os.getpid(), sig)
        return real(*args, **kwargs)
    return call
os.replace = counting(os.replace)
os.fsync = counting(os.fsync)
sys.exit(cli.main(sys.argv[3:]))
"""


def crash(limit: int, sig: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CRASHER, str(limit), str(sig), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def openssl(*args: str) -> str:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def assert_consistent(d: Path, *, staged_ok: bool = False) -> None:
    """The files left are one set: tls.crt verifies against the caBundle in force for
    the Service's name, tls.key is its key, keys are 0600, nothing staged is left
    (`staged_ok`: staged files may be, as a kill leaves them before the next run)."""
    bundle = d / ("ca-bundle.crt" if (d / "ca-next.crt").exists() else "ca.crt")
    verified = openssl(
        "verify", "-CAfile", str(bundle), "-verify_hostname", "dify-volume-init.ops.svc",
        str(d / "tls.crt"),
    )  # fmt: skip
    assert verified.strip().endswith(": OK"), verified
    cert_key = openssl("x509", "-in", str(d / "tls.crt"), "-noout", "-pubkey")
    own_key = openssl("pkey", "-in", str(d / "tls.key"), "-pubout")
    assert cert_key == own_key, "tls.key is not the key of tls.crt"
    for key in d.glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    if not staged_ok:
        assert [p.name for p in d.iterdir() if p.name.startswith(".")] == []


STEPS = [
    ["--renew"],
    ["--rotate-ca", "start"],
    ["--rotate-ca", "switch"],
    ["--rotate-ca", "finish"],
]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_every_step_interrupted_anywhere_leaves_a_set_the_next_run_completes(
    tmp_path: Path, sig: int
) -> None:
    """Guards the journal: each step killed at each of its file-system calls leaves a
    directory that the next `certs` makes whole (before, files were renamed one by one:
    killed between tls.crt and tls.key, the serving certificate and key did not match,
    and the Secret made from them broke TLS)."""
    d = tmp_path / "certs"
    assert run("certs", "--out-dir", str(d), "--namespace", "ops").returncode == 0
    interrupted = 0
    for step in STEPS:
        limit = 1
        while True:
            before = {p.name: p.read_bytes() for p in d.iterdir()}
            result = crash(limit, sig, "certs", "--out-dir", str(d), *step)
            if result.returncode == 0:
                break  # the step ran to its end before the limit
            interrupted += 1
            if not (d / ".journal").exists():
                # NB: with no journal the old set must still be whole, as it is
                assert_consistent(d, staged_ok=True)
            after = run("certs", "--out-dir", str(d), "--renew")
            assert after.returncode == 0, (step, limit, after.stderr)
            assert_consistent(d)
            # go back to the state before the step, so each limit starts alike
            for p in d.iterdir():
                p.unlink()
            for name, data in before.items():
                (d / name).write_bytes(data)
                if name.endswith(".key"):
                    (d / name).chmod(0o600)
            limit += 1
        assert_consistent(d)
    assert interrupted >= 12, interrupted


def test_a_failing_file_system_leaves_a_set_the_next_run_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards I/O errors in the middle of a write (a full disk on the nth rename): the
    command says so in one line, and the next run finds a consistent set."""
    from webhook.certs import rotation, store
    from webhook.certs.pki import CertificateError

    d = tmp_path / "certs"
    assert run("certs", "--out-dir", str(d), "--namespace", "ops").returncode == 0
    real = os.replace
    for failing in range(1, 4):
        calls = [0]

        def replace(
            src: str | Path, dst: str | Path, *, _calls: list[int] = calls, _at: int = failing
        ) -> None:
            _calls[0] += 1
            if _calls[0] == _at:
                raise OSError(28, "No space left on device", str(dst))
            real(src, dst)

        monkeypatch.setattr(os, "replace", replace)
        request = rotation.Request(d, None)
        with (
            pytest.raises(CertificateError, match="No space left on device"),
            store.locked(d),
        ):
            rotation.issue(request, renew_only=True)
        monkeypatch.setattr(os, "replace", real)
        assert run("certs", "--out-dir", str(d), "--renew").returncode == 0
        assert_consistent(d)


def test_a_second_certs_waits_then_names_who_holds_the_directory(tmp_path: Path) -> None:
    """Guards the lock: while another process holds the directory, `certs` waits its
    --lock-timeout and then says which process holds it, writing nothing."""
    d = tmp_path / "certs"
    assert run("certs", "--out-dir", str(d)).returncode == 0
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, sys, time\n"
         f"fd = os.open({str(d)!r}, os.O_RDONLY)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(30)\n"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        result = run("certs", "--out-dir", str(d), "--renew", "--lock-timeout", "0.5")
        assert result.returncode == 2
        assert f"(pid {holder.pid}: {sys.executable} -c " in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1
        for bad in ("nan", "-1", "1e9"):
            refused = run("certs", "--out-dir", str(d), "--lock-timeout", bad)
            assert refused.returncode == 2 and "--lock-timeout must be" in refused.stderr
        assert {p.name: p.read_bytes() for p in d.iterdir()} == before
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    fd = os.open(d, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released with its holder
    os.close(fd)


def test_leftovers_are_removed_and_a_readable_ca_key_is_made_private(tmp_path: Path) -> None:
    """Guards the clean-up: staged files of an interrupted run are removed (never left
    readable), and a ca.key readable by others is made 0600 with a warning."""
    d = tmp_path / "certs"
    assert run("certs", "--out-dir", str(d)).returncode == 0
    (d / ".tls.key.abc123de").write_bytes(b"secret")
    (d / ".tls.crt.mine").write_bytes(b"a user's own file")
    (d / "ca.key").chmod(0o644)
    result = run("certs", "--out-dir", str(d), "--renew")
    assert result.returncode == 0, result.stderr
    assert not (d / ".tls.key.abc123de").exists()
    assert "removed" in result.stderr and ".tls.key.abc123de" in result.stderr
    assert (d / ".tls.crt.mine").exists(), "only staged files of ours are removed"
    (d / ".tls.crt.mine").unlink()
    (d / ".journal").write_text('{"replace": [["../../x", "tls.crt"]], "remove": []}')
    hostile = run("certs", "--out-dir", str(d), "--renew")
    assert hostile.returncode == 2 and "unexpected entry '../../x'" in hostile.stderr
    assert stat.S_IMODE((d / "ca.key").stat().st_mode) == 0o600
    assert "was readable by others (mode 0644)" in result.stderr


def test_names_flags_and_given_cas_mean_what_they_say(tmp_path: Path) -> None:
    """Guards the flags: --renew -n N keeps the Service name in place (and --service the
    namespace); --rotate-ca "" is an error; switch and finish with a --ca-cert that is
    not the rotation's CA are refused, never signed with another CA."""
    d = tmp_path / "certs"
    assert run("certs", "--out-dir", str(d), "--service", "hook", "-n", "ops").returncode == 0
    assert run("certs", "--out-dir", str(d), "--renew", "-n", "prod").returncode == 0
    names = openssl("x509", "-in", str(d / "tls.crt"), "-noout", "-ext", "subjectAltName")
    assert "hook.prod.svc" in names and "dify-volume-init" not in names
    assert run("certs", "--out-dir", str(d), "--renew", "--service", "other").returncode == 0
    names = openssl("x509", "-in", str(d / "tls.crt"), "-noout", "-ext", "subjectAltName")
    assert "other.prod.svc" in names
    empty = run("certs", "--out-dir", str(d), "--rotate-ca", "")
    assert empty.returncode == 2 and "'' is not one of start, switch, finish" in empty.stderr
    assert run("certs", "--out-dir", str(d), "--rotate-ca", "start").returncode == 0
    cert_file, key_file, _ = organisation(tmp_path)
    for step in ("switch", "finish"):
        other = run(
            "certs", "--out-dir", str(d), "--rotate-ca", step,
            "--ca-cert", str(cert_file), "--ca-key", str(key_file),
        )  # fmt: skip
        assert other.returncode == 2, other.stderr
        assert "--ca-cert is not the CA this rotation moves to" in other.stderr


def test_a_ca_whose_name_constraints_exclude_the_service_is_refused(tmp_path: Path) -> None:
    """Guards name constraints: a CA permitted only `corp.example` cannot sign the
    Service's names; refused naming the constraint, nothing written."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from webhook.certs import pki

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Constrained CA")])
    now = dt.datetime.now(dt.UTC)
    ca = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=900))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(pki._key_usage(cert_sign=True), critical=True)
        .add_extension(
            x509.NameConstraints([x509.DNSName("corp.example")], None), critical=True
        )
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_file, key_file = tmp_path / "ca.pem", tmp_path / "ca-key.pem"
    cert_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    d = tmp_path / "out"
    result = run(
        "certs", "--out-dir", str(d), "--ca-cert", str(cert_file), "--ca-key", str(key_file)
    )
    assert result.returncode == 2 and "name constraints permit ['corp.example']" in result.stderr
    assert not (d / "tls.crt").exists()
