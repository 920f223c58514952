"""examples/ai_streaming.py over real sockets, under uvicorn and on the cluster: tokens in
order, the three ways a stream ends, and a cancel that stops it half-way."""

from __future__ import annotations

from typing import Any

from asgikit import recv, recv_event, send
from examplekit import Serve
from websockets.asyncio.client import ClientConnection, connect

FAST = {"AI_STREAM_TOKEN_DELAY": "0.01"}
SLOW = {"AI_STREAM_TOKEN_DELAY": "0.05"}


async def tokens_until_ack(ws: ClientConnection, ack: str) -> tuple[list[str], dict[str, Any]]:
    """The stream's tokens, in order, and the ``generate`` ack that ends it."""
    tokens: list[str] = []
    while True:
        message = await recv(ws)
        if message["event"] == "token":
            assert message["payload"]["index"] == len(tokens)
            tokens.append(message["payload"]["text"])
        elif message["event"] == "__ack__" and message["ack"] == ack:
            payload: dict[str, Any] = message["payload"]
            return tokens, payload


async def test_a_stream_ends_at_max_tokens_or_when_the_model_stops(serve: Serve) -> None:
    served = serve("ai_streaming", env=FAST)
    async with connect(served.ws) as ws:
        await recv(ws)
        await send(ws, "generate", {"prompt": "why", "max_tokens": 5, "stream_id": "a"}, ack="a")
        tokens, end = await tokens_until_ack(ws, "a")
        assert end == {"stream_id": "a", "tokens": 5, "finish": "length"}
        assert "".join(tokens).startswith("You asked: why.")
        await send(ws, "generate", {"prompt": "why", "max_tokens": 1000}, ack="b")
        tokens, end = await tokens_until_ack(ws, "b")
        assert (end["finish"], end["tokens"], len(tokens)) == ("stop", 64, 64)


async def test_cancel_stops_a_running_stream(serve: Serve) -> None:
    served = serve("ai_streaming", env=SLOW)
    async with connect(served.ws) as ws:
        await recv(ws)
        await send(ws, "generate", {"prompt": "tell me", "stream_id": "s1"}, ack="gen")
        for _ in range(3):
            await recv_event(ws, "token")
        await send(ws, "cancel", {"stream_id": "s1"}, ack="stop")
        cancelled = await recv_event(ws, "__ack__")
        assert (cancelled["ack"], cancelled["payload"]) == ("stop", {"cancelled": True})
        rest, end = await tokens_until_ack(ws, "gen")
        assert end["finish"] == "cancelled"
        assert end["tokens"] == 3 + len(rest) < 64
        # the stream is gone: cancelling it again finds nothing
        await send(ws, "cancel", {"stream_id": "s1"}, ack="again")
        assert (await recv_event(ws, "__ack__"))["payload"] == {"cancelled": False}


async def test_a_stream_id_runs_once_at_a_time(serve: Serve) -> None:
    served = serve("ai_streaming", env=SLOW)
    async with connect(served.ws) as ws:
        await recv(ws)
        await send(ws, "generate", {"prompt": "p", "stream_id": "same"}, ack="first")
        await recv_event(ws, "token")
        await send(ws, "generate", {"prompt": "p", "stream_id": "same"}, ack="second")
        error = await recv_event(ws, "__error__")
        assert (error["ack"], error["payload"]["code"]) == ("second", "STREAM_EXISTS")
