"""The engine: what the webhook decides for one pod, and the JSON Patch that says it.

Pure: no I/O (the policy arrives as text, the pod as a dict), no framework,
no logging; the review command and the admission server both call it, so a
dry run shows exactly what the cluster gets. Its modules, bottom up (below
them all, `webhook.k8s`: names and image references):
`errors`, `limits`, `hostpaths`, `yamlfile`, `policy`, `storagetype`, `podshape`,
`patches`, `storage` (where a rule's storage is in a pod), `envexpand`,
`initscript` (with `volume-init.sh`), `initcontainer` (the injected container),
`mutation` (the decision) and `admission` (the AdmissionReview envelope).
"""

PRODUCT = "dify-volume-init"
"""The product's name, and the default name of its namespace, Service and objects."""
VERSION = "0.1.0"
DEFAULT_IMAGE = f"ghcr.io/dify-volume-init/dify-volume-init:{VERSION}"
"""The webhook's image reference of this release, until the deployment says which it
runs (`manifests --image`, kustomize `images`, the chart's `image`): the image the
injected init container runs in program mode."""
