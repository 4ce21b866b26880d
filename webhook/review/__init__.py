"""The dry run: the engine over manifests, with no cluster.

`sources` reads files, directories and stdin into YAML or JSON documents with
their lines; `documents` reviews each one with the engine (Pods, workload
templates, AdmissionReviews, Lists); `output` prints the result as a diff,
patches, YAML or JSON, through the YAML writer in `emit`. `audit` runs the
engine over live pods (`kubectl get pods -A -o json`) to find those that
slipped through unpatched.
"""
