"""The SocketSpec JSON document (``socketspec.apidocs.schema``, served at ``<docs_url>/schema``).

Every event with its payload schema, emits and broadcasts, namespaces, the system events
and error codes, the auth backend by type, and the deprecated and ordered flags.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from socketspec import __version__
from socketspec.apidocs.routes import docs_response
from socketspec.apidocs.schema import SYSTEM_EVENTS_CLIENT_SENDS, socketspec_schema
from socketspec.app import SocketApp
from socketspec.connection import Connection, Identity
from socketspec.errors import ERROR_CODES, RESERVED_EVENTS
from socketspec.registry import Broadcasts, Emits
from socketspec.security.auth import APIKeyAuth, JWTAuth


class Tag(BaseModel):
    label: str


class Post(BaseModel):
    title: str
    tags: list[Tag] = []


class Published(BaseModel):
    post_id: int


class Cursor(TypedDict):
    after: int


def make_app(auth: Any = None) -> SocketApp:
    app = SocketApp(auth=auth)

    @app.on(
        "publish",
        description="Publish a post.",
        tags=["posts"],
        emits=[Emits("published", model=Published, description="Its id.")],
        broadcasts=[Broadcasts("feed", room="feed:{topic}", model=Published)],
        ordered=True,
    )
    async def publish(conn: Connection, payload: Post) -> Published:
        return Published(post_id=1)

    @app.on("legacy_publish", deprecated=True, broadcasts=[Broadcasts("feed")])
    async def legacy_publish(conn: Connection, payload: dict[str, Any]) -> None:
        """The old way to publish."""

    @app.on("page", namespace="/archive")
    async def page(conn: Connection, payload: Cursor) -> None: ...

    return app


def events_by_name(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["namespace"], e["name"]): e for e in doc["events"]}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return socketspec_schema(make_app())


def test_the_document_is_plain_json_with_the_version(doc: dict[str, Any]) -> None:
    assert doc["version"] == __version__
    assert json.loads(json.dumps(doc)) == doc


def test_every_event_is_present_with_its_payload_schema(doc: dict[str, Any]) -> None:
    events = events_by_name(doc)
    assert set(events) == {("/", "publish"), ("/", "legacy_publish"), ("/archive", "page")}
    assert [(e["namespace"], e["name"]) for e in doc["events"]] == sorted(events)
    publish = events[("/", "publish")]
    assert publish["payload"] == Post.model_json_schema()
    assert publish["description"] == "Publish a post."
    assert publish["tags"] == ["posts"]
    assert events[("/archive", "page")]["payload"]["properties"].keys() == {"after"}
    assert events[("/", "legacy_publish")]["payload"] is None  # the raw dict is passed
    assert events[("/", "legacy_publish")]["description"] == "The old way to publish."


def test_emits_and_broadcasts(doc: dict[str, Any]) -> None:
    events = events_by_name(doc)
    publish = events[("/", "publish")]
    assert publish["emits"] == [
        {"event": "published", "description": "Its id.", "payload": Published.model_json_schema()}
    ]
    assert publish["broadcasts"] == [
        {
            "event": "feed",
            "room": "feed:{topic}",
            "description": "",
            "payload": Published.model_json_schema(),
        }
    ]
    [feed] = events[("/", "legacy_publish")]["broadcasts"]
    assert (feed["event"], feed["room"], feed["payload"]) == ("feed", None, None)
    assert events[("/archive", "page")]["emits"] == []


def test_namespaces(doc: dict[str, Any]) -> None:
    assert doc["namespaces"] == ["/", "/archive"]
    assert socketspec_schema(SocketApp(namespace="/solo"))["namespaces"] == ["/solo"]


def test_system_events_and_error_codes(doc: dict[str, Any]) -> None:
    assert doc["system_events"] == sorted(RESERVED_EVENTS)
    assert set(doc["client_system_events"]) == {"__pong__", "__refresh_auth__"}
    assert list(SYSTEM_EVENTS_CLIENT_SENDS) == doc["client_system_events"]
    assert doc["error_codes"] == sorted(ERROR_CODES)


def test_deprecated_and_ordered_are_carried(doc: dict[str, Any]) -> None:
    events = events_by_name(doc)
    assert events[("/", "publish")]["ordered"] is True
    assert events[("/", "publish")]["deprecated"] is False
    assert events[("/", "legacy_publish")]["deprecated"] is True
    assert events[("/", "legacy_publish")]["ordered"] is False


def test_the_auth_backend_by_type() -> None:
    class TicketAuth:
        def authenticate(self, headers: Any, query_params: Any) -> Identity:
            return Identity()

    assert socketspec_schema(make_app())["auth"] is None
    assert socketspec_schema(make_app(JWTAuth("s3cret")))["auth"] == "JWTAuth"
    assert socketspec_schema(make_app(APIKeyAuth(["k"])))["auth"] == "APIKeyAuth"
    assert socketspec_schema(make_app(TicketAuth()))["auth"] == "TicketAuth"


def test_served_at_the_docs_url() -> None:
    app = make_app()
    app.docs = True
    raw = docs_response(app, "/socket-docs/schema", {}, {})
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert json.loads(body) == socketspec_schema(app)


def test_the_earlier_module_name_still_imports_the_same_modules() -> None:
    import socketspec.docs.asyncapi
    from socketspec.docs.routes import docs_response as old_docs_response
    from socketspec.docs.schema import socketspec_schema as old_socketspec_schema

    import socketspec.apidocs.asyncapi
    import socketspec.apidocs.routes
    import socketspec.apidocs.schema
    import socketspec.docs

    assert socketspec.docs.asyncapi is socketspec.apidocs.asyncapi
    assert socketspec.docs.schema is socketspec.apidocs.schema
    assert old_docs_response is socketspec.apidocs.routes.docs_response
    assert old_socketspec_schema is socketspec_schema
