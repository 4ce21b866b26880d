"""dify-volume-init: a mutating admission webhook that makes Dify's storage volumes
writable by Dify's non-root api, worker and beat containers.

Rooms, bottom up; tests/test_layers.py holds them:

- `webhook.k8s`: Kubernetes names, image references and the YAML writer, shared
  by every room above (standard library only).
- `webhook.engine`: the decision. Pure: a pod and a policy in, a decision and a
  JSON Patch out; no I/O, no framework.
- `webhook.files`: the one reader of files users give (policies, manifests, PEM).
- `webhook.certs`: certificates on disk: `pki` (build, issue, read), `store`
  (one set, locked, made whole), `rotation` (renew, rotate the CA), `layout`
  (each file and Secret name once).
- `webhook.review`: the dry run and the audit, the engine over manifest files.
- `webhook.serving`: the HTTPS admission server around the engine.
- `webhook.install`: the install objects (`manifests`; the Deployment is data).
- `webhook.cli`: the command line over all of them; `webhook.fixer` and
  `webhook.launch`: `fix-ownership`, the injected container's program
  (standard library only).

Public: the names re-exported here, the engine's contract for whoever embeds
the decision; everything else may change between releases.
"""

from __future__ import annotations

__version__ = "0.1.0"  # NB: engine.VERSION says the same; a test holds them equal

# NB: `typing` is not imported: mypy reads this name as typing's, and at run time the
# fix-ownership path saves the import.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from webhook.engine.admission import answer, decode
    from webhook.engine.mutation import REASONS, Decision, mutate
    from webhook.engine.policy import Policy, default_policy, parse_policy

# NB: loaded on first use: `fix-ownership` (webhook.fixer) starts with every Dify pod
# and needs the standard library alone, not the engine's pydantic.
_EXPORTS = {
    "answer": "webhook.engine.admission",
    "decode": "webhook.engine.admission",
    "REASONS": "webhook.engine.mutation",
    "Decision": "webhook.engine.mutation",
    "mutate": "webhook.engine.mutation",
    "Policy": "webhook.engine.policy",
    "default_policy": "webhook.engine.policy",
    "parse_policy": "webhook.engine.policy",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'webhook' has no attribute {name!r}")
    import importlib  # noqa: PLC0415

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "REASONS",
    "Decision",
    "Policy",
    "__version__",
    "answer",
    "decode",
    "default_policy",
    "mutate",
    "parse_policy",
]
