"""What the reference pages' tests over real sockets share: running a page's blocks as one
module (the blocks and the adapter lines that serve them are in reference_pages), and
small client steps over the websockets library."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from asgikit import recv
from reference_pages import block
from websockets.asyncio.client import ClientConnection, connect


def run_page(page: str, *parts: int | str, given: dict[str, Any] | None = None) -> dict[str, Any]:
    """One module made of the page's blocks (numbers) and the test's own code (strings), in
    the order given, as a reader pastes them, starting with the names ``given``; its names.
    Each block keeps its name in tracebacks. The blocks run as written, not under this
    module's ``from __future__ import annotations`` (pydantic reads their annotations)."""
    names: dict[str, Any] = {"__name__": "page_" + page.replace("-", "_"), **(given or {})}
    for index, part in enumerate(parts):
        if isinstance(part, int):
            code, where = block(page, part), f"<{page}.md block {part}>"
        else:
            code, where = part, f"<{page} test code {index}>"
        exec(compile(code, where, "exec", dont_inherit=True), names)
    return names


@asynccontextmanager
async def client(url: str, **options: Any) -> AsyncIterator[tuple[ClientConnection, str]]:
    """A connection and its id, read from the ``__connect__`` greeting."""
    async with connect(url, **options) as ws:
        greeting = await recv(ws)
        assert greeting["event"] == "__connect__", greeting
        yield ws, greeting["payload"]["conn_id"]


@asynccontextmanager
async def two_clients(
    url: str,
) -> AsyncIterator[tuple[tuple[ClientConnection, str], tuple[ClientConnection, str]]]:
    """Alice and Bob, as the pages' tests call their two connections: each with its id."""
    async with client(url) as alice, client(url) as bob:
        yield alice, bob


async def emit(ws: ClientConnection, event: str, payload: Any = None) -> None:
    """What the JavaScript client of the first tutorial sends: one envelope per message."""
    message: dict[str, Any] = {"event": event}
    if payload is not None:
        message["payload"] = payload
    await ws.send(json.dumps(message))


async def silent(ws: ClientConnection, timeout: float = 0.3) -> None:
    """Nothing arrives within ``timeout`` (a fresh recovery token aside)."""
    try:
        message = await recv(ws, timeout)
    except TimeoutError:
        return
    raise AssertionError(f"expected nothing, got {message!r}")


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
