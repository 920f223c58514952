"""Connection, Identity and SessionInfo (the reference's public shape)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from socketspec.connection import Connection, Identity, SessionInfo


def make_conn(conn_id: str = "conn-1", when: datetime | None = None) -> Connection:
    now = when or datetime.now(UTC)
    return Connection(
        id=conn_id,
        raw_socket=None,
        identity=Identity(),
        session=SessionInfo(started_at=now),
        connected_at=now,
        last_active=now,
    )


def test_identity_defaults_are_empty() -> None:
    ident = Identity()
    assert ident.user_id is None
    assert ident.role is None
    assert ident.scopes == []
    assert ident.claims == {}
    assert ident.raw_token is None
    assert ident.token_expires_at is None
    assert ident.extra == {}
    assert not ident.is_authenticated


def test_identity_is_authenticated_with_user_id() -> None:
    assert Identity(user_id="u").is_authenticated
    assert not Identity(role="admin").is_authenticated


def test_identity_has_scope() -> None:
    ident = Identity(user_id="u", scopes=["read", "write"])
    assert ident.has_scope("read")
    assert not ident.has_scope("admin")


def test_identity_defaults_are_not_shared() -> None:
    a, b = Identity(), Identity()
    a.scopes.append("x")
    a.extra["k"] = 1
    assert b.scopes == [] and b.extra == {}


def test_raw_token_not_in_repr() -> None:
    assert "s3cret-token" not in repr(Identity(user_id="u", raw_token="s3cret-token"))


def test_session_info_defaults() -> None:
    now = datetime.now(UTC)
    info = SessionInfo(started_at=now)
    assert info.started_at == now
    assert info.expires_at is None
    assert info.token_expires_at is None


def test_connection_defaults() -> None:
    conn = make_conn()
    assert conn.rooms == set()
    assert conn.metadata == {}
    assert conn.headers == {}
    assert conn.query_params == {}
    assert conn.namespace == "/"


async def test_emit_before_binding_raises() -> None:
    with pytest.raises(RuntimeError, match="emit"):
        await make_conn().emit("hello", {"x": 1})


async def test_disconnect_before_binding_raises() -> None:
    with pytest.raises(RuntimeError, match="disconnect"):
        await make_conn().disconnect("bye")


async def test_bound_emit_and_disconnect_are_called() -> None:
    sent: list[tuple[str, object]] = []
    closed: list[str] = []

    async def emit(event: str, payload: object) -> None:
        sent.append((event, payload))

    async def disconnect(reason: str) -> None:
        closed.append(reason)

    conn = make_conn()
    conn._emit_fn = emit
    conn._disconnect_fn = disconnect
    await conn.emit("hello", {"x": 1})
    await conn.disconnect()
    await conn.disconnect("banned")
    assert sent == [("hello", {"x": 1})]
    assert closed == ["server_close", "banned"]


def test_touch_updates_last_active() -> None:
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    conn = make_conn(when=long_ago)
    before = datetime.now(UTC)
    conn.touch()
    assert conn.last_active >= before
    assert conn.last_active.tzinfo is not None
    assert conn.connected_at == long_ago  # only last_active moves


def test_connection_hashable_by_id() -> None:
    a = make_conn("same")
    b = make_conn("same")
    c = make_conn("other")
    assert hash(a) == hash("same")
    assert hash(a) == hash(b)
    s = {a, c}
    assert a in s and c in s
    a.rooms.add("lobby")  # mutating does not change the hash
    assert a in s
    assert {a: 1}[a] == 1


def test_touch_stamps_last_active_to_the_millisecond() -> None:
    long_ago = datetime(2000, 1, 1, tzinfo=UTC)
    conn = make_conn(when=long_ago)
    before = datetime.now(UTC)
    conn.touch()
    first = conn.last_active
    assert first >= before
    conn.touch()  # within the millisecond: the clock is not read again
    assert conn.last_active is first
    time.sleep(0.002)
    conn.touch()
    assert conn.last_active > first


def test_touch_replaces_a_value_set_from_outside_at_once() -> None:
    conn = make_conn()
    conn.touch()
    long_ago = datetime(2000, 1, 1, tzinfo=UTC)
    conn.last_active = long_ago
    conn.touch()
    assert conn.last_active > long_ago
