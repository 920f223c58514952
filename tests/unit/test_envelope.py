"""The JSON envelope codec (DESIGN section 3)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from pydantic import BaseModel

from socketspec import envelope
from socketspec.envelope import DecodeFailure, Inbound
from socketspec.errors import ErrorCode


class Greeting(BaseModel):
    name: str
    at: datetime


# -- decode -------------------------------------------------------------------------------------


def test_decode_full_message_from_str() -> None:
    got = envelope.decode('{"event": "say", "payload": {"text": "hi"}, "ack": "a1"}')
    assert got == Inbound(event="say", payload={"text": "hi"}, ack="a1")


def test_decode_accepts_bytes() -> None:
    got = envelope.decode(b'{"event": "say", "payload": {"n": 1}}')
    assert isinstance(got, Inbound)
    assert got.event == "say"
    assert got.payload == {"n": 1}
    assert got.ack is None


@pytest.mark.parametrize("raw", ['{"event": "ping_me"}', '{"event": "ping_me", "payload": null}'])
def test_decode_missing_payload_is_empty_dict(raw: str) -> None:
    got = envelope.decode(raw)
    assert isinstance(got, Inbound)
    assert got.payload == {}


@pytest.mark.parametrize("raw", ["{not json", "", b"\xff\xfe", '{"event": "x",}'])
def test_decode_bad_json(raw: str | bytes) -> None:
    got = envelope.decode(raw)
    assert isinstance(got, DecodeFailure)
    assert got.code is ErrorCode.VALIDATION_ERROR
    assert got.message == "Invalid JSON"
    assert got.details is not None and "error" in got.details


@pytest.mark.parametrize("raw", ["[1, 2]", '"event"', "42", "null", "true"])
def test_decode_non_object(raw: str) -> None:
    got = envelope.decode(raw)
    assert isinstance(got, DecodeFailure)
    assert got.code is ErrorCode.VALIDATION_ERROR
    assert "object" in got.message


@pytest.mark.parametrize(
    "raw",
    [
        '{"payload": {}}',
        '{"event": "", "payload": {}}',
        '{"event": null}',
        '{"event": 7}',
        '{"event": ["a"]}',
    ],
)
def test_decode_missing_or_empty_event(raw: str) -> None:
    got = envelope.decode(raw)
    assert isinstance(got, DecodeFailure)
    assert got.code is ErrorCode.VALIDATION_ERROR
    assert "event" in got.message
    assert got.event is None


def test_decode_missing_event_keeps_ack() -> None:
    got = envelope.decode('{"payload": {}, "ack": 9}')
    assert isinstance(got, DecodeFailure)
    assert got.ack == 9


@pytest.mark.parametrize("payload", ["[]", '"text"', "3", "true", "[{}]"])
def test_decode_payload_must_be_object(payload: str) -> None:
    got = envelope.decode('{"event": "say", "ack": "k", "payload": ' + payload + "}")
    assert isinstance(got, DecodeFailure)
    assert got.code is ErrorCode.VALIDATION_ERROR
    assert "payload" in got.message
    # The failure still names the event and the ack, so the error can be tied to the request.
    assert got.event == "say"
    assert got.ack == "k"


@pytest.mark.parametrize("ack", ["req-1", "", 0, 17, -3])
def test_decode_ack_string_or_int(ack: str | int) -> None:
    got = envelope.decode(orjson.dumps({"event": "say", "ack": ack}))
    assert isinstance(got, Inbound)
    assert got.ack == ack
    assert type(got.ack) is type(ack)


@pytest.mark.parametrize("ack", [True, False, 1.5, 2.0, [1], {"id": 1}])
def test_decode_ack_of_other_types_refused(ack: object) -> None:
    got = envelope.decode(orjson.dumps({"event": "say", "ack": ack}))
    assert isinstance(got, DecodeFailure)
    assert got.code is ErrorCode.VALIDATION_ERROR
    assert "ack" in got.message
    assert got.ack is None


# -- size ---------------------------------------------------------------------------------------


def test_exceeds_ascii_str() -> None:
    assert not envelope.exceeds("a" * 10, 10)
    assert envelope.exceeds("a" * 11, 10)


def test_exceeds_bytes() -> None:
    assert not envelope.exceeds(b"x" * 64, 64)
    assert envelope.exceeds(b"x" * 65, 64)
    assert not envelope.exceeds(b"", 0)


@pytest.mark.parametrize(
    ("char", "width"),
    [("é", 2), ("€", 3), ("😀", 4)],
)
def test_exceeds_counts_utf8_bytes_not_characters(char: str, width: int) -> None:
    text = char * 5
    limit = 5 * width
    assert len(text) < limit  # the character count alone would pass
    assert not envelope.exceeds(text, limit)
    assert envelope.exceeds(text, limit - 1)
    assert envelope.exceeds(text + "a", limit)
    # the same message as bytes gives the same answer
    assert not envelope.exceeds(text.encode(), limit)
    assert envelope.exceeds(text.encode(), limit - 1)


def test_message_size() -> None:
    assert envelope.message_size("é😀") == 6
    assert envelope.message_size(b"abc") == 3


# -- encode -------------------------------------------------------------------------------------


def test_encode_dict() -> None:
    frame = envelope.encode("news", {"a": 1, "b": [1, 2]})
    assert isinstance(frame, bytes)
    assert orjson.loads(frame) == {"event": "news", "payload": {"a": 1, "b": [1, 2]}}


def test_encode_pydantic_model() -> None:
    model = Greeting(name="ada", at=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC))
    body = orjson.loads(envelope.encode("greet", model))
    assert body["event"] == "greet"
    assert body["payload"]["name"] == "ada"
    assert body["payload"]["at"].startswith("2024-01-02T03:04:05")
    assert "ack" not in body


def test_encode_nested_model_and_set() -> None:
    model = Greeting(name="bo", at=datetime(2024, 1, 1, tzinfo=UTC))
    body = orjson.loads(envelope.encode("e", {"who": model, "tags": {"x"}}))
    assert body["payload"]["who"]["name"] == "bo"
    assert body["payload"]["tags"] == ["x"]


def test_encode_with_ack() -> None:
    assert orjson.loads(envelope.encode("e", {}, ack=5)) == {"event": "e", "payload": {}, "ack": 5}


def test_encode_unserialisable_raises() -> None:
    with pytest.raises(TypeError):
        envelope.encode("e", {"x": object()})


def test_encode_error_fields() -> None:
    frame = envelope.encode_error(
        ErrorCode.VALIDATION_ERROR,
        "bad input",
        event="say",
        request_id="rid-1",
        details={"field": "text"},
    )
    body = orjson.loads(frame)
    assert body == {
        "event": "__error__",
        "payload": {
            "code": "VALIDATION_ERROR",
            "event": "say",
            "message": "bad input",
            "request_id": "rid-1",
            "details": {"field": "text"},
        },
    }


def test_encode_error_defaults_details_and_carries_ack_at_top_level() -> None:
    body = orjson.loads(
        envelope.encode_error(
            ErrorCode.UNKNOWN_EVENT, "nope", event=None, request_id="r", ack="abc"
        )
    )
    assert body["event"] == "__error__"
    assert body["ack"] == "abc"
    assert "ack" not in body["payload"]
    assert body["payload"]["details"] == {}
    assert body["payload"]["event"] is None
    assert body["payload"]["code"] == "UNKNOWN_EVENT"


def test_encode_ack_shape() -> None:
    assert orjson.loads(envelope.encode_ack(7, {"ok": True})) == {
        "event": "__ack__",
        "ack": 7,
        "payload": {"ok": True},
    }


def test_encode_ack_with_model_and_scalar() -> None:
    model = Greeting(name="cy", at=datetime(2024, 5, 6, tzinfo=UTC))
    body = orjson.loads(envelope.encode_ack("k", model))
    assert set(body) == {"event", "ack", "payload"}
    assert body["ack"] == "k"
    assert body["payload"]["name"] == "cy"
    assert orjson.loads(envelope.encode_ack("k", 3))["payload"] == 3
