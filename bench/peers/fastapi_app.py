"""The benchmarks' peer on FastAPI: a WebSocket endpoint with rooms kept by hand.

The events of bench/apps/bench_app.py in the same envelope (``{"event": ...,
"payload": ...}``), written the way a FastAPI app does it without a framework for
rooms: a dict of room -> set of WebSocket, and a broadcast that sends the JSON to each
member in turn with ``await ws.send_json(...)`` (Starlette serialises it for each member).

- ``echo``: ``{"event":"echo","payload":...}`` back to the sender;
- ``join``: the socket is added to ``rooms["hall"]``; a message with ``"ack"`` is
  answered ``{"event":"__ack__","ack":<same>,"payload":{"room":"hall"}}``;
- ``shout``: ``{"event":"said","payload":...}`` to every member of ``hall``.

Served on uvicorn with uvloop (uvicorn's default WebSocket protocol).

    python bench/peers/fastapi_app.py [--port 0]

Prints "fastapi VERSION on uvicorn VERSION (pid N) listening on ws://127.0.0.1:PORT/ws".
Run from its own virtual environment (bench/peers/requirements-fastapi.txt) by
bench/run.py.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from serving import serve

ROOM = "hall"

app = FastAPI()
rooms: dict[str, set[WebSocket]] = {}


async def broadcast(room: str, event: str, payload: Any) -> None:
    for member in list(rooms.get(room, ())):
        try:
            await member.send_json({"event": event, "payload": payload})
        except (WebSocketDisconnect, RuntimeError):
            rooms.get(room, set()).discard(member)


@app.websocket("/ws")
async def endpoint(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            message = await ws.receive_json()
            if not isinstance(message, dict):
                continue
            event = message.get("event")
            payload = message.get("payload") or {}
            if event == "echo":
                await ws.send_json({"event": "echo", "payload": payload})
            elif event == "join":
                rooms.setdefault(ROOM, set()).add(ws)
                if "ack" in message:
                    await ws.send_json(
                        {"event": "__ack__", "ack": message["ack"], "payload": {"room": ROOM}}
                    )
            elif event == "shout":
                await broadcast(ROOM, "said", payload)
    except WebSocketDisconnect:
        pass
    finally:
        for members in rooms.values():
            members.discard(ws)


if __name__ == "__main__":
    serve(
        app,
        f"fastapi {version('fastapi')}",
        "/ws",
        "FastAPI peer for the benchmarks",
    )
