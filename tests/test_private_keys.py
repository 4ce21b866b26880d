"""No private key ever leaves its file: every path that prints, writes or renders a CA.

An operator in a hurry gives one PEM holding both the CA and its key to
`--ca-cert` and `--ca-key` (or to `manifests --ca-bundle`, or to the chart's
`certificates.caBundle`). Each path is tried with that file and with ordinary
ones, and every output (files of mode 0644, stdout, stderr, rendered objects)
is searched for a private key: none may hold one.
"""

from __future__ import annotations

import base64
import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.test_certs import organisation
from tests.test_cli import run
from webhook.certs import pki

MARK = "PRIVATE KEY"


def combined(tmp_path: Path) -> Path:
    """The organisation's CA certificate and its key in one file, key first."""
    cert_file, key_file, _ = organisation(tmp_path)
    both = tmp_path / "org-both.pem"
    both.write_bytes(key_file.read_bytes() + cert_file.read_bytes())
    return both


def public_files(directory: Path) -> dict[str, bytes]:
    """The files of `directory` anyone may read (every mode but 0600 counts)."""
    return {
        p.name: p.read_bytes()
        for p in directory.iterdir()
        if p.is_file() and stat.S_IMODE(p.stat().st_mode) & 0o077
    }


def assert_no_key(*outputs: str | bytes) -> None:
    for output in outputs:
        text = output.decode() if isinstance(output, bytes) else output
        assert MARK not in text, text[:300]


def test_a_ca_file_holding_its_key_is_refused_everywhere(tmp_path: Path) -> None:
    """Guards every reader of a CA or caBundle: a file holding a key is refused in one
    line (it was copied into ca.crt at 0644, printed by --print-ca-bundle and rendered
    into the cluster-wide webhook configuration), and nothing is written."""
    both = combined(tmp_path)
    out = tmp_path / "certs"
    made = run("certs", "--out-dir", str(out), "--ca-cert", str(both), "--ca-key", str(both))
    assert made.returncode == 2 and made.stderr.count("\n") == 1, made.stderr
    assert "holds a private key" in made.stderr
    assert not out.exists() or list(out.iterdir()) == []
    rendered = run("manifests", "--ca-bundle", str(both))
    assert rendered.returncode == 2 and "holds a private key" in rendered.stderr
    assert_no_key(made.stdout, made.stderr, rendered.stdout, rendered.stderr)


def test_a_poisoned_directory_is_refused_not_copied(tmp_path: Path) -> None:
    """Guards the directory's own ca.crt: one that holds a key (left by an older version)
    is refused in one line by every step and by --print-ca-bundle; nothing is printed."""
    out = tmp_path / "certs"
    assert run("certs", "--out-dir", str(out)).returncode == 0
    ca_key = (out / "ca.key").read_bytes()
    (out / "ca.crt").write_bytes((out / "ca.crt").read_bytes() + ca_key)
    for args in (
        ["--print-ca-bundle"],
        ["--renew"],
        ["--rotate-ca", "start"],
    ):
        result = run("certs", "--out-dir", str(out), *args)
        assert result.returncode == 2, (args, result.stderr)
        assert "ca.crt: holds a private key" in result.stderr, args
        assert_no_key(result.stdout, result.stderr)
    assert not (out / "ca-bundle.crt").exists()


def test_the_whole_lifecycle_never_publishes_a_key(tmp_path: Path) -> None:
    """Guards every output of every step: make, renew, rotate (start, switch, finish),
    an organisation's CA, --print-ca-bundle and manifests: no file anyone may read,
    no stdout or stderr, no rendered object holds a private key."""
    out = tmp_path / "certs"
    cert_file, key_file, _ = organisation(tmp_path)
    outputs: list[str] = []
    steps = [
        ["--service", "dvi", "--namespace", "ops"],
        ["--renew"],
        ["--rotate-ca", "start"],
        ["--rotate-ca", "switch"],
        ["--rotate-ca", "finish"],
        ["--rotate-ca", "start", "--ca-cert", str(cert_file), "--ca-key", str(key_file)],
        ["--rotate-ca", "switch", "--ca-cert", str(cert_file), "--ca-key", str(key_file)],
        ["--rotate-ca", "finish"],
    ]
    for step in steps:
        result = run("certs", "--out-dir", str(out), *step)
        assert result.returncode == 0, (step, result.stderr)
        printed = run("certs", "--out-dir", str(out), "--print-ca-bundle")
        assert printed.returncode == 0, printed.stderr
        bundle = base64.b64decode(printed.stdout)
        rendered = run("manifests", "--ca-bundle", str(certs_bundle(out)))
        assert rendered.returncode == 0, rendered.stderr
        outputs += [result.stdout, result.stderr, bundle.decode(), rendered.stdout]
        for name, data in public_files(out).items():
            assert MARK not in data.decode(), (step, name)
    assert_no_key(*outputs)
    assert sorted(p.name for p in out.iterdir()) == ["ca.crt", "tls.crt", "tls.key"]


def certs_bundle(out: Path) -> Path:
    return out / ("ca-bundle.crt" if (out / "ca-bundle.crt").exists() else "ca.crt")


def self_signed(*, ca: bool, days: int, tmp_path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    now = dt.datetime.now(dt.UTC)
    start = now - dt.timedelta(days=max(1, -days) + 1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / f"ca-{ca}-{days}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.mark.parametrize(
    ("ca", "days", "said"),
    [(False, 30, "is not a CA"), (True, -1, "has expired")],
)
def test_manifests_refuses_a_leaf_or_an_expired_ca(
    tmp_path: Path, ca: bool, days: int, said: str
) -> None:
    """Guards `manifests --ca-bundle`: a serving certificate given by mistake, or a CA
    that has expired, is refused in one line (the apiserver would trust nothing)."""
    result = run("manifests", "--ca-bundle", str(self_signed(ca=ca, days=days, tmp_path=tmp_path)))
    assert result.returncode == 2 and result.stdout == ""
    assert said in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_only_certificate_blocks_are_kept(tmp_path: Path) -> None:
    """Guards the reader: text, parameters and other blocks around the certificates are
    dropped; what is rendered is the certificates alone."""
    plain = self_signed(ca=True, days=30, tmp_path=tmp_path)
    noisy = tmp_path / "noisy.pem"
    params = b"-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"
    noisy.write_bytes(b"Bag Attributes: friendlyName x\n" + params + plain.read_bytes())
    assert pki.read_ca_bundle(noisy) == plain.read_bytes()
