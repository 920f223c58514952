"""``Emitter`` and ``SyncEmitter``: push to a running cluster from any Python process.

Owns the client side of pushing from outside a handler, in two transports:

- ``Emitter("redis://...")`` publishes into the cluster's Redis bridge format
  (``cluster/redis/``): a room's message goes to the room's channel,
  where every node's home actor for the room (its single subscriber while the
  node has members) orders it with the room's other messages and fans it out
  to its shards; a connection's message goes to its shard's own channel (the
  connection id names node and shard); ``broadcast_except`` to the channel
  every shard listens to. A worker with only Redis reaches every node.
- ``Emitter("http://host:port", api_key=...)`` calls the cluster's HTTP
  publish API (``push.api``); the shard that takes the request sends through
  the room's home like a handler's broadcast.

One call sends one message, serialised once. Calls of one emitter go out one
at a time, in call order, so its messages to a room arrive in the order they
were sent. Payloads may be pydantic models; with ``app=`` the payloads of
events the app declares models for (``Emits``/``Broadcasts``) are validated
before sending (the HTTP API always validates against the served app). Redis
or the cluster unreachable raises ``EmitterUnavailableError``: nothing is
dropped silently. Extras are imported only by the transport that needs them.
"""

from __future__ import annotations

import asyncio
import http.client
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import orjson

from socketspec import envelope
from socketspec.errors import SocketSpecError
from socketspec.push.messages import (
    DEFAULT_MAX_SIZE,
    PushError,
    Schemas,
    TargetKind,
    build,
    schemas_of,
)
from socketspec.types import ConnectionId, EventName, RoomName
from socketspec.users import user_room

if TYPE_CHECKING:
    from socketspec.app import SocketApp

# The node id the emitter's messages carry: no node's id (those are 8 hex characters), so
# every node delivers them.
EMITTER_NODE = "emitter"
DEFAULT_TIMEOUT = 5.0


class EmitterError(SocketSpecError):
    """A push the cluster refused (``status`` is the HTTP API's status, when it answered)."""

    def __init__(self, message: str, status: int | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.details = details


class EmitterUnavailableError(EmitterError):
    """Redis or the cluster could not be reached; the message was not sent."""


def locate(conn_id: str) -> tuple[str, int] | None:
    """The node and shard a cluster connection id names (the inverse of the cluster store's
    ``new_connection_id``: the first byte is the shard, the last four the node)."""
    if len(conn_id) != 36 or conn_id[8] != "-" or conn_id[14] != "4":
        return None
    try:
        return conn_id[28:], int(conn_id[:2], 16)
    except ValueError:
        return None


# -- what each call sends, transport aside ---------------------------------------------------------


class _Plan:
    """Builds each call's message once; shared by the four transports."""

    def __init__(self, url: str, api_key: str | None, app: SocketApp | None, max_size: int | None):
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme in ("redis", "rediss", "unix"):
            self.redis = True
            # The bridge's own names and format (it imports the redis extra, needed here).
            from socketspec.cluster import redis_bridge

            self.bridge: Any = redis_bridge
        elif scheme in ("http", "https", "ws", "wss"):
            self.redis = False
            if not api_key:
                raise ValueError("an Emitter over the HTTP API needs api_key=")
            self.https = scheme in ("https", "wss")
            self.host = parts.hostname or "127.0.0.1"
            self.port = parts.port or (443 if self.https else 80)
        else:
            raise ValueError(f"Emitter wants a redis:// or http:// URL, got {url!r}")
        self.url = url
        self.api_key = api_key
        self.schemas: Schemas = schemas_of(app) if app is not None else {}
        self.max_size = max_size or (app.max_payload_size if app is not None else DEFAULT_MAX_SIZE)

    def frame(self, kind: TargetKind, target: str | None, event: EventName, payload: Any) -> bytes:
        try:
            return build(kind, target, event, payload, self.schemas, self.max_size).frame
        except PushError as exc:
            raise EmitterError(exc.reason, exc.status, exc.details) from None

    # Redis: (channel, data) in the bridge's format.

    def room_message(
        self, room: RoomName, exclude: Iterable[str], frame: bytes
    ) -> tuple[str, bytes]:
        header = {"k": "room", "n": EMITTER_NODE, "t": time.time(), "r": room, "x": list(exclude)}
        return self.bridge.RedisBridge.room_channel(room), self.bridge.encode_message(header, frame)

    def all_message(
        self, exclude: Iterable[str], namespace: str | None, frame: bytes
    ) -> tuple[str, bytes]:
        header = {"k": "all", "n": EMITTER_NODE, "x": list(exclude), "ns": namespace}
        return self.bridge.RedisBridge.ALL_CHANNEL, self.bridge.encode_message(header, frame)

    def direct_message(
        self, conn_id: ConnectionId, frame: bytes | None, reason: str = ""
    ) -> tuple[str, bytes] | None:
        located = locate(conn_id)
        if located is None:
            return None
        node, shard = located
        if frame is None:
            header: dict[str, Any] = {"k": "kick", "c": conn_id, "reason": reason}
        else:
            header = {"k": "emit", "c": conn_id}
        channel = self.bridge.RedisBridge.direct_channel(node, shard)
        return channel, self.bridge.encode_message(header, frame or b"")

    def members_call(self, room: RoomName) -> Any:
        """The call listing ``room``'s live members, as the bridge itself lists them."""
        key = self.bridge.RedisBridge.members_key(room)
        node_prefix = f"{self.bridge.PREFIX}node:"
        return lambda client: client.eval(self.bridge.MEMBERS_SCRIPT, 1, key, node_prefix)

    def parse_members(self, flat: list[bytes]) -> list[dict[str, Any]]:
        out = []
        for conn_id, value in zip(flat[::2], flat[1::2], strict=True):
            member = self.bridge.parse_member(conn_id, value)
            if member is not None:
                info = member.info
                out.append(
                    {
                        "id": member.conn_id,
                        "user_id": info.get("user_id"),
                        "namespace": info.get("namespace") or "/",
                        "shard": member.shard,
                        "node": member.node,
                    }
                )
        return out

    # HTTP: (method, path, body) of the publish API.

    def publish_request(
        self, target: dict[str, Any], event: EventName, payload: Any
    ) -> tuple[str, str, bytes]:
        if not self.schemas:
            body = orjson.dumps(
                {**target, "event": event, "payload": envelope.to_jsonable(payload)},
                default=_jsonable,
            )
        else:  # validated here first, so the error names this process's call
            frame = self.frame(TargetKind.ROOM, "", event, payload)
            # The envelope is {"event":...,"payload":...}: its payload part is reused as is.
            start = len(orjson.dumps({"event": event})) - 1 + len(b',"payload":')
            validated = orjson.Fragment(frame[start:-1])
            body = orjson.dumps({**target, "event": event, "payload": validated})
        return "POST", "/api/publish", body

    def headers(self, body: bytes) -> dict[str, str]:
        assert self.api_key is not None
        return {
            "Host": f"{self.host}:{self.port}",
            "Authorization": f"Bearer {self.api_key}",
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
            "Connection": "close",
        }


def _jsonable(value: Any) -> Any:
    return envelope.to_jsonable(value) if not isinstance(value, set | frozenset) else list(value)


def _answer(status: int, body: bytes) -> Any:
    try:
        document = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        document = {"reason": body[:200].decode("utf-8", "replace")}
    if status == 200:
        return document
    reason = document.get("reason", "") if isinstance(document, dict) else ""
    error = EmitterUnavailableError if status == 503 else EmitterError
    raise error(f"the publish API answered {status}: {reason}", status, document)


# -- async -----------------------------------------------------------------------------------------


class Emitter:
    """Push into a running cluster from asyncio code: ``async with Emitter(url) as emitter``.

    ``url`` is the cluster's Redis (``redis://...``) or the cluster itself
    (``http://host:port`` with ``api_key``). ``app`` (optional) validates payloads against
    the models the app declares for its events, and sets the size limit (its
    ``max_payload_size``; else ``max_payload_size`` or 64 KiB). ``timeout`` bounds each call.
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        app: SocketApp | None = None,
        max_payload_size: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._plan = _Plan(url, api_key, app, max_payload_size)
        self.timeout = timeout
        self._lock = asyncio.Lock()  # one call at a time: the order of calls is kept
        self._redis: Any = None

    async def __aenter__(self) -> Emitter:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        client, self._redis = self._redis, None
        if client is not None:
            await client.aclose()

    # -- the calls -----------------------------------------------------------------------------

    async def broadcast(
        self,
        room: RoomName,
        event: EventName,
        payload: Any = None,
        *,
        exclude: Iterable[ConnectionId] = (),
    ) -> int:
        """Send ``event`` to every member of ``room``, ordered by the room's home with the
        room's other messages. Over HTTP: the members it went to (as ``socket.rooms.broadcast``
        counts); over Redis: the nodes that received it (each has members there)."""
        excluded = list(exclude)
        if self._plan.redis:
            frame = self._plan.frame(TargetKind.ROOM, room, event, payload)
            return await self._publish(*self._plan.room_message(room, excluded, frame))
        return int(await self._post({"room": room, "exclude": excluded}, event, payload))

    async def emit_to_user(self, user_id: str, event: EventName, payload: Any = None) -> int:
        """Send ``event`` to every connection of ``user_id`` on every shard and node; counted
        as ``broadcast`` counts."""
        if self._plan.redis:
            frame = self._plan.frame(TargetKind.USER, user_id, event, payload)
            return await self._publish(*self._plan.room_message(user_room(user_id), (), frame))
        return int(await self._post({"user": user_id}, event, payload))

    async def broadcast_except(
        self,
        exclude: ConnectionId | Iterable[ConnectionId],
        event: EventName,
        payload: Any = None,
        *,
        namespace: str | None = None,
    ) -> int:
        """Send ``event`` to every connection (of ``namespace``) except ``exclude``. Over HTTP
        the connections it went to on the node that took it; over Redis the shards reached."""
        excluded = [exclude] if isinstance(exclude, str) else list(exclude)
        if self._plan.redis:
            frame = self._plan.frame(TargetKind.ALL, None, event, payload)
            return await self._publish(*self._plan.all_message(excluded, namespace, frame))
        target: dict[str, Any] = {"all": True, "exclude": excluded}
        if namespace is not None:
            target["namespace"] = namespace
        return int(await self._post(target, event, payload))

    async def emit_to(self, conn_id: ConnectionId, event: EventName, payload: Any = None) -> bool:
        """Send ``event`` to one connection. Over HTTP True when it was live; over Redis True
        when its shard received it."""
        if self._plan.redis:
            frame = self._plan.frame(TargetKind.CONNECTION, conn_id, event, payload)
            message = self._plan.direct_message(conn_id, frame)
            return message is not None and await self._publish(*message) > 0
        return bool(await self._post({"connection": conn_id}, event, payload))

    async def disconnect(
        self,
        conn_id: ConnectionId | None = None,
        reason: str = "server_close",
        *,
        user_id: str | None = None,
    ) -> int:
        """Close one connection (``conn_id``) or every connection of ``user_id``; returns how
        many were told to close."""
        if (conn_id is None) == (user_id is None):
            raise ValueError("disconnect() wants conn_id or user_id, not both")
        if not self._plan.redis:
            target = {"connection": conn_id} if conn_id is not None else {"user": user_id}
            body = orjson.dumps({**target, "reason": reason})
            return int((await self._request("POST", "/api/disconnect", body))["disconnected"])
        ids = (
            [conn_id]
            if conn_id is not None
            else [m["id"] for m in await self.members(user_room(str(user_id)))]
        )
        closed = 0
        for target_id in ids:
            message = self._plan.direct_message(target_id, None, reason)
            if message is not None and await self._publish(*message) > 0:
                closed += 1
        return closed

    async def members(self, room: RoomName) -> list[dict[str, Any]]:
        """The room's members on every node: ``id``, ``user_id``, ``namespace``, ``shard``
        (and ``node``)."""
        if not self._plan.redis:
            answer = await self._request("GET", f"/api/rooms/{quote(room, safe='')}/members", b"")
            return list(answer["members"])
        return self._plan.parse_members(await self._redis_call(self._plan.members_call(room)))

    # -- transports ----------------------------------------------------------------------------

    async def _publish(self, channel: str, data: bytes) -> int:
        return int(await self._redis_call(lambda client: client.publish(channel, data)))

    async def _redis_call(self, operation: Any) -> Any:
        from redis.exceptions import RedisError

        async with self._lock:
            try:
                if self._redis is None:
                    self._redis = _async_redis(self._plan.url, self.timeout)
                return await asyncio.wait_for(operation(self._redis), self.timeout)
            except (RedisError, OSError, TimeoutError) as exc:
                raise EmitterUnavailableError(
                    f"Redis at {self._plan.url} is unreachable ({exc}); the message was not sent"
                ) from exc

    async def _post(self, target: dict[str, Any], event: EventName, payload: Any) -> Any:
        method, path, body = self._plan.publish_request(target, event, payload)
        answer = await self._request(method, path, body)
        return answer.get("delivered", 0)

    async def _request(self, method: str, path: str, body: bytes) -> Any:
        plan = self._plan
        async with self._lock:
            try:
                async with asyncio.timeout(self.timeout):
                    status, raw = await _http_exchange(plan, method, path, body)
            except (OSError, TimeoutError) as exc:
                raise EmitterUnavailableError(
                    f"the cluster at {plan.url} is unreachable ({exc}); the message was not sent"
                ) from exc
        return _answer(status, raw)


def _async_redis(url: str, timeout: float) -> Any:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return aioredis.Redis.from_url(
        url,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        single_connection_client=True,
    )


async def _http_exchange(plan: _Plan, method: str, path: str, body: bytes) -> tuple[int, bytes]:
    """One request on a fresh connection (the API closes after each answer)."""
    reader, writer = await asyncio.open_connection(
        plan.host, plan.port, ssl=True if plan.https else None
    )
    try:
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in plan.headers(body).items()
        )
        writer.write(head.encode("latin-1") + b"\r\n" + body)
        await writer.drain()
        raw = await reader.read()
    finally:
        writer.close()
    return _parse_response(raw)


def _parse_response(raw: bytes) -> tuple[int, bytes]:
    head, sep, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if not sep or len(status_line) < 2 or not status_line[1].isdigit():
        raise OSError("the cluster sent no HTTP answer")
    return int(status_line[1]), body


# -- sync ------------------------------------------------------------------------------------------


class SyncEmitter:
    """``Emitter`` for code without an event loop (a Celery or RQ task, a cron script): the
    same calls, blocking, safe to share between threads (one call at a time)."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        app: SocketApp | None = None,
        max_payload_size: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._plan = _Plan(url, api_key, app, max_payload_size)
        self.timeout = timeout
        self._lock = threading.Lock()
        self._redis: Any = None

    def __enter__(self) -> SyncEmitter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        client, self._redis = self._redis, None
        if client is not None:
            client.close()

    def broadcast(
        self,
        room: RoomName,
        event: EventName,
        payload: Any = None,
        *,
        exclude: Iterable[ConnectionId] = (),
    ) -> int:
        excluded = list(exclude)
        if self._plan.redis:
            frame = self._plan.frame(TargetKind.ROOM, room, event, payload)
            return self._publish(*self._plan.room_message(room, excluded, frame))
        return int(self._post({"room": room, "exclude": excluded}, event, payload))

    def emit_to_user(self, user_id: str, event: EventName, payload: Any = None) -> int:
        if self._plan.redis:
            frame = self._plan.frame(TargetKind.USER, user_id, event, payload)
            return self._publish(*self._plan.room_message(user_room(user_id), (), frame))
        return int(self._post({"user": user_id}, event, payload))

    def broadcast_except(
        self,
        exclude: ConnectionId | Iterable[ConnectionId],
        event: EventName,
        payload: Any = None,
        *,
        namespace: str | None = None,
    ) -> int:
        excluded = [exclude] if isinstance(exclude, str) else list(exclude)
        if self._plan.redis:
            frame = self._plan.frame(TargetKind.ALL, None, event, payload)
            return self._publish(*self._plan.all_message(excluded, namespace, frame))
        target: dict[str, Any] = {"all": True, "exclude": excluded}
        if namespace is not None:
            target["namespace"] = namespace
        return int(self._post(target, event, payload))

    def emit_to(self, conn_id: ConnectionId, event: EventName, payload: Any = None) -> bool:
        if self._plan.redis:
            frame = self._plan.frame(TargetKind.CONNECTION, conn_id, event, payload)
            message = self._plan.direct_message(conn_id, frame)
            return message is not None and self._publish(*message) > 0
        return bool(self._post({"connection": conn_id}, event, payload))

    def disconnect(
        self,
        conn_id: ConnectionId | None = None,
        reason: str = "server_close",
        *,
        user_id: str | None = None,
    ) -> int:
        if (conn_id is None) == (user_id is None):
            raise ValueError("disconnect() wants conn_id or user_id, not both")
        if not self._plan.redis:
            target = {"connection": conn_id} if conn_id is not None else {"user": user_id}
            body = orjson.dumps({**target, "reason": reason})
            return int(self._request("POST", "/api/disconnect", body)["disconnected"])
        ids = (
            [conn_id]
            if conn_id is not None
            else [m["id"] for m in self.members(user_room(str(user_id)))]
        )
        closed = 0
        for target_id in ids:
            message = self._plan.direct_message(target_id, None, reason)
            if message is not None and self._publish(*message) > 0:
                closed += 1
        return closed

    def members(self, room: RoomName) -> list[dict[str, Any]]:
        if not self._plan.redis:
            answer = self._request("GET", f"/api/rooms/{quote(room, safe='')}/members", b"")
            return list(answer["members"])
        return self._plan.parse_members(self._redis_call(self._plan.members_call(room)))

    def _publish(self, channel: str, data: bytes) -> int:
        return int(self._redis_call(lambda client: client.publish(channel, data)))

    def _redis_call(self, operation: Any) -> Any:
        from redis.exceptions import RedisError

        with self._lock:
            try:
                if self._redis is None:
                    self._redis = _sync_redis(self._plan.url, self.timeout)
                return operation(self._redis)
            except (RedisError, OSError) as exc:
                raise EmitterUnavailableError(
                    f"Redis at {self._plan.url} is unreachable ({exc}); the message was not sent"
                ) from exc

    def _post(self, target: dict[str, Any], event: EventName, payload: Any) -> Any:
        method, path, body = self._plan.publish_request(target, event, payload)
        return self._request(method, path, body).get("delivered", 0)

    def _request(self, method: str, path: str, body: bytes) -> Any:
        plan = self._plan
        connection_class = http.client.HTTPSConnection if plan.https else http.client.HTTPConnection
        with self._lock:
            connection = connection_class(plan.host, plan.port, timeout=self.timeout)
            try:
                connection.request(method, path, body=body, headers=plan.headers(body))
                response = connection.getresponse()
                status, raw = response.status, response.read()
            except (OSError, http.client.HTTPException) as exc:
                raise EmitterUnavailableError(
                    f"the cluster at {plan.url} is unreachable ({exc}); the message was not sent"
                ) from exc
            finally:
                connection.close()
        return _answer(status, raw)


def _sync_redis(url: str, timeout: float) -> Any:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        single_connection_client=True,
    )


__all__ = ["Emitter", "EmitterError", "EmitterUnavailableError", "SyncEmitter"]
