from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from webhook.app import create_app
from webhook.policy import Policy, default_policy
from webhook.runtime import Runtime
from webhook.settings import Settings


@pytest.fixture(scope="session")
def policy() -> Policy:
    return default_policy()


@pytest.fixture
def runtime(policy: Policy) -> Runtime:
    return Runtime(
        policy=policy,
        protected_namespaces=frozenset({"dify-volume-init"}),
        certificate_loaded=True,
    )


@pytest.fixture
def client(runtime: Runtime) -> TestClient:
    return TestClient(create_app(Settings(namespace="dify-volume-init"), runtime))
