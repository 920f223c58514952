"""TestClient: what a refused connect tells the test that made it, and what it keeps to
recover a session."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from socketspec import SocketApp
from socketspec.connection import Identity
from socketspec.errors import CloseCode, ConnectionAuthError, ConnectRejected, SocketSpecError
from socketspec.security.auth import APIKeyAuth
from socketspec.testing import RecoveryState, TestClient


class NoneRefusingAuth:
    """A backend in the reference's style: None means "not admitted"."""

    async def authenticate(
        self, headers: Mapping[str, str], query_params: Mapping[str, str]
    ) -> Identity | None:
        user = headers.get("x-user")
        return Identity(user_id=user) if user else None


def app_with(auth: object | None = None, **kwargs: object) -> SocketApp:
    app = SocketApp(auth=auth, **kwargs)  # type: ignore[arg-type]

    @app.on("noop")
    async def noop(conn: object) -> None:
        return None

    return app


async def test_refused_auth_is_readable_and_catchable_as_runtime_error() -> None:
    app = app_with(APIKeyAuth("only-key"))
    async with TestClient(app) as client:
        with pytest.raises(RuntimeError) as info:
            await client.connect(headers={"x-api-key": "not-the-key"})
    refusal = info.value
    assert isinstance(refusal, ConnectionAuthError)
    assert isinstance(refusal, SocketSpecError)
    assert refusal.code == refusal.close_code == CloseCode.AUTH_FAILED
    assert refusal.reason == "invalid API key"
    assert refusal.error is not None
    assert refusal.error["code"] == "AUTH_ERROR"
    assert refusal.error["message"] == "invalid API key"
    assert "invalid API key" in str(refusal)
    assert app.connections == []


async def test_backend_returning_none_refuses_like_one_that_raises() -> None:
    app = app_with(NoneRefusingAuth())
    async with TestClient(app) as client:
        admitted = await client.connect(headers={"X-User": "dana"})
        assert admitted.identity.user_id == "dana"
        with pytest.raises(ConnectionAuthError) as info:
            await client.connect()
    assert info.value.code == CloseCode.AUTH_FAILED
    assert info.value.error is not None and info.value.error["code"] == "AUTH_ERROR"


async def test_refused_origin_says_why_without_an_error_payload() -> None:
    app = app_with(allowed_origins=["https://good.example"])
    async with TestClient(app, origin="https://evil.example") as client:
        with pytest.raises(ConnectRejected) as info:
            await client.connect()
    assert not isinstance(info.value, ConnectionAuthError)
    assert "evil.example" in info.value.reason
    assert info.value.error is None


def test_the_recovery_state_follows_tokens_and_positions() -> None:
    state = RecoveryState()
    state.seen(
        {
            "event": "__connect__",
            "payload": {"recovered": True, "missed": {"r": "e:1"}, "recovery": {"token": "t1"}},
        }
    )
    assert (state.token, state.recovered, state.missed) == ("t1", True, {"r": "e:1"})
    state.seen({"room": "lobby", "pos": "e:4", "event": "said", "payload": {}})
    state.seen({"event": "said", "payload": {}})  # a room without history: no position
    state.seen({"event": "__recovery__", "payload": {"token": "t2"}})
    assert state.positions == {"lobby": "e:4"} and state.token == "t2"
    state.seen({"event": "__server_shutdown__", "payload": {"recovery": {"token": "t3"}}})
    assert state.token == "t3"
