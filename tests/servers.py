"""Real `dify-volume-init serve` processes for tests that need a real server."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests import helpers

SERVICE, NAMESPACE = "dify-volume-init", "dify-volume-init"
SERVICE_DNS = f"{SERVICE}.{NAMESPACE}.svc"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    port: int
    ca_file: Path
    process: subprocess.Popen[bytes]
    log_file: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def client(self, **kwargs: object) -> httpx.Client:
        """A client that trusts only the test CA and checks the Service name."""
        return httpx.Client(verify=self.context(), base_url=self.url, **kwargs)  # type: ignore[arg-type]

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")


@contextmanager
def running(
    args: list[str], *, ca_file: Path, workdir: Path, env: dict[str, str] | None = None
) -> Iterator[Server]:
    """Start `serve` with `args` on an ephemeral port; wait until /readyz answers 200."""
    port = free_port()
    log_file = workdir / f"server-{port}.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "webhook",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                *args,
            ],
            env={**os.environ, "VOLUME_INIT_LOG_FORMAT": "json", **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
    server = Server(port, ca_file, process, log_file)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with server.client() as client:
                    response = client.get("/readyz", extensions={"sni_hostname": SERVICE_DNS})
                if response.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"server did not become ready:\n{server.log()}")
            time.sleep(0.05)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def tls_args(directory: Path) -> list[str]:
    """`serve`'s flags for the pair in `directory`."""
    return ["--tls-cert", str(directory / "tls.crt"), "--tls-key", str(directory / "tls.key")]


def with_certificates(directory: Path) -> list[str]:
    """A CA and serving certificate for the test Service written to `directory`
    (`ca.crt` for clients); `serve`'s flags for them."""
    from webhook.certs import pki, store

    store.write_files(directory, pki.build(dns_names=pki.service_names(SERVICE, NAMESPACE)))
    return tls_args(directory)


def run_as_user(server: Server, pod: dict[str, object]) -> int:
    """The `runAsUser` the server's patch gives the pod's first container."""
    with server.client() as client:
        answer = client.post(
            "/mutate", json=helpers.review(pod), extensions={"sni_hostname": SERVICE_DNS}
        ).json()
    patch = helpers.decoded_patch(answer) or []
    (op,) = [o for o in patch if o["path"] == "/spec/containers/0/securityContext"]
    return int(op["value"]["runAsUser"])
