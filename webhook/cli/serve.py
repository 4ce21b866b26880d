"""`serve`: the HTTPS admission server; its flags come from the settings model."""

from __future__ import annotations

import argparse
from typing import Any, Literal, get_args, get_origin

import pydantic

from webhook.cli.common import EXIT_OK
from webhook.engine.errors import UsageError


def register(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the HTTPS admission server",
        description="Run the HTTPS admission server. Every flag also reads the environment"
        " variable VOLUME_INIT_<FLAG> (e.g. VOLUME_INIT_PORT); flags win.",
    )
    serve.set_defaults(handler=run)
    _settings_flags(serve)


def _settings_flags(serve: argparse.ArgumentParser) -> None:
    """One flag per field of the settings model: its name, choices, default and help."""
    from webhook.serving.settings import Settings  # noqa: PLC0415 - pydantic-settings only

    for name, field in Settings.model_fields.items():
        choices = get_args(field.annotation) if get_origin(field.annotation) is Literal else None
        default = "; default none" if field.default in (None, "") else f"; default {field.default}"
        serve.add_argument(
            "--" + name.replace("_", "-"),
            choices=choices,
            help=f"{field.description}{default}; env VOLUME_INIT_{name.upper()}",
        )


def run(args: argparse.Namespace) -> int:
    # NB: imported here so that `policy check` does not pay for uvicorn and FastAPI.
    from webhook.serving import server  # noqa: PLC0415
    from webhook.serving.settings import Settings  # noqa: PLC0415

    flags = {
        name: getattr(args, name)
        for name in Settings.model_fields
        if getattr(args, name) is not None
    }
    try:
        settings = Settings(**flags)
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]) if error["loc"] else "settings"
        flag = "--" + name.replace("_", "-")
        env = "VOLUME_INIT_" + name.upper()
        raise UsageError(f"{flag} / {env}: {error['msg']}") from None
    server.serve(settings)
    return EXIT_OK
