"""The AsyncAPI 3.0 document (``socketspec.apidocs.asyncapi``): its structure, event by event.

The official parser's verdict on it is in ``tests/integration/apidocs/test_asyncapi_validates.py``;
here every promise is checked directly: each event with its payload schema and its reply,
emits and broadcasts, namespaces as channels, the error envelope and the system events,
security schemes by auth type, deprecated and ordered events, and references that resolve.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from socketspec import __version__
from socketspec.apidocs.asyncapi import asyncapi_document, channel_address
from socketspec.apidocs.routes import docs_response
from socketspec.app import SocketApp
from socketspec.connection import Connection, Identity
from socketspec.errors import ERROR_CODES, RESERVED_EVENTS
from socketspec.registry import Broadcasts, Emits
from socketspec.security.auth import APIKeyAuth, JWTAuth


class Item(BaseModel):
    name: str
    qty: int = 1


class Order(BaseModel):
    items: list[Item]
    note: str | None = None


class Receipt(BaseModel):
    order_id: str
    total: float


class Shipped(BaseModel):
    order_id: str
    carrier: str


class Cat(BaseModel):
    kind: Literal["cat"]
    meows: bool


class Dog(BaseModel):
    kind: Literal["dog"]
    barks: bool


class Adopt(BaseModel):
    pet: Annotated[Cat | Dog, Field(discriminator="kind")]
    discriminator: str = "a field that happens to be called so"


class Point(TypedDict):
    x: int
    y: int


def _other_shipped() -> type[BaseModel]:
    class Shipped(BaseModel):  # same name as the module-level model, different fields
        parcel_count: int

    return Shipped


OtherShipped = _other_shipped()


def make_app(auth: Any = None) -> SocketApp:
    app = SocketApp(auth=auth)

    @app.on(
        "place_order",
        description="Place an order.\n\nThe items are checked against the stock.",
        tags=["orders"],
        emits=[Emits("order_placed", model=Receipt, description="The receipt.")],
        broadcasts=[Broadcasts("order_feed", room="orders:{shop}", model=Shipped)],
        ordered=True,
    )
    async def place_order(conn: Connection, payload: Order) -> Receipt:
        return Receipt(order_id="1", total=0)

    @app.on(
        "ship",
        tags=["orders"],
        broadcasts=[Broadcasts("order_feed", room="warehouse", model=OtherShipped)],
    )
    async def ship(conn: Connection, payload: dict[str, Any]) -> None:
        """Ship an order (documented by the docstring)."""

    @app.on("old_ping", deprecated=True, tags=["legacy"])
    async def old_ping(conn: Connection, payload: dict[str, Any]) -> None: ...

    @app.on("chat:send")
    async def chat_send(conn: Connection) -> None: ...

    @app.on("move", namespace="/game", emits=[Emits("moved")])
    async def move(conn: Connection, payload: Point) -> dict[str, int]:
        return {"x": payload["x"]}

    @app.on("adopt", namespace="game", broadcasts=[Broadcasts("adopted", room="pets")])
    async def adopt(conn: Connection, payload: Adopt):  # type: ignore[no-untyped-def]
        return {"ok": True}

    return app


# -- helpers -----------------------------------------------------------------------------------


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def deref(doc: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        node = resolve(doc, node["$ref"])
    return node


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def keys_named(node: Any, name: str, *, under_properties: bool = False) -> Iterator[Any]:
    """Values of schema keywords called ``name`` (not of properties called so)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == name and not under_properties:
                yield value
            yield from keys_named(value, name, under_properties=key == "properties")
    elif isinstance(node, list):
        for value in node:
            yield from keys_named(value, name)


def message_of(doc: dict[str, Any], op_key: str) -> dict[str, Any]:
    [ref] = doc["operations"][op_key]["messages"]
    message: dict[str, Any] = deref(doc, ref)
    return message


def envelope(message: dict[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = message["payload"]
    return payload


def payload_schema(doc: dict[str, Any], message: dict[str, Any]) -> Any:
    return deref(doc, envelope(message)["properties"]["payload"])


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return asyncapi_document(make_app())


# -- the document ------------------------------------------------------------------------------


def test_the_header_fields(doc: dict[str, Any]) -> None:
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["version"] == __version__
    assert doc["info"]["title"]
    assert "ack" in doc["info"]["description"]
    assert doc["defaultContentType"] == "application/json"
    assert {t["name"] for t in doc["info"]["tags"]} == {"orders", "legacy", "system"}
    json.dumps(doc)  # plain JSON values only


def test_every_reference_resolves(doc: dict[str, Any]) -> None:
    found = list(refs(doc))
    assert found
    for ref in found:
        resolve(doc, ref)


def test_the_server(doc: dict[str, Any]) -> None:
    [(server_id, server)] = doc["servers"].items()
    assert server["protocol"] == "ws"
    assert server["host"] == "localhost:8000"
    assert "security" not in server
    assert server["x-close-codes"]["4001"] == "auth_failed"
    for channel in doc["channels"].values():
        assert channel["servers"] == [{"$ref": f"#/servers/{server_id}"}]


def test_where_it_is_served_can_be_given() -> None:
    doc = asyncapi_document(make_app(), host="chat.example.com", path="/socket/", protocol="wss")
    [server] = doc["servers"].values()
    assert (server["host"], server["protocol"]) == ("chat.example.com", "wss")
    assert {c["address"] for c in doc["channels"].values()} == {"/socket", "/socket/game"}


def test_channel_addresses() -> None:
    assert channel_address("/", "/ws") == "/ws"
    assert channel_address("/game", "/ws") == "/ws/game"
    assert channel_address("/game", "ws/") == "/ws/game"
    assert channel_address("/", "/") == "/"
    assert channel_address("/game", "/") == "/game"


def test_one_channel_per_namespace(doc: dict[str, Any]) -> None:
    channels = {c["x-namespace"]: c for c in doc["channels"].values()}
    assert set(channels) == {"/", "/game"}
    assert channels["/"]["address"] == "/ws"
    assert channels["/game"]["address"] == "/ws/game"
    names = {
        ns: {deref(doc, m)["name"] for m in channel["messages"].values()}
        for ns, channel in channels.items()
    }
    root_events = {"place_order", "ship", "old_ping", "chat:send", "order_placed", "order_feed"}
    assert root_events <= names["/"]
    assert {"move", "adopt", "moved", "adopted"} <= names["/game"]
    assert not {"move", "adopt"} & names["/"]
    assert not {"place_order", "order_feed"} & names["/game"]
    for ns in channels:
        assert set(RESERVED_EVENTS) <= names[ns]


def test_operations_reference_messages_of_their_own_channel(doc: dict[str, Any]) -> None:
    """What the parser's asyncapi3-operation-messages-from-referred-channel rule demands,
    and the same of replies."""
    for op in doc["operations"].values():
        channel = op["channel"]["$ref"]
        assert channel.startswith("#/channels/")
        for message in op["messages"]:
            assert message["$ref"].startswith(channel + "/messages/")
        if "reply" in op:
            assert op["reply"]["channel"]["$ref"] == channel
            for message in op["reply"]["messages"]:
                assert message["$ref"].startswith(channel + "/messages/")


def test_component_keys_are_what_asyncapi_admits(doc: dict[str, Any]) -> None:
    import re

    key = re.compile(r"^[A-Za-z0-9_.\-]+$")
    for section in doc["components"].values():
        for name in section:
            assert key.match(name), name
    for name in doc["channels"]:
        assert key.match(name), name


# -- client events -----------------------------------------------------------------------------


def test_every_event_is_a_receive_operation_with_its_envelope(doc: dict[str, Any]) -> None:
    received = {
        (deref(doc, op["channel"])["x-namespace"], message_of(doc, key)["name"])
        for key, op in doc["operations"].items()
        if op["action"] == "receive" and "system" not in {t["name"] for t in op.get("tags", [])}
    }
    assert received == {
        ("/", "place_order"),
        ("/", "ship"),
        ("/", "old_ping"),
        ("/", "chat:send"),
        ("/game", "move"),
        ("/game", "adopt"),
    }
    message = message_of(doc, "receive.place_order")
    body = envelope(message)
    assert body["type"] == "object"
    assert body["properties"]["event"] == {"type": "string", "const": "place_order"}
    assert body["properties"]["ack"]["type"] == ["string", "integer"]
    assert body["required"] == ["event"]  # a missing payload is {}; the ack is optional


def test_a_model_payload_is_its_pydantic_schema_with_definitions_hoisted(
    doc: dict[str, Any],
) -> None:
    schema = payload_schema(doc, message_of(doc, "receive.place_order"))
    expected = Order.model_json_schema(ref_template="#/components/schemas/{model}")
    expected.pop("$defs")
    assert schema == expected
    item = deref(doc, schema["properties"]["items"]["items"])
    assert item["properties"].keys() == {"name", "qty"}
    assert not list(keys_named(doc, "$defs"))


def test_other_payload_types(doc: dict[str, Any]) -> None:
    point = payload_schema(doc, message_of(doc, "game.receive.move"))
    assert point["properties"].keys() == {"x", "y"}
    raw = payload_schema(doc, message_of(doc, "receive.ship"))
    assert raw == {"type": "object"}
    none = payload_schema(doc, message_of(doc, "receive.chat_send"))
    assert none == {"type": "object"}


def test_descriptions_summaries_and_tags(doc: dict[str, Any]) -> None:
    op = doc["operations"]["receive.place_order"]
    assert op["summary"] == "Place an order."
    assert op["description"] == "Place an order.\n\nThe items are checked against the stock."
    assert op["tags"] == [{"name": "orders"}]
    message = message_of(doc, "receive.place_order")
    assert message["summary"] == "Place an order."
    assert message["tags"] == [{"name": "orders"}]
    assert doc["operations"]["receive.ship"]["summary"] == (
        "Ship an order (documented by the docstring)."
    )


def test_ordered_is_carried(doc: dict[str, Any]) -> None:
    assert doc["operations"]["receive.place_order"]["x-ordered"] is True
    assert doc["operations"]["receive.ship"]["x-ordered"] is False


def test_deprecated_is_carried(doc: dict[str, Any]) -> None:
    op = doc["operations"]["receive.old_ping"]
    assert op["x-deprecated"] is True
    assert "deprecated" not in op  # AsyncAPI 3.0 operations have no such field
    message = message_of(doc, "receive.old_ping")
    assert message["deprecated"] is True
    assert envelope(message)["deprecated"] is True
    assert "x-deprecated" not in doc["operations"]["receive.place_order"]
    assert "deprecated" not in message_of(doc, "receive.place_order")


def test_event_names_become_safe_keys_but_stay_names_on_the_wire(doc: dict[str, Any]) -> None:
    message = message_of(doc, "receive.chat_send")
    assert message["name"] == "chat:send"
    assert envelope(message)["properties"]["event"]["const"] == "chat:send"


def test_the_reply_is_the_ack_with_the_return_value_or_the_error(doc: dict[str, Any]) -> None:
    reply = doc["operations"]["receive.place_order"]["reply"]
    ack, error = (deref(doc, m) for m in reply["messages"])
    assert envelope(ack)["properties"]["event"]["const"] == "__ack__"
    assert envelope(ack)["required"] == ["event", "payload", "ack"]
    assert payload_schema(doc, ack)["properties"].keys() == {"order_id", "total"}
    assert envelope(error)["properties"]["event"]["const"] == "__error__"
    assert ack["correlationId"] == message_of(doc, "receive.place_order")["correlationId"]
    correlation = resolve(doc, ack["correlationId"]["$ref"])
    assert correlation["location"] == "$message.payload#/ack"

    # A handler annotated "-> None" never acks: only the error can answer.
    [only] = doc["operations"]["receive.ship"]["reply"]["messages"]
    assert deref(doc, only)["name"] == "__error__"

    # A plain return type; no annotation at all: the generic __ack__.
    move_ack = deref(doc, doc["operations"]["game.receive.move"]["reply"]["messages"][0])
    assert payload_schema(doc, move_ack) == {
        "type": "object",
        "additionalProperties": {"type": "integer"},
    }
    adopt_ack = deref(doc, doc["operations"]["game.receive.adopt"]["reply"]["messages"][0])
    assert adopt_ack is doc["components"]["messages"]["__ack__"]


def test_a_discriminated_union_is_valid_asyncapi(doc: dict[str, Any]) -> None:
    """AsyncAPI's discriminator is a property name; pydantic's object moves to an extension."""
    for value in keys_named(doc, "discriminator"):
        assert isinstance(value, str), value
    adopt = payload_schema(doc, message_of(doc, "game.receive.adopt"))
    assert "discriminator" in adopt["properties"]  # a property of that name is left alone
    pet = adopt["properties"]["pet"]
    assert pet["x-discriminator"]["propertyName"] == "kind"
    assert {deref(doc, s)["title"] for s in pet["oneOf"]} == {"Cat", "Dog"}


# -- what the server sends ---------------------------------------------------------------------


def test_emits_and_broadcasts_are_send_operations(doc: dict[str, Any]) -> None:
    sent = {
        message_of(doc, key)["name"]: op
        for key, op in doc["operations"].items()
        if op["action"] == "send" and not key.split(".")[-1].startswith("__")
    }
    assert set(sent) == {"order_placed", "order_feed", "moved", "adopted"}

    placed = sent["order_placed"]
    assert placed["x-sent-by"] == ["place_order"]
    assert "x-rooms" not in placed
    assert "Sent to the sender by `place_order`. The receipt." in placed["summary"]
    receipt = payload_schema(doc, message_of(doc, "send.order_placed"))
    assert receipt["title"] == "Receipt"

    feed = sent["order_feed"]
    assert feed["x-sent-by"] == ["place_order", "ship"]
    assert feed["x-rooms"] == ["orders:{shop}", "warehouse"]
    assert feed["tags"] == [{"name": "orders"}]
    message = message_of(doc, "send.order_feed")
    assert envelope(message)["required"] == ["event", "payload"]
    variants = [deref(doc, s) for s in envelope(message)["properties"]["payload"]["anyOf"]]
    assert sorted(sorted(v["properties"]) for v in variants) == [
        ["carrier", "order_id"],
        ["parcel_count"],
    ]
    assert sent["adopted"]["x-rooms"] == ["pets"]
    assert payload_schema(doc, message_of(doc, "game.send.adopted")) == {"type": "object"}


def test_models_sharing_a_name_get_their_own_schemas(doc: dict[str, Any]) -> None:
    shipped = [s for s in doc["components"]["schemas"].values() if s.get("title") == "Shipped"]
    assert len(shipped) == 2


# -- errors and system events ------------------------------------------------------------------


def test_the_error_envelope(doc: dict[str, Any]) -> None:
    message = doc["components"]["messages"]["__error__"]
    body = envelope(message)
    assert body["properties"]["event"]["const"] == "__error__"
    payload = body["properties"]["payload"]
    assert set(payload["properties"]) == {"code", "event", "message", "request_id", "details"}
    assert payload["properties"]["code"]["enum"] == sorted(ERROR_CODES)
    assert set(payload["required"]) == {"code", "event", "message", "request_id", "details"}
    assert "ack" in body["properties"] and "ack" not in body["required"]


def test_every_system_event_is_documented_in_its_direction(doc: dict[str, Any]) -> None:
    messages = doc["components"]["messages"]
    for event in RESERVED_EVENTS:
        assert envelope(messages[event])["properties"]["event"]["const"] == event
    actions = {}
    for key, op in doc["operations"].items():
        if key.startswith("game."):
            continue
        name = message_of(doc, key)["name"]
        if name in RESERVED_EVENTS:
            actions[name] = op["action"]
    assert actions == {
        "__connect__": "send",
        "__ping__": "send",
        "__pong__": "receive",
        "__auth_expiring__": "send",
        "__session_expiring__": "send",
        "__idle_warning__": "send",
        "__server_shutdown__": "send",
        "__recovery__": "send",
        "__refresh_auth__": "receive",
        "__disconnect__": "send",
        "__error__": "send",
    }  # __ack__ travels as the reply of the operations above


def test_system_payloads(doc: dict[str, Any]) -> None:
    messages = doc["components"]["messages"]

    def props(event: str) -> set[str]:
        return set(envelope(messages[event])["properties"]["payload"].get("properties", {}))

    assert props("__connect__") == {
        "conn_id",
        "namespace",
        "user_id",
        "heartbeat_interval",
        "heartbeat_timeout",
        "recovered",
        "missed",
        "recovery",
    }
    assert props("__recovery__") == {"token"}
    assert props("__ping__") == {"ts"}
    assert props("__auth_expiring__") == {"expires_at", "expires_in"}
    assert props("__idle_warning__") == {"reason", "idle_timeout"}
    assert props("__session_expiring__") == {"reason", "max_duration"}
    assert props("__server_shutdown__") == {"reason", "graceful_timeout", "recovery"}
    assert props("__refresh_auth__") == {"token"}
    refresh = doc["operations"]["receive.__refresh_auth__"]
    ack, error = (deref(doc, m) for m in refresh["reply"]["messages"])
    assert payload_schema(doc, ack)["properties"].keys() == {"user_id", "expires_at"}
    assert error["name"] == "__error__"


# -- security ----------------------------------------------------------------------------------


def server_security(doc: dict[str, Any]) -> list[dict[str, Any]]:
    [server] = doc["servers"].values()
    return [deref(doc, s) for s in server.get("security", [])]


def test_no_auth_no_security() -> None:
    doc = asyncapi_document(make_app())
    assert server_security(doc) == []
    assert "securitySchemes" not in doc["components"]


def test_jwt_auth_is_a_bearer_token_in_the_header_or_the_query() -> None:
    doc = asyncapi_document(make_app(JWTAuth("s3cret", query_param="access_token")))
    schemes = server_security(doc)
    bearer = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    query = {"type": "httpApiKey", "in": "query", "name": "access_token"}
    assert bearer.items() <= schemes[0].items()
    assert query.items() <= schemes[1].items()
    assert len(schemes) == 2
    assert "JWT" in doc["info"]["description"]


def test_api_key_auth_is_a_header_or_a_query_parameter() -> None:
    doc = asyncapi_document(make_app(APIKeyAuth(["k1"])))
    schemes = server_security(doc)
    assert [(s["type"], s["in"], s["name"]) for s in schemes] == [
        ("httpApiKey", "header", "x-api-key"),
        ("httpApiKey", "query", "api_key"),
    ]
    custom = asyncapi_document(make_app(APIKeyAuth(["k1"], header="X-Key", query_param="key")))
    assert [(s["in"], s["name"]) for s in server_security(custom)] == [
        ("header", "x-key"),
        ("query", "key"),
    ]


def test_a_custom_backend_is_named_but_has_no_scheme() -> None:
    class TicketAuth:
        def authenticate(self, headers: Any, query_params: Any) -> Identity:
            return Identity()

    doc = asyncapi_document(make_app(TicketAuth()))
    assert server_security(doc) == []
    assert "TicketAuth" in doc["info"]["description"]


# -- served ------------------------------------------------------------------------------------


def test_asyncapi_json_serves_the_document() -> None:
    app = make_app()
    app.docs = True
    raw = docs_response(app, "/asyncapi.json", {}, {})
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert json.loads(body) == json.loads(json.dumps(asyncapi_document(app)))


def test_an_app_without_events_still_documents_the_protocol() -> None:
    doc = asyncapi_document(SocketApp())
    [channel] = doc["channels"].values()
    assert channel["address"] == "/ws"
    names = {deref(doc, m)["name"] for m in channel["messages"].values()}
    assert set(RESERVED_EVENTS) <= names
    for ref in refs(doc):
        resolve(doc, ref)


def test_the_builder_documents_each_member_of_the_system_event_table_once() -> None:
    from socketspec.apidocs.asyncapi import SYSTEM_EVENTS
    from socketspec.errors import SystemEvent

    assert sorted(doc.event for doc in SYSTEM_EVENTS) == sorted(SystemEvent)
