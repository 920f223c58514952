"""The HTTP publish API on a shard: reading a request's body, running its command, answering.

Owns the I/O half of ``/api/``: a request whose head the shard's listener
read is handed to ``ApiRequest`` (an asyncio protocol of its own, bounded by
the body size and a deadline), which checks the key before reading the body,
parses it (``push.api``), runs the command against the shard's room store and
writes one JSON answer, then closes. A publish goes through the room store
like a handler's broadcast: to the room's home shard, which orders it with the
room's other messages, so one order per room holds for everything sent to it.
A batch is sent message after message, in its order. With Redis configured and
down, every command but the OpenAPI document is refused with 503 before
anything is sent.

On the shard's drain (shutdown or reload) the requests in flight are counted
like running handlers (``ApiPhase``): a request taken before the drain began
finishes, the drain waits for it (within the graceful timeout) before the
shard closes its connections; one whose head arrives after is refused with
503 before anything is sent. Past the graceful timeout the messages not yet
sent are refused (a batch answers them ``unavailable``, a request still
waiting for its body gets 503), so every request gets a complete answer that
says what was sent. Does not own parsing rules or the room store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import orjson

from socketspec import metrics
from socketspec.errors import IllegalTransitionError, SocketSpecError
from socketspec.push import api, openapi
from socketspec.push.messages import PushMessage, TargetKind, schemas_of
from socketspec.server import http
from socketspec.users import user_room

if TYPE_CHECKING:
    from socketspec.app import SocketApp

logger = logging.getLogger("socketspec.push")

BODY_TIMEOUT = 10.0  # seconds to receive a request's whole body
DRAIN_REFUSAL = "the server is shutting down; nothing was sent, retry on another instance"
CUT_REFUSAL = "the server shut down before this message was sent; it was not sent"


class ApiPhase(StrEnum):
    SERVING = "serving"  # requests are taken and run
    DRAINING = "draining"  # the shard drains: new requests get 503, those in flight finish
    CUT = "cut"  # the graceful timeout passed: what is not sent yet is refused


PHASE_TRANSITIONS: dict[ApiPhase, frozenset[ApiPhase]] = {
    ApiPhase.SERVING: frozenset({ApiPhase.DRAINING}),
    ApiPhase.DRAINING: frozenset({ApiPhase.CUT}),
    ApiPhase.CUT: frozenset(),
}


class PushService:
    """The API of one shard: its keys, the app's schemas and limits, the commands, and the
    requests in flight (which the shard's drain waits for)."""

    def __init__(self, app: SocketApp, keys: tuple[str, ...], max_body: int) -> None:
        self.app = app
        self.keys = keys
        self.max_body = max_body
        self.schemas = schemas_of(app)
        self.max_size = app.max_payload_size
        self.phase = ApiPhase.SERVING
        self.in_flight: set[ApiRequest] = set()
        self.idle = asyncio.Event()
        self.idle.set()

    # -- requests in flight and the drain ------------------------------------------------------

    def _move(self, target: ApiPhase) -> None:
        if target not in PHASE_TRANSITIONS[self.phase]:
            raise IllegalTransitionError(
                f"the publish API cannot move from phase {self.phase.value!r} to {target.value!r}"
            )
        self.phase = target

    def admit(self, request: ApiRequest) -> bool:
        """Count ``request`` in flight; False once the drain began (it is refused)."""
        if self.phase is not ApiPhase.SERVING:
            return False
        self.in_flight.add(request)
        self.idle.clear()
        return True

    def release(self, request: ApiRequest) -> None:
        """``request`` answered or its client went away."""
        self.in_flight.discard(request)
        if not self.in_flight:
            self.idle.set()

    def begin_drain(self) -> None:
        """The shard drains: requests in flight go on, new ones are refused with 503."""
        self._move(ApiPhase.DRAINING)

    async def cut(self, answer_timeout: float) -> None:
        """The graceful timeout passed: refuse what is not sent yet, and wait (at most
        ``answer_timeout``) for the requests in flight to write their answers."""
        if self.idle.is_set():
            return
        self._move(ApiPhase.CUT)
        logger.warning("%d API requests in flight after the drain; cutting", len(self.in_flight))
        for request in list(self.in_flight):
            request.cut()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.idle.wait(), answer_timeout)

    def redis_down(self) -> bool:
        bridge = getattr(self.app.rooms.store, "bridge", None)
        return bridge is not None and not bridge.is_up

    async def run(self, command: api.Command) -> tuple[int, Any]:
        """The status and JSON document answering ``command``."""
        if isinstance(command, api.OpenApi):
            return 200, openapi.document(self.max_size)
        if self.redis_down():
            raise api.ApiError(503, "Redis is configured and unreachable; nothing was sent")
        if isinstance(command, api.Publish):
            return await self._publish(command)
        if isinstance(command, api.Members):
            members = await self._unavailable_as_503(self.app.rooms.members(command.room))
            listed = [
                api.member_document(c.id, c.identity.user_id, c.namespace, c.metadata)
                for c in members
            ]
            return 200, {"room": command.room, "count": len(listed), "members": listed}
        if isinstance(command, api.Presence):
            rooms = {
                room: len(await self._unavailable_as_503(self.app.rooms.members(room)))
                for room in command.rooms
            }
            users = {
                user: len(await self._unavailable_as_503(self.app.users.connections(user)))
                for user in command.users
            }
            return 200, {"rooms": rooms, "users": users}
        store = self.app.rooms.store
        if command.kind is TargetKind.USER:
            closed = await self._unavailable_as_503(
                self.app.users.disconnect(command.target, command.reason)
            )
        else:
            closed = int(await store.disconnect(command.target, command.reason))
        return 200, {"disconnected": closed}

    async def _unavailable_as_503(self, pending: Any) -> Any:
        try:
            return await pending
        except SocketSpecError as exc:  # the room's home shard is down or late
            raise api.ApiError(503, f"rooms unavailable: {exc}") from None

    async def _publish(self, command: api.Publish) -> tuple[int, Any]:
        results: list[dict[str, Any]] = []
        for message in command.messages:
            if self.phase is ApiPhase.CUT:
                if not command.batch:
                    raise api.ApiError(503, CUT_REFUSAL)
                results.append({"error": "unavailable", "reason": CUT_REFUSAL})
                continue
            try:
                results.append({"delivered": await self.deliver(message)})
            except SocketSpecError as exc:
                if not command.batch:
                    raise api.ApiError(503, f"rooms unavailable: {exc}") from None
                results.append({"error": "unavailable", "reason": str(exc)})
        if command.batch:
            return 200, {"results": results}
        return 200, results[0]

    async def deliver(self, message: PushMessage) -> int:
        """Send one message the way a handler would; the members it went to."""
        store = self.app.rooms.store
        kind = message.kind
        if kind is TargetKind.ROOM:
            assert message.target is not None
            return await store.publish(message.target, message.frame, message.exclude)
        if kind is TargetKind.USER:
            assert message.target is not None
            room = user_room(message.target)
            return await store.publish(room, message.frame, message.exclude)
        if kind is TargetKind.CONNECTION:
            assert message.target is not None
            return int(await store.send_to(message.target, message.frame))
        return await store.publish_all(message.frame, message.exclude, message.namespace)


class ApiRequest(asyncio.Protocol):
    """One API request on a connection the shard's listener handed over after its head."""

    def __init__(
        self,
        service: PushService,
        head: http.RequestHead,
        transport: asyncio.Transport,
        spawn: Any,
    ) -> None:
        self.service = service
        self.head = head
        self.transport = transport
        self.spawn = spawn
        self.body = bytearray()
        self.expected = 0
        self.done = False
        self.timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        head = self.head
        self.transport.set_protocol(self)
        presented = api.presented_key(head.header_map)
        if head.path != api.OPENAPI_PATH and not api.key_matches(presented, self.service.keys):
            refusal = api.ApiError(401, "a valid API key is required")
            challenge = (b"www-authenticate", b'Bearer realm="socketspec-api"')
            self._answer(401, refusal.document(), [challenge])
            return
        if not self.service.admit(self):
            self._error(api.ApiError(503, DRAIN_REFUSAL))
            return
        if api.needs_body(head.method):
            length = head.header_map.get("content-length")
            if length is None or not length.strip().isdigit():
                self._error(api.ApiError(411, "send the body with a Content-Length"))
                return
            self.expected = int(length)
            if self.expected > self.service.max_body:
                self._error(
                    api.ApiError(
                        413,
                        f"the body is {self.expected} bytes, over the limit of "
                        f"{self.service.max_body}",
                    )
                )
                return
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(BODY_TIMEOUT, self._timed_out)
        self.data_received(head.trailing)

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        self.body += data
        if len(self.body) >= self.expected:
            self.done = True
            if self.timer is not None:
                self.timer.cancel()
            self.transport.pause_reading()
            self.spawn(self._handle(bytes(self.body[: self.expected])))

    def connection_lost(self, exc: Exception | None) -> None:
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
        self.service.release(self)

    def cut(self) -> None:
        """The drain's graceful timeout passed: a request still waiting for its body is
        refused; a running one refuses its messages not sent yet (``PushService._publish``)."""
        if not self.done:
            self.done = True
            if self.timer is not None:
                self.timer.cancel()
            self._error(api.ApiError(503, DRAIN_REFUSAL))

    def _timed_out(self) -> None:
        if not self.done:
            self.done = True
            self._error(api.ApiError(400, f"the body did not arrive within {BODY_TIMEOUT:g}s"))

    async def _handle(self, body: bytes) -> None:
        head = self.head
        service = self.service
        try:
            command = api.parse(head.method, head.path, body, service.schemas, service.max_size)
            status, document = await service.run(command)
        except api.ApiError as exc:
            self._error(exc)
            return
        except Exception:
            logger.exception("the API request %s %s failed", head.method, head.path)
            self._error(api.ApiError(500, "internal error; see the server log"))
            return
        self._answer(status, document)

    def _error(self, error: api.ApiError) -> None:
        self._answer(error.status, error.document())

    def _answer(
        self, status: int, document: Any, extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        self.done = True
        self.service.release(self)
        metrics.http_responses.labels(status=str(status)).inc()
        if self.transport.is_closing():
            return
        response = http.response(status, orjson.dumps(document), b"application/json", extra)
        if self.head.method == "HEAD":  # the head alone, with the length of the body
            response = response[: response.index(b"\r\n\r\n") + 4]
        self.transport.write(response)
        self.transport.close()
