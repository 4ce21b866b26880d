"""The kopf peer for the admission benchmark: kopf's own `WebhookServer`.

kopf (aiohttp underneath) is what a Python operator author reaches for to
serve admission webhooks. This runs its `WebhookServer` standalone, with the
same certificate, and the handler of `bench/baseline_app.py` (the same
injection the webhook makes for the benchmark's pods, with the standard
library), so the figures compare servers, not decisions. kopf is a
bench-only dependency: `pip install kopf`.

    python bench/kopf_app.py PORT CERTFILE KEYFILE
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import kopf

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from baseline_app import answer


async def respond(request: Any, **_: Any) -> Any:
    return answer(request)


async def main(port: int, certfile: str, keyfile: str) -> None:
    server = kopf.WebhookServer(
        addr="127.0.0.1", port=port, certfile=certfile, pkeyfile=keyfile, host="127.0.0.1"
    )
    async for _ in server(respond):
        pass


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
