"""Messages pushed from outside a handler, sans-I/O: what to send, to whom, encoded once.

Owns turning ``(target, event, payload)`` into one ``PushMessage`` with its
envelope already serialised: the event name rules (a system event cannot be
pushed), the validation of the payload against the model the application
declares for that event in ``Emits``/``Broadcasts`` (the same model its
handlers' documentation promises to clients), and the size limit (the app's
``max_payload_size``; a larger envelope is refused before anything is sent).
Both the HTTP publish API and ``Emitter`` build their messages here. Does not
own delivery: the cluster's room store (the API) or the Redis bridge format
(the emitter) does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from socketspec import envelope
from socketspec.errors import RESERVED_EVENTS
from socketspec.registry import Broadcasts, Emits
from socketspec.types import EventName

if TYPE_CHECKING:
    from socketspec.app import SocketApp

DEFAULT_MAX_SIZE = 65536  # SocketApp's default max_payload_size


class TargetKind(Enum):
    ROOM = "room"
    USER = "user"
    CONNECTION = "connection"
    ALL = "all"  # every connection (of a namespace, when given), as broadcast_except


class PushError(Exception):
    """A message that cannot be pushed; ``status`` is the HTTP status the API answers."""

    status = 400

    def __init__(self, reason: str, details: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details


class PayloadTooLargeError(PushError):
    status = 413


class SchemaError(PushError):
    """The payload does not match the model the app declares for the event."""

    status = 422


@dataclass(frozen=True, slots=True)
class PushMessage:
    kind: TargetKind
    target: str | None  # room, user id or connection id; None for ALL
    event: EventName
    frame: bytes  # the serialised envelope, written as is to every receiver
    exclude: frozenset[str] = field(default_factory=frozenset)
    namespace: str | None = None  # ALL only


Schemas = Mapping[EventName, type[BaseModel]]


def schemas_of(app: SocketApp) -> dict[EventName, type[BaseModel]]:
    """The model of each event the app says it emits or broadcasts (first declaration wins)."""
    found: dict[EventName, type[BaseModel]] = {}
    for definition in app.event_definitions():
        declared: list[Emits | Broadcasts] = [*definition.emits, *definition.broadcasts]
        for item in declared:
            if item.model is not None:
                found.setdefault(item.event, item.model)
    return found


def encode_payload(
    event: Any, payload: Any, schemas: Schemas, max_size: int = DEFAULT_MAX_SIZE
) -> bytes:
    """The envelope of ``event``/``payload``, validated and measured. Raises PushError."""
    if not isinstance(event, str) or not event:
        raise PushError("'event' must be a non-empty string")
    if event in RESERVED_EVENTS:
        raise PushError(f"'{event}' is a system event and cannot be pushed")
    if payload is None:
        payload = {}
    model = schemas.get(event)
    if model is not None and not isinstance(payload, model):
        raw = envelope.to_jsonable(payload)
        try:
            payload = model.model_validate(raw)
        except ValidationError as exc:
            raise SchemaError(
                f"payload does not match {model.__name__}, the model declared for '{event}'",
                details=exc.errors(include_url=False, include_context=False),
            ) from None
    elif not isinstance(payload, dict | BaseModel):
        raise PushError("'payload' must be an object")
    try:
        frame = envelope.encode(event, payload)
    except TypeError as exc:
        raise PushError(f"payload is not JSON: {exc}") from None
    if len(frame) > max_size:
        raise PayloadTooLargeError(
            f"the message is {len(frame)} bytes, over the limit of {max_size}",
            details={"size": len(frame), "limit": max_size},
        )
    return frame


def build(
    kind: TargetKind,
    target: str | None,
    event: Any,
    payload: Any,
    schemas: Schemas,
    max_size: int = DEFAULT_MAX_SIZE,
    exclude: Iterable[str] = (),
    namespace: str | None = None,
) -> PushMessage:
    frame = encode_payload(event, payload, schemas, max_size)
    return PushMessage(kind, target, event, frame, frozenset(exclude), namespace)
