"""Origins, authentication and rate limits, through the TestClient and the connect entry point."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest

from socketspec import Connection, Identity, SocketApp
from socketspec.errors import (
    AuthenticationError,
    ConnectionAuthError,
    OriginNotAllowedError,
)
from socketspec.security.auth import APIKeyAuth, JWTAuth
from socketspec.security.ratelimit import RateLimit
from socketspec.session import SessionConfig
from socketspec.testing import ErrorReply, MemoryTransport, TestClient

# 64 bytes: long enough for every HMAC algorithm used here, so pyjwt does not warn.
SECRET = "integration-secret-0123456789abcdef-integration-secret-0123456789"
OTHER_SECRET = "a-different-secret-0123456789abcdef-a-different-secret-012345678"


def make_token(claims: dict[str, Any], *, key: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def add_probe(app: SocketApp) -> list[str]:
    """A ``whoami`` event and an on_connect log, shared by the auth tests."""
    connected: list[str] = []

    @app.on("whoami")
    def whoami(conn: Connection) -> dict[str, Any]:
        return {"user_id": conn.identity.user_id, "role": conn.identity.role}

    @app.on_connect
    def log_connect(conn: Connection) -> None:
        connected.append(conn.id)

    return connected


async def refused_on_the_wire(app: SocketApp, query: Mapping[str, str]) -> list[dict[str, Any]]:
    """Connect through the raw entry point and return what the client saw before 4001."""
    transport = MemoryTransport()
    with pytest.raises(ConnectionAuthError) as info:
        await app.handle_connect(transport, {"origin": "http://testserver"}, query)
    assert info.value.close_code == 4001
    assert transport.close_code == 4001
    assert transport.closed.is_set()
    seen: list[dict[str, Any]] = []
    while not transport.inbox.empty():
        seen.append(transport.inbox.get_nowait())
    assert [m["event"] for m in seen] == ["__error__"]
    assert seen[0]["payload"]["code"] == "AUTH_ERROR"
    assert seen[0]["payload"]["request_id"]
    return seen


# -- origins -----------------------------------------------------------------------------------


async def test_default_origins_admit_any_origin_and_a_missing_one() -> None:
    app = SocketApp()
    connected = add_probe(app)
    assert app.allowed_origins == ["*"]
    for origin in ("http://testserver", "https://anything.example:8443", "null", None):
        async with TestClient(app, origin=origin).connect() as tc:
            assert not tc.closed
            assert await tc.call("whoami") == {"user_id": None, "role": None}
    assert len(connected) == 4


async def test_listed_origins_admit_exact_matches() -> None:
    app = SocketApp(allowed_origins=["https://app.example", "http://localhost:3000"])
    add_probe(app)
    for origin in ("https://app.example", "http://localhost:3000"):
        async with TestClient(app, origin=origin).connect() as tc:
            assert await tc.call("whoami") == {"user_id": None, "role": None}


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://app.example",  # another scheme
        "https://app.example:8443",  # another port
        "https://app.example.evil.example",  # a prefix is not a match
        "https://sub.app.example",
        "http://localhost:3001",
    ],
)
async def test_listed_origins_refuse_every_other_origin(origin: str) -> None:
    app = SocketApp(allowed_origins=["https://app.example", "http://localhost:3000"])
    connected = add_probe(app)
    async with TestClient(app, origin=origin) as client:
        with pytest.raises(OriginNotAllowedError) as info:
            await client.connect()
    assert origin in str(info.value)
    assert "not allowed" in str(info.value)
    assert connected == []
    assert app.connections == []


async def test_listed_origins_refuse_a_missing_origin_before_anything_runs() -> None:
    app = SocketApp(allowed_origins=["https://app.example"])
    connected = add_probe(app)
    async with TestClient(app, origin=None) as client:
        with pytest.raises(OriginNotAllowedError) as info:
            await client.connect()
    assert "origin" in str(info.value).lower()
    assert "missing" in str(info.value).lower()
    # refused during the handshake: nothing was written to the transport
    transport = MemoryTransport()
    with pytest.raises(OriginNotAllowedError):
        await app.handle_connect(transport, {}, {})
    assert transport.inbox.empty()
    assert connected == []
    assert app.connections == []


# -- JWT -------------------------------------------------------------------------------------


async def test_jwt_from_the_token_query_parameter_fills_the_identity() -> None:
    app = SocketApp(auth=JWTAuth(SECRET, algorithm="HS256"))
    add_probe(app)
    exp = int(time.time()) + 3600
    claims = {"sub": "user-42", "role": "editor", "scope": "read write", "exp": exp, "team": "a"}
    token = make_token(claims)
    async with TestClient(app, auth_token=token).connect() as tc:
        greeting = await tc.receive("__connect__", timeout=1)
        assert greeting["user_id"] == "user-42"
        identity = tc.identity
        assert identity is tc.connection.identity
        assert identity.user_id == "user-42"
        assert identity.role == "editor"
        assert identity.scopes == ["read", "write"]
        assert identity.claims == claims
        assert identity.raw_token == token
        assert identity.token_expires_at == datetime.fromtimestamp(exp, UTC)
        assert tc.connection.session.token_expires_at == identity.token_expires_at
        assert tc.connection.query_params["token"] == token
        assert await tc.call("whoami") == {"user_id": "user-42", "role": "editor"}


async def test_jwt_from_the_authorization_header() -> None:
    app = SocketApp(auth=JWTAuth(SECRET, algorithm="HS256"))
    add_probe(app)
    token = make_token({"sub": "header-user", "scopes": ["a", "b"]})
    async with TestClient(app) as client:
        tc = await client.connect(headers={"Authorization": f"Bearer {token}"})
        assert "token" not in tc.connection.query_params
        assert tc.identity.user_id == "header-user"
        assert tc.identity.scopes == ["a", "b"]
        assert tc.identity.role is None
        assert tc.identity.token_expires_at is None
        other = await client.connect(auth_token=make_token({"sub": "per-connect"}))
        assert other.identity.user_id == "per-connect"
        assert await tc.call("whoami") == {"user_id": "header-user", "role": None}


def bad_tokens() -> dict[str, str | None]:
    now = int(time.time())
    return {
        "missing": None,
        "garbage": "not-a-jwt",
        "wrong_secret": make_token({"sub": "u"}, key=OTHER_SECRET),
        "expired": make_token({"sub": "u", "exp": now - 10}),
        "other_algorithm": make_token({"sub": "u"}, algorithm="HS512"),
        "alg_none": jwt.encode({"sub": "u"}, None, algorithm="none"),
        "alg_none_with_signature": jwt.encode({"sub": "u"}, None, algorithm="none")
        + "c2lnbmF0dXJl",
    }


@pytest.mark.parametrize("kind", list(bad_tokens()))
async def test_bad_jwt_is_refused(kind: str) -> None:
    app = SocketApp(auth=JWTAuth(SECRET, algorithm="HS256"))
    connected = add_probe(app)
    token = bad_tokens()[kind]
    async with TestClient(app, auth_token=token) as client:
        with pytest.raises(ConnectionAuthError):
            await client.connect()
        header = {} if token is None else {"Authorization": f"Bearer {token}"}
        with pytest.raises(ConnectionAuthError):
            await client.connect(headers=header)
    assert connected == []
    assert app.connections == []


@pytest.mark.parametrize("kind", list(bad_tokens()))
async def test_bad_jwt_gets_auth_error_then_close_4001(kind: str) -> None:
    app = SocketApp(auth=JWTAuth(SECRET, algorithm="HS256"))
    connected = add_probe(app)
    token = bad_tokens()[kind]
    await refused_on_the_wire(app, {} if token is None else {"token": token})
    assert connected == []


# -- other backends ------------------------------------------------------------------------


async def test_api_key_from_header_or_query() -> None:
    app = SocketApp(auth=APIKeyAuth({"key-alice": "alice", "key-bob": "bob"}))
    add_probe(app)
    async with TestClient(app) as client:
        alice = await client.connect(headers={"X-API-Key": "key-alice"})
        assert alice.identity.user_id == "alice"
        bob = await client.connect(query_params={"api_key": "key-bob"})
        assert bob.identity.user_id == "bob"
        assert await bob.call("whoami") == {"user_id": "bob", "role": None}
        for kwargs in (
            {},
            {"headers": {"x-api-key": "key-mallory"}},
            {"query_params": {"api_key": "key-alic"}},
            {"headers": {"x-api-key": ""}},
        ):
            with pytest.raises(ConnectionAuthError):
                await client.connect(**kwargs)
    await refused_on_the_wire(app, {"api_key": "wrong"})


class SyncHeaderAuth:
    """A plain object whose ``authenticate`` is synchronous."""

    def authenticate(self, headers: Mapping[str, str], query_params: Mapping[str, str]) -> Identity:
        user = headers.get("x-user")
        if not user:
            raise AuthenticationError("who are you?")
        return Identity(user_id=user, role=query_params.get("role"))


class AsyncHeaderAuth:
    """A plain object whose ``authenticate`` is a coroutine."""

    async def authenticate(
        self, headers: Mapping[str, str], query_params: Mapping[str, str]
    ) -> Identity:
        user = headers.get("x-user")
        if user == "banned":
            raise AuthenticationError("banned user")
        if not user:
            raise AuthenticationError("who are you?")
        return Identity(user_id=user, role="async")


@pytest.mark.parametrize("backend", [SyncHeaderAuth, AsyncHeaderAuth])
async def test_custom_backends_sync_and_async(backend: type) -> None:
    app = SocketApp(auth=backend())
    connected = add_probe(app)
    async with TestClient(app) as client:
        tc = await client.connect(headers={"X-User": "carol"}, query_params={"role": "async"})
        assert tc.identity.user_id == "carol"
        assert tc.identity.role == "async"
        assert await tc.call("whoami") == {"user_id": "carol", "role": "async"}
        with pytest.raises(ConnectionAuthError):
            await client.connect()
    assert connected == [tc.id]
    seen = await refused_on_the_wire(app, {})
    assert seen[0]["payload"]["message"] == "who are you?"


async def test_async_backend_refusal_closes_4001() -> None:
    app = SocketApp(auth=AsyncHeaderAuth())
    transport = MemoryTransport()
    with pytest.raises(ConnectionAuthError):
        await app.handle_connect(transport, {"x-user": "banned"}, {})
    assert transport.close_code == 4001
    message = transport.inbox.get_nowait()
    assert message["payload"]["code"] == "AUTH_ERROR"
    assert transport.inbox.empty()


class ExplodingAuth:
    def authenticate(self, headers: Mapping[str, str], query_params: Mapping[str, str]) -> Identity:
        raise RuntimeError("database password hunter2 rejected")


class AsyncExplodingAuth:
    async def authenticate(
        self, headers: Mapping[str, str], query_params: Mapping[str, str]
    ) -> Identity:
        raise KeyError("internal-table-name")


class WrongTypeAuth:
    def authenticate(self, headers: Mapping[str, str], query_params: Mapping[str, str]) -> Any:
        return {"user_id": "not an Identity"}


@pytest.mark.parametrize(
    ("backend", "secret_text"),
    [
        (ExplodingAuth(), "hunter2"),
        (AsyncExplodingAuth(), "internal-table-name"),
        (WrongTypeAuth(), "not an Identity"),
    ],
)
async def test_broken_backend_refuses_without_leaking(backend: Any, secret_text: str) -> None:
    app = SocketApp(auth=backend)
    connected = add_probe(app)
    seen = await refused_on_the_wire(app, {"token": "anything"})
    assert secret_text not in str(seen)
    assert "RuntimeError" not in str(seen)
    async with TestClient(app) as client:
        with pytest.raises(ConnectionAuthError) as info:
            await client.connect()
    assert info.value.close_code == 4001
    assert connected == []


# -- rate limit --------------------------------------------------------------------------------


async def test_rate_limit_is_per_connection() -> None:
    app = SocketApp(rate_limit=RateLimit(events=3, per_seconds=60))
    handled: list[str] = []

    @app.on("tick")
    def tick(conn: Connection) -> dict[str, bool]:
        handled.append(conn.id)
        return {"ok": True}

    async with TestClient(app) as client:
        greedy = await client.connect()
        calm = await client.connect()
        for _ in range(3):
            assert await greedy.call("tick") == {"ok": True}
        with pytest.raises(ErrorReply) as info:
            await greedy.call("tick")
        assert info.value.code == "RATE_LIMIT_ERROR"
        assert info.value.payload["event"] == "tick"
        assert info.value.payload["details"]["retry_after"] > 0
        assert not greedy.closed  # refused, not disconnected
        # the other connection has its own bucket
        for _ in range(3):
            assert await calm.call("tick") == {"ok": True}
        with pytest.raises(ErrorReply) as info:
            await calm.call("tick")
        assert info.value.code == "RATE_LIMIT_ERROR"
        # a connection opened later starts with a full bucket
        fresh = await client.connect()
        assert await fresh.call("tick") == {"ok": True}
    assert handled.count(greedy.id) == 3
    assert handled.count(calm.id) == 3
    assert handled.count(fresh.id) == 1


async def test_a_rate_limited_client_is_refused_events_not_disconnected() -> None:
    # Heartbeat replies are protocol, not events: an exhausted bucket must not turn the
    # client's pongs away and get it closed for a heartbeat timeout.
    app = SocketApp(
        rate_limit=RateLimit(events=2, per_seconds=60),
        session=SessionConfig(
            heartbeat_interval=0.05, heartbeat_timeout=0.05, idle_timeout=0, max_duration=0
        ),
    )

    @app.on("tick")
    def tick(conn: Connection) -> dict[str, bool]:
        return {"ok": True}

    async with TestClient(app).connect() as tc:
        for _ in range(2):
            assert await tc.call("tick") == {"ok": True}
        with pytest.raises(ErrorReply) as info:
            await tc.call("tick")
        assert info.value.code == "RATE_LIMIT_ERROR"
        for _ in range(5):  # several heartbeats, each answered by the client
            await tc.receive("__ping__", timeout=2)
        assert not tc.closed
        refused_pongs = [
            m
            for m in tc.pending()
            if m["event"] == "__error__" and m["payload"]["event"] == "__pong__"
        ]
        assert refused_pongs == []
