"""Session policy through the TestClient: heartbeats, idle and lifetime limits, token expiry
and refresh, and slow consumers. Timers use tens of milliseconds; waits are generous."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from socketspec import Connection, Identity, SocketApp
from socketspec.errors import CloseCode
from socketspec.security.auth import JWTAuth
from socketspec.session import SessionConfig
from socketspec.testing import ConnectionClosedError, ErrorReply, TestClient, TestConnection

SECRET = "integration-secret-0123456789abcdef-integration-secret-0123456789"


def quiet(**overrides: float) -> SessionConfig:
    """A session config with every timer off except the ones given."""
    values: dict[str, float] = {
        "max_duration": 0,
        "idle_timeout": 0,
        "heartbeat_interval": 0,
        "heartbeat_timeout": 0,
        "token_refresh_window": 0,
    }
    values.update(overrides)
    return SessionConfig(**values)


def make_app(session: SessionConfig, auth: Any = None) -> tuple[SocketApp, list[str]]:
    app = SocketApp(session=session, auth=auth)
    reasons: list[str] = []

    @app.on("poke")
    def poke(conn: Connection) -> dict[str, bool]:
        return {"poked": True}

    @app.on("whoami")
    def whoami(conn: Connection) -> dict[str, Any]:
        return {"user_id": conn.identity.user_id, "role": conn.identity.role}

    @app.on("flood")
    async def flood(conn: Connection, payload: dict[str, Any]) -> None:
        chunk = "x" * payload["size"]
        for i in range(payload["count"]):
            await conn.emit("chunk", {"i": i, "data": chunk})

    @app.on_disconnect
    def gone(conn: Connection, reason: str) -> None:
        reasons.append(reason)

    return app, reasons


def make_token(sub: str, exp: float, **claims: Any) -> str:
    return jwt.encode({"sub": sub, "exp": int(exp), **claims}, SECRET, algorithm="HS256")


def events_of(tc: TestConnection) -> list[str]:
    return [m["event"] for m in tc.pending()]


async def after_close(tc: TestConnection) -> list[dict[str, Any]]:
    """The messages left to read once the server has closed, housekeeping aside."""
    seen: list[dict[str, Any]] = []
    with pytest.raises(ConnectionClosedError):
        while True:
            seen.append(await tc.receive(timeout=2))
    return seen


def test_session_config_defaults_are_the_references() -> None:
    config = SessionConfig()
    assert config.max_duration == 7200
    assert config.idle_timeout == 300
    assert config.heartbeat_interval == 25
    assert config.heartbeat_timeout == 10
    assert config.token_refresh_window == 60
    assert SocketApp().session == config


# -- heartbeat -----------------------------------------------------------------------------


async def test_auto_pong_keeps_the_connection_open() -> None:
    app, reasons = make_app(quiet(heartbeat_interval=0.05, heartbeat_timeout=0.05))
    async with TestClient(app).connect() as tc:
        greeting = await tc.receive("__connect__", timeout=1)
        assert greeting["heartbeat_interval"] == 0.05
        for _ in range(6):  # six pings: several times the pong deadline has passed
            ping = await tc.receive("__ping__", timeout=2)
            assert isinstance(ping["ts"], float)
        assert not tc.closed
        assert await tc.call("poke") == {"poked": True}
    assert reasons == ["client_close"]


async def test_no_pong_closes_with_4005() -> None:
    app, reasons = make_app(quiet(heartbeat_interval=0.05, heartbeat_timeout=0.05))
    async with TestClient(app, auto_pong=False) as client:
        tc = await client.connect()
        await tc.receive("__ping__", timeout=2)
        assert await tc.wait_closed(timeout=2) == CloseCode.HEARTBEAT_TIMEOUT == 4005
        assert reasons == ["heartbeat_timeout"]
        with pytest.raises(ConnectionClosedError):
            await tc.receive("anything", timeout=1)


async def test_pings_follow_the_interval_when_the_pong_timeout_is_longer() -> None:
    # A pong answered at once must not hold the next ping back until the old pong deadline.
    app, _ = make_app(quiet(heartbeat_interval=0.05, heartbeat_timeout=1))
    async with TestClient(app).connect() as tc:
        await asyncio.sleep(0.6)
        assert not tc.closed
        assert events_of(tc).count("__ping__") >= 5  # about 12 are due


async def test_manual_pongs_keep_the_connection_open() -> None:
    app, _ = make_app(quiet(heartbeat_interval=0.05, heartbeat_timeout=0.1))
    async with TestClient(app, auto_pong=False).connect() as tc:
        for _ in range(5):
            await tc.receive("__ping__", timeout=2)
            await tc.emit("__pong__")
        assert not tc.closed


# -- idle timeout ----------------------------------------------------------------------------


async def test_idle_timeout_warns_errors_and_closes_with_4004() -> None:
    app, reasons = make_app(quiet(idle_timeout=0.1))
    async with TestClient(app) as client:
        tc = await client.connect()
        assert await tc.wait_closed(timeout=2) == CloseCode.IDLE_TIMEOUT == 4004
        seen = await after_close(tc)
        assert [m["event"] for m in seen] == ["__idle_warning__", "__error__"]
        assert seen[1]["payload"]["code"] == "IDLE_TIMEOUT"
        assert reasons == ["idle_timeout"]


async def test_pongs_alone_do_not_count_as_activity() -> None:
    # pongs must be answered (a 50 ms deadline) and still the connection is idle
    app, reasons = make_app(
        quiet(idle_timeout=0.25, heartbeat_interval=0.03, heartbeat_timeout=0.05)
    )
    async with TestClient(app) as client:
        tc = await client.connect()
        started = time.monotonic()
        assert await tc.wait_closed(timeout=2) == CloseCode.IDLE_TIMEOUT
        assert time.monotonic() - started < 1.5
        assert events_of(tc).count("__ping__") >= 3
        assert reasons == ["idle_timeout"]


async def test_events_postpone_the_idle_close() -> None:
    app, reasons = make_app(quiet(idle_timeout=0.25))
    async with TestClient(app) as client:
        tc = await client.connect()
        started = time.monotonic()
        while time.monotonic() - started < 0.6:  # well past the idle timeout
            await tc.emit("poke")
            await asyncio.sleep(0.04)
        assert not tc.closed
        assert await tc.wait_closed(timeout=2) == CloseCode.IDLE_TIMEOUT
        assert reasons == ["idle_timeout"]


# -- max duration ----------------------------------------------------------------------------


async def test_max_duration_expires_the_session_with_4003() -> None:
    app, reasons = make_app(quiet(max_duration=0.15, heartbeat_interval=0.03, heartbeat_timeout=1))
    async with TestClient(app) as client:
        tc = await client.connect()
        session = tc.connection.session
        assert session.expires_at is not None
        assert session.expires_at - session.started_at == timedelta(seconds=0.15)
        # activity does not extend a session's maximum duration
        for _ in range(3):
            await tc.emit("poke")
            await asyncio.sleep(0.02)
        assert await tc.wait_closed(timeout=2) == CloseCode.SESSION_EXPIRED == 4003
        seen = await after_close(tc)
        events = [m["event"] for m in seen]
        tail = events[events.index("__session_expiring__") :]
        assert tail == ["__session_expiring__", "__error__"]
        assert seen[-1]["payload"]["code"] == "SESSION_EXPIRED"
        assert len(reasons) == 1


# -- token expiry ----------------------------------------------------------------------------


async def test_jwt_near_expiry_warns_once_then_expires_with_4002() -> None:
    # exp has one-second resolution: it falls 1-2 s from now, inside the refresh window
    exp = int(time.time()) + 2
    app, _ = make_app(
        quiet(token_refresh_window=60, heartbeat_interval=0.05, heartbeat_timeout=0.1),
        auth=JWTAuth(SECRET),
    )
    async with TestClient(app, auth_token=make_token("u1", exp)) as client:
        tc = await client.connect()
        warning = await tc.receive("__auth_expiring__", timeout=1)
        assert warning["expires_at"] == datetime.fromtimestamp(exp, UTC).isoformat()
        assert 0 < warning["expires_in"] <= 2
        assert await tc.wait_closed(timeout=3) == CloseCode.TOKEN_EXPIRED == 4002
        rest = tc.pending()
        events = [m["event"] for m in rest]
        assert "__auth_expiring__" not in events  # exactly one warning, already read
        assert events.count("__ping__") >= 3  # the session clock ran many times meanwhile
        errors = [m["payload"]["code"] for m in rest if m["event"] == "__error__"]
        assert errors == ["AUTH_EXPIRED"]


class ShortLivedAuth:
    """Identities whose token expires ``ttl`` seconds after the connect."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl

    def authenticate(self, headers: Mapping[str, str], query_params: Mapping[str, str]) -> Identity:
        expires = datetime.now(UTC) + timedelta(seconds=self.ttl)
        return Identity(user_id="short", token_expires_at=expires)


async def test_token_expiry_mid_session_closes_with_4002() -> None:
    app, reasons = make_app(
        quiet(token_refresh_window=0.15, heartbeat_interval=0.03, heartbeat_timeout=1),
        auth=ShortLivedAuth(0.3),
    )
    async with TestClient(app) as client:
        tc = await client.connect()
        # not warned at once: the window opens 150 ms later
        await asyncio.sleep(0.05)
        assert "__auth_expiring__" not in events_of(tc)
        warning = await tc.receive("__auth_expiring__", timeout=2)
        assert 0 < warning["expires_in"] <= 0.16
        assert not tc.closed
        error = await tc.receive_error("AUTH_EXPIRED", timeout=2)
        assert error["code"] == "AUTH_EXPIRED"
        assert await tc.wait_closed(timeout=2) == 4002
        assert "__auth_expiring__" not in events_of(tc)
        assert len(reasons) == 1


# -- refresh ---------------------------------------------------------------------------------


async def test_refresh_auth_updates_identity_and_rearms_the_warning() -> None:
    app, _ = make_app(quiet(token_refresh_window=60), auth=JWTAuth(SECRET))
    now = time.time()
    first_exp = int(now) + 30
    async with TestClient(app, auth_token=make_token("alice", first_exp, role="user")) as client:
        tc = await client.connect()
        first = await tc.receive("__auth_expiring__", timeout=1)
        assert first["expires_at"] == datetime.fromtimestamp(first_exp, UTC).isoformat()

        second_exp = int(now) + 40
        reply = await tc.call(
            "__refresh_auth__", {"token": make_token("bob", second_exp, role="admin")}
        )
        second_at = datetime.fromtimestamp(second_exp, UTC)
        assert reply == {"user_id": "bob", "expires_at": second_at.isoformat()}
        assert tc.identity.user_id == "bob"
        assert tc.identity.role == "admin"
        assert tc.connection.session.token_expires_at == second_at
        assert await tc.call("whoami") == {"user_id": "bob", "role": "admin"}
        # still inside the window: the new token is warned about once more
        again = await tc.receive("__auth_expiring__", timeout=1)
        assert again["expires_at"] == second_at.isoformat()

        far_exp = int(now) + 3600
        await tc.call("__refresh_auth__", {"token": make_token("bob", far_exp)})
        assert tc.connection.session.token_expires_at == datetime.fromtimestamp(far_exp, UTC)
        assert tc.identity.role is None
        await asyncio.sleep(0.1)
        assert "__auth_expiring__" not in events_of(tc)
        assert not tc.closed


class RefreshableAuth(ShortLivedAuth):
    """Short-lived identities at connect; a refreshed token (its text is the user id) lasts."""

    def authenticate_token(self, token: str) -> Identity:
        return Identity(user_id=token, token_expires_at=datetime.now(UTC) + timedelta(hours=1))


async def test_refresh_auth_postpones_the_expiry_close() -> None:
    app, reasons = make_app(quiet(token_refresh_window=0.1), auth=RefreshableAuth(0.2))
    async with TestClient(app) as client:
        tc = await client.connect()
        assert tc.identity.user_id == "short"
        await tc.receive("__auth_expiring__", timeout=2)
        reply = await tc.call("__refresh_auth__", {"token": "renewed"})
        assert reply["user_id"] == "renewed"
        await asyncio.sleep(0.3)  # past the first token's expiry
        assert not tc.closed
        assert reasons == []
        assert tc.identity.user_id == "renewed"


async def test_invalid_refresh_token_gets_auth_error_and_the_connection_stays() -> None:
    app, _ = make_app(quiet(token_refresh_window=1), auth=JWTAuth(SECRET))
    exp = int(time.time()) + 3600
    async with TestClient(app, auth_token=make_token("carol", exp)) as client:
        tc = await client.connect()
        for bad in (
            "garbage",
            jwt.encode({"sub": "mallory"}, "x" * 64, algorithm="HS256"),
            make_token("mallory", time.time() - 60),
        ):
            with pytest.raises(ErrorReply) as info:
                await tc.call("__refresh_auth__", {"token": bad})
            assert info.value.code == "AUTH_ERROR"
            assert info.value.payload["event"] == "__refresh_auth__"
        assert not tc.closed
        assert tc.identity.user_id == "carol"
        assert tc.connection.session.token_expires_at == datetime.fromtimestamp(exp, UTC)
        assert await tc.call("whoami") == {"user_id": "carol", "role": None}


async def test_refresh_auth_without_a_token_is_a_validation_error() -> None:
    app, _ = make_app(quiet(), auth=JWTAuth(SECRET))
    async with TestClient(app, auth_token=make_token("dan", time.time() + 3600)) as client:
        tc = await client.connect()
        for payload in ({}, {"token": ""}, {"token": 42}, {"tok": "x"}):
            with pytest.raises(ErrorReply) as info:
                await tc.call("__refresh_auth__", payload)
            assert info.value.code == "VALIDATION_ERROR"
        assert not tc.closed
        assert tc.identity.user_id == "dan"


# -- slow consumers --------------------------------------------------------------------------


async def test_a_client_that_never_reads_is_closed_with_4008() -> None:
    app, reasons = make_app(quiet())
    async with TestClient(app) as client:
        slow = await client.connect()
        reader = await client.connect()
        transport = slow.connection.raw_socket
        assert transport.max_outbound == 1 << 20  # the default outbound limit: 1 MiB
        transport.max_outbound = 4096
        await slow.emit("flood", {"size": 100, "count": 20})  # ~2.5 KiB: under the limit
        await slow.wait_idle()
        await asyncio.sleep(0.02)  # a close, had one been started, would be done by now
        assert not slow.closed
        await slow.emit("flood", {"size": 500, "count": 20})  # ~10 KiB: over it
        assert await slow.wait_closed(timeout=2) == CloseCode.SLOW_CONSUMER == 4008
        assert reasons == ["slow_consumer"]
        # everyone else carries on
        await reader.emit("flood", {"size": 500, "count": 20})
        for i in range(20):
            assert (await reader.receive("chunk", timeout=1))["i"] == i
        assert not reader.closed


async def test_the_default_outbound_limit_is_one_mebibyte() -> None:
    app, _ = make_app(quiet())
    async with TestClient(app) as client:
        under = await client.connect()
        await under.emit("flood", {"size": 32 * 1024, "count": 30})  # 0.94 MiB
        await under.wait_idle()
        await asyncio.sleep(0.02)
        assert not under.closed
        over = await client.connect()
        await over.emit("flood", {"size": 32 * 1024, "count": 34})  # 1.06 MiB
        assert await over.wait_closed(timeout=2) == 4008
        assert not under.closed
