"""The engine: what the webhook decides for one pod, and the JSON Patch that says it.

Pure: no I/O (the policy arrives as text, the pod as a dict), no framework,
no logging; the review command and the admission server both call it, so a
dry run shows exactly what the cluster gets. Its modules, bottom up:
`errors`, `limits`, `hostpaths`, `images`, `yamlfile`, `policy`, `podshape`,
`patches`, `storage` (where a rule's storage is in a pod), `envexpand`,
`initscript` (with `volume-init.sh`), `initcontainer` (the injected container),
`mutation` (the decision) and `admission` (the AdmissionReview envelope).
"""

PRODUCT = "dify-volume-init"
"""The product's name, and the default name of its namespace, Service and objects."""
