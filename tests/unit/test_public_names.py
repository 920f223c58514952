"""The names a user of the reference imports, from where the reference has them."""

from __future__ import annotations

import importlib

import pytest

import socketspec
from socketspec import SocketApp
from socketspec.backends.base import RoomStore
from socketspec.backends.memory import MemoryBackend, MemoryRoomStore
from socketspec.errors import ConfigurationError
from socketspec.testing import TestClient


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("socketspec", "SocketApp"),
        ("socketspec", "TestClient"),
        ("socketspec", "TestConnection"),
        ("socketspec", "SocketSpecError"),
        ("socketspec", "BackendAdapter"),
        ("socketspec", "MemoryBackend"),
        ("socketspec", "Connection"),
        ("socketspec", "Emits"),
        ("socketspec", "Broadcasts"),
        ("socketspec", "Depends"),
        ("socketspec.app", "SocketApp"),
        ("socketspec.connection", "Connection"),
        ("socketspec.connection", "Identity"),
        ("socketspec.connection", "SessionInfo"),
        ("socketspec.rooms", "Room"),
        ("socketspec.testing", "TestClient"),
        ("socketspec.testing", "TestConnection"),
        ("socketspec.backends.memory", "MemoryBackend"),
        ("socketspec.backends.base", "BackendAdapter"),
        ("socketspec.security.auth", "JWTAuth"),
        ("socketspec.security.auth", "APIKeyAuth"),
        ("socketspec.security.auth", "AuthBackend"),
        ("socketspec.errors", "SocketSpecError"),
    ],
)
def test_name_is_importable_where_the_reference_has_it(module: str, name: str) -> None:
    assert getattr(importlib.import_module(module), name) is not None


def test_every_exported_name_exists() -> None:
    for name in socketspec.__all__:
        assert hasattr(socketspec, name), name


def test_top_level_names_are_the_same_objects_as_their_modules() -> None:
    assert socketspec.TestClient is TestClient
    assert socketspec.BackendAdapter is RoomStore
    assert socketspec.MemoryBackend is MemoryRoomStore
    assert issubclass(socketspec.ConnectRejected, socketspec.SocketSpecError)


async def test_memory_backend_object_serves_rooms_like_the_memory_string() -> None:
    store = MemoryBackend()
    app = SocketApp(backend=store)
    assert app.rooms.store is store

    @app.on("enter")
    async def enter(conn: socketspec.Connection) -> None:
        await app.rooms.join(conn, "hall")

    async with TestClient(app) as client:
        conn = await client.connect()
        await conn.send("enter", {})
        await conn.wait_idle()
        assert [m.id for m in await app.rooms.members("hall")] == [conn.id]


def test_a_key_value_backend_is_refused_with_what_to_use_instead() -> None:
    class KeyValueBackend:
        async def add_to_room(self, room: str, conn_id: str) -> None:
            return None

    with pytest.raises(ConfigurationError, match="RoomStore"):
        SocketApp(backend=KeyValueBackend())  # type: ignore[arg-type]


def test_debug_url_is_kept_and_must_be_a_path() -> None:
    assert SocketApp().debug_url == "/socket-debug"
    assert SocketApp(debug_url="/_debug").debug_url == "/_debug"
    with pytest.raises(ConfigurationError, match="debug_url"):
        SocketApp(debug_url="socket-debug")
