"""The JSON envelope codec: bytes in, messages out, and back.

Owns the wire format of DESIGN section 3: ``{"event", "payload", "ack"}`` objects,
the ``__error__`` and ``__ack__`` envelopes, and the size check on inbound
messages. Sans-I/O: it never touches a socket, a task or a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
from pydantic import BaseModel

from socketspec.errors import ErrorCode, SystemEvent
from socketspec.types import AckId, EventName, PayloadDict

ERROR_EVENT = SystemEvent.ERROR
ACK_EVENT = SystemEvent.ACK

# A UTF-8 character takes at most four bytes: a str this short cannot exceed the limit.
_MAX_UTF8_BYTES_PER_CHAR = 4


class Inbound(NamedTuple):
    """One decoded client message (a named tuple: built once per message, cheaply)."""

    event: EventName
    payload: PayloadDict
    ack: AckId | None = None


@dataclass(frozen=True, slots=True)
class DecodeFailure:
    """Why a raw message could not be decoded; ``event``/``ack`` are kept when readable."""

    code: ErrorCode
    message: str
    event: EventName | None = None
    ack: AckId | None = None
    details: PayloadDict | None = None


def message_size(raw: str | bytes) -> int:
    """The size of a message in bytes, as it travelled on the wire."""
    if isinstance(raw, bytes | bytearray | memoryview):
        return len(raw)
    return len(raw.encode("utf-8", "surrogatepass"))


def exceeds(raw: str | bytes, limit: int) -> bool:
    """Whether ``raw`` is larger than ``limit`` bytes, encoding a str only when it could be."""
    if isinstance(raw, str) and len(raw) * _MAX_UTF8_BYTES_PER_CHAR <= limit:
        return False
    return message_size(raw) > limit


def decode(raw: str | bytes) -> Inbound | DecodeFailure:
    """Parse one client message. Never raises on bad input."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return DecodeFailure(
            ErrorCode.VALIDATION_ERROR, "Invalid JSON", details={"error": str(exc)}
        )
    if not isinstance(obj, dict):
        return DecodeFailure(ErrorCode.VALIDATION_ERROR, "A message must be a JSON object")
    ack = obj.get("ack")
    if ack is not None and (isinstance(ack, bool) or not isinstance(ack, str | int)):
        return DecodeFailure(ErrorCode.VALIDATION_ERROR, "'ack' must be a string or an integer")
    event = obj.get("event")
    if not isinstance(event, str) or not event:
        return DecodeFailure(
            ErrorCode.VALIDATION_ERROR, "A message needs an 'event' string", ack=ack
        )
    payload = obj.get("payload")
    if payload is None:
        payload = {}
    elif not isinstance(payload, dict):
        return DecodeFailure(
            ErrorCode.VALIDATION_ERROR, "'payload' must be a JSON object", event=event, ack=ack
        )
    return Inbound(event, payload, ack)


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def to_jsonable(payload: Any) -> Any:
    """A payload as plain JSON values (models dumped); dicts pass through untouched."""
    if isinstance(payload, BaseModel):
        return payload.model_dump(mode="json")
    return payload


def encode(event: EventName, payload: Any, ack: AckId | None = None) -> bytes:
    """Serialise one outbound envelope to UTF-8 JSON bytes."""
    body: dict[str, Any] = {"event": event, "payload": to_jsonable(payload)}
    if ack is not None:
        body["ack"] = ack
    return orjson.dumps(body, default=_default)


def compact(frame: bytes) -> bytes:
    """A copy of ``frame`` that holds only its bytes, for an envelope kept for long (a
    reply kept for a resend): orjson's output keeps the 4 KiB buffer it was written into,
    which thousands of kept replies would otherwise pay."""
    return memoryview(frame).tobytes()


def encode_error(
    code: ErrorCode | str,
    message: str,
    *,
    event: EventName | None,
    request_id: str,
    details: PayloadDict | None = None,
    ack: AckId | None = None,
) -> bytes:
    payload = {
        "code": str(code),
        "event": event,
        "message": message,
        "request_id": request_id,
        "details": details or {},
    }
    return encode(ERROR_EVENT, payload, ack)


def encode_ack(ack: AckId, value: Any) -> bytes:
    return orjson.dumps(
        {"event": ACK_EVENT, "ack": ack, "payload": to_jsonable(value)}, default=_default
    )
