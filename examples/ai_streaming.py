"""A model's answer streamed token by token, which the client can stop half-way.

``generate`` starts a stream and answers (as its ack) once the stream ends, how it ended
and how many tokens went out; meanwhile each token arrives as a ``token`` event. ``cancel``
stops a running stream: its generator is closed and the ``generate`` ack says
``"cancelled": true``. A connection runs up to ``MAX_STREAMS`` streams at once; closing the
connection stops its streams.

The model here is a stand-in that replies word by word (``reply_tokens``); put a real
client's streaming call in its place. ``AI_STREAM_TOKEN_DELAY`` sets the seconds between
its tokens.

Run it inside FastAPI::

    uvicorn examples.ai_streaming:app

or on every core::

    socketspec-cluster examples.ai_streaming:socket --workers auto
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

from fastapi import FastAPI
from pydantic import BaseModel, Field

from socketspec import Connection, Emits, SocketApp
from socketspec.adapters.fastapi import mount
from socketspec.errors import EventError

MAX_STREAMS = 4
TOKEN_DELAY = float(os.environ.get("AI_STREAM_TOKEN_DELAY", "0.05"))


class Generate(BaseModel):
    prompt: str = Field(min_length=1, max_length=4000)
    max_tokens: int = Field(default=256, ge=1, le=4096)
    stream_id: str | None = Field(default=None, max_length=64)


class Cancel(BaseModel):
    stream_id: str = Field(min_length=1, max_length=64)


class Token(BaseModel):
    stream_id: str
    index: int
    text: str


class StreamEnd(BaseModel):
    stream_id: str
    tokens: int
    finish: str  # "stop" (the model finished), "length" (max_tokens) or "cancelled"


async def reply_tokens(prompt: str) -> AsyncIterator[str]:
    """The stand-in model: a reply about the prompt, one word at a time, without end."""
    words = f"You asked: {prompt}. Here is a long and thoughtful answer".split()
    index = 0
    while True:
        await asyncio.sleep(TOKEN_DELAY)
        yield words[index % len(words)] + " "
        index += 1
        if index == 64:
            return


socket = SocketApp(docs=True)


def streams_of(conn: Connection) -> dict[str, asyncio.Event]:
    """The connection's running streams: id → the event ``cancel`` sets."""
    streams: dict[str, asyncio.Event] = conn.metadata.setdefault("streams", {})
    return streams


@socket.on("generate", tags=["ai"], emits=[Emits("token", Token)])
async def generate(conn: Connection, payload: Generate) -> StreamEnd:
    streams = streams_of(conn)
    if len(streams) >= MAX_STREAMS:
        raise EventError(f"at most {MAX_STREAMS} streams at once", code="TOO_MANY_STREAMS")
    stream_id = payload.stream_id or uuid.uuid4().hex[:12]
    if stream_id in streams:
        raise EventError(f"stream {stream_id!r} is already running", code="STREAM_EXISTS")
    cancelled = streams[stream_id] = asyncio.Event()
    sent = 0
    finish = "stop"
    tokens = reply_tokens(payload.prompt)
    try:
        async for text in tokens:
            if cancelled.is_set():
                finish = "cancelled"
                break
            await conn.emit("token", {"stream_id": stream_id, "index": sent, "text": text})
            sent += 1
            if sent == payload.max_tokens:
                finish = "length"
                break
    finally:
        await tokens.aclose()
        del streams[stream_id]
    return StreamEnd(stream_id=stream_id, tokens=sent, finish=finish)


@socket.on("cancel", tags=["ai"])
async def cancel(conn: Connection, payload: Cancel) -> dict[str, bool]:
    """Stop a running stream; ``false`` when it had already ended."""
    running = streams_of(conn).get(payload.stream_id)
    if running is not None:
        running.set()
    return {"cancelled": running is not None}


app = FastAPI(title="ai streaming")
mount(socket, app, path="/ws")
