"""Local members for the room stores' tests: a connection and a sink recording its frames."""

from __future__ import annotations

from datetime import UTC, datetime

from socketspec.connection import Connection, Identity, SessionInfo


def make_conn(conn_id: str, namespace: str = "/") -> Connection:
    now = datetime.now(UTC)
    return Connection(
        id=conn_id,
        raw_socket=None,
        identity=Identity(),
        session=SessionInfo(started_at=now),
        connected_at=now,
        last_active=now,
        namespace=namespace,
    )


class Sink:
    def __init__(self, conn_id: str, namespace: str = "/", accept: bool = True) -> None:
        self.conn = make_conn(conn_id, namespace)
        self.accept = accept
        self.frames: list[bytes] = []

    @property
    def id(self) -> str:
        return self.conn.id

    def deliver(self, frame: bytes) -> bool:
        self.frames.append(frame)
        return self.accept
