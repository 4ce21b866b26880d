"""dify-volume-init: a mutating admission webhook that makes Dify's storage volumes
writable by Dify's non-root api, worker and beat containers.

Layers, bottom up; tests/test_layers.py holds them:

- `webhook.engine`: the decision. Pure: a pod and a policy in, a decision and a
  JSON Patch out; no I/O, no framework.
- `webhook.review`: the dry run, the engine over manifest files.
- `webhook.serving`: the HTTPS admission server around the engine.
- `webhook.cli`, `webhook.certs`, `webhook.certdir`, `webhook.manifests`,
  `webhook.files`: the command line and what its commands read and write.

Public: the names re-exported here, the engine's contract for whoever embeds
the decision; everything else may change between releases.
"""

__version__ = "0.1.0"

from webhook.engine.admission import answer, decode
from webhook.engine.mutation import REASONS, Decision, mutate
from webhook.engine.policy import Policy, default_policy, parse_policy

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
