"""The AsyncAPI 3.0.0 document of an app (``/asyncapi.json``, ``socketspec export-schema``).

Owns how an application maps onto AsyncAPI: one server (the WebSocket endpoint,
with the auth backend's security schemes), one channel per namespace (address
``<path>`` for ``/``, ``<path>/x`` for ``/x``) carrying every message that
travels on it, a ``receive`` operation per client event (its ``reply`` is the
``__ack__`` carrying the handler's return value, or the ``__error__``), a
``send`` operation per event the handlers emit or broadcast, and the system
events. Every message is the wire envelope ``{"event", "payload", "ack"}``;
payload schemas come from pydantic, their definitions hoisted into
``components.schemas``. Built from the registry; pure (no I/O).
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, TypeAdapter

from socketspec import __version__
from socketspec.app import SocketApp
from socketspec.errors import (
    CLIENT_SYSTEM_EVENTS,
    ERROR_CODES,
    RESERVED_EVENTS,
    CloseCode,
    SystemEvent,
)
from socketspec.registry import Broadcasts, Emits, EventDefinition
from socketspec.security.auth import APIKeyAuth, JWTAuth

ASYNCAPI_VERSION = "3.0.0"
CONTENT_TYPE = "application/json"
SERVER_ID = "websocket"
SCHEMA_REF = "#/components/schemas/{model}"
ACK_CORRELATION = "ack"

Mode = Literal["validation", "serialization"]
Schema = dict[str, Any]

# A component or channel key: what AsyncAPI's ``^[\w\d\.\-_]+$`` admits (ASCII ``\w``).
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")

EnvelopeRole = Literal["request", "reply", "push"]
_ACK_TEXT: dict[EnvelopeRole, str] = {
    "request": "Asks for a reply: the __ack__ or __error__ answering this message carries "
    "the same value.",
    "reply": "The ack of the message this answers.",
    "push": "Not set on this event: only requests and their replies carry an ack.",
}
_ANY_OBJECT: Schema = {"type": "object"}
_NULLABLE_STRING: Schema = {"type": ["string", "null"]}
_NULLABLE_DATETIME: Schema = {"type": ["string", "null"], "format": "date-time"}


# -- system events -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _SystemEventDoc:
    """How one member of ``SystemEvent`` is documented; who sends it comes from the table."""

    event: SystemEvent
    summary: str
    payload: Schema
    description: str = ""

    @property
    def direction(self) -> Literal["send", "receive"]:
        """The server's action: it receives what clients send and sends the rest."""
        return "receive" if self.event in CLIENT_SYSTEM_EVENTS else "send"


def _obj(properties: dict[str, Schema], required: Iterable[str] | None = None) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties if required is None else required),
    }


ERROR_PAYLOAD: Schema = _obj(
    {
        "code": {
            "type": "string",
            "enum": sorted(ERROR_CODES),
            "description": "What went wrong (see the protocol's table of codes).",
        },
        "event": {
            "type": ["string", "null"],
            "description": "The event whose message caused the error, when there was one.",
        },
        "message": {
            "type": "string",
            "description": "A human-readable explanation; a handler's exception text only "
            "with debug=True.",
        },
        "request_id": {
            "type": "string",
            "description": "Ties the error to the server's log line.",
        },
        "details": {
            "type": "object",
            "description": "Structured details: errors (VALIDATION_ERROR), retry_after "
            "(RATE_LIMIT_ERROR), ...",
        },
    },
)

SYSTEM_EVENTS: tuple[_SystemEventDoc, ...] = (
    _SystemEventDoc(
        SystemEvent.CONNECT,
        "The greeting: sent once, first, when a connection is admitted.",
        {
            **_obj(
                {
                    "conn_id": {"type": "string"},
                    "namespace": {"type": "string"},
                    "user_id": _NULLABLE_STRING,
                    "heartbeat_interval": {"type": "number", "description": "seconds"},
                    "heartbeat_timeout": {"type": "number", "description": "seconds"},
                    "recovered": {
                        "type": "boolean",
                        "description": "The session of the ?recover= token came back and "
                        "every room's history covered what it missed (absent when recovery "
                        "is disabled).",
                    },
                    "missed": {
                        "type": "object",
                        "additionalProperties": _NULLABLE_STRING,
                        "description": "Rooms whose history no longer covered the gap, with "
                        "the position the client gave: resync them.",
                    },
                    "recovery": _obj(
                        {
                            "token": {
                                **_NULLABLE_STRING,
                                "description": "Present as ?recover= when reconnecting; "
                                "null when the state does not fit the token size limit.",
                            },
                            "window": {"type": "number", "description": "seconds"},
                        }
                    ),
                },
                required=[
                    "conn_id",
                    "namespace",
                    "user_id",
                    "heartbeat_interval",
                    "heartbeat_timeout",
                ],
            ),
            "additionalProperties": True,
        },
        "The server may add fields of its own (the shard that serves the connection). "
        "A refused recovery token is followed by RECOVERY_INVALID, RECOVERY_EXPIRED or "
        "RECOVERY_FOREIGN, the connection going on as a fresh session.",
    ),
    _SystemEventDoc(
        SystemEvent.RECOVERY,
        "A fresh recovery token: reconnect with the latest one.",
        _obj({"token": _NULLABLE_STRING}),
        "Sent after each room join or leave (before the join's ack) and when the last one "
        "is older than a quarter of the window; clients keep it silently.",
    ),
    _SystemEventDoc(
        SystemEvent.PING,
        "Heartbeat: answer with __pong__ within heartbeat_timeout or be closed with 4005.",
        _obj({"ts": {"type": "number", "description": "server time, Unix seconds"}}),
    ),
    _SystemEventDoc(
        SystemEvent.PONG,
        "The answer to __ping__; consumed by the session, never routed to a handler.",
        _ANY_OBJECT,
        "A __pong__ keeps the connection alive but does not count as activity for the "
        "idle timeout.",
    ),
    _SystemEventDoc(
        SystemEvent.AUTH_EXPIRING,
        "The token expires soon: send __refresh_auth__ with a new one.",
        _obj(
            {
                "expires_at": _NULLABLE_DATETIME,
                "expires_in": {"type": ["number", "null"], "description": "seconds"},
            }
        ),
        "Sent once per token, token_refresh_window seconds before it expires; when it "
        "expires, AUTH_EXPIRED is sent and the connection closed with 4002.",
    ),
    _SystemEventDoc(
        SystemEvent.REFRESH_AUTH,
        "Replace the connection's token without reconnecting.",
        _obj({"token": {"type": "string", "minLength": 1}}),
        "With an ack, answered with __ack__ {user_id, expires_at}; a refused token is "
        "answered with AUTH_ERROR and the connection stays open.",
    ),
    _SystemEventDoc(
        SystemEvent.IDLE_WARNING,
        "No event arrived for idle_timeout seconds: the connection is being closed.",
        _obj(
            {
                "reason": {"type": "string", "const": "idle_timeout"},
                "idle_timeout": {"type": "number", "description": "seconds"},
            }
        ),
        "Followed by IDLE_TIMEOUT and close code 4004.",
    ),
    _SystemEventDoc(
        SystemEvent.SESSION_EXPIRING,
        "The session reached max_duration: the connection is being closed.",
        _obj(
            {
                "reason": {"type": "string", "const": "max_duration"},
                "max_duration": {"type": "number", "description": "seconds"},
            }
        ),
        "Followed by SESSION_EXPIRED and close code 4003.",
    ),
    _SystemEventDoc(
        SystemEvent.SERVER_SHUTDOWN,
        "The server is shutting down: reconnect later.",
        _obj(
            {
                "reason": {"type": "string"},
                "graceful_timeout": {"type": "number", "description": "seconds"},
                "recovery": _obj({"token": _NULLABLE_STRING}),
            },
            required=["reason", "graceful_timeout"],
        ),
        "Running handlers get graceful_timeout seconds to finish, then the connection is "
        "closed with 1001.",
    ),
    _SystemEventDoc(
        SystemEvent.DISCONNECT,
        "Reserved for the server.",
        _ANY_OBJECT,
    ),
    _SystemEventDoc(
        SystemEvent.ERROR,
        "An error: replies to a message (with its ack) or announces a policy close.",
        ERROR_PAYLOAD,
        "Handlers never close a connection; only protocol and policy do, after an "
        "__error__ when there is one to send.",
    ),
    _SystemEventDoc(
        SystemEvent.ACK,
        "The reply to a message that carried an ack, when its handler returned a value.",
        {},
    ),
)

_REFRESH_REPLY: Schema = _obj({"user_id": _NULLABLE_STRING, "expires_at": _NULLABLE_DATETIME})


# -- helpers -----------------------------------------------------------------------------------


class _Keys:
    """Unique keys for one AsyncAPI map, from preferred names."""

    def __init__(self) -> None:
        self._taken: set[str] = set()

    def take(self, preferred: str) -> str:
        base = _KEY_UNSAFE.sub("_", preferred) or "_"
        key, n = base, 2
        while key in self._taken:
            key, n = f"{base}_{n}", n + 1
        self._taken.add(key)
        return key


class _Schemas:
    """Collects the Python types to describe; generates every schema in one pass so that
    models sharing a name get distinct component names and shared models appear once."""

    def __init__(self) -> None:
        self._inputs: list[tuple[Hashable, Mode, TypeAdapter[Any]]] = []
        self._fallback: dict[tuple[Hashable, Mode], Schema] = {}
        self.result: dict[tuple[Hashable, Mode], Schema] = {}
        self.definitions: dict[str, Schema] = {}

    def add(self, key: Hashable, tp: Any, mode: Mode, fallback: Schema) -> None:
        try:
            adapter: TypeAdapter[Any] = TypeAdapter(tp)
            adapter.json_schema(mode=mode)  # fails here, alone, rather than in the batch
        except Exception:
            self._fallback[(key, mode)] = dict(fallback)
            return
        self._inputs.append((key, mode, adapter))

    def build(self) -> None:
        self.result = dict(self._fallback)
        if not self._inputs:
            return
        mapping, defs = TypeAdapter.json_schemas(self._inputs, ref_template=SCHEMA_REF)
        self.result.update({k: _asyncapi_schema(v) for k, v in mapping.items()})
        self.definitions = {
            name: _asyncapi_schema(schema) for name, schema in defs.get("$defs", {}).items()
        }

    def get(self, key: Hashable, mode: Mode) -> Schema:
        return self.result[(key, mode)]


# Keywords whose value maps names to schemas, and keywords whose value is plain data.
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions"})
_DATA = frozenset({"const", "default", "enum", "example", "examples"})


def _asyncapi_schema(value: Any) -> Any:
    """JSON Schema as AsyncAPI's Schema Object takes it: there ``discriminator`` is a property
    name, so pydantic's OpenAPI-style discriminator object is kept as ``x-discriminator``."""
    if isinstance(value, list):
        return [_asyncapi_schema(v) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key == "discriminator" and isinstance(item, dict):
            out["x-discriminator"] = item
        elif key in _SCHEMA_MAPS and isinstance(item, dict):
            out[key] = {name: _asyncapi_schema(schema) for name, schema in item.items()}
        elif key in _DATA or key.startswith("x-"):
            out[key] = item
        else:
            out[key] = _asyncapi_schema(item)
    return out


def _return_annotation(handler: Callable[..., Any]) -> Any:
    target: Any = handler if inspect.isroutine(handler) else type(handler).__call__
    try:
        hints = typing.get_type_hints(target)
        if "return" in hints:
            return hints["return"]
    except Exception:
        pass
    try:
        return inspect.signature(handler).return_annotation
    except (TypeError, ValueError):
        return inspect.Signature.empty


def _acks_nothing(annotation: Any) -> bool:
    return annotation is None or annotation is type(None) or annotation is typing.NoReturn


def _unknown(annotation: Any) -> bool:
    return annotation is inspect.Signature.empty or annotation is Any or isinstance(annotation, str)


def _summary(text: str) -> str:
    first = text.strip().split("\n\n", 1)[0]
    return " ".join(first.split())


def _texts(description: str) -> dict[str, str]:
    text = description.strip()
    if not text:
        return {}
    summary = _summary(text)
    return {"summary": summary, "description": text} if summary != text else {"summary": text}


def _tags(tags: Iterable[str]) -> list[dict[str, str]]:
    return [{"name": t} for t in dict.fromkeys(tags)]


def envelope_schema(
    event: str,
    payload: Schema,
    *,
    role: EnvelopeRole = "push",
    deprecated: bool = False,
) -> Schema:
    """The wire envelope ``{"event": <event>, "payload": ..., "ack": ...}``.

    A ``request`` (client to server) may leave out its payload (``{}``) and sets ``ack`` to
    ask for a reply; a ``reply`` (``__ack__``, ``__error__``) carries the ``ack`` it answers
    (always, for ``__ack__``); a ``push`` (anything else the server sends) has no ``ack``.
    """
    required = ["event"]
    if role != "request":
        required.append("payload")
    if role == "reply" and event == SystemEvent.ACK:
        required.append("ack")
    schema: Schema = {
        "type": "object",
        "properties": {
            "event": {"type": "string", "const": event},
            "payload": payload,
            "ack": {"type": ["string", "integer"], "description": _ACK_TEXT[role]},
        },
        "required": required,
    }
    if deprecated:
        schema["deprecated"] = True
    return schema


def channel_address(namespace: str, path: str) -> str:
    base = "/" + path.strip("/") if path.strip("/") else ""
    if namespace in ("", "/"):
        return base or "/"
    return base + "/" + namespace.strip("/")


class _Channel:
    """One channel's message map; ``ref`` lists a message on it and points at it there."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.messages: dict[str, Schema] = {}
        # What an operation's ``channel`` (and its reply's) points at.
        self.address_ref = {"$ref": f"#/channels/{key}"}

    def ref(self, message_key: str) -> dict[str, str]:
        self.messages.setdefault(message_key, {"$ref": f"#/components/messages/{message_key}"})
        return {"$ref": f"#/channels/{self.key}/messages/{message_key}"}


# -- the document ------------------------------------------------------------------------------


@dataclass
class _Outbound:
    """An event the handlers of one namespace send (emits) or broadcast."""

    event: str
    sources: list[tuple[EventDefinition, Emits | Broadcasts]] = field(default_factory=list)

    @property
    def models(self) -> list[type[BaseModel] | None]:
        return list(dict.fromkeys(item.model for _, item in self.sources))


def _outbound_events(definitions: list[EventDefinition]) -> list[_Outbound]:
    found: dict[str, _Outbound] = {}
    for definition in definitions:
        items: tuple[Emits | Broadcasts, ...] = (*definition.emits, *definition.broadcasts)
        for item in items:
            if item.event in RESERVED_EVENTS:
                continue  # documented as a system event
            found.setdefault(item.event, _Outbound(item.event)).sources.append((definition, item))
    return [found[name] for name in sorted(found)]


def _outbound_description(out: _Outbound) -> str:
    lines = []
    for definition, item in out.sources:
        if isinstance(item, Broadcasts):
            where = f"to the room `{item.room}`" if item.room else "to a room"
            line = f"Broadcast {where} by `{definition.name}`."
        else:
            line = f"Sent to the sender by `{definition.name}`."
        if item.description:
            line += " " + item.description.strip()
        lines.append(line)
    return "\n\n".join(dict.fromkeys(lines))


def _security(app: SocketApp) -> tuple[dict[str, Schema], str]:
    auth = app.auth
    if auth is None:
        return {}, "No authentication: every connection is admitted."
    if isinstance(auth, JWTAuth):
        return {
            "jwtBearer": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": f"A JWT ({auth.algorithm}) in `Authorization: Bearer <token>` "
                "on the WebSocket handshake.",
            },
            "jwtQuery": {
                "type": "httpApiKey",
                "name": auth.query_param,
                "in": "query",
                "description": f"The same JWT as `?{auth.query_param}=<token>`, for browsers, "
                "which cannot set headers on a WebSocket.",
            },
        }, "Authentication: a JWT, checked during the handshake (failure: AUTH_ERROR, 4001)."
    if isinstance(auth, APIKeyAuth):
        return {
            "apiKeyHeader": {
                "type": "httpApiKey",
                "name": auth.header,
                "in": "header",
                "description": f"An API key in the `{auth.header}` header of the handshake.",
            },
            "apiKeyQuery": {
                "type": "httpApiKey",
                "name": auth.query_param,
                "in": "query",
                "description": f"The same API key as `?{auth.query_param}=<key>`, for browsers.",
            },
        }, "Authentication: an API key, checked during the handshake (failure: AUTH_ERROR, 4001)."
    return {}, (
        f"Authentication: {type(auth).__name__}, checked during the handshake "
        "(failure: AUTH_ERROR, 4001)."
    )


def _info_description(auth_text: str, addresses: dict[str, str]) -> str:
    namespaces = "\n".join(f"- `{ns}` at `{address}`" for ns, address in addresses.items())
    closes = ", ".join(f"{int(c)} {c.name.lower().replace('_', ' ')}" for c in CloseCode)
    return (
        "A socketspec WebSocket event API. Every message, in both directions, is one JSON "
        'object in a text frame: `{"event": "<name>", "payload": {...}, "ack": <id>}`. '
        "`payload` is an object (missing means `{}`); `ack` (a string or an integer) asks "
        "for a reply: the server answers with `__ack__` carrying the same `ack` and the "
        "handler's return value, or with `__error__` carrying the same `ack`.\n\n"
        f"Namespaces:\n\n{namespaces}\n\n"
        f"{auth_text}\n\n"
        f"Close codes: {closes}."
    )


class _Document:
    """The document under construction: its keyed maps, filled section by section.

    Message and operation keys are taken in the order the sections run, so the
    order of the sections is part of the document's shape (which key gets a suffix).
    """

    def __init__(self, schemas: _Schemas, acks: dict[tuple[str, str], Any]) -> None:
        self.schemas = schemas
        self.acks = acks  # each client event's return annotation
        self.message_keys, self.channel_keys, self.operation_keys = _Keys(), _Keys(), _Keys()
        self.messages: dict[str, Schema] = {}
        self.channels: dict[str, Schema] = {}
        self.operations: dict[str, Schema] = {}
        self.correlation = {"$ref": f"#/components/correlationIds/{ACK_CORRELATION}"}
        self.system_keys: dict[str, str] = {}
        self.refresh_ack_key = ""

    def add_message(self, preferred: str, message: Schema) -> str:
        key = self.message_keys.take(preferred)
        self.messages[key] = message
        return key

    def add_operation(self, preferred: str, operation: Schema) -> None:
        self.operations[self.operation_keys.take(preferred)] = operation

    def payload_of(self, d: EventDefinition) -> Schema:
        if d.payload_param is not None and d.validates:
            return self.schemas.get(("payload", d.namespace, d.name), "validation")
        return dict(_ANY_OBJECT)

    def outbound_payload(self, out: _Outbound) -> Schema:
        models = out.models
        if any(m is None for m in models):
            return dict(_ANY_OBJECT)
        refs = [self.schemas.get(("model", m), "serialization") for m in models]
        return refs[0] if len(refs) == 1 else {"anyOf": refs}


def _describe_types(
    definitions: list[EventDefinition], outbound: dict[str, list[_Outbound]]
) -> tuple[_Schemas, dict[tuple[str, str], Any]]:
    """Every Python type (payloads, return values, emitted models), described in one pass."""
    schemas = _Schemas()
    acks: dict[tuple[str, str], Any] = {}
    for d in definitions:
        if d.payload_param is not None and d.validates:
            schemas.add(("payload", d.namespace, d.name), d.payload_type, "validation", _ANY_OBJECT)
        annotation = _return_annotation(d.handler)
        acks[(d.namespace, d.name)] = annotation
        if not _acks_nothing(annotation) and not _unknown(annotation):
            schemas.add(("ack", d.namespace, d.name), annotation, "serialization", {})
    for events in outbound.values():
        for out in events:
            for model in out.models:
                if model is not None:
                    schemas.add(("model", model), model, "serialization", _ANY_OBJECT)
    schemas.build()
    return schemas, acks


def _add_system_messages(document: _Document) -> None:
    """The system events' messages, shared by every channel."""
    correlation = document.correlation
    for system in SYSTEM_EVENTS:
        role: EnvelopeRole = "request" if system.direction == "receive" else "push"
        if system.event in (SystemEvent.ACK, SystemEvent.ERROR):
            role = "reply"
        message: Schema = {
            "name": system.event,
            "title": system.event,
            **_texts(system.summary + ("\n\n" + system.description if system.description else "")),
            "payload": envelope_schema(system.event, system.payload, role=role),
            "tags": [{"name": "system"}],
        }
        if system.event in (SystemEvent.ACK, SystemEvent.ERROR, SystemEvent.REFRESH_AUTH):
            message["correlationId"] = correlation
        document.system_keys[system.event] = document.add_message(system.event, message)
    document.refresh_ack_key = document.add_message(
        f"{SystemEvent.REFRESH_AUTH}.ack",
        {
            "name": SystemEvent.ACK,
            "title": f"{SystemEvent.ACK} of {SystemEvent.REFRESH_AUTH}",
            "summary": "The refreshed identity.",
            "payload": envelope_schema(SystemEvent.ACK, _REFRESH_REPLY, role="reply"),
            "correlationId": correlation,
            "tags": [{"name": "system"}],
        },
    )


def _ack_message_key(document: _Document, d: EventDefinition, prefix: str) -> str | None:
    """The message that answers ``d`` when its message had an ack; None when it returns None."""
    annotation = document.acks[(d.namespace, d.name)]
    if _acks_nothing(annotation):
        return None
    if _unknown(annotation):
        return document.system_keys[SystemEvent.ACK]
    return document.add_message(
        f"{prefix}{d.name}.ack",
        {
            "name": SystemEvent.ACK,
            "title": f"{SystemEvent.ACK} of {d.name}",
            "summary": f"What `{d.name}` returns, when the message had an ack.",
            "payload": envelope_schema(
                SystemEvent.ACK,
                document.schemas.get(("ack", d.namespace, d.name), "serialization"),
                role="reply",
            ),
            "correlationId": document.correlation,
            "x-namespace": d.namespace,
        },
    )


def _add_client_events(
    document: _Document, channel: _Channel, prefix: str, definitions: list[EventDefinition]
) -> None:
    """Client events: received by the server; the reply is the ack or the error."""
    ref = channel.ref
    for d in definitions:
        text = _texts(d.description)
        key = document.add_message(
            prefix + d.name,
            {
                "name": d.name,
                "title": d.name,
                **text,
                "payload": envelope_schema(
                    d.name, document.payload_of(d), role="request", deprecated=d.deprecated
                ),
                "correlationId": document.correlation,
                **({"tags": _tags(d.tags)} if d.tags else {}),
                **({"deprecated": True} if d.deprecated else {}),
                "x-namespace": d.namespace,
            },
        )
        reply = [ref(document.system_keys[SystemEvent.ERROR])]
        ack_key = _ack_message_key(document, d, prefix)
        if ack_key is not None:
            reply.insert(0, ref(ack_key))
        operation: Schema = {
            "action": "receive",
            "channel": channel.address_ref,
            "title": d.name,
            **text,
            "messages": [ref(key)],
            "reply": {"channel": channel.address_ref, "messages": reply},
            **({"tags": _tags(d.tags)} if d.tags else {}),
            "x-ordered": d.ordered,
        }
        if d.deprecated:
            operation["x-deprecated"] = True
        document.add_operation(f"{prefix}receive.{d.name}", operation)


def _add_outbound_events(
    document: _Document, channel: _Channel, prefix: str, ns: str, outbound: list[_Outbound]
) -> None:
    """Events the handlers emit to the sender or broadcast to rooms."""
    for out in outbound:
        description = _outbound_description(out)
        tags = _tags(t for definition, _ in out.sources for t in definition.tags)
        rooms = list(
            dict.fromkeys(
                item.room
                for _, item in out.sources
                if isinstance(item, Broadcasts) and item.room is not None
            )
        )
        deprecated = all(definition.deprecated for definition, _ in out.sources)
        key = document.add_message(
            prefix + out.event,
            {
                "name": out.event,
                "title": out.event,
                **_texts(description),
                "payload": envelope_schema(
                    out.event, document.outbound_payload(out), deprecated=deprecated
                ),
                **({"tags": tags} if tags else {}),
                **({"deprecated": True} if deprecated else {}),
                "x-namespace": ns,
            },
        )
        operation: Schema = {
            "action": "send",
            "channel": channel.address_ref,
            "title": out.event,
            **_texts(description),
            "messages": [channel.ref(key)],
            **({"tags": tags} if tags else {}),
            "x-sent-by": list(dict.fromkeys(d.name for d, _ in out.sources)),
        }
        if rooms:
            operation["x-rooms"] = rooms
        if deprecated:
            operation["x-deprecated"] = True
        document.add_operation(f"{prefix}send.{out.event}", operation)


def _add_system_operations(document: _Document, channel: _Channel, prefix: str) -> None:
    """The system events on one channel: one operation each, in the server's direction."""
    ref, keys = channel.ref, document.system_keys
    for system in SYSTEM_EVENTS:
        if system.event == SystemEvent.ACK:
            ref(keys[SystemEvent.ACK])  # travels as replies; listed on the channel
            continue
        operation: Schema = {
            "action": system.direction,
            "channel": channel.address_ref,
            "title": system.event,
            "summary": system.summary,
            "messages": [ref(keys[system.event])],
            "tags": [{"name": "system"}],
        }
        if system.event == SystemEvent.REFRESH_AUTH:
            operation["reply"] = {
                "channel": channel.address_ref,
                "messages": [ref(document.refresh_ack_key), ref(keys[SystemEvent.ERROR])],
            }
        document.add_operation(f"{prefix}{system.direction}.{system.event}", operation)


def _add_channel(
    document: _Document,
    ns: str,
    path: str,
    definitions: list[EventDefinition],
    outbound: list[_Outbound],
) -> str:
    """One namespace's channel and its operations; returns the channel's address."""
    channel_key = document.channel_keys.take("root" if ns == "/" else ns.strip("/"))
    prefix = "" if ns == "/" else f"{channel_key}."
    channel = _Channel(channel_key)
    _add_client_events(document, channel, prefix, definitions)
    _add_outbound_events(document, channel, prefix, ns, outbound)
    _add_system_operations(document, channel, prefix)
    address = channel_address(ns, path)
    document.channels[channel_key] = {
        "address": address,
        "title": f"Namespace {ns}",
        "summary": f"Messages of the namespace {ns}, in both directions.",
        "messages": channel.messages,
        "servers": [{"$ref": f"#/servers/{SERVER_ID}"}],
        "x-namespace": ns,
    }
    return address


def _server(
    host: str, path: str, protocol: str, auth_text: str, security_schemes: dict[str, Schema]
) -> Schema:
    server: Schema = {
        "host": host,
        "protocol": protocol,
        "title": "socketspec WebSocket endpoint",
        "description": f"Namespace `/` is served at `{channel_address('/', path)}`, namespace "
        f"`/x` at `{channel_address('/x', path)}`. {auth_text}",
        "x-close-codes": {str(int(c)): c.name.lower() for c in CloseCode},
    }
    if security_schemes:
        server["security"] = [
            {"$ref": f"#/components/securitySchemes/{name}"} for name in security_schemes
        ]
    return server


def _components(document: _Document, security_schemes: dict[str, Schema]) -> Schema:
    components: Schema = {
        "schemas": document.schemas.definitions,
        "messages": document.messages,
        "correlationIds": {
            ACK_CORRELATION: {
                "description": "A reply (__ack__ or __error__) carries the ack of the message "
                "it answers.",
                "location": "$message.payload#/ack",
            }
        },
    }
    if security_schemes:
        components["securitySchemes"] = security_schemes
    if not components["schemas"]:
        del components["schemas"]
    return components


def _info(
    title: str | None,
    description: str,
    tags: list[str],
    host: str,
    protocol: str,
) -> Schema:
    return {
        "title": title or "socketspec application",
        "version": __version__,
        "description": description,
        "tags": _tags(tags),
        # Pushing from other processes is HTTP, described in OpenAPI of its own.
        "externalDocs": {
            "description": "The HTTP publish API (push to rooms, users and connections "
            "from other processes), served on the same port when socketspec-cluster runs "
            "with --api-key: its OpenAPI 3.1 document.",
            "url": f"{'https' if protocol == 'wss' else 'http'}://{host}/api/openapi.json",
        },
    }


def asyncapi_document(
    app: SocketApp,
    *,
    host: str = "localhost:8000",
    path: str = "/ws",
    protocol: str = "ws",
    title: str | None = None,
) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of ``app``.

    ``host`` (``host[:port]``), ``path`` and ``protocol`` (``ws`` or ``wss``) describe where
    the app is served; the defaults are those of ``socketspec-cluster``.
    """
    definitions = sorted(app.event_definitions(), key=lambda d: (d.namespace, d.name))
    namespaces = sorted(app.registry.namespaces() | {d.namespace for d in definitions})
    by_namespace = {ns: [d for d in definitions if d.namespace == ns] for ns in namespaces}
    outbound = {ns: _outbound_events(by_namespace[ns]) for ns in namespaces}

    document = _Document(*_describe_types(definitions, outbound))
    security_schemes, auth_text = _security(app)
    _add_system_messages(document)
    addresses = {
        ns: _add_channel(document, ns, path, by_namespace[ns], outbound[ns]) for ns in namespaces
    }
    all_tags = sorted({t for d in definitions for t in d.tags} | {"system"})
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": _info(title, _info_description(auth_text, addresses), all_tags, host, protocol),
        "defaultContentType": CONTENT_TYPE,
        "servers": {SERVER_ID: _server(host, path, protocol, auth_text, security_schemes)},
        "channels": document.channels,
        "operations": document.operations,
        "components": _components(document, security_schemes),
    }
