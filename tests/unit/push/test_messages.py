"""Pushed messages: encoded once, validated against the app's declared models, measured."""

from __future__ import annotations

import orjson
import pytest
from pydantic import BaseModel

from socketspec import Broadcasts, Connection, Emits, SocketApp
from socketspec.push import messages
from socketspec.push.messages import PayloadTooLargeError, PushError, SchemaError, TargetKind


class Shipped(BaseModel):
    order_id: int


class Note(BaseModel):
    text: str


def test_schemas_come_from_emits_and_broadcasts() -> None:
    app = SocketApp()

    @app.on(
        "a", emits=[Emits("note", model=Note)], broadcasts=[Broadcasts("shipped", model=Shipped)]
    )
    async def a(conn: Connection) -> None:
        return None

    @app.on("b", broadcasts=[Broadcasts("note", model=Shipped), Broadcasts("plain")])
    async def b(conn: Connection) -> None:
        return None

    assert messages.schemas_of(app) == {"note": Note, "shipped": Shipped}


def test_encode_validates_models_and_accepts_model_instances() -> None:
    schemas = {"shipped": Shipped}
    frame = messages.encode_payload("shipped", {"order_id": "5"}, schemas)
    assert orjson.loads(frame) == {"event": "shipped", "payload": {"order_id": 5}}
    frame = messages.encode_payload("shipped", Shipped(order_id=6), schemas)
    assert orjson.loads(frame)["payload"] == {"order_id": 6}
    frame = messages.encode_payload("other", Note(text="hi"), schemas)
    assert orjson.loads(frame)["payload"] == {"text": "hi"}
    assert orjson.loads(messages.encode_payload("other", None, schemas))["payload"] == {}
    with pytest.raises(SchemaError):
        messages.encode_payload("shipped", {"order_id": "x"}, schemas)
    with pytest.raises(PushError, match="object"):
        messages.encode_payload("other", [1], schemas)
    with pytest.raises(PushError, match="system event"):
        messages.encode_payload("__ack__", {}, schemas)


def test_size_is_the_whole_envelope() -> None:
    frame = messages.encode_payload("e", {"t": "x"}, {}, max_size=100)
    with pytest.raises(PayloadTooLargeError) as error:
        messages.encode_payload("e", {"t": "x" * 100}, {}, max_size=100)
    assert error.value.status == 413 and error.value.details["limit"] == 100
    assert len(frame) <= 100
    built = messages.build(TargetKind.ROOM, "r", "e", {}, {}, exclude=["a", "a"])
    assert built.exclude == frozenset({"a"})
