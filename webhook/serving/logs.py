"""Log set-up: one line per event, JSON by default or `key=value` text.

Admission lines carry only identifiers (uid, namespace, pod name, rule,
outcome, latency), never anything from the pod's spec: Dify pods carry
secrets in their environment. Fields go through `extra={"fields": {...}}`.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
from typing import Any

import orjson

LOGGER = "webhook"


class JSONFormatter(logging.Formatter):
    """`{"time": ..., "level": ..., "logger": ..., "msg": ..., **fields}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info and record.exc_info[0] is not None:
            line["error"] = record.exc_info[0].__name__
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """`time level msg key=value ...` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), record.levelname.lower(), record.getMessage()]
        for key, value in getattr(record, "fields", {}).items():
            parts.append(f"{key}={json.dumps(value) if isinstance(value, str) else value}")
        if record.exc_info and record.exc_info[0] is not None:
            parts.append(f"error={record.exc_info[0].__name__}")
        return " ".join(parts)


def _timestamp(record: logging.LogRecord) -> str:
    """RFC 3339 in UTC with milliseconds: `2026-11-28T11:27:15.123+00:00`."""
    return f"{_date_time(int(record.created))}.{int(record.msecs):03d}+00:00"


@functools.lru_cache(maxsize=4)
def _date_time(seconds: int) -> str:
    """NB: the date and time of day change once a second, not once a line."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def configure(*, log_format: str = "json", level: str = "info") -> None:
    """Send this package's and uvicorn's logs to stderr in the chosen format.

    NB: one line per admission is on the hot path, so the record fields no
    formatter here prints (caller's file and line, thread, process) are not
    collected: the "Optimization" advice of the logging documentation.
    """
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    handler.setFormatter(JSONFormatter() if log_format == "json" else TextFormatter())
    for name in (LOGGER, "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
    logging.getLogger("uvicorn.access").disabled = True


def get(name: str) -> logging.Logger:
    """A logger below this package's."""
    return logging.getLogger(f"{LOGGER}.{name}")
