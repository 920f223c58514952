"""The HTTP publish API, sans-I/O: requests in, commands and JSON answers out.

Owns the routes under ``/api/`` (docs/push.md has them with examples), the
API key check (constant time, every configured key compared), the parsing and
validation of request bodies into commands whose messages are already encoded
(``push.messages``), and the JSON shape of every answer and error. A batch is
validated whole before anything is sent: one malformed message refuses the
request (400, naming its index), one too large refuses it with 413. Does not
own sockets, the request body's reading, or delivery (``push.service`` does).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import orjson

from socketspec.push.messages import (
    PushError,
    PushMessage,
    Schemas,
    TargetKind,
    build,
)

PREFIX = "/api/"
OPENAPI_PATH = "/api/openapi.json"
MAX_BATCH = 1000  # messages in one batch request
MAX_PRESENCE = 1000  # rooms plus users in one presence request
DEFAULT_REASON = "server_close"


class ApiError(Exception):
    def __init__(self, status: int, reason: str, details: Any = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.details = details

    def document(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "error": ERROR_NAMES.get(self.status, "error"),
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


ERROR_NAMES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    411: "length_required",
    413: "payload_too_large",
    422: "validation_error",
    503: "unavailable",
}


# -- commands --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Publish:
    messages: tuple[PushMessage, ...]
    batch: bool  # answered with {"results": [...]} rather than {"delivered": n}


@dataclass(frozen=True, slots=True)
class Members:
    room: str


@dataclass(frozen=True, slots=True)
class Presence:
    rooms: tuple[str, ...]
    users: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Disconnect:
    kind: TargetKind  # CONNECTION or USER
    target: str
    reason: str


@dataclass(frozen=True, slots=True)
class OpenApi:
    pass


Command = Publish | Members | Presence | Disconnect | OpenApi


# -- keys ------------------------------------------------------------------------------------------


def parse_keys(values: Iterable[str]) -> tuple[str, ...]:
    """Keys from repeated flags or comma lists; blanks dropped, order kept, no duplicates."""
    keys: dict[str, None] = {}
    for value in values:
        for part in value.split(","):
            key = part.strip()
            if key:
                keys[key] = None
    return tuple(keys)


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request presents: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``."""
    authorization = headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    key = headers.get("x-api-key", "").strip()
    return key or None


def key_matches(presented: str | None, keys: Sequence[str]) -> bool:
    """Constant time in the key's content: every configured key is compared, always."""
    candidate = (presented or "").encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, key.encode())
    return matched and bool(presented)


# -- routing and parsing ---------------------------------------------------------------------------


def is_api_path(path: str) -> bool:
    return path == PREFIX.rstrip("/") or path.startswith(PREFIX)


def needs_body(method: str) -> bool:
    return method == "POST"


def parse(
    method: str,
    raw_path: str,
    body: bytes,
    schemas: Schemas,
    max_size: int,
) -> Command:
    """The command a request asks for. Raises ApiError (404, 405, 400, 413, 422)."""
    if raw_path == OPENAPI_PATH:
        _want(method, "GET")
        return OpenApi()
    route = raw_path[len(PREFIX) :] if raw_path.startswith(PREFIX) else ""
    if route.startswith("rooms/") and route.endswith("/members"):
        _want(method, "GET")
        room = unquote(route[len("rooms/") : -len("/members")])
        if not room:
            raise ApiError(400, "the room name is empty")
        return Members(room)
    handlers: dict[str, Callable[[dict[str, Any], Schemas, int], Command]] = {
        "publish": _publish,
        "batch": _batch,
        "presence": _presence,
        "disconnect": _disconnect,
    }
    handler = handlers.get(route)
    if handler is None:
        raise ApiError(404, f"no API route at {raw_path}")
    _want(method, "POST")
    return handler(_json_object(body), schemas, max_size)


def _want(method: str, allowed: str) -> None:
    if method != allowed and not (allowed == "GET" and method == "HEAD"):
        raise ApiError(405, f"method {method} not allowed here; use {allowed}")


def _json_object(body: bytes) -> dict[str, Any]:
    if not body:
        raise ApiError(400, "the request has no body; send a JSON object")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"the body is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ApiError(400, "the body must be a JSON object")
    return document


def _string(document: Mapping[str, Any], name: str, where: str = "") -> str:
    value = document.get(name)
    if not isinstance(value, str) or not value:
        raise ApiError(400, f"{where}'{name}' must be a non-empty string")
    return value


def _strings(document: Mapping[str, Any], name: str, where: str = "") -> list[str]:
    value = document.get(name, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ApiError(400, f"{where}'{name}' must be a list of strings")
    return value


TARGETS = ("room", "user", "connection", "all")


def parse_message(document: Any, schemas: Schemas, max_size: int, where: str = "") -> PushMessage:
    """One message: exactly one of room / user / connection / all, an event, a payload."""
    if not isinstance(document, dict):
        raise ApiError(400, f"{where}a message must be a JSON object")
    named = [name for name in TARGETS if name in document]
    if len(named) != 1:
        raise ApiError(
            400, f"{where}a message names exactly one of 'room', 'user', 'connection', 'all'"
        )
    kind = TargetKind(named[0])
    target: str | None = None
    namespace: str | None = None
    if kind is TargetKind.ALL:
        if document["all"] is not True:
            raise ApiError(400, f"{where}'all' must be true")
        raw_namespace = document.get("namespace")
        if raw_namespace is not None and not isinstance(raw_namespace, str):
            raise ApiError(400, f"{where}'namespace' must be a string")
        namespace = raw_namespace
    else:
        target = _string(document, kind.value, where)
    exclude = _strings(document, "exclude", where)
    if exclude and kind in (TargetKind.CONNECTION,):
        raise ApiError(400, f"{where}'exclude' does not apply to a connection")
    if "payload" in document and not isinstance(document["payload"], dict):
        raise ApiError(400, f"{where}'payload' must be a JSON object")
    try:
        return build(
            kind,
            target,
            document.get("event"),
            document.get("payload"),
            schemas,
            max_size,
            exclude,
            namespace,
        )
    except PushError as exc:
        raise ApiError(exc.status, where + exc.reason, exc.details) from None


def _publish(document: dict[str, Any], schemas: Schemas, max_size: int) -> Publish:
    return Publish((parse_message(document, schemas, max_size),), batch=False)


def _batch(document: dict[str, Any], schemas: Schemas, max_size: int) -> Publish:
    messages = document.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty list")
    if len(messages) > MAX_BATCH:
        raise ApiError(400, f"a batch holds at most {MAX_BATCH} messages, got {len(messages)}")
    parsed = tuple(
        parse_message(message, schemas, max_size, f"messages[{index}]: ")
        for index, message in enumerate(messages)
    )
    return Publish(parsed, batch=True)


def _presence(document: dict[str, Any], schemas: Schemas, max_size: int) -> Presence:
    rooms = _strings(document, "rooms")
    users = _strings(document, "users")
    if not rooms and not users:
        raise ApiError(400, "name at least one of 'rooms' or 'users'")
    if len(rooms) + len(users) > MAX_PRESENCE:
        raise ApiError(400, f"at most {MAX_PRESENCE} rooms and users in one request")
    return Presence(tuple(rooms), tuple(users))


def _disconnect(document: dict[str, Any], schemas: Schemas, max_size: int) -> Disconnect:
    named = [name for name in ("connection", "user") if name in document]
    if len(named) != 1:
        raise ApiError(400, "name exactly one of 'connection' or 'user'")
    reason = document.get("reason", DEFAULT_REASON)
    if not isinstance(reason, str) or not reason:
        raise ApiError(400, "'reason' must be a non-empty string")
    return Disconnect(TargetKind(named[0]), _string(document, named[0]), reason)


# -- answers ---------------------------------------------------------------------------------------


def member_document(
    conn_id: str, user_id: Any, namespace: str, metadata: Mapping[str, Any]
) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": conn_id, "user_id": user_id, "namespace": namespace}
    for name in ("shard", "node"):
        if name in metadata:
            entry[name] = metadata[name]
    return entry
