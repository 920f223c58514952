"""Drive the chat example in-process with the TestClient and print the conversation."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import jwt

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chat import create_app

from socketspec.testing import ErrorReply, TestClient

SECRET = "demo-secret-for-the-in-process-chat-demo"


def show(who: str, what: object) -> None:
    print(f"{who:>6} | {json.dumps(what)}")


async def main() -> None:
    app = create_app(SECRET)
    alice_token = jwt.encode({"sub": "alice", "role": "admin"}, SECRET, algorithm="HS256")
    bob_token = jwt.encode({"sub": "bob"}, SECRET, algorithm="HS256")
    async with TestClient(app) as client:
        alice = await client.connect(auth_token=alice_token)
        bob = await client.connect(auth_token=bob_token)
        show("alice", await alice.receive("welcome"))
        show("bob", await bob.receive("welcome"))
        show("alice", await alice.call("join_room", {"room": "general"}))
        show("bob", await bob.call("join_room", {"room": "general"}))
        show("alice", await alice.receive("user_joined"))
        show("bob", await bob.call("send_message", {"room": "general", "text": "hi alice"}))
        show("alice", await alice.receive("new_message"))
        show("alice", await alice.call("join_admin", {"section": "ops"}))
        try:
            await bob.call("join_admin", {"section": "ops"})
        except ErrorReply as refused:
            show("bob", refused.payload)
        show("bob", await bob.call("who_is_here", {"room": "general"}))


if __name__ == "__main__":
    asyncio.run(main())
