"""The HTTPS admission server around the engine.

`settings` are the runtime knobs (flags and VOLUME_INIT_* variables);
`server` builds uvicorn over TLS (`tls`) and runs it; `app` is the ASGI app:
the admission routes, probes and metrics (`metrics`), one log line per
admission (`logs`); `state` holds what may change while it serves (the
policy and certificate, which `reload` watches).
"""
