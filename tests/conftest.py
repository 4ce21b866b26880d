from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from webhook.engine.policy import Policy, default_policy
from webhook.serving.app import create_app
from webhook.serving.settings import Settings
from webhook.serving.state import ServingState


@pytest.fixture(scope="session")
def policy() -> Policy:
    return default_policy()


@pytest.fixture
def runtime(policy: Policy) -> ServingState:
    return ServingState(
        policy=policy,
        protected_namespaces=frozenset({"dify-volume-init"}),
        certificate_loaded=True,
    )


@pytest.fixture
def client(runtime: ServingState) -> TestClient:
    return TestClient(create_app(Settings(namespace="dify-volume-init"), runtime))
