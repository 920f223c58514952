"""The TypeScript module of an app: JSON Schema -> TypeScript types, and the event maps."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field

from socketspec import Broadcasts, Connection, Emits, SocketApp
from socketspec.apidocs.typescript import (
    Renderer,
    TypeScriptError,
    connect_line,
    doc_comment,
    namespace_prefix,
    property_key,
    type_name,
    typescript_module,
)


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({}, "unknown"),
        ({"type": "string"}, "string"),
        ({"type": "integer"}, "number"),
        ({"type": "boolean"}, "boolean"),
        ({"type": "null"}, "null"),
        ({"type": ["string", "null"]}, "string | null"),
        ({"enum": ["a", "b", 3]}, '"a" | "b" | 3'),
        ({"const": "x"}, '"x"'),
        ({"type": "array", "items": {"type": "string"}}, "string[]"),
        ({"type": "array"}, "unknown[]"),
        (
            {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
            "(string | null)[]",
        ),
        (
            {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]},
            "[string, number]",
        ),
        ({"anyOf": [{"$ref": "#/$defs/A"}, {"type": "null"}]}, "A | null"),
        ({"anyOf": [{"type": "string"}, {}]}, "unknown"),
        ({"allOf": [{"$ref": "#/$defs/A"}]}, "A"),
        ({"type": "object"}, "Record<string, unknown>"),
        ({"type": "object", "additionalProperties": {"type": "integer"}}, "Record<string, number>"),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "string"}, "b-c": {}},
                "required": ["a"],
            },
            '{\n  a: string;\n  "b-c"?: unknown;\n}',
        ),
    ],
)
def test_schema_to_type(schema: dict[str, Any], expected: str) -> None:
    assert Renderer({"A": "A"}).render(schema) == expected


def test_a_reference_outside_the_definitions_is_an_error() -> None:
    with pytest.raises(TypeScriptError, match="#/components/schemas/A"):
        Renderer({"A": "A"}).render({"$ref": "#/components/schemas/A"})


def test_names_and_keys() -> None:
    assert type_name("Page_Item_") == "Page_Item"
    assert type_name("Model-Input") == "Model_Input"
    assert type_name("3d") == "_3d"
    assert property_key("room") == "room"
    assert property_key("user-id") == '"user-id"'
    assert namespace_prefix("/") == ""
    assert namespace_prefix("/chat-room") == "ChatRoom"
    assert doc_comment("ends */ here") == ["/** ends *\\/ here */"]
    assert doc_comment("") == []


class Color(StrEnum):
    RED = "red"
    BLUE = "blue"


class Author(BaseModel):
    name: str
    friends: list[Author] = []


class Post(BaseModel):
    """A post in a room."""

    room: str = Field(description="The room's name.")
    text: str
    color: Color = Color.RED
    kind: Literal["text", "image"] = "text"
    tags: list[str] = []
    author: Author | None = None
    extra: Any = None
    scores: dict[str, int] = {}


class Posted(BaseModel):
    id: int


class ClientEvents(BaseModel):  # a model named like the module's own map
    x: int


def make_app() -> SocketApp:
    app = SocketApp()

    @app.on("post", description="Post to a room.", broadcasts=[Broadcasts("posted", model=Posted)])
    async def post(conn: Connection, payload: Post) -> Posted:
        return Posted(id=1)

    @app.on("ping")
    async def ping(conn: Connection) -> None:
        return None

    @app.on("raw", emits=[Emits("raw_back")])
    async def raw(conn: Connection, payload: dict[str, Any]) -> Any:
        return payload

    @app.on("clash", namespace="/admin-area")
    async def clash(conn: Connection, payload: ClientEvents) -> list[int]:
        return [payload.x]

    return app


@pytest.fixture(scope="module")
def module() -> str:
    return typescript_module(make_app())


def test_a_model_becomes_an_interface(module: str) -> None:
    assert "/** A post in a room. */\nexport interface Post {\n" in module
    body = module.split("export interface Post {\n", 1)[1].split("\n}\n", 1)[0]
    assert body.splitlines() == [
        "  /** The room's name. */",
        "  room: string;",
        "  text: string;",
        "  color?: Color;",
        '  kind?: "text" | "image";',
        "  tags?: string[];",
        "  author?: Author | null;",
        "  extra?: unknown;",
        "  scores?: Record<string, number>;",
    ]


def test_enums_and_recursive_models(module: str) -> None:
    assert 'export type Color = "red" | "blue";' in module
    assert "export interface Author {\n  name: string;\n  friends?: Author[];\n}" in module


def test_the_client_and_server_maps(module: str) -> None:
    assert "  /** Post to a room. */\n  post: { payload: Post; ack: Posted };" in module
    assert "  ping: { payload: Record<string, unknown>; ack: never };" in module
    assert "  raw: { payload: Record<string, unknown>; ack: unknown };" in module
    server = module.split("export type ServerEvents = {\n", 1)[1].split("}", 1)[0]
    assert server == "  posted: Posted;\n  raw_back: Record<string, unknown>;\n"


def test_each_namespace_has_its_maps_and_names_do_not_clash(module: str) -> None:
    assert "export interface ClientEvents2 {\n  x: number;\n}" in module
    assert "  clash: { payload: ClientEvents2; ack: number[] };" in module
    assert "export type AdminAreaServerEvents = {\n};" in module
    assert '  "/": { client: ClientEvents; server: ServerEvents };' in module
    assert (
        '  "/admin-area": { client: AdminAreaClientEvents; server: AdminAreaServerEvents };'
        in module
    )


def test_each_client_map_says_how_to_type_the_client_with_it(module: str) -> None:
    assert connect_line("/") == "connect<ClientEvents, ServerEvents>(url)"
    assert connect_line("/admin-area") == (
        'connect<AdminAreaClientEvents, AdminAreaServerEvents>(url, { namespace: "/admin-area" })'
    )
    for namespace, name in (("/", "ClientEvents"), ("/admin-area", "AdminAreaClientEvents")):
        comment = module.split(f"export type {name} = {{", 1)[0].rsplit("/**", 1)[1]
        assert f"With socketspec-client: {connect_line(namespace)}" in comment


def test_the_module_is_deterministic() -> None:
    assert typescript_module(make_app()) == typescript_module(make_app())
