"""Admitting a connection over real sockets: the ``__connect__`` greeting, and an
authentication failure (upgrade accepted, ``AUTH_ERROR``, close 4001)."""

from __future__ import annotations

import json

import jwt
import pytest
import websockets
from shardkit import assert_serving, echo_app

from socketspec.client import ConnectRefused, connect
from socketspec.security.auth import JWTAuth

SECRET = "integration-test-secret-0123456789abcdef"


async def test_the_greeting_carries_conn_id_namespace_and_shard(start_shard) -> None:
    app = echo_app()
    shard = await start_shard(app)
    async with (
        connect(f"ws://127.0.0.1:{shard.port}/ws") as first,
        connect(f"ws://127.0.0.1:{shard.port}/ws") as second,
    ):
        greeting = await first.receive("__connect__")
        assert greeting["namespace"] == "/"
        assert greeting["shard"] == 0
        assert isinstance(greeting["conn_id"], str) and greeting["conn_id"]
        assert first.conn_id == greeting["conn_id"]
        assert second.conn_id != first.conn_id
        assert sorted(c.id for c in app.connections) == sorted([first.conn_id, second.conn_id])


@pytest.fixture
async def jwt_port(start_shard) -> int:
    shard = await start_shard(echo_app(auth=JWTAuth(SECRET)))
    assert shard.port is not None
    return shard.port


@pytest.mark.parametrize(
    "token",
    [None, "not-a-jwt", jwt.encode({"sub": "eve"}, "w" * 40, algorithm="HS256")],
    ids=["missing", "garbage", "wrong-key"],
)
async def test_an_auth_failure_is_auth_error_then_close_4001(
    jwt_port: int, token: str | None
) -> None:
    with pytest.raises(ConnectRefused) as refused:
        await connect(f"ws://127.0.0.1:{jwt_port}/ws", token=token)
    assert refused.value.status is None  # the upgrade itself succeeded
    assert refused.value.close_code == 4001
    assert refused.value.error is not None
    assert refused.value.error["code"] == "AUTH_ERROR"
    good = jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256")
    await assert_serving(jwt_port, token=good)


async def test_an_auth_failure_seen_by_the_websockets_library(jwt_port: int) -> None:
    async with websockets.connect(f"ws://127.0.0.1:{jwt_port}/ws") as ws:
        error = json.loads(await ws.recv())
        assert error["event"] == "__error__"
        assert error["payload"]["code"] == "AUTH_ERROR"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001


async def test_a_valid_token_is_admitted_with_its_user(jwt_port: int) -> None:
    token = jwt.encode({"sub": "alice", "role": "admin"}, SECRET, algorithm="HS256")
    async with connect(f"ws://127.0.0.1:{jwt_port}/ws", token=token) as client:
        assert client.greeting["user_id"] == "alice"
        assert await client.call("echo", {"ok": True}) == {"ok": True}
    async with connect(
        f"ws://127.0.0.1:{jwt_port}/ws", headers={"Authorization": f"Bearer {token}"}
    ) as client:
        assert client.greeting["user_id"] == "alice"
