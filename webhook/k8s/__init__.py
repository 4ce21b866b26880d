"""What every room knows about Kubernetes: how its names and image references are
spelled (`names`, `images`) and how its objects are written as YAML (`emit`).

The standard library only (no pydantic, no engine): the engine, the dry run,
the server, the command line and the install manifests all use these, so they
sit below all of them.
"""
